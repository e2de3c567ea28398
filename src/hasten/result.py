"""`hasten.load_result(OUT)`: the model `hasten optimize` chose, its recipe and a ready Session, read back
from the folder it wrote, without the search (nothing here imports `hasten.search`).

    result = hasten.load_result("out/minilm")
    outputs = result.session.run(feeds)          # compiled on the recipe's backend, with its options
    result.model, result.recipe, result.results  # Model, Recipe, results.json (hasten.outcome.results.Results)
    result.artefacts                             # files the backend wrote beside model.onnx

OUT must hold the three files the search writes last: `model.onnx`, `recipe.yaml` and `results.json`.
A folder without them, with a partial `results.json` (the search did not finish), or whose files disagree
(a recipe, or a built model, that is not the chosen candidate of results.json: files from two runs) raises
ResultError saying which file and what to do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hasten.errors import HastenError, ResultError
from hasten.model import Model, load_onnx
from hasten.outcome.records import Record
from hasten.outcome.results import Results
from hasten.recipe import Recipe

FILES = ("model.onnx", "recipe.yaml", "results.json")


@dataclass(frozen=True)
class LoadedResult:
    """What `load_result` returns: the chosen Model, its Recipe, a Session compiled as the recipe says, and
    results.json (`results`) from the folder `path`."""

    path: Path
    model: Model
    recipe: Recipe
    session: object = field(repr=False)  # hasten.backends.base.Session
    results: Results = field(repr=False)
    #: what the backend wrote beside model.onnx (results.json's `artefacts`, e.g. generated sources)
    artefacts: tuple[Path, ...] = ()

    @property
    def chosen(self) -> Record:
        """The chosen candidate's record in results.json (label, accuracy, latency, ...)."""
        return _chosen_entry(self.results, self.path / "results.json")

    def run(self, feeds: dict) -> dict:
        """`session.run(feeds)`: every output by name."""
        return self.session.run(feeds)


def load_result(out: str | os.PathLike, threads: int | None = None) -> LoadedResult:
    """Read OUT/ (written by `hasten optimize`) back: the model, its recipe and a Session compiled on the
    recipe's backend with its options (`threads` overrides the recipe's thread count). ResultError for a
    missing or partial folder, or files from two runs."""
    path = Path(out)
    if not path.is_dir():
        raise ResultError(f"{path}: no such folder; give the output folder of hasten optimize (-o OUT)")
    missing = [name for name in FILES if not (path / name).is_file()]
    if missing:
        raise ResultError(f"{path}: missing {', '.join(missing)}; a finished hasten optimize writes "
                          f"{', '.join(FILES)} (the search did not finish, or this is not its output folder)")
    results = _read_results(path / "results.json")
    try:
        recipe = Recipe.load(path / "recipe.yaml")
    except HastenError as exc:
        raise ResultError(f"{path / 'recipe.yaml'}: {exc}") from exc
    chosen = _chosen_entry(results, path / "results.json")
    if chosen.recipe.to_dict() != recipe.to_dict():
        raise ResultError(f"{path}: recipe.yaml is not the chosen candidate of results.json ({chosen.label}); "
                          "the files come from two runs: run hasten optimize again")
    model = load_onnx(path / "model.onnx")
    # a candidate's fingerprint is its built model's; a recipe without steps saves the input model, whose
    # file may differ from the input's fingerprint (Model.save adds the opset imports it lacks)
    if recipe.steps and chosen.fingerprint and model.fingerprint() != chosen.fingerprint:
        raise ResultError(f"{path / 'model.onnx'}: fingerprint {model.fingerprint()}, but results.json chose "
                          f"{chosen.fingerprint}; the files come from two runs: run hasten optimize again")
    artefacts = _artefacts(path, results)
    session = recipe.backend_instance(threads).compile(model)
    return LoadedResult(path, model, recipe, session, results, artefacts)


def _artefacts(path: Path, results: Results) -> tuple[Path, ...]:
    """The files results.json lists beside model.onnx; ResultError when one is missing or outside OUT/."""
    names = results.extras.get("artefacts") or []
    found = []
    for name in names:
        if name in FILES:
            continue
        file = path / str(name)
        if Path(str(name)).is_absolute() or ".." in Path(str(name)).parts or not file.is_file():
            raise ResultError(f"{path}: results.json lists the artefact {name!r}, which is not a file in the "
                              "folder; run hasten optimize again (or hasten apply for the model and its files)")
        found.append(file)
    return tuple(found)


def _read_results(file: Path) -> Results:
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultError(f"{file}: not readable JSON ({exc}); run hasten optimize again") from exc
    if not isinstance(results, dict) or "hasten_results" not in results:
        raise ResultError(f"{file}: not the results.json of hasten optimize (no 'hasten_results' key)")
    if results.get("partial"):
        raise ResultError(f"{file}: partial results (the search did not finish); run hasten optimize again "
                          "(--resume reuses what it measured)")
    try:
        return Results.from_json(results)
    except HastenError as exc:
        raise ResultError(f"{file}: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultError(f"{file}: not a results.json this hasten reads ({type(exc).__name__}: {exc})") from exc


def _chosen_entry(results: Results, file: Path) -> Record:
    chosen = results.record(results.chosen)
    if chosen is None:
        raise ResultError(f"{file}: names no chosen candidate (chosen: {results.chosen!r}); run hasten optimize "
                          "again")
    return chosen
