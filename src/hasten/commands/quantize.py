"""`hasten quantize MODEL --scheme S [options] -o OUT.onnx`: quantise, measure fidelity and speed, save.

With a zoo model its calibration and evaluation data and metrics are the defaults
(`hasten quantize zoo:digits --scheme int8-static -o d.onnx` needs nothing else). The quantised model is
checked on the chosen backend (it must compile and run there), scored against the original on the
evaluation data, timed against the original side by side (a short check; `hasten bench` for real figures),
and written atomically.
"""

from __future__ import annotations

from hasten.commands.common import load_source
from hasten.commands.registry import add_model_options, command

SCHEMES = ("int8-dynamic", "int8-static", "int4-weight", "int8-weight", "fp16", "bf16", "binary")


def _options(args) -> dict:
    import yaml

    from hasten.errors import QuantizationError

    opts: dict = {}
    if args.calibration:
        opts["calibration"] = args.calibration
    if args.percentile is not None:
        opts["percentile"] = args.percentile
    if args.smoothquant is not None:
        opts["smoothquant"] = "auto" if args.smoothquant == "auto" else float(args.smoothquant)
    if args.smoothquant_scope:
        opts["smoothquant_scope"] = args.smoothquant_scope
    if args.per_channel is not None:
        opts["per_channel"] = args.per_channel
    if args.symmetric:
        opts["symmetric_activations"] = True
        opts["activation_dtype"] = "int8"
    if args.gptq:
        opts["weight_rounding"] = "gptq"
    if args.ort_ops:
        opts["ort_ops"] = True
    if args.exclude:
        opts["nodes_to_exclude"] = tuple(args.exclude)
    if args.dynamic:
        opts["dynamic_nodes"] = tuple(args.dynamic)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise QuantizationError(f"--set {item!r}: expected KEY=VALUE, e.g. --set block_size=64")
        opts[key.replace("-", "_")] = yaml.safe_load(value)
    return opts


@command("quantize", "quantise a model (int8 dynamic/static, weight-only, fp16/bf16, binary); fidelity and "
         "speed against the original")
def run(args, console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from hasten.quantize import config_for, quantize
    from hasten.quantize.stats import reporting

    src = load_source(args)
    model = src.model
    config = config_for(args.scheme, **_options(args))
    calib = src.samples(args.calib, "calibration") if args.calib else src.calibration
    if calib is not None and args.calib_items:
        calib = calib.take(min(len(calib), args.calib_items))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=args.json) as bar:
        task = bar.add_task("calibration statistics", total=len(calib) if calib is not None else 0)
        with reporting(lambda done, total: bar.update(task, completed=done, total=total)):
            result = quantize(model, config, calib)
    fidelity, speed = _check(src, result.model, args, console)
    path = result.model.save(args.output)
    summary = {"model": args.model, "scheme": config.scheme, "config": config.to_dict(),
               "output": str(path), "report": result.report, "fidelity": fidelity, "speed": speed,
               "size_bytes": {"input": model.parameter_bytes(), "output": result.model.parameter_bytes()}}
    if not args.json:
        _render(console, summary)
    return summary


def _check(src, quantised, args, console):
    """(fidelity {metric: {...}}, speed {...}) of `quantised` against the Source's model on the chosen
    backend; errors when the backend cannot run it."""
    from hasten.backends import get_backend
    from hasten.errors import BackendError, QuantizationError
    from hasten.measure.accuracy import SQNR, CosineFidelity, get_metric
    from hasten.measure.compare import parse_backend_spec
    from hasten.measure.evaluator import Evaluator
    from hasten.measure.latency import benchmark

    model = src.model
    name, options = parse_backend_spec(args.backend)
    backend = get_backend(name, **options)
    try:
        original_session = backend.compile(model)
    except BackendError as exc:
        raise QuantizationError(f"backend {args.backend} cannot run the input model: {exc}") from exc
    try:
        session = backend.compile(quantised)
    except BackendError as exc:
        raise QuantizationError(f"scheme {args.scheme}: backend {args.backend} cannot run the quantised "
                                f"model ({exc}); choose another scheme or backend") from exc
    ev = src.samples(args.eval, "evaluation") if args.eval else src.evaluation
    fidelity = {}
    if ev is not None:
        if args.eval_items:
            ev = ev.take(min(len(ev), args.eval_items))
        ev.validate(model)
        metrics = [get_metric(m) for m in args.metric] if args.metric else (
            src.metrics or [CosineFidelity(), SQNR()])
        judge = Evaluator(ev, metrics, output=original_session.output_names[0])
        with console.status(f"evaluating on {len(ev)} items..."):
            judge.set_reference(original_session)
            judged = judge.measure(session)
        base = judge.baseline()
        for m in metrics:
            score = judged.scores[m.name]
            row = {"mean": score.mean, "worst": score.worst}
            if m.needs_labels or (not m.needs_reference and ev.labels is not None):
                row.update(original=base[m.name].mean, drop=judged.drops[m.name])
            fidelity[m.name] = row
    speed = None
    if not args.no_speed_check:
        from hasten.commands.common import bench_feeds

        feeds, _ = bench_feeds(src, args, count=8)
        with console.status("timing the input and the quantised model side by side..."):
            res = benchmark({"input": original_session, "quantised": session}, feeds, warmup_runs=5,
                            warmup_s=0.3, min_runs=40, min_seconds=1.5, rounds=4)
        a, b = res["input"].median_ms, res["quantised"].median_ms
        speed = {"backend": args.backend, "input_ms": a, "quantised_ms": b, "speedup": a / b}
    return fidelity, speed


