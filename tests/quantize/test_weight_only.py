"""Weight-only int4/int8 (MatMulNBits): SQNR against fp32, structure, block size, Gemm, exclusions."""

from __future__ import annotations

import numpy as np
import pytest
from modelkit import make_mlp
from onnx import TensorProto, helper, numpy_helper

import hasten
from hasten.backends import get_backend, run_samples
from hasten.data import Samples
from hasten.errors import QuantizationError
from hasten.measure.accuracy import sqnr_db
from hasten.quantize.base import config_for, quantize
from hasten.quantize.weight_only import Int4WeightConfig, Int8WeightConfig


@pytest.fixture(scope="module")
def mlp():
    return hasten.load(make_mlp(seed=1, d_in=64, d_hidden=128, d_out=32))


@pytest.fixture(scope="module")
def samples(mlp):
    return Samples.synthetic(mlp, 32, seed=3)


def _out(model, samples):
    return run_samples(get_backend("onnxruntime").compile(model), samples)["y"]


def _nbits(model):
    return [n for n in model.graph if n.op_type == "MatMulNBits"]


@pytest.mark.parametrize("cfg, floor_db", [(Int8WeightConfig(), 30.0), (Int4WeightConfig(), 15.0),
                                           (Int8WeightConfig(symmetric=False, block_size=64), 30.0),
                                           (Int4WeightConfig(symmetric=False, block_size=128), 15.0)])
def test_sqnr_and_structure(mlp, samples, cfg, floor_db):
    result = quantize(mlp, cfg, None)
    ref, out = _out(mlp, samples), _out(result.model, samples)
    db = sqnr_db(out, ref)
    assert floor_db < db < 120  # quantised, and not an unchanged model
    hist = result.model.op_histogram()
    assert hist.get("MatMul", 0) == 0 and hist["com.microsoft.MatMulNBits"] == 2
    assert sorted(result.report["quantized"]) == ["fc1", "fc2"]
    for node in _nbits(result.model):
        assert node.attributes["bits"].value == cfg.bits
        assert node.attributes["block_size"].value == cfg.block_size


def test_int8_beats_int4(mlp, samples):
    ref = _out(mlp, samples)
    db8 = sqnr_db(_out(quantize(mlp, Int8WeightConfig()).model, samples), ref)
    db4 = sqnr_db(_out(quantize(mlp, Int4WeightConfig()).model, samples), ref)
    assert db8 > db4 + 15  # ~6 dB per bit


def test_block_size_honoured_in_scales(mlp):
    for bs in (32, 64, 128):
        model = quantize(mlp, Int4WeightConfig(block_size=bs)).model
        fc1 = next(n for n in _nbits(model) if n.attributes["K"].value == 64)
        n_cols, k = fc1.attributes["N"].value, fc1.attributes["K"].value
        scales = fc1.inputs[2].const_value.numpy()
        assert scales.size == n_cols * -(-k // bs)


def test_exclude_keeps_matmul(mlp, samples):
    result = quantize(mlp, Int8WeightConfig(exclude=("fc2",)))
    assert result.report["quantized"] == ["fc1"]
    assert result.model.op_histogram()["MatMul"] == 1
    assert {"node": "fc2", "reason": "excluded by the user"} in result.report["skipped"]


def _gemm_model(trans_b: int):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((48, 64) if trans_b else (64, 48)).astype(np.float32)
    c = rng.standard_normal(48).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", transB=trans_b, beta=0.5)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 48])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return hasten.load(proto)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_rewritten_and_quantised(trans_b):
    model = _gemm_model(trans_b)
    samples = Samples.synthetic(model, 16, seed=1)
    result = quantize(model, Int8WeightConfig())
    assert result.report["gemm_rewritten"] == ["fc"]
    assert "Gemm" not in result.model.op_histogram()
    assert sqnr_db(_out(result.model, samples), _out(model, samples)) > 30


def test_no_weight_matmul_is_an_error():
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, 8]),
                                            helper.make_tensor_value_info("b", TensorProto.FLOAT, [8, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    with pytest.raises(QuantizationError, match="no MatMul"):
        quantize(hasten.load(proto), Int4WeightConfig())


def test_config_validation_and_registry():
    with pytest.raises(QuantizationError, match="block_size"):
        Int4WeightConfig(block_size=48)
    cfg = config_for("int4-weight", block_size=64)
    assert isinstance(cfg, Int4WeightConfig) and cfg.block_size == 64
    assert Int8WeightConfig.search_space()["block_size"] == [32, 64, 128]
    assert cfg.to_dict()["scheme"] == "int4-weight"


def test_weights_behind_cast_reshape_transpose_identity_are_quantised():
    """The third-party fixture: the MatMul weight is a Constant(fp16) -> Cast -> Reshape -> Transpose -> Identity
    chain and the head a Gemm with transB=1; quantize() folds them, so both become MatMulNBits."""
    from modelkit import make_thirdparty, thirdparty_images

    model = hasten.load(make_thirdparty())
    result = quantize(model, Int8WeightConfig())
    assert sorted(result.report["quantized"]) == ["head", "proj"] and result.report["gemm_rewritten"] == ["head"]
    assert {n.name for n in _nbits(result.model)} == {"head_Q8", "proj_Q8"}
    held = Samples({"x": thirdparty_images(3, 5)})
    assert sqnr_db(_out(result.model, held), _out(model, held)) > 30.0
