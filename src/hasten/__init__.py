"""hasten: make trained neural networks fast without losing accuracy.

Public API: `load`, `Samples`, `get_backend`, `benchmark`, `evaluate`, `quantize`, `optimize`, `apply`. Heavy runtimes are imported lazily.
"""

from __future__ import annotations

import os
from pathlib import Path

from hasten.errors import HastenError
from hasten.model import Model, TensorSpec, load_onnx

__all__ = ["HastenError", "Model", "TensorSpec", "load", "Samples", "get_backend", "benchmark", "evaluate",
           "quantize", "optimize", "apply"]
__version__ = "0.1.0"


def load(source, example_inputs=None, **export_options) -> Model:
    """A Model from an `.onnx` path, a `zoo:NAME`, an `onnx.ModelProto`, or a torch module + example inputs."""
    if isinstance(source, Model):
        return source
    if isinstance(source, (str, os.PathLike)):
        text = str(source)
        if text.startswith("zoo:"):
            from hasten import zoo

            return zoo.get(text[4:]).model()
        model = load_onnx(Path(text))
        from hasten.recipe import warn_if_tuned_elsewhere

        warn_if_tuned_elsewhere(text)  # OUT/model.onnx tuned on another int8 path: one line
        return model
    import onnx

    if isinstance(source, onnx.ModelProto):
        return Model.from_proto(source)
    from hasten.export import from_torch

    return from_torch(source, example_inputs, **export_options)


def __getattr__(name):  # lazy public names, so `import hasten` stays light
    if name == "Samples":
        from hasten.data import Samples

        return Samples
    if name == "get_backend":
        from hasten.backends import get_backend

        return get_backend
    if name == "benchmark":
        from hasten.measure.latency import benchmark

        return benchmark
    if name == "evaluate":
        from hasten.measure.accuracy import evaluate

        return evaluate
    if name in ("optimize", "apply"):
        from hasten import api

        return getattr(api, name)
    if name == "quantize":
        from hasten.quantize import quantize

        return quantize
    raise AttributeError(f"module 'hasten' has no attribute {name!r}")
