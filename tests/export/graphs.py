"""Small float ONNX graphs for the exporter's tests, built with onnx.helper (no torch), and their int8 QDQ
forms (ONNX Runtime's static quantiser, calibrated on seeded random inputs)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


class Graph:
    """A tiny builder: `g.conv(x, cout, k, ...)` adds a node and returns its output name."""

    def __init__(self, shape, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.shape = tuple(shape)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.channels = {"x": shape[1]}
        self.n = 0

    def _name(self, op: str) -> str:
        self.n += 1
        return f"{op.lower()}{self.n}"

    def node(self, op, inputs, channels=None, **attrs) -> str:
        out = self._name(op)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.channels[out] = channels if channels is not None else self.channels[inputs[0]]
        return out

    def conv(self, x, cout, k=3, stride=1, pads=(1, 1, 1, 1), dilation=1, groups=1, bias=True) -> str:
        cin = self.channels[x]
        name = self._name("w")
        w = self.rng.normal(0, 1 / np.sqrt(cin // groups * k * k), (cout, cin // groups, k, k))
        self.inits.append(_init(name, w))
        inputs = [x, name]
        if bias:
            self.inits.append(_init(name + "_b", self.rng.normal(0, 0.1, cout)))
            inputs.append(name + "_b")
        return self.node("Conv", inputs, cout, kernel_shape=[k, k], strides=[stride, stride], pads=list(pads),
                         dilations=[dilation, dilation], group=groups)

    def gemm(self, x, n, k) -> str:
        name = self._name("g")
        self.inits += [_init(name, self.rng.normal(0, 1 / np.sqrt(k), (n, k))),
                       _init(name + "_b", self.rng.normal(0, 0.1, n))]
        return self.node("Gemm", [x, name, name + "_b"], n, transB=1)

    def model(self, output: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  list(self.shape))],
                                  [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        return onnx.shape_inference.infer_shapes(model)

    def feeds(self, n: int = 16) -> list[dict[str, np.ndarray]]:
        return [{"x": self.rng.normal(0, 1, self.shape).astype(np.float32)} for _ in range(n)]


def quantised(g: Graph, output: str) -> onnx.ModelProto:
    from hasten.export.quantize import quantize_int8

    return quantize_int8(g.model(output), g.feeds())
