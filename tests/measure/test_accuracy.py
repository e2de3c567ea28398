"""Metrics give known values on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from hasten.data import Samples
from hasten.errors import MetricError
from hasten.measure.accuracy import (
    SQNR,
    CosineFidelity,
    RetrievalAgreement,
    Score,
    Top1,
    evaluate,
    get_metric,
    sqnr_db,
)


def test_top1_with_labels_and_worst_class():
    logits = np.eye(4)[[0, 1, 2, 3, 0, 0]]
    labels = np.array([0, 1, 2, 3, 1, 0])
    score = Top1().score(logits, None, labels)
    assert score.mean == pytest.approx(5 / 6) and score.worst == pytest.approx(0.5)


def test_top1_against_reference():
    ref = np.eye(3)[[0, 1, 2, 2]]
    cand = np.eye(3)[[0, 1, 2, 1]]
    assert Top1().score(cand, ref).mean == pytest.approx(0.75)


def test_cosine_known_values():
    ref = np.array([[1.0, 0.0], [1.0, 1.0]])
    cand = np.array([[1.0, 1.0], [2.0, 2.0]])
    s = CosineFidelity().score(cand, ref)
    assert s.worst == pytest.approx(1 / np.sqrt(2)) and s.mean == pytest.approx((1 / np.sqrt(2) + 1) / 2)


def test_sqnr_known_value():
    ref = np.ones((2, 100))
    cand = ref + 0.1  # noise power 0.01 per element vs signal 1 -> 20 dB
    s = SQNR().score(cand, ref)
    assert s.mean == pytest.approx(20.0) and s.worst == pytest.approx(20.0)
    assert sqnr_db(cand, ref) == pytest.approx(20.0)
    assert SQNR().score(ref, ref).mean == 200.0


def test_retrieval_identical_and_scrambled():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((60, 8))
    metric = RetrievalAgreement(k=5, queries=20)
    assert metric.score(ref * 3.0, ref) == Score(1.0, 1.0)  # scale does not change cosine neighbours
    perm = rng.permutation(60)
    scrambled = metric.score(ref[perm], ref)
    assert scrambled.mean < 0.3
    noisy = metric.score(ref + 0.05 * rng.standard_normal(ref.shape), ref)
    assert scrambled.mean < noisy.mean <= 1.0


def test_metric_errors_and_registry():
    with pytest.raises(MetricError, match="shape"):
        CosineFidelity().score(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(MetricError, match="unknown metric"):
        get_metric("bleu")
    assert get_metric("retrieval@3").k == 3
    assert get_metric("numpy:mean").name == "numpy:mean"
    with pytest.raises(MetricError, match="cannot import"):
        get_metric("nosuchmodule:fn")

    def broken(c, r, labels):
        raise ValueError("boom")

    with pytest.raises(MetricError, match="boom"):
        get_metric(broken).score(np.ones(2), np.ones(2))


def test_evaluate_model_against_reference(mlp):
    samples = Samples.synthetic(mlp, 30, seed=4)
    scores = evaluate(mlp, samples, ["cosine", "sqnr"], reference=mlp)
    assert scores["cosine"].mean == pytest.approx(1.0) and scores["sqnr"].mean >= 100
    labels = np.zeros(30, int)
    labelled = Samples(samples.arrays, labels)
    top1 = evaluate(mlp, labelled, ["top1"])["top1"].mean
    assert 0.0 <= top1 <= 1.0
    with pytest.raises(MetricError, match="reference"):
        evaluate(mlp, samples, ["cosine"])
