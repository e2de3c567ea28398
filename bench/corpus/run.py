"""hasten optimize on every corpus model beside OpenVINO + NNCF int8 and ONNX Runtime's own quantizer.

    .venv/bin/python bench/corpus/run.py [--models a,b] [--time-budget 3m] [--eval-items N] [--seconds 5]
                                         [--rounds 8] [--threads 2] [--out out/corpus] [--fresh] [--json]
                                         [--save DIR] [--tables-from DIR]

Build the corpus first (`.venv/bin/python -m bench.corpus.build`). For each model, in one process run
(BENCHMARKING.md): the fp32 model on ONNX Runtime (the baseline) and on OpenVINO; `hasten.optimize` with the
model's own data, metric and budget; NNCF int8 with its default preset and, for transformers, with
ModelType.TRANSFORMER (the preset that fits); ONNX Runtime's quantize_static (QDQ, MinMax, few calibration
items) and quantize_dynamic. Every session is compiled once, timed in interleaved rounds, and scored on the
evaluation set against the fp32 model on the same backend (task metric where labels exist). Prints one
detail table (every candidate of every model) and one summary table (one row per model: hasten's choice,
speed-up vs ONNX Runtime fp32, ratio vs NNCF, metric and drop, candidates failed and why), with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402  (labels hold "[option=value]", which rich reads as markup)
from rich.table import Table  # noqa: E402

from bench import corpus  # noqa: E402

BASELINE = "ORT fp32"


@dataclass
class Row:
    """One candidate of one model: its session (None when it failed), backend, accuracy, latency."""

    label: str
    backend: str = "onnxruntime"
    session: object = None
    error: str = ""
    build_s: float = 0.0
    score: object = None  # hasten Score
    drop: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    extra: dict = field(default_factory=dict)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160] if text else ''}"


def ort_quantized(model_path: Path, calib, kind: str, folder: Path, items: int) -> Path:
    """ONNX Runtime's own quantizer with its defaults: quantize_static (QDQ, MinMax, `items` calibration
    items: its Percentile/Entropy calibration can take 20 GB) or quantize_dynamic."""
    import logging

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        quantize_dynamic,
        quantize_static,
    )

    logging.getLogger().setLevel(logging.ERROR)  # its "consider pre-processing" chatter on the root logger

    out = folder / f"ort-{kind}.onnx"
    if kind == "dynamic":
        quantize_dynamic(str(model_path), str(out))
        return out

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(list(calib.take(items).feeds(1)))

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(str(model_path), str(out), Reader(), calibrate_method=CalibrationMethod.MinMax)
    return out


def candidates(built, model, calib, ev, args, folder: Path, console) -> tuple[list[Row], object]:
    """Build and compile every candidate of one model; a failure becomes a Row with its error."""
    import hasten
    from bench.common import nncf_ov_int8
    from hasten.backends import get_backend
    from hasten.errors import SearchError
    from hasten.model import load_onnx

    entry, threads = built.entry, args.threads
    rows = [Row(BASELINE, session=get_backend("onnxruntime", threads=threads).compile(model)),
            Row("OV fp32", "openvino", session=get_backend("openvino", threads=threads).compile(model))]
    result, t0 = None, time.perf_counter()
    try:
        options = dict(calib=calib, eval=ev, metric=entry.metric, max_drop=entry.max_drop,
                       time_budget=args.time_budget, threads=threads, out=Path(args.out) / entry.name)
        try:  # resumes the same model's earlier search; --fresh (or a rebuilt model) starts over
            result = hasten.optimize(str(built.model_path), force=args.fresh, **options)
        except SearchError as exc:
            if "holds the results of another model" not in str(exc):
                raise
            result = hasten.optimize(str(built.model_path), force=True, **options)
        chosen = result.chosen
        session = chosen.recipe.backend_instance(threads=threads).compile(load_onnx(result.model_path))
        rows.append(Row(f"hasten: {chosen.label}", chosen.recipe.backend, session, build_s=time.perf_counter() - t0))
    except Exception as exc:
        rows.append(Row("hasten", error=_short(exc), build_s=time.perf_counter() - t0))
    console.print(f"  {entry.name}: hasten optimize {time.perf_counter() - t0:.0f} s")
    presets = [("NNCF int8 default", False)] + ([("NNCF int8 transformer", True)] if entry.transformer else [])
    for label, transformer in presets:
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: keep stdout for --json
                quantized = nncf_ov_int8(model, calib, transformer=transformer, subset=args.calib_items)
            rows.append(Row(label, "openvino", get_backend("openvino", threads=threads).compile_ov(quantized),
                            build_s=time.perf_counter() - t0))
        except Exception as exc:
            rows.append(Row(label, "openvino", error=_short(exc)))
    for kind in ("static", "dynamic"):
        t0 = time.perf_counter()
        try:
            path = ort_quantized(built.model_path, calib, kind, folder, items=min(args.calib_items, 32))
            session = get_backend("onnxruntime", threads=threads).compile(load_onnx(path))
            rows.append(Row(f"ORT quantize_{kind}", session=session, build_s=time.perf_counter() - t0))
        except Exception as exc:
            rows.append(Row(f"ORT quantize_{kind}", error=_short(exc)))
    return rows, result


def score_rows(rows: list[Row], built, ev) -> dict:
    """Each row's metric on `ev` against the fp32 model on the same backend, and its drop from fp32 there."""
    from hasten.backends import run_samples

    metric = built.metric()
    output = None
    outs = {}
    for row in rows:
        if row.session is None:
            continue
        try:
            got = run_samples(row.session, ev)
            output = output or next(iter(got))
            outs[row.label] = got.get(output, next(iter(got.values())))
        except Exception as exc:
            row.error, row.session = f"run: {_short(exc)}", None
    refs = {"onnxruntime": outs[BASELINE], "openvino": outs["OV fp32"]}
    fp32 = {b: metric.score(r, r, ev.labels) for b, r in refs.items()}
    for row in rows:
        if row.label not in outs:
            continue
        try:
            row.score = metric.score(outs[row.label], refs[row.backend], ev.labels)
            row.drop = metric.drop(fp32[row.backend], row.score)
        except Exception as exc:
            row.error = f"metric: {_short(exc)}"
    return {b: s.mean for b, s in fp32.items()}


