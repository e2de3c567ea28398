"""Shared helpers for pass tests: build small graphs, run them on ONNX Runtime, compare outputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from hasten.model import Model

OPSET = 17


def make_model(nodes, inputs, outputs, initializers=(), opset: int = OPSET) -> Model:
    """A checked Model from onnx.helper pieces; `initializers` is {name: array} or a list of TensorProto."""
    if isinstance(initializers, dict):
        initializers = [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()]
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return Model.from_proto(proto)


def vinfo(name: str, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def run(model: Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.proto().SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def random_feeds(model: Model, seed: int, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Fresh standard-normal floats (ints in [0, 10)) for every input; symbolic dims from `dims` or 3."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in model.inputs:
        shape = tuple(d if isinstance(d, int) and d > 0 else (dims or {}).get(d, 3) for d in spec.shape)
        if np.issubdtype(spec.dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.integers(0, 10, shape).astype(spec.dtype)
    return feeds


def assert_same_outputs(a: Model, b: Model, feeds, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    out_a, out_b = run(a, feeds), run(b, feeds)
    assert len(out_a) == len(out_b)
    for x, y in zip(out_a, out_b, strict=True):
        assert x.shape == y.shape
        np.testing.assert_allclose(y, x, rtol=rtol, atol=atol)


def op_types(model: Model) -> list[str]:
    return [n.op_type for n in model.graph]
