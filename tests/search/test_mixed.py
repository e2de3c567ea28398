"""Mixed precision in the search: a scheme that misses the budget because of one sensitive layer is
rescued by keeping that layer out of it, found through measured per-layer sensitivity."""

from __future__ import annotations

import json

import numpy as np

from hasten.api import optimize
from hasten.data import Samples

from .helpers import QUICK, FakeTimer, scheme_speed, wide_mlp


def _outlier_samples(n: int, seed: int) -> Samples:
    """Inputs where feature 0 is ~30x the others: per-tensor uint8 ranges of fc0's input erase the rest."""
    x = np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32)
    x[:, 0] *= 30.0
    return Samples({"x": x}, name=f"outliers{seed}")


def test_sensitivity_drives_mixed_precision(tmp_path):
    model = wide_mlp(width=1024, layers=3)
    result = optimize(model, _outlier_samples(64, 1), _outlier_samples(48, 2), metric="cosine",
                      max_drop=0.002, out=tmp_path / "out", backends="onnxruntime", schemes=("int8-static",),
                      passes=(), time_budget=150, **QUICK)
    static = [r for r in result.records if r.origin in ("scheme", "option", "combined")]
    assert static and not any(r.full is not None and r.full.within for r in static)  # whole-model misses
    mixed = [r for r in result.records if r.origin == "mixed"]
    assert mixed, [(r.label, r.status, r.speedup) for r in result.records]
    rescued = [r for r in mixed if r.full is not None and r.full.within]
    assert rescued, [(r.label, r.status, r.reason) for r in mixed]
    kept_out = rescued[0].recipe.steps[-1].config
    assert "fc0" in (kept_out["nodes_to_exclude"] or []) + (kept_out["dynamic_nodes"] or [])
    data = json.loads(result.results_path.read_text())
    sens = data["sensitivity"]
    assert sens["rows"][0]["node"] == "fc0"  # the layer reading the outlier feature ranks worst
    assert [c for c in data["candidates"] if c["origin"] == "mixed" and "sensitive" in c["note"]]


def test_mixed_precision_is_tried_when_every_whole_model_scheme_misses(tmp_path):
    """Even where the screens say int8 is slower than fp32 (noise, or a host without VNNI), a search whose
    every whole-model scheme misses the budget tries mixed precision, and the notes say how it ended."""
    timer = FakeTimer(scheme_speed({"int8-static": 0.9}), noise=0.05, seed=0)
    model = wide_mlp(width=512, layers=2)
    result = optimize(model, _outlier_samples(64, 1), _outlier_samples(40, 2), metric="cosine",
                      max_drop=0.002, out=tmp_path / "out", backends="onnxruntime", schemes=("int8-static",),
                      passes=(), time_budget=600, timer=timer, **QUICK)
    whole = [r for r in result.records if r.origin in ("scheme", "option", "combined")]
    assert whole and not any(r.within for r in whole)  # every whole-model int8-static misses the budget
    mixed = [r for r in result.records if r.origin == "mixed"]
    assert mixed, [(r.label, r.status, r.speedup) for r in result.records]
    assert any(n.startswith("mixed precision") for n in result.search.notes), result.search.notes
    assert result.chosen is result.baseline  # mixed models are no faster here (0.9x): never a slower one


def test_only_an_as_fast_in_budget_integer_model_ends_mixed_precision():
    """bf16 in budget (ppocr-rec on a BF16 host), or a slow int4-weight in budget, must not stop mixed
    precision for a faster int8-static miss; an in-budget int8 model at least as fast does."""
    from hasten.outcome.records import Record
    from hasten.recipe import Recipe, Step
    from hasten.search.planner import mixing_may_gain as _mixing_may_gain

    def rec(scheme: str, status: str, speedup: float) -> Record:
        r = Record(f"{scheme}{speedup}", Recipe(steps=(Step("quantize", scheme, {}),), backend="openvino"),
                   "scheme", status=status)
        r.screen = {"ratio": speedup, "median_ms": 1.0 / speedup}
        return r

    miss = rec("int8-static", "rejected", 2.6)
    assert miss.speedup == 2.6
    assert _mixing_may_gain([rec("bf16", "in-budget", 2.6), rec("fp16", "in-budget", 3.0), miss], miss)
    assert _mixing_may_gain([rec("int4-weight", "in-budget", 1.05), miss], miss)
    assert not _mixing_may_gain([rec("int8-static", "in-budget", 2.7), miss], miss)
    assert not _mixing_may_gain([rec("int8-dynamic", "in-budget", 2.6), miss], miss)


