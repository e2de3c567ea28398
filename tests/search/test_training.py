"""`optimize(..., allow_training=True)`: pruned + distilled students in the search, judged against the teacher,
recorded as compress steps that `apply` reproduces bit for bit, cached so a resumed run does not train again."""

from __future__ import annotations

import importlib
import json
import shutil
import textwrap

import numpy as np
import pytest

import hasten
import hasten.commands.apply  # noqa: F401  (registers the sub-commands)
import hasten.commands.optimize  # noqa: F401
from hasten import zoo
from hasten.api import apply, optimize
from hasten.cli import main
from hasten.errors import SearchError
from hasten.recipe import Recipe, RecipeError
from hasten.search.training import is_function_spec, torch_spec

from .helpers import QUICK, events_recorder, wide_mlp

#: one training thread: bit-exact and robust on a busy 2-core machine; a few steps: seconds. The step count
#: is fixed (--train-steps), so the budget only has to be ample: the search takes ~25 s here and must not
#: run out of time on a slow or noisy host (the host profile is no longer charged to it either)
SETTINGS = dict(backends="onnxruntime", schemes=("int8-static",), passes=(), metric="top1,cosine",
                max_drop="top1=0.05,cosine=0.1", time_budget=900, threads=1, allow_training=True, train_steps=30,
                mixed_precision=False, **QUICK)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("students") / "out"
    progress = events_recorder()
    result = optimize("zoo:digits", out=out, progress=progress, **SETTINGS)
    return result, progress.events, out


def _students(result):
    return [r for r in result.records if r.recipe.steps and r.recipe.steps[0].kind == "compress"]


def _teacher_top1() -> float:
    entry = zoo.get("digits")
    session = hasten.get_backend("onnxruntime", threads=1).compile(entry.model())
    ev = entry.evaluation()
    logits = session.run(ev.arrays)[session.output_names[0]]
    return float((logits.argmax(axis=1) == ev.labels).mean())


def test_students_are_judged_against_the_teacher(searched):
    result, events, _ = searched
    fp32 = [r for r in result.records if r.origin == "student"]
    assert sorted(r.recipe.steps[0].config["prune"]["channels"] for r in fp32) == [0.25, 0.5]
    assert all(r.recipe.steps[0].config["distill"]["steps"] == 30 for r in fp32)
    teacher = result.baseline.full.scores["top1"].mean
    assert teacher == pytest.approx(_teacher_top1())  # the recorded reference is the teacher's own top-1
    judged = [r for r in _students(result) if r.accuracy is not None]
    assert len(judged) >= 2
    for r in judged:
        acc = r.accuracy
        assert acc.drops["top1"] == pytest.approx(teacher - acc.scores["top1"].mean)
        # cosine of the student's logits against the TEACHER's: a student judged against itself would score 1
        assert acc.scores["cosine"].mean < 0.999 and acc.drops["cosine"] > 1e-3
    # quantised students went through the scheme stage too (the in-budget fp32 students are their bases)
    bases = {r.key for r in fp32 if r.within}
    assert bases and any(r.origin == "scheme" and r.parent in bases for r in _students(result))
    lines = [e.message for e in events if e.kind == "train" and e.message.startswith("distilled")]
    assert len(lines) == 2 and all("steps/s" in m and "loss" in m for m in lines)
    data = json.loads(result.results_path.read_text())
    kinds = {c["recipe"]["steps"][0]["kind"] for c in data["candidates"] if c["recipe"]["steps"]}
    assert "compress" in kinds


def test_recipe_round_trips_and_apply_reproduces_the_student(searched, tmp_path):
    result, _, _ = searched
    fp32 = next(r for r in result.records if r.origin == "student" and r.fingerprint)
    quantised = [r for r in _students(result) if r.origin == "scheme" and r.fingerprint]
    for i, rec in enumerate([fp32, *quantised[:1]]):
        text = rec.recipe.to_yaml()
        back = Recipe.from_yaml(text)
        assert back == rec.recipe and back.key() == rec.recipe.key()
        path = rec.recipe.save(tmp_path / f"r{i}.yaml")
        assert Recipe.load(path).steps[0].label().startswith("prune-distill(channels=")
        assert apply(path, "zoo:digits").fingerprint() == rec.fingerprint  # trained again, bit for bit
    assert main(["apply", str(tmp_path / "r0.yaml"), "zoo:digits", "-o", str(tmp_path / "again")]) == 0
    assert hasten.load(str(tmp_path / "again" / "model.onnx")).fingerprint() == fp32.fingerprint
    # the chosen model written by the search is the one it measured (its record carries that model's
    # fingerprint), and the one its recipe makes
    saved = hasten.load(str(result.model_path))
    assert result.chosen.fingerprint, f"the chosen record {result.chosen.label} has no fingerprint"
    assert saved.fingerprint() == result.chosen.fingerprint
    assert apply(result.recipe_path, "zoo:digits").fingerprint() == saved.fingerprint()


def test_apply_refuses_another_teacher(searched):
    result, _, _ = searched
    rec = next(r for r in result.records if r.origin == "student")
    with pytest.raises(RecipeError, match="fingerprint") as info:
        apply(rec.recipe, wide_mlp(width=64, layers=1))
    assert "zoo:digits" in str(info.value)


