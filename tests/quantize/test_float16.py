"""fp16 conversion with measured fp32 fallback; bf16 as OpenVINO's execution precision."""

from __future__ import annotations

import numpy as np
import pytest
from modelkit import make_mlp
from onnx import TensorProto, helper, numpy_helper

import hasten
from hasten.backends import get_backend, run_samples
from hasten.data import Samples
from hasten.measure.accuracy import sqnr_db
from hasten.measure.isa import cpu_features, native_dtypes
from hasten.quantize.base import quantize
from hasten.quantize.float16 import BFloat16Config, Float16Config


def _model(nodes, inits, d_in=16, d_out=8):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", d_out])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return hasten.load(proto)


def _outs(model, samples):
    return run_samples(get_backend("onnxruntime").compile(model), samples)


def test_mlp_fp16_structure_and_sqnr():
    model = hasten.load(make_mlp(seed=2, d_in=32, d_hidden=64, d_out=16))
    samples = Samples.synthetic(model, 16, seed=1)
    result = quantize(model, Float16Config(), samples)
    fp16 = result.model
    assert all(v.dtype.name == "FLOAT16" for v in fp16.graph.initializers.values())
    assert [s.dtype for s in fp16.inputs] == [np.float32] and [s.dtype for s in fp16.outputs] == [np.float32]
    assert result.report["nodes_fp16"] == 5 and result.report["fallback"] == [] and result.report["clean"]
    ref, out = _outs(model, samples)["y"], _outs(fp16, samples)["y"]
    assert out.dtype == np.float32
    assert 45 < sqnr_db(out, ref) < 120  # fp16 rounding is visible, and small


def test_overflowing_matmul_falls_back_and_has_no_inf():
    rng = np.random.default_rng(0)
    inits = {"w1": (rng.standard_normal((16, 32)) * 3e4).astype(np.float32),  # |big| ~ 1e5 > 65504
             "w2": (rng.standard_normal((32, 8)) * 1e-5).astype(np.float32),
             "w3": (rng.standard_normal((8, 8)) * 0.3).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["big"], name="big_mm"),
             helper.make_node("Relu", ["big"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["s"], name="shrink_mm"),
             helper.make_node("Tanh", ["s"], ["t"], name="tanh"),
             helper.make_node("MatMul", ["t", "w3"], ["y"], name="out_mm")]
    model = _model(nodes, inits)
    samples = Samples.synthetic(model, 8, seed=0)
    ref = _outs(model, samples)
    assert np.abs(run_samples(get_backend("onnxruntime").compile(
        _expose_big(model)), samples)["big"]).max() > 65504  # the premise: fp16 cannot hold it
    result = quantize(model, Float16Config(), samples)
    kept = {k["node"]: k["reason"] for k in result.report["fallback"]}
    assert "big_mm" in kept and "range" in kept["big_mm"]
    assert "out_mm" not in kept and "tanh" not in kept  # small values downstream stay fp16
    out = _outs(result.model, samples)["y"]
    assert np.isfinite(out).all()
    assert sqnr_db(out, ref["y"]) > 40


def _expose_big(model):
    from hasten.quantize.layer_diff import expose

    return hasten.Model.from_proto(expose(model.proto(), ["big"]))


def test_underflow_found_by_relative_error_in_rounds():
    # x * 1e-8 underflows in fp16 (smallest subnormal 6e-8); * 1e4 brings it back to a visible size
    inits = {"tiny": np.array(1e-8, np.float32), "huge_inv": np.array(1e4, np.float32),
             "w": (np.random.default_rng(1).standard_normal((16, 8)) * 0.3).astype(np.float32)}
    nodes = [helper.make_node("Mul", ["x", "tiny"], ["a"], name="mul_tiny"),
             helper.make_node("Mul", ["a", "huge_inv"], ["b"], name="mul_back"),
             helper.make_node("MatMul", ["b", "w"], ["y"], name="mm")]
    model = _model(nodes, inits)
    samples = Samples.synthetic(model, 4, seed=0)
    result = quantize(model, Float16Config(), samples)
    kept = {k["node"]: k["reason"] for k in result.report["fallback"]}
    # the fp16 initializer 1e-8 is 0: mul_tiny is found by its relative error (1.0), not by range; whether
    # mul_back follows depends on where ONNX Runtime's CPU provider really rounds to fp16 (it elides some
    # Cast pairs), and the check measures what the runtime does
    assert "mul_tiny" in kept and "relative error" in kept["mul_tiny"]
    assert "mm" not in kept
    assert result.report["rounds"] >= 2 and result.report["clean"]
    assert sqnr_db(_outs(result.model, samples)["y"], _outs(model, samples)["y"]) > 45


def test_keep_ops_and_no_calib_uses_synthetic():
    model = hasten.load(make_mlp(seed=4))
    result = quantize(model, Float16Config(keep_ops=("Relu",)))
    assert "synthetic" in result.report["checked_on"]
    assert any(k["node"] == "relu" and "keep_ops" in k["reason"] for k in result.report["kept"])
    relu = next(n for n in result.model.graph if n.name == "relu")
    assert relu.inputs[0].dtype.name == "FLOAT" and relu.outputs[0].dtype.name == "FLOAT"


@pytest.mark.skipif("bf16" not in native_dtypes(cpu_features()),
                    reason="this CPU has no native bf16 (avx512_bf16 / amx_bf16): OpenVINO would run f32")
def test_bf16_is_openvino_precision_and_measured():
    model = hasten.load(make_mlp(seed=5, d_in=32, d_hidden=64, d_out=16))
    samples = Samples.synthetic(model, 8, seed=2)
    result = quantize(model, BFloat16Config(), samples)
    assert result.report["runtime"] == {"backend": "openvino", "precision": "bf16"}
    assert result.model.op_histogram() == model.op_histogram()
    db = result.report["output_sqnr_db"]["y"]
    assert 20 < db < 150  # bf16 has 8 mantissa bits: ~40-50 dB, not exact
