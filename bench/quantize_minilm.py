"""int8 all-MiniLM-L6-v2 (zoo:minilm), batch 1 x 128 tokens: hasten's quantisers against ONNX Runtime's and NNCF.

    .venv/bin/python bench/quantize_minilm.py [--quick] [--seconds 4] [--rounds 8] [--threads 2] [--json]

Every variant is built once and timed in interleaved rounds in this one process (BENCHMARKING.md) on the
zoo's evaluation sentences; fidelity is against the fp32 model on the same backend over the 300 evaluation
sentences (mean and worst cosine, retrieval top-10 agreement over 50 queries). Calibration: the zoo's 512
calibration sentences (disjoint from the evaluation ones); hasten's statistics are collected once and shared
by all its variants. The last lines check the bars of issue 3.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import tempfile
import time
from pathlib import Path

import onnx
from common import HASTEN_OV_INT8, embedding_fidelity, nncf_ov_int8
from rich.console import Console
from rich.table import Table

from hasten import zoo
from hasten.backends import Session, get_backend, physical_cores, run_samples
from hasten.inspect import host_floors
from hasten.measure.latency import benchmark, peak_rss_mb
from hasten.model import Model
from hasten.quantize import Int8StaticConfig, collect_stats, quantize_static
from hasten.quantize.graph import GraphIndex, inferred_proto
from hasten.quantize.int8 import gptq_inputs, quantisable_nodes, stats_tensors
from hasten.quantize.qdq import name_nodes

#: hasten's configurations (all share one statistics pass)
SMOOTH = {k: v for k, v in HASTEN_OV_INT8.items() if k != "attention"}
CONFIGS = {
    "hasten int8-static (minmax, defaults)": ("onnxruntime", Int8StaticConfig()),
    "hasten int8-static + SmoothQuant + GPTQ (ORT-fused)": ("onnxruntime", Int8StaticConfig(**SMOOTH, ort_ops=True)),
    "hasten int8-static + SQ(norm) + FFN-out dynamic (mixed)": ("onnxruntime", None),  # built below
    "hasten QDQ (SmoothQuant + GPTQ) on OpenVINO": ("openvino", Int8StaticConfig(**SMOOTH)),
    "hasten QDQ + int8 attention Q, K on OpenVINO": ("openvino", Int8StaticConfig(**SMOOTH, attention="qk")),
    "hasten QDQ + int8 attention Q, K, V, P on OpenVINO": ("openvino", Int8StaticConfig(**HASTEN_OV_INT8)),
}


def ort_dynamic(model: Model, tmp: Path) -> Model:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = tmp / "fp32.onnx", tmp / "dynamic.onnx"
    onnx.save(model.proto(), src)
    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8)
    return Model.from_proto(onnx.load(dst))


def ort_static(model: Model, calib, tmp: Path) -> Model:
    """ONNX Runtime's own static QDQ quantiser as its documentation recommends: quant_pre_process (symbolic
    shape inference fails on this export, so ONNX shape inference only), then MinMax, per-channel, QDQ, U8S8
    (the x86 recommendation), MatMuls only (its default of every op type collapses further, to cos 0.37:
    the attention-mask Add's -3.4e38 wrecks the ranges)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(list(calib.feeds(1)))

        def get_next(self):
            return next(self.feeds, None)

    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, pre, dst = tmp / "fp32.onnx", tmp / "pre.onnx", tmp / "ort_static.onnx"
    onnx.save(model.proto(), src)
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["MatMul"])
    return Model.from_proto(onnx.load(dst))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calibration items and shorter timing")
    ap.add_argument("--seconds", type=float, default=None, help="timed seconds per variant (default 4; quick 1)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 8; quick 4)")
    ap.add_argument("--calib-items", type=int, default=None, help="calibration sentences (default 512; quick 128)")
    ap.add_argument("--threads", type=int, default=physical_cores())
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    rounds = args.rounds or (4 if args.quick else 8)
    console = Console(stderr=args.json, width=150)
    t_start = time.perf_counter()

    entry = zoo.get("minilm")
    model = entry.model()
    calib_all, ev = entry.calibration(), entry.evaluation()
    calib = calib_all.take(args.calib_items or (128 if args.quick else len(calib_all)))
    ort_b = get_backend("onnxruntime", threads=args.threads)
    ov_b = get_backend("openvino", threads=args.threads)
    ov_bf16 = get_backend("openvino", threads=args.threads, precision="bf16")

    sessions: dict[str, Session] = {}
    built: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="hasten-bench-") as tmpdir, console.status("building variants") as st:
        tmp = Path(tmpdir)

        def add(name, session, backend, seconds_to_build, **extra):
            sessions[name] = session
            built[name] = {"backend": backend, "build_s": seconds_to_build, **extra}

        add("ORT fp32", ort_b.compile(model), "onnxruntime", 0.0)
        st.update("ONNX Runtime quantize_dynamic")
        t = time.perf_counter()
        add("ORT quantize_dynamic per-channel", ort_b.compile(ort_dynamic(model, tmp)), "onnxruntime",
            time.perf_counter() - t)
        st.update("ONNX Runtime static QDQ (MinMax)")
        t = time.perf_counter()
        ort_calib = calib.take(min(len(calib), 128))
        add("ORT static QDQ (MinMax, MatMuls, own tool)", ort_b.compile(ort_static(model, ort_calib, tmp)), "onnxruntime",
            time.perf_counter() - t, calib_items=len(ort_calib))

        st.update(f"hasten: one statistics pass over {len(calib)} sentences")
        t = time.perf_counter()
        proto = name_nodes(inferred_proto(model))
        static_nodes = quantisable_nodes(model)
        stats = collect_stats(model, calib, tensors=stats_tensors(proto, Int8StaticConfig(attention="all")),
                              hessian_tensors=gptq_inputs(proto, GraphIndex(proto.graph), static_nodes))
        stats_s = time.perf_counter() - t
        ffn_out = [n for n in static_nodes if "/output/dense/" in n and "attention" not in n]
        configs = dict(CONFIGS)
        configs["hasten int8-static + SQ(norm) + FFN-out dynamic (mixed)"] = (
            "onnxruntime", Int8StaticConfig(smoothquant=0.8, weight_rounding="gptq", dynamic_nodes=tuple(ffn_out),
                                            ort_ops=True))
        for name, (backend, config) in configs.items():
            st.update(name)
            t = time.perf_counter()
            result = quantize_static(model, config, calib, stats=stats)
            b = ort_b if backend == "onnxruntime" else ov_b
            add(name, b.compile(result.model), backend, time.perf_counter() - t,
                static=len(result.report["static"]), dynamic=len(result.report["dynamic"]))
        st.update("OpenVINO bf16")
        add("OpenVINO bf16", ov_bf16.compile(model), "openvino", 0.0)
        st.update("NNCF int8 (OpenVINO)")
        t = time.perf_counter()
        add("OpenVINO + NNCF int8", get_backend("openvino", threads=args.threads).compile_ov(nncf_ov_int8(model, calib, transformer=True)), "openvino",
            time.perf_counter() - t)

    with console.status("fidelity on the 300 evaluation sentences"):
        refs = {"onnxruntime": run_samples(sessions["ORT fp32"], ev)["sentence_embedding"],
                "openvino": run_samples(ov_b.compile(model), ev)["sentence_embedding"]}
        for name, session in sessions.items():
            out = run_samples(session, ev)[session.output_names[0]]
            built[name].update(embedding_fidelity(out, refs[built[name]["backend"]]))

    feeds = list(ev.take(16).feeds(1))
    with console.status(f"timing {len(sessions)} variants, {rounds} interleaved rounds"):
        lat = benchmark(sessions, feeds, min_seconds=seconds, rounds=rounds,
                        warmup_s=0.5 if args.quick else 1.0)
    floor = host_floors(model, {s.name: (1, 128) for s in model.inputs})
    base = lat["ORT fp32"].median_ms
    table = Table(title=f"zoo:minilm batch 1 x 128 tokens, {args.threads} threads, "
                        f"{'QUICK ' if args.quick else ''}{rounds} interleaved rounds")
    for col in ("variant", "median ms", "p90 ms", "vs ORT fp32", "mean cos", "worst cos", "top-10"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    rows = []
    for name in sessions:
        r, b = lat[name], built[name]
        table.add_row(name, f"{r.median_ms:.2f}", f"{r.p90_ms:.2f}", f"{base / r.median_ms:.2f}x",
                      f"{b['cos_mean']:.4f}", f"{b['cos_worst']:.4f}", f"{b['top10']:.3f}")
        rows.append({"variant": name, **r.to_dict(), **b})
    if floor and "int8_ms" in floor:
        table.add_row("floor (int8 linear layers, fp32 rest)", f"{floor['int8_ms']:.2f}", "", "", "", "", "")
    console.print(table)
    machine = f"{platform.processor() or platform.machine()}, {args.threads} threads"
    versions = {p: importlib.metadata.version(p) for p in ("onnxruntime", "openvino", "nncf", "onnx")}
    console.print(f"machine: {machine}; {versions}; statistics pass {stats_s:.1f} s; peak RSS {peak_rss_mb():.0f} MiB; "
                  f"total {time.perf_counter() - t_start:.0f} s")
    if floor:
        console.print(f"floor: {floor['formulas'].get('int8', '')}")
    verdicts = _bars(lat, built)
    for line in verdicts:
        console.print(line)
    if args.json:
        print(json.dumps({"rows": rows, "floor": floor, "machine": machine, "versions": versions,
                          "bars": verdicts}, indent=2, default=str))


def _bars(lat, built) -> list[str]:
    dyn = lat["ORT quantize_dynamic per-channel"].median_ms
    nncf = lat["OpenVINO + NNCF int8"].median_ms
    out = []
    ort_rows = [n for n in built if n.startswith("hasten") and built[n]["backend"] == "onnxruntime"]
    ok = [n for n in ort_rows if built[n]["cos_mean"] >= 0.99 and built[n]["top10"] >= 0.90
          and lat[n].median_ms <= dyn]
    out.append(f"bar 1 (hasten static int8 on ORT: cos >= 0.99, top-10 >= 0.90, no slower than quantize_dynamic "
               f"{dyn:.2f} ms): {'PASS by ' + ', '.join(ok) if ok else 'FAIL'}")
    best = [n for n in built if n.startswith("hasten") and built[n]["cos_mean"] >= 0.997
            and built[n]["top10"] >= 0.94 and lat[n].median_ms <= nncf]
    out.append(f"bar 2 (hasten's best at least as fast as NNCF int8 {nncf:.2f} ms with cos >= 0.997, top-10 >= "
               f"0.94): {'PASS by ' + ', '.join(best) if best else 'FAIL'}")
    return out


if __name__ == "__main__":
    main()
