"""Side-by-side latency of one model on several backends: one run, interleaved, ratios to the first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hasten.backends import get_backend, parse_backend_spec
from hasten.measure.latency import LatencyResult, benchmark, compile_measured, peak_rss_mb

__all__ = ["BackendRow", "compare_backends", "parse_backend_spec"]


@dataclass
class BackendRow:
    label: str
    latency: LatencyResult
    compile_s: float
    rss_added_mb: float
    max_abs_diff: float  # against the first backend's outputs on the same input

    def to_dict(self) -> dict:
        return {"backend": self.label, **self.latency.to_dict(), "compile_s": self.compile_s,
                "rss_added_mb": self.rss_added_mb, "max_abs_diff_vs_first": self.max_abs_diff}


def compare_backends(model, specs: list[str], feeds: list[dict[str, np.ndarray]], threads: int | None = None,
                     **timing) -> tuple[list[BackendRow], float]:
    """Compile `model` on each backend spec, check outputs agree, time them interleaved.

    Returns the rows (first = the reference for ratios) and the process's peak resident memory (MiB)."""
    sessions, compiled = {}, {}
    for spec in specs:
        name, options = parse_backend_spec(spec)
        backend = get_backend(name, threads=threads, **options)
        session, seconds, rss = compile_measured(backend, model)
        sessions[spec], compiled[spec] = session, (seconds, rss)
    first_out = None
    diffs = {}
    for spec, session in sessions.items():
        out = session.run(feeds[0])
        vec = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in out.values()])
        if first_out is None:
            first_out = vec
        diffs[spec] = float(np.abs(vec - first_out).max()) if vec.shape == first_out.shape else float("nan")
    results = benchmark(sessions, feeds, **timing)
    rows = [BackendRow(spec, results[spec], *compiled[spec], diffs[spec]) for spec in specs]
    return rows, peak_rss_mb()
