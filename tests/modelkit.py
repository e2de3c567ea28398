"""Small hand-built ONNX models for tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_mlp(seed: int = 0, d_in: int = 16, d_hidden: int = 32, d_out: int = 8, opset: int = 17) -> onnx.ModelProto:
    """x[N, d_in] -> MatMul -> Add -> Relu -> MatMul -> Add -> y[N, d_out], random weights."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.standard_normal((d_in, d_hidden)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(rng.standard_normal(d_hidden).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((d_hidden, d_out)).astype(np.float32) * 0.3, "w2"),
        numpy_helper.from_array(rng.standard_normal(d_out).astype(np.float32) * 0.1, "b2"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
        helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="fc2"),
        helper.make_node("Add", ["h3", "b2"], ["y"], name="fc2_bias"),
    ]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", d_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def mlp_reference(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The MLP's output computed with numpy (float64) from its initializers."""
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in proto.graph.initializer}
    h = np.maximum(x.astype(np.float64) @ w["w1"] + w["b1"], 0)
    return h @ w["w2"] + w["b2"]


OUTLIER_WIDTH = 32


def make_outlier_mlp(hard=(2,), layers: int = 4, seed: int = 0) -> onnx.ModelProto:
    """x -> [MatMul fc_i -> Add -> Relu] * layers -> Tanh. Before each layer in `hard`, channel 0 is
    multiplied by 1000 and the matching weight row divided by 1000: the float function is unchanged, but the
    layer's input range is dominated by one channel, so per-tensor uint8 quantisation zeroes the others."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((OUTLIER_WIDTH, OUTLIER_WIDTH)) / np.sqrt(OUTLIER_WIDTH / 2)).astype(np.float32)
        src = x
        if i in hard:
            gain = np.ones(OUTLIER_WIDTH, np.float32)
            gain[0] = 1000.0
            w[0, :] /= 1000.0
            inits.append(numpy_helper.from_array(gain, f"gain{i}"))
            nodes.append(helper.make_node("Mul", [x, f"gain{i}"], [f"spiked{i}"], name=f"spike{i}"))
            src = f"spiked{i}"
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array((rng.standard_normal(OUTLIER_WIDTH) * 0.1).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [src, f"w{i}"], [f"m{i}"], name=f"fc{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"h{i}"], name=f"bias{i}")]
        out = "y" if i == layers - 1 else f"r{i}"
        nodes.append(helper.make_node("Tanh" if i == layers - 1 else "Relu", [f"h{i}"], [out], name=f"act{i}"))
        x = out
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", OUTLIER_WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", OUTLIER_WIDTH])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto
