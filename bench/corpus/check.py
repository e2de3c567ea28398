"""Quick robustness check: every int8 scheme of `hasten.quantize` on every built corpus model, no search.

    .venv/bin/python bench/corpus/check.py [--models a,b] [--schemes int8-static,int8-dynamic,int8-weight]
                                           [--calib-items 16] [--eval-items 16]

For each model and scheme: quantise, count the quantised nodes, save, run `onnx.checker.check_model(
full_check=True)`, re-load with hasten, run on ONNX Runtime and score the corpus metric against the fp32
model. Prints one line per (model, scheme): ok with metric and drop, or the stage that failed and why.
Meant to show which schemes fail on third-party graphs (opset, weights behind nodes, dynamic dims).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import corpus  # noqa: E402

QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
             "QLinearMatMul", "QLinearConv", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits"}


def check(name: str, scheme: str, args) -> str:
    import onnx

    import hasten
    from hasten.backends import get_backend, run_samples
    from hasten.quantize import config_for, quantize

    built = corpus.load(name, args.root)
    model = hasten.load(str(built.model_path))
    calib, ev = built.calib().take(args.calib_items), built.eval().take(args.eval_items)
    metric = built.metric()
    ort = get_backend("onnxruntime", threads=args.threads)
    ref = next(iter(run_samples(ort.compile(model), ev).values()))
    fp32 = metric.score(ref, ref, ev.labels)
    stage, t0 = "quantize", time.perf_counter()
    try:
        q = quantize(model, config_for(scheme), calib).model
        n = sum(node.op_type in QUANT_OPS for node in q.proto().graph.node)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "q.onnx"
            stage = "save"
            q.save(path)
            stage = "check_model"
            onnx.checker.check_model(str(path), full_check=True)
            stage = "reload"
            again = hasten.load(str(path))
            stage = "run"
            out = next(iter(run_samples(ort.compile(again), ev).values()))
        stage = "metric"
        score = metric.score(out, ref, ev.labels)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        return f"FAILED at {stage}: {type(exc).__name__}: {text[0][:200] if text else ''}"
    return (f"ok   {n:4d} quantised nodes  {metric.name} {fp32.mean:.4f} -> {score.mean:.4f} "
            f"(drop {metric.drop(fp32, score):+.4f}, budget {built.entry.max_drop:g})  "
            f"{time.perf_counter() - t0:.1f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="")
    ap.add_argument("--schemes", default="int8-static,int8-dynamic,int8-weight")
    ap.add_argument("--calib-items", type=int, default=16)
    ap.add_argument("--eval-items", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--root", default=str(corpus.ROOT))
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    for name in corpus.names(args.models):
        for scheme in [s.strip() for s in args.schemes.split(",") if s.strip()]:
            try:
                line = check(name, scheme, args)
            except corpus.CorpusError as exc:
                line = f"not built: {exc}"
            print(f"{name:13s} {scheme:13s} {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
