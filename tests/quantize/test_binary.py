"""Binary (1-bit sign, per-channel mean |W|) weights: the maths against the analytic value, and models run."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hasten
from hasten.backends import get_backend, run_samples
from hasten.data import Samples
from hasten.errors import QuantizationError
from hasten.measure.accuracy import sqnr_db
from hasten.quantize.base import quantize
from hasten.quantize.binary import BinaryConfig, binarize, binary_sqnr_db, dequantize_binary


def test_binarize_constructed_case_matches_analytic_sqnr():
    # each column holds ±a and ±b (a=3, b=1 in column 0; a=6, b=2 in column 1): alpha = (a+b)/2,
    # per-element noise ((a-b)/2)^2 = a^2/9 ... SQNR = 10·log10(((a²+b²)/2) / ((a-b)/2)²) = 10·log10(5)
    col0 = np.array([3, -3, 1, -1, 3, 1, -1, -3], np.float32)
    w = np.stack([col0, 2 * col0[::-1]], axis=1)  # [K=8, N=2]
    signs, alpha = binarize(w, axis=1)
    assert signs.dtype == np.int8 and set(np.unique(signs)) == {-1, 1}
    np.testing.assert_allclose(alpha, [2.0, 4.0])
    wb = dequantize_binary(signs, alpha, axis=1)
    np.testing.assert_array_equal(np.abs(wb), np.array([[2, 4]] * 8, np.float32))
    expected = 10 * np.log10(5.0)
    assert sqnr_db(wb, w) == pytest.approx(expected, abs=1e-9)
    assert binary_sqnr_db(w, axis=1) == pytest.approx(expected, abs=1e-9)


def test_gaussian_weights_near_xnor_bound():
    w = np.random.default_rng(0).standard_normal((512, 256)).astype(np.float32)
    s, a = binarize(w, axis=1)
    measured = sqnr_db(dequantize_binary(s, a, axis=1), w)
    assert measured == pytest.approx(binary_sqnr_db(w, 1), abs=1e-4)
    assert measured == pytest.approx(-10 * np.log10(1 - 2 / np.pi), abs=0.1)  # 4.40 dB


def test_sign_of_zero_is_plus_one():
    s, a = binarize(np.zeros((4, 3), np.float32), axis=1)
    assert (s == 1).all() and (a == 0).all()


def _mlp3():
    rng = np.random.default_rng(7)
    dims = [16, 32, 32, 8]
    inits, nodes, x = [], [], "x"
    for i in range(3):
        inits.append(numpy_helper.from_array((rng.standard_normal(dims[i:i + 2]) * 0.3).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"h{i}"], name=f"fc{i}"))
        x = f"h{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"], name=f"relu{i}"))
            x = f"r{i}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "mlp3", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return hasten.load(proto)


def test_model_keeps_first_last_and_runs():
    model = _mlp3()
    samples = Samples.synthetic(model, 16, seed=0)
    result = quantize(model, BinaryConfig(storage="dequantize"), samples)
    assert [d["node"] for d in result.report["binarised"]] == ["fc1"]
    assert {k["node"] for k in result.report["kept_float"]} == {"fc0", "fc2"}
    dq = [n for n in result.model.graph if n.op_type == "DequantizeLinear"]
    assert len(dq) == 1
    signs = dq[0].inputs[0].const_value.numpy()
    assert signs.dtype == np.int8 and set(np.unique(signs)) <= {-1, 1}
    w1 = next(t for t in model.proto().graph.initializer if t.name == "w1")
    np.testing.assert_allclose(dq[0].inputs[1].const_value.numpy(), np.abs(numpy_helper.to_array(w1)).mean(0),
                               rtol=1e-6)
    ref = run_samples(get_backend("onnxruntime").compile(model), samples)["y"]
    out = run_samples(get_backend("onnxruntime").compile(result.model), samples)["y"]
    assert np.isfinite(out).all()
    assert 0 < sqnr_db(out, ref) < 20  # one binary layer: clearly lossy, still correlated
    assert result.report["storage"].startswith("DequantizeLinear")


def test_float_storage_equals_dequantize_storage():
    model = _mlp3()
    samples = Samples.synthetic(model, 8, seed=1)
    a = quantize(model, BinaryConfig(keep_first_last=False, storage="dequantize")).model
    b = quantize(model, BinaryConfig(keep_first_last=False)).model
    assert "DequantizeLinear" not in b.op_histogram()
    # "basic": ORT's extended level would fuse DQ + MatMul into MatMulNBits with int8 activations
    backend = get_backend("onnxruntime", graph_optimization="basic")
    oa = run_samples(backend.compile(a), samples)["y"]
    ob = run_samples(backend.compile(b), samples)["y"]
    np.testing.assert_allclose(oa, ob, rtol=1e-5, atol=1e-6)
    ob_all = run_samples(get_backend("onnxruntime").compile(b), samples)["y"]
    np.testing.assert_allclose(ob_all, ob, rtol=1e-5, atol=1e-6)  # float storage: same numbers at any level


def test_conv_per_output_channel():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 8, 8])],
                              [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = hasten.load(proto)
    result = quantize(model, BinaryConfig(keep_first_last=False))
    (row,) = result.report["binarised"]
    assert row["channels"] == 6
    assert row["weight_sqnr_db"] == pytest.approx(binary_sqnr_db(w, 0))
    samples = Samples.synthetic(model, 2, seed=0)
    out = run_samples(get_backend("onnxruntime").compile(result.model), samples)["y"]
    s, a = binarize(w, 0)
    # the conv of the binarised weight, computed here from the float model with the weight swapped
    swapped = model.proto()
    swapped.graph.initializer[0].CopyFrom(numpy_helper.from_array(dequantize_binary(s, a, 0), "w"))
    expect = run_samples(get_backend("onnxruntime").compile(hasten.load(swapped)), samples)["y"]
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)


def test_nothing_to_binarise():
    model = _mlp3()
    with pytest.raises(QuantizationError, match="keep_first_last"):
        quantize(model, BinaryConfig(exclude=("fc1",)))
