"""Build the corpus once into its cache (offline: the models come from installed packages or configs).

    .venv/bin/python -m bench.corpus.build [--models magika,tiny-bert] [--ci] [--small] [--force]
                                           [--root bench/corpus/.cache]

An entry already built (model.onnx, calib.npz, eval.npz and meta.json present) is kept unless --force.
Prints one line per entry: name, kind, opset, inputs, items, build seconds.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench.corpus` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import corpus  # noqa: E402


def describe(built) -> str:
    import onnx

    model = onnx.load(str(built.model_path), load_external_data=False)
    opsets = ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import)
    dims = {i.name: [d.dim_value or d.dim_param or "?" for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}}
    meta = built.meta
    return (f"{built.entry.name:13s} {built.entry.kind:11s} {opsets:28s} {dims} calib {meta.get('n_calib')} "
            f"eval {meta.get('n_eval')} metric {built.entry.metric} ({meta.get('build_s')} s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated names (default: every entry)")
    ap.add_argument("--ci", action="store_true", help="only the CI subset")
    ap.add_argument("--small", action="store_true", help="few items per set (smoke runs)")
    ap.add_argument("--force", action="store_true", help="rebuild entries already in the cache")
    ap.add_argument("--root", default=str(corpus.ROOT))
    args = ap.parse_args(argv)
    failed = []
    for name in corpus.names(args.models, ci=args.ci):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built = corpus.build(name, args.root, force=args.force, small=args.small)
            print(describe(built), flush=True)
        except Exception as exc:  # one entry's failure must not stop the others
            failed.append(name)
            print(f"{name:13s} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                  flush=True)
    if failed:
        print(f"{len(failed)} entr{'y' if len(failed) == 1 else 'ies'} failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
