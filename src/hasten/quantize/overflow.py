"""The overflow fix: which int8 layers get 7-bit weights, so kernels without VNNI do not saturate.

`overflow_fix` (an option of Int8StaticConfig and Int8DynamicConfig):
- "auto" (default): "none" where this host's int8 dot product does not saturate (VNNI, AMX, Arm:
  `hasten.measure.isa.host_int8_saturates()`); where it does, "measured" for static int8 and "u8u8" for
  dynamic int8 (the search's recipes are then right on every host);
- "none": 8-bit weights everywhere; "all": 7-bit weights ([-63, 63]) on every quantised layer; "first": on the
  first quantised layer only (NNCF's default overflow fix);
- "measured": per layer, the numpy model of the saturating kernel (hasten.quantize.saturation) runs on the
  layer's real inputs (a few calibration items, the activation parameters the model will use) and the layer
  gets 7-bit weights exactly when 8-bit weights through the saturating kernel are further from the float
  product than 7-bit weights (by output SQNR). Without calibration samples: every layer;
- "u8u8" (dynamic only): uint8 weights (ONNX Runtime's U8U8 kernels widen to int16 before multiplying and
  never saturate), full 8-bit resolution.
int8 attention (`attention` "qk"/"all"): OpenVINO runs query x key^T and probabilities x value as u8 x s8
(the left operand shifted to uint8), so with "all" / "measured" the key and value get the 7-bit grid too
(`fix_attention`). ONNX Runtime converts both operands of those MatMuls to uint8 (U8U8: never saturates).
The report (`overflow_report`) names the mode asked for and applied, the host's int8 path, the 7-bit
layers and, for "measured", each layer's clipped-pair rate and both SQNRs.
"""

from __future__ import annotations

import numpy as np
import onnx

from hasten.errors import QuantizationError
from hasten.quantize.graph import GraphIndex
from hasten.quantize.saturation import compare_layer, conv_rows, conv_weight_matrix

MODES = ("auto", "none", "first", "all", "measured")
DYNAMIC_MODES = (*MODES, "u8u8")
#: calibration items and rows (in all) per layer the numpy model runs on: at K = 384, M = 1536 that is 75M
#: pair sums, enough to see a clipping rate of 1e-6
MEASURE_SAMPLES = 8
MEASURE_ROWS = 256


def check_mode(mode: str, dynamic: bool = False) -> None:
    allowed = DYNAMIC_MODES if dynamic else MODES
    if mode not in allowed:
        raise QuantizationError(f"overflow_fix must be one of {', '.join(allowed)}, got {mode!r}")


def resolve(mode: str, dynamic: bool = False, saturates: bool | None = None) -> str:
    """The mode to apply: "auto" becomes "none" where the host's int8 dot product does not saturate,
    else "measured" (static) or "u8u8" (dynamic)."""
    if mode != "auto":
        return mode
    if saturates is None:
        from hasten.measure.isa import host_int8_saturates

        saturates = host_int8_saturates()
    if not saturates:
        return "none"
    return "u8u8" if dynamic else "measured"


def overflow_report(requested: str, applied: str, seven_bit: list[str], layers: dict | None = None,
                    reason: str = "") -> dict:
    from hasten.measure.isa import host_int8_isa, host_int8_saturates

    report = {"requested": requested, "applied": applied, "host_int8": host_int8_isa(),
              "host_saturates": host_int8_saturates(), "seven_bit": list(seven_bit)}
    if layers:
        report["layers"] = layers
    if reason:
        report["reason"] = reason
    return report


# -- the layers' real inputs ---------------------------------------------------------------------------
def capture(proto: onnx.ModelProto, tensors: list[str], calib, samples: int = MEASURE_SAMPLES
            ) -> dict[str, list[np.ndarray]]:
    """{tensor: [its value on each of the first `samples` calibration items, run one at a time]}."""
    from hasten.backends import reference_backend
    from hasten.model import Model

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    existing = {o.name for o in out.graph.output}
    for name in tensors:
        if name not in existing:
            out.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = reference_backend().compile(Model.from_proto(out))
    values: dict[str, list[np.ndarray]] = {t: [] for t in tensors}
    for feeds in calib.take(min(len(calib), samples)).feeds(1):
        result = session.run(feeds)
        for t in tensors:
            values[t].append(np.asarray(result[t], dtype=np.float32))
    return values


