"""The `hasten` command: parse arguments, call the Python API, print. No logic of its own.

Errors a user can cause (HastenError) print one line and exit with code 2; `--debug` shows the traceback.
Every command takes `--json` for machine-readable output on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from rich.console import Console

from hasten.errors import HastenError

#: where hasten's own code lives: python warnings raised from here are hasten's, not a library's
_PACKAGE_DIR = str(__import__("pathlib").Path(__file__).resolve().parent)


class LibraryQuiet(logging.Filter):
    """Lets through hasten's own records (loggers hasten.*, python warnings raised in hasten's code) and any
    error; drops the libraries' info and warnings (e.g. onnxruntime.quantization's "Please consider to run
    pre-processing before quantization", logged on the root logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or record.name == "hasten" or record.name.startswith("hasten."):
            return True
        if record.name == "py.warnings":
            return _PACKAGE_DIR in record.getMessage().split(":", 1)[0]
        return False


def configure_logging() -> None:
    """Warnings and errors to stderr, hasten's only (LibraryQuiet); python warnings go through logging.
    Leaves a root logger that already has handlers (an embedding program, pytest) as it is."""
    root = logging.getLogger()
    if root.handlers:
        return
    # Some libraries call logging.basicConfig(level=INFO) on import (onnxruntime's MatMulNBits quantizer):
    # configuring the root logger first turns that into a no-op, so only warnings reach the user.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(LibraryQuiet())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hasten", description="Make trained neural networks fast without "
                                     "losing accuracy.")
    parser.add_argument("--version", action="version", version="hasten 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True)
    from hasten.commands.registry import COMMANDS

    for name, (help_text, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        fn.arguments(p)
        p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        p.set_defaults(run=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    import hasten.commands  # noqa: F401  (registers the sub-commands)

    args = build_parser().parse_args(argv)
    stream = sys.stderr if args.json else sys.stdout
    console = Console(stderr=args.json, highlight=False, width=None if stream.isatty() else 150)
    try:
        result = args.run(args, console)
    except HastenError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    if args.json and result is not None:
        sys.stdout.write(json.dumps(result, indent=2, default=_jsonable) + "\n")
    return 0


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
