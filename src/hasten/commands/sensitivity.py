"""`hasten sensitivity MODEL [--calib DATA] [--eval DATA --metric M] [--top N]`: per-layer int8 sensitivity.

Each quantisable node is quantised alone (int8 static QDQ, statistics collected once) and the output SQNR
(and the metric's drop) is measured; the table is ranked worst first. With a zoo model its own calibration
and evaluation data and its first metric are the defaults.
"""

from __future__ import annotations

from hasten.commands.common import load_source
from hasten.commands.registry import add_model_options, command


def _data(args, src):
    """(calibration, evaluation or None, metric or None) from the flags and the Source's defaults."""
    from hasten.errors import DataError

    calib = src.samples(args.calib, "calibration") if args.calib else src.calibration
    if calib is None:
        raise DataError(f"{args.model}: give calibration data with --calib DATA (.npz of named input arrays)")
    ev = src.samples(args.eval, "evaluation") if args.eval else src.evaluation
    metric = args.metric
    if metric is None and src.metrics:
        metric = src.metrics[0]
    return calib, ev, metric


@command("sensitivity", "per-layer int8 sensitivity: quantise each node alone, rank by output SQNR / metric")
def run(args, console):
    from hasten.quantize.int8 import Int8StaticConfig
    from hasten.quantize.sensitivity import sensitivity

    src = load_source(args)
    model = src.model
    calib, ev, metric = _data(args, src)
    if args.calib_items:
        calib = calib.take(min(len(calib), args.calib_items))
    config = Int8StaticConfig(calibration=args.calibration, per_channel=not args.per_tensor)
    report = sensitivity(model, calib, ev, metric, config, eval_samples=args.samples,
                         progress=not args.json, console=console)
    if not args.json:
        report.render(console, top=args.top, title=f"{args.model}: per-layer int8 sensitivity "
                      f"({config.calibration}, one node quantised at a time, {report.samples} samples), worst first")
    out = report.to_dict()
    if args.top:
        out["rows"] = out["rows"][:args.top]
    return {"model": args.model, **out}


def arguments(p):
    add_model_options(p)
    p.add_argument("--calib", help="calibration data (.npz, image folder); zoo models default to their own")
    p.add_argument("--calib-items", type=int, default=None, help="use only the first N calibration items")
    p.add_argument("--eval", help="evaluation data (default: the zoo's, else the calibration data)")
    p.add_argument("--metric", default=None, help="top1, cosine, retrieval@K, sqnr or module:function "
                   "(default: the zoo model's first metric; SQNR is always shown)")
    p.add_argument("--samples", type=int, default=64, help="evaluation items used per variant (default 64)")
    p.add_argument("--calibration", default="minmax", choices=["minmax", "percentile", "entropy", "mse"],
                   help="activation range method (default minmax)")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weights (default per-channel)")
    p.add_argument("--top", type=int, default=None, help="show only the N most sensitive nodes")


run.arguments = arguments
