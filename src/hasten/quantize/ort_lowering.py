"""Lower QDQ MatMuls to ONNX Runtime's fused integer kernel (the output runs on ONNX Runtime only).

ONNX Runtime turns DequantizeLinear(x_q) @ DequantizeLinear(W_q) into its MatMulIntegerToFloat kernel by
itself, but leaves the bias Add that follows as a separate op. This rewrite emits

    MatMulIntegerToFloat(x_q, W_q, x_scale, W_scale, x_zero_point, W_zero_point, bias)   (com.microsoft)

directly, so the bias is added inside the kernel (the same arithmetic; measured a few percent faster on
all-MiniLM-L6-v2). A MatMul qualifies when its activation input is a per-tensor DequantizeLinear, its weight a
DequantizeLinear of a constant, and (optionally) its only reader an Add of a constant 1-D bias.
"""

from __future__ import annotations

import onnx
from onnx import helper

from hasten.quantize.graph import GraphIndex

MS_DOMAIN = "com.microsoft"


def lower_matmuls(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """(copy of `proto` with qualifying QDQ MatMuls lowered, names of the lowered MatMuls)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    idx = GraphIndex(g)
    replace: dict[str, list[onnx.NodeProto]] = {}
    removed: set[str] = set()
    lowered = []
    for node in g.node:
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
            continue
        a, b = (idx.producer.get(i) for i in node.input)
        if a is None or b is None or a.op_type != "DequantizeLinear" or b.op_type != "DequantizeLinear":
            continue
        if not idx.is_constant(b.input[0]) or idx.is_constant(a.input[0]) or len(a.input) < 3 or len(b.input) < 3:
            continue
        scale = idx.constant(a.input[1])
        if scale is None or scale.size != 1:
            continue
        inputs = [a.input[0], b.input[0], a.input[1], b.input[1], a.input[2], b.input[2]]
        output = node.output[0]
        readers = idx.consumers.get(output, [])
        if len(readers) == 1 and readers[0].op_type == "Add" and output not in idx.outputs:
            add = readers[0]
            other = [i for i in add.input if i != output]
            bias = idx.constant(other[0]) if len(other) == 1 else None
            if bias is not None and bias.ndim == 1:
                inputs.append(other[0])
                output = add.output[0]
                removed.add(add.name)
        replace[node.name] = [helper.make_node("MatMulIntegerToFloat", inputs, [output], domain=MS_DOMAIN,
                                               name=f"{node.name}/MatMulIntegerToFloat")]
        lowered.append(node.name)
    if not lowered:
        return out, []
    nodes = []
    for node in g.node:
        if node.name in replace:
            nodes.extend(replace[node.name])
        elif node.name not in removed:
            nodes.append(node)
    del g.node[:]
    g.node.extend(_live(nodes, {o.name for o in g.output}))
    if not any(o.domain == MS_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return out, lowered


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """`nodes` without the DequantizeLinear nodes nothing reads any more."""
    while True:
        used = {i for n in nodes for i in n.input} | outputs
        keep = [n for n in nodes if n.op_type != "DequantizeLinear" or any(o in used for o in n.output)]
        if len(keep) == len(nodes):
            return keep
        nodes = keep