def _render(console, s):
    r = s["report"]
    parts = []
    for key in ("static", "dynamic", "kept_float", "quantised"):
        if r.get(key):
            parts.append(f"{len(r[key])} {key.replace('_', ' ')}")
    console.print(f"[bold]{s['scheme']}[/] on {s['model']}: " + (", ".join(parts) or "done"))
    if r.get("smoothquant"):
        sq = r["smoothquant"]
        console.print(f"  SmoothQuant alpha={sq['alpha']}: {len(sq['smoothed'])} tensors smoothed")
    if r.get("calibration"):
        extra = f"; GPTQ rounding of {len(r['gptq'])} weights" if r.get("gptq") else ""
        console.print(f"  calibration: {r['calibration']} on {r.get('samples', 0)} samples{extra}")
    for name, row in s["fidelity"].items():
        extra = f"  (original {row['original']:.4f}, drop {row['drop']:+.4f})" if "drop" in row else ""
        console.print(f"  {name}: mean {row['mean']:.4f}, worst {row['worst']:.4f}{extra}")
    if not s["fidelity"]:
        console.print("  fidelity: no evaluation data (give --eval DATA)")
    sp = s["speed"]
    if sp:
        verdict = "faster" if sp["speedup"] >= 1.0 else "[bold red]SLOWER than the input[/]"
        console.print(f"  speed on {sp['backend']}: {sp['input_ms']:.3g} ms -> {sp['quantised_ms']:.3g} ms "
                      f"({sp['speedup']:.2f}x, {verdict}; quick check, `hasten bench` for real figures)")
    mb = 1 / 2**20
    console.print(f"  weights: {s['size_bytes']['input'] * mb:.1f} MiB -> {s['size_bytes']['output'] * mb:.1f} MiB")
    console.print(f"  wrote {s['output']}")


def arguments(p):
    add_model_options(p)
    p.add_argument("--scheme", required=True, choices=SCHEMES, help="quantisation scheme")
    p.add_argument("-o", "--output", required=True, help="output .onnx path")
    p.add_argument("--calib", help="calibration data: .npz, folder of images, or .jsonl (zoo:minilm); zoo "
                   "models default to their own")
    p.add_argument("--calib-items", type=int, default=None, help="use only the first N calibration items")
    p.add_argument("--eval", help="evaluation data for the fidelity check (zoo models: their own)")
    p.add_argument("--eval-items", type=int, default=None, help="use only the first N evaluation items")
    p.add_argument("--metric", action="append", default=[], help="metric(s): top1, cosine, retrieval, sqnr")
    p.add_argument("--calibration", choices=("minmax", "percentile", "entropy", "mse"),
                   help="activation range method (int8-static; default minmax)")
    p.add_argument("--percentile", type=float, default=None, help="percentile for --calibration percentile")
    p.add_argument("--smoothquant", metavar="ALPHA", default=None,
                   help="SmoothQuant migration strength in [0, 1], or 'auto' (per tensor)")
    p.add_argument("--smoothquant-scope", choices=("norm", "all"), default=None,
                   help="smooth MatMuls fed by a LayerNorm (norm) or every MatMul input (all)")
    pc = p.add_mutually_exclusive_group()
    pc.add_argument("--per-channel", dest="per_channel", action="store_const", const=True, default=None,
                    help="per-channel weights (int8 default)")
    pc.add_argument("--per-tensor", dest="per_channel", action="store_const", const=False)
    p.add_argument("--symmetric", action="store_true", help="symmetric int8 activations (default asymmetric uint8)")
    p.add_argument("--gptq", action="store_true", help="int8-static: GPTQ rounding of the weights (uses "
                   "E[x^T x] of each weight's input from the same calibration pass)")
    p.add_argument("--ort-ops", action="store_true", help="int8-static: ONNX Runtime's fused MatMulIntegerToFloat "
                   "with the bias inside (faster; the model then runs on ONNX Runtime only)")
    p.add_argument("--exclude", action="append", default=[], metavar="NODE", help="keep NODE in float")
    p.add_argument("--dynamic", action="append", default=[], metavar="NODE",
                   help="int8-static: quantise MatMul NODE dynamically instead (mixed precision)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other option of the scheme's config (YAML value), e.g. block_size=64")
    from hasten.backends import DEFAULT_BACKEND, backend_names

    p.add_argument("--backend", default=DEFAULT_BACKEND, help="backend to check and time on (one of "
                   f"{', '.join(backend_names())}; NAME:VALUE sets an option, e.g. openvino:bf16)")
    p.add_argument("--no-speed-check", action="store_true", help="skip the quick side-by-side timing")


run.arguments = arguments
