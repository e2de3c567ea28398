"""What the search knows about each candidate (a typed `Record`), its `Status`, and its latency figures.

Status of a record (`Status`, a str-valued enum: JSON and comparisons with the plain strings keep working):
- BASELINE "baseline":    the input model on a backend (accuracy is the reference itself);
- IN_BUDGET "in-budget":  accuracy within the budget on the full evaluation set;
- REJECTED "rejected":    accuracy outside the budget (on the subset screen or the full set), or slower than
                          the baseline; `reason` says which and by how much;
- FAILED "failed":        the candidate could not be built, compiled, run or scored (`stage` and `reason`);
- DUPLICATE "duplicate":  the recipe produced the same model as another candidate (`reason` names it);
- NOT_TRIED "not-tried":  left in the queue when the time budget ran out;
- PENDING "pending":      not evaluated yet; RUNNING "running": being evaluated (only in the cache: a
                          candidate that stays "running" crashed the process that evaluated it).

Latency figures are `Screen` (a short interleaved screen against the baseline) and `Latency` (the final
BENCHMARKING.md measurement, with its distribution); both read and write the dicts hasten.search.timing makes.
`Record.to_json` / `Record.from_json` are the one serialisation of a record (results.json's candidates);
`accuracy_state` / `restore` are the cache's (what does not depend on the machine's load).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum

from hasten.measure.accuracy import Score
from hasten.recipe import Recipe


@dataclass
class Accuracy:
    """Scores, drops against the same backend's fp32 baseline, and whether they fit the budget."""

    scores: dict[str, Score]
    drops: dict[str, float]
    items: int
    within: bool
    excess: float  # max(drop / limit); <= 1 within budget
    seconds: float

    def to_dict(self) -> dict:
        return {"items": self.items, "within_budget": self.within, "excess": self.excess,
                "seconds": round(self.seconds, 3),
                "metrics": {n: {"mean": s.mean, "worst": s.worst, "drop": self.drops[n]}
                            for n, s in self.scores.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> Accuracy:
        metrics = d["metrics"]
        return cls({n: Score(v["mean"], v["worst"]) for n, v in metrics.items()},
                   {n: v["drop"] for n, v in metrics.items()}, d["items"], d["within_budget"], d["excess"],
                   d.get("seconds", 0.0))


class Status(StrEnum):
    BASELINE = "baseline"
    IN_BUDGET = "in-budget"
    REJECTED = "rejected"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    NOT_TRIED = "not-tried"
    PENDING = "pending"
    RUNNING = "running"

    @property
    def kept(self) -> bool:
        """Inside the budget: the baseline or an in-budget candidate."""
        return self in (Status.BASELINE, Status.IN_BUDGET)

    @property
    def judged(self) -> bool:
        """Evaluated for accuracy (in budget or rejected): it has scores."""
        return self in (Status.IN_BUDGET, Status.REJECTED)

    @property
    def ran(self) -> bool:
        """Built and run (not failed, a duplicate, left untried or still pending)."""
        return self in (Status.BASELINE, Status.IN_BUDGET, Status.REJECTED)


#: the statuses a finished search counts (results.json's "counts", in this order)
STATUSES = (Status.BASELINE, Status.IN_BUDGET, Status.REJECTED, Status.FAILED, Status.DUPLICATE, Status.NOT_TRIED)


@dataclass
class Screen:
    """A latency screen: this candidate's figures from rounds interleaved with the baseline's (ratio =
    baseline median / this median; ratio_ci its interval over the rounds). The baseline's own has `noise`
    (its per-round spread); `potential`: timed while out of budget, only to decide whether refining it can win."""

    median_ms: float | None = None
    ratio: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    throughput: float | None = None
    runs: int | None = None
    spread: float | None = None
    pooled_ratio: float | None = None
    baseline_median_ms: float | None = None
    ratio_ci: list[float] | None = None
    confidence: float | None = None
    rounds: int | None = None
    resolved: bool | None = None
    threshold: float | None = None
    noise: dict | None = None
    potential: bool = False

    def to_json(self) -> dict:
        """The dict hasten.search.timing makes (unset fields and `potential` when false are left out, except
        the two every reader needs: median_ms and ratio)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("median_ms", "ratio") or (v is not None and not (f.name == "potential" and not v)):
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_json(cls, data: dict | None):
        """From a timing dict (keys this type does not know are ignored); None stays None."""
        if data is None:
            return None
        if isinstance(data, cls):
            return data
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        if kw.get("ratio_ci") is not None:
            kw["ratio_ci"] = [float(x) for x in kw["ratio_ci"]]
        return cls(**kw)


@dataclass
class Latency(Screen):
    """The final measurement (BENCHMARKING.md): a screen's figures plus the distribution (`times_ms`, at
    most hasten.search.timing.SAMPLE_POINTS evenly spaced order statistics)."""

    times_ms: list[float] | None = None

    def lower(self, baseline_spread: float = 0.0) -> float:
        """The lower end of the ratio's interval (from the spreads when there is no interval)."""
        if self.ratio_ci:
            return self.ratio_ci[0]
        return (self.ratio or 0.0) / (1.0 + max(self.spread or 0.0, baseline_spread))


@dataclass
class Record:
    key: str
    recipe: Recipe
    origin: str
    parent: str | None = None
    note: str = ""
    status: Status = Status.PENDING
    reason: str = ""
    stage: str = ""  # where it failed / was rejected: build, compile, run, nan, metric, subset, full, latency
    subset: Accuracy | None = None
    full: Accuracy | None = None
    screen: Screen | None = None  # short latency screen against the baseline
    latency: Latency | None = None  # the final BENCHMARKING.md measurement
    fingerprint: str = ""
    size_bytes: int = 0
    compile_s: float = 0.0
    rss_added_mb: float = 0.0
    build_s: float = 0.0
    quant_report: dict = field(default_factory=dict)
    chosen: bool = False
    cached: bool = False  # accuracy came from an earlier run's cache
    recovery: str = ""  # a retry of the failed candidate `parent`: the fix applied
    mixed: str = ""  # a mixed-precision candidate: "float" or "dynamic" (how its kept-out nodes run)
    change: tuple[str, str] = ()  # a one-option variant: the (option, str(value)) it changed

    def __setattr__(self, name, value):  # the typed fields stay typed whoever assigns them
        if name == "status" and not isinstance(value, Status):
            value = Status(value)
        elif name == "screen" and value is not None and not isinstance(value, Screen):
            value = Screen.from_json(value)
        elif name == "latency" and value is not None and not isinstance(value, Latency):
            value = Latency.from_json(value if isinstance(value, dict) else dataclasses.asdict(value))
        object.__setattr__(self, name, value)

    @property
    def label(self) -> str:
        return self.recipe.label()

    @property
    def accuracy(self) -> Accuracy | None:
        return self.full or self.subset

    @property
    def within(self) -> bool:
        return self.status.kept

    @property
    def quantised(self) -> bool:
        return any(s.kind == "quantize" for s in self.recipe.steps)

    @property
    def scheme(self) -> str:
        """The last quantisation scheme's name ("" for an fp32 model)."""
        names = [s.name for s in self.recipe.steps if s.kind == "quantize"]
        return names[-1] if names else ""

    @property
    def speedup(self) -> float | None:
        """Baseline median / this median: the final measurement when there is one, else the screen."""
        if self.latency and self.latency.ratio:
            return float(self.latency.ratio)
        if self.screen and self.screen.ratio:
            return float(self.screen.ratio)
        return None

    @property
    def median_ms(self) -> float | None:
        src = self.latency or self.screen
        return None if not src or src.median_ms is None else float(src.median_ms)

    # -- the cache stores what does not depend on the machine's load ---------------------------------
    def accuracy_state(self) -> dict:
        return {"status": str(self.status), "reason": self.reason, "stage": self.stage,
                "subset": self.subset.to_dict() if self.subset else None,
                "full": self.full.to_dict() if self.full else None, "fingerprint": self.fingerprint,
                "size_bytes": self.size_bytes, "build_s": self.build_s, "quant_report": self.quant_report,
                "recipe": self.recipe.to_dict()}

    def restore(self, state: dict) -> None:
        self.status, self.reason, self.stage = state["status"], state["reason"], state.get("stage", "")
        self.subset = Accuracy.from_dict(state["subset"]) if state.get("subset") else None
        self.full = Accuracy.from_dict(state["full"]) if state.get("full") else None
        self.fingerprint = state.get("fingerprint", "")
        self.size_bytes = int(state.get("size_bytes", 0))
        self.build_s = float(state.get("build_s", 0.0))
        self.quant_report = state.get("quant_report") or {}
        self.cached = True

    # -- results.json ----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        acc = self.accuracy
        return {
            "key": self.key, "label": self.label, "origin": self.origin, "parent": self.parent,
            "note": self.note, "status": str(self.status), "kept": self.within, "chosen": self.chosen,
            "reason": self.reason, "stage": self.stage, "recipe": self.recipe.to_dict(),
            "accuracy": acc.to_dict() if acc else None,
            "accuracy_subset": self.subset.to_dict() if self.subset else None,
            "accuracy_full": self.full.to_dict() if self.full else None,
            "latency_screen": self.screen.to_json() if self.screen else None,
            "latency": self.latency.to_json() if self.latency else None, "speedup": self.speedup,
            "memory": {"rss_added_mb": round(self.rss_added_mb, 1)}, "size_bytes": self.size_bytes,
            "fingerprint": self.fingerprint, "build_s": round(self.build_s, 3),
            "compile_s": round(self.compile_s, 3), "quantization": self.quant_report,
            "from_cache": self.cached, "recovery": self.recovery, "mixed": self.mixed,
            "change": list(self.change),
        }

    @classmethod
    def from_json(cls, d: dict) -> Record:
        """A record from `to_json`'s dict, also from a results.json written before "accuracy_full",
        "mixed" and "change" existed (then the full evaluation is "accuracy" when it differs from the subset's)."""
        recipe = Recipe.from_dict(d["recipe"], where=f"results.json candidate {d.get('key', '?')}")
        subset = Accuracy.from_dict(d["accuracy_subset"]) if d.get("accuracy_subset") else None
        if "accuracy_full" in d:
            full = Accuracy.from_dict(d["accuracy_full"]) if d["accuracy_full"] else None
        else:
            acc = Accuracy.from_dict(d["accuracy"]) if d.get("accuracy") else None
            full = acc if acc is not None and acc != subset else None
        return cls(d["key"], recipe, d.get("origin", ""), d.get("parent"), d.get("note", ""),
                   Status(d.get("status", "pending")), d.get("reason", ""), d.get("stage", ""), subset, full,
                   Screen.from_json(d.get("latency_screen")), Latency.from_json(d.get("latency")),
                   d.get("fingerprint", ""), int(d.get("size_bytes") or 0), float(d.get("compile_s") or 0.0),
                   float((d.get("memory") or {}).get("rss_added_mb") or 0.0), float(d.get("build_s") or 0.0),
                   d.get("quantization") or {}, bool(d.get("chosen")), bool(d.get("from_cache")),
                   d.get("recovery", ""), d.get("mixed", ""), tuple(d.get("change") or ()))


def model_bytes(model) -> int:
    """The model's size as a file (graph and every weight, Constant nodes included), in bytes."""
    try:
        return int(model.proto().ByteSize())
    except Exception:  # e.g. over protobuf's 2 GB: the weights alone
        return int(model.parameter_bytes())


def _family(rec: Record) -> str:
    """"int8" for int8-static / int8-dynamic / int8-weight, the scheme name otherwise ("" without one)."""
    names = [s.name for s in rec.recipe.steps if s.kind == "quantize"]
    if not names:
        return ""
    return "int8" if names[-1].startswith("int8") else names[-1]


def failure_line(records: list[Record]) -> str:
    """What went wrong among the quantised candidates, for the headline: "every int8 (or quantised)
    candidate failed: <the commonest reasons>", else why none fits the budget; "" when one fits it."""
    tried = [r for r in records if _family(r) and r.status not in (Status.NOT_TRIED, Status.PENDING,
                                                                    Status.DUPLICATE)]
    if not tried:
        return ""
    int8 = [r for r in tried if _family(r) == "int8"]
    for what, recs in (("int8" if len(int8) == len(tried) else "quantised", tried), ("int8", int8)):
        failed = [r for r in recs if r.status == Status.FAILED]
        if recs and len(failed) == len(recs):
            return f"every {what} candidate failed: {_reasons(failed)}"
    if any(r.within for r in tried):
        return ""
    failed = [r for r in tried if r.status == Status.FAILED]
    missed = [r for r in tried if r.status == Status.REJECTED]
    closest = min((r for r in missed if r.accuracy is not None), key=lambda r: r.accuracy.excess, default=None)
    text = f"no quantised candidate fits the budget ({len(missed)} missed it"
    if closest is not None:
        text += f"; the closest, {closest.label}, used {closest.accuracy.excess:.1f}x the allowed drop"
    text += ")"
    if failed:
        text += f"; {len(failed)} failed: {_reasons(failed)}"
    return text


def _reasons(failed: list[Record], most: int = 2) -> str:
    """The commonest failure reasons, each once, with how many candidates gave it."""
    counts: dict[str, list[str]] = {}
    for r in failed:
        counts.setdefault(f"{r.stage or 'failed'}: {r.reason[:140]}", []).append(r.label)
    top = sorted(counts.items(), key=lambda kv: -len(kv[1]))[:most]
    text = "; ".join(f"{reason} ({len(labels)}x)" if len(labels) > 1 else f"{labels[0]}: {reason}"
                     for reason, labels in top)
    return text + (f"; and {len(counts) - most} other reason(s)" if len(counts) > most else "")


def summarize_report(report: dict, limit: int = 40) -> dict:
    """A quantiser's report made small enough for results.json (long lists cut, with their length)."""
    out: dict = {}
    for k, v in (report or {}).items():
        if isinstance(v, (list, tuple)):
            out[k] = list(v[:limit]) + ([f"... {len(v) - limit} more"] if len(v) > limit else [])
        elif isinstance(v, dict):
            items = list(v.items())
            out[k] = dict(items[:limit])
            if len(items) > limit:
                out[k]["..."] = f"{len(items) - limit} more"
        else:
            out[k] = v
    return out
