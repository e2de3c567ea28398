"""The numpy model of the saturating int8 kernel (x86 without VNNI) and the 7-bit overflow fix built on it.

The model's tests are ISA-independent by construction (pure numpy); the rule's tests check the written
models (weights on the 7-bit grid exactly where chosen) and their real SQNR on whichever host runs them.
"""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from quantize.test_int8 import _model, block_samples, image_samples, run, small_cnn, transformer_block

import hasten.measure.isa as isa
from hasten.data import Samples
from hasten.errors import QuantizationError
from hasten.measure.accuracy import sqnr_db
from hasten.quantize import Int8DynamicConfig, Int8StaticConfig, quantize
from hasten.quantize.overflow import resolve
from hasten.quantize.qdq import quantize_weight
from hasten.quantize.saturation import (
    as_kernel_input,
    compare_layer,
    conv_rows,
    conv_weight_matrix,
    pair_sums,
    saturating_matmul,
    saturation_rate,
)


def brute_force(a, w):
    """The kernel, one int16-saturated pair at a time (odd K padded with a zero)."""
    n, k = a.shape
    out = np.zeros((n, w.shape[1]), dtype=np.int64)
    for i in range(n):
        for j in range(w.shape[1]):
            for p in range(0, k, 2):
                s = int(a[i, p]) * int(w[p, j]) + (int(a[i, p + 1]) * int(w[p + 1, j]) if p + 1 < k else 0)
                out[i, j] += min(32767, max(-32768, s))
    return out


@pytest.mark.parametrize("k", [1, 7, 16, 33])
def test_saturating_matmul_equals_a_brute_force_int16_loop(k):
    rng = np.random.default_rng(k)
    a = rng.integers(0, 256, (9, k), dtype=np.uint8)
    a[0] = 255
    w = rng.integers(-128, 128, (k, 5)).astype(np.int8)
    w[:, 0], w[:, 1] = 127, -128  # extremes: every pair of row 0 clips in columns 0 and 1
    expected = brute_force(a, w)
    np.testing.assert_array_equal(saturating_matmul(a, w), expected)
    sums = pair_sums(a, w).astype(np.int64)
    np.testing.assert_array_equal(np.clip(sums, -32768, 32767).sum(axis=1), expected)
    assert saturation_rate(a, w) == pytest.approx(((sums > 32767) | (sums < -32768)).mean())
    if k > 1:
        assert not np.array_equal(expected, a.astype(np.int64) @ w.astype(np.int64))


def test_eight_bit_weights_saturate_and_seven_bit_weights_never_do():
    a = np.full((4, 64), 255, dtype=np.uint8)
    w8 = np.full((64, 3), 127, dtype=np.int8)
    assert saturation_rate(a, w8) == 1.0
    assert (saturating_matmul(a, w8) == 32 * 32767).all()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (256, 64), dtype=np.uint8)
    a[:8] = 255
    for w7 in (np.full((64, 3), 63, np.int8), np.full((64, 3), -64, np.int8),
               rng.integers(-64, 64, (64, 16)).astype(np.int8)):  # the whole 7-bit range, worst cases included
        assert saturation_rate(a, w7) == 0.0
        np.testing.assert_array_equal(saturating_matmul(a, w7), a.astype(np.int64) @ w7.astype(np.int64))


def test_signed_activations_reach_the_kernel_shifted_by_128():
    q = np.array([-128, -1, 0, 127], dtype=np.int8)
    a, zp = as_kernel_input(q, 3, "int8")
    assert a.dtype == np.uint8 and a.tolist() == [0, 127, 128, 255] and int(zp) == 131
    a, zp = as_kernel_input(q.astype(np.uint8), 7, "uint8")
    assert a.tolist() == [128, 255, 0, 127] and int(zp) == 7


