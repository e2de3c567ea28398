"""Backends side by side on the zoo models: ONNX Runtime fp32, OpenVINO f32 and bf16, with the host floor.

    .venv/bin/python bench/backends.py [--seconds 5] [--rounds 8] [--threads 2] [--json]

Every candidate is compiled once and timed in interleaved rounds in this one process (BENCHMARKING.md);
inputs are the zoo's own evaluation data at batch 1 (MiniLM: 128 tokens).
"""

from __future__ import annotations

import argparse
import json
import platform

from rich.console import Console
from rich.table import Table

import hasten
from hasten import zoo
from hasten.backends import physical_cores
from hasten.inspect import host_floors
from hasten.measure.compare import compare_backends

SPECS = ["onnxruntime", "openvino", "openvino:bf16"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm,digits")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=physical_cores())
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    console = Console()
    report = {"machine": platform.processor() or platform.machine(), "threads": args.threads, "models": {}}
    for name in args.models.split(","):
        entry = zoo.get(name)
        model = hasten.load(f"zoo:{name}")
        feeds = list(entry.evaluation().take(16).feeds(1))
        rows, peak = compare_backends(model, SPECS, feeds, threads=args.threads, min_seconds=args.seconds,
                                      rounds=args.rounds)
        floor = host_floors(model, {})
        table = Table(title=f"zoo:{name} batch 1, {args.threads} threads, peak RSS {peak:.0f} MiB")
        for col in ("backend", "median ms", "p90 ms", "p99 ms", "vs ORT fp32", "x fp32 floor", "max |Δ|"):
            table.add_column(col, justify="right")
        base = rows[0].latency.median_ms
        for r in rows:
            lat = r.latency
            table.add_row(r.label, f"{lat.median_ms:.3f}", f"{lat.p90_ms:.3f}", f"{lat.p99_ms:.3f}",
                          f"{base / lat.median_ms:.2f}x", f"{lat.median_ms / floor['fp32_ms']:.1f}",
                          f"{r.max_abs_diff:.1e}")
        console.print(table)
        console.print(f"floor: fp32 {floor['fp32_ms']:.3f} ms, int8 linear {floor['int8_ms']:.3f} ms")
        report["models"][name] = {"rows": [r.to_dict() for r in rows], "floor": floor}
    if args.json:
        print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
