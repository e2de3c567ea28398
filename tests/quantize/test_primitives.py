"""choose_qparams / quantize / dequantize: round trip, symmetric zero points, per-channel, ONNX semantics."""

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from hasten.quantize.primitives import choose_qparams, dequantize, fake_quantize, qrange, quantize


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_round_trip_error_is_at_most_half_a_step(dtype, symmetric):
    x = np.random.default_rng(0).normal(1.0, 3.0, 20000).astype(np.float32)
    scale, zp = choose_qparams(x.min(), x.max(), dtype, symmetric)
    q = quantize(x, scale, zp, dtype)
    assert q.dtype == np.dtype(dtype)
    err = np.abs(dequantize(q, scale, zp) - x)
    assert err.max() <= scale / 2 * (1 + 1e-5)
    assert err.max() > scale / 4  # the bound is tight: it is not trivially met by a tiny scale


def test_symmetric_zero_points_and_scales():
    s8, z8 = choose_qparams(-2.0, 5.0, "int8", symmetric=True)
    assert z8 == 0 and np.isclose(s8, 5.0 / 127)
    su, zu = choose_qparams(-2.0, 5.0, "uint8", symmetric=True)
    assert zu == 128 and np.isclose(su, 5.0 / 127.5)
    # symmetric int8 uses [-127, 127] so that -x quantises to -q
    assert quantize(np.float32(-5.0), s8, z8, "int8") == -127


def test_asymmetric_range_includes_zero_exactly():
    scale, zp = choose_qparams(0.3, 5.0, "uint8")  # widened to [0, 5]
    assert zp == 0
    assert dequantize(quantize(np.float32(0.0), scale, zp, "uint8"), scale, zp) == 0.0
    scale, zp = choose_qparams(-3.0, -1.0, "int8")  # widened to [-3, 0]
    assert zp == 127
    assert dequantize(quantize(np.float32(0.0), scale, zp, "int8"), scale, zp) == 0.0


def test_zero_range_gives_unit_scale():
    scale, zp = choose_qparams(0.0, 0.0, "int8")
    assert scale == 1.0 and zp == 0
    assert (quantize(np.zeros(4), scale, zp) == 0).all()


def test_per_channel_beats_per_tensor_on_rows_of_different_magnitude():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 64)).astype(np.float32) * np.array([[0.01], [0.1], [1.0], [10.0]], np.float32)
    scale, zp = choose_qparams(w.min(axis=1), w.max(axis=1), "int8", symmetric=True, axis=0)
    assert scale.shape == (4,) and (zp == 0).all()
    deq = dequantize(quantize(w, scale, zp, "int8", axis=0), scale, zp, axis=0)
    per_row = np.abs(deq - w).max(axis=1)
    assert (per_row <= scale / 2 * (1 + 1e-5)).all()
    t_scale, t_zp = choose_qparams(w.min(), w.max(), "int8", symmetric=True)
    deq_t = dequantize(quantize(w, t_scale, t_zp, "int8"), t_scale, t_zp)
    assert np.abs(deq_t - w)[0].max() > 10 * per_row[0]  # the small row is destroyed per tensor
    # axis other than 0 and negative axes
    deq_last = dequantize(quantize(w.T, scale, zp, "int8", axis=-1), scale, zp, axis=-1)
    np.testing.assert_array_equal(deq_last, deq.T)


def test_reduce_range():
    assert qrange("int8", reduce_range=True) == (-64, 63)
    assert qrange("uint8", reduce_range=True) == (0, 127)
    scale, zp = choose_qparams(-1.0, 3.0, "uint8", reduce_range=True)
    q = quantize(np.linspace(-1, 3, 101), scale, zp, "uint8")
    assert q.max() <= 127 and q.min() >= 0
    with pytest.raises(ValueError):
        qrange("int16")


def _ort_qdq(x, scale, zp, axis=None):
    attrs = {"axis": axis} if axis is not None else {}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs)]
    qtype = TensorProto.INT8 if zp.dtype == np.int8 else TensorProto.UINT8
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("q", qtype, x.shape),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)],
                              [numpy_helper.from_array(np.asarray(scale, np.float32), "s"),
                               numpy_helper.from_array(np.asarray(zp), "z")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_matches_onnx_runtime_quantize_linear_including_ties(dtype):
    rng = np.random.default_rng(2)
    scale, zp = choose_qparams(-3.0, 5.0, dtype)
    ties = ((np.arange(-20, 20) + 0.5) * scale).astype(np.float32)  # exactly half-way: round half to even
    x = np.concatenate([rng.uniform(-4, 6, 500).astype(np.float32), ties])
    q_ref, y_ref = _ort_qdq(x, scale, np.asarray(zp))
    np.testing.assert_array_equal(quantize(x, scale, zp, dtype), q_ref)
    np.testing.assert_array_equal(dequantize(q_ref, scale, zp), y_ref)


def test_matches_onnx_runtime_per_axis():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 5, 4)).astype(np.float32) * np.array([1, 10, 100, 0.1], np.float32)
    scale, zp = choose_qparams(x.reshape(-1, 4).min(0), x.reshape(-1, 4).max(0), "uint8", axis=0)
    q_ref, y_ref = _ort_qdq(x, scale, zp, axis=2)
    np.testing.assert_array_equal(quantize(x, scale, zp, "uint8", axis=2), q_ref)
    np.testing.assert_allclose(fake_quantize(x, x.reshape(-1, 4).min(0), x.reshape(-1, 4).max(0), "uint8",
                                             axis=2), y_ref, rtol=0, atol=0)


@settings(max_examples=60, deadline=None)
@given(lo=st.floats(-1e3, 0.0), width=st.floats(1e-3, 1e3), symmetric=st.booleans(),
       dtype=st.sampled_from(["int8", "uint8"]))
def test_round_trip_property(lo, width, symmetric, dtype):
    hi = lo + width
    x = np.linspace(lo, hi, 257, dtype=np.float32)
    scale, zp = choose_qparams(lo, hi, dtype, symmetric)
    err = np.abs(dequantize(quantize(x, scale, zp, dtype), scale, zp) - x)
    assert err.max() <= scale / 2 * (1 + 1e-4) + 1e-6 * max(abs(lo), abs(hi))


def test_rejects_non_finite_and_mismatched_ranges():
    with pytest.raises(ValueError):
        choose_qparams(np.nan, 1.0)
    with pytest.raises(ValueError):
        choose_qparams(np.zeros(3), np.ones(4), axis=0)
