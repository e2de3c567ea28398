"""The search's Evaluator on outputs whose axis 0 is not the batch: a CTC reader's (T, 1, C) logits."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hasten
from hasten.backends import get_backend
from hasten.data import Samples
from hasten.measure.accuracy import CallableMetric, get_metric
from hasten.search.budget import Budget
from hasten.search.evaluate import Evaluator

T, C = 5, 7


def _sequence_model(scale: float = 1.0) -> hasten.Model:
    """x[1, 4] -> MatMul -> [1, T*C] -> Reshape [T, 1, C]: one item gives T rows on axis 0."""
    w = (np.random.default_rng(0).standard_normal((4, T * C)) * scale).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="fc"),
             helper.make_node("Reshape", ["m", "shape"], ["y"], name="to_sequence")]
    graph = helper.make_graph(nodes, "seq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [T, 1, C])],
                              [numpy_helper.from_array(w, "w"),
                               numpy_helper.from_array(np.array([T, 1, C], np.int64), "shape")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(proto)
    return hasten.load(proto)


def _per_item_argmax(candidate, reference, labels):
    """A labelled metric that needs the items: (n*T, 1, C) -> (n, T) class readings vs the labels."""
    n = len(labels)
    reading = np.asarray(candidate).reshape(n, T, C).argmax(-1)
    return float((reading == labels).all(axis=1).mean())


@pytest.fixture(scope="module")
def evaluation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    model = _sequence_model()
    session = get_backend("onnxruntime").compile(model)
    labels = np.stack([session.run({"x": item[None]})["y"].reshape(T, C).argmax(-1) for item in x])
    samples = Samples({"x": x}, labels=labels)
    metrics = [CallableMetric(_per_item_argmax), get_metric("cosine")]
    ev = Evaluator(model, samples, metrics, Budget.build(metrics, 0.5), subset_size=4)
    ev.set_reference("onnxruntime", session)
    return ev, session


def test_rows_per_item_come_from_the_reference(evaluation):
    ev, _ = evaluation
    assert ev.rows == T and ev.subset_size == 4
    assert ev.baseline_scores("onnxruntime")["_per_item_argmax"].mean == 1.0


@pytest.mark.parametrize("full", [False, True])
def test_subset_and_full_scores_slice_items_not_rows(evaluation, full):
    ev, session = evaluation
    same = ev.evaluate(session, "onnxruntime", full=full)
    assert same.items == (12 if full else 4) and same.within and same.drops["cosine"] == pytest.approx(0, abs=1e-6)
    other = get_backend("onnxruntime").compile(_sequence_model(scale=-1.0))  # every reading changes
    worse = ev.evaluate(other, "onnxruntime", full=full)
    assert worse.drops["_per_item_argmax"] > 0.5 and not worse.within
