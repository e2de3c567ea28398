"""hasten: make trained neural networks fast without losing accuracy.

Public API: `load`, `Samples`, `get_backend`, `benchmark`, `evaluate`, `quantize`, `optimize`, `apply`,
`load_result` (the model, recipe and a ready Session from an OUT/ folder of `optimize`). Heavy runtimes are
imported lazily.
"""

from __future__ import annotations

from hasten.errors import HastenError
from hasten.model import Model, TensorSpec
from hasten.source import load

__all__ = ["HastenError", "Model", "TensorSpec", "load", "Samples", "get_backend", "benchmark", "evaluate",
           "quantize", "optimize", "apply", "load_result"]
__version__ = "0.1.0"


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
    if name == "load_result":
        from hasten.result import load_result

        return load_result
    if name == "quantize":
        from hasten.quantize import quantize

        return quantize
    raise AttributeError(f"module 'hasten' has no attribute {name!r}")
