"""`hasten sensitivity MODEL [--calib DATA] [--eval DATA --metric M] [--top N]`: per-layer int8 sensitivity.

Each quantisable node is quantised alone (int8 static QDQ, statistics collected once) and the output SQNR
(and the metric's drop) is measured; the table is ranked worst first. With a zoo model its own calibration
and evaluation data and its first metric are the defaults.
"""

from __future__ import annotations

from hasten.commands.common import load_model
from hasten.commands.registry import add_model_options, command
from hasten.data import load_samples
from hasten.source import tokenizer_for, zoo_name


def _data(args, model):
    """(calibration, evaluation or None, metric or None) from the flags and the zoo defaults."""
    from hasten.errors import DataError

    entry = None
    if zoo_name(args.model) is not None:
        from hasten import zoo

        entry = zoo.get(args.model)
    if args.calib:
        calib = load_samples(args.calib, model, "calibration", tokenizer_for(args.model))
    elif entry is not None:
        calib = entry.calibration()
    else:
        raise DataError(f"{args.model}: give calibration data with --calib DATA (.npz of named input arrays)")
    if args.eval:
        ev = load_samples(args.eval, model, "evaluation", tokenizer_for(args.model))
    elif entry is not None:
        ev = entry.evaluation()
    else:
        ev = None
    metric = args.metric
    if metric is None and entry is not None:
        metric = entry.metrics()[0]
    return calib, ev, metric


@command("sensitivity", "per-layer int8 sensitivity: quantise each node alone, rank by output SQNR / metric")
def run(args, console):
    from hasten.quantize.int8 import Int8StaticConfig
    from hasten.quantize.sensitivity import sensitivity

    model = load_model(args)
    calib, ev, metric = _data(args, model)
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
