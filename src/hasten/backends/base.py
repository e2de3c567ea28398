"""Backend and Session: the one interface every runtime implements (a backend is one file in backends/).

A Backend is a frozen dataclass whose fields are its typed options (`threads` plus its own). It declares:
- `name`, and `package`: the Python package it needs (imported only when it compiles);
- options: each field may carry `metadata={"choices": (...), "search": (...), "needs_dtype": {value: dtype},
  "computes": {dtype: value}}`: the valid values, the values worth trying besides the default, the dtype a
  value needs the target to run natively, and which value makes it compute in a dtype (bf16 -> "bf16");
- `domains`: the ONNX op domains it executes; `dtypes`: the arithmetic it can compute in (a target narrows
  it to what the target runs natively, `dtypes_on`); `graph_passes`: whether graph passes apply to its input;
- `scheme_defaults`: per quantisation scheme, the config the search starts from on this backend;
- `latency_source`: "host" (wall clock on this machine, the default) or another source (a simulator, a cost
  model), in which case its Sessions implement `latency_ms(feeds)` and no wall clock is read;
- `write_artefacts(model, out)`: what it writes to OUT/ beside model.onnx (nothing by default).

`compile(model, target=None) -> Session` (target None: this host). A Session has `inputs` / `outputs` specs
(name, dtype, shape), `run(feeds)`, `close()`, and `thread_safe` says whether `run` may be called from
several threads at once (callers pool sessions that are not).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import psutil

from hasten.errors import BackendError


def physical_cores() -> int:
    """Physical cores of this host (the default thread count, BENCHMARKING.md)."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@dataclass(frozen=True)
class TensorSpec:
    """A Session input or output: its name, numpy dtype name and shape (None for a dynamic dimension)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None = None


class Session(abc.ABC):
    """A compiled model ready to run."""

    backend_name: str = ""
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    #: True when `run` may be called from several threads at once
    thread_safe: bool = True
    #: "host": timed by the wall clock here; anything else: `latency_ms` gives its latency (its backend's)
    latency_source: str = "host"

    @functools.cached_property
    def input_names(self) -> list[str]:
        """Names of `inputs` (read once: a timed `run` must not rebuild them)."""
        return [s.name for s in self.inputs]

    @functools.cached_property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    @abc.abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns every graph output by name."""

    def latency_ms(self, feeds: dict[str, np.ndarray]) -> float:
        """The latency of one run on `feeds` from the backend's own source (simulator, cost model); only
        for backends whose `latency_source` is not "host"."""
        raise BackendError(f"{self.backend_name}: latency is timed on the host (no latency source of its own)")

    def close(self) -> None:  # noqa: B027  (a session with nothing to release need not override it)
        """Release the runtime's resources; the Session cannot run afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> dict:
        """Settings that matter for a figure (threads, precision...)."""
        return {"backend": self.backend_name}


@dataclass(frozen=True)
class Backend(abc.ABC):
    """A runtime with its options; `threads=None` means all physical cores."""

    threads: int | None = None
    name: ClassVar[str] = ""
    package: ClassVar[str | None] = None
    domains: ClassVar[tuple[str, ...]] = ("", "ai.onnx")
    dtypes: ClassVar[tuple[str, ...]] = ("fp32", "int8")
    graph_passes: ClassVar[bool] = True
    latency_source: ClassVar[str] = "host"
    scheme_defaults: ClassVar[dict[str, dict]] = {}

    def __post_init__(self):
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise BackendError(f"{self.name}: threads must be an integer >= 1, got {self.threads!r}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices is not None and value not in choices:
                raise BackendError(f"{self.name}: {f.name} must be one of {list(choices)}, got {value!r}")

    @property
    def thread_count(self) -> int:
        return self.threads or physical_cores()

    # -- what it declares ----------------------------------------------------------------------------
    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def dtypes_on(cls, target_dtypes: tuple[str, ...] | None) -> tuple[str, ...]:
        """The dtypes it computes in on a target that runs `target_dtypes` natively (None: unknown target)."""
        return cls.dtypes if target_dtypes is None else tuple(d for d in cls.dtypes if d in target_dtypes)

    @classmethod
    def option_space(cls, target_dtypes: tuple[str, ...] | None) -> list[tuple[str, object]]:
        """(option, value) pairs worth trying besides the defaults on a target with `target_dtypes`."""
        out = []
        for f in dataclasses.fields(cls):
            needs = f.metadata.get("needs_dtype", {})
            for value in f.metadata.get("search", ()):
                dtype = needs.get(value)
                if dtype is None or target_dtypes is None or dtype in target_dtypes:
                    out.append((f.name, value))
        return out

    @classmethod
    def computes(cls, dtype: str) -> dict | None:
        """The options that make it compute in `dtype` (e.g. {"precision": "bf16"}), or None if none do."""
        for f in dataclasses.fields(cls):
            value = f.metadata.get("computes", {}).get(dtype)
            if value is not None:
                return {f.name: value}
        return None

    def supports(self, target) -> str | None:
        """None when it can compile for `target` (a hasten.measure.targets.Target; None: this host), else
        why not. The default: this host's CPU only."""
        if target is None:
            return None
        machine = getattr(target, "machine", None)
        if machine is None or machine.lower() != platform.machine().lower():
            return f"{self.name} runs on this host's CPU ({platform.machine()}) only, not on {target.name}"
        return None

    # -- what it does --------------------------------------------------------------------------------
    def compile(self, model, target=None) -> Session:
        """Build a Session for `model` (a hasten Model) on `target` (None: this host). Raises BackendError
        when the runtime refuses the model or cannot run on the target."""
        why = self.supports(target)
        if why is not None:
            raise BackendError(why)
        foreign = sorted({n.domain for n in model.graph.all_nodes() if n.domain not in self.domains})
        if foreign:
            raise BackendError(f"{self.name} cannot run ops of domain(s) {foreign}; use a backend that runs "
                               "them or a recipe without runtime-specific fusions")
        return self.build(model)

    @abc.abstractmethod
    def build(self, model) -> Session:
        """Compile `model` for this host (the checks of `compile` have passed)."""

    @classmethod
    def symbolic_shapes(cls, proto):
        """`proto` (an onnx ModelProto, not changed) with value infos from the runtime's own symbolic shape
        inference, or None when it has none or it fails."""
        return None

    def write_artefacts(self, model, out: Path) -> list[Path]:
        """Write what a result on this backend needs beside OUT/model.onnx (which is always written), e.g.
        generated C sources, atomically into the folder `out`; returns their paths (none by default)."""
        return []

    def describe(self) -> dict:
        return {"backend": self.name, "threads": self.thread_count}


def run_samples(session: Session, samples, batch_size: int = 1) -> dict[str, np.ndarray]:
    """Run every item of `samples` and concatenate each output along the batch axis."""
    outs: dict[str, list[np.ndarray]] = {}
    for feeds in samples.feeds(batch_size):
        for k, v in session.run(feeds).items():
            outs.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in outs.items()}


#: Above this many weight bytes a model goes to a runtime as a file with external data, not as bytes.
INLINE_LIMIT = 1 << 30


class model_on_disk:
    """Context manager: the model saved in a temporary folder (external data when large); yields the path."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        import tempfile

        self._tmp = tempfile.TemporaryDirectory(prefix="hasten-run-")
        path = Path(self._tmp.name) / "model.onnx"
        self.model.save(path, external_data_threshold=INLINE_LIMIT)
        return path

    def __exit__(self, *exc):
        self._tmp.cleanup()