def _rows(x: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= rows else x[np.sort(rng.choice(len(x), rows, replace=False))]


def _matrix_view(node, idx: GraphIndex, w_index: int):
    """(weight as it is stored, channel axis, fn mapping a stored-layout array to [K, M] matrices per group,
    fn mapping one input value to its [R, K] rows per group), or None when the layer is not modelled."""
    w = idx.constant(node.input[w_index])
    if w is None or w_index != 1:
        return None
    if node.op_type == "MatMul" and w.ndim == 2:
        return w, 1, lambda a: [a], lambda x: [x.reshape(-1, x.shape[-1])]
    if node.op_type == "Gemm" and w.ndim == 2 and not idx.attr(node, "transA", 0):
        if idx.attr(node, "transB", 0):
            return w, 0, lambda a: [a.T], lambda x: [x.reshape(-1, x.shape[-1])]
        return w, 1, lambda a: [a], lambda x: [x.reshape(-1, x.shape[-1])]
    if node.op_type == "Conv" and w.ndim == 4 and idx.attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"):
        group = int(idx.attr(node, "group", 1))
        if w.shape[1] == 1 and group > 1:
            return None  # depthwise: a widening kernel, no pair sums
        kernel = tuple(w.shape[2:])
        attrs = {k: idx.attr(node, k) for k in ("strides", "pads", "dilations")}
        return (w, 0, lambda a: conv_weight_matrix(a, group),
                lambda x: conv_rows(x, kernel, attrs["strides"], attrs["pads"], attrs["dilations"], group))
    return None


def measure_layers(proto: onnx.ModelProto, layers: list[tuple[str, int, tuple | None]], calib,
                   per_channel: bool, act_dtype: str = "uint8", rows: int = MEASURE_ROWS) -> dict[str, dict]:
    """Run the numpy model on each layer (node name, weight input index, activation (scale, zero point) or
    None for dynamic int8: each item's own range). Returns {node: LayerSaturation.to_dict() or a reason}."""
    from hasten.quantize.primitives import choose_qparams
    from hasten.quantize.qdq import quantize_weight

    idx = GraphIndex(proto.graph)
    nodes = {n.name: n for n in proto.graph.node}
    views = {name: _matrix_view(nodes[name], idx, wi) for name, wi, _ in layers}
    inputs = list(dict.fromkeys(nodes[name].input[0] for name, _, _ in layers if views[name] is not None))
    values = capture(proto, inputs, calib) if inputs else {}
    rng = np.random.default_rng(0)
    out: dict[str, dict] = {}
    for name, _, act in layers:
        view = views[name]
        if view is None:
            out[name] = {"seven_bit": False, "reason": "not a u8 x s8 pair-sum kernel (or not modelled)"}
            continue
        w, axis, to_matrix, to_rows = view
        w = w.astype(np.float32)
        axis = axis if per_channel else None
        q8, s8, _ = quantize_weight(w, axis)
        q7, s7, _ = quantize_weight(w, axis, reduce_range=True)
        mats = [to_matrix(a) for a in (w, q8, q7)]
        sc8 = np.broadcast_to(s8, (w.shape[axis],)) if axis is not None else s8
        sc7 = np.broadcast_to(s7, (w.shape[axis],)) if axis is not None else s7
        xs = values[nodes[name].input[0]]
        per_item = max(1, rows // max(1, len(xs)))
        groups: dict[tuple, list[np.ndarray]] = {}  # (activation scale, zero point, group) -> rows
        for x in xs:
            if act is None:  # DynamicQuantizeLinear: uint8 over [min(0, x), max(0, x)] of this run
                scale, zp = (float(v) for v in choose_qparams(float(x.min()), float(x.max()), "uint8"))
            else:
                scale, zp = act
            for g, r in enumerate(to_rows(x)):
                groups.setdefault((float(scale), int(zp), g), []).append(_rows(r, per_item, rng))
        parts = []
        for (scale, zp, g), chunks in groups.items():
            m = mats[0][g].shape[1]
            gs8 = sc8[g * m:(g + 1) * m] if np.ndim(sc8) else sc8
            gs7 = sc7[g * m:(g + 1) * m] if np.ndim(sc7) else sc7
            parts.append((np.concatenate(chunks), scale, zp, mats[0][g], mats[1][g], gs8, mats[2][g], gs7))
        out[name] = compare_layer(parts, act_dtype if act is not None else "uint8").to_dict()
    return out


def choose(mode: str, names: list[str], measure) -> tuple[list[str], dict]:
    """(names given 7-bit weights, per-layer measurements) for an applied `mode`; `measure()` -> the
    measurements of `measure_layers` (called only for "measured")."""
    if mode in ("none", "u8u8") or not names:
        return [], {}
    if mode == "all":
        return list(names), {}
    if mode == "first":
        return [names[0]], {}
    layers = measure()
    return [n for n in names if layers.get(n, {}).get("seven_bit")], layers


def seven_bit_dynamic_weights(quantised: onnx.ModelProto, proto: onnx.ModelProto, names: list[str],
                              per_channel: bool) -> onnx.ModelProto:
    """Re-quantise the weights of the MatMuls `names` of ONNX Runtime's dynamic model to 7 bits ([-63, 63])."""
    from onnx import numpy_helper

    from hasten.quantize.qdq import quantize_weight

    idx = GraphIndex(proto.graph)
    inits = {t.name: t for t in quantised.graph.initializer}
    for node in (n for n in proto.graph.node if n.name in set(names)):
        wname = node.input[1]
        qt, st = inits.get(f"{wname}_quantized"), inits.get(f"{wname}_scale")
        if qt is None or st is None:
            raise QuantizationError(f"int8-dynamic: cannot find the quantised weight of '{node.name}' to keep "
                                    "it in 7 bits")
        q, scale, _ = quantize_weight(idx.constant(wname).astype(np.float32), 1 if per_channel else None,
                                      reduce_range=True)
        old_scale = numpy_helper.to_array(st)
        qt.CopyFrom(numpy_helper.from_array(q, qt.name))
        st.CopyFrom(numpy_helper.from_array(np.asarray(scale, np.float32).reshape(old_scale.shape), st.name))
    return quantised


# -- int8 attention: activation x activation MatMuls ----------------------------------------------------
def _point_of(tensor: str, idx: GraphIndex) -> str:
    """The tensor a MatMul input is a layout-only view of (where hasten.quantize.attention puts QDQ)."""
    from hasten.quantize.attention import LAYOUT_OPS

    producer = idx.producer.get(tensor)
    while producer is not None and producer.op_type in LAYOUT_OPS:
        tensor = producer.input[0]
        producer = idx.producer.get(tensor)
    return tensor


def attention_seven_bit(proto: onnx.ModelProto, acts: dict, mode: str, calib,
                        max_matrices: int = 16) -> tuple[list[str], dict]:
    """(attention tensors whose int8 grid becomes 7 bits, per-MatMul measurements) for the MatMuls of two
    quantised activations whose right operand is signed int8 (query x key^T, probabilities x value): the same
    u8 x s8 kernel runs them (the left operand shifted to uint8). `acts`: {tensor: ActQuant} of the plan;
    "all": every such right operand, "measured": where the numpy model says 7 bits are closer."""
    if mode not in ("all", "measured"):
        return [], {}
    idx = GraphIndex(proto.graph)
    found = []
    for node in proto.graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2 or any(idx.is_constant(i) for i in node.input):
            continue
        pa, pb = (_point_of(t, idx) for t in node.input)
        if pa in acts and pb in acts and acts[pb].dtype == "int8":
            found.append((node, pa, pb))
    if mode == "all" or not found:
        return list(dict.fromkeys(pb for _, _, pb in found)), {}
    values = capture(proto, list(dict.fromkeys(t for n, _, _ in found for t in n.input)), calib)
    layers, chosen = {}, []
    for node, pa, pb in found:
        qa, qb = acts[pa], acts[pb]
        s7 = qb.scale * 127.0 / 63.0
        parts = []
        for a_val, b_val in zip(values[node.input[0]], values[node.input[1]], strict=True):
            a2 = a_val.reshape(-1, *a_val.shape[-2:])
            b2 = np.broadcast_to(b_val, a_val.shape[:-2] + b_val.shape[-2:]).reshape(-1, *b_val.shape[-2:])
            for i in range(min(len(a2), max_matrices)):
                w = b2[i].astype(np.float32)
                q8 = np.clip(np.rint(w / qb.scale), -127, 127).astype(np.int8)
                q7 = np.clip(np.rint(w / s7), -63, 63).astype(np.int8)
                parts.append((a2[i], qa.scale, qa.zero_point, w, q8, qb.scale, q7, s7))
        measured = compare_layer(parts, qa.dtype).to_dict()
        layers[node.name] = {**measured, "tensor": pb}
        if measured["seven_bit"]:
            chosen.append(pb)
    return list(dict.fromkeys(chosen)), layers


def fix_attention(proto: onnx.ModelProto, plan, report: dict, calib) -> None:
    """Put the signed right operands of the int8 attention MatMuls of `plan` (a QDQPlan) on the 7-bit grid
    where `report["applied"]` (the static overflow fix) says so; records them in `report["attention"]`."""
    tensors, layers = attention_seven_bit(proto, plan.activations, report["applied"], calib)
    for t in tensors:
        plan.activations[t].scale *= 127.0 / 63.0  # the same range, integers within [-63, 63]
    report["attention"] = {"seven_bit": tensors, **({"layers": layers} if layers else {})}
