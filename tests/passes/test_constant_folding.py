"""constant_folding: constant sub-expressions become initializers; limits are respected."""

from __future__ import annotations

import numpy as np
from onnx import helper

from hasten.passes import get_pass

from .helpers import assert_same_outputs, make_model, op_types, random_feeds, vinfo

RNG = np.random.default_rng(0)


def _foldable():
    """y = x @ Transpose(Reshape(w)) + Sqrt(c) * 2, where everything but x is constant."""
    inits = {"w": RNG.standard_normal(24).astype(np.float32),
             "shape": np.array([4, 6], np.int64),
             "c": RNG.uniform(0.5, 2.0, 4).astype(np.float32),
             "two": np.array(2.0, np.float32)}
    nodes = [helper.make_node("Reshape", ["w", "shape"], ["w2"]),
             helper.make_node("Transpose", ["w2"], ["wt"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "wt"], ["mm"]),
             helper.make_node("Sqrt", ["c"], ["sc"]),
             helper.make_node("Mul", ["sc", "two"], ["bias"]),
             helper.make_node("Add", ["mm", "bias"], ["y"])]
    return make_model(nodes, [vinfo("x", ["batch", 6])], [vinfo("y", ["batch", 4])], inits)


def test_constant_folding_structure_and_numbers():
    model = _foldable()
    result = get_pass("constant_folding")(model)
    assert result.modified
    assert op_types(result.model) == ["MatMul", "Add"]
    inits = result.model.graph.initializers
    assert len(inits) == 2
    folded_w = next(v for v in inits.values() if v.shape.numpy() == (6, 4)).const_value.numpy()
    w = model.graph.initializers["w"].const_value.numpy()
    np.testing.assert_array_equal(folded_w, w.reshape(4, 6).T)
    assert result.stats == {"nodes_removed": 4}
    for seed in (1, 2):
        assert_same_outputs(model, result.model, random_feeds(model, seed=seed, dims={"batch": 5}))
    assert len(model.graph) == 6  # input untouched


def test_constant_folding_respects_size_limit():
    model = _foldable()
    result = get_pass("constant_folding", input_size_limit=2)(model)
    # every constant here has more than 2 elements: nothing folds
    assert result.modified is False and result.model is model
    assert op_types(result.model) == ["Reshape", "Transpose", "MatMul", "Sqrt", "Mul", "Add"]


def test_constant_folding_noop():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    model = make_model(nodes, [vinfo("x", ["batch", 3])], [vinfo("y", ["batch", 2])],
                       {"w": RNG.standard_normal((3, 2)).astype(np.float32)})
    fp = model.fingerprint()
    result = get_pass("constant_folding")(model)
    assert result.modified is False and result.model is model and model.fingerprint() == fp
