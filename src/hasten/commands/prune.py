"""`hasten prune MODEL --heads 0.5 --ffn 0.5 | --target-flops 0.5 | --channels 0.5 -o OUT.onnx`.

Structured pruning of a torch source (zoo:minilm, zoo:digits, module:function): a smaller dense model in
OUT.onnx, and the pruned student (weights + plan) in OUT.safetensors for `hasten distill --student`.
"""

from __future__ import annotations

from rich.table import Table

from hasten.commands.registry import command


def add_source_options(p) -> None:
    p.add_argument("model", help="zoo:minilm, zoo:digits or package.module:function -> (module, inputs)")
    p.add_argument("--data", default=None, help="an .npz of input arrays (for a module:function source)")
    p.add_argument("--seed", type=int, default=0)


def add_prune_options(p) -> None:
    g = p.add_argument_group("pruning (fractions are the share REMOVED; --target-flops the share KEPT)")
    g.add_argument("--target-flops", type=float, default=None, help="keep this share of the MACs (0.5)")
    g.add_argument("--heads", type=float, default=None, help="share of attention heads removed per layer")
    g.add_argument("--ffn", type=float, default=None, help="share of FFN neurons removed per layer")
    g.add_argument("--channels", type=float, default=None, help="share of conv channels removed per group")
    g.add_argument("--drop-layers", type=int, default=None, help="remove this many encoder layers")
    g.add_argument("--keep-layers", default=None, help="comma-separated encoder layers to keep (1,3,5)")
    g.add_argument("--importance", default="magnitude", choices=["magnitude", "l1", "l2", "taylor", "activation"])
    g.add_argument("--calib-size", type=int, default=64, help="calibration items for taylor / activation")
    g.add_argument("--multiple-of", type=int, default=1, help="round kept FFN neurons / channels up to this")


def load_source(args):
    from hasten.compress.sources import torch_source
    from hasten.data import Samples

    data = Samples.from_npz(args.data) if args.data else None
    return torch_source(args.model, data)


def prune_kwargs(args) -> dict:
    keep = [int(x) for x in args.keep_layers.split(",")] if args.keep_layers else None
    return dict(drop_layers=args.drop_layers, keep_layers=keep, heads=args.heads, ffn=args.ffn,
                channels=args.channels, target_flops=args.target_flops, importance=args.importance,
                calib_size=args.calib_size, multiple_of=args.multiple_of, seed=args.seed)


@command("prune", "structured pruning of a torch model (heads, FFN neurons, layers, conv channels) to a "
                  "smaller dense ONNX model")
def run(args, console):
    from hasten.compress.prune import save_student
    from hasten.compress.workflow import export_checked, fidelity, require_output, student_from_options

    out = require_output(args.output)
    src = load_source(args)
    with console.status("pruning..."):
        module, plan, result = student_from_options(src, **prune_kwargs(args))
    with console.status("exporting and checking against torch..."):
        model, diff = export_checked(src, module)
        model.save(out)
        student_path = save_student(out.with_suffix(".safetensors"), module, plan, src.name)
    report = {"model": args.model, "output": str(out), "student": str(student_path), **result.to_dict(),
              "max_abs_diff_torch_vs_onnx": diff}
    if not args.no_eval and src.evaluation is not None:
        with console.status("fidelity before distillation (ONNX Runtime)..."):
            report["fidelity"] = fidelity(src, src.export(), model)
    if not args.json:
        _render(console, report)
    return report


def _render(console, r) -> None:
    t = Table(title=f"hasten prune {r['model']} ({r['importance']} importance)")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("MACs", f"{r['macs_before'] / 1e6:.1f}M -> {r['macs_after'] / 1e6:.1f}M ({r['macs_ratio']:.3f})")
    t.add_row("parameters", f"{r['params_before'] / 1e6:.2f}M -> {r['params_after'] / 1e6:.2f}M")
    for k, v in r["shapes"].items():
        t.add_row(k, str(v))
    t.add_row("max |torch - onnx|", f"{r['max_abs_diff_torch_vs_onnx']:.1e}")
    for name, s in r.get("fidelity", {}).items():
        t.add_row(f"{name} (before distillation)", f"mean {s['mean']:.4f}  worst {s['worst']:.4f}")
    console.print(t)
    for note in r["notes"]:
        console.print(f"note: {note}")
    console.print(f"wrote {r['output']} and {r['student']} (for `hasten distill {r['model']} --student ...`)")


def arguments(p):
    add_source_options(p)
    add_prune_options(p)
    p.add_argument("-o", "--output", required=True, help="the pruned model (.onnx)")
    p.add_argument("--no-eval", action="store_true", help="skip the fidelity check on the evaluation split")


run.arguments = arguments
