"""Where the query and key of self-attention can be quantised, so a runtime runs the attention in int8.

In a transformer exported to ONNX, the attention scores are `Softmax(MatMul(Q, K^T) / sqrt(d) [+ mask])`,
with Q and K the outputs of two projections (MatMul + bias Add) reshaped and transposed into heads. A
symmetric int8 QuantizeLinear/DequantizeLinear pair on each projection's output (before the layout ops)
lets OpenVINO's low-precision transformations move the int8 through Reshape/Transpose and run the score
MatMul in int8 (its attention subgraph runs in i8, measured on all-MiniLM-L6-v2). The zero point must be
0: an asymmetric (uint8) pair there keeps the subgraph in f32 and is slower than no pair at all.

`attention_points(proto, "qk")` finds the points: for every MatMul of two activations whose output reaches
a Softmax through element-wise ops (scale, mask), each input is walked back through layout-only ops; the
tensor where the walk stops is a point, read (through its QDQ pair) by the first layout op. With "all", the
value projection (the other input of the MatMul that reads the Softmax output) and the Softmax output itself
(unsigned, zero point 0: probabilities are in [0, 1]) are points too, so the whole attention can run in
int8; on all-MiniLM-L6-v2 that is faster again but costs fidelity (bench/quantize_minilm.py).
"""

from __future__ import annotations

import onnx

from hasten.quantize.graph import GraphIndex

#: ops that only move data (the walk from the score MatMul back to the projection passes through them)
LAYOUT_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze")
#: element-wise ops allowed between the score MatMul and its Softmax (1/sqrt(d) scale, additive mask)
SCORE_OPS = ("Div", "Mul", "Add", "Where", "Cast")


def _reaches_softmax(tensor: str, idx: GraphIndex, depth: int = 4) -> bool:
    for reader in idx.consumers.get(tensor, []):
        if reader.op_type == "Softmax":
            return True
        if depth and reader.op_type in SCORE_OPS and reader.output and \
                _reaches_softmax(reader.output[0], idx, depth - 1):
            return True
    return False


def score_matmuls(proto: onnx.ModelProto, idx: GraphIndex | None = None) -> list[onnx.NodeProto]:
    """MatMuls of two non-constant inputs whose output feeds a Softmax (the attention scores)."""
    idx = idx or GraphIndex(proto.graph)
    return [n for n in proto.graph.node
            if n.op_type == "MatMul" and len(n.input) == 2 and not any(idx.is_constant(i) for i in n.input)
            and _reaches_softmax(n.output[0], idx)]


SCOPES = ("qk", "all")


def attention_points(proto: onnx.ModelProto, scope: str = "qk",
                     idx: GraphIndex | None = None) -> dict[str, tuple[set[str], str]]:
    """{tensor: (names of the nodes that should read its DequantizeLinear, kind)} with kind "signed"
    (query, key, value: symmetric int8) or "probs" (the Softmax output: uint8 from 0). A tensor that is a
    graph input or output, or whose walk reaches a constant, is left out."""
    if scope not in SCOPES:
        raise ValueError(f"attention scope must be one of {SCOPES}, got {scope!r}")
    idx = idx or GraphIndex(proto.graph)
    graph_ends = {i.name for i in proto.graph.input} | {o.name for o in proto.graph.output}
    points: dict[str, tuple[set[str], str]] = {}

    def add(tensor: str, reader: onnx.NodeProto, kind: str) -> None:
        producer = idx.producer.get(tensor)
        while producer is not None and producer.op_type in LAYOUT_OPS:
            reader, tensor = producer, producer.input[0]
            producer = idx.producer.get(tensor)
        if producer is None or tensor in graph_ends or idx.is_constant(tensor):
            return
        points.setdefault(tensor, (set(), kind))[0].add(reader.name)

    for matmul in score_matmuls(proto, idx):
        for tensor in matmul.input:
            add(tensor, matmul, "signed")
    if scope == "all":
        for softmax in (n for n in proto.graph.node if n.op_type == "Softmax"):
            for pv in idx.consumers.get(softmax.output[0], []):
                if pv.op_type != "MatMul" or pv.input[0] != softmax.output[0] or idx.is_constant(pv.input[1]):
                    continue
                if softmax.output[0] not in graph_ends:
                    points.setdefault(softmax.output[0], (set(), "probs"))[0].add(pv.name)
                add(pv.input[1], pv, "signed")
    return points
