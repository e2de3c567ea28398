"""The search's result cache under OUT/: one JSON file per candidate (and per benchmark session), keyed by
(input fingerprint, data fingerprints, metric settings, recipe), plus the candidate's model when it is kept.

Every write is atomic (a temporary file in the same folder, then `os.replace`), so an interrupted run
(Ctrl-C, a crash) leaves only complete files and the next run resumes from them.

    OUT/search.json              which model, data and budget this folder belongs to
    OUT/cache/<key>.json         one candidate's result (accuracy, failure, latency screen...)
    OUT/cache/<key>.onnx         its model, when it passed the accuracy screen
    OUT/cache/bench-<key>.json   a latency session over a set of candidates (reused only for the same set)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from hasten.errors import SearchError
from hasten.fileio import atomic_write_json, atomic_write_text  # noqa: F401  (re-exported for search/)

MANIFEST = "search.json"
OUTPUTS = ("model.onnx", "model.onnx.data", "recipe.yaml", "results.json", "report.html")


def read_json(path: Path):
    """The JSON in `path`, or None when it is missing or unreadable (a damaged file counts as absent)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def listed_artefacts(root: Path) -> list[Path]:
    """The files an earlier search wrote beside model.onnx, as its OUT/results.json lists them (`artefacts`):
    only plain relative paths inside `root` that exist."""
    results = read_json(Path(root) / "results.json")
    names = results.get("artefacts") if isinstance(results, dict) else None
    base = Path(root).resolve()
    found = []
    for name in names if isinstance(names, list) else []:
        if not isinstance(name, str) or name in OUTPUTS or Path(name).is_absolute() or ".." in Path(name).parts:
            continue
        path = (base / name).resolve()
        if path.is_relative_to(base) and path.is_file():
            found.append(path)
    return found


def remove_artefacts(root: Path, keep: tuple[Path, ...] = ()) -> None:
    """Delete the artefacts OUT/results.json lists (but `keep`), and the folders they leave empty."""
    base = Path(root).resolve()
    kept = {Path(k).resolve() for k in keep}
    for path in listed_artefacts(root):
        if path in kept:
            continue
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != base and parent.is_relative_to(base) and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


def digest(*parts) -> str:
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class ResultCache:
    """Candidate results and models under `root/cache/`, scoped by a context key (model + data + metrics)."""

    def __init__(self, root: str | os.PathLike, context: dict):
        self.root = Path(root)
        self.dir = self.root / "cache"
        self.context = context
        # the budget is not part of the key: cached scores are re-judged against the current budget
        self.context_key = digest({k: v for k, v in context.items() if k != "budget"})

    # -- the folder's owner --------------------------------------------------------------------------
    def claim(self, resume: bool = False, force: bool = False) -> str:
        """Check OUT/ belongs to this model (or is empty) and record it; returns "new", "resume" or
        "reset". A folder holding another model's results raises SearchError unless `resume`/`force`."""
        manifest = read_json(self.root / MANIFEST)
        state = "new"
        if manifest is not None:
            same = manifest.get("model_fingerprint") == self.context.get("model_fingerprint")
            if same or resume:
                state = "resume"
            elif force:
                self.clear()
                state = "reset"
            else:
                raise SearchError(f"{self.root}: holds the results of another model "
                                  f"({manifest.get('model', '?')}, fingerprint "
                                  f"{manifest.get('model_fingerprint', '?')}); choose another -o folder, or "
                                  "pass --force to replace them (--resume to keep them and add these)")
        elif self.root.exists() and any(self.root.iterdir()):
            foreign = [p.name for p in self.root.iterdir() if p.name not in (*OUTPUTS, "cache")]
            if foreign and not (resume or force):
                raise SearchError(f"{self.root}: is not empty and was not written by hasten optimize "
                                  f"(holds {sorted(foreign)[:5]}); choose another -o folder or pass --force")
        if force and state != "reset":
            self.clear()
            state = "reset" if manifest is not None else state
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.root / MANIFEST, {**self.context, "context_key": self.context_key})
        return state

    def clear(self) -> None:
        """Remove the cache and the outputs of an earlier search, the artefacts its results.json lists
        included (never anything else)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        remove_artefacts(self.root)
        for name in (*OUTPUTS, MANIFEST):
            (self.root / name).unlink(missing_ok=True)

    # -- entries -------------------------------------------------------------------------------------
    def key(self, recipe_key: str) -> str:
        return digest(self.context_key, recipe_key)

    def get(self, key: str) -> dict | None:
        data = read_json(self.dir / f"{key}.json")
        return data if isinstance(data, dict) else None

    def put(self, key: str, data: dict) -> None:
        atomic_write_json(self.dir / f"{key}.json", data)

    def model_path(self, model_key: str) -> Path:
        return self.dir / f"model-{digest(self.context_key, model_key)}.onnx"

    def load_model(self, model_key: str):
        """The cached model made by these steps, or None."""
        from hasten.errors import ModelLoadError
        from hasten.model import load_onnx

        path = self.model_path(model_key)
        if not path.is_file():
            return None
        try:
            return load_onnx(path)
        except ModelLoadError:
            return None

    def save_model(self, model_key: str, model) -> Path:
        path = self.model_path(model_key)
        if not path.is_file():
            model.save(path)
        return path
