"""hasten optimize against OpenVINO + NNCF int8 and the fp32 baseline, side by side in one run.

    .venv/bin/python bench/optimize.py [--models minilm,digits] [--time-budget 8m] [--seconds 5] [--rounds 8]
                                        [--out out/bench] [--nncf-subset 300] [--json]

For each zoo model: `hasten.optimize` with its defaults (results cached in OUT/<model>, so a second run only
re-times), NNCF's post-training int8 quantisation of the same ONNX model for OpenVINO (model type TRANSFORMER
for minilm: SmoothQuant and bias correction as NNCF chooses them; calibrated on the zoo's calibration split),
and the fp32 model on ONNX Runtime. All three are compiled once and timed in interleaved rounds in this
process (BENCHMARKING.md); accuracy is measured on the zoo's evaluation split against the fp32 model on the
same backend, with the zoo's metrics. The table gives medians, p90, ratios to the baseline and to NNCF.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import nncf_ov_int8
from rich.console import Console
from rich.table import Table

import hasten
from hasten import zoo
from hasten.api import optimize
from hasten.backends import Session, get_backend, physical_cores, run_samples
from hasten.inspect import host_floors
from hasten.measure.latency import benchmark
from hasten.model import load_onnx
from hasten.report.environment import environment


def nncf_session(model, calib, name: str, threads: int, subset: int) -> tuple[Session, float]:
    t0 = time.perf_counter()
    quantized = nncf_ov_int8(model, calib, transformer=name == "minilm", subset=subset)
    session = get_backend("openvino", threads=threads).compile_ov(quantized)
    return session, time.perf_counter() - t0


def scores(session, reference: np.ndarray, samples, metrics, output: str):
    outs = run_samples(session, samples)
    out = outs.get(output, next(iter(outs.values())))
    return {m.name: m.score(out, reference, samples.labels) for m in metrics}


def bench_model(name: str, args, console) -> dict:
    entry = zoo.get(name)
    model = hasten.load(f"zoo:{name}")
    calib, ev = entry.calibration(), entry.evaluation()
    metrics = entry.metrics()
    threads = args.threads
    t0 = time.perf_counter()
    result = optimize(f"zoo:{name}", out=Path(args.out) / name, time_budget=args.time_budget)
    search_s = time.perf_counter() - t0
    chosen = result.chosen
    chosen_model = load_onnx(result.model_path)
    chosen_session = chosen.recipe.backend_instance(threads=threads).compile(chosen_model)
    nncf, nncf_s = nncf_session(model, calib, name, threads, args.nncf_subset)
    base = get_backend("onnxruntime", threads=threads).compile(model)
    ov_fp32 = get_backend("openvino", threads=threads).compile(model)
    output = model.outputs[0].name
    refs = {"onnxruntime": run_samples(base, ev)[output], "openvino": run_samples(ov_fp32, ev)[output]}
    del ov_fp32
    rows = {"ONNX Runtime fp32 (baseline)": (base, "onnxruntime"),
            f"hasten: {chosen.label}": (chosen_session, chosen.recipe.backend),
            "OpenVINO + NNCF int8": (nncf, "openvino")}
    accuracy = {label: scores(sess, refs[backend], ev, metrics, output) for label, (sess, backend) in rows.items()}
    feeds = list(ev.take(16).feeds(1))
    lat = benchmark({label: sess for label, (sess, _) in rows.items()}, feeds, min_seconds=args.seconds,
                    rounds=args.rounds)
    floor = host_floors(model, {k: tuple(v.shape) for k, v in feeds[0].items()}) or {}
    labels = list(rows)
    base_ms = lat[labels[0]].median_ms
    nncf_ms = lat[labels[2]].median_ms
    shape = {k: tuple(v.shape) for k, v in feeds[0].items()}
    table = Table(title=f"zoo:{name} {shape}, {threads} threads, {args.rounds} interleaved rounds, "
                        f">= {args.seconds:g} s each")
    for col in ("candidate", "median ms", "p90 ms", "vs baseline", "vs NNCF", *[m.name for m in metrics]):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for label in labels:
        r = lat[label]
        acc = accuracy[label]
        table.add_row(label, f"{r.median_ms:.3f}", f"{r.p90_ms:.3f}", f"{base_ms / r.median_ms:.2f}x",
                      f"{nncf_ms / r.median_ms:.2f}x",
                      *[f"{acc[m.name].mean:.4f} / {acc[m.name].worst:.4f}" for m in metrics])
    console.print(table)
    if floor:
        console.print(f"floor on this host: fp32 {floor['fp32_ms']:.3f} ms, int8 linear layers "
                      f"{floor.get('int8_ms', float('nan')):.3f} ms")
    console.print(f"search {search_s:.0f} s ({result.out}), NNCF quantisation {nncf_s:.0f} s; accuracy "
                  "(mean / worst) against fp32 on the same backend")
    return {"model": name, "shape": {k: list(v) for k, v in shape.items()}, "threads": threads,
            "search_s": search_s, "nncf_s": nncf_s, "floor": floor,
            "rows": {label: {**lat[label].to_dict(), "ratio_vs_baseline": base_ms / lat[label].median_ms,
                             "ratio_vs_nncf": nncf_ms / lat[label].median_ms,
                             "accuracy": {k: v.to_dict() for k, v in accuracy[label].items()}}
                     for label in labels}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm,digits")
    ap.add_argument("--time-budget", default="8m", help="hasten optimize's budget per model")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=physical_cores())
    ap.add_argument("--nncf-subset", type=int, default=300)
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    console = Console(stderr=args.json, width=max(Console().width, 150))
    report = {"environment": environment(), "models": []}
    for name in args.models.split(","):
        report["models"].append(bench_model(name.strip(), args, console))
    if args.json:
        print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
