"""OpenVINO on CPU.

OpenVINO runs bf16 by default on CPUs with AVX-512 BF16/AMX; hasten asks for f32 unless `precision="bf16"`
is chosen (INFERENCE_PRECISION_HINT), so a baseline is a true fp32 baseline and bf16 is a search option.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hasten.backends.base import Backend, Session, model_on_disk
from hasten.errors import BackendError

PRECISIONS = ("f32", "bf16", "f16")


class OpenVinoSession(Session):
    backend_name = "openvino"

    def __init__(self, compiled, backend: OpenVinoBackend):
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._backend = backend
        self.input_names = [p.get_any_name() for p in compiled.inputs]
        self.output_names = [p.get_any_name() for p in compiled.outputs]

    def run(self, feeds):
        try:
            result = self._request.infer(feeds, share_inputs=True, share_outputs=False)
        except Exception as exc:
            raise BackendError(f"openvino failed to run the model: {str(exc).splitlines()[0]}") from exc
        return {name: np.array(result[port]) for name, port in zip(self.output_names, self._compiled.outputs,
                                                                    strict=True)}

    def describe(self):
        return self._backend.describe()


@dataclass(frozen=True)
class OpenVinoBackend(Backend):
    """OpenVINO CPU plugin, latency hint, `precision` f32 (default) or bf16."""

    precision: str = "f32"
    name = "openvino"

    def compile(self, model) -> OpenVinoSession:
        import openvino as ov

        if self.precision not in PRECISIONS:
            raise BackendError(f"openvino: precision must be one of {PRECISIONS}, got {self.precision!r}")
        foreign = sorted({n.domain for n in model.graph.all_nodes() if n.domain not in self.domains})
        if foreign:
            raise BackendError(f"openvino cannot run ops of domain(s) {foreign}; use onnxruntime or a "
                               "recipe without runtime-specific fusions")
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
