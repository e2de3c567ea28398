"""The search measures through noise: more interleaved rounds until a ratio is resolved, never a false win,
the host's noise in the results; the host profile is not charged to the time budget. Timings come from a
seeded fake timing source (helpers.FakeTimer), so nothing here depends on this host's speed or load."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest

from hasten.api import optimize
from hasten.search import tuner as tuner_module
from hasten.search.timing import BASELINE, Timing, ratio_interval, resolved, time_sessions

from .helpers import QUICK, FakeTimer, samples, scheme_speed, wide_mlp


def _time(ratio: float, noise: float, seed: int, timing: Timing, **kw) -> dict:
    fake = FakeTimer({"cand": ratio}, noise=noise, seed=seed)
    return time_sessions(None, {"cand": None}, [{}], timing, bench=fake.bench, threshold=1.02, **kw)


def test_ratio_interval_is_order_statistics_of_the_rounds():
    r = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7]
    assert ratio_interval(r, 0.9) == (1.1, 1.6)  # n = 8: the 2nd and 7th (P(B < 2) = 9/256 <= 0.05)
    assert ratio_interval(r[:4], 0.9) == (1.0, 1.3)  # n = 4: never narrower than min..max
    assert ratio_interval(list(reversed(r)), 0.9) == (1.1, 1.6)
    assert resolved((1.05, 1.4), 1.02, 0.0) and resolved((0.8, 1.0), 1.02, 0.0)
    assert not resolved((0.9, 1.4), 1.02, 0.04) and resolved((0.99, 1.01), 1.02, 0.04)


def test_a_noisy_host_gets_more_rounds_until_the_ratio_is_resolved():
    timing = Timing.final(0.0)
    short = dataclasses.replace(timing, max_rounds=0)  # the planned rounds only: the old behaviour
    # seed 4: with 30% steal-like noise 8 rounds cannot tell a 1.3x candidate from the baseline
    eight = _time(1.3, 0.35, 4, short)["cand"]
    assert eight["rounds"] == 8 and not eight["resolved"] and eight["ratio_ci"][0] < 1.0
    more = _time(1.3, 0.35, 4, timing)
    cand = more["cand"]
    assert 8 < cand["rounds"] < timing.max_rounds and cand["resolved"]
    assert cand["ratio_ci"][0] > 1.02 and 1.1 < cand["ratio"] < 1.6  # resolved: faster, near the truth
    assert more[BASELINE]["noise"]["rounds"] == cand["rounds"] and more[BASELINE]["noise"]["spread"] > 0.3
    quiet = _time(1.3, 0.02, 4, timing)["cand"]  # a quiet host needs no extra rounds
    assert quiet["rounds"] == 8 and quiet["resolved"] and quiet["ratio"] == pytest.approx(1.3, rel=0.03)


def test_only_candidates_that_could_beat_a_resolved_winner_get_more_rounds():
    fake = FakeTimer({"win": 2.0, "slow": 1.0}, noise=0.2, seed=0)
    out = time_sessions(None, {"win": None, "slow": None}, [{}], Timing.final(0.0), bench=fake.bench,
                        threshold=1.02)
    assert out["win"]["resolved"] and not out["slow"]["resolved"]  # the slow one is near 1: unresolved...
    assert out["win"]["rounds"] == 8  # ...but it cannot beat the winner, so no extra rounds are spent on it
    fake = FakeTimer({"win": 2.0, "slow": 1.0}, noise=0.2, seed=0)
    alone = time_sessions(None, {"slow": None}, [{}], Timing.final(0.0), bench=fake.bench, threshold=1.02)
    assert alone["slow"]["rounds"] > 8  # without a winner the same candidate is measured longer


def test_equal_speeds_are_never_a_resolved_win():
    timing = Timing.final(0.0)
    wins = 0
    for seed in range(40):
        cand = _time(1.0, 0.35, seed, timing)["cand"]
        wins += cand["ratio"] > 1.02 and cand["ratio_ci"][0] > 1.0
        assert cand["rounds"] <= timing.max_rounds
    assert wins <= 3  # the looks share a 10% error rate: ~2% false wins, not the 30% of a naive gate
    stopped = _time(1.0, 0.35, 1, timing, deadline=time.perf_counter() - 1.0)["cand"]
    assert stopped["rounds"] == timing.rounds  # past the deadline no extra round starts


@pytest.fixture(scope="module")
def data():
    return samples(48, seed=1, name="calib"), samples(32, seed=2, name="eval")


def test_noisy_search_returns_the_faster_model_and_reports_the_noise(data, tmp_path):
    calib, ev = data
    timer = FakeTimer(scheme_speed({"int8-dynamic": 1.35}), noise=0.25, seed=1)  # +-25% per session and round
    result = optimize(wide_mlp(width=256, layers=2), calib, ev, metric="cosine", out=tmp_path / "out",
                      backends="onnxruntime", schemes=("int8-dynamic",), passes=(), mixed_precision=False,
                      time_budget=600, timer=timer, **{**QUICK, "finalists": 1})
    chosen = result.chosen
    assert chosen.recipe.steps and chosen.recipe.steps[-1].name == "int8-dynamic", result.search.notes
    assert chosen.latency.rounds > 8 and chosen.latency.ratio_ci[0] > 1.0  # resolved by extra rounds
    data_json = json.loads(result.results_path.read_text())
    final = data_json["noise"]["final"]
    assert final["rounds"] == chosen.latency.rounds and final["spread"] > 0.2
    assert any("the host was noisy" in n for n in data_json["notes"])
    html = result.report_path.read_text()
    assert "Host noise: the baseline&#x27;s median varied by" in html


def test_equal_speeds_return_the_baseline_and_say_why(data, tmp_path):
    calib, ev = data
    timer = FakeTimer(scheme_speed({}), noise=0.3, seed=1)  # int8 no faster than fp32
    result = optimize(wide_mlp(width=256, layers=2), calib, ev, metric="cosine", out=tmp_path / "out",
                      backends="onnxruntime", schemes=("int8-dynamic",), passes=(), mixed_precision=False,
                      time_budget=600, timer=timer, **{**QUICK, "finalists": 1})
    assert result.chosen is result.baseline
    assert any("the baseline is returned" in n for n in result.search.notes), result.search.notes


def test_the_host_profile_is_not_charged_to_the_time_budget(data, tmp_path, monkeypatch):
    calib, ev = data
    measured = {}

    def slow_profile():
        time.sleep(0.5)  # stands for a host measurement (seconds to minutes on a fresh host)
        measured["at"] = time.perf_counter()
        return ("fp32", "int8")

    monkeypatch.setattr(tuner_module, "_target_dtypes", slow_profile)
    timer = FakeTimer(scheme_speed({}), seed=0)
    optimize(wide_mlp(width=64, layers=1), calib, ev, metric="cosine", out=tmp_path / "out",
             backends="onnxruntime", schemes=(), passes=(), time_budget=60, timer=timer, **QUICK)
    assert timer.tuner.t0 >= measured["at"]  # the clock starts after the profile
    assert timer.tuner.context["int8_isa"] and timer.tuner.host["features"] is not None
    assert np.isfinite(timer.tuner.deadline - timer.tuner.t0) and timer.tuner.deadline - timer.tuner.t0 == 60
