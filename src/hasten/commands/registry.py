"""The sub-command registry: each module of `hasten.commands` registers its `run` with `@command`; the CLI
(hasten.cli) builds its parser from `COMMANDS`. Commands never import the CLI."""

from __future__ import annotations

import argparse

#: command name -> (help text, run(args, console) -> JSON-able result or None; `run.arguments(parser)`)
COMMANDS: dict = {}


def command(name: str, help: str):
    """Register a sub-command: decorate `run(args, console)`; its `.arguments(parser)` adds options."""

    def wrap(fn):
        COMMANDS[name] = (help, fn)
        return fn

    return wrap


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an .onnx file or zoo:NAME (zoo:minilm, zoo:digits)")
    p.add_argument("--shape", action="append", default=[], metavar="NAME=DIMS",
                   help="input shape (input_ids=1x128 or 1,128) or dynamic dim (sequence=64); repeatable")
