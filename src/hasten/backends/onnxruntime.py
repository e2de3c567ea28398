"""ONNX Runtime on CPU: runs every standard op and the com.microsoft contrib ops (the reference runtime)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hasten.backends.base import INLINE_LIMIT, Backend, Session, TensorSpec, model_on_disk
from hasten.errors import BackendError

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
           "all": "ORT_ENABLE_ALL"}
#: ONNX Runtime's type strings -> numpy dtype names
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
           "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
           "tensor(bool)": "bool", "tensor(string)": "str", "tensor(bfloat16)": "bfloat16"}


def _spec(arg) -> TensorSpec:
    shape = None if arg.shape is None else tuple(d if isinstance(d, int) else None for d in arg.shape)
    return TensorSpec(arg.name, _DTYPES.get(arg.type, arg.type), shape)


class OrtSession(Session):
    """An InferenceSession; ONNX Runtime's `run` is safe to call from several threads at once."""

    backend_name = "onnxruntime"
    thread_safe = True

    def __init__(self, sess, backend: OnnxRuntimeBackend):
        self._sess = sess
        self._backend = backend
        self.inputs = [_spec(i) for i in sess.get_inputs()]
        self.outputs = [_spec(o) for o in sess.get_outputs()]

    def run(self, feeds):
        if self._sess is None:
            raise BackendError("onnxruntime: this session is closed")
        try:
            values = self._sess.run(self.output_names, feeds)
        except Exception as exc:
            raise BackendError(f"onnxruntime failed to run the model: {str(exc).splitlines()[0]}") from exc
        return dict(zip(self.output_names, values, strict=True))

    def close(self):
        self._sess = None

    def describe(self):
        return self._backend.describe()


@dataclass(frozen=True)
class OnnxRuntimeBackend(Backend):
    """ONNX Runtime CPU execution provider; `graph_optimization` is ORT's own level (default all)."""

    graph_optimization: str = field(default="all", metadata={"choices": tuple(_LEVELS)})
    name = "onnxruntime"
    package = "onnxruntime"
    domains = ("", "ai.onnx", "com.microsoft")
    #: fp16 runs (mostly through inserted Casts on x86); its CPU provider has no bf16 MatMul kernels
    dtypes = ("fp32", "fp16", "int8")

    def build(self, model) -> OrtSession:
        import onnxruntime as ort

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

    @classmethod
    def symbolic_shapes(cls, proto):
        """ONNX Runtime's symbolic shape inference (knows com.microsoft ops; dims may stay symbolic). The
        class is driven directly: its `infer_shapes` wrapper writes a file into the working folder when
        inference is incomplete, and partial results are still useful."""
        engine_class = _symbolic_class()
        if engine_class is None:
            return None
        logging.getLogger(engine_class.__module__).setLevel(logging.ERROR)
        try:
            engine = engine_class(2**31 - 1, True, False, 0)
            engine._preprocess(proto)
            while engine.run_:
                engine._infer_impl()
            engine._update_output_from_vi()
            return engine.out_mp_
        except Exception:
            return None

    def describe(self):
        return {**super().describe(), "graph_optimization": self.graph_optimization}


def _symbolic_class():
    """`SymbolicShapeInference`, loaded from its file: `import onnxruntime.tools` would import torch (2 s)."""
    name = "onnxruntime.tools.symbolic_shape_infer"
    if name in sys.modules:
        return sys.modules[name].SymbolicShapeInference
    private = "_hasten_ort_symbolic_shape_infer"
    if private not in sys.modules:
        spec = importlib.util.find_spec("onnxruntime")
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / "tools" / "symbolic_shape_infer.py"
        if not path.exists():
            return None
        module_spec = importlib.util.spec_from_file_location(private, path)
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception:
            return None
        sys.modules[private] = module
    return sys.modules[private].SymbolicShapeInference
