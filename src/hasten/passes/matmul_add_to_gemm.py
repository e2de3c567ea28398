"""matmul_add_to_gemm: `Add(MatMul(A, W), b)` -> `Gemm(A, W, b)` for 2-D activations.

The rule (each condition is checked and the first failure is the reason it did not match):
- `A` is known to be 2-D (from the graph's shapes, else from ONNX shape inference run on the side);
  Gemm only takes 2-D `A`. For rank >= 3 activations (transformers) the pass does nothing: Gemm would need
  Reshapes around it, and ONNX Runtime / OpenVINO already fuse MatMul+Add there themselves, so nothing is
  gained.
- `W` is a 2-D constant (initializer or Constant, not overridable as a graph input) of a float dtype.
- The MatMul output feeds only this Add and is not a graph output.
- `b` is a constant that broadcasts one-way to the output `(M, N)`: a scalar, `(N,)`, `(1,)`, `(1, N)`,
  `(1, 1)`, or `(M, N)` / `(M, 1)` when `M` is a known static size. Then the Add's output shape is exactly
  the Gemm's, so the replacement is the same computation (Gemm with alpha = beta = 1).
Why: a Gemm with its bias is one kernel call with the bias added in the epilogue, and it is the form
other passes (fold_batchnorm) and quantisers match.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir

from hasten.model import Model
from hasten.passes.base import Pass

logger = logging.getLogger(__name__)

_FLOAT_TYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.is_graph_input():
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else np.asarray(tensor.numpy())


def _inferred_shapes(model: Model) -> dict[str, tuple]:
    """name -> shape (ints or None per dim) from ONNX shape inference on a copy of the model."""
    try:
        proto = onnx.shape_inference.infer_shapes(model.proto(), strict_mode=False)
    except Exception:
        return {}
    shapes = {}
    for vi in [*proto.graph.input, *proto.graph.value_info, *proto.graph.output]:
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.HasField("shape"):
            shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
    return shapes


def _shape_of(value: ir.Value, inferred: dict[str, tuple] | None) -> tuple | None:
    if value.shape is not None:
        return tuple(d if isinstance(d, int) else None for d in value.shape)
    if inferred is not None:
        return inferred.get(value.name)
    return None


def check(add: ir.Node, shape_of) -> str | None:
    """None when `add` (with its MatMul) can become a Gemm, else the reason it cannot."""
    if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.inputs) != 2:
        return "not an Add"
    for i in (0, 1):
        mm_out, bias = add.inputs[i], add.inputs[1 - i]
        producer = mm_out.producer() if mm_out is not None else None
        if producer is not None and producer.op_type == "MatMul" and producer.domain in ("", "ai.onnx"):
            break
    else:
        return "no MatMul input"
    if len(mm_out.uses()) != 1 or mm_out.is_graph_output():
        return "MatMul output has other consumers"
    w = _const(producer.inputs[1])
    if w is None or w.ndim != 2:
        return "MatMul weight is not a 2-D constant"
    if w.dtype not in _FLOAT_TYPES:
        return f"weight dtype {w.dtype} is not float16/32/64"
    b = _const(bias)
    if b is None:
        return "Add's other input is not a constant"
    if b.dtype != w.dtype:
        return "bias dtype differs from weight dtype"
    a_shape = shape_of(producer.inputs[0])
    if a_shape is None or len(a_shape) != 2:
        return "activation is not known to be 2-D"
    m, n = a_shape[0], w.shape[1]
    if b.ndim > 2 or (b.ndim >= 1 and b.shape[-1] not in (1, n)):
        return f"bias shape {b.shape} does not broadcast to (M, {n})"
    if b.ndim == 2 and b.shape[0] != 1 and b.shape[0] != m:
        return f"bias shape {b.shape} needs M={b.shape[0]} but M is {m}"
    return None


class MatMulAddToGemm(Pass):
    """Turn MatMul + constant-bias Add on 2-D activations into Gemm."""

    name = "matmul_add_to_gemm"

    def run(self, model: Model):
        work = self.working_copy(model)
        graph = work.graph
        cache: dict[str, dict[str, tuple]] = {}

        def shape_of(value: ir.Value):
            shape = _shape_of(value, None)
            if shape is None:
                if "inferred" not in cache:
                    cache["inferred"] = _inferred_shapes(model)
                shape = cache["inferred"].get(value.name)
            return shape

        count = 0
        for add in list(graph):
            if add.op_type != "Add":
                continue
            reason = check(add, shape_of)
            if reason is not None:
                logger.debug("matmul_add_to_gemm: %s not fused: %s", add.name, reason)
                continue
            mm_first = add.inputs[0].producer() is not None and add.inputs[0].producer().op_type == "MatMul"
            mm_out, bias = (add.inputs[0], add.inputs[1]) if mm_first else (add.inputs[1], add.inputs[0])
            matmul = mm_out.producer()
            gemm = ir.Node("", "Gemm", [matmul.inputs[0], matmul.inputs[1], bias],
                           name=matmul.name or add.name, num_outputs=1)
            ir.convenience.replace_nodes_and_values(graph, add, [matmul, add], [gemm],
                                                    [add.outputs[0]], gemm.outputs)
            count += 1
        return work, bool(count), ({"gemm": count} if count else {})
