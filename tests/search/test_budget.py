"""The accuracy budget: defaults per metric, parsing, drops and excess."""

from __future__ import annotations

import pytest

from hasten.errors import SearchError
from hasten.measure.accuracy import SQNR, CosineFidelity, RetrievalAgreement, Score, Top1
from hasten.search.budget import Budget


def test_defaults_per_metric():
    b = Budget.build([CosineFidelity(), RetrievalAgreement(k=10)])
    assert b.to_dict() == {"cosine": 0.01, "retrieval@10": 0.10}
    assert Budget.build([Top1()]).to_dict() == {"top1": 0.01}
    assert Budget.build([SQNR()]).to_dict() == {"sqnr": 170.0}  # SQNR >= 30 dB below the 200 dB cap


def test_number_sets_the_task_metric_and_pairs_set_each():
    metrics = [CosineFidelity(), RetrievalAgreement(k=10)]
    assert Budget.build(metrics, 0.02).to_dict() == {"cosine": 0.02, "retrieval@10": 0.10}
    assert Budget.build(metrics, "0.005").to_dict() == {"cosine": 0.005, "retrieval@10": 0.10}
    assert Budget.build(metrics, "retrieval@10=0.05, cosine=0.03").to_dict() == {"cosine": 0.03,
                                                                                 "retrieval@10": 0.05}
    for bad, message in [("nope", "not a number"), ("-0.1", ">= 0"), ("top1=0.1", "unknown metric"),
                         ("cosine:0.1", "not a number")]:
        with pytest.raises(SearchError, match=message):
            Budget.build(metrics, bad)


def test_drops_excess_and_violations():
    metrics = [Top1(), CosineFidelity()]
    b = Budget.build(metrics, {"top1": 0.01, "cosine": 0.02})
    base = {"top1": Score(0.95, 0.8), "cosine": Score(1.0, 1.0)}
    cand = {"top1": Score(0.945, 0.8), "cosine": Score(0.97, 0.9)}
    drops = b.drops(metrics, base, cand)
    assert drops == pytest.approx({"top1": 0.005, "cosine": 0.03})
    assert b.excess(drops) == pytest.approx(1.5)  # cosine uses 1.5x its allowance
    assert b.excess(drops, slack=2.0) == pytest.approx(0.75)
    assert b.violations(drops) == ["cosine drop 0.03 > 0.02"]
    better = {"top1": Score(0.96, 0.8), "cosine": Score(1.0, 1.0)}  # an improvement is no drop at all
    assert b.excess(b.drops(metrics, base, better)) == 0.0
