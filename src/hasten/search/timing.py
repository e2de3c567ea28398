"""Latency during the search: short interleaved screens, then the finalists measured as BENCHMARKING.md says.

Every call times its candidates together with the baseline session, interleaved (A B A B ..., order
rotated each round), so each candidate's `ratio` = baseline median / candidate median comes from one call
on the same machine state. Ratios from different calls are comparable; raw milliseconds are not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hasten.measure.latency import LatencyResult, benchmark

BASELINE = "__baseline__"
#: how many points of a latency distribution results.json keeps
SAMPLE_POINTS = 400


@dataclass(frozen=True)
class Timing:
    """How long to time: a screen (short) or the final measurement (BENCHMARKING.md minimums)."""

    warmup_runs: int
    warmup_s: float
    min_runs: int
    min_seconds: float
    rounds: int

    @classmethod
    def screen(cls, seconds: float = 1.0) -> Timing:
        return cls(warmup_runs=3, warmup_s=0.2, min_runs=12, min_seconds=seconds, rounds=4)

    @classmethod
    def final(cls, seconds: float = 5.0) -> Timing:
        return cls(warmup_runs=10, warmup_s=1.0, min_runs=100, min_seconds=seconds, rounds=8)

    def estimate_s(self, count: int, ms_per_run: float) -> float:
        """Rough wall time of timing `count` sessions (plus the baseline)."""
        per = max(self.min_seconds, self.min_runs * ms_per_run / 1000) + max(self.warmup_s,
                                                                            self.warmup_runs * ms_per_run / 1000)
        return (count + 1) * per

    def to_dict(self) -> dict:
        return {"warmup_runs": self.warmup_runs, "warmup_s": self.warmup_s, "min_runs": self.min_runs,
                "min_seconds": self.min_seconds, "rounds": self.rounds}


def latency_dict(result: LatencyResult, baseline: LatencyResult, full: bool = False) -> dict:
    out = {"median_ms": result.median_ms, "p90_ms": result.p90_ms, "p99_ms": result.p99_ms,
           "throughput": result.throughput, "runs": int(len(result.times_ms)), "spread": result.spread,
           "ratio": baseline.median_ms / result.median_ms, "baseline_median_ms": baseline.median_ms}
    if full:  # the distribution, as at most SAMPLE_POINTS evenly spaced order statistics
        ordered = np.sort(result.times_ms)
        idx = np.unique(np.linspace(0, len(ordered) - 1, min(len(ordered), SAMPLE_POINTS)).round().astype(int))
        out["times_ms"] = [round(float(t), 5) for t in ordered[idx]]
    return out


def time_sessions(baseline_session, sessions: dict, feeds: list[dict], timing: Timing, chunk: int = 8,
                  full: bool = False, progress=None) -> dict[str, dict]:
    """Time `sessions` ({name: Session}) against the baseline, at most `chunk` at a time.

    Returns {name: latency dict} plus BASELINE (the baseline's own figures from the last call)."""
    names = list(sessions)
    out: dict[str, dict] = {}
    for start in range(0, max(len(names), 1), chunk):
        part = names[start:start + chunk]
        group = {BASELINE: baseline_session, **{n: sessions[n] for n in part}}
        results = benchmark(group, feeds, warmup_runs=timing.warmup_runs, warmup_s=timing.warmup_s,
                            min_runs=timing.min_runs, min_seconds=timing.min_seconds, rounds=timing.rounds,
                            progress=progress)
        base = results[BASELINE]
        out[BASELINE] = latency_dict(base, base, full)
        for n in part:
            out[n] = latency_dict(results[n], base, full)
    return out
