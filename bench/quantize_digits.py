"""int8 zoo:digits (small CNN, batch 1 x 1 x 8 x 8): hasten's static int8 against fp32, on ONNX Runtime and OpenVINO.

    .venv/bin/python bench/quantize_digits.py [--quick] [--seconds 3] [--rounds 8] [--threads 2] [--json]

Built once, timed in interleaved rounds in this one process (BENCHMARKING.md) on the held-out images; top-1 on
the 360 held-out labelled images (drop against fp32 on the same backend) and cosine of the logits. The last
line checks the bar of issue 3 (top-1 drop <= 0.5 points, faster than fp32 on ONNX Runtime).
"""

from __future__ import annotations

import argparse
import json
import time

from rich.console import Console
from rich.table import Table

from hasten import zoo
from hasten.backends import get_backend, physical_cores, run_samples
from hasten.inspect import host_floors
from hasten.measure.accuracy import CosineFidelity, Top1
from hasten.measure.latency import benchmark
from hasten.quantize import Int8DynamicConfig, Int8StaticConfig, collect_stats, quantize, quantize_static

VARIANTS = {
    "hasten int8-static (minmax)": Int8StaticConfig(),
    "hasten int8-static (percentile 99.99)": Int8StaticConfig(calibration="percentile"),
    "hasten int8-static (mse)": Int8StaticConfig(calibration="mse"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=physical_cores())
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    rounds = args.rounds or (4 if args.quick else 8)
    console = Console(stderr=args.json, width=150)
    t0 = time.perf_counter()
    entry = zoo.get("digits")
    model, calib, held = entry.model(), entry.calibration(), entry.evaluation()
    ort_b = get_backend("onnxruntime", threads=args.threads)
    ov_b = get_backend("openvino", threads=args.threads)
    sessions, info = {}, {}
    sessions["ORT fp32"], info["ORT fp32"] = ort_b.compile(model), "onnxruntime"
    stats = collect_stats(model, calib)  # one pass, shared by every hasten variant
    best = None
    for name, config in VARIANTS.items():
        result = quantize_static(model, config, calib, stats=stats)
        sessions[name], info[name] = ort_b.compile(result.model), "onnxruntime"
        best = best or result.model
    dynamic = quantize(model, Int8DynamicConfig(op_types=("Conv", "MatMul")))
    sessions["ORT quantize_dynamic (Conv, MatMul)"] = ort_b.compile(dynamic.model)
    info["ORT quantize_dynamic (Conv, MatMul)"] = "onnxruntime"
    sessions["OpenVINO fp32"], info["OpenVINO fp32"] = ov_b.compile(model), "openvino"
    sessions["hasten int8-static (minmax) on OpenVINO"] = ov_b.compile(best)
    info["hasten int8-static (minmax) on OpenVINO"] = "openvino"

    refs = {"onnxruntime": run_samples(sessions["ORT fp32"], held)["logits"],
            "openvino": run_samples(sessions["OpenVINO fp32"], held)["logits"]}
    scores = {}
    for name, session in sessions.items():
        out = run_samples(session, held)["logits"]
        ref = refs[info[name]]
        top1, base = Top1().score(out, None, held.labels), Top1().score(ref, None, held.labels)
        scores[name] = {"top1": top1.mean, "drop": base.mean - top1.mean,
                        "cos": CosineFidelity().score(out, ref).mean}
    feeds = list(held.take(32).feeds(1))
    lat = benchmark(sessions, feeds, min_seconds=seconds, rounds=rounds, warmup_s=0.3 if args.quick else 1.0)
    floor = host_floors(model, {"image": (1, 1, 8, 8)})
    base = lat["ORT fp32"].median_ms
    table = Table(title=f"zoo:digits batch 1, {args.threads} threads, {'QUICK ' if args.quick else ''}{rounds} "
                        "interleaved rounds")
    for col in ("variant", "median us", "p90 us", "vs ORT fp32", "top-1", "drop (points)", "cos"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    rows = []
    for name in sessions:
        r, s = lat[name], scores[name]
        table.add_row(name, f"{r.median_ms * 1e3:.1f}", f"{r.p90_ms * 1e3:.1f}", f"{base / r.median_ms:.2f}x",
                      f"{s['top1']:.4f}", f"{100 * s['drop']:+.2f}", f"{s['cos']:.5f}")
        rows.append({"variant": name, **r.to_dict(), **s})
    if floor and "int8_ms" in floor:
        table.add_row("floor (int8 linear layers)", f"{floor['int8_ms'] * 1e3:.2f}", "", "", "", "", "")
    console.print(table)
    name = "hasten int8-static (minmax)"
    ok = scores[name]["drop"] <= 0.005 and lat[name].median_ms < base
    verdict = (f"bar (digits static int8: top-1 drop <= 0.5 points and faster than ORT fp32): "
               f"{'PASS' if ok else 'FAIL'} (drop {100 * scores[name]['drop']:+.2f} points, "
               f"{base / lat[name].median_ms:.2f}x); total {time.perf_counter() - t0:.0f} s")
    console.print(verdict)
    if args.json:
        print(json.dumps({"rows": rows, "floor": floor, "bar": verdict}, indent=2, default=str))


if __name__ == "__main__":
    main()