def _driver(op_types: dict[str, str]):
    """A MixedPrecision over an int8-static seed whose ranking (worst first) is `op_types`' order, with
    the k = 2 float candidate known to hold and k = 1 to miss."""
    from types import SimpleNamespace

    from hasten.outcome.records import Record
    from hasten.recipe import Recipe, Step
    from hasten.search.planner import MixedPrecision

    seed = Record("seed", Recipe(steps=(Step("quantize", "int8-static", {}),), backend="onnxruntime"), "scheme",
                  status="rejected")
    seed.full = SimpleNamespace(excess=0.01)
    mp = MixedPrecision([seed], {"nodes_to_exclude", "dynamic_nodes"})
    mp.rank(list(op_types), [{"node": n, "op_type": t} for n, t in op_types.items()])
    if mp.search is not None:
        mp.search.record(False)  # k = 1 misses
        mp.search.next()
        mp.search.record(True)  # k = 2 holds
    return mp


def test_dynamic_int8_variant_holds_only_the_matmuls_among_the_kept_nodes():
    mp = _driver({"conv0": "Conv", "fc1": "MatMul", "fc2": "MatMul"})
    cand = mp.next()
    config = cand.recipe.steps[-1].config
    assert config["dynamic_nodes"] == ["fc1"] and config["nodes_to_exclude"] == ["conv0"]
    assert cand.note == "2 most sensitive node(s) kept out: 1 MatMul(s) in dynamic int8, 1 in float"
    assert mp.next() is None and "fits the budget with its 2 most sensitive" in mp.outcome


def test_a_cnn_gets_no_dynamic_int8_variant():
    """Dynamic int8 exists for MatMuls only: with Convs kept out there is no such candidate to fail."""
    mp = _driver({"conv0": "Conv", "conv1": "Conv", "fc": "MatMul"})
    assert mp.next() is None and mp.done and "fits the budget with its 2 most sensitive" in mp.outcome
    both = _driver({"fc0": "MatMul", "fc1": "MatMul"}).next().recipe.steps[-1].config
    assert both["dynamic_nodes"] == ["fc0", "fc1"] and not both.get("nodes_to_exclude")


def test_mixed_precision_that_ran_out_of_time_on_its_last_step_says_its_space_is_exhausted(monkeypatch):
    """k = 1 misses, k = 2 holds, then the budget is spent: the bisection is over (nothing between 1 and 2,
    no MatMul for dynamic int8), so the notes give the outcome, not "stopped early"."""
    from types import SimpleNamespace

    from hasten.outcome.records import Record
    from hasten.search.mixed import Analysis
    from hasten.search.space import Space
    from hasten.search.tuner import Tuner

    seed = _driver({}).seed
    starts = iter([True, True, False])

    def add(cand, time_rejected=False):
        k = len(cand.recipe.steps[-1].config["nodes_to_exclude"])
        return Record(f"k{k}", cand.recipe, "mixed", note=cand.note, status="in-budget" if k >= 2 else "rejected",
                      mixed=cand.mixed)

    rows = [{"node": n, "op_type": "Conv"} for n in ("conv0", "conv1", "conv2")]
    tuner = SimpleNamespace(space=Space(["onnxruntime"], [1], 16), notes=[],
                            runner=SimpleNamespace(estimate_s=lambda: 1.0),
                            can_start=lambda *a: next(starts), add=add, screen=lambda *a: None, deadline=1e9,
                            reserve_s=lambda: 0.0, sensitivity_reserve_s=lambda: 0.0,
                            analyse=lambda *a, **k: Analysis(["conv0", "conv1", "conv2"], {"rows": rows}))
    tuner._rank = lambda mp: Tuner._rank(tuner, mp)
    Tuner._mixed(tuner, [seed])
    assert len(tuner.notes) == 1 and "fits the budget with its 2 most sensitive node(s) of 3" in tuner.notes[0]
