"""OpenVINO on CPU.

OpenVINO runs bf16 by default on CPUs with AVX-512 BF16/AMX; hasten asks for f32 unless `precision="bf16"`
is chosen (INFERENCE_PRECISION_HINT), so a baseline is a true fp32 baseline and bf16 is a search option
(tried where the target runs bf16 natively).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from hasten.backends.base import Backend, Session, TensorSpec, model_on_disk
from hasten.errors import BackendError

PRECISIONS = ("f32", "bf16", "f16")


def _spec(port) -> TensorSpec:
    shape = port.get_partial_shape()
    dims = None if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in shape)
    try:
        dtype = np.dtype(port.get_element_type().to_dtype()).name
    except Exception:  # a type numpy has no name for (bf16...)
        dtype = port.get_element_type().get_type_name()
    return TensorSpec(port.get_any_name(), dtype, dims)


class OpenVinoSession(Session):
    """A compiled model with one infer request per calling thread, so `run` is safe from several threads."""

    backend_name = "openvino"
    thread_safe = True

    def __init__(self, compiled, backend: OpenVinoBackend):
        self._compiled = compiled
        self._local = threading.local()
        self._backend = backend
        self.inputs = [_spec(p) for p in compiled.inputs]
        self.outputs = [_spec(p) for p in compiled.outputs]

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            if self._compiled is None:
                raise BackendError("openvino: this session is closed")
            request = self._local.request = self._compiled.create_infer_request()
        return request

    def run(self, feeds):
        request = self._request()
        try:
            result = request.infer(feeds, share_inputs=True, share_outputs=False)
        except Exception as exc:
            raise BackendError(f"openvino failed to run the model: {str(exc).splitlines()[0]}") from exc
        return {name: np.array(result[port]) for name, port in zip(self.output_names, self._compiled.outputs,
                                                                    strict=True)}

    def close(self):
        self._compiled = None
        self._local = threading.local()

    def describe(self):
        return self._backend.describe()


@dataclass(frozen=True)
class OpenVinoBackend(Backend):
    """OpenVINO CPU plugin, latency hint, `precision` f32 (default), bf16 or f16."""

    precision: str = field(default="f32", metadata={
        "choices": PRECISIONS, "search": ("bf16",), "needs_dtype": {"bf16": "bf16", "f16": "fp16"},
        "computes": {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}})
    name = "openvino"
    package = "openvino"
    dtypes = ("fp32", "bf16", "fp16", "int8")
    #: int8 attention scores on OpenVINO: ViT-small 4% faster, same fidelity (bench/corpus/attention.py)
    scheme_defaults = {"int8-static": {"attention": "qk"}}

    def build(self, model) -> OpenVinoSession:
        import openvino as ov

        try:
            with model_on_disk(model) as path:
                ov_model = ov.Core().read_model(str(path))
        except Exception as exc:
            raise BackendError(f"openvino cannot read the model: {str(exc).splitlines()[0]}") from exc
        return self.compile_ov(ov_model)

    def compile_ov(self, ov_model) -> OpenVinoSession:
        """Compile an `openvino.Model` (e.g. NNCF's output) with this backend's settings."""
        import openvino as ov

        config = {"INFERENCE_NUM_THREADS": self.thread_count, "INFERENCE_PRECISION_HINT": self.precision,
                  "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        try:
            compiled = ov.Core().compile_model(ov_model, "CPU", config)
        except Exception as exc:
            raise BackendError(f"openvino cannot compile the model: {str(exc).splitlines()[0]}") from exc
        return OpenVinoSession(compiled, self)

    def describe(self):
        return {**super().describe(), "precision": self.precision}
