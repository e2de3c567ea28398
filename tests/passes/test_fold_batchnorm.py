"""fold_batchnorm: BatchNormalization folded into Conv / ConvTranspose / Gemm, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from hasten.passes import get_pass
from hasten.passes.fold_batchnorm import check

from .helpers import assert_same_outputs, make_model, op_types, random_feeds, vinfo


def _bn_params(rng, c: int, prefix: str = "bn") -> dict[str, np.ndarray]:
    return {f"{prefix}_scale": rng.uniform(0.5, 2.0, c).astype(np.float32),
            f"{prefix}_bias": rng.standard_normal(c).astype(np.float32),
            f"{prefix}_mean": rng.standard_normal(c).astype(np.float32),
            f"{prefix}_var": rng.uniform(0.5, 2.0, c).astype(np.float32)}


def _bn_node(x: str, y: str, prefix: str = "bn", eps: float = 1e-3):
    return helper.make_node("BatchNormalization", [x] + [f"{prefix}_{k}" for k in ("scale", "bias", "mean", "var")],
                            [y], epsilon=eps)


def conv_bn(with_bias: bool, seed: int = 0, group: int = 1):
    rng = np.random.default_rng(seed)
    inits = {"w": rng.standard_normal((8, 4 // group, 3, 3)).astype(np.float32), **_bn_params(rng, 8)}
    conv_in = ["x", "w"]
    if with_bias:
        inits["b"] = rng.standard_normal(8).astype(np.float32)
        conv_in.append("b")
    nodes = [helper.make_node("Conv", conv_in, ["c"], pads=[1, 1, 1, 1], group=group, name="conv"),
             _bn_node("c", "bn_out"), helper.make_node("Relu", ["bn_out"], ["y"])]
    return make_model(nodes, [vinfo("x", ["batch", 4, 6, 6])], [vinfo("y", ["batch", 8, 6, 6])], inits)


def conv_transpose_bn(seed: int = 0):
    rng = np.random.default_rng(seed)
    inits = {"w": rng.standard_normal((4, 3, 2, 2)).astype(np.float32),
             "b": rng.standard_normal(6).astype(np.float32), **_bn_params(rng, 6)}
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], group=2, strides=[2, 2]),
             _bn_node("c", "y")]
    return make_model(nodes, [vinfo("x", ["batch", 4, 3, 3])], [vinfo("y", ["batch", 6, 6, 6])], inits)


def gemm_bn(trans_b: int, bias_shape: tuple | None, seed: int = 0):
    rng = np.random.default_rng(seed)
    w_shape = (5, 7) if trans_b else (7, 5)
    inits = {"w": rng.standard_normal(w_shape).astype(np.float32), **_bn_params(rng, 5)}
    gemm_in = ["x", "w"]
    if bias_shape is not None:
        inits["c"] = rng.standard_normal(bias_shape).astype(np.float32)
        gemm_in.append("c")
    nodes = [helper.make_node("Gemm", gemm_in, ["g"], transB=trans_b, alpha=0.75, beta=1.5),
             _bn_node("g", "y")]
    return make_model(nodes, [vinfo("x", [4, 7])], [vinfo("y", [4, 5])], inits)


@pytest.mark.parametrize("with_bias", [True, False])
def test_conv_bn_folds(with_bias):
    model = conv_bn(with_bias)
    result = get_pass("fold_batchnorm")(model)
    assert result.modified and result.stats == {"conv": 1}
    assert op_types(result.model) == ["Conv", "Relu"]
    conv = result.model.graph[0]
    assert len(conv.inputs) == 3 and list(conv.attributes["pads"].as_ints()) == [1, 1, 1, 1]
    assert len(result.model.graph.initializers) == 2  # folded W and B only
    assert "BatchNormalization" in op_types(model)  # input untouched
    for seed in (11, 12):
        assert_same_outputs(model, result.model, random_feeds(model, seed, {"batch": 2}))


def test_grouped_conv_and_conv_transpose_fold():
    for model, op in ((conv_bn(True, seed=3, group=2), "conv"), (conv_transpose_bn(seed=4), "convtranspose")):
        result = get_pass("fold_batchnorm")(model)
        assert result.stats == {op: 1}
        assert "BatchNormalization" not in op_types(result.model)
        assert_same_outputs(model, result.model, random_feeds(model, 13, {"batch": 2}))


@pytest.mark.parametrize("trans_b,bias_shape", [(0, (5,)), (1, (1, 5)), (1, None), (0, (4, 5)), (1, (4, 1))])
def test_gemm_bn_folds(trans_b, bias_shape):
    model = gemm_bn(trans_b, bias_shape)
    result = get_pass("fold_batchnorm")(model)
    assert result.modified and result.stats == {"gemm": 1}
    assert op_types(result.model) == ["Gemm"]
    gemm = result.model.graph[0]
    assert "beta" not in gemm.attributes and gemm.attributes["alpha"].as_float() == pytest.approx(0.75)
    assert gemm.attributes.get("transB") is None or gemm.attributes["transB"].as_int() == trans_b
    assert_same_outputs(model, result.model, random_feeds(model, 14))


def test_folded_weights_match_the_formula():
    model = conv_bn(True, seed=5)
    result = get_pass("fold_batchnorm")(model)
    inits = {k: v.const_value.numpy().astype(np.float64) for k, v in model.graph.initializers.items()}
    s = inits["bn_scale"] / np.sqrt(inits["bn_var"] + float(np.float32(1e-3)))
    conv = result.model.graph[0]
    w_new, b_new = conv.inputs[1].const_value.numpy(), conv.inputs[2].const_value.numpy()
    np.testing.assert_array_equal(w_new, (inits["w"] * s[:, None, None, None]).astype(np.float32))
    np.testing.assert_array_equal(b_new, (s * (inits["b"] - inits["bn_mean"]) + inits["bn_bias"])
                                  .astype(np.float32))


def test_shared_conv_output_is_not_folded():
    """The Conv output also feeds a Relu: folding would change what the Relu sees."""
    rng = np.random.default_rng(6)
    inits = {"w": rng.standard_normal((2, 3, 1, 1)).astype(np.float32), **_bn_params(rng, 2)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), _bn_node("c", "y"),
             helper.make_node("Relu", ["c"], ["z"])]
    model = make_model(nodes, [vinfo("x", [1, 3, 4, 4])], [vinfo("y", [1, 2, 4, 4]), vinfo("z", [1, 2, 4, 4])],
                       inits)
    bn = model.graph[1]
    assert check(bn) == "Conv output has other consumers"
    result = get_pass("fold_batchnorm")(model)
    assert result.modified is False and result.model is model


def test_noop_without_foldable_batchnorm():
    """BatchNormalization after a Relu (no linear producer) and a graph with a non-constant mean."""
    rng = np.random.default_rng(7)
    inits = {"w": rng.standard_normal((2, 3, 1, 1)).astype(np.float32), **_bn_params(rng, 2)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             _bn_node("r", "y")]
    model = make_model(nodes, [vinfo("x", [1, 3, 4, 4])], [vinfo("y", [1, 2, 4, 4])], inits)
    fp = model.fingerprint()
    assert check(model.graph[2]) == "input is not produced by Conv, ConvTranspose or Gemm"
    result = get_pass("fold_batchnorm")(model)
    assert result.modified is False and result.model is model and model.fingerprint() == fp

    inits.pop("bn_mean")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), _bn_node("c", "y")]
    model = make_model(nodes, [vinfo("x", [1, 3, 4, 4]), vinfo("bn_mean", [2])], [vinfo("y", [1, 2, 4, 4])],
                       inits)
    assert check(model.graph[1]) == "scale, bias, mean or var is not a constant"
    assert get_pass("fold_batchnorm")(model).modified is False
