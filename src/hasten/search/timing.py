"""Latency during the search: short interleaved screens, then the finalists measured as BENCHMARKING.md says.

Every call times its candidates together with the baseline session in interleaved rounds (A B A B ...,
order rotated each round), so each round gives one ratio per candidate (baseline median / candidate median
in that round) from the same machine state. A candidate's `ratio` is the median of its per-round ratios and
`ratio_ci` a distribution-free confidence interval of that median (order statistics of the rounds).
On a noisy host the interval is wide: `time_sessions` then adds rounds, up to `Timing.max_rounds` and a
deadline, until every ratio is *resolved*: its interval lies wholly above or below `threshold` (the gain a
winner needs), or is narrower than `Timing.precision`; once one ratio is resolved above the threshold, only
candidates that could still beat it need more rounds. The baseline's per-round medians say how noisy the
host was (`noise`). Ratios from different calls are comparable; raw milliseconds are not.

The timing source is `hasten.measure.latency.benchmark` unless a caller passes `bench` with its signature
(tests inject a fake one; each call times one round).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from hasten.measure.latency import LatencyResult, benchmark

BASELINE = "__baseline__"
#: how many points of a latency distribution results.json keeps
SAMPLE_POINTS = 400
#: coverage of a ratio's confidence interval, over all the looks a call takes (see `checkpoints`)
CONFIDENCE = 0.9


@dataclass(frozen=True)
class Timing:
    """How long to time: a screen (short) or the final measurement (BENCHMARKING.md minimums).

    `rounds` interleaved rounds always; then more, up to `max_rounds`, while a ratio is unresolved (its
    interval straddles the threshold and is wider than `precision`, relative)."""

    warmup_runs: int
    warmup_s: float
    min_runs: int
    min_seconds: float
    rounds: int
    max_rounds: int = 0  # 0: exactly `rounds`
    precision: float = 0.0  # resolved when hi / lo - 1 <= precision; 0: only by the threshold

    @classmethod
    def screen(cls, seconds: float = 1.0) -> Timing:
        return cls(warmup_runs=3, warmup_s=0.2, min_runs=12, min_seconds=seconds, rounds=4, max_rounds=12,
                   precision=0.25)

    @classmethod
    def final(cls, seconds: float = 5.0) -> Timing:
        return cls(warmup_runs=10, warmup_s=1.0, min_runs=100, min_seconds=seconds, rounds=8, max_rounds=48,
                   precision=0.04)

    @property
    def round_limit(self) -> int:
        return max(self.rounds, self.max_rounds)

    def checkpoints(self) -> list[int]:
        """The round counts after which the ratios are looked at: `rounds`, then x1.5 each time up to the
        limit (few looks keep the chance of a false "resolved" low)."""
        out = [self.rounds]
        while out[-1] < self.round_limit:
            out.append(min(self.round_limit, max(out[-1] + 1, int(out[-1] * 1.5))))
        return out

    @property
    def confidence(self) -> float:
        """The coverage of each look's interval: CONFIDENCE shared among the looks (Bonferroni)."""
        return 1.0 - (1.0 - CONFIDENCE) / len(self.checkpoints())

    def round_s(self, count: int, ms_per_run: float) -> float:
        """Rough wall time of one round of `count` sessions plus the baseline."""
        runs = math.ceil(self.min_runs / self.rounds)
        return (count + 1) * max(self.min_seconds / self.rounds, runs * ms_per_run / 1000)

    def estimate_s(self, count: int, ms_per_run: float) -> float:
        """Rough wall time of timing `count` sessions (plus the baseline), without extra rounds."""
        per = max(self.min_seconds, self.min_runs * ms_per_run / 1000) + max(self.warmup_s,
                                                                            self.warmup_runs * ms_per_run / 1000)
        return (count + 1) * per

    def to_dict(self) -> dict:
        return {"warmup_runs": self.warmup_runs, "warmup_s": self.warmup_s, "min_runs": self.min_runs,
                "min_seconds": self.min_seconds, "rounds": self.rounds, "max_rounds": self.max_rounds,
                "precision": self.precision}