def test_resume_does_not_train_again(searched, tmp_path, monkeypatch):
    result, _, out = searched
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    weights = sorted(copy.glob("cache/student-*.safetensors"))
    assert len(weights) == 2
    stamps = [p.stat().st_mtime_ns for p in weights]
    step_module = importlib.import_module("hasten.compress.step")

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed search must not distil again")

    monkeypatch.setattr(step_module.distill_module, "distill", no_training)
    progress = events_recorder()
    again = optimize("zoo:digits", out=copy, progress=progress, **SETTINGS)
    assert [p.stat().st_mtime_ns for p in weights] == stamps
    assert sum("not trained again" in e.message for e in progress.events if e.kind == "train") == 2
    before = {r.key: r.fingerprint for r in _students(result)}
    after = [r for r in _students(again) if r.key in before]
    assert after and all(r.cached and r.fingerprint == before[r.key] for r in after if r.fingerprint)


def test_allow_training_needs_a_torch_source(tmp_path, capsys):
    path = tmp_path / "digits.onnx"
    zoo.get("digits").model().save(path)
    with pytest.raises(SearchError, match="--allow-training") as info:
        optimize(str(path), allow_training=True, out=tmp_path / "o")
    assert str(path) in str(info.value) and "zoo:digits" in str(info.value)
    assert main(["optimize", str(path), "--allow-training", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--allow-training" in err[0]
    with pytest.raises(SearchError, match="--allow-training too"):
        optimize("zoo:digits", train_steps=10, out=tmp_path / "o")
    assert main(["optimize", "zoo:digits", "--allow-training", "--train-steps", "0", "-o", str(tmp_path / "o")]) == 2
    assert "--train-steps must be" in capsys.readouterr().err
    assert torch_spec("zoo:digits") == "zoo:digits" and torch_spec(str(path)) is None
    assert is_function_spec("pkg.mod:make") and not is_function_spec("zoo:digits")


def test_module_function_source_trains_on_the_calibration_data(tmp_path, monkeypatch):
    # a user's own torch model: `package.module:function` -> (module, example inputs); no data of its own
    (tmp_path / "hasten_user_cnn.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def make():
            torch.manual_seed(0)
            net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                                nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
            return net.eval(), {"image": torch.rand(1, 1, 8, 8)}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    calib = hasten.Samples({"image": rng.random((48, 1, 8, 8), dtype=np.float32)}, name="calib")
    ev = hasten.Samples({"image": rng.random((24, 1, 8, 8), dtype=np.float32)}, name="eval")
    result = optimize("hasten_user_cnn:make", calib, ev, out=tmp_path / "o", metric="cosine", max_drop=0.5,
                      backends="onnxruntime", schemes=(), passes=(), threads=1, allow_training=True,
                      train_steps=10, time_budget=90, **{k: v for k, v in QUICK.items() if k != "calibration_items"},
                      calibration_items=32)
    students = [r for r in result.records if r.origin == "student" and r.fingerprint]
    assert students
    step = students[0].recipe.steps[0]
    assert step.config["data"] == "calibration" and step.config["train_items"] == 32
    assert step.config["source"] == "hasten_user_cnn:make"
    assert students[0].recipe.uses_calibration
    again = apply(students[0].recipe, "hasten_user_cnn:make", calib=calib)
    assert again.fingerprint() == students[0].fingerprint
    with pytest.raises(hasten.HastenError, match="calibration"):
        apply(students[0].recipe, "hasten_user_cnn:make")


def test_a_student_the_budget_cannot_afford_is_recorded_with_why(tmp_path):
    events = events_recorder()
    result = optimize("zoo:digits", out=tmp_path / "o", progress=events,
                      **{**SETTINGS, "schemes": (), "train_steps": 10**8, "time_budget": 60})
    skipped = [r for r in result.records if r.origin == "student"]
    assert len(skipped) == 2 and not any(r.fingerprint for r in skipped)
    for r in skipped:
        assert r.status == "not-tried" and r.stage == "train"
        assert "100000000 steps (--train-steps) need about" in r.reason and "time budget leaves" in r.reason
    assert not list((tmp_path / "o" / "cache").glob("student-*"))  # nothing trained, nothing cached
    assert sum("not trained" in e.message for e in events.events if e.kind == "train") == 2
    assert result.chosen is result.baseline


def test_progress_prints_each_distillation_line():
    from rich.console import Console

    from hasten.commands.optimize import LiveProgress
    from hasten.search.tuner import Event

    console = Console(record=True, width=200, force_terminal=False)
    with LiveProgress(console) as live:
        live(Event("train", "distilled student prune-distill(channels=0.5,steps=30): 30 steps in 1.0 s "
                            "(30.0 steps/s), loss 4.6 -> 1.2", 0, None, 10.0))
    assert "30.0 steps/s), loss 4.6 -> 1.2" in console.export_text()


def test_the_time_cap_sets_the_step_count(tmp_path):
    from hasten.search.training import MIN_STEPS, Students, StudentSkipped
    from hasten.search.tuner import Settings

    teacher = zoo.get("digits").model().fingerprint()
    students = Students("zoo:digits", tmp_path, teacher, None, Settings(threads=(1,)), lambda kind, message: None)
    options = students.options()
    assert [o.prune["channels"] for o in options] == [0.5, 0.25] and options[0].data == "source"
    steps, estimate = students._size(options[1], 1e6, 1e6)  # plenty of time: the kind's maximum
    assert steps == options[1].max_steps and estimate > 0
    with pytest.raises(StudentSkipped, match=f"at least {MIN_STEPS}"):
        students._size(options[1], 0.0, 1e6)  # no time: not trained, and the message says why
    assert not list(tmp_path.iterdir())  # probing trains nothing that is kept