def _saturating_layer(seed=0):
    """Activations near the top of uint8 and weights with runs of large same-sign values."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.6, 1.0, (512, 64)).astype(np.float32)
    w = rng.normal(0, 0.1, (64, 32)).astype(np.float32)
    w[:, :8] = np.abs(w[:, :8]) + 0.3
    return x, w


def _parts(x, w):
    q8, s8, _ = quantize_weight(w, 1)
    q7, s7, _ = quantize_weight(w, 1, reduce_range=True)
    return [(x, 1.0 / 255, 0, w, q8, s8, q7, s7)]


def test_sqnr_of_the_saturating_product_is_high_with_seven_bits_and_low_without():
    x, w = _saturating_layer()
    m = compare_layer(_parts(x, w))
    assert m.rate > 0.01 and m.seven_bit
    assert m.sqnr_8bit_db < 25.0 and m.sqnr_7bit_db > 40.0
    small = compare_layer(_parts(x * 0.1, w))  # activations in [0, 25]: nothing clips, 8 bits win
    assert small.rate == 0.0 and not small.seven_bit and small.sqnr_8bit_db > small.sqnr_7bit_db


def test_conv_rows_and_weight_matrix_reproduce_a_real_conv():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 7, 6)).astype(np.float32)
    w = rng.normal(size=(6, 2, 3, 2)).astype(np.float32)
    attrs = dict(strides=[2, 1], pads=[1, 0, 2, 1], dilations=[1, 2], group=2)
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    ref = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    rows = conv_rows(x, (3, 2), attrs["strides"], attrs["pads"], attrs["dilations"], group=2)
    mats = conv_weight_matrix(w, group=2)
    n, _, oh, ow = ref.shape
    got = np.concatenate([(r @ m).reshape(n, oh, ow, -1) for r, m in zip(rows, mats, strict=True)], axis=-1)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), ref, rtol=1e-5, atol=1e-5)
    assert rows[0].shape[1] == 3 * 2 * 2  # K = kh * kw * C/g, input channel fastest
    np.testing.assert_array_equal(mats[0][:2, 0], w[0, :, 0, 0])


# -- the rule: which layers get 7-bit weights -------------------------------------------------------
def weight_ints(model) -> dict[str, np.ndarray]:
    """{float weight name: its int8/uint8 values} of every quantised weight in the written model."""
    g = model.proto().graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    return {name[:-len("_quantized")]: v for name, v in inits.items()
            if name.endswith("_quantized") and v.dtype in (np.int8, np.uint8)}


@pytest.fixture(scope="module")
def block():
    return transformer_block()


@pytest.fixture
def saturating_host(monkeypatch):
    monkeypatch.setattr(isa, "cpu_features", lambda: frozenset({"sse4_1", "avx", "avx2", "fma", "f16c"}))
    monkeypatch.setattr(isa.platform, "machine", lambda: "x86_64")
    assert isa.host_int8_saturates()


@pytest.fixture
def vnni_host(monkeypatch):
    monkeypatch.setattr(isa, "cpu_features", lambda: frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni"}))
    monkeypatch.setattr(isa.platform, "machine", lambda: "x86_64")
    assert not isa.host_int8_saturates()


def test_forced_fixes_put_exactly_the_chosen_weights_on_the_seven_bit_grid(block):
    calib = block_samples(32, 0)
    for fix, seven in (("all", {"w1", "w2"}), ("first", {"w1"}), ("none", set())):
        result = quantize(block, Int8StaticConfig(overflow_fix=fix), calib)
        ints = weight_ints(result.model)
        assert set(ints) == {"w1", "w2"}
        for name, q in ints.items():
            top = np.abs(q.astype(int)).max(axis=0)  # per output channel
            if name in seven:
                assert q.min() >= -64 and q.max() <= 63 and (top == 63).all()
            else:
                assert (top == 127).all()
        report = result.report["overflow_fix"]
        assert report["applied"] == fix and set(report["seven_bit"]) == {{"w1": "fc1", "w2": "fc2"}[w] for w in seven}


def test_lowering_to_onnx_runtime_ops_keeps_the_seven_bit_weights(block):
    result = quantize(block, Int8StaticConfig(ort_ops=True, overflow_fix="first"), block_samples(32, 0))
    g = result.model.proto().graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    top = {n.name: int(np.abs(inits[n.input[1]].astype(int)).max()) for n in g.node
           if n.op_type == "MatMulIntegerToFloat"}
    assert sorted(top.values()) == [63, 127]


def test_auto_picks_none_on_a_vnni_host(block, vnni_host):
    result = quantize(block, Int8StaticConfig(), block_samples(32, 0))
    assert result.report["overflow_fix"]["applied"] == "none" and result.report["overflow_fix"]["seven_bit"] == []
    assert all(np.abs(q.astype(int)).max() == 127 for q in weight_ints(result.model).values())
    assert resolve("auto", dynamic=True) == "none"


def test_auto_measures_on_a_saturating_host(block, saturating_host):
    # symmetric int8 activations of the Relu output sit in [128, 255] at the kernel: fc2 clips
    config = Int8StaticConfig(symmetric_activations=True, activation_dtype="int8")
    result = quantize(block, config, block_samples(32, 0))
    report = result.report["overflow_fix"]
    assert report["applied"] == "measured" and report["host_int8"] == "avx2-saturating"
    fc2 = report["layers"]["fc2"]
    assert fc2["rate"] > 0 and fc2["seven_bit"] and fc2["sqnr_7bit_db"] > fc2["sqnr_8bit_saturating_db"] + 5
    assert "fc2" in report["seven_bit"]
    assert np.abs(weight_ints(result.model)["w2"].astype(int)).max() == 63
    # the no-op case: small activations never clip, every layer keeps 8 bits
    quiet = quantize(block, Int8StaticConfig(per_channel=False), block_samples(32, 0))
    q = quiet.report["overflow_fix"]
    assert q["applied"] == "measured" and q["seven_bit"] == [] and all(v["rate"] == 0 for v in q["layers"].values())
    assert resolve("auto", dynamic=True) == "u8u8"


def test_measured_without_samples_falls_back_to_every_layer(block):
    from hasten.quantize import collect_stats
    from hasten.quantize.int8 import quantize_static

    stats = collect_stats(block, block_samples(16, 0))
    result = quantize_static(block, Int8StaticConfig(overflow_fix="measured"), stats=stats)
    assert result.report["overflow_fix"]["applied"] == "all" and "calibration" in result.report["overflow_fix"]["reason"]


def test_seven_bit_weights_keep_sqnr_on_this_host(block):
    """7-bit weights cannot saturate on any host: the real SQNR holds everywhere; auto holds too."""
    calib, fresh = block_samples(64, 0), block_samples(32, 1)
    ref = run(block, fresh)
    for options in (dict(), dict(symmetric_activations=True, activation_dtype="int8")):
        for fix in ("all", "auto"):
            model = quantize(block, Int8StaticConfig(overflow_fix=fix, **options), calib).model
            assert sqnr_db(run(model, fresh), ref) > 25.0, (options, fix)


def test_gptq_and_bias_correction_round_on_the_seven_bit_grid(block):
    calib = block_samples(64, 0)
    config = Int8StaticConfig(smoothquant=0.5, weight_rounding="gptq", bias_correction=True, overflow_fix="all")
    result = quantize(block, config, calib)
    assert result.report["gptq"] == ["fc1", "fc2"] and result.report["bias_corrected"] == ["fc1", "fc2"]
    ints = weight_ints(result.model)
    assert all(q.min() >= -64 and q.max() <= 63 for q in ints.values()) and len(ints) == 2
    fresh = block_samples(32, 1)
    assert sqnr_db(run(result.model, fresh), run(block, fresh)) > 25.0


def test_cnn_with_seven_bit_conv_weights():
    cnn = small_cnn()
    result = quantize(cnn, Int8StaticConfig(overflow_fix="measured"), image_samples(32, 0))
    layers = result.report["overflow_fix"]["layers"]
    assert set(layers) == {"conv1", "conv2", "fc"} and all("rate" in v for v in layers.values())
    forced = quantize(cnn, Int8StaticConfig(overflow_fix="all"), image_samples(32, 0))
    ints = weight_ints(forced.model)
    assert {"c1w", "c2w", "fcw"} <= set(ints) and all(np.abs(ints[w].astype(int)).max() == 63
                                                       for w in ("c1w", "c2w", "fcw"))
    fresh = image_samples(32, 1)
    assert sqnr_db(run(forced.model, fresh), run(cnn, fresh)) > 25.0


# -- dynamic int8 ------------------------------------------------------------------------------------
def test_dynamic_overflow_fixes(block):
    fresh = block_samples(16, 1)
    ref = run(block, fresh)
    for fix in ("none", "all", "u8u8", "measured"):
        result = quantize(block, Int8DynamicConfig(overflow_fix=fix), block_samples(16, 0))
        ints = weight_ints(result.model)
        assert set(ints) == {"w1", "w2"}
        seven = set(result.report["overflow_fix"]["seven_bit"])
        for name, node in (("w1", "fc1"), ("w2", "fc2")):
            q = ints[name]
            if fix == "u8u8":
                assert q.dtype == np.uint8
            elif node in seven:
                assert q.dtype == np.int8 and q.min() >= -64 and q.max() <= 63
            else:
                assert q.dtype == np.int8 and np.abs(q.astype(int)).max() == 127
        if fix == "all":
            assert seven == {"fc1", "fc2"}
        if fix != "none" or not isa.host_int8_saturates():  # 8-bit weights saturate here: ~21 dB on AVX2
            assert sqnr_db(run(result.model, fresh), ref) > 25.0, fix
    measured = quantize(block, Int8DynamicConfig(overflow_fix="measured"), block_samples(16, 0))
    layers = measured.report["overflow_fix"]["layers"]
    assert layers["fc1"]["seven_bit"] and layers["fc1"]["rate"] > 0  # LayerNorm outputs span the uint8 range


def test_dynamic_auto_uses_u8u8_on_a_saturating_host(block, saturating_host):
    result = quantize(block, Int8DynamicConfig())
    assert result.report["overflow_fix"]["applied"] == "u8u8"
    assert all(q.dtype == np.uint8 for q in weight_ints(result.model).values())


def test_bad_overflow_fix():
    with pytest.raises(QuantizationError, match="overflow_fix must be one of"):
        Int8StaticConfig(overflow_fix="u8u8")
    with pytest.raises(QuantizationError, match="overflow_fix must be one of"):
        Int8DynamicConfig(overflow_fix="7bit")
    assert Int8StaticConfig().overflow_fix == "auto" and Int8DynamicConfig().overflow_fix == "auto"


def test_depthwise_conv_is_not_modelled_as_saturating():
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "dw")]
    node = helper.make_node("Conv", ["x", "dw"], ["y"], group=4, pads=[1, 1, 1, 1], name="dwconv")
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])], inits)
    calib = Samples({"x": rng.random((16, 4, 6, 6), dtype=np.float32)})
    result = quantize(model, Int8StaticConfig(overflow_fix="measured"), calib)
    layer = result.report["overflow_fix"]["layers"]["dwconv"]
    assert not layer["seven_bit"] and "not a u8 x s8" in layer["reason"]


def test_attention_key_and_value_follow_the_fix():
    """Query x key^T and probabilities x value run the u8 x s8 kernel on OpenVINO (the right operand signed):
    "all" puts key and value on the 7-bit grid (scale x 127/63), "measured" measures each MatMul."""
    import torch
    from quantize.test_attention import TinyAttention

    import hasten

    x, mask = torch.randn(1, 12, 16), torch.ones(1, 12)
    model = hasten.load(TinyAttention().eval(), (x, mask))
    names = [i.name for i in model.inputs]
    rng = np.random.default_rng(0)
    calib = Samples({names[0]: rng.standard_normal((24, 12, 16)).astype(np.float32),
                     names[1]: np.ones((24, 12), np.float32)})

    def scales(result):
        g = result.model.proto().graph
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        return {n.input[0]: float(inits[n.input[1]]) for n in g.node if n.op_type == "QuantizeLinear"}

    none = quantize(model, Int8StaticConfig(attention="all", overflow_fix="none"), calib)
    forced = quantize(model, Int8StaticConfig(attention="all", overflow_fix="all"), calib)
    seven = forced.report["overflow_fix"]["attention"]["seven_bit"]
    assert len(seven) == 2 and none.report["overflow_fix"]["attention"]["seven_bit"] == []
    for t in seven:
        assert scales(forced)[t] == pytest.approx(scales(none)[t] * 127 / 63, rel=1e-6)
    others = set(none.report["attention"]) - set(seven)  # query and probabilities keep their grid
    assert others and all(scales(forced)[t] == pytest.approx(scales(none)[t]) for t in others)
    measured = quantize(model, Int8StaticConfig(attention="all", overflow_fix="measured"), calib)
    layers = measured.report["overflow_fix"]["attention"]["layers"]
    assert len(layers) == 2 and {v["tensor"] for v in layers.values()} == set(seven)
    assert all(0.0 <= v["rate"] <= 1.0 and v["sqnr_7bit_db"] > 20 for v in layers.values())
