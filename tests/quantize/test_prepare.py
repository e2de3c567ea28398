"""prepare: weights folded into initializers, the opset upgraded to what a scheme needs, per-tensor fallback;
and the int8 schemes on what preparation exposes (Conv, a transposed/reshaped MatMul weight, Gemm transB=1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
import pytest
from modelkit import THIRDPARTY_CLASSES, make_mlp, make_thirdparty, thirdparty_images
from onnx import numpy_helper

import hasten
from hasten.backends import get_backend, run_samples
from hasten.data import Samples
from hasten.errors import QuantizationError
from hasten.measure.accuracy import sqnr_db
from hasten.model import MAX_OPSET
from hasten.quantize import Int8DynamicConfig, Int8StaticConfig, config_for, quantize
from hasten.quantize.base import QuantConfig
from hasten.quantize.prepare import prepare, required_opset


@pytest.fixture(scope="module")
def thirdparty() -> hasten.Model:
    return hasten.load(make_thirdparty())


def _run(model, x: np.ndarray) -> np.ndarray:
    return run_samples(get_backend("onnxruntime").compile(model), Samples({"x": x}))["y"]


def _fresh(seed: int) -> list[np.ndarray]:
    """Random images at the samples' 48x320 and at another dynamic size."""
    return [thirdparty_images(2, seed), thirdparty_images(3, seed + 100, (1, 3, 16, 40))]


def test_prepare_folds_weight_chains_and_upgrades_the_opset(thirdparty):
    prepared = prepare(thirdparty, Int8StaticConfig())
    model = prepared.model
    assert model is not thirdparty and thirdparty.opset == 12
    assert model.opset == 13
    ops = [n.op_type for n in model.graph]
    assert "Cast" not in ops and "Identity" not in ops and ops.count("Transpose") == 1  # the token transpose
    proj = next(n for n in model.graph if n.name == "proj")
    weight = proj.inputs[1]
    assert weight.name in model.graph.initializers and tuple(weight.shape) == (8, 16)
    squeeze = next(n for n in model.graph if n.op_type == "Squeeze")
    assert "axes" not in squeeze.attributes and len(squeeze.inputs) == 2  # opset 13 form
    assert prepared.config == Int8StaticConfig()
    assert prepared.report == {"folded_nodes": 4, "lifted_constants": 1, "opset": 12, "opset_upgraded": [12, 13],
                               "opset_final": 13}
    onnx.checker.check_model(model.proto(), full_check=True)


def test_prepare_keeps_the_numbers(thirdparty):
    prepared = prepare(thirdparty, Int8StaticConfig()).model
    for seed in (1, 2):
        for x in _fresh(seed):
            np.testing.assert_allclose(_run(prepared, x), _run(thirdparty, x), rtol=1e-5, atol=1e-6)


def test_prepare_is_a_noop_on_a_folded_recent_model():
    model = hasten.load(make_mlp(opset=17))
    fp = model.fingerprint()
    for config in (Int8StaticConfig(), Int8DynamicConfig(), config_for("int4-weight"), config_for("fp16")):
        prepared = prepare(model, config)
        assert prepared.model is model and prepared.config is config
        assert prepared.report == {"folded_nodes": 0, "lifted_constants": 0, "opset": 17, "opset_final": 17}
    assert model.fingerprint() == fp


def test_only_what_the_scheme_needs_is_upgraded():
    model = hasten.load(make_mlp(opset=12))
    assert required_opset(Int8StaticConfig()) == 13 and required_opset(Int8StaticConfig(per_channel=False)) == 10
    assert required_opset(Int8DynamicConfig()) == 11 and required_opset(config_for("int8-weight")) == 0
    assert prepare(model, Int8StaticConfig(per_channel=False)).model is model
    assert prepare(model, Int8StaticConfig()).model.opset == 13


@dataclass(frozen=True)
class _Unreachable(QuantConfig):
    """A scheme whose per-channel form needs an opset that does not exist (so the converter really fails)."""

    scheme: ClassVar[str] = "test-unreachable"
    per_channel: bool = True

    def min_opset(self) -> int:
        return MAX_OPSET + 5 if self.per_channel else 10


def test_failed_upgrade_falls_back_to_per_tensor_and_says_so():
    model = hasten.load(make_mlp(opset=12))
    prepared = prepare(model, _Unreachable())
    assert prepared.config == _Unreachable(per_channel=False)
    assert prepared.model.opset == 12
    assert prepared.report["fallback"].startswith("per-tensor: onnx's version converter cannot take it from opset 12")


def test_failed_upgrade_without_a_fallback_is_one_clear_error():
    @dataclass(frozen=True)
    class NoFallback(QuantConfig):
        scheme: ClassVar[str] = "test-no-fallback"

        def min_opset(self) -> int:
            return MAX_OPSET + 5

    with pytest.raises(QuantizationError, match=r"opset 12 is too old \(needs >= \d+\) and onnx's version conv"):
        prepare(hasten.load(make_mlp(opset=12)), NoFallback())


def test_preparation_is_recorded_in_the_quantised_report(thirdparty):
    result = quantize(thirdparty, Int8DynamicConfig())
    assert result.report["prepare"]["folded_nodes"] == 4 and result.report["prepare"]["opset_final"] == 12


