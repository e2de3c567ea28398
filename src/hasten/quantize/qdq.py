"""QDQ mechanics: rewrite a graph from a plan of which tensors, weights and biases to quantise, and how.

hasten decides (hasten.quantize.int8 builds the plan); this module only edits the graph:
- activation t with (scale, zero_point): t -> QuantizeLinear -> DequantizeLinear -> the plan's readers of t.
  Other readers (a residual Add, say) keep reading the float t, so a quantised MatMul input never forces
  quantisation noise into the residual stream. When t is a SmoothQuant Mul(x, 1/s) over the last axis read
  only by quantised nodes, the Mul is folded away: QuantizeLinear(x, scale·s per channel) -> DequantizeLinear
  (scale), the same integers with one op fewer;
- weight (node, input) with a channel axis: a constant int8 tensor, symmetric, per channel (or per tensor),
  read through DequantizeLinear; weights in `plan.seven_bit` use the 7-bit grid [-63, 63] (kernels without
  VNNI saturate int16 pair sums with 8-bit weights: hasten.quantize.saturation);
- bias (Conv/Gemm input 2): int32 with scale = scale(x) · scale(w), zero point 0, through DequantizeLinear
  (what ONNX Runtime's QLinearConv / QGemm fusions expect);
- dynamic node (a MatMul with a constant weight): DynamicQuantizeLinear(x) -> MatMulInteger(x_q, W_q) -> Cast
  -> Mul(x_scale · w_scale), the pattern ONNX Runtime fuses into DynamicQuantizeMatMul.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hasten.quantize.graph import GraphIndex, all_names, unique_name
from hasten.quantize.primitives import choose_qparams, quantize


@dataclass
class ActQuant:
    """Quantisation of one activation tensor for the nodes in `readers`."""

    scale: float
    zero_point: int
    dtype: str = "uint8"
    readers: set[str] = field(default_factory=set)


@dataclass
class QDQPlan:
    activations: dict[str, ActQuant] = field(default_factory=dict)
    #: (node name, input index) -> channel axis, or None for per-tensor
    weights: dict[tuple[str, int], int | None] = field(default_factory=dict)
    #: (node name, bias input index) -> (activation input index, weight input index) of that node
    biases: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    #: MatMul nodes quantised dynamically, -> channel axis of the weight (None per-tensor)
    dynamic: dict[str, int | None] = field(default_factory=dict)
    fold_smooth_mul: bool = True
    weight_dtype: str = "int8"
    #: (node name, input index) -> (q, scale, zero_point) computed elsewhere (GPTQ); else nearest rounding
    weight_values: dict[tuple[str, int], tuple] = field(default_factory=dict)
    #: weights (node name, input index; dynamic nodes: (name, 1)) quantised to 7 bits, [-63, 63]
    seven_bit: set[tuple[str, int]] = field(default_factory=set)


def quantize_weight(w: np.ndarray, axis: int | None, dtype: str = "int8", reduce_range: bool = False):
    """Symmetric min-max weight quantisation: (q, scale, zero_point); `reduce_range`: 7 bits ([-63, 63])."""
    if axis is None:
        scale, zp = choose_qparams(w.min(), w.max(), dtype, symmetric=True, reduce_range=reduce_range)
    else:
        moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        scale, zp = choose_qparams(moved.min(axis=1), moved.max(axis=1), dtype, symmetric=True, axis=0,
                                   reduce_range=reduce_range)
    return quantize(w, scale, zp, dtype, axis), scale, zp


class _Builder:
    def __init__(self, proto: onnx.ModelProto):
        self.proto = proto
        self.g = proto.graph
        self.idx = GraphIndex(self.g)
        self.taken = all_names(self.g)
        self.inits: list[TensorProto] = []
        self.nodes_before: dict[str, list[onnx.NodeProto]] = {}  # insert before this node name
        self.removed: set[str] = set()
        self.nodes = {n.name: n for n in self.g.node}

    def const(self, base: str, value: np.ndarray) -> str:
        name = unique_name(base, self.taken)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def add(self, before: str, node: onnx.NodeProto) -> None:
        self.nodes_before.setdefault(before, []).append(node)

    def finish(self) -> onnx.ModelProto:
        order = []
        for n in self.g.node:
            order.extend(self.nodes_before.get(n.name, []))
            if n.name not in self.removed:
                order.append(n)
        del self.g.node[:]
        self.g.node.extend(order)
        self.g.initializer.extend(self.inits)
        used = _used_names(self.g) | {i.name for i in self.g.input}
        keep = [t for t in self.g.initializer if t.name in used]
        del self.g.initializer[:]
        self.g.initializer.extend(keep)
        return self.proto


def _used_names(g: onnx.GraphProto) -> set[str]:
    """Every tensor name read by a node of `g` or of its subgraphs, and `g`'s outputs."""
    used = {o.name for o in g.output}
    for n in g.node:
        used.update(n.input)
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                used |= _used_names(sub)
    return used


