"""matmul_add_to_gemm: MatMul + constant bias on 2-D activations becomes Gemm; nothing else changes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from hasten.passes import get_pass

from .helpers import assert_same_outputs, make_model, op_types, random_feeds, vinfo

RNG = np.random.default_rng(0)


def mlp(bias_shape=(4,), bias_first=False, x_shape=("batch", 6), relu_first=False):
    inits = {"w": RNG.standard_normal((6, 4)).astype(np.float32),
             "b": RNG.standard_normal(bias_shape).astype(np.float32)}
    nodes = []
    a = "x"
    if relu_first:  # the MatMul input then has no shape in the graph: inference must find it
        nodes.append(helper.make_node("Relu", ["x"], ["xr"]))
        a = "xr"
    nodes += [helper.make_node("MatMul", [a, "w"], ["m"], name="mm"),
              helper.make_node("Add", ["b", "m"] if bias_first else ["m", "b"], ["y"])]
    out_shape = [*x_shape[:-1], 4]
    return make_model(nodes, [vinfo("x", list(x_shape))], [vinfo("y", out_shape)], inits)


@pytest.mark.parametrize("bias_shape,bias_first,relu_first",
                         [((4,), False, False), ((1, 4), True, False), ((4,), False, True), ((), False, False)])
def test_matmul_add_becomes_gemm(bias_shape, bias_first, relu_first):
    model = mlp(bias_shape, bias_first, relu_first=relu_first)
    result = get_pass("matmul_add_to_gemm")(model)
    assert result.modified and result.stats == {"gemm": 1}
    assert op_types(result.model) == (["Relu", "Gemm"] if relu_first else ["Gemm"])
    gemm = result.model.graph[-1]
    assert [v.name for v in gemm.inputs[1:]] == ["w", "b"] and not gemm.attributes
    assert result.model.outputs[0].name == "y"
    for seed in (1, 2):
        assert_same_outputs(model, result.model, random_feeds(model, seed, {"batch": 5}))


def test_static_full_bias_fuses():
    model = mlp(bias_shape=(3, 4), x_shape=(3, 6))
    result = get_pass("matmul_add_to_gemm")(model)
    assert op_types(result.model) == ["Gemm"]
    assert_same_outputs(model, result.model, random_feeds(model, 3))


@pytest.mark.parametrize("kwargs", [
    {"x_shape": ("batch", "seq", 6)},          # 3-D activations: left to the runtime
    {"bias_shape": (3, 4)},                    # (M, N) bias with a dynamic M
])
def test_noop_cases(kwargs):
    model = mlp(**kwargs)
    fp = model.fingerprint()
    result = get_pass("matmul_add_to_gemm")(model)
    assert result.modified is False and result.model is model and model.fingerprint() == fp
    assert op_types(result.model) == ["MatMul", "Add"]


def test_matmul_with_second_consumer_is_kept():
    inits = {"w": RNG.standard_normal((6, 4)).astype(np.float32), "b": np.ones(4, np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"]),
             helper.make_node("Relu", ["m"], ["z"])]
    model = make_model(nodes, [vinfo("x", [2, 6])], [vinfo("y", [2, 4]), vinfo("z", [2, 4])], inits)
    assert get_pass("matmul_add_to_gemm")(model).modified is False
