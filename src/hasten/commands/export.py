"""`hasten export MODEL_OR_OUT --target c99|cortex-m3|cortex-m4|cortex-m7 -o DIR/ [--verify [--inputs N]]`:
an int8 QDQ model (what `hasten quantize --scheme int8-static` writes) or an optimize result as
self-contained C (model.c, model.h, README.md), verified bit for bit against ONNX Runtime with `--verify`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hasten.commands.registry import command


@command("export", "write an int8 model as self-contained C for microcontrollers (model.c, model.h); "
         "--verify checks it bit for bit against ONNX Runtime on the host and in QEMU")
def run(args, console):
    from hasten.errors import ExportError
    from hasten.export import toolchain
    from hasten.export.build import export_model, load_quantised, random_inputs, verify, write_export

    proto, name = load_quantised(args.model)
    if args.inputs < 1:
        raise ExportError(f"--inputs {args.inputs}: give at least 1")
    with console.status("lowering the model as ONNX Runtime runs it..."):
        export = export_model(proto, name)
    plan, program = export.arena, export.program
    summary = {"model": args.model, "target": args.target, "output": str(Path(args.output)),
               "layers": len(program.layers), "macs": program.macs(), "weight_bytes": program.weight_bytes(),
               "arena_bytes": plan.size, "arena_lower_bound": plan.lower_bound,
               "input_size": export.input_size, "output_size": export.output_size,
               "output_dtype": export.output_dtype}
    if args.verify:
        targets = [args.target] if args.target.startswith("cortex-") else []
        missing = toolchain.arm_missing() if targets else None
        if missing:
            console.print(f"[yellow]QEMU verification skipped:[/] {missing}")
            targets = []
        inputs = random_inputs(export, args.inputs)
        with tempfile.TemporaryDirectory(prefix="hasten-verify-") as tmp, \
                console.status(f"verifying on {1 + len(targets)} build(s), {args.inputs} inputs..."):
            rows = verify(export, proto, targets, inputs, Path(tmp))
        summary["verify"] = [vars(r) for r in rows]
        bad = [r for r in rows if r.mismatches]
        if bad:
            from hasten.measure.isa import host_int8_saturates

            hint = (" This host's ONNX Runtime int8 kernels saturate int16 pair sums (no VNNI): quantise with "
                    "7-bit weights (hasten quantize ... --set overflow_fix=all) for an exact reference."
                    if host_int8_saturates() else "")
            raise ExportError("export --verify: the C differs from ONNX Runtime: " + "; ".join(
                f"{r.where}: {r.mismatches} of {r.inputs} inputs, up to {r.max_lsb:g} LSB" for r in bad)
                + " (nothing written)." + hint)
    write_export(export, args.output, force=args.force)
    if not args.json:
        _render(console, summary)
    return summary


def _render(console, s):
    console.print(f"[bold]{s['model']}[/] -> {s['output']}/model.c, model.h, README.md (target {s['target']})")
    console.print(f"  {s['layers']} layers, {s['macs']:,} MACs, {s['weight_bytes']:,} bytes of int8 weights; "
                  f"input {s['input_size']} int8, output {s['output_size']} {s['output_dtype']}")
    over = s["arena_bytes"] / s["arena_lower_bound"] - 1 if s["arena_lower_bound"] else 0.0
    console.print(f"  arena {s['arena_bytes']:,} bytes (lower bound {s['arena_lower_bound']:,}: the peak of the "
                  f"tensors live at once; +{over:.1%})")
    for r in s.get("verify", []):
        line = f"  {r['where']}: {r['inputs'] - r['mismatches']}/{r['inputs']} inputs bit-exact with ONNX Runtime"
        if r["flash_bytes"] is not None:
            insn = sorted(set(r["instructions"]))
            same = "identical on every input" if len(insn) == 1 else f"{insn[0]:,}..{insn[-1]:,} over inputs"
            line += (f"; flash {r['flash_bytes']:,} B (the model's text + rodata), RAM {r['ram_bytes']:,} B "
                     f"(arena + data + stack high-water {r['stack_bytes']:,} B); {insn[-1]:,} instructions per "
                     f"inference ({same}; instructions counted by QEMU, not cycles)")
        console.print(line)


def arguments(p):
    from hasten.export.build import TARGETS

    p.add_argument("model", help="an int8 QDQ .onnx (hasten quantize --scheme int8-static) or the output "
                   "folder of hasten optimize")
    p.add_argument("--target", default="c99", choices=TARGETS, help="what the C is for (default c99: any "
                   "C compiler); a cortex-m target is verified in QEMU")
    p.add_argument("-o", "--output", required=True, help="output folder for model.c, model.h, README.md")
    p.add_argument("--force", action="store_true", help="replace an export already in the folder")
    p.add_argument("--verify", action="store_true", help="build with the host cc (and for a cortex-m target "
                   "in QEMU) and compare with ONNX Runtime bit for bit before writing")
    p.add_argument("--inputs", type=int, default=100, help="inputs --verify runs (default 100)")


run.arguments = arguments
