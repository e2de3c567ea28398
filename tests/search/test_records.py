"""Typed records (status enum, screen and latency, the results.json round trip), the headline's failure line
and file sizes (pure functions, no search)."""

from __future__ import annotations

import json

import pytest

from hasten.outcome.records import Accuracy, Record, failure_line, model_bytes
from hasten.recipe import Recipe, Step

from .helpers import wide_mlp


def _rec(scheme: str | None, status: str, reason: str = "", stage: str = "", excess: float = 0.0) -> Record:
    steps = (Step("quantize", scheme, {}),) if scheme else ()
    r = Record(f"{scheme}-{status}-{reason}", Recipe(steps, "onnxruntime", {"threads": 1}), "scheme",
               status=status, reason=reason, stage=stage)
    if status == "rejected":
        r.full = Accuracy({}, {}, 10, False, excess, 0.0)
    return r


def test_failure_line_names_what_failed():
    base = _rec(None, "baseline")
    axis = "DequantizeLinear needs opset 13 for 'axis'"
    every = [base, _rec("int8-static", "failed", axis, "compile"), _rec("int8-dynamic", "failed", axis, "compile"),
             _rec("int8-weight", "failed", "no constant weights", "build")]
    line = failure_line(every)
    assert line.startswith("every int8 candidate failed: ") and "axis" in line and "(2x)" in line
    assert "no constant weights" in line
    mixed = every + [_rec("fp16", "failed", "boom", "build")]
    assert failure_line(mixed).startswith("every quantised candidate failed: ")
    fp16_ok = every + [_rec("fp16", "in-budget")]
    assert failure_line(fp16_ok).startswith("every int8 candidate failed: ")  # fp16 fitting is no excuse
    missed = [base, _rec("int8-static", "rejected", "accuracy", "full", 1.7), _rec("int8-dynamic", "failed", "x")]
    assert failure_line(missed).startswith("no quantised candidate fits the budget (1 missed it; the closest")
    assert "1.7x the allowed drop" in failure_line(missed) and "1 failed" in failure_line(missed)
    assert failure_line([base, _rec("int8-static", "in-budget"), _rec("int8-dynamic", "failed", "x")]) == ""
    assert failure_line([base]) == ""  # nothing quantised was tried


def test_model_bytes_is_the_saved_file_size(tmp_path):
    model = wide_mlp(width=96, layers=1)
    path = model.save(tmp_path / "m.onnx")
    assert model_bytes(model) == path.stat().st_size


def _judged(key: str, drop: float, status: str = "in-budget") -> Record:
    from hasten.measure.accuracy import Score

    r = Record(key, Recipe((Step("quantize", "int8-dynamic", {}),), "onnxruntime", {"threads": 1}), "scheme",
               status=status)
    r.subset = Accuracy({"cosine": Score(0.99, 0.9)}, {"cosine": drop}, 16, True, drop / 0.01, 0.1)
    r.full = Accuracy({"cosine": Score(0.98, 0.8)}, {"cosine": drop * 2}, 48, drop * 2 <= 0.01, drop * 2 / 0.01, 0.3)
    r.screen = {"median_ms": 0.5, "ratio": 1.8, "ratio_ci": [1.5, 2.1], "rounds": 4, "unknown_key": 1}
    r.latency = {"median_ms": 0.55, "ratio": 1.7, "runs": 120, "times_ms": [0.5, 0.55, 0.6]}
    return r


def test_status_is_a_str_enum_that_reads_and_writes_plain_strings():
    from hasten.outcome.records import Status

    r = _judged("a", 0.004)
    assert r.status is Status.IN_BUDGET and r.status == "in-budget" and r.within
    assert json.dumps({"s": r.status}) == '{"s": "in-budget"}' and f"{r.status}" == "in-budget"
    r.status = "failed"  # a plain string assigned is made a Status
    assert r.status is Status.FAILED and not r.within
    with pytest.raises(ValueError):
        r.status = "sort-of"


def test_screen_and_latency_are_typed_and_round_trip():
    from hasten.outcome.records import Latency, Screen

    r = _judged("a", 0.004)
    assert isinstance(r.screen, Screen) and r.screen.ratio_ci == [1.5, 2.1]
    assert isinstance(r.latency, Latency) and r.speedup == 1.7 and r.median_ms == 0.55  # final over screen
    assert r.latency.lower() == 1.7  # no interval: the ratio over (1 + spread 0)
    assert Screen.from_json(r.screen.to_json()) == r.screen and "unknown_key" not in r.screen.to_json()
    assert Screen(ratio=1.0).to_json() == {"median_ms": None, "ratio": 1.0}


def test_record_round_trips_through_json():
    r = _judged("a", 0.004)
    r.chosen, r.mixed, r.reason = True, "dynamic", "chosen: the fastest in budget"
    back = Record.from_json(json.loads(json.dumps(r.to_json())))
    assert back.to_json() == r.to_json()
    assert back.full == r.full and back.subset == r.subset and back.latency == r.latency


def test_an_older_record_without_accuracy_full_keeps_its_evaluations():
    r = _judged("a", 0.004)
    old = r.to_json()
    del old["accuracy_full"], old["mixed"]
    back = Record.from_json(old)
    assert back.full == r.full and back.subset == r.subset and back.mixed == ""
    subset_only = _judged("b", 0.03, "rejected")
    subset_only.full = None
    old = subset_only.to_json()
    del old["accuracy_full"]
    assert Record.from_json(old).full is None  # "accuracy" was the subset's: no full evaluation


def test_results_carry_a_version_and_read_older_files_or_say_why_not():
    from hasten.errors import SearchError
    from hasten.outcome.results import RESULTS_VERSION, Results

    res = Results(model="m", metrics=["cosine"], budget={"cosine": 0.01}, candidates=[_judged("a", 0.004)],
                  baseline="a", chosen="a", notes=["n"], extras={"floor": {"fp32_ms": 1.0}})
    data = json.loads(json.dumps(res.to_json()))
    assert data["version"] == RESULTS_VERSION and data["floor"] == {"fp32_ms": 1.0}
    back = Results.from_json(data)
    assert back.to_json() == data and back.record("a").chosen is False and back.extras["floor"]["fp32_ms"] == 1.0
    del data["version"]  # a file written before results.json had a version
    assert Results.from_json(data).candidates[0].key == "a"
    with pytest.raises(SearchError, match="newer hasten"):
        Results.from_json({**data, "version": RESULTS_VERSION + 1})
    with pytest.raises(SearchError, match="positive integer"):
        Results.from_json({**data, "version": "two"})
