"""The generalisation corpus: real models hasten did not export itself, each with its own data and metric.

Every entry builds, offline, into `ROOT/<name>/`: `model.onnx`, `calib.npz` and `eval.npz` (named arrays with a
leading batch axis, `labels` where labels exist; calibration and evaluation items are disjoint) and
`meta.json` (what it is, how it was exported, its metric and budget). `build(name)` writes it once and reuses
it after; `load(name)` returns a `Built` with the paths, the Samples and the metric.

    .venv/bin/python -m bench.corpus.build [--models magika,tiny-bert] [--force]
    .venv/bin/python bench/corpus/run.py [--models a,b] [--time-budget 3m]

The registry is `ENTRIES` (name -> Entry); the builders live in bench/corpus/models/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hasten.errors import HastenError

#: the default cache (gitignored); every builder writes only inside ROOT/<name>/
ROOT = Path(__file__).resolve().parent / ".cache"


class CorpusError(HastenError):
    """A corpus entry cannot be built or loaded (unknown name, a model package that is not installed...)."""


@dataclass(frozen=True)
class Entry:
    """One corpus model: `build(folder, small)` writes model.onnx, calib.npz, eval.npz and returns meta."""

    name: str
    kind: str  # "packaged" (trained, ships inside a registry package) | "random-init" (config, exported)
    build: Callable[[Path, bool], dict]
    metric: str  # a hasten metric: built-in name or module:function
    max_drop: float  # absolute drop of the metric that the budget allows
    transformer: bool = False  # NNCF's fitting preset is ModelType.TRANSFORMER
    description: str = ""
    ci: bool = False  # small enough for the CI subset


@dataclass
class Built:
    """A built entry: its folder, files, samples and metric."""

    entry: Entry
    folder: Path
    meta: dict = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def calib_path(self) -> Path:
        return self.folder / "calib.npz"

    @property
    def eval_path(self) -> Path:
        return self.folder / "eval.npz"

    def calib(self):
        from hasten.data import Samples

        return Samples.from_npz(self.calib_path)

    def eval(self):
        from hasten.data import Samples

        return Samples.from_npz(self.eval_path)

    def metric(self):
        from hasten.measure.accuracy import get_metric

        return get_metric(self.entry.metric)


#: the builder modules under bench/corpus/models/, each with `entries() -> list[Entry]`
FAMILIES = ("magika", "ocr", "detect", "random_init")


def _entries() -> dict[str, Entry]:
    import importlib

    entries = []
    for module in FAMILIES:
        entries += importlib.import_module(f"bench.corpus.models.{module}").entries()
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CorpusError(f"corpus entries registered twice: {dupes}")
    return {e.name: e for e in entries}


class _Registry(dict):
    def __missing__(self, name):
        raise CorpusError(f"no corpus model {name!r}; known: {', '.join(sorted(self))}")


ENTRIES: dict[str, Entry] = _Registry(_entries())

FILES = ("model.onnx", "calib.npz", "eval.npz", "meta.json")


def names(spec: str | None = None, ci: bool = False) -> list[str]:
    """Entry names from "a,b" (every entry when empty; only the CI subset with `ci`); CorpusError if unknown."""
    if not spec:
        return [n for n, e in ENTRIES.items() if e.ci or not ci]
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    for n in wanted:
        ENTRIES[n]  # noqa: B018 - raises CorpusError for an unknown name
    return wanted


def build(name: str, root: Path | str = ROOT, force: bool = False, small: bool = False) -> Built:
    """Build entry `name` into `root/<name>` unless it is already there (all four files); returns it."""
    entry = ENTRIES[name]
    folder = Path(root) / name
    if not force and all((folder / f).is_file() for f in FILES):
        return load(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)  # the completion mark: written last
    t0 = time.perf_counter()
    meta = entry.build(folder, small)
    meta = {"name": name, "kind": entry.kind, "metric": entry.metric, "max_drop": entry.max_drop,
            "transformer": entry.transformer, "description": entry.description, "small": small,
            "build_s": round(time.perf_counter() - t0, 1), **meta}
    missing = [f for f in FILES[:3] if not (folder / f).is_file()]
    if missing:
        raise CorpusError(f"corpus model {name}: its builder did not write {missing}")
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    return Built(entry, folder, meta)


def load(name: str, root: Path | str = ROOT) -> Built:
    """A built entry; CorpusError naming the build command when it is not built yet."""
    entry = ENTRIES[name]
    folder = Path(root) / name
    if not all((folder / f).is_file() for f in FILES):
        raise CorpusError(f"corpus model {name} is not built in {folder}: run "
                          f"`.venv/bin/python -m bench.corpus.build --models {name}`")
    return Built(entry, folder, json.loads((folder / "meta.json").read_text()))
