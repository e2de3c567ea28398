"""results.json as a type: `Results` is written (the search) and read (the report, tools) through one
`to_json` / `from_json` pair.

`version` says the layout: RESULTS_VERSION is written; a file without one is the layout before versions
existed (read the same way: its candidates lack "accuracy_full" and "mixed"); a newer version than this
hasten reads raises SearchError saying so. Free-form sections that other modules make (environment,
floor, cost, shapes) are kept in `extras`, written at the top level as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hasten.errors import SearchError
from hasten.outcome.records import Accuracy, Record

#: the layout written (1: before results.json carried "version"; 2: typed records, "accuracy_full", "mixed")
RESULTS_VERSION = 2


@dataclass
class Summary:
    """The headline: what was chosen against the baseline, and what failed."""

    baseline: str
    chosen: str
    beat_baseline: bool
    baseline_ms: float | None
    chosen_ms: float | None
    speedup: float
    accuracy: Accuracy | None
    baseline_accuracy: Accuracy | None
    line: str
    failures: str

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["accuracy"] = self.accuracy.to_dict() if self.accuracy else None
        d["baseline_accuracy"] = self.baseline_accuracy.to_dict() if self.baseline_accuracy else None
        return d

    @classmethod
    def from_json(cls, d: dict | None) -> Summary | None:
        if not d:
            return None
        acc = Accuracy.from_dict(d["accuracy"]) if d.get("accuracy") else None
        base_acc = Accuracy.from_dict(d["baseline_accuracy"]) if d.get("baseline_accuracy") else None
        return cls(d.get("baseline", ""), d.get("chosen", ""), bool(d.get("beat_baseline")), d.get("baseline_ms"),
                   d.get("chosen_ms"), float(d.get("speedup") or 1.0), acc, base_acc, d.get("line", ""),
                   d.get("failures", ""))


@dataclass
class Results:
    """Everything a search knows, as results.json holds it."""

    model: str = ""
    metrics: list[str] = field(default_factory=list)
    budget: dict[str, float] = field(default_factory=dict)
    candidates: list[Record] = field(default_factory=list)
    baseline: str | None = None  # the baseline's key
    chosen: str | None = None  # the chosen candidate's key (None while the search runs)
    partial: bool = False
    interrupted: bool = False
    written: str = ""
    input_fingerprint: str | None = None
    calibration_fingerprint: str | None = None
    evaluation_fingerprint: str | None = None
    evaluation_items: int | None = None
    subset_items: int | None = None
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    cache: str = ""
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    sensitivity: dict | None = None
    host: dict = field(default_factory=dict)
    noise: dict = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    summary: Summary | None = None
    extras: dict = field(default_factory=dict)  # environment, shapes, floor, floor_error, cost
    version: int = RESULTS_VERSION

    # -- look-ups --------------------------------------------------------------------------------------
    def by_key(self) -> dict[str, Record]:
        return {c.key: c for c in self.candidates}

    def record(self, key: str | None) -> Record | None:
        return None if key is None else self.by_key().get(key)

    @property
    def primary(self) -> str:
        return self.metrics[0]

    # -- JSON -----------------------------------------------------------------------------------------
    _SCALARS = ("partial", "interrupted", "written", "model", "input_fingerprint", "calibration_fingerprint",
                "evaluation_fingerprint", "evaluation_items", "subset_items", "metrics", "budget",
                "higher_is_better", "settings", "cache", "elapsed_s", "baseline", "chosen", "notes",
                "sensitivity", "host", "noise", "counts")

    def to_json(self) -> dict:
        data = {"hasten_results": 1, "version": self.version}
        data.update({k: getattr(self, k) for k in self._SCALARS})
        data["candidates"] = [r.to_json() for r in self.candidates]
        if self.summary is not None:
            data["summary"] = self.summary.to_json()
        data.update(self.extras)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Results:
        """From results.json's dict; a file without "version" is read as version 1; a newer version or
        something that is not a results file raises SearchError."""
        if isinstance(data, Results):
            return data
        if not isinstance(data, dict):
            raise SearchError(f"results.json: expected a mapping, got {type(data).__name__}")
        version = data.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SearchError(f"results.json: 'version' must be a positive integer, got {version!r}")
        if version > RESULTS_VERSION:
            raise SearchError(f"results.json: version {version} was written by a newer hasten (this one reads "
                              f"versions 1 to {RESULTS_VERSION}); upgrade hasten or run the search again")
        known = {*cls._SCALARS, "hasten_results", "version", "candidates", "summary"}
        kw = {k: data[k] for k in cls._SCALARS if k in data and data[k] is not None}
        for k in ("notes", "metrics"):
            if k in kw:
                kw[k] = list(kw[k])
        return cls(**kw, candidates=[Record.from_json(c) for c in data.get("candidates") or []],
                   summary=Summary.from_json(data.get("summary")),
                   extras={k: v for k, v in data.items() if k not in known}, version=RESULTS_VERSION)
