"""Pruned + distilled (+ int8) students of all-MiniLM-L6-v2 against the fp32 teacher and OpenVINO + NNCF int8.

    .venv/bin/python bench/compress_minilm.py [--variants L4,L4H25] [--steps 12500] [--train-threads 2]
                                              [--threads 2] [--seconds 4] [--rounds 8] [--no-train] [--json]

For each student variant: structured pruning of the torch teacher, distillation on the offline training text
(zoo text "train" split + package docstrings; never the evaluation sentences; the student under bf16
autocast unless --fp32-training), export (opset 17), then two int8 versions on OpenVINO, both calibrated on
the zoo's 512 calibration sentences like the full model's baseline: NNCF int8, and hasten's own static int8
(common.HASTEN_OV_INT8: SmoothQuant 0.8 on every MatMul input, GPTQ weights, int8 attention).
Every session is compiled once and timed in interleaved rounds in this one process (BENCHMARKING.md) at
batch 1 x 128 tokens on the evaluation sentences. Fidelity: mean / worst cosine and retrieval top-10
agreement (50 queries) against the fp32 teacher on the same backend over the 300 evaluation sentences.
Trained students are kept under --work (checkpoints, safetensors): a rerun reuses them (and resumes an
interrupted distillation); `--fresh` retrains. The last lines check the bar of issue 5. With the defaults
(students L4 and L4H25, 12,500 steps of 32 each, 2 training threads) each distillation takes about 17 min on
the 2-core machine, the whole script about 40 min; run it on an otherwise idle machine, since the training
time is part of the bar (torch slows many-fold when another process shares the cores).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import platform
import time
from pathlib import Path

import torch
from common import HASTEN_OV_INT8, embedding_fidelity, nncf_ov_int8
from rich.console import Console
from rich.table import Table

from hasten.backends import Session, get_backend, physical_cores, run_samples
from hasten.compress import DistillConfig, count_macs, distill, save_student, torch_source
from hasten.compress.workflow import student_from_options
from hasten.measure.latency import benchmark, peak_rss_mb

#: name -> (description, pruning options, distillation options)
VARIANTS = {
    "L3": ("6 -> 3 layers (1, 3, 5)", dict(keep_layers=[1, 3, 5]), dict(lr=1e-3)),
    "H50F50": ("1/2 heads + 1/2 FFN removed (taylor)", dict(heads=0.5, ffn=0.5, importance="taylor"),
               dict(lr=5e-4)),
    "H50F375": ("1/2 heads + 3/8 FFN removed (taylor)", dict(heads=0.5, ffn=0.375, importance="taylor"),
                dict(lr=5e-4)),
    "L4F50": ("6 -> 4 layers + 1/2 FFN removed (taylor)", dict(keep_layers=[0, 2, 3, 5], ffn=0.5,
                                                               importance="taylor"), dict(lr=5e-4)),
    "L4": ("6 -> 4 layers (0, 2, 3, 5)", dict(keep_layers=[0, 2, 3, 5]), dict(lr=1e-3)),
    "L4H50": ("6 -> 4 layers + 1/2 heads removed (taylor)", dict(keep_layers=[0, 2, 3, 5], heads=0.5,
                                                                 importance="taylor"), dict(lr=1e-3)),
    "L4H25": ("6 -> 4 layers + 1/4 heads removed (taylor)", dict(keep_layers=[0, 2, 3, 5], heads=0.25,
                                                                 importance="taylor"), dict(lr=1e-3)),
}
BAR_SPEEDUP, BAR_COS, BAR_TOP10, BAR_MINUTES = 1.5, 0.97, 0.80, 20.0


def nncf_int8(model, calib, threads: int) -> Session:
    """NNCF int8 (transformer mode) of `model`, compiled on OpenVINO."""
    return get_backend("openvino", threads=threads).compile_ov(nncf_ov_int8(model, calib, transformer=True))


def hasten_int8(model, calib, threads: int) -> Session:
    """hasten's static int8 QDQ of `model` (common.HASTEN_OV_INT8), compiled on OpenVINO."""
    from hasten.quantize import Int8StaticConfig, quantize_static

    result = quantize_static(model, Int8StaticConfig(**HASTEN_OV_INT8), calib)
    return get_backend("openvino", threads=threads).compile(result.model)


