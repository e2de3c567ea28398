"""Latency and throughput, measured as BENCHMARKING.md says.

Every candidate is warmed up (>= `warmup_runs` runs and >= `warmup_s`), then timed for >= `min_runs` runs and
>= `min_seconds` in total, in `rounds` interleaved rounds (A B A B ..., order rotated each round) so drift on a
shared machine hits all candidates alike. Reports median, p90, p99 and throughput; never a mean alone.
A session whose backend has its own latency source (`Session.latency_source` is not "host": a simulator, a
cost model) is not timed: `latency_ms(feed)` of each feed, repeated to `min_runs` runs, is its distribution.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import psutil


@dataclass
class LatencyResult:
    """The timed runs of one candidate (milliseconds per run of `batch_size` items)."""

    name: str
    times_ms: np.ndarray
    batch_size: int
    describe: dict

    @property
    def median_ms(self) -> float:
        return float(np.median(self.times_ms))

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.times_ms, 90))

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.times_ms, 99))

    @property
    def throughput(self) -> float:
        """Items per second at the median latency."""
        return self.batch_size * 1000.0 / self.median_ms

    @property
    def spread(self) -> float:
        """Relative spread between the medians of the first and second half of the rounds."""
        half = len(self.times_ms) // 2
        if half < 2:
            return 0.0
        a, b = np.median(self.times_ms[:half]), np.median(self.times_ms[half:])
        return float(abs(a - b) / min(a, b))

    def to_dict(self) -> dict:
        return {"name": self.name, "median_ms": self.median_ms, "p90_ms": self.p90_ms, "p99_ms": self.p99_ms,
                "throughput": self.throughput, "runs": int(len(self.times_ms)), "batch_size": self.batch_size,
                "settings": self.describe}


def _batch_of(feeds: dict[str, np.ndarray]) -> int:
    first = next(iter(feeds.values()))
    return int(first.shape[0]) if first.ndim else 1


def benchmark(sessions, feeds, *, warmup_runs: int = 10, warmup_s: float = 1.0, min_runs: int = 100,
              min_seconds: float = 5.0, rounds: int = 8,
              progress: Callable[[str, int, int], None] | None = None) -> dict[str, LatencyResult]:
    """Time each session in `sessions` ({name: Session} or one Session) on `feeds` (a feed dict, or a list
    of them used in rotation). Returns {name: LatencyResult}."""
    if not isinstance(sessions, dict):
        sessions = {getattr(sessions, "backend_name", "model") or "model": sessions}
    feed_list = feeds if isinstance(feeds, list) else [feeds]
    if not feed_list:
        raise ValueError("benchmark needs at least one feed dict")
    own = {n: s for n, s in sessions.items() if getattr(s, "latency_source", "host") != "host"}
    names = [n for n in sessions if n not in own]
    for name in names:  # warm-up
        start, runs = time.perf_counter(), 0
        while runs < warmup_runs or time.perf_counter() - start < warmup_s:
            sessions[name].run(feed_list[runs % len(feed_list)])
            runs += 1
    runs_per_round = max(1, math.ceil(min_runs / rounds))
    seconds_per_round = min_seconds / rounds
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds if names else 0):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            sess, out = sessions[name], times[name]
            start, done = time.perf_counter(), 0
            while done < runs_per_round or time.perf_counter() - start < seconds_per_round:
                feed = feed_list[len(out) % len(feed_list)]
                t0 = time.perf_counter_ns()
                sess.run(feed)
                out.append(time.perf_counter_ns() - t0)
                done += 1
        if progress:
            progress("benchmark", r + 1, rounds)
    for name, sess in own.items():
        per_feed = [float(sess.latency_ms(feed)) * 1e6 for feed in feed_list]
        times[name] = [per_feed[i % len(per_feed)] for i in range(max(min_runs, len(per_feed)))]
    batch = _batch_of(feed_list[0])
    return {n: LatencyResult(n, np.asarray(times[n], dtype=np.float64) / 1e6, batch,
                             sessions[n].describe()) for n in sessions}


def rss_mb() -> float:
    """Resident memory of this process, MiB."""
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def compile_measured(backend, model):
    """Compile `model` on `backend`; returns (session, seconds, resident memory added in MiB)."""
    before = rss_mb()
    t0 = time.perf_counter()
    session = backend.compile(model)
    return session, time.perf_counter() - t0, max(0.0, rss_mb() - before)