# -- int8 on what preparation exposes -----------------------------------------------------------------
def _dq_of(proto: onnx.ModelProto, node_name: str, index: int):
    """(int8 weight, scale, axis) of the DequantizeLinear feeding input `index` of node `node_name`."""
    producer = {o: n for n in proto.graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    node = next(n for n in proto.graph.node if n.name == node_name)
    dq = producer[node.input[index]]
    assert dq.op_type == "DequantizeLinear"
    axis = next((a.i for a in dq.attribute if a.name == "axis"), None)
    return inits[dq.input[0]], inits[dq.input[1]], axis


def test_static_int8_weights_and_axes_of_conv_reshaped_matmul_and_gemm_transb(thirdparty):
    calib = Samples({"x": thirdparty_images(16, 0)})
    result = quantize(thirdparty, Int8StaticConfig(), calib)
    assert sorted(result.report["static"]) == ["conv", "head", "proj"]
    proto = result.model.proto()
    onnx.checker.check_model(proto, full_check=True)
    q, scale, axis = _dq_of(proto, "conv", 1)
    assert q.shape == (8, 3, 3, 3) and scale.shape == (8,) and axis == 0  # output channels
    q, scale, axis = _dq_of(proto, "proj", 1)
    assert q.shape == (8, 16) and scale.shape == (16,) and axis == 1  # W[K, N]: one scale per output column
    q, scale, axis = _dq_of(proto, "head", 1)
    assert q.shape == (THIRDPARTY_CLASSES, 16) and scale.shape == (THIRDPARTY_CLASSES,) and axis == 0  # transB=1
    # every output channel reaches the grid's edge (127, or 63/64 with 7-bit weights on a saturating
    # int8 ISA): its scale is its own, so the axis is the output dim, not the reduction dim
    assert (np.abs(q).max(axis=1) >= np.abs(q).max() - 1).all()
    for x in _fresh(3):
        assert sqnr_db(_run(result.model, x), _run(thirdparty, x)) > 25.0


def test_per_tensor_static_int8_stays_at_opset_12_with_scalar_bias_scales(thirdparty):
    """Per-tensor needs no upgrade, so every DequantizeLinear (the int32 biases too) must be opset-12 valid:
    a scalar scale and no `axis` (ppocr-rec's per-tensor candidates failed on a bias DequantizeLinear's axis)."""
    calib = Samples({"x": thirdparty_images(16, 0)})
    result = quantize(thirdparty, Int8StaticConfig(per_channel=False), calib)
    proto = result.model.proto()
    assert result.model.opset == 12
    onnx.checker.check_model(proto, full_check=True)
    q, scale, axis = _dq_of(proto, "conv", 2)  # the bias (BatchNorm folded into it)
    assert q.dtype == np.int32 and q.shape == (8,) and scale.shape == () and axis is None
    for x in _fresh(5):
        assert sqnr_db(_run(result.model, x), _run(thirdparty, x)) > 25.0


def test_gemm_without_transb_gets_per_channel_axis_1():
    rng = np.random.default_rng(0)
    from onnx import TensorProto, helper

    w = (rng.standard_normal((16, 6)) * 0.3).astype(np.float32)  # [in, out]
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(6, np.float32), "b")])
    model = hasten.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    calib = Samples({"x": rng.standard_normal((16, 16)).astype(np.float32)})
    result = quantize(model, Int8StaticConfig(), calib)
    q, scale, axis = _dq_of(result.model.proto(), "fc", 1)
    assert q.shape == (16, 6) and scale.shape == (6,) and axis == 1
    x = rng.standard_normal((8, 16)).astype(np.float32)
    ref = run_samples(get_backend("onnxruntime").compile(model), Samples({"x": x}))["y"]
    out = run_samples(get_backend("onnxruntime").compile(result.model), Samples({"x": x}))["y"]
    assert sqnr_db(out, ref) > 25.0


def test_dynamic_int8_quantises_conv_and_the_folded_weights(thirdparty):
    result = quantize(thirdparty, Int8DynamicConfig())
    hist = result.model.op_histogram()
    assert hist.get("ConvInteger") == 1 and hist.get("MatMulInteger", 0) >= 1
    onnx.checker.check_model(result.model.proto(), full_check=True)
    for x in _fresh(4):
        assert sqnr_db(_run(result.model, x), _run(thirdparty, x)) > 25.0


def test_direct_static_quantisation_with_shared_statistics_upgrades_the_opset_too(thirdparty):
    """Sensitivity and mixed precision call quantize_static with statistics of the graph they were given."""
    from hasten.backends import backend_class
    from hasten.passes import default_pipeline
    from hasten.quantize import collect_stats, quantize_static
    from hasten.quantize.graph import inferred_proto
    from hasten.quantize.int8 import stats_tensors
    from hasten.quantize.qdq import name_nodes

    model = default_pipeline(backend_class("openvino").domains)(thirdparty).model  # weights folded by the graph passes, still opset 12
    assert model.opset == 12
    calib = Samples({"x": thirdparty_images(16, 0)})
    config = Int8StaticConfig()
    stats = collect_stats(model, calib, tensors=stats_tensors(name_nodes(inferred_proto(model)), config))
    result = quantize_static(model, config, calib, nodes_to_exclude=["head"], stats=stats)
    assert result.model.opset == 13 and sorted(result.report["static"]) == ["conv", "proj"]
    onnx.checker.check_model(result.model.proto(), full_check=True)
    x = thirdparty_images(2, 9)
    assert sqnr_db(_run(result.model, x), _run(thirdparty, x)) > 25.0