def train_student(name, src, args, console, work: Path):
    """(student module, summary) — distilled now, or loaded from a finished run under `work`."""
    desc, prune_opts, distill_opts = VARIANTS[name]
    cfg = DistillConfig(steps=args.steps, batch_size=32, seed=0, checkpoint_every=250,
                        freeze=("word_embeddings",), bf16=not args.fp32_training, **distill_opts)
    data = None if args.no_train else src.training_data(args.train_size or None)
    texts = "\n".join(data.meta["texts"]) if data is not None else ""
    key = hashlib.sha256(json.dumps([prune_opts, cfg.fingerprint(), texts], sort_keys=True,
                                    default=str).encode()).hexdigest()[:10]
    folder = work / f"{name}-{key}"
    summary_path = folder / "summary.json"
    t0 = time.perf_counter()
    student, plan, pruned = student_from_options(src, calib_size=256, **prune_opts)
    prune_s = time.perf_counter() - t0
    if args.no_train:
        return student, {"trained": False, "prune_s": prune_s, "train_minutes": 0.0, "key": key}
    if summary_path.exists() and not args.fresh:
        summary = json.loads(summary_path.read_text())
        from hasten.compress import load_student

        return load_student(folder / "student.safetensors", src.module, src.example_inputs), summary
    console.print(f"[bold]{name}[/]: {desc}; {len(data)} training sentences, {args.steps} steps of 32, "
                  f"{args.train_threads} thread(s)")
    res = distill(src.module, student, data, cfg, plan=plan, checkpoint_dir=folder / "ckpt", progress=console,
                  threads=args.train_threads)
    summary = {"trained": True, "prune_s": prune_s, **res.to_dict(), "train_items": len(data),
               "train_threads": args.train_threads, "config": cfg.fingerprint(), "key": key,
               "train_minutes": (prune_s + res.seconds) / 60,
               "note": "train_minutes counts this process's pruning and distillation (a resumed run: only "
                       "the resumed part)"}
    if res.resumed_from:
        summary["resumed_from"] = res.resumed_from
    save_student(folder / "student.safetensors", res.student, plan, src.name)
    summary_path.write_text(json.dumps(summary, indent=1))
    return res.student, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="L4,L4H25", help=f"comma-separated, from {', '.join(VARIANTS)}")
    ap.add_argument("--steps", type=int, default=12500, help="distillation steps (batches of 32)")
    ap.add_argument("--train-size", type=int, default=0, help="training sentences (0: all, about 45k)")
    ap.add_argument("--train-threads", type=int, default=physical_cores(), help="torch threads while distilling")
    ap.add_argument("--fp32-training", action="store_true", help="no bf16 autocast while distilling")
    ap.add_argument("--threads", type=int, default=physical_cores(), help="runtime threads while timing")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--work", default="out/compress_minilm", help="where trained students are kept")
    ap.add_argument("--no-train", action="store_true", help="time pruned students without distilling them")
    ap.add_argument("--fresh", action="store_true", help="retrain even if a finished student is kept")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    console = Console(width=150)
    t_start = time.perf_counter()
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    src = torch_source("zoo:minilm")
    calib, ev = src.calibration, src.evaluation
    ort, ov = get_backend("onnxruntime", threads=args.threads), get_backend("openvino", threads=args.threads)
    teacher_model = src.export()
    macs0 = count_macs(src.module, {k: torch.from_numpy(v) for k, v in next(ev.feeds(1)).items()})
    sessions: dict[str, Session] = {}
    info: dict[str, dict] = {}

    def add(name, session, backend, macs, extra=None):
        sessions[name] = session
        info[name] = {"backend": backend, "macs_ratio": macs / macs0, **(extra or {})}

    with console.status("teacher: ORT fp32, OpenVINO fp32, OpenVINO + NNCF int8"):
        add("teacher fp32 (ORT)", ort.compile(teacher_model), "onnxruntime", macs0)
        add("teacher fp32 (OpenVINO)", ov.compile(teacher_model), "openvino", macs0)
        add("teacher OpenVINO + NNCF int8", nncf_int8(teacher_model, calib, args.threads), "openvino", macs0)
    work = Path(args.work)
    for name in names:
        student, summary = train_student(name, src, args, console, work)
        example = {k: torch.from_numpy(v) for k, v in next(ev.feeds(1)).items()}
        macs = count_macs(student, example)
        with console.status(f"{name}: export, NNCF int8 and hasten int8"):
            model = src.export(student)
            add(f"{name} fp32 (ORT)", ort.compile(model), "onnxruntime", macs, summary)
            add(f"{name} + NNCF int8", nncf_int8(model, calib, args.threads), "openvino", macs, summary)
            add(f"{name} + hasten int8", hasten_int8(model, calib, args.threads), "openvino", macs, summary)

    with console.status("fidelity on the 300 evaluation sentences"):
        refs = {"onnxruntime": run_samples(sessions["teacher fp32 (ORT)"], ev)["sentence_embedding"],
                "openvino": run_samples(sessions["teacher fp32 (OpenVINO)"], ev)["sentence_embedding"]}
        for name, session in sessions.items():
            out = run_samples(session, ev)[session.output_names[0]]
            info[name].update(embedding_fidelity(out, refs[info[name]["backend"]]))
    feeds = list(ev.take(16).feeds(1))
    with console.status(f"timing {len(sessions)} sessions, {args.rounds} interleaved rounds"):
        lat = benchmark(sessions, feeds, min_seconds=args.seconds, rounds=args.rounds)

    nncf_ms = lat["teacher OpenVINO + NNCF int8"].median_ms
    table = Table(title=f"zoo:minilm batch 1 x 128, {args.threads} threads (timing), "
                        f"{args.train_threads} thread(s) (training)")
    for col in ("variant", "MACs", "ms", "p90 ms", "ratio vs NNCF int8", "mean cos", "worst cos", "top-10",
                "train min"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    rows = []
    for name, r in lat.items():
        i = info[name]
        ratio = nncf_ms / r.median_ms
        trained = i.get("trained")
        train_min = f"{i['train_minutes']:.1f}" if trained else ("-" if trained is None else "not trained")
        table.add_row(name, f"{i['macs_ratio']:.2f}", f"{r.median_ms:.2f}", f"{r.p90_ms:.2f}", f"{ratio:.2f}x",
                      f"{i['cos_mean']:.4f}", f"{i['cos_worst']:.4f}", f"{i['top10']:.3f}", train_min)
        rows.append({"variant": name, **r.to_dict(), "ratio_vs_nncf_int8": ratio, **i})
    console.print(table)
    machine = platform.processor() or platform.machine()
    versions = {p: importlib.metadata.version(p) for p in ("torch", "onnxruntime", "openvino", "nncf")}
    console.print(f"machine: {machine}; {versions}; peak RSS {peak_rss_mb():.0f} MiB; total "
                  f"{time.perf_counter() - t_start:.0f} s. ratio = NNCF int8 full model's median / this one's.")
    verdicts = []
    for row in rows:
        if not row["variant"].endswith("int8") or row["variant"].startswith("teacher"):
            continue
        ok = (row["ratio_vs_nncf_int8"] >= BAR_SPEEDUP and row["cos_mean"] >= BAR_COS
              and row["top10"] >= BAR_TOP10 and row.get("trained") and row["train_minutes"] <= BAR_MINUTES)
        verdicts.append(f"{'PASS' if ok else 'miss'} {row['variant']}: {row['ratio_vs_nncf_int8']:.2f}x "
                        f"(bar {BAR_SPEEDUP}x), cos {row['cos_mean']:.4f} (bar {BAR_COS}), top-10 "
                        f"{row['top10']:.3f} (bar {BAR_TOP10}), distillation {row.get('train_minutes', 0):.1f} "
                        f"min (bar {BAR_MINUTES:.0f})")
    for line in verdicts:
        console.print(line)
    if args.json:
        print(json.dumps({"rows": rows, "machine": machine, "versions": versions, "bars": verdicts}, indent=2,
                         default=str))


if __name__ == "__main__":
    main()
