"""ONNX Runtime on CPU."""

from __future__ import annotations

from dataclasses import dataclass

from hasten.backends.base import INLINE_LIMIT, Backend, Session, model_on_disk
from hasten.errors import BackendError

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}


class OrtSession(Session):
    backend_name = "onnxruntime"

    def __init__(self, sess, backend: OnnxRuntimeBackend):
        self._sess = sess
        self._backend = backend
        self.input_names = [i.name for i in sess.get_inputs()]
        self.output_names = [o.name for o in sess.get_outputs()]

    def run(self, feeds):
        try:
            values = self._sess.run(self.output_names, feeds)
        except Exception as exc:
            raise BackendError(f"onnxruntime failed to run the model: {str(exc).splitlines()[0]}") from exc
        return dict(zip(self.output_names, values, strict=True))

    def describe(self):
        return self._backend.describe()


@dataclass(frozen=True)
class OnnxRuntimeBackend(Backend):
    """ONNX Runtime CPU execution provider; `graph_optimization` is ORT's own level (default all)."""

    graph_optimization: str = "all"
    name = "onnxruntime"
    domains = ("", "ai.onnx", "com.microsoft")

    def compile(self, model) -> OrtSession:
        import onnxruntime as ort

        if self.graph_optimization not in _LEVELS:
            raise BackendError(f"onnxruntime: graph_optimization must be one of {sorted(_LEVELS)}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.thread_count
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[self.graph_optimization])
        opts.log_severity_level = 3
        try:
            if model.parameter_bytes() < INLINE_LIMIT:
                data = model.proto().SerializeToString()
                sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
            else:
                with model_on_disk(model) as path:
                    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BackendError(f"onnxruntime cannot load the model: {str(exc).splitlines()[0]}") from exc
        return OrtSession(sess, self)

    def describe(self):
        return {**super().describe(), "graph_optimization": self.graph_optimization}


