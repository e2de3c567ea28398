"""Export a `torch.nn.Module` to a Model with the TorchScript exporter (opset 17 by default).

The TorchScript exporter is used on purpose: its graphs for BERT-like encoders match ONNX Runtime's
transformer fusions (Attention, SkipLayerNormalization) fully.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from hasten.errors import ModelLoadError
from hasten.model import Model, load_onnx


def from_torch(module, example_inputs, *, input_names: Sequence[str] | None = None,
               output_names: Sequence[str] | None = None,
               dynamic_axes: dict[str, dict[int, str]] | None = None, opset: int = 17) -> Model:
    """Export `module` called on `example_inputs` (a tensor, a tuple of tensors or a dict name->tensor)."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if isinstance(example_inputs, dict):
        input_names = list(input_names or example_inputs.keys())
        args = tuple(example_inputs[n] for n in input_names)
    elif isinstance(example_inputs, torch.Tensor):
        args = (example_inputs,)
    else:
        args = tuple(example_inputs)
    if not args:
        raise ModelLoadError("torch export needs example inputs (a tensor, tuple or dict of tensors)")
    input_names = list(input_names or [f"input_{i}" for i in range(len(args))])
    output_names = list(output_names or ["output"])
    if dynamic_axes is None:
        dynamic_axes = {n: {0: "batch"} for n in [*input_names, *output_names]}
    module = module.eval()
    with tempfile.TemporaryDirectory(prefix="hasten-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(module, args, str(path), opset_version=opset, dynamo=False,
                                  input_names=input_names, output_names=output_names,
                                  dynamic_axes=dynamic_axes, do_constant_folding=True)
            except Exception as exc:
                raise ModelLoadError(f"torch.onnx.export failed for {type(module).__name__}: {exc}") from exc
        model = load_onnx(path)
    model.source = None
    model.lineage = (f"torch.onnx.export({type(module).__name__}, opset={opset})",)
    return model
