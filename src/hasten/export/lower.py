"""Lower an int8 QDQ ONNX model to an integer `Program`, op for op as ONNX Runtime runs it.

The graph lowered is the one ONNX Runtime itself executes: the model is optimised by ONNX Runtime at the
"extended" level (its QDQ fusions: QLinearConv, QGemm, QLinearAdd, QLinearGlobalAveragePool, ...; no layout
rewrites), so every kernel of the program has exactly one fused ONNX Runtime kernel as its reference. What ONNX
Runtime still runs in float (a Conv it could not fuse, a LayerNormalization, ...) cannot become integer C: every
such node is listed, by name, in one `ExportError`.

Boundaries: the model's float input must go into a QuantizeLinear (through layout-only ops at most) and its
output come out of a DequantizeLinear (or be int8 already, or the float output of ONNX Runtime's QGemm); the
program's input and output are those tensors, and their scale and zero point are part of the exported API.
The ops themselves are lowered in `hasten.export.ops`.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

from hasten.errors import ExportError
from hasten.export.ops import DISPATCH, LAYOUT, Lowering, Refuse, pixels
from hasten.export.program import Layer, Program


def ort_graph(proto: onnx.ModelProto) -> onnx.ModelProto:
    """`proto` (batch fixed to 1) as ONNX Runtime runs it on the CPU after its extended-level fusions."""
    import onnxruntime as ort

    proto = fixed_batch(proto)
    with tempfile.TemporaryDirectory(prefix="hasten-export-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "ort.onnx"
        onnx.save(proto, src)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(dst)
        options.log_severity_level = 3
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        return onnx.load(dst)


def fixed_batch(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with every symbolic input dim set to 1 (microcontrollers run batch 1)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for value in out.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    del out.graph.value_info[:]
    for value in out.graph.output:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.Clear()
    return out



def lower(proto: onnx.ModelProto) -> Program:
    """The integer program of an int8 QDQ model; `ExportError` lists every node that cannot be exported."""
    graph = ort_graph(proto).graph
    low = Lowering(graph)
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ExportError(f"export: a model with one input and one output is expected; this one has "
                          f"{len(graph.input)} inputs and {len(graph.output)} outputs")
    nodes = list(graph.node)
    first, last = _input_boundary(low, graph, nodes), _output_boundary(low, graph, nodes)
    for node in nodes:
        if node is first or node is last:
            continue
        if node is low.input_q:  # after layout-only ops on the input's codes: a view of them
            x = low.tensor(node.input[0])
            low.add(node.output[0], x.shape, x.scale, x.zero_point, alias=x.name)
            continue
        if any(i in low.skipped for i in node.input):  # downstream of a node already listed
            low.skipped.update(node.output)
            if _key(node) not in DISPATCH and node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                low.refuse(node, _unsupported(node, low))
            continue
        if node.op_type == "DequantizeLinear":  # what reads it runs in float: that node is the one listed
            low.floats.update(node.output)
            continue
        handler = DISPATCH.get(_key(node))
        if any(i in low.floats for i in node.input):
            low.refuse(node, f"{node.name or '?'} ({node.op_type}): ONNX Runtime runs it in float on "
                                   f"dequantised inputs (no integer kernel formed)")
            _skip_outputs(low, node)
            continue
        if handler is None:
            low.refuse(node, _unsupported(node, low))
            _skip_outputs(low, node)
            continue
        try:
            handler(low, node)
        except Refuse as exc:
            low.refuse(node, f"{node.name or '?'} ({node.op_type}): {exc}")
            _skip_outputs(low, node)
    output = graph.output[0].name if last is None else last.input[0]
    if low.unsupported:
        counts = Counter(low.unsupported_ops).most_common()
        ops = ", ".join(f"{op} x{n}" if n > 1 else op for op, n in counts)
        lead = "".join(f"{p}; " for p in (low.input_problem, low.output_problem) if p)
        raise ExportError(f"export: {lead}{len(low.unsupported)} node(s) cannot run as integer C ({ops}; "
                          f"as ONNX Runtime runs them after its QDQ fusions): " + "; ".join(low.unsupported))
    if low.output_problem:
        raise ExportError(f"export: {low.output_problem}")
    if output not in low.tensors:
        raise ExportError(f"export: the output {output!r} is not produced by an int8 kernel")
    if last is not None:
        s, z = low.qparams(last, last.input[1], last.input[2] if len(last.input) > 2 else None)
        low.set_q(output, s, z)
    source = graph.input[0].name if first is None else first.output[0]
    program_input, program_output = _nchw_boundaries(low, source, output)
    low.tensors[program_input].kind = "input"
    low.tensors[program_output].kind = "output"
    return Program(low.tensors, low.layers, program_input, program_output, len(nodes))


def _input_boundary(low: Lowering, graph, nodes):
    """The QuantizeLinear that makes the program's int8 input, or None when the input is int8 already.

    Layout-only ops between the float input and its QuantizeLinear (a Reshape, a Transpose...) commute with
    a per-tensor quantisation: the program's input is then the model's input quantised, those ops run on
    int8 codes, and the QuantizeLinear becomes a view (`low.input_q`)."""
    value = graph.input[0]
    shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
    elem = value.type.tensor_type.elem_type
    if elem in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
        low.add(value.name, shape, None, None)
        return None
    name, chain = value.name, []
    while True:
        readers = [n for n in nodes if name in n.input]
        if len(readers) == 1 and _key(readers[0]) in LAYOUT and readers[0].input[0] == name:
            chain.append(readers[0])
            name = readers[0].output[0]
            continue
        break
    if len(readers) != 1 or readers[0].op_type != "QuantizeLinear":
        # every node that reads it runs in float: the main loop lists them all
        low.input_problem = (f"the input {value.name!r} ({onnx.TensorProto.DataType.Name(elem).lower()}) is not "
                             f"quantised by one QuantizeLinear (read by {', '.join(n.op_type for n in readers)})")
        low.floats.add(value.name)
        return None
    q = readers[0]
    s, z = low.qparams(q, q.input[1], q.input[2] if len(q.input) > 2 else None)
    if np.asarray(low.const(q.input[1])).size != 1:
        raise ExportError(f"export: the input's QuantizeLinear {q.name!r} is not per-tensor")
    low.add(value.name if chain else q.output[0], shape, s, z)
    if not chain:
        return q
    low.input_q = q
    return None


def _output_boundary(low: Lowering, graph, nodes):
    value = graph.output[0]
    if value.type.tensor_type.elem_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
        return None
    producer = next((n for n in nodes if value.name in n.output), None)
    if producer is not None and producer.op_type == "QGemm" and _input_at(producer, 7) == "":
        return None  # ONNX Runtime's QGemm writes the float output itself: the program's output is float
    if producer is None or producer.op_type != "DequantizeLinear":
        low.output_problem = (f"the output {value.name!r} must come from a DequantizeLinear (an int8 QDQ model "
                              f"whose output is quantised); it comes from "
                              f"{producer.op_type if producer else 'no node'}")
    return producer if producer is not None and producer.op_type == "DequantizeLinear" else None


def _key(node) -> tuple[str, str]:
    return (node.domain if node.domain != "ai.onnx" else "", node.op_type)


def _unsupported(node, low) -> str:
    return (f"{node.name or '?'} ({node.op_type}{', ' + node.domain if node.domain else ''}"
            f"{', float' if _is_float(node, low) else ''})")


def _input_at(node, k: int) -> str:
    return node.input[k] if len(node.input) > k else ""


def _nchw_boundaries(low: Lowering, program_input: str, program_output: str) -> tuple[str, str]:
    """The caller's buffers are in ONNX order: a 4-D input or output with channels and pixels gets a
    transpose between its NCHW bytes and the HWC layout the kernels use. Returns (input, output) names."""
    x = low.tensors[program_input]
    if x.channels_last and pixels(x.shape) > 1 and x.shape[1] > 1:
        raw = low.add(f"{x.name}/nchw", (1, x.size), x.scale, x.zero_point)
        low.layers.insert(0, Layer("to_hwc", f"{x.name}/to_hwc", [raw.name], [x.name], {"hwc": x.hwc()}))
        program_input = raw.name
    y = low.tensors[program_output]
    if y.channels_last and pixels(y.shape) > 1 and y.shape[1] > 1:
        raw = low.add(f"{y.name}/nchw", (1, y.size), y.scale, y.zero_point)
        low.layers.append(Layer("to_chw", f"{y.name}/to_chw", [y.name], [raw.name], {"hwc": y.hwc()}))
        program_output = raw.name
    return program_input, program_output


def _is_float(node, low) -> bool:
    return any(i and i not in low.tensors and i not in low.consts and i not in low.skipped for i in node.input)


def _skip_outputs(low: Lowering, node):
    low.skipped.update(node.output)
