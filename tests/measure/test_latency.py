"""The benchmark alternates candidates and reports the distribution; speed is never asserted here."""

from __future__ import annotations

import time

import numpy as np

from hasten.backends.base import Session, TensorSpec
from hasten.measure.latency import benchmark


class Recorder(Session):
    """A real session wrapper that records the order in which candidates ran."""

    def __init__(self, name, log, delay):
        self.name, self.log, self.delay = name, log, delay
        self.inputs, self.outputs = [TensorSpec("x", "float32")], [TensorSpec("y", "float32")]

    def run(self, feeds):
        self.log.append(self.name)
        time.sleep(self.delay)
        return {"y": feeds["x"]}


def test_interleaves_and_reports_distribution():
    log: list[str] = []
    sessions = {"a": Recorder("a", log, 0.0005), "b": Recorder("b", log, 0.002)}
    res = benchmark(sessions, {"x": np.ones((3, 2))}, warmup_runs=2, warmup_s=0.0, min_runs=16,
                    min_seconds=0.0, rounds=4)
    timed = log[4:]  # after 2 warm-up runs each
    switches = sum(1 for x, y in zip(timed, timed[1:], strict=False) if x != y)
    assert switches == 4  # rounds ordered AB, BA, AB, BA: never all A then all B
    assert len(res["a"].times_ms) == 16 and len(res["b"].times_ms) == 16
    a, b = res["a"], res["b"]
    assert a.median_ms <= a.p90_ms <= a.p99_ms
    assert b.median_ms > a.median_ms  # 2 ms sleep vs 0.5 ms: an order of magnitude apart, not noise
    assert a.throughput == 3 * 1000 / a.median_ms
    assert set(a.to_dict()) >= {"median_ms", "p90_ms", "p99_ms", "throughput", "runs"}


def test_min_seconds_honoured():
    sessions = {"a": Recorder("a", [], 0.0)}
    t0 = time.perf_counter()
    benchmark(sessions, [{"x": np.ones(1)}, {"x": np.zeros(1) + 2}], warmup_runs=1, warmup_s=0.0, min_runs=1,
              min_seconds=0.2, rounds=2)
    assert time.perf_counter() - t0 >= 0.2
