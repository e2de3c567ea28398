"""What the search knows about each candidate (a `Record`), and the search's overall result.

Status of a record:
- "baseline":    the input model on a backend (accuracy is the reference itself);
- "in-budget":   accuracy within the budget on the full evaluation set;
- "rejected":    accuracy outside the budget (on the subset screen or the full set), or slower than the
                 baseline; `reason` says which and by how much;
- "failed":      the candidate could not be built, compiled, run or scored (`stage` and `reason` say why);
- "duplicate":   the recipe produced the same model as another candidate (`reason` names it);
- "not-tried":   left in the queue when the time budget ran out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hasten.recipe import Recipe
from hasten.search.evaluate import Accuracy

STATUSES = ("baseline", "in-budget", "rejected", "failed", "duplicate", "not-tried")


@dataclass
class Record:
    key: str
    recipe: Recipe
    origin: str
    parent: str | None = None
    note: str = ""
    status: str = "pending"
    reason: str = ""
    stage: str = ""  # where it failed / was rejected: build, compile, run, nan, metric, subset, full, latency
    subset: Accuracy | None = None
    full: Accuracy | None = None
    screen: dict | None = None  # short latency screen: median_ms, p90_ms, runs, ratio (baseline / this)
    latency: dict | None = None  # the final BENCHMARKING.md measurement
    fingerprint: str = ""
    size_bytes: int = 0
    compile_s: float = 0.0
    rss_added_mb: float = 0.0
    build_s: float = 0.0
    quant_report: dict = field(default_factory=dict)
    chosen: bool = False
    cached: bool = False  # accuracy came from an earlier run's cache
    recovery: str = ""  # a retry of the failed candidate `parent`: the fix applied

    @property
    def label(self) -> str:
        return self.recipe.label()

    @property
    def accuracy(self) -> Accuracy | None:
        return self.full or self.subset

    @property
    def within(self) -> bool:
        return self.status in ("baseline", "in-budget")

    @property
    def speedup(self) -> float | None:
        """Baseline median / this median: the final measurement when there is one, else the screen."""
        if self.latency and self.latency.get("ratio"):
            return float(self.latency["ratio"])
        if self.screen and self.screen.get("ratio"):
            return float(self.screen["ratio"])
        return None

    @property
    def median_ms(self) -> float | None:
        src = self.latency or self.screen
        return None if not src or src.get("median_ms") is None else float(src["median_ms"])

    # -- the cache stores what does not depend on the machine's load ---------------------------------
    def accuracy_state(self) -> dict:
        return {"status": self.status, "reason": self.reason, "stage": self.stage,
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

    def to_dict(self) -> dict:
        acc = self.accuracy
        return {
            "key": self.key, "label": self.label, "origin": self.origin, "parent": self.parent,
            "note": self.note, "status": self.status, "kept": self.within, "chosen": self.chosen,
            "reason": self.reason, "stage": self.stage, "recipe": self.recipe.to_dict(),
            "accuracy": acc.to_dict() if acc else None,
            "accuracy_subset": self.subset.to_dict() if self.subset else None,
            "latency_screen": self.screen, "latency": self.latency, "speedup": self.speedup,
            "memory": {"rss_added_mb": round(self.rss_added_mb, 1)}, "size_bytes": self.size_bytes,
            "fingerprint": self.fingerprint, "build_s": round(self.build_s, 3),
            "compile_s": round(self.compile_s, 3), "quantization": self.quant_report,
            "from_cache": self.cached, "recovery": self.recovery,
        }


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
    tried = [r for r in records if _family(r) and r.status not in ("not-tried", "pending", "duplicate")]
    if not tried:
        return ""
    int8 = [r for r in tried if _family(r) == "int8"]
    for what, recs in (("int8" if len(int8) == len(tried) else "quantised", tried), ("int8", int8)):
        failed = [r for r in recs if r.status == "failed"]
        if recs and len(failed) == len(recs):
            return f"every {what} candidate failed: {_reasons(failed)}"
    if any(r.within for r in tried):
        return ""
    failed = [r for r in tried if r.status == "failed"]
    missed = [r for r in tried if r.status == "rejected"]
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