def ratio_interval(ratios, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A distribution-free interval for the median of `ratios`: order statistics k and n+1-k, with k the
    largest such that P(Binomial(n, 1/2) < k) <= (1 - confidence) / 2 (at least the min and the max)."""
    r = np.sort(np.asarray(ratios, dtype=np.float64))
    n = len(r)
    if n == 0:
        return (0.0, math.inf)
    tail, k, cdf = (1.0 - confidence) / 2, 0, 0.0
    while k < n // 2:
        cdf += math.comb(n, k) / 2.0 ** n  # P(B <= k) = P(B < k + 1)
        if cdf > tail:
            break
        k += 1
    k = max(k, 1)
    return float(r[k - 1]), float(r[n - k])


def resolved(ci: tuple[float, float], threshold: float | None, precision: float) -> bool:
    """Is a ratio known well enough: its interval wholly on one side of `threshold`, or narrow enough."""
    lo, hi = ci
    if threshold is not None and (lo > threshold or hi < threshold):
        return True
    if precision > 0 and lo > 0 and hi / lo - 1.0 <= precision:
        return True
    return threshold is None and precision <= 0


def noise_dict(round_medians_ms) -> dict:
    """How noisy the host was: the spread of the baseline's per-round medians (p10..p90 over the median)."""
    m = np.asarray(round_medians_ms, dtype=np.float64)
    if len(m) == 0:
        return {"rounds": 0, "spread": None, "cv": None}
    med = float(np.median(m))
    spread = float((np.percentile(m, 90) - np.percentile(m, 10)) / med) if med > 0 else None
    cv = float(np.std(m) / np.mean(m)) if len(m) > 1 and np.mean(m) > 0 else 0.0
    return {"rounds": int(len(m)), "spread": spread, "cv": cv,
            "round_medians_ms": [round(float(x), 5) for x in m]}


def latency_dict(result: LatencyResult, baseline: LatencyResult, full: bool = False,
                 ratios: list[float] | None = None, threshold: float | None = None, precision: float = 0.0,
                 confidence: float = CONFIDENCE) -> dict:
    pooled = baseline.median_ms / result.median_ms
    out = {"median_ms": result.median_ms, "p90_ms": result.p90_ms, "p99_ms": result.p99_ms,
           "throughput": result.throughput, "runs": int(len(result.times_ms)), "spread": result.spread,
           "ratio": pooled, "pooled_ratio": pooled, "baseline_median_ms": baseline.median_ms}
    if ratios:
        ci = ratio_interval(ratios, confidence)
        out.update({"ratio": float(np.median(ratios)), "ratio_ci": list(ci), "confidence": confidence,
                    "rounds": len(ratios), "resolved": resolved(ci, threshold, precision), "threshold": threshold})
    if full:  # the distribution, as at most SAMPLE_POINTS evenly spaced order statistics
        ordered = np.sort(result.times_ms)
        idx = np.unique(np.linspace(0, len(ordered) - 1, min(len(ordered), SAMPLE_POINTS)).round().astype(int))
        out["times_ms"] = [round(float(t), 5) for t in ordered[idx]]
    return out


def _rounds(group: dict, feeds, timing: Timing, bench, threshold, deadline, progress):
    """Interleaved rounds of `group` (BASELINE first in the dict): {name: [times per round]}, one bench call a
    round, until every ratio is resolved or the round limit / deadline is reached."""
    names = list(group)
    per_round: dict[str, list[np.ndarray]] = {n: [] for n in names}
    runs = max(1, math.ceil(timing.min_runs / timing.rounds))
    seconds = timing.min_seconds / timing.rounds
    r, first_s, looks = 0, None, set(timing.checkpoints())
    while True:
        k = r % len(names)
        order = names[k:] + names[:k]
        t0 = time.perf_counter()
        got = bench({n: group[n] for n in order}, feeds, warmup_runs=timing.warmup_runs if r == 0 else 0,
                    warmup_s=timing.warmup_s if r == 0 else 0.0, min_runs=runs, min_seconds=seconds, rounds=1)
        took = time.perf_counter() - t0
        first_s = took if first_s is None else min(first_s, took)
        for n in names:
            per_round[n].append(np.asarray(got[n].times_ms, dtype=np.float64))
        r += 1
        if progress:
            progress("benchmark", r, max(r, timing.rounds))
        if r < timing.rounds:
            continue
        if r >= timing.round_limit or (deadline is not None and time.perf_counter() + first_s > deadline):
            break
        if r in looks and not _open(per_round, threshold, timing):
            break
    return per_round, got


def _open(per_round: dict, threshold: float | None, timing: Timing) -> list[str]:
    """The candidates whose ratio still needs rounds: unresolved, and (once one is resolved above the
    threshold) able to beat that winner (interval reaching above its ratio)."""
    base = [np.median(t) for t in per_round[BASELINE]]
    stats = {}
    for n, times in per_round.items():
        if n != BASELINE:
            ratios = [b / np.median(t) for b, t in zip(base, times, strict=True)]
            stats[n] = (float(np.median(ratios)), ratio_interval(ratios, timing.confidence))
    wins = [ratio for ratio, ci in stats.values() if threshold is not None and ci[0] > threshold]
    lead = max(wins, default=None)
    return [n for n, (_, ci) in stats.items() if not resolved(ci, threshold, timing.precision)
            and (lead is None or ci[1] >= lead)]


def time_sessions(baseline_session, sessions: dict, feeds: list[dict], timing: Timing, chunk: int = 8,
                  full: bool = False, progress=None, bench=None, threshold: float | None = None,
                  deadline: float | None = None) -> dict[str, dict]:
    """Time `sessions` ({name: Session}) against the baseline, at most `chunk` at a time, in interleaved
    rounds until each ratio is resolved against `threshold` (see the module docstring); `deadline` is a
    `time.perf_counter()` value after which no extra round starts.

    Returns {name: latency dict} plus BASELINE (the baseline's own figures from the last call, with `noise`)."""
    bench = bench or benchmark
    names = list(sessions)
    out: dict[str, dict] = {}
    for start in range(0, max(len(names), 1), chunk):
        part = names[start:start + chunk]
        group = {BASELINE: baseline_session, **{n: sessions[n] for n in part}}
        per_round, last = _rounds(group, feeds, timing, bench, threshold, deadline, progress)
        results = {n: LatencyResult(n, np.concatenate(per_round[n]), last[n].batch_size, last[n].describe)
                   for n in group}
        base_medians = [float(np.median(t)) for t in per_round[BASELINE]]
        base = results[BASELINE]
        out[BASELINE] = latency_dict(base, base, full)
        out[BASELINE]["noise"] = noise_dict(base_medians)
        out[BASELINE]["rounds"] = len(base_medians)
        for n in part:
            ratios = [b / float(np.median(t)) for b, t in zip(base_medians, per_round[n], strict=True)]
            out[n] = latency_dict(results[n], base, full, ratios, threshold, timing.precision, timing.confidence)
    return out
