"""fold_batchnorm: fold an inference BatchNormalization into the Conv, ConvTranspose or Gemm before it.

BatchNormalization computes `y = s * (x - mean) + beta` per channel, with `s = gamma / sqrt(var + eps)`.
When `x = W * a + b` comes from a linear op whose weights are constants,

    W' = W * s  (scaled along the output-channel axis)      b' = s * (b - mean) + beta

so the pair becomes one op with the same attributes. For Gemm (`Y = alpha * A @ B' + beta_g * C`) the
output channels are the columns: `B` is scaled per column (per row when `transB=1`) and the new
`C' = s * (beta_g * C - mean) + beta` with `beta_g` reset to 1. A missing bias counts as zero. The folded
tensors are computed in float64 and rounded once to the weight dtype, so the result differs from the
unfused graph only by that final rounding.

Pattern + check (which says why it did not match) + rewrite, after onnxscript's `_fuse_batchnorm.py`.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from hasten.model import Model
from hasten.passes.base import Pass

logger = logging.getLogger(__name__)

_LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm")
_FLOAT_TYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _const(value: ir.Value | None) -> np.ndarray | None:
    """The constant array behind `value` (initializer or Constant node), unless a graph input can
    override it."""
    if value is None or value.is_graph_input():
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else np.asarray(tensor.numpy())


def _int_attr(node: ir.Node, name: str, default: int) -> int:
    attr = node.attributes.get(name)
    return default if attr is None else attr.as_int()


def check(bn: ir.Node) -> str | None:
    """None when `bn` can be folded into its producer, else the reason it cannot."""
    if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx"):
        return "not a BatchNormalization"
    if _int_attr(bn, "training_mode", 0) != 0:
        return "training_mode=1 (batch statistics)"
    if _int_attr(bn, "spatial", 1) != 1:
        return "spatial=0 (per-activation statistics)"
    if any(o.uses() or o.is_graph_output() for o in bn.outputs[1:]):
        return "running-statistics outputs are used (training graph)"
    if len(bn.inputs) != 5 or any(_const(v) is None for v in bn.inputs[1:]):
        return "scale, bias, mean or var is not a constant"
    x = bn.inputs[0]
    producer = x.producer() if x is not None else None
    if producer is None or producer.op_type not in _LINEAR_OPS or producer.domain not in ("", "ai.onnx"):
        return "input is not produced by Conv, ConvTranspose or Gemm"
    if len(x.uses()) != 1 or x.is_graph_output():
        return f"{producer.op_type} output has other consumers"
    weight = _const(producer.inputs[1]) if len(producer.inputs) > 1 else None
    if weight is None:
        return f"{producer.op_type} weight is not a constant"
    if weight.dtype not in _FLOAT_TYPES:
        return f"weight dtype {weight.dtype} is not float16/32/64"
    has_bias = len(producer.inputs) > 2 and producer.inputs[2] is not None
    if has_bias and _const(producer.inputs[2]) is None:
        return f"{producer.op_type} bias is not a constant"
    channels = _const(bn.inputs[1]).size
    if producer.op_type == "Conv":
        out_channels = weight.shape[0]
    elif producer.op_type == "ConvTranspose":
        group = _int_attr(producer, "group", 1)
        if weight.shape[0] % group:
            return "ConvTranspose in_channels not divisible by group"
        out_channels = weight.shape[1] * group
    else:
        if weight.ndim != 2:
            return "Gemm weight is not 2-D"
        out_channels = weight.shape[0] if _int_attr(producer, "transB", 0) else weight.shape[1]
    if out_channels != channels or any(_const(v).size != channels for v in bn.inputs[1:]):
        return f"channel mismatch ({out_channels} outputs vs {channels} BN channels)"
    return None


def _folded(bn: ir.Node, producer: ir.Node) -> tuple[np.ndarray, np.ndarray, dict[str, ir.Attr]]:
    gamma, beta, mean, var = (_const(v).astype(np.float64).reshape(-1) for v in bn.inputs[1:])
    eps_attr = bn.attributes.get("epsilon")
    eps = 1e-5 if eps_attr is None else float(eps_attr.as_float())
    s = gamma / np.sqrt(var + eps)
    w0 = _const(producer.inputs[1])
    w = w0.astype(np.float64)
    attrs = dict(producer.attributes)
    has_bias = len(producer.inputs) > 2 and producer.inputs[2] is not None
    b = _const(producer.inputs[2]).astype(np.float64) if has_bias else np.zeros(1)
    if producer.op_type == "Conv":
        w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
        b = s * (b.reshape(-1) - mean) + beta
    elif producer.op_type == "ConvTranspose":
        group = _int_attr(producer, "group", 1)
        c_in, m_g = w.shape[0], w.shape[1]
        kernel = w.shape[2:]
        grouped = w.reshape(group, c_in // group, m_g, *kernel)
        grouped = grouped * s.reshape((group, 1, m_g) + (1,) * len(kernel))
        w = grouped.reshape(w0.shape)
        b = s * (b.reshape(-1) - mean) + beta
    else:  # Gemm: output channels are columns
        w = w * (s[:, None] if _int_attr(producer, "transB", 0) else s[None, :])
        beta_attr = attrs.pop("beta", None)
        beta_g = 1.0 if beta_attr is None else float(beta_attr.as_float())
        b = s * (beta_g * b - mean) + beta  # broadcasts C of shape (), (N,), (1,N), (M,1) or (M,N)
    return w.astype(w0.dtype), b.astype(w0.dtype), attrs


class _Names:
    """Fresh value names for the new initializers."""

    def __init__(self, graph: ir.Graph) -> None:
        self.taken = {v.name for v in graph.inputs} | set(graph.initializers)
        self.taken |= {o.name for n in graph.all_nodes() for o in n.outputs}

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name


class FoldBatchNorm(Pass):
    """Fold BatchNormalization into a preceding Conv / ConvTranspose / Gemm with constant weights."""

    name = "fold_batchnorm"

    def run(self, model: Model):
        work = self.working_copy(model)
        graph = work.graph
        names = _Names(graph)
        stats: dict[str, int] = {}
        touched: list[ir.Value] = []
        for bn in list(graph):
            reason = check(bn)
            if reason is not None:
                if bn.op_type == "BatchNormalization":
                    logger.debug("fold_batchnorm: %s not folded: %s", bn.name, reason)
                continue
            producer = bn.inputs[0].producer()
            w, b, attrs = _folded(bn, producer)
            stem = producer.name or bn.outputs[0].name
            w_val = ir.Value(name=names.fresh(f"{stem}_W_bnfold"), const_value=ir.tensor(w))
            b_val = ir.Value(name=names.fresh(f"{stem}_B_bnfold"), const_value=ir.tensor(b))
            for v in (w_val, b_val):
                v.type, v.shape = ir.TensorType(ir.DataType.from_numpy(v.const_value.numpy().dtype)), \
                    ir.Shape(v.const_value.shape)
                graph.register_initializer(v)
            touched += [v for v in [*producer.inputs[1:], *bn.inputs[1:]] if v is not None]
            fused = ir.Node("", producer.op_type, [producer.inputs[0], w_val, b_val],
                            attributes=list(attrs.values()), name=producer.name, num_outputs=1)
            ir.convenience.replace_nodes_and_values(graph, bn, [producer, bn], [fused],
                                                    [bn.outputs[0]], fused.outputs)
            key = producer.op_type.lower()
            stats[key] = stats.get(key, 0) + 1
        for v in touched:  # old weights no one reads any more
            if v.is_initializer() and not v.uses() and not v.is_graph_output() and not v.is_graph_input():
                graph.initializers.pop(v.name, None)
        return work, bool(stats), stats
