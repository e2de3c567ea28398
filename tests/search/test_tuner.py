"""The tuner on real runtimes: fastest in budget (not first), never slower than the baseline, resume after
an interrupt, foreign OUT/ refused, failures recorded, every output file written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hasten.api import optimize
from hasten.errors import DataError, SearchError
from hasten.search import planner
from hasten.search.runner import Runner

from .helpers import QUICK, FakeTimer, events_recorder, samples, scheme_speed, wide_mlp


@pytest.fixture(scope="module")
def model():
    return wide_mlp()


@pytest.fixture(scope="module")
def data():
    return samples(64, seed=1, name="calib"), samples(48, seed=2, name="eval")


def _run(model, data, out, **kw):
    calib, ev = data
    opts = {**QUICK, "backends": "onnxruntime", "metric": "cosine", "time_budget": 120, **kw}
    return optimize(model, calib, ev, out=out, **opts)


def test_picks_the_fastest_in_budget_not_the_first(model, data, tmp_path):
    # fp16 is tried first (schemes of equal priority go in name order) and fits the budget, but ONNX Runtime's CPU runs it
    # through Casts; int8 weights make this weight-bound MLP faster. The tuner must not stop at fp16.
    # Timings come from a seeded fake (noisy, int8 1.5x, fp16 1.1x): the choice cannot depend on the load.
    timer = FakeTimer(scheme_speed({"fp16": 1.1, "int8-dynamic": 1.5}), noise=0.1, seed=0)
    result = _run(model, data, tmp_path / "out", schemes=("fp16", "int8-dynamic"), passes=(),
                  mixed_precision=False, timer=timer, time_budget=600)
    in_budget = [r for r in result.records if r.status == "in-budget" or (r.chosen and r.within)]
    quantised = [r for r in result.records if r.recipe.steps]
    assert quantised[0].recipe.steps[0].name == "fp16" and quantised[0].full.within  # found first, in budget
    chosen = result.chosen
    assert chosen.recipe.steps and chosen.recipe.steps[-1].name == "int8-dynamic"
    assert chosen.latency.ratio > 1.2 and chosen.latency.ratio_ci[0] > 1.0, chosen.latency
    timed = [r for r in result.records if r.latency]
    assert chosen.latency.ratio == max(r.latency.ratio for r in timed)
    assert all(r.accuracy.drops["cosine"] <= 0.01 for r in in_budget)
    data_json = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data_json["chosen"] == chosen.key and data_json["summary"]["beat_baseline"]
    assert data_json["summary"]["speedup"] == pytest.approx(chosen.latency.ratio)


def test_never_returns_a_slower_model(model, data, tmp_path):
    # binary weights run at fp32 speed and miss any sane budget; nothing can beat the baseline
    result = _run(model, data, tmp_path / "out", schemes=("binary",), passes=(), mixed_precision=False)
    assert result.chosen is result.baseline and result.chosen.chosen
    assert result.speedup == 1.0
    assert any("baseline is returned" in n for n in result.search.notes)
    binary = [r for r in result.records if r.recipe.steps]
    assert binary and all(r.status == "rejected" and "accuracy" in r.reason for r in binary)
    assert json.loads(result.results_path.read_text())["summary"]["beat_baseline"] is False
    from hasten.model import load_onnx

    assert load_onnx(result.model_path).fingerprint() == model.fingerprint()


def test_resume_after_interrupt_recomputes_nothing(model, data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    settings = dict(schemes=("int8-dynamic", "int8-weight"), passes=(), mixed_precision=False)
    evaluated = []

    def stop_after_three(event):
        if event.kind == "candidate" and event.record is not None and event.record.origin != "baseline":
            evaluated.append(event.record.key)
            if len(evaluated) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(model, data, out, progress=stop_after_three, **settings)
    partial = json.loads((out / "results.json").read_text())  # a valid file, marked partial
    assert partial["partial"] and partial["interrupted"]

    built = []
    real_build = Runner.build

    def counting_build(self, recipe):
        built.append(recipe.key())
        return real_build(self, recipe)

    monkeypatch.setattr(Runner, "build", counting_build)
    progress = events_recorder()
    result = _run(model, data, out, progress=progress, **settings)
    again = {e.record.key for e in progress.events if e.kind == "candidate" and e.record is not None
             and "(cached)" in e.message}
    assert set(evaluated) <= again  # the three finished before the interrupt came from the cache...
    assert not set(evaluated) & set(built)  # ...and were neither rebuilt nor re-quantised
    assert all(r.cached for r in result.records if r.key in evaluated)
    assert result.search.context["model_fingerprint"] == model.fingerprint()
    # a third run is all cache: nothing is built, except the chosen model is read back from OUT/cache
    built.clear()
    _run(model, data, out, **settings)
    assert built == []


def test_foreign_out_folder_is_refused(model, data, tmp_path):
    out = tmp_path / "out"
    settings = dict(schemes=(), passes=(), mixed_precision=False)
    _run(model, data, out, **settings)
    other = wide_mlp(width=256, seed=5)
    with pytest.raises(SearchError, match="another model"):
        _run(other, data, out, **settings)
    forced = _run(other, data, out, force=True, **settings)
    assert json.loads((out / "search.json").read_text())["model_fingerprint"] == other.fingerprint()
    assert forced.chosen is forced.baseline
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(SearchError, match="not empty"):
        _run(model, data, tmp_path / "junk", **settings)


def test_failures_are_recorded_and_the_search_goes_on(model, data, tmp_path):
    def fussy(candidate, reference, labels):
        if not np.allclose(candidate, reference, atol=1e-4):
            raise ValueError("refuses approximate outputs")
        return 1.0

    result = _run(model, data, tmp_path / "out", metric=fussy, backends="onnxruntime,openvino",
                  schemes=("int8-weight", "int8-dynamic"), passes=(), mixed_precision=False)
    recs = {(r.recipe.backend, r.recipe.steps[-1].name if r.recipe.steps else "fp32"): r for r in result.records}
    crash = recs[("openvino", "int8-weight")]  # com.microsoft.MatMulNBits: OpenVINO cannot compile it
    assert crash.status == "failed" and crash.stage == "compile" and "openvino" in crash.reason
    raised = recs[("onnxruntime", "int8-dynamic")]
    assert raised.status == "failed" and raised.stage == "metric" and "refuses approximate" in raised.reason
    assert result.chosen.within
    data_json = json.loads(result.results_path.read_text())
    failed = [c for c in data_json["candidates"] if c["status"] == "failed"]
    assert len(failed) >= 3 and all(c["reason"] for c in failed)
    html = result.report_path.read_text()
    assert "refuses approximate outputs" in html and "failed" in html


def test_bad_evaluation_data_is_a_clear_error(model, data, tmp_path):
    from hasten.data import Samples

    calib, _ = data
    with pytest.raises(DataError, match="empty"):
        optimize(model, calib, Samples({"x": np.zeros((0, 64), np.float32)}, name="none"), out=tmp_path / "a")
    with pytest.raises(DataError, match="missing"):
        optimize(model, calib, Samples({"image": np.zeros((4, 64), np.float32)}), out=tmp_path / "b")
    with pytest.raises(SearchError, match="max-drop"):
        optimize(model, calib, data[1], metric="cosine", max_drop="bogus=1", out=tmp_path / "c")
    with pytest.raises(SearchError, match="time-budget"):
        optimize(model, calib, data[1], time_budget="soon", out=tmp_path / "d")


def test_graph_variants_stop_at_their_share_of_the_budget(model, data, tmp_path, monkeypatch):
    """Graph variants beyond the default pipeline may use only GRAPH_SHARE of the time: at 0 only the default
    pipeline is built, the variants are not tried (and say why), and the schemes still run on it."""
    monkeypatch.setattr(planner, "GRAPH_SHARE", 0.0)
    timer = FakeTimer(scheme_speed({"int8-dynamic": 1.5}), noise=0.02, seed=0)
    result = _run(model, data, tmp_path / "out", schemes=("int8-dynamic",), mixed_precision=False,
                  timer=timer, time_budget=600)
    graph = [r for r in result.records if r.origin == "graph"]
    built = [r for r in graph if r.status != "not-tried"]
    skipped = [r for r in graph if r.status == "not-tried"]
    assert [r.note for r in built] == ["default graph pipeline"], [(r.note, r.status) for r in graph]
    assert skipped and all("graph stage's share" in r.reason for r in skipped)
    assert result.chosen.recipe.steps[-1].name == "int8-dynamic"


def test_an_in_budget_scheme_is_refined_only_where_speed_can_change(model, data, tmp_path):
    """int8-static fits a loose budget on the MLP: its calibration, SmoothQuant and rounding variants cannot
    make it faster and are not built; the options that change the graph the runtime runs are."""
    timer = FakeTimer(scheme_speed({"int8-static": 1.5}), noise=0.02, seed=0)
    result = _run(model, data, tmp_path / "out", schemes=("int8-static",), passes=(), mixed_precision=False,
                  timer=timer, time_budget=600, max_drop=0.2)
    parent = next(r for r in result.records if r.origin == "scheme")
    assert parent.within, parent.reason
    options = {r.note.partition("=")[0] for r in result.records if r.origin == "option"}
    assert options and options <= {"attention", "per_channel"}, options


def test_a_subset_that_is_the_whole_set_is_judged_as_the_full_evaluation(model, data, tmp_path):
    """With as many evaluation items as the subset, a drop between the budget and the screen's slack used
    to be a "subset screen" rejection with no reason; it is a full-evaluation rejection that says by how much."""
    calib, _ = data
    ev = samples(16, seed=3, name="eval16")
    loose = optimize(model, calib, ev, out=tmp_path / "loose", **{**QUICK, "backends": "onnxruntime",
                     "metric": "cosine", "max_drop": 0.5, "schemes": ("int4-weight",), "passes": (),
                     "mixed_precision": False, "time_budget": 120, "timer": FakeTimer(scheme_speed({}), seed=0)})
    drop = next(r for r in loose.records if r.origin == "scheme").full.drops["cosine"]
    assert drop > 0
    result = optimize(model, calib, ev, out=tmp_path / "tight", **{**QUICK, "backends": "onnxruntime",
                      "metric": "cosine", "max_drop": drop / 1.5, "schemes": ("int4-weight",), "passes": (),
                      "mixed_precision": False, "time_budget": 120, "timer": FakeTimer(scheme_speed({}), seed=0)})
    rec = next(r for r in result.records if r.origin == "scheme")
    assert rec.status == "rejected" and rec.stage == "full", (rec.stage, rec.reason)
    assert rec.reason.startswith("accuracy: cosine drop"), rec.reason


def test_the_tuner_resolves_a_copy_of_the_settings_and_leaves_the_callers_alone(model, data, tmp_path):
    from hasten.backends import physical_cores
    from hasten.measure.accuracy import CosineFidelity
    from hasten.search.budget import Budget
    from hasten.search.tuner import Settings, Tuner

    calib, ev = data
    settings = Settings(backends=("onnxruntime",), threads=())
    tuner = Tuner(model, calib, ev, [CosineFidelity()], Budget.build([CosineFidelity()]), tmp_path / "out", settings)
    assert settings.threads == () and settings == Settings(backends=("onnxruntime",))  # untouched
    assert tuner.settings.threads == (physical_cores(),) and tuner.settings is not settings
    assert tuner.records is tuner.runner.records and not tuner.records  # the runner owns the records


def test_the_same_calibration_and_evaluation_data_is_noted(model, data, tmp_path):
    calib, _ = data
    result = optimize(model, calib, calib, out=tmp_path / "out", backends="onnxruntime", metric="cosine",
                      schemes=("int8-dynamic",), passes=(), mixed_precision=False, time_budget=60,
                      timer=FakeTimer(scheme_speed({})), **QUICK)
    assert any("the same data" in n for n in result.search.notes)
