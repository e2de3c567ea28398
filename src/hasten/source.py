"""Where a model comes from: an `.onnx` path, `zoo:NAME`, `package.module:function`, an `onnx.ModelProto`,
a Model, or a torch module with example inputs. Everything that takes a model spec asks here.

    load(spec) -> Model                          the model alone
    load_input(spec) -> (Model, TorchSource|None) with the torch source a `module:function` spec exports
    zoo_name(spec) -> "minilm" | None             the zoo entry a spec names (the one "zoo:" test)
    torch_spec(spec) -> str | None                the spec again when it has a torch module to compress
    tokenizer_for(spec) -> callable | None        what turns text into the model's inputs (zoo:minilm)

Module level imports nothing heavy: the zoo, torch and the exporters load only when a spec needs them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hasten.model import Model, load_onnx

ZOO_PREFIX = "zoo:"
_FUNCTION_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
#: zoo entries with a torch module (pruning and distillation start from it)
TORCH_ZOO = ("minilm", "digits")


def zoo_name(source) -> str | None:
    """The zoo entry `source` names ("zoo:minilm" -> "minilm"), else None."""
    if isinstance(source, str) and source.startswith(ZOO_PREFIX):
        return source[len(ZOO_PREFIX):]
    return None


def is_function_spec(text: str) -> bool:
    """`package.module:function` (and not an existing file, nor a zoo name)."""
    return zoo_name(text) is None and bool(_FUNCTION_SPEC.fullmatch(text)) and not Path(text).exists()


def torch_spec(source) -> str | None:
    """`source` as a torch-source spec (zoo:minilm, zoo:digits, package.module:function), else None."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    text = str(source)
    if zoo_name(text) in TORCH_ZOO or is_function_spec(text):
        return text
    return None


def display_name(source, model: Model) -> str:
    """A short name for `source` (an OUT/ folder, a report title): the function, zoo entry or file stem."""
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        if is_function_spec(text):
            return text.rsplit(":", 1)[1]
        return zoo_name(text) or Path(text).stem
    if model.source is not None:
        return Path(model.source).stem
    return "model"


def tokenizer_for(source):
    """The callable that tokenises text for `source`'s model (list of str -> feeds), or None."""
    name = zoo_name(source)
    if name is None:
        return None
    from hasten import zoo

    return zoo.get(name).tokenizer()


def load(source, example_inputs=None, **export_options) -> Model:
    """A Model from an `.onnx` path, a `zoo:NAME`, an `onnx.ModelProto`, or a torch module + example inputs."""
    if isinstance(source, Model):
        return source
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        name = zoo_name(text)
        if name is not None:
            from hasten import zoo

            return zoo.get(name).model()
        model = load_onnx(Path(text))
        from hasten.recipe import warn_if_tuned_elsewhere

        warn_if_tuned_elsewhere(text)  # OUT/model.onnx tuned on another int8 path: one line
        return model
    import onnx

    if isinstance(source, onnx.ModelProto):
        return Model.from_proto(source)
    from hasten.export import from_torch

    return from_torch(source, example_inputs, **export_options)


def load_input(source):
    """(Model, TorchSource or None): a `module:function` source is exported here (its torch source comes
    with it); anything else goes to `load` (no torch source is built for it)."""
    if isinstance(source, (str, os.PathLike)) and is_function_spec(str(source)):
        from hasten.compress.sources import torch_source

        src = torch_source(str(source))
        return src.export(), src
    return load(source), None
