"""zoo:digits in int8 C on Cortex-M3, M4 and M7 under QEMU: bit-exactness, top-1, flash, RAM, instructions.

    .venv/bin/python bench/mcu.py [--targets cortex-m3,cortex-m4,cortex-m7] [--out out/mcu] [--json]

Quantises zoo:digits with hasten's int8-static (7-bit weights, `overflow_fix=all`: ONNX Runtime is then
exact on every x86 host, so it is a reference the C must equal bit for bit), exports it with `hasten export`'s
code, and runs the same C on the host `cc` and on each target in qemu-system-arm on all 360 held-out images
(quantised with the model's input scale), twice per target. Prints per target: LSB mismatches against ONNX
Runtime, top-1 of the C and of ONNX Runtime's int8 model, flash (the model's own text + rodata + data), RAM
(the model's data + bss, i.e. the arena, plus the stack high-water mark by painting), and instructions per
inference (QEMU `-icount shift=0` with SysTick: instructions, not cycles), identical across the two runs or
not. The arena and its lower bound (the peak of the bytes live at once) are printed too.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from hasten.export import toolchain
from hasten.export.build import as_output, compare, export_model, ort_outputs, quantise_input, write_export
from hasten.measure.isa import cpu_features, host_int8_isa
from hasten.quantize import config_for, quantize
from hasten.source import resolve
from hasten.zoo.digits import dataset


def digits_int8():
    src = resolve("zoo:digits")
    result = quantize(src.model, config_for("int8-static", overflow_fix="all"), src.calibration)
    return result.model.proto()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", default="cortex-m3,cortex-m4,cortex-m7")
    ap.add_argument("--out", default="out/mcu", help="where the exported C is written")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    console = Console(stderr=args.json)
    missing = toolchain.arm_missing()
    if missing:
        console.print(f"error: {missing}")
        return 2
    proto = digits_int8()
    export = export_model(proto, "digits")
    write_export(export, args.out, force=True)
    images, labels = dataset()["evaluation"]
    codes = quantise_input(export, images)
    want = ort_outputs(proto, export, codes)
    top1_ort = float((want.argmax(1) == labels).mean())
    rows = []
    with tempfile.TemporaryDirectory(prefix="hasten-bench-mcu-") as tmp:
        work = Path(tmp)
        model_dir = Path(args.out)
        host = toolchain.run_host(model_dir, codes, work / "host")
        got = as_output(export, host.outputs)
        v = compare("host", got, want)
        rows.append({"target": "host cc", "mismatches": v.mismatches, "max_lsb": v.max_lsb, "inputs": v.inputs,
                     "top1_c": float((got.argmax(1) == labels).mean()), "top1_ort": top1_ort})
        for target in args.targets.split(","):
            runs = [toolchain.run_qemu(target, model_dir, codes, work / f"{target}-{k}", timeout_s=600)
                    for k in range(2)]
            got = as_output(export, runs[0].outputs)
            v = compare(target, got, want)
            insn = runs[0].instructions
            rows.append({"target": target, "mismatches": v.mismatches, "max_lsb": v.max_lsb, "inputs": v.inputs,
                         "top1_c": float((got.argmax(1) == labels).mean()), "top1_ort": top1_ort,
                         "flash_bytes": runs[0].flash_bytes, "ram_bytes": runs[0].ram_bytes,
                         "stack_bytes": runs[0].stack_bytes, "insn_median": int(np.median(insn)),
                         "insn_min": int(min(insn)), "insn_max": int(max(insn)),
                         "insn_identical_over_runs": runs[0].instructions == runs[1].instructions})
    result = {"model": "zoo:digits int8-static (overflow_fix=all)", "arena_bytes": export.arena.size,
              "arena_lower_bound": export.arena.lower_bound, "macs": export.program.macs(),
              "weight_bytes": export.program.weight_bytes(), "host_int8_isa": host_int8_isa(),
              "host_isa": sorted(f for f in cpu_features() if f.startswith("avx")), "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
    _render(console, result)
    ok = all(r["mismatches"] == 0 and r["top1_c"] == r["top1_ort"] for r in rows) and all(
        r.get("insn_identical_over_runs", True) for r in rows)
    return 0 if ok else 1


def _render(console, r):
    console.print(f"{r['model']}: {r['macs']:,} MACs, {r['weight_bytes']:,} B of int8 weights, arena "
                  f"{r['arena_bytes']:,} B (lower bound {r['arena_lower_bound']:,} B); host int8 path "
                  f"{r['host_int8_isa']} ({' '.join(r['host_isa'])})")
    t = Table("target", "inputs", "LSB mismatches", "top-1 C", "top-1 ORT int8", "flash B", "RAM B (stack)",
              "instructions / inference (median, min..max)", "same over 2 runs")
    for row in r["rows"]:
        qemu = "flash_bytes" in row
        t.add_row(row["target"], str(row["inputs"]), f"{row['mismatches']} (max {row['max_lsb']:g})",
                  f"{row['top1_c']:.4f}", f"{row['top1_ort']:.4f}",
                  f"{row['flash_bytes']:,}" if qemu else "-",
                  f"{row['ram_bytes']:,} ({row['stack_bytes']:,})" if qemu else "-",
                  f"{row['insn_median']:,} ({row['insn_min']:,}..{row['insn_max']:,})" if qemu else "-",
                  str(row["insn_identical_over_runs"]) if qemu else "-")
    console.print(t)
    console.print("instructions are counted by QEMU (-icount shift=0, SysTick x 40), not cycles")


if __name__ == "__main__":
    sys.exit(main())
