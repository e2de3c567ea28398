"""Torch sources for compression: a module with its example inputs, data and a way back to ONNX.

    src = torch_source("zoo:minilm")        # or "zoo:digits", or "package.module:function"
    src.module, src.example_inputs           # float module (eval), dict name -> tensor (batch 1)
    src.calibration, src.evaluation          # Samples (None for a user function without data)
    src.training_data(n)                     # unlabelled (or labelled) Samples for distillation
    src.export(module)                       # -> hasten Model with the source's input/output names

A `module:function` source returns `(module, example_inputs)`, with example_inputs a dict name -> tensor;
its data comes from `--data FILE.npz` (named arrays), since nothing else is known about it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from hasten.compress.common import CompressError


@dataclass
class TorchSource:
    name: str
    module: object
    example_inputs: dict
    calibration: object = None
    evaluation: object = None
    kind: str = "custom"  # "embedding" | "classifier" | "custom"
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=lambda: ["output"])
    _train: object = None
    entry: object = None  # the hasten.zoo.ZooEntry a zoo spec names

    def training_data(self, count: int | None = None):
        """Samples to distil on: a zoo entry's own training data (minilm: tokenized training text, digits:
        the training split, labels kept), custom -> the --data file."""
        if self.entry is not None:
            return self.entry.training_data(count)
        if self._train is None:
            raise CompressError(f"{self.name}: no training data; give --data FILE.npz with the model's "
                                f"inputs ({', '.join(self.input_names)})")
        return self._train if not count or count >= len(self._train) else self._train.take(count)

    def export(self, module=None):
        """The (pruned / distilled) module as a hasten Model, opset 17, dynamic batch (and sequence)."""
        module = self.module if module is None else module
        exported = self.entry.export(module.eval()) if self.entry is not None else None
        if exported is not None:
            return exported
        from hasten.torch_export import from_torch

        dims = {n: {0: "batch"} for n in [*self.input_names, *self.output_names]}
        return from_torch(module.eval(), self.example_inputs, input_names=self.input_names,
                          output_names=self.output_names, dynamic_axes=dims, opset=17)


def torch_source(spec: str, data=None) -> TorchSource:
    """A TorchSource for `zoo:minilm`, `zoo:digits` or `module:function`; `data`: optional Samples."""
    import torch

    from hasten import zoo

    if zoo.entry_name(spec) is not None:
        entry = zoo.get(spec)
        if not entry.torch_kind:
            with_torch = [f"{zoo.PREFIX}{n}" for n in zoo.names() if zoo.get(n).torch_kind]
            raise CompressError(f"{spec}: pruning and distillation need a torch source; "
                                f"{' and '.join(with_torch)} have one")
        module, example = entry.torch_model()
        example = {k: v[:1] for k, v in example.items()}
        return TorchSource(spec, module.eval(), example, entry.calibration(), entry.evaluation(), entry.torch_kind,
                           list(example), list(entry.torch_outputs), data, entry)
    if ":" not in spec or spec.endswith((".onnx", ".onnx.data")):
        raise CompressError(f"{spec}: pruning works on torch models; give zoo:minilm, zoo:digits or "
                            "package.module:function returning (module, example_inputs)")
    mod_name, fn_name = spec.split(":", 1)
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise CompressError(f"{spec}: cannot import {fn_name} from {mod_name} ({exc})") from exc
    try:
        module, example = fn()
    except Exception as exc:
        raise CompressError(f"{spec}: calling it failed ({type(exc).__name__}: {exc})") from exc
    if not isinstance(module, torch.nn.Module) or not isinstance(example, dict):
        raise CompressError(f"{spec} must return (torch.nn.Module, dict name -> example tensor)")
    calib = evaluation = None
    if data is not None:
        calib, evaluation = (data.split(len(data) // 2) if len(data) >= 4 else (data, data))
    return TorchSource(spec, module.eval(), example, calib, evaluation, "custom", list(example), ["output"],
                       data)
