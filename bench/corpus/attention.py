"""int8-static's attention option on OpenVINO, side by side with NNCF's transformer preset, on corpus models.

    .venv/bin/python bench/corpus/attention.py [--models vit-small,ppocr-rec] [--seconds 4] [--rounds 6]

For each model, in one process: the fp32 model on ONNX Runtime and OpenVINO, NNCF int8 (ModelType.TRANSFORMER)
and hasten's int8-static on OpenVINO's default graph pipeline with attention=float / qk / all (64 calibration
items each). Every session is timed in interleaved rounds and scored against fp32 on the same backend
(bench/corpus/run.py's scoring and timing). It measures the choice behind `OpenVinoBackend.scheme_defaults`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import corpus  # noqa: E402
from bench.corpus.run import Row, machine_line, score_rows, time_rows  # noqa: E402

SCOPES = ("float", "qk", "all")


def rows_for(name: str, args) -> list[Row]:
    import hasten
    from bench.common import nncf_ov_int8
    from hasten.backends import get_backend
    from hasten.recipe import Step
    from hasten.search.space import Space

    built = corpus.load(name, args.root)
    model = hasten.load(str(built.model_path))
    calib = built.calib().take(64)
    ov = get_backend("openvino", threads=args.threads)
    rows = [Row("ORT fp32", session=get_backend("onnxruntime", threads=args.threads).compile(model)),
            Row("OV fp32", "openvino", session=ov.compile(model))]
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars
        rows.append(Row("NNCF int8 transformer", "openvino",
                        ov.compile_ov(nncf_ov_int8(model, calib, transformer=True, subset=64))))
    space = Space(["openvino"], [args.threads], len(calib))
    for scope in SCOPES:
        steps = [*space.pipeline("openvino"), Step("quantize", "int8-static", {"attention": scope})]
        quantized = hasten.apply(space.recipe(steps, "openvino"), model, calib)
        rows.append(Row(f"hasten int8-static attention={scope}", "openvino", ov.compile(quantized)))
    score_rows(rows, built, built.eval())
    time_rows(rows, built.eval(), args)
    return rows


def main(argv=None) -> int:
    from hasten.backends import physical_cores

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="vit-small,ppocr-rec")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=physical_cores())
    ap.add_argument("--root", default=str(corpus.ROOT))
    args = ap.parse_args(argv)
    print("| model | candidate | median ms | vs ORT fp32 | vs NNCF transformer | drop |\n|---|---|---|---|---|---|")
    for name in args.models.split(","):
        rows = rows_for(name, args)
        base, nncf = rows[0].median_ms, rows[2].median_ms
        for r in rows:
            print(f"| {name} | {r.label} | {r.median_ms:.2f} | {base / r.median_ms:.2f}x | "
                  f"{nncf / r.median_ms:.2f}x | {r.drop:+.4f} |")
    print(f"machine: {machine_line()}; {args.threads} threads, {args.rounds} interleaved rounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
