"""Mixed precision: keep the most sensitive nodes in float, greedily, until an accuracy budget holds.

Given the sensitivity ranking (worst first, `hasten.quantize.sensitivity`) and a budget — a metric with a
maximum drop (absolute, BENCHMARKING.md), a minimum output SQNR in dB, or both — the candidate that keeps the
first k ranked nodes in float (int8-static `nodes_to_exclude`) is measured for growing k. Since keeping more
nodes in float can only help (up to noise), the smallest k that meets the budget is found by a galloping
search: k = 0, 1, 2, 4, 8, ... until the budget holds, then bisection between the last failing and the first
holding k. At most `max_evals` candidates are measured (about 2·log2(k) + 1); the statistics are collected
once and shared by every candidate. The result is a QuantResult whose config lists the kept nodes in
`nodes_to_exclude` (so `quantize(model, result.config, calib)` reproduces it) and whose report says which
nodes were kept, why (their rank, one-node SQNR and metric drop), and every candidate measured.
"""

from __future__ import annotations

import dataclasses

from hasten.errors import QuantizationError
from hasten.quantize.base import QuantResult


class KSearch:
    """The fewest k of `n` ranked nodes to keep in float for the budget to hold, assuming holding is monotone
    in k: gallop (k = `start`, then 1 after 0, then doubling) until it holds, capped at n - 1 (keeping all n
    is the float model), then bisect between the largest failing and the smallest holding k. `bad` is the
    largest k known to fail (-1: none). Pure: `next()` is the k to measure (None when done), `record(holds)`
    its outcome. Used by `mixed_precision` below and by the search (hasten.search.mixed)."""

    def __init__(self, n: int, start: int = 0, bad: int = -1):
        self.n, self.k, self.bad = n, start, bad
        self.good: int | None = None  # smallest k known to hold

    @property
    def exhausted(self) -> bool:
        """True when even n - 1 nodes in float miss the budget."""
        return self.good is None and self.bad >= self.n - 1

    def next(self) -> int | None:
        if self.good is None:
            if self.k >= self.n:
                if self.bad >= self.n - 1:
                    return None
                self.k = self.n - 1
            return self.k
        if self.good - self.bad > 1:
            self.k = (self.good + self.bad) // 2
            return self.k
        return None

    def record(self, holds: bool) -> None:
        if holds:
            self.good = self.k
        else:
            self.bad = self.k
            if self.good is None:
                self.k = 1 if self.k == 0 else 2 * self.k


def _budget_holds(sq: float, drop: float | None, max_drop: float | None, min_sqnr_db: float | None) -> bool:
    if min_sqnr_db is not None and not sq >= min_sqnr_db:
        return False
    if max_drop is not None and (drop is None or not drop <= max_drop):
        return False
    return True


def mixed_precision(model, calib, eval=None, metric=None, *, max_drop: float | None = None,
                    min_sqnr_db: float | None = None, scheme=None, report=None, stats=None, max_evals: int = 8,
                    eval_samples: int = 64, progress: bool = True, console=None) -> QuantResult:
    """Quantise `model` (int8-static `scheme`) keeping the fewest most-sensitive nodes in float such that the
    metric drops by at most `max_drop` and/or the output SQNR is at least `min_sqnr_db` on `eval`.

    `report`: a SensitivityReport to reuse (computed here otherwise). Raises QuantizationError when even
    all but the least sensitive node in float misses the budget within `max_evals` measurements."""
    from hasten.quantize import sensitivity as sens
    from hasten.quantize.int8 import quantize_static

    if max_drop is None and min_sqnr_db is None:
        raise QuantizationError("mixed precision needs a budget: max_drop (with a metric) and/or min_sqnr_db")
    if max_drop is not None and metric is None:
        raise QuantizationError("a max_drop budget needs a metric (e.g. top1, cosine)")
    if max_evals < 1:
        raise QuantizationError(f"max_evals must be >= 1, got {max_evals}")
    config, stats, _, _ = sens.prepare(model, calib, scheme, stats, progress, console)
    if report is None:
        report = sens.sensitivity(model, calib, eval, metric, config, stats=stats, eval_samples=eval_samples,
                             include_full=False, progress=progress, console=console)
    ranked = report.ranked_nodes
    samples = (eval if eval is not None else calib)
    samples = samples.take(min(len(samples), eval_samples))
    ev = sens.model_evaluator(model, samples, metric)
    measured: dict[int, dict] = {}
    results: dict[int, QuantResult] = {}

    def measure(k: int) -> bool:
        q = quantize_static(model, config, calib, nodes_to_exclude=ranked[:k], stats=stats)
        sq, value, drop = sens.measure(ev, q.model)
        ok = _budget_holds(sq, drop, max_drop, min_sqnr_db)
        measured[k] = {"kept": k, "sqnr_db": sq, "metric": value, "metric_drop": drop, "holds": ok}
        results[k] = q
        bar.advance(task)
        return ok

    n = len(ranked)
    search = KSearch(n)
    with sens._progress(progress, console) as bar:
        task = bar.add_task("mixed precision", total=max_evals)
        while len(measured) < max_evals and (k := search.next()) is not None:
            search.record(measure(k))
    good = search.good
    if good is None:
        tried = ", ".join(f"{m['kept']} kept: {m['sqnr_db']:.1f} dB" + (
            f", drop {m['metric_drop']:+.4f}" if m["metric_drop"] is not None else "") for m in measured.values())
        raise QuantizationError(f"mixed precision: the budget ({_budget_text(max_drop, min_sqnr_db, ev)}) is not "
                                f"met by int8-static with up to {max(measured)} of {n} nodes kept in float "
                                f"(measured: {tried}); use a gentler scheme (int8-dynamic, fp16) or fp32")
    kept = ranked[:good]
    final = results[good]
    config_out = dataclasses.replace(config, nodes_to_exclude=tuple(config.nodes_to_exclude) + tuple(kept))
    why = [{"node": r.node, "op_type": r.op_type, "rank": i + 1, "sqnr_db": r.sqnr_db,
            "metric_drop": r.metric_drop} for i, r in enumerate(report.rows[:good])]
    mp = {
        "budget": {"metric": ev.metrics[0].name if ev.metrics else None, "max_drop": max_drop,
                   "min_sqnr_db": min_sqnr_db},
        "kept_float": why,
        "achieved": measured[good],
        "evaluations": list(measured.values()),  # in the order measured
        "quantised": n - good,
        "samples": len(samples),
        "why": "kept in float: the most sensitive nodes (quantising each alone costs the most), the fewest "
               "that meet the budget",
    }
    return QuantResult(final.model, config_out, {**final.report, "mixed_precision": mp,
                                                 "sensitivity": report.to_dict()})


def _budget_text(max_drop, min_sqnr_db, ev) -> str:
    parts = []
    if max_drop is not None:
        parts.append(f"{ev.metrics[0].name} drop <= {max_drop}")
    if min_sqnr_db is not None:
        parts.append(f"SQNR >= {min_sqnr_db} dB")
    return " and ".join(parts)
