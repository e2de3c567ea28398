"""Small models and data for the search tests (CI-sized: each search takes seconds)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import hasten
from hasten.data import Samples

#: quick settings: short screens and final measurement, small subset, no thread search
QUICK = {"screen_seconds": 0.2, "final_seconds": 0.5, "subset_size": 16, "calibration_items": 32,
         "finalists": 2}


def wide_mlp(width: int = 768, layers: int = 3, d_in: int = 64, seed: int = 0) -> hasten.Model:
    """x[N, d_in] -> (MatMul + Add + Relu) x layers -> MatMul -> y[N, 32]: weight-bound at batch 1, so int8
    weights are clearly faster than fp32 on ONNX Runtime."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    prev, dim = "x", d_in
    for i in range(layers):
        w = (rng.standard_normal((dim, width)) / np.sqrt(dim)).astype(np.float32)
        b = (rng.standard_normal(width) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"fc{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"bias{i}"),
                  helper.make_node("Relu", [f"a{i}"], [f"h{i}"], name=f"relu{i}")]
        prev, dim = f"h{i}", width
    w = (rng.standard_normal((dim, 32)) / np.sqrt(dim)).astype(np.float32)
    inits.append(numpy_helper.from_array(w, "wout"))
    nodes.append(helper.make_node("MatMul", [prev, "wout"], ["y"], name="out"))
    graph = helper.make_graph(nodes, "wide_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return hasten.load(proto)


def samples(n: int, d_in: int = 64, seed: int = 0, name: str = "") -> Samples:
    x = np.random.default_rng(seed).standard_normal((n, d_in)).astype(np.float32)
    return Samples({"x": x}, name=name or f"x{seed}")


def events_recorder():
    """A progress callback that keeps every event."""
    events = []

    def progress(event):
        events.append(event)

    progress.events = events
    return progress


class FakeTimer:
    """A timing source for the search that needs no wall clock: each session's per-round median is
    `base_ms / speed(record)` (or `speed[name]` when `speed` is a dict) times a log-normal noise factor (sd `noise`), seeded, so a search timed by it
    is deterministic. Pass `timer=FakeTimer(...)` to optimize(); `rounds` counts the rounds timed per call
    of time_sessions (one bench call is one round)."""

    def __init__(self, speed, noise: float = 0.0, base_ms: float = 1.0, seed: int = 0):
        self.speed, self.noise, self.base_ms = speed, noise, base_ms
        self.rng = np.random.default_rng(seed)
        self.tuner = None
        self.calls = 0

    def __call__(self, tuner):  # optimize(timer=...) calls this with the Tuner
        self.tuner = tuner
        return self.bench

    def ratio_of(self, name: str) -> float:
        from hasten.search.timing import BASELINE

        if isinstance(self.speed, dict):  # {session name: ratio}, for time_sessions without a tuner
            return float(self.speed.get(name, 1.0))
        rec = None if name == BASELINE or self.tuner is None else self.tuner.records.get(name)
        return 1.0 if rec is None else float(self.speed(rec))

    def bench(self, sessions, feeds, *, warmup_runs=0, warmup_s=0.0, min_runs=10, min_seconds=0.0, rounds=1,
              progress=None):
        from hasten.measure.latency import LatencyResult

        self.calls += 1
        out = {}
        for name, session in sessions.items():
            ms = self.base_ms / self.ratio_of(name) * float(np.exp(self.rng.normal(0.0, self.noise)))
            times = ms * (1.0 + 0.01 * self.rng.standard_normal(max(int(min_runs), 1)))
            out[name] = LatencyResult(name, np.abs(times), 1, session.describe() if session else {})
        return out


def scheme_speed(speeds: dict[str, float], default: float = 1.0):
    """speed(record) for FakeTimer: by the last quantisation scheme's name ("" for fp32 models)."""

    def speed(rec) -> float:
        names = [s.name for s in rec.recipe.steps if s.kind == "quantize"]
        return speeds.get(names[-1] if names else "", default)

    return speed
