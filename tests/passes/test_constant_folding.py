"""constant_folding: constant sub-expressions become initializers; limits are respected."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

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
    # Sqrt(c) reads more than 2 elements: it stays; the weight's Reshape -> Transpose folds at any size
    assert op_types(result.model) == ["MatMul", "Sqrt", "Mul", "Add"]
    assert_same_outputs(model, result.model, random_feeds(model, seed=3, dims={"batch": 5}))


def _weight_chain(shared: bool):
    """x @ Identity(Transpose(Reshape(Cast(fp16 constant)))); with `shared`, the fp16 constant also feeds
    a second output (so it has two readers)."""
    w = (RNG.standard_normal((4, 6)) * 0.5).astype(np.float16)
    nodes = [helper.make_node("Constant", [], ["w16"], value=numpy_helper.from_array(w.reshape(2, 12), "w16")),
             helper.make_node("Cast", ["w16"], ["w32"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["w32", "shape"], ["w2"]),
             helper.make_node("Transpose", ["w2"], ["wt"], perm=[1, 0]),
             helper.make_node("Identity", ["wt"], ["wi"]),
             helper.make_node("MatMul", ["x", "wi"], ["y"])]
    outputs = [vinfo("y", ["batch", 4])]
    if shared:
        nodes.append(helper.make_node("Cast", ["w16"], ["raw"], to=TensorProto.FLOAT))
        outputs.append(vinfo("raw", [2, 12]))
    return make_model(nodes, [vinfo("x", ["batch", 6])], outputs, {"shape": np.array([4, 6], np.int64)}), w


def test_weight_layout_chain_folds_into_one_initializer_at_any_size():
    model, w = _weight_chain(shared=False)
    result = get_pass("constant_folding", input_size_limit=2, output_size_limit=2)(model)
    assert op_types(result.model) == ["MatMul"]
    weight = result.model.graph.node(0).inputs[1]
    assert weight.const_value is not None
    np.testing.assert_array_equal(weight.const_value.numpy(), w.astype(np.float32).T)
    for seed in (4, 5):
        assert_same_outputs(model, result.model, random_feeds(model, seed=seed, dims={"batch": 7}),
                            rtol=0, atol=0)


def test_weight_layout_folding_keeps_the_size_limit_for_shared_weights():
    model, _ = _weight_chain(shared=True)
    result = get_pass("constant_folding", input_size_limit=2, output_size_limit=2)(model)
    # the fp16 constant has two readers: its Casts would duplicate it beyond the limits, so they stay
    assert op_types(result.model).count("Cast") == 2


def test_constant_folding_noop():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    model = make_model(nodes, [vinfo("x", ["batch", 3])], [vinfo("y", ["batch", 2])],
                       {"w": RNG.standard_normal((3, 2)).astype(np.float32)})
    fp = model.fingerprint()
    result = get_pass("constant_folding")(model)
    assert result.modified is False and result.model is model and model.fingerprint() == fp
