"""`hasten distill MODEL [--student S.safetensors | --drop-layers 3 | pruning options] --steps N -o OUT.onnx`.

Knowledge distillation of a student (a pruned model saved by `hasten prune`, a layer-dropped copy, or one
pruned here) from its torch teacher, on unlabelled data built offline (zoo:minilm: docstring sentences
disjoint from the evaluation split). Checkpoints go to OUT.ckpt/ (or --checkpoint); running the same command
again resumes an interrupted run.
"""

from __future__ import annotations

from rich.table import Table

from hasten.commands.prune import add_prune_options, add_source_options, load_source, prune_kwargs
from hasten.commands.registry import command

#: per kind of source: learning rate, frozen parameters, training items
DEFAULTS = {"embedding": (5e-4, ("word_embeddings",), None), "classifier": (3e-3, (), None),
            "custom": (1e-4, (), None)}


@command("distill", "knowledge distillation of a pruned or layer-dropped student from its teacher")
def run(args, console):
    import time
    from pathlib import Path

    from hasten.compress.common import count_macs
    from hasten.compress.distill import DistillConfig, distill
    from hasten.compress.prune import save_student
    from hasten.compress.workflow import export_checked, fidelity, require_output, student_from_options

    out = require_output(args.output)
    src = load_source(args)
    lr, freeze, train_size = DEFAULTS[src.kind]
    opts = prune_kwargs(args)
    student_path = Path(args.student) if args.student else None
    if student_path is None and all(opts[k] is None for k in ("drop_layers", "keep_layers", "heads", "ffn",
                                                              "channels", "target_flops")):
        from hasten.compress.common import CompressError

        raise CompressError("say which student: --student FILE.safetensors, --drop-layers N, or pruning "
                            "options (--heads/--ffn/--channels/--target-flops)")
    t0 = time.perf_counter()
    with console.status("building the student..."):
        student, plan, _ = student_from_options(src, student_path=student_path,
                                                **(opts if student_path is None else {}))
        data = src.training_data(args.train_size or train_size)
    cfg = DistillConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr or lr, seed=args.seed,
                        hidden_weight=args.hidden_weight, attention_weight=args.attention_weight,
                        label_weight=args.label_weight, checkpoint_every=args.checkpoint_every, bf16=args.bf16,
                        freeze=tuple(f for f in args.freeze.split(",") if f) if args.freeze is not None else freeze)
    ckpt = Path(args.checkpoint) if args.checkpoint else out.with_suffix(".ckpt")
    result = distill(src.module, student, data, cfg, plan=plan, checkpoint_dir=ckpt,
                     progress=None if args.json else console, threads=args.threads)
    with console.status("exporting and checking..."):
        model, diff = export_checked(src, result.student)
        model.save(out)
        saved = save_student(out.with_suffix(".safetensors"), result.student, plan, src.name)
    report = {"model": args.model, "output": str(out), "student": str(saved), "checkpoint": str(ckpt),
              "train_items": len(data), "config": cfg.fingerprint(), **result.to_dict(),
              "total_seconds": time.perf_counter() - t0, "max_abs_diff_torch_vs_onnx": diff,
              "macs_teacher": count_macs(src.module, src.example_inputs),
              "macs_student": count_macs(result.student, src.example_inputs)}
    if not args.no_eval and src.evaluation is not None:
        with console.status("fidelity (ONNX Runtime)..."):
            report["fidelity"] = fidelity(src, src.export(), model)
    if not args.json:
        _render(console, report)
    return report


def _render(console, r) -> None:
    t = Table(title=f"hasten distill {r['model']}")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_row("steps", f"{r['steps']} (resumed from {r['resumed_from']})" if r["resumed_from"] else str(r["steps"]))
    t.add_row("training items / s", f"{r['items_per_s']:.1f} ({r['train_items']} items)")
    t.add_row("seconds (total)", f"{r['total_seconds']:.0f}")
    t.add_row("loss first -> last", f"{r['first_loss']:.4f} -> {r['final_loss']:.4f}"
              if r["first_loss"] is not None else "-")
    t.add_row("MACs student / teacher", f"{r['macs_student'] / max(1, r['macs_teacher']):.3f}")
    t.add_row("max |torch - onnx|", f"{r['max_abs_diff_torch_vs_onnx']:.1e}")
    for name, s in r.get("fidelity", {}).items():
        t.add_row(name, f"mean {s['mean']:.4f}  worst {s['worst']:.4f}")
    console.print(t)
    console.print(f"wrote {r['output']}, {r['student']}; checkpoints in {r['checkpoint']}")


def arguments(p):
    add_source_options(p)
    p.add_argument("--student", default=None, help="a student saved by `hasten prune` (.safetensors)")
    add_prune_options(p)
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=1000)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default by model kind)")
    g.add_argument("--train-size", type=int, default=None, help="training items (default by model kind)")
    g.add_argument("--hidden-weight", type=float, default=1.0, help="weight of the hidden-state match")
    g.add_argument("--attention-weight", type=float, default=0.0, help="weight of the attention-map match")
    g.add_argument("--label-weight", type=float, default=0.0, help="weight of cross-entropy with labels")
    g.add_argument("--freeze", default=None, help="comma-separated parameter-name parts kept fixed")
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    g.add_argument("--bf16", action="store_true", help="student under bf16 autocast (fast on AVX512-BF16 / AMX)")
    g.add_argument("--checkpoint", default=None, help="checkpoint folder (default: OUT.ckpt)")
    g.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("-o", "--output", required=True, help="the distilled student (.onnx)")
    p.add_argument("--no-eval", action="store_true", help="skip the fidelity check on the evaluation split")


run.arguments = arguments