def _first_reader(b: _Builder, names) -> str:
    return next(n.name for n in b.g.node if n.name in names)


def _smooth_mul(b: _Builder, tensor: str, readers: set[str]):
    """(x, 1/s) when `tensor` = Mul(x, c) with constant 1-D c read only by `readers`, else None."""
    node = b.idx.producer.get(tensor)
    if node is None or node.op_type != "Mul":
        return None
    if {n.name for n in b.idx.consumers.get(tensor, [])} != readers or tensor in b.idx.outputs:
        return None
    for i in (0, 1):
        c = b.idx.constant(node.input[1 - i])
        if c is not None and c.ndim == 1 and not b.idx.is_constant(node.input[i]) and (c > 0).all():
            return node, node.input[i], c.astype(np.float64)
    return None


def _quantize_activation(b: _Builder, tensor: str, aq: ActQuant, fold: bool) -> None:
    qtype = np.dtype(aq.dtype)
    scale = np.float32(aq.scale)
    zp = np.array(aq.zero_point, dtype=qtype)
    dq_scale = b.const(f"{tensor}_scale", scale)
    dq_zp = b.const(f"{tensor}_zero_point", zp)
    q_out = unique_name(f"{tensor}_quantized", b.taken)
    dq_out = unique_name(f"{tensor}_dequantized", b.taken)
    smooth = _smooth_mul(b, tensor, aq.readers) if fold else None
    if smooth is not None:  # Q(x, scale / c) == Q(x * c, scale) per channel of the last axis
        mul, source, c = smooth
        q_scale = b.const(f"{tensor}_scale_per_channel", (aq.scale / c).astype(np.float32))
        q_zp = b.const(f"{tensor}_zero_point_per_channel", np.full(c.shape, aq.zero_point, dtype=qtype))
        q = helper.make_node("QuantizeLinear", [source, q_scale, q_zp], [q_out], axis=-1,
                             name=unique_name(f"{tensor}_QuantizeLinear", b.taken))
        anchor = mul.name
        b.add(anchor, q)
        b.removed.add(anchor)
    else:
        q = helper.make_node("QuantizeLinear", [tensor, dq_scale, dq_zp], [q_out],
                             name=unique_name(f"{tensor}_QuantizeLinear", b.taken))
        anchor = _first_reader(b, aq.readers)
        b.add(anchor, q)
    dq = helper.make_node("DequantizeLinear", [q_out, dq_scale, dq_zp], [dq_out],
                          name=unique_name(f"{tensor}_DequantizeLinear", b.taken))
    b.add(_first_reader(b, aq.readers) if smooth is None else anchor, dq)
    for name in aq.readers:
        node = b.nodes[name]
        for i, inp in enumerate(node.input):
            if inp == tensor:
                node.input[i] = dq_out


def _quantize_weight_input(b: _Builder, node_name: str, index: int, axis: int | None, dtype: str,
                           given: tuple | None, reduce_range: bool = False) -> None:
    node = b.nodes[node_name]
    name = node.input[index]
    q, scale, zp = given if given is not None else quantize_weight(b.idx.constant(name).astype(np.float32), axis,
                                                                   dtype, reduce_range)
    qn = b.const(f"{name}_quantized", q)
    sn = b.const(f"{name}_scale", scale if axis is not None else np.float32(scale))
    zn = b.const(f"{name}_zero_point", zp if axis is not None else zp.reshape(()))
    out = unique_name(f"{name}_dequantized", b.taken)
    attrs = {"axis": axis} if axis is not None else {}
    b.add(node_name, helper.make_node("DequantizeLinear", [qn, sn, zn], [out],
                                      name=unique_name(f"{name}_DequantizeLinear", b.taken), **attrs))
    node.input[index] = out


def _quantize_bias(b: _Builder, node_name: str, index: int, x_scale: float, w_scale: np.ndarray) -> None:
    node = b.nodes[node_name]
    name = node.input[index]
    bias = b.idx.constant(name).astype(np.float64)
    scale = (np.float64(x_scale) * np.asarray(w_scale, dtype=np.float64)).reshape(-1)
    per_tensor = scale.size == 1  # a scalar scale and no `axis`: DequantizeLinear takes `axis` from opset 13
    q = np.clip(np.rint(bias / (scale[0] if per_tensor else scale)), -(2**31), 2**31 - 1).astype(np.int32)
    qn = b.const(f"{name}_quantized", q)
    sn = b.const(f"{name}_scale", np.float32(scale[0]) if per_tensor else scale.astype(np.float32))
    zn = b.const(f"{name}_zero_point", np.zeros((), np.int32) if per_tensor else np.zeros(bias.shape, np.int32))
    out = unique_name(f"{name}_dequantized", b.taken)
    attrs = {} if per_tensor else {"axis": 0}
    b.add(node_name, helper.make_node("DequantizeLinear", [qn, sn, zn], [out],
                                      name=unique_name(f"{name}_DequantizeLinear", b.taken), **attrs))
    node.input[index] = out


