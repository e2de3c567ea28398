"""cleanup: Dropout/Identity removal, dead code, unused initializers, topological order."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from hasten.passes import get_pass

from .helpers import assert_same_outputs, make_model, op_types, random_feeds, vinfo

RNG = np.random.default_rng(0)


def _messy():
    """x -> Identity -> Dropout -> Relu -> Identity -> Add(b) -> y, with a dead Mul branch, an unused
    initializer, and the nodes listed out of order."""
    inits = {"b": RNG.standard_normal(4).astype(np.float32),
             "unused": RNG.standard_normal(4).astype(np.float32),
             "ratio": np.array(0.5, np.float32)}
    nodes = [
        helper.make_node("Relu", ["d"], ["r"], name="relu"),
        helper.make_node("Identity", ["x"], ["i0"], name="id0"),
        helper.make_node("Dropout", ["i0", "ratio"], ["d"], name="drop"),
        helper.make_node("Identity", ["r"], ["i1"], name="id1"),
        helper.make_node("Mul", ["x", "x"], ["dead"], name="dead_mul"),
        helper.make_node("Add", ["i1", "b"], ["y"], name="add"),
    ]
    return make_model_unsorted(nodes, [vinfo("x", ["batch", 4])], [vinfo("y", ["batch", 4])], inits)


def make_model_unsorted(nodes, inputs, outputs, inits):
    # onnx.checker rejects unsorted graphs, so build in order and shuffle in the IR afterwards
    order = {"id0": 0, "drop": 1, "relu": 2, "id1": 3, "dead_mul": 4, "add": 5}
    model = make_model(sorted(nodes, key=lambda n: order[n.name]), inputs, outputs, inits)
    graph = model.graph
    relu = next(n for n in graph if n.name == "relu")
    graph.remove(relu)
    graph.insert_before(graph[0], relu)  # Relu now comes before its producer
    return model


def test_cleanup_structure_and_numbers():
    model = _messy()
    assert op_types(model)[0] == "Relu"
    result = get_pass("cleanup")(model)
    assert result.modified
    assert op_types(result.model) == ["Relu", "Add"]
    assert sorted(result.model.graph.initializers) == ["b"]
    assert result.stats == {"dropout_removed": 1, "identity_removed": 3, "dead_nodes_removed": 1,
                            "initializers_removed": 2}
    assert result.model.lineage[-1] == "cleanup()"
    for seed in (1, 2):
        assert_same_outputs(model, result.model, random_feeds(model, seed=seed))
    # the input is untouched
    assert len(model.graph) == 6 and len(model.graph.initializers) == 3


def test_cleanup_keeps_needed_nodes():
    """A Dropout whose mask is used stays; an Identity from graph input to graph output stays."""
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"]),
             helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["d", "m"], ["y"]),
             helper.make_node("Identity", ["x"], ["z"])]
    model = make_model(nodes, [vinfo("x", [2, 3])], [vinfo("y", [2, 3]), vinfo("z", [2, 3])])
    result = get_pass("cleanup")(model)
    assert result.modified is False and result.model is model
    assert op_types(result.model) == ["Dropout", "Cast", "Add", "Identity"]


def test_cleanup_training_dropout_kept():
    inits = {"ratio": np.array(0.5, np.float32), "train": np.array(True)}
    nodes = [helper.make_node("Dropout", ["x", "ratio", "train"], ["y"])]
    model = make_model(nodes, [vinfo("x", [2, 3])], [vinfo("y", [2, 3])], inits)
    assert get_pass("cleanup")(model).modified is False


def test_cleanup_noop():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "b"], ["y"])]
    model = make_model(nodes, [vinfo("x", [2, 4])], [vinfo("y", [2, 4])],
                       {"b": np.ones(4, np.float32)})
    fp = model.fingerprint()
    result = get_pass("cleanup")(model)
    assert result.modified is False and result.stats == {}
    assert result.model is model and result.model.fingerprint() == fp
