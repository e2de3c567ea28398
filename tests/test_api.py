"""`hasten.api.optimize` / `apply` and the `optimize` / `apply` commands, end to end on small models."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from search.helpers import QUICK, FakeTimer, samples, scheme_speed, wide_mlp

import hasten
import hasten.commands.apply  # noqa: F401  (registers the sub-commands until commands/__init__ lists them)
import hasten.commands.optimize  # noqa: F401
from hasten.api import apply, optimize, parse_duration
from hasten.cli import main
from hasten.errors import SearchError
from hasten.model import load_onnx


def test_parse_duration():
    assert parse_duration("10m") == 600 and parse_duration("90s") == 90 and parse_duration(45) == 45
    assert parse_duration("1m30s") == 90 and parse_duration("1h") == 3600 and parse_duration("2.5") == 2.5
    for bad in ("soon", "10x", "0", "-5", "m10"):
        with pytest.raises(SearchError):
            parse_duration(bad)


def test_zoo_digits_defaults_and_apply_reproduces(tmp_path):
    out = tmp_path / "digits"
    # speed is not what this test checks: a seeded fake timer (int8 1.3x) keeps it to seconds
    result = optimize("zoo:digits", out=out, time_budget=90, backends="onnxruntime",
                      schemes=("int8-static",), passes=(), timer=FakeTimer(scheme_speed({"int8-static": 1.3})),
                      **QUICK)
    data = json.loads(result.results_path.read_text())
    assert data["metrics"] == ["top1"] and data["budget"] == {"top1": 0.01}  # the zoo's own metric and budget
    assert data["evaluation_items"] == 360
    chosen = result.chosen
    assert chosen.accuracy.drops["top1"] <= 0.01
    # OUT/model.onnx is the chosen model (the baseline's too, when int8 is not faster on this host)
    saved = load_onnx(result.model_path)
    assert chosen.fingerprint and saved.fingerprint() == chosen.fingerprint
    assert apply(result.recipe_path, "zoo:digits").fingerprint() == saved.fingerprint()
    # int8-static keeps the digits' top-1 inside 1% whatever the timing: a quantised candidate is in the
    # budget, and its recipe reproduces it: Python API (zoo calibration by default) and the CLI
    quantised = [r for r in result.records if r is not result.baseline and r.within and r.recipe.steps]
    assert quantised, [(r.label, r.status, r.reason) for r in result.records]
    rec = quantised[0]
    assert rec.recipe.steps[-1].name == "int8-static" and rec.fingerprint != result.baseline.fingerprint
    path = rec.recipe.save(tmp_path / "int8.yaml")
    assert apply(path, "zoo:digits").fingerprint() == rec.fingerprint
    assert main(["apply", str(path), "zoo:digits", "-o", str(tmp_path / "again")]) == 0
    assert load_onnx(tmp_path / "again" / "model.onnx").fingerprint() == rec.fingerprint


def test_cli_optimize_prints_the_table_and_refuses_foreign_out(tmp_path, capsys):
    model = wide_mlp(width=256, layers=2)
    path = tmp_path / "mlp.onnx"
    onnx.save(model.proto(), path)
    np.savez(tmp_path / "calib.npz", x=samples(40, seed=1).arrays["x"])
    np.savez(tmp_path / "eval.npz", x=samples(40, seed=2).arrays["x"])
    out = tmp_path / "out"
    args = ["optimize", str(path), "--calib", str(tmp_path / "calib.npz"), "--eval", str(tmp_path / "eval.npz"),
            "--metric", "cosine", "--max-drop", "0.02", "--backends", "onnxruntime", "--time-budget", "90s",
            "--schemes", "int8-dynamic", "--passes", "", "--final-seconds", "0.3", "-o", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "baseline" in text and "speed-up" in text and "report:" in text and "floor" in text
    for name in ("model.onnx", "recipe.yaml", "results.json", "report.html"):
        assert (out / name).is_file()
    assert json.loads((out / "results.json").read_text())["budget"] == {"cosine": 0.02}
    # a second run resumes from the cache (same model): every candidate comes back cached
    assert main([*args, "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["counts"]["in-budget"] + second["counts"]["rejected"] >= 1
    data = json.loads((out / "results.json").read_text())
    assert all(c["from_cache"] for c in data["candidates"] if c["origin"] not in ("baseline", "threads"))
    # another model into the same folder: refused with a one-line error naming the folder
    other = tmp_path / "other.onnx"
    onnx.save(wide_mlp(width=128, layers=1, seed=3).proto(), other)
    assert main(["optimize", str(other), "--eval", str(tmp_path / "eval.npz"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another model" in err[0] and str(out) in err[0]
    assert main(["optimize", str(path), "--eval", str(tmp_path / "eval.npz"), "--schemes", "int3",
                 "-o", str(tmp_path / "x")]) == 2
    assert "unknown ['int3']" in capsys.readouterr().err


def test_a_crash_in_an_earlier_run_is_recorded_not_retried(tmp_path):
    model = wide_mlp(width=128, layers=1)
    calib, ev = samples(40, seed=1), samples(32, seed=2)
    settings = dict(backends="onnxruntime", metric="cosine", schemes=("int8-dynamic",), passes=(),
                    mixed_precision=False, time_budget=60, **QUICK)
    first = optimize(model, calib, ev, out=tmp_path / "o", timer=FakeTimer(scheme_speed({})), **settings)
    quantised = next(r for r in first.records if r.recipe.steps)
    # simulate a process killed while evaluating it: its cache entry still says "running"
    entries = [p for p in (tmp_path / "o" / "cache").glob("*.json") if not p.name.startswith("bench-")]
    target = [p for p in entries if (json.loads(p.read_text()).get("recipe") or {}).get("steps") ==
              quantised.recipe.to_dict()["steps"]]
    assert len(target) == 1
    target[0].write_text(json.dumps({"status": "running", "recipe": quantised.recipe.to_dict()}))
    second = optimize(model, calib, ev, out=tmp_path / "o", timer=FakeTimer(scheme_speed({})), **settings)
    rec = next(r for r in second.records if r.key == quantised.key)
    assert rec.status == "failed" and rec.stage == "crash" and "died" in rec.reason
    assert second.chosen is second.baseline


def test_load_accepts_the_written_model(tmp_path):
    model = wide_mlp(width=128, layers=1)
    result = optimize(model, samples(40, seed=1), samples(32, seed=2), metric="sqnr", backends="onnxruntime",
                      schemes=("int8-dynamic",), passes=(), time_budget=60, out=tmp_path / "o",
                      mixed_precision=False, timer=FakeTimer(scheme_speed({})), **QUICK)
    assert json.loads(result.results_path.read_text())["budget"] == {"sqnr": 170.0}
    loaded = hasten.load(str(result.model_path))
    assert [s.name for s in loaded.inputs] == ["x"]


def test_hasten_quantize_stays_callable_after_the_subpackage_is_imported():
    from modelkit import make_mlp

    import hasten
    from hasten.quantize import config_for  # binds the subpackage to hasten.quantize

    model = hasten.load(make_mlp())
    samples = hasten.Samples.synthetic(model, 8, seed=0)
    result = hasten.quantize(model, config_for("int8-dynamic"), samples)
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in result.model.proto().graph.node)