def _quantize_dynamic(b: _Builder, node_name: str, axis: int | None, shared: dict[str, tuple],
                      dynamic, reduce_range: bool = False) -> None:
    node = b.nodes[node_name]
    x, wname = node.input[0], node.input[1]
    w = b.idx.constant(wname).astype(np.float32)
    q, scale, zp = quantize_weight(w, axis, "int8", reduce_range)
    qn = b.const(f"{wname}_quantized", q)
    zn = b.const(f"{wname}_zero_point", zp if axis is not None else zp.reshape(()))
    sn = b.const(f"{wname}_scale", scale if axis is not None else np.float32(scale))
    if x not in shared:
        outs = [unique_name(f"{x}_{s}", b.taken) for s in ("quantized", "scale", "zero_point")]
        first = _first_reader(b, {n.name for n in b.idx.consumers.get(x, []) if n.name in dynamic})
        b.add(first, helper.make_node("DynamicQuantizeLinear", [x], outs,
                                          name=unique_name(f"{x}_DynamicQuantizeLinear", b.taken)))
        shared[x] = tuple(outs)
    xq, xs, xz = shared[x]
    base = node_name or wname
    acc = unique_name(f"{base}_int32", b.taken)
    cast = unique_name(f"{base}_float", b.taken)
    both = unique_name(f"{base}_scale", b.taken)
    b.add(node_name, helper.make_node("MatMulInteger", [xq, qn, xz, zn], [acc],
                                      name=unique_name(f"{base}_MatMulInteger", b.taken)))
    b.add(node_name, helper.make_node("Cast", [acc], [cast], to=TensorProto.FLOAT,
                                      name=unique_name(f"{base}_Cast", b.taken)))
    b.add(node_name, helper.make_node("Mul", [xs, sn], [both], name=unique_name(f"{base}_ScaleMul", b.taken)))
    b.add(node_name, helper.make_node("Mul", [cast, both], [node.output[0]],
                                      name=unique_name(f"{base}_OutputMul", b.taken)))
    b.removed.add(node_name)


def apply_plan(proto: onnx.ModelProto, plan: QDQPlan) -> onnx.ModelProto:
    """A copy of `proto` rewritten by `plan` (see the module docstring). Node names must be unique."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    names = [n.name for n in out.graph.node]
    if len(set(names)) != len(names) or "" in names:
        raise ValueError("apply_plan needs unique, non-empty node names (run name_nodes first)")
    b = _Builder(out)
    weight_scales: dict[tuple[str, int], np.ndarray] = {}
    for (node_name, index), axis in plan.weights.items():
        if (node_name, index) in plan.weight_values:
            weight_scales[(node_name, index)] = plan.weight_values[(node_name, index)][1]
            continue
        w = b.idx.constant(b.nodes[node_name].input[index]).astype(np.float32)
        weight_scales[(node_name, index)] = quantize_weight(w, axis, plan.weight_dtype,
                                                            (node_name, index) in plan.seven_bit)[1]
    for (node_name, index), (x_index, w_index) in plan.biases.items():
        x = b.nodes[node_name].input[x_index]
        if x in plan.activations and (node_name, w_index) in weight_scales:
            _quantize_bias(b, node_name, index, plan.activations[x].scale, weight_scales[(node_name, w_index)])
    for (node_name, index), axis in plan.weights.items():
        _quantize_weight_input(b, node_name, index, axis, plan.weight_dtype,
                               plan.weight_values.get((node_name, index)), (node_name, index) in plan.seven_bit)
    for tensor, aq in plan.activations.items():
        if aq.readers:
            _quantize_activation(b, tensor, aq, plan.fold_smooth_mul)
    shared: dict[str, tuple] = {}
    for node_name, axis in plan.dynamic.items():
        _quantize_dynamic(b, node_name, axis, shared, plan.dynamic, (node_name, 1) in plan.seven_bit)
    return b.finish()


def name_nodes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed (or duplicate-named) node a unique name, in place; returns `proto`."""
    taken: set[str] = set()
    for i, node in enumerate(proto.graph.node):
        if not node.name or node.name in taken:
            node.name = unique_name(node.name or f"{node.op_type}_{i}", taken | {n.name for n in proto.graph.node})
        taken.add(node.name)
    return proto
