"""hasten.load_result(OUT): the chosen model, its recipe and a ready Session, without the search.

The OUT folder is written here the way `search/finish.py` writes it (model.onnx, recipe.yaml with its
header, results.json naming the chosen candidate), from a recipe applied to a small model: no search runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from modelkit import make_mlp

import hasten
from hasten.errors import ResultError
from hasten.model import Model
from hasten.outcome.records import Record
from hasten.outcome.results import Results, Summary
from hasten.recipe import Recipe, Step, apply, normalized

SRC = Path(__file__).resolve().parents[1] / "src"


def write_out(out: Path, threads: int = 1) -> tuple[Model, Recipe]:
    """OUT/ as finish.write_outputs leaves it, for an int8-dynamic recipe on an MLP."""
    model = Model.from_proto(make_mlp(seed=3))
    recipe = Recipe((normalized(Step("quantize", "int8-dynamic", {})),), "onnxruntime", {"threads": threads})
    built = apply(recipe, model)
    built.save(out / "model.onnx")
    recipe.save(out / "recipe.yaml", header=f"made by hasten optimize (test)\noutput fingerprint {built.fingerprint()}")
    base = Record("k-base", Recipe((), "onnxruntime", {"threads": threads}), "baseline", status="baseline",
                  fingerprint=model.fingerprint())
    chosen = Record("k-chosen", recipe, "scheme", status="in-budget", fingerprint=built.fingerprint(), chosen=True)
    summary = Summary("k-base", "k-chosen", True, 2.0, 1.33, 1.5, None, None, recipe.label(), "")
    results = Results(model="mlp", metrics=["cosine"], candidates=[base, chosen], baseline="k-base",
                      chosen="k-chosen", summary=summary)  # written through the types finish uses
    (out / "results.json").write_text(json.dumps(results.to_json(), indent=2))
    return built, recipe


def test_load_result_gives_the_chosen_model_its_recipe_and_a_session(tmp_path):
    built, recipe = write_out(tmp_path)
    result = hasten.load_result(tmp_path)
    assert result.model.fingerprint() == built.fingerprint()
    assert result.recipe == recipe and result.recipe.steps[0].name == "int8-dynamic"
    assert result.results.summary.speedup == 1.5 and result.chosen.label == recipe.label()
    assert result.session.describe()["threads"] == 1  # compiled with the recipe's options
    x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    want = hasten.get_backend("onnxruntime", threads=1).compile(built).run({"x": x})["y"]
    np.testing.assert_array_equal(result.run({"x": x})["y"], want)
    assert hasten.load_result(tmp_path, threads=2).session.describe()["threads"] == 2
    with pytest.raises(AttributeError):
        result.model = None  # frozen


def test_load_result_does_not_import_the_search(tmp_path):
    write_out(tmp_path)
    code = textwrap.dedent(f"""
        import sys, numpy as np
        import hasten
        result = hasten.load_result({str(tmp_path)!r})
        result.run({{"x": np.ones((1, 16), np.float32)}})
        print(sorted(m for m in sys.modules if m.startswith("hasten.search")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_a_missing_folder_or_file_says_what_is_missing(tmp_path):
    with pytest.raises(ResultError, match="no such folder"):
        hasten.load_result(tmp_path / "nope")
    with pytest.raises(ResultError, match=r"missing model\.onnx, recipe\.yaml, results\.json"):
        hasten.load_result(tmp_path)
    write_out(tmp_path)
    (tmp_path / "results.json").unlink()
    with pytest.raises(ResultError, match=r"missing results\.json.*did not finish"):
        hasten.load_result(tmp_path)


def test_a_partial_or_foreign_results_file_is_refused(tmp_path):
    write_out(tmp_path)
    path = tmp_path / "results.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "partial": True}))
    with pytest.raises(ResultError, match="partial results"):
        hasten.load_result(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ResultError, match="not readable JSON"):
        hasten.load_result(tmp_path)
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(ResultError, match="not the results.json of hasten optimize"):
        hasten.load_result(tmp_path)
    path.write_text(json.dumps({**data, "chosen": "k-gone"}))
    with pytest.raises(ResultError, match="names no chosen candidate"):
        hasten.load_result(tmp_path)


def test_files_from_two_runs_are_refused(tmp_path):
    built, recipe = write_out(tmp_path)
    path = tmp_path / "results.json"
    data = json.loads(path.read_text())
    data["chosen"] = "k-base"  # results.json chose the baseline; recipe.yaml is the int8 one
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError, match="recipe.yaml is not the chosen candidate"):
        hasten.load_result(tmp_path)
    write_out(tmp_path)
    Model.from_proto(make_mlp(seed=4)).save(tmp_path / "model.onnx")  # another run's model
    with pytest.raises(ResultError, match="model.onnx: fingerprint"):
        hasten.load_result(tmp_path)
