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


THIRDPARTY_SAMPLE_SHAPE = (1, 3, 48, 320)
THIRDPARTY_CLASSES = 10


def make_thirdparty(seed: int = 0) -> onnx.ModelProto:
    """A model shaped like a third-party converter's output (paddle2onnx-style), random weights from `seed`.

    opset 12; input x[batch, 3, height, width] with all but the channel dim dynamic;
    Conv(3->8, 3x3) -> BatchNormalization -> Relu -> Reshape to tokens [batch, 8, H*W] -> Transpose [batch, H*W, 8]
    -> MatMul with a weight that reaches it through Constant(fp16) -> Cast -> Reshape -> Transpose -> Identity
    -> Add -> Relu -> ReduceMean(axes=[1]) -> Squeeze(axes=[1]) (an attribute at opset 12, an input from 13)
    -> Gemm(transB=1) -> y[batch, 10]. Weights are moderate (|w| ~ 0.3) so int8 stays accurate on AVX2 too.
    """
    rng = np.random.default_rng(seed)
    conv_w = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    conv_b = (rng.standard_normal(8) * 0.1).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(8)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(8)).astype(np.float32)
    mean = (0.1 * rng.standard_normal(8)).astype(np.float32)
    var = (0.5 + rng.random(8)).astype(np.float32)
    # the MatMul weight W[8, 16] is stored as fp16 [2, 64] holding W^T, and rebuilt in the graph
    w = (rng.standard_normal((8, 16)) * 0.35).astype(np.float32)
    stored = w.T.astype(np.float16).reshape(2, 64)
    mm_b = (rng.standard_normal(16) * 0.1).astype(np.float32)
    gemm_b = (rng.standard_normal((THIRDPARTY_CLASSES, 16)) * 0.3).astype(np.float32)  # [out, in]: transB=1
    gemm_c = (rng.standard_normal(THIRDPARTY_CLASSES) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (conv_w, "conv.w"), (conv_b, "conv.b"), (gamma, "bn.scale"), (beta, "bn.bias"), (mean, "bn.mean"),
        (var, "bn.var"), (np.array([0, 8, -1], np.int64), "tokens.shape"), (np.array([16, 8], np.int64),
                                                                              "w.shape"),
        (mm_b, "mm.b"), (gemm_b, "head.w"), (gemm_c, "head.b"))]
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"],
                         name="bn", epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "tokens.shape"], ["t0"], name="to_tokens"),
        helper.make_node("Transpose", ["t0"], ["t"], name="tokens_last", perm=[0, 2, 1]),
        helper.make_node("Constant", [], ["w16"], name="w.const", value=numpy_helper.from_array(stored, "w16")),
        helper.make_node("Cast", ["w16"], ["w32"], name="w.cast", to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["w32", "w.shape"], ["wT"], name="w.reshape"),
        helper.make_node("Transpose", ["wT"], ["w0"], name="w.transpose", perm=[1, 0]),
        helper.make_node("Identity", ["w0"], ["w"], name="w.identity"),
        helper.make_node("MatMul", ["t", "w"], ["m"], name="proj"),
        helper.make_node("Add", ["m", "mm.b"], ["mb"], name="proj.bias"),
        helper.make_node("Relu", ["mb"], ["h"], name="proj.relu"),
        helper.make_node("ReduceMean", ["h"], ["pooled"], name="pool", axes=[1], keepdims=1),
        helper.make_node("Squeeze", ["pooled"], ["feat"], name="squeeze", axes=[1]),
        helper.make_node("Gemm", ["feat", "head.w", "head.b"], ["y"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "thirdparty",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", THIRDPARTY_CLASSES])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)],
                              producer_name="paddle2onnx-like")
    proto.ir_version = 7
    onnx.checker.check_model(proto, full_check=True)
    return proto


def thirdparty_images(n: int, seed: int, shape: tuple[int, ...] = THIRDPARTY_SAMPLE_SHAPE) -> np.ndarray:
    """`n` images in [0, 1] of `shape` (its batch dim is replaced by n)."""
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape[1:]), dtype=np.float32)


def make_tiny_bert(vocab: int, seq: int, hidden: int, layers: int, heads: int, ffn: int):
    """A random BERT encoder (torch manual seed 0) exported by the TorchScript exporter at opset 17, with
    dynamic batch and sequence dims; inputs input_ids, attention_mask, token_type_ids -> last_hidden_state."""
    import torch
    import transformers

    from hasten.torch_export import from_torch

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
                                     num_attention_heads=heads, intermediate_size=ffn,
                                     max_position_embeddings=seq, attn_implementation="eager")
    encoder = transformers.BertModel(config).eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    ids = torch.randint(0, vocab, (2, seq))
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    axes = {n: {0: "batch", 1: "seq"} for n in [*example, "last_hidden_state"]}
    return from_torch(Wrapper(encoder), example, output_names=["last_hidden_state"], dynamic_axes=axes, opset=17)
