"""Graph passes: each `Model -> PassResult(model, modified, stats)`, one per file, registered here.

    from hasten.passes import get_pass, optimize_graph
    result = get_pass("fold_batchnorm")(model)         # PassResult
    result = optimize_graph(model, backend_class(name).domains)  # passes whose output that backend runs

`register(cls)` adds a Pass class under its `name` (raises if the name is taken); `get_pass(name,
**config)` builds one with its Config; `registered()` lists the names. Heavy libraries (onnxscript,
onnxruntime.transformers) are imported only when a pass runs.
"""

from __future__ import annotations

from collections.abc import Iterable

from hasten.errors import HastenError
from hasten.model import Model
from hasten.passes.base import FixedPoint, Pass, PassResult, Sequence
from hasten.passes.cleanup import Cleanup
from hasten.passes.constant_folding import ConstantFolding
from hasten.passes.fold_batchnorm import FoldBatchNorm
from hasten.passes.infer_shapes import InferShapes
from hasten.passes.matmul_add_to_gemm import MatMulAddToGemm
from hasten.passes.transformer_fusion import TransformerFusion

__all__ = ["Pass", "PassResult", "Sequence", "FixedPoint", "register", "get_pass", "registered",
           "optimize_graph", "default_pipeline"]

_REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Register a Pass subclass under `cls.name` (usable as a decorator). A name is registered once."""
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise TypeError(f"register() takes a Pass subclass, got {cls!r}")
    if not cls.name:
        raise HastenError(f"pass class {cls.__name__} has no name")
    if cls.name in _REGISTRY:
        raise HastenError(f"pass {cls.name!r} is already registered (by {_REGISTRY[cls.name].__qualname__}); "
                          "choose another name")
    _REGISTRY[cls.name] = cls
    return cls


def get_pass(name: str, **config) -> Pass:
    """A configured instance of the pass registered as `name`."""
    if name not in _REGISTRY:
        raise HastenError(f"unknown pass {name!r}; known passes: {', '.join(registered())}")
    return _REGISTRY[name](**config)


def registered() -> list[str]:
    """Names of the registered passes, sorted."""
    return sorted(_REGISTRY)


for _cls in (Cleanup, ConstantFolding, FoldBatchNorm, MatMulAddToGemm, TransformerFusion, InferShapes):
    register(_cls)


def default_pipeline(domains: Iterable[str] | None = None, max_iterations: int = 4) -> FixedPoint:
    """cleanup, constant folding, BatchNorm folding and transformer fusion, keeping those whose output a
    runtime executing the op `domains` runs (a backend's `domains`; None: every pass), repeated until
    nothing changes. Passes know no backend: the caller gives its domains."""
    if isinstance(domains, str):
        raise HastenError(f"default_pipeline takes op domains, not {domains!r}: give a backend's "
                          "domains, e.g. hasten.backends.backend_class(name).domains")
    passes: list[Pass] = [p for p in (Cleanup(), ConstantFolding(), FoldBatchNorm(), TransformerFusion())
                          if domains is None or p.runs_on(domains)]
    return FixedPoint(passes, max_iterations=max_iterations)


def optimize_graph(model: Model, domains: Iterable[str] | None = None) -> PassResult:
    """Run `default_pipeline(domains)` on `model` (which is not mutated)."""
    return default_pipeline(domains)(model)
