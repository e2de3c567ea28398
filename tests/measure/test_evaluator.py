"""The one evaluator: scores, drops against the reference's own scores, SQNR, and subsets by rows."""

from __future__ import annotations

import numpy as np
import pytest
from modelkit import make_mlp

import hasten
from hasten.backends import get_backend
from hasten.data import Samples
from hasten.measure.evaluator import Evaluator, outputs_sqnr_db


def test_drops_are_against_the_references_own_score_with_labels():
    x = np.zeros((4, 1), np.float32)
    ref = {"y": np.array([[1, 0], [0, 1], [1, 0], [1, 0]], np.float32)}  # argmax 0, 1, 0, 0
    labels = np.array([0, 1, 1, 0])  # the reference gets 3 of 4 right
    ev = Evaluator(Samples({"x": x}, labels=labels), ["top1", "cosine"])
    ev.set_reference(ref)
    assert ev.baseline()["top1"].mean == pytest.approx(0.75)
    worse = {"y": np.array([[0, 1], [0, 1], [1, 0], [1, 0]], np.float32)}  # 2 of 4 right
    judged = ev.judge(worse)
    assert judged.scores["top1"].mean == pytest.approx(0.5)
    assert judged.drops["top1"] == pytest.approx(0.25)
    assert judged.drops["cosine"] == pytest.approx(0.25)  # one item of four at cosine 0
    assert judged.sqnr_db == pytest.approx(outputs_sqnr_db(worse, ref))
    assert ev.judge(ref).drops == {"top1": 0.0, "cosine": 0.0}
    first_two = ev.judge(worse["y"][:2], n=2)  # a subset: the first two items and their labels
    assert first_two.drops["top1"] == pytest.approx(0.5) and np.isnan(first_two.sqnr_db)


def test_rows_per_item_slice_the_reference():
    """A (T, 1, C) output concatenates T rows per item: the first n items are the first T*n rows."""
    ref = np.random.default_rng(0).standard_normal((3 * 5, 4)).astype(np.float32)
    ev = Evaluator(Samples({"x": np.zeros((5, 1), np.float32)}), ["cosine"])
    ev.set_reference({"y": ref})
    assert ev.rows == 3 and ev.reference_output(2).shape == (6, 4)
    assert ev.judge(ref[:6], n=2).drops["cosine"] == pytest.approx(0.0, abs=1e-12)


def test_models_and_sessions_run_on_the_chosen_backend(mlp):
    samples = Samples.synthetic(mlp, n=6, seed=1)
    ev = Evaluator(samples, ["cosine"], backend=get_backend("openvino"))
    ev.set_reference(mlp)
    judged = ev.measure(get_backend("onnxruntime").compile(mlp))
    assert judged.scores["cosine"].worst > 0.99999 and judged.sqnr_db > 60
    other = hasten.load(make_mlp(seed=9))
    assert ev.measure(other).drops["cosine"] > 0.05
    with pytest.raises(RuntimeError, match="set_reference"):
        Evaluator(samples, ["cosine"]).judge({"y": np.zeros((6, 8), np.float32)})
