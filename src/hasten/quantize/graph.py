"""Small ONNX graph helpers shared by the int8 quantisers (protos in, protos out; no policy here)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def inferred_proto(model) -> onnx.ModelProto:
    """A fresh ModelProto of `model` (hasten Model or ModelProto) with inferred value types and shapes.

    ONNX shape inference (strict mode off) runs first; node outputs it leaves untyped (com.microsoft ops
    such as Attention or SkipLayerNormalization) are typed by ONNX Runtime's symbolic shape inference.
    Never raises: inference is a help, a value it cannot type stays untyped."""
    proto = model if isinstance(model, onnx.ModelProto) else model.proto()
    try:
        out = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception:
        out = onnx.ModelProto()
        out.CopyFrom(proto)
    missing = untyped_values(out)
    if missing:
        from hasten.measure.shapes import symbolic_value_infos

        found = symbolic_value_infos(out)
        out.graph.value_info.extend(found[n] for n in sorted(missing) if n in found and _typed(found[n]))
    return out


def _typed(vi: onnx.ValueInfoProto) -> bool:
    t = vi.type
    return t.HasField("tensor_type") and t.tensor_type.elem_type != 0 or t.HasField("sequence_type") \
        or t.HasField("optional_type")


def untyped_values(proto: onnx.ModelProto) -> set[str]:
    """Names of main-graph node outputs with no element type in the graph's value_info/outputs."""
    g = proto.graph
    typed = {v.name for v in (*g.value_info, *g.output, *g.input) if _typed(v)} | {t.name for t in g.initializer}
    return {o for n in g.node for o in n.output if o and o not in typed}


class GraphIndex:
    """Producers, consumers and constant values of a graph, for read-only queries."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.producer = {o: n for n in graph.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.initializers = {t.name: t for t in graph.initializer}
        self.constant_nodes = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
        self.outputs = {o.name for o in graph.output}

    def is_constant(self, name: str) -> bool:
        return name in self.initializers or name in self.constant_nodes

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant node output; None for activations."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.constant_nodes.get(name)
        if node is not None:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def attr(self, node: onnx.NodeProto, name: str, default=None):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_1`, `base_2`... whichever is not in `taken` (added to it)."""
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def all_names(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer} | {v.name for v in graph.input} | {n.name for n in graph.node}
    names |= {o for n in graph.node for o in n.output}
    return names
