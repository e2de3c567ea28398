"""Where a model comes from, resolved once: `resolve(spec) -> Source`. Every command and the API go through it.

A spec is an `.onnx` path, `zoo:NAME`, `package.module:function` (returning `(torch module, example
inputs)`), an `onnx.ModelProto`, a Model, or a torch module with its example inputs. The Source holds the
Model and, where the spec has them, the zoo entry, the torch source (module, example inputs, training data),
the default calibration and evaluation Samples, the default metrics and the tokenizer (text -> feeds).

    src = resolve("zoo:minilm")
    src.model, src.name                          # Model, "minilm"
    src.calibration, src.evaluation, src.metrics # the zoo's own (None for an .onnx file)
    src.samples("eval.jsonl", "evaluation")      # user data, tokenised with the source's tokenizer
    src.torch                                    # TorchSource (built on first use for a zoo entry)

`load(spec)` is `resolve(spec).model`. Module level imports nothing heavy: the zoo, torch and the exporters
load only when a spec needs them.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hasten.model import Model, load_onnx
from hasten.zoo import entry_name

_FUNCTION_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
#: the zoo entry a spec names ("zoo:minilm" -> "minilm"), else None
zoo_name = entry_name


def is_function_spec(text: str) -> bool:
    """`package.module:function` (and not an existing file, nor a zoo name)."""
    return zoo_name(text) is None and bool(_FUNCTION_SPEC.fullmatch(text)) and not Path(text).exists()


@dataclass(frozen=True)
class Source:
    """A resolved model spec (see the module docstring). Defaults that cost something (zoo data, a torch
    module) load on first use and are kept."""

    model: Model
    spec: str | None = None  # the text it was resolved from; None for an object
    name: str = "model"  # short: the function, zoo entry or file stem (an OUT/ folder, a report title)
    entry: object = field(default=None, repr=False)  # hasten.zoo.ZooEntry for zoo:NAME
    tokenizer: Callable | None = field(default=None, repr=False)  # list of str -> feeds
    built_torch: object = field(default=None, repr=False)  # the TorchSource a module:function spec made

    @property
    def torch_spec(self) -> str | None:
        """The spec again when it has a torch module to prune and distil (zoo entries with one,
        module:function), else None."""
        if self.built_torch is not None or (self.entry is not None and self.entry.torch_kind):
            return self.spec
        return None

    @functools.cached_property
    def torch(self):
        """The TorchSource (hasten.compress.sources) behind the spec, or None when it has none."""
        if self.built_torch is not None:
            return self.built_torch
        if self.torch_spec is None:
            return None
        from hasten.compress.sources import torch_source

        return torch_source(self.torch_spec)

    @functools.cached_property
    def calibration(self):
        """The default calibration Samples (a zoo entry's own), else None."""
        return self.entry.calibration() if self.entry is not None else None

    @functools.cached_property
    def evaluation(self):
        """The default evaluation Samples (a zoo entry's own), else None."""
        return self.entry.evaluation() if self.entry is not None else None

    @functools.cached_property
    def metrics(self) -> list | None:
        """The default metrics (a zoo entry's own), else None."""
        return list(self.entry.metrics()) if self.entry is not None else None

    def samples(self, data, what: str = "data"):
        """`data` as Samples: Samples as they are; a path (.npz, a folder of images, JSON Lines text with this
        source's tokenizer: hasten.data.load_samples); None -> None (the defaults are `calibration` and
        `evaluation`). `what` names the data in errors."""
        from hasten.data import load_samples

        return load_samples(data, self.model, what, self.tokenizer)


def resolve(source, example_inputs=None, **export_options) -> Source:
    """The Source of `source` (see the module docstring); a Source comes back as it is."""
    if isinstance(source, Source):
        return source
    if isinstance(source, Model):
        return Source(source, name=Path(source.source).stem if source.source is not None else "model")
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        name = zoo_name(text)
        if name is not None:
            from hasten import zoo

            entry = zoo.get(name)
            return Source(entry.model(), text, entry.name, entry, entry.tokenizer())
        if is_function_spec(text):
            from hasten.compress.sources import torch_source

            built = torch_source(text)
            return Source(built.export(), text, text.rsplit(":", 1)[1], built_torch=built)
        model = load_onnx(Path(text))
        from hasten.recipe import warn_if_tuned_elsewhere

        warn_if_tuned_elsewhere(text)  # OUT/model.onnx tuned on another int8 path: one line
        return Source(model, text, Path(text).stem)
    import onnx

    if isinstance(source, onnx.ModelProto):
        return Source(Model.from_proto(source))
    from hasten.torch_export import from_torch

    return Source(from_torch(source, example_inputs, **export_options))


def load(source, example_inputs=None, **export_options) -> Model:
    """The Model of `source`: an `.onnx` path, `zoo:NAME`, `module:function`, an `onnx.ModelProto`, a Model,
    or a torch module + example inputs (`resolve(...).model`)."""
    return resolve(source, example_inputs, **export_options).model


def load_input(source) -> tuple[Model, object]:
    """(Model, the TorchSource a `module:function` spec was exported from, else None)."""
    src = resolve(source)
    return src.model, src.built_torch


def torch_spec(source) -> str | None:
    """`source` as a torch-source spec (a zoo entry with a torch module, package.module:function), else
    None; decided from the text alone (nothing is loaded)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    text = str(source)
    name = zoo_name(text)
    if name is not None:
        from hasten import zoo

        return text if zoo.get(name).torch_kind else None
    return text if is_function_spec(text) else None


def tokenizer_for(source):
    """The callable that tokenises text for `source`'s model (list of str -> feeds), or None."""
    name = zoo_name(source)
    if name is None:
        return None
    from hasten import zoo

    return zoo.get(name).tokenizer()
