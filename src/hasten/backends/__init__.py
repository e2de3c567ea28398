"""Runtimes behind one interface, registered by name. Each is imported lazily: a missing runtime package
disables only its backend.

    get_backend("openvino", precision="bf16")      # a configured Backend
    backend_class("openvino")                       # its class (declarations), without importing OpenVINO
    register_backend(MyBackend)                     # a plug-in: a Backend subclass with a unique `name`

Nothing outside this package names a runtime: the rest of hasten asks for `DEFAULT_BACKEND` (the first
registered), `reference_backend()` (the runtime that checks numbers: it runs every domain hasten writes), or
a backend by a name the user gave.
"""

from __future__ import annotations

import importlib

from hasten.backends.base import Backend, Session, TensorSpec, physical_cores, run_samples
from hasten.errors import BackendError

__all__ = ["Backend", "Session", "TensorSpec", "get_backend", "backend_class", "backend_names", "installed_backends",
           "register_backend", "unregister_backend", "reference_backend", "backend_computing", "packages",
           "parse_backend_spec", "symbolic_shapes",
           "DEFAULT_BACKEND", "physical_cores", "run_samples"]

#: built-in backends: name -> module defining it (imported on first use; its runtime only when compiling)
_BUILTIN = {
    "onnxruntime": ("hasten.backends.onnxruntime", "OnnxRuntimeBackend"),  # the first: DEFAULT_BACKEND
    "openvino": ("hasten.backends.openvino", "OpenVinoBackend"),
}
_PLUGINS: dict[str, type[Backend]] = {}
DEFAULT_BACKEND = "onnxruntime"
#: the backend numbers are checked on (calibration statistics, NaN checks, per-layer comparisons)
_REFERENCE = "onnxruntime"


def backend_names() -> list[str]:
    """Every registered backend: the built-ins, then plug-ins in the order they were registered."""
    return [*_BUILTIN, *_PLUGINS]


def installed_backends() -> list[str]:
    """The registered backends whose runtime package is installed (the search's default)."""
    import importlib.util

    out = []
    for name in backend_names():
        package = backend_class(name).package
        if not package or importlib.util.find_spec(package) is not None:
            out.append(name)
    return out


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Register a Backend subclass under `cls.name` (usable as a decorator); a name is registered once."""
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"register_backend() takes a Backend subclass, got {cls!r}")
    if not cls.name:
        raise BackendError(f"backend class {cls.__name__} has no name")
    if cls.name in _BUILTIN or cls.name in _PLUGINS:
        raise BackendError(f"backend {cls.name!r} is already registered; choose another name")
    _PLUGINS[cls.name] = cls
    return cls


def unregister_backend(name: str) -> None:
    """Remove the plug-in `name` (built-ins stay)."""
    _PLUGINS.pop(name, None)


def backend_class(name: str) -> type[Backend]:
    """The class registered as `name` (its declarations are readable without the runtime installed)."""
    if name in _PLUGINS:
        return _PLUGINS[name]
    if name not in _BUILTIN:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(backend_names())}")
    module_name, cls_name = _BUILTIN[name]
    return getattr(importlib.import_module(module_name), cls_name)


def get_backend(name: str, threads: int | None = None, **options) -> Backend:
    """The backend `name` with its options (e.g. `get_backend("openvino", precision="bf16")`)."""
    cls = backend_class(name)
    if cls.package:
        try:
            importlib.import_module(cls.package)
        except ImportError as exc:
            raise BackendError(f"backend {name!r} needs the package '{cls.package}', which is not installed "
                               f"(pip install {cls.package})") from exc
    unknown = sorted(set(options) - set(cls.option_names()))
    if unknown:
        raise BackendError(f"backend {name!r}: unknown option(s) {unknown}; it takes "
                           f"{', '.join(cls.option_names())}")
    return cls(threads=threads, **options)


def parse_backend_spec(spec: str) -> tuple[str, dict]:
    """`NAME`, `NAME:VALUE` (the option whose choices hold VALUE: `openvino:bf16`) or
    `NAME:OPTION=VALUE[,OPTION=VALUE]` -> (name, options)."""
    import dataclasses

    name, _, rest = spec.strip().partition(":")
    cls = backend_class(name)
    options: dict = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        if "=" in part:
            key, _, value = part.partition("=")
            options[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
            continue
        match = [f.name for f in dataclasses.fields(cls) if part in f.metadata.get("choices", ())]
        if not match:
            raise BackendError(f"backend spec {spec!r}: no option of {name} takes {part!r} "
                               f"(write {name}:OPTION=VALUE)")
        options[match[0]] = part
    return name, options


def reference_backend(fusions: bool = True) -> Backend:
    """The runtime that checks numbers; `fusions=False` asks it not to fuse nodes (per-layer comparisons)."""
    return get_backend(_REFERENCE, **({} if fusions else {"graph_optimization": "basic"}))


def backend_computing(dtype: str) -> tuple[Backend, Backend]:
    """(the backend at its fp32 default, the same backend computing in `dtype`) for the first registered
    backend with an option for `dtype` (bf16: OpenVINO's precision hint). Raises BackendError if none."""
    for name in backend_names():
        cls = backend_class(name)
        options = cls.computes(dtype)
        if options:
            return get_backend(name), get_backend(name, **options)
    raise BackendError(f"no registered backend computes in {dtype}")


def symbolic_shapes(proto):
    """The reference backend's symbolic shape inference of `proto` (None when unavailable)."""
    return backend_class(_REFERENCE).symbolic_shapes(proto)


def packages() -> list[str]:
    """The Python packages the registered backends run on (for environment reports)."""
    return [p for p in (backend_class(n).package for n in backend_names()) if p]
