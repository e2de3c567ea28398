"""Backend and Session: the one interface every runtime implements.

`Backend.compile(model) -> Session`; `Session.run(feeds) -> outputs` (dict name -> array).
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass

import numpy as np
import psutil


def physical_cores() -> int:
    """Physical cores of this host (the default thread count, BENCHMARKING.md)."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class Session(abc.ABC):
    """A compiled model ready to run."""

    backend_name: str = ""
    input_names: list[str]
    output_names: list[str]

    @abc.abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns every graph output by name."""

    def describe(self) -> dict:
        """Settings that matter for a figure (threads, precision...)."""
        return {"backend": self.backend_name}


@dataclass(frozen=True)
class Backend(abc.ABC):
    """A runtime with its options; `threads=None` means all physical cores."""

    threads: int | None = None
    name = ""
    #: the ONNX domains whose ops this runtime executes
    domains: tuple[str, ...] = ("", "ai.onnx")

    @property
    def thread_count(self) -> int:
        return self.threads or physical_cores()

    @abc.abstractmethod
    def compile(self, model) -> Session:
        """Build a Session for `model` (a hasten Model). Raises BackendError when the runtime refuses it."""

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
        from pathlib import Path

        self._tmp = tempfile.TemporaryDirectory(prefix="hasten-run-")
        path = Path(self._tmp.name) / "model.onnx"
        self.model.save(path, external_data_threshold=INLINE_LIMIT)
        return path

    def __exit__(self, *exc):
        self._tmp.cleanup()