def time_rows(rows: list[Row], ev, args) -> None:
    """Interleaved timing of every live session (hasten.benchmark: warm-up, rounds, medians)."""
    from hasten.measure.latency import benchmark

    live = {r.label: r.session for r in rows if r.session is not None}
    feeds = list(ev.take(8).feeds(1))
    lat = benchmark(live, feeds, min_seconds=args.seconds, rounds=args.rounds)
    for row in rows:
        if row.label in lat:
            row.median_ms, row.p90_ms = lat[row.label].median_ms, lat[row.label].p90_ms


def statuses(result) -> str:
    """The search's candidates counted by status, e.g. "7 in-budget, 3 rejected, 2 failed, 4 not-tried"."""
    if result is None:
        return ""
    counts: dict[str, int] = {}
    for r in result.records:
        counts[r.status] = counts.get(r.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def failures(result) -> tuple[int, str]:
    """How many of the search's candidates failed, and the commonest reasons (each once, with a count)."""
    if result is None:
        return 0, ""
    failed = [r for r in result.records if r.status == "failed"]
    counts: dict[str, int] = {}
    for r in failed:
        key = f"{r.label}: {r.stage or 'failed'}: {r.reason[:120]}"
        counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return len(failed), "; ".join(k for k, _ in top) + (f"; +{len(counts) - 3} more" if len(counts) > 3 else "")


def bench_model(name: str, args, console) -> dict:
    import hasten

    built = corpus.load(name, args.root)
    model = hasten.load(str(built.model_path))
    calib, ev = built.calib(), built.eval()
    if args.eval_items:
        ev = ev.take(min(args.eval_items, len(ev)))
    calib = calib.take(min(args.calib_items, len(calib)))
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        rows, result = candidates(built, model, calib, ev, args, Path(tmp), console)
        fp32 = score_rows(rows, built, ev)
        time_rows(rows, ev, args)
    for row in rows:
        row.session = None
    base = rows[0].median_ms
    hasten_row = next(r for r in rows if r.label.startswith("hasten"))
    n_failed, why = failures(result)
    budget = built.entry.max_drop
    anchors = [r for r in rows[1:] if r is not hasten_row and r.median_ms and r.drop is not None
               and r.drop <= budget]
    fastest = min(anchors, key=lambda r: r.median_ms, default=None)
    return {"model": name, "kind": built.entry.kind, "time_budget": args.time_budget, "metric": built.entry.metric, "max_drop": budget,
            "fp32_metric": fp32, "shape": {k: list(v.shape[1:]) for k, v in ev.arrays.items()},
            "eval_items": len(ev), "search": statuses(result), "search_failed": n_failed,
            "search_failed_why": why,
            "fastest_anchor": fastest.label if fastest else None,
            "vs_fastest_anchor": (fastest.median_ms / hasten_row.median_ms) if fastest and hasten_row.median_ms
            else None,
            "rows": [{"label": r.label, "backend": r.backend, "error": r.error, "build_s": round(r.build_s, 1),
                      "median_ms": r.median_ms, "p90_ms": r.p90_ms,
                      "speedup": base / r.median_ms if base and r.median_ms else None,
                      "metric": r.score.mean if r.score else None, "drop": r.drop} for r in rows]}


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def machine_line() -> str:
    from hasten.measure.isa import cpu_features, int8_isa
    from hasten.report.environment import cpu_model

    feats = sorted(cpu_features())
    return f"{cpu_model()} | int8 path {int8_isa(cpu_features())} | {' '.join(feats)}"


def print_tables(reports: list[dict], args, console, machine: str = "") -> None:
    detail = Table(title=f"corpus candidates ({args.threads} threads, {args.rounds} interleaved rounds, "
                         f">= {args.seconds:g} s each; accuracy vs fp32 on the same backend)")
    for col in ("model", "candidate", "median ms", "p90 ms", "vs ORT fp32", "hasten vs it", "metric", "drop",
                "note"):
        detail.add_column(col, justify="left" if col in ("model", "candidate", "note") else "right")
    for rep in reports:
        h = next(r for r in rep["rows"] if r["label"].startswith("hasten"))
        for r in rep["rows"]:
            ratio = (r["median_ms"] / h["median_ms"]) if r["median_ms"] and h["median_ms"] else None
            note = r["error"] or ("over budget" if r["drop"] is not None and r["drop"] > rep["max_drop"] else "")
            detail.add_row(rep["model"], escape(r["label"][:60]), _fmt(r["median_ms"], ".2f"), _fmt(r["p90_ms"], ".2f"),
                           _fmt(r["speedup"], ".2f") + ("x" if r["speedup"] else ""),
                           _fmt(ratio, ".2f") + ("x" if ratio else ""), _fmt(r["metric"], ".4f"),
                           _fmt(r["drop"], "+.4f"), escape(note[:90]))
        detail.add_section()
    console.print(detail)
    summary = Table(title="corpus summary: hasten's choice per model")
    for col in ("model", "hasten choice", "ms", "vs ORT fp32", "vs NNCF default", "vs NNCF fitting",
                "vs fastest in-budget anchor", "metric fp32 -> hasten (drop / budget)", "search failed (why)",
                "search candidates"):
        summary.add_column(col, justify="left" if col in ("model", "hasten choice", "search failed (why)",
                                                          "search candidates") else "right")
    for rep in reports:
        rows = {r["label"]: r for r in rep["rows"]}
        h = next(r for r in rep["rows"] if r["label"].startswith("hasten"))

        def vs(label, h=h, rows=rows):
            r = rows.get(label)
            if not r or not r["median_ms"] or not h["median_ms"]:
                return "-" if not r or not r["error"] else "failed"
            return f"{r['median_ms'] / h['median_ms']:.2f}x"

        fitting = "NNCF int8 transformer" if "NNCF int8 transformer" in rows else "NNCF int8 default"
        backend = "openvino" if h["backend"] == "openvino" else "onnxruntime"
        anchor = (f"{rep['vs_fastest_anchor']:.2f}x ({rep['fastest_anchor']})" if rep["vs_fastest_anchor"]
                  else "-")
        summary.add_row(rep["model"], escape((h["label"][len("hasten: "):] or h["error"])[:48]), _fmt(h["median_ms"], ".2f"),
                        _fmt(h["speedup"], ".2f") + ("x" if h["speedup"] else ""), vs("NNCF int8 default"),
                        vs(fitting), anchor,
                        f"{rep['fp32_metric'][backend]:.4f} -> {_fmt(h['metric'], '.4f')} "
                        f"({_fmt(h['drop'], '+.4f')} / {rep['max_drop']:g})",
                        escape(f"{rep['search_failed']}: {rep['search_failed_why']}"[:110]) if rep["search_failed"]
                        else "0", rep["search"])
    console.print(summary)
    budgets = "/".join(sorted({str(r.get("time_budget", args.time_budget)) for r in reports}))
    console.print(f"machine: {machine or machine_line()}; hasten optimize --time-budget {budgets} per model; "
                  "'vs X' = X's median / hasten's (above 1: hasten is faster)")


def main(argv=None) -> int:
    from hasten.backends import physical_cores

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated corpus names (default: every entry)")
    ap.add_argument("--time-budget", default="3m", help="hasten optimize's budget per model")
    ap.add_argument("--eval-items", type=int, default=0, help="evaluate on the first N items only (0: all)")
    ap.add_argument("--calib-items", type=int, default=64, help="calibration items for every quantiser")
    ap.add_argument("--seconds", type=float, default=5.0, help="timed seconds per candidate")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=physical_cores())
    ap.add_argument("--root", default=str(corpus.ROOT))
    ap.add_argument("--out", default="out/corpus")
    ap.add_argument("--fresh", action="store_true", help="discard earlier searches in OUT (default: resume)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON on stdout")
    ap.add_argument("--save", default="", help="write each model's results to DIR/<model>.json as it ends")
    ap.add_argument("--tables-from", default="", metavar="DIR",
                    help="run nothing: print the tables from the DIR/*.json that --save wrote")
    args = ap.parse_args(argv)
    console = Console(stderr=args.json, width=max(Console().width, 180))
    warnings.filterwarnings("ignore")
    if args.tables_from:
        reports, machines = saved_reports(Path(args.tables_from), args.models)
        print_tables(reports, args, console, machine=" / ".join(sorted(set(machines))))
        return 0 if reports else 1
    reports = []
    for name in corpus.names(args.models):
        console.print(f"[bold]{name}[/bold] ...")
        try:
            reports.append(bench_model(name, args, console))
        except corpus.CorpusError as exc:
            console.print(f"  {name}: {exc}")
            continue
        if args.save:
            save_report(reports[-1], Path(args.save))
    if reports:
        print_tables(reports, args, console)
    if args.json:
        from hasten.report.environment import environment

        print(json.dumps({"environment": environment(), "models": reports}, indent=2, default=_json_default))
    return 0 if reports else 1


def save_report(report: dict, folder: Path) -> Path:
    """One model's results as DIR/<model>.json (written atomically), with the machine and the settings."""
    from hasten.report.environment import environment

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report['model']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"environment": environment(), "machine": machine_line(), "report": report},
                              indent=2, default=_json_default))
    tmp.replace(path)
    return path


def saved_reports(folder: Path, models: str = "") -> tuple[list[dict], list[str]]:
    """The reports save_report wrote, in corpus order (only `models` when given), and their machine lines."""
    wanted = corpus.names(models)
    found = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    kept = [found[n] for n in wanted if n in found]
    return [k["report"] for k in kept], [k["machine"] for k in kept]


def _json_default(v):
    return float(v) if isinstance(v, np.floating) else str(v)


if __name__ == "__main__":
    sys.exit(main())
