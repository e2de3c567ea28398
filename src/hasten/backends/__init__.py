"""Runtimes behind one interface. Each is imported lazily: a missing runtime disables only itself."""

from __future__ import annotations

import importlib

from hasten.backends.base import Backend, Session, physical_cores, run_samples
from hasten.errors import BackendError

__all__ = ["Backend", "Session", "get_backend", "backend_names", "physical_cores", "run_samples"]

_REGISTRY = {
    "onnxruntime": ("hasten.backends.onnxruntime", "OnnxRuntimeBackend", "onnxruntime"),
    "openvino": ("hasten.backends.openvino", "OpenVinoBackend", "openvino"),
}


def backend_names() -> list[str]:
    return list(_REGISTRY)


def get_backend(name: str, threads: int | None = None, **options) -> Backend:
    """The backend `name` with its options (e.g. `get_backend("openvino", precision="bf16")`)."""
    if name not in _REGISTRY:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(_REGISTRY)}")
    module_name, cls_name, package = _REGISTRY[name]
    try:
        importlib.import_module(package)
    except ImportError as exc:
        raise BackendError(f"backend {name!r} needs the package '{package}', which is not installed "
                           f"(pip install {package})") from exc
    cls = getattr(importlib.import_module(module_name), cls_name)
    if threads is not None and threads < 1:
        raise BackendError(f"threads must be >= 1, got {threads}")
    try:
        return cls(threads=threads, **options)
    except TypeError as exc:
        raise BackendError(f"backend {name!r}: bad option ({exc})") from exc
