"""infer_shapes: concrete input dims from the config, a concrete shape on every value, same numbers."""

from __future__ import annotations

import numpy as np
from onnx import helper

from hasten.passes import get_pass

from .helpers import assert_same_outputs, make_model, random_feeds, vinfo


def _dynamic_mlp():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["r"]),
             helper.make_node("Add", ["r", "b"], ["y"])]
    return make_model(nodes, [vinfo("x", ["batch", "seq", 8])], [vinfo("y", ["batch", "seq", 4])],
                      {"w": rng.standard_normal((8, 4)).astype(np.float32),
                       "b": rng.standard_normal(4).astype(np.float32)})


def test_infer_shapes_with_overrides():
    model = _dynamic_mlp()
    result = get_pass("infer_shapes", overrides={"batch": 3}, input_shapes=None)(model)
    assert result.modified
    new = result.model
    assert new.inputs[0].shape == (3, "seq", 8)  # seq was not sized: it stays dynamic, never a guess
    assert new.outputs[0].shape == (3, "seq", 4)
    shapes = {o.name: tuple(str(d) for d in o.shape) for n in new.graph for o in n.outputs}
    assert shapes == {"m": ("3", "seq", "4"), "r": ("3", "seq", "4"), "y": ("3", "seq", "4")}
    assert model.inputs[0].shape == ("batch", "seq", 8)  # input untouched
    assert new.lineage[-1].startswith("infer_shapes(")
    for seq in (5, 40):
        assert_same_outputs(model, new, random_feeds(new, seed=1, dims={"seq": seq}))


def test_infer_shapes_without_config_keeps_every_dynamic_dim():
    model = _dynamic_mlp()
    result = get_pass("infer_shapes")(model)
    new = result.model
    assert new.inputs[0].shape == ("batch", "seq", 8) and new.outputs[0].shape == ("batch", "seq", 4)
    shapes = {o.name: tuple(str(d) for d in o.shape) for n in new.graph for o in n.outputs}
    assert shapes["m"] == ("batch", "seq", "4")
    for dims in ({"batch": 1, "seq": 3}, {"batch": 4, "seq": 17}):
        assert_same_outputs(model, new, random_feeds(new, seed=2, dims=dims))


def test_infer_shapes_full_input_shape_and_noop():
    model = _dynamic_mlp()
    shaped = get_pass("infer_shapes", input_shapes={"x": (2, 5, 8)})(model)
    assert shaped.modified and shaped.model.outputs[0].shape == (2, 5, 4)
    again = get_pass("infer_shapes", input_shapes={"x": (2, 5, 8)})(shaped.model)
    assert again.modified is False and again.model is shaped.model
