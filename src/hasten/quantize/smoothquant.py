"""SmoothQuant (Xiao et al. 2023), hasten's own implementation, exact in float.

For a normalisation output X (LayerNormalization, or the decomposed pattern the TorchScript exporter emits:
Add(Mul(Div(...), gamma), beta)) read by MatMul/Gemm nodes with constant weights W (rows = input channels),
per input channel j:

    s_j = max|X_j|^α / max|W_j|^(1-α)          (max|W_j| over every weight the tensor feeds)
    X W = (X diag(1/s)) (diag(s) W)

so activation outliers migrate into the weights, which per-channel weight quantisation absorbs. The
division by s happens where it costs nothing:
- the normalisation output feeds only those MatMuls: divide gamma and beta by s ("norm" mode);
- it also feeds something else (BERT's post-LN residual Add): gamma cannot change, so a Mul by 1/s is inserted
  on the branch to the MatMuls only ("mul" mode). The static int8 quantiser then folds that Mul into the
  QuantizeLinear's per-channel scale (QuantizeLinear(X, σ·s) then DequantizeLinear(σ) equals quantising
  X/s with scale σ), so no extra op runs.
max|X_j| comes from the per-channel statistics of one calibration pass (hasten.quantize.stats); the smoothed
tensor's statistics are derived from them (`TensorStats.scaled(1/s)`), no second pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from hasten.quantize.graph import GraphIndex, all_names, unique_name

#: s_j is clipped to this range so a dead channel (max 0) cannot blow up the weights.
SCALE_LIMITS = (1e-4, 1e4)


@dataclass
class Smoothable:
    """A normalisation output and the weighted nodes reading it."""

    tensor: str
    norm: str  # node name of the normalisation (or of the final Add of the decomposed pattern)
    kind: str  # "LayerNormalization" | "decomposed"
    gamma: str | None
    beta: str | None
    consumers: list[str]  # MatMul/Gemm node names with a constant weight
    exclusive: bool  # True when nothing else reads the tensor


@dataclass
class SmoothReport:
    alpha: object  # the requested alpha (a float, or "auto" with per-tensor choices in `smoothed`)
    smoothed: dict[str, dict] = field(default_factory=dict)  # tensor -> {mode, nodes, new tensor, s range}
    #: quantised tensor -> (source tensor, factors): stats of the new tensor = stats[source].scaled(factors)
    derived: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"alpha": self.alpha if not isinstance(self.alpha, dict) else "auto", "smoothed": self.smoothed}


def _weight_of(node: onnx.NodeProto, tensor: str, idx: GraphIndex) -> tuple[str, int] | None:
    """(weight name, input-channel axis of the weight) when `node` is X @ W with X = `tensor`."""
    if node.op_type == "MatMul" and node.input[0] == tensor and idx.is_constant(node.input[1]):
        w = idx.constant(node.input[1])
        return (node.input[1], 0) if w is not None and w.ndim == 2 else None
    if node.op_type == "Gemm" and node.input[0] == tensor and idx.is_constant(node.input[1]):
        if idx.attr(node, "transA", 0):
            return None
        w = idx.constant(node.input[1])
        if w is None or w.ndim != 2:
            return None
        return node.input[1], (1 if idx.attr(node, "transB", 0) else 0)
    return None


def _norm_of(tensor: str, idx: GraphIndex):
    """(node, kind, gamma, beta) when `tensor` is a normalisation output over the last axis, else None."""
    node = idx.producer.get(tensor)
    if node is None:
        return None
    if node.op_type == "LayerNormalization" and idx.attr(node, "axis", -1) == -1 and len(node.input) >= 2:
        if idx.is_constant(node.input[1]) and (len(node.input) < 3 or not node.input[2]
                                               or idx.is_constant(node.input[2])):
            beta = node.input[2] if len(node.input) > 2 and node.input[2] else None
            return node, "LayerNormalization", node.input[1], beta
        return None
    if node.op_type == "Add":  # decomposed: Add(Mul(Div(x - mean, std), gamma), beta)
        consts = [i for i in node.input if idx.is_constant(i)]
        others = [i for i in node.input if not idx.is_constant(i)]
        if len(consts) != 1 or len(others) != 1:
            return None
        mul = idx.producer.get(others[0])
        if mul is None or mul.op_type != "Mul" or len(idx.consumers.get(others[0], [])) != 1:
            return None
        gam = [i for i in mul.input if idx.is_constant(i)]
        rest = [i for i in mul.input if not idx.is_constant(i)]
        if len(gam) != 1 or len(rest) != 1:
            return None
        div = idx.producer.get(rest[0])
        if div is None or div.op_type != "Div":
            return None
        g, b = idx.constant(gam[0]), idx.constant(consts[0])
        if g is None or b is None or g.ndim != 1 or b.shape != g.shape:
            return None
        return node, "decomposed", gam[0], consts[0]
    return None


def find_smoothable(proto: onnx.ModelProto, any_producer: bool = False) -> list[Smoothable]:
    """Every normalisation output read by at least one X @ W node with a constant 2-D weight; with
    `any_producer`, every other activation read by such nodes too (kind "any": always "mul" mode)."""
    idx = GraphIndex(proto.graph)
    found = []
    for tensor, readers in idx.consumers.items():
        if idx.is_constant(tensor):
            continue
        weighted = [n.name for n in readers if _weight_of(n, tensor, idx) is not None]
        if not weighted:
            continue
        norm = _norm_of(tensor, idx)
        if norm is None:
            if any_producer:
                producer = idx.producer.get(tensor)
                found.append(Smoothable(tensor, producer.name if producer is not None else tensor, "any",
                                        None, None, weighted, False))
            continue
        node, kind, gamma, beta = norm
        exclusive = len(weighted) == len(readers) and tensor not in idx.outputs
        found.append(Smoothable(tensor, node.name, kind, gamma, beta, weighted, exclusive))
    return found


def smoothing_factors(act_absmax: np.ndarray, weight_absmax: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = max|X_j|^α / max|W_j|^(1-α), 1 where either is 0, clipped to SCALE_LIMITS."""
    a = np.asarray(act_absmax, dtype=np.float64)
    w = np.asarray(weight_absmax, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.power(a, alpha) / np.power(w, 1.0 - alpha)
    s = np.where((a > 0) & (w > 0) & np.isfinite(s), s, 1.0)
    return np.clip(s, *SCALE_LIMITS)


def weights_of(proto_or_idx, cand: Smoothable) -> list[np.ndarray]:
    """The constant weights read through `cand`, each as [input channels, outputs]."""
    idx = proto_or_idx if isinstance(proto_or_idx, GraphIndex) else GraphIndex(proto_or_idx.graph)
    nodes = [n for n in idx.graph.node if n.name in cand.consumers]
    out = []
    for node in nodes:
        wname, axis = _weight_of(node, cand.tensor, idx)
        w = idx.constant(wname).astype(np.float64)
        out.append(w if axis == 0 else w.T)
    return out


def predicted_error(ts, weights: list[np.ndarray], s: np.ndarray, dtype: str = "uint8",
                    symmetric: bool = False) -> float:
    """Expected squared error of the MatMul outputs, summed over outputs, when X/s (per-tensor, min-max
    range from the per-channel statistics `ts`) and diag(s)·W (per output channel, symmetric int8) are
    quantised. Channels are taken as independent; an element smaller than half a step contributes its own
    square instead of step²/12."""
    from hasten.quantize.primitives import choose_qparams
    from hasten.quantize.qdq import quantize_weight

    meansq = ts.channel_meansq / (s * s)
    scale_x = float(choose_qparams(float((ts.channel_min / s).min()), float((ts.channel_max / s).max()),
                                   dtype, symmetric)[0])
    act_noise = np.minimum(scale_x**2 / 12.0, meansq)
    total = 0.0
    for w in weights:
        ws = w * s[:, None]
        q, scale, _ = quantize_weight(ws.astype(np.float32), 1)
        dw = q.astype(np.float64) * scale.astype(np.float64)[None, :] - ws
        total += float(act_noise @ (ws * ws).sum(axis=1)) + float(meansq @ (dw * dw).sum(axis=1))
    return total


ALPHA_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def choose_factors(ts, weights: list[np.ndarray], alpha, dtype: str = "uint8",
                   symmetric: bool = False) -> tuple[np.ndarray, float | None]:
    """(s, alpha used) for one tensor: a fixed alpha, or "auto": the alpha of ALPHA_GRID (or no smoothing,
    alpha None) with the smallest `predicted_error`."""
    wmax = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
    amax = ts.channel_absmax.astype(np.float64)
    if alpha != "auto":
        return smoothing_factors(amax, wmax, float(alpha)), float(alpha)
    best = (predicted_error(ts, weights, np.ones_like(amax), dtype, symmetric), np.ones_like(amax), None)
    for a in ALPHA_GRID:
        s = smoothing_factors(amax, wmax, a)
        err = predicted_error(ts, weights, s, dtype, symmetric)
        if err < best[0]:
            best = (err, s, a)
    return best[1], best[2]


def smooth(proto: onnx.ModelProto, factors: dict[str, np.ndarray], fold_into_norm: bool = True,
           any_producer: bool = False, alpha=None) -> tuple[onnx.ModelProto, SmoothReport]:
    """Apply SmoothQuant to a copy of `proto` with `factors[tensor]` = s (one per input channel; see
    `smoothing_factors` and `choose_factors`). Tensors without factors are left alone.

    `fold_into_norm=False` always inserts the Mul (keeps gamma/beta untouched). Returns the new proto and
    a report (`derived` maps each tensor that is now quantised instead of X to X's name and 1/s)."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    idx = GraphIndex(g)
    taken = all_names(g)
    report = SmoothReport(alpha)
    new_inits: dict[str, onnx.TensorProto] = {}
    replaced: set[str] = set()
    for cand in find_smoothable(out, any_producer):
        if cand.tensor not in factors:
            continue
        nodes = [n for n in g.node if n.name in cand.consumers]
        weights = [(n, *_weight_of(n, cand.tensor, idx)) for n in nodes]
        s = np.asarray(factors[cand.tensor], dtype=np.float64)
        if any(idx.constant(w).shape[axis] != s.shape[0] for _, w, axis in weights):
            raise ValueError(f"{len(s)} SmoothQuant factors do not match the weights read through "
                             f"'{cand.tensor}'")
        for node, wname, axis in weights:  # W' = diag(s) W (rows = input channels)
            w = idx.constant(wname).astype(np.float64)
            w = w * (s[:, None] if axis == 0 else s[None, :])
            new_name = unique_name(f"{wname}_smooth", taken)
            new_inits[new_name] = numpy_helper.from_array(w.astype(np.float32), new_name)
            replaced.add(wname)
            for i, name in enumerate(node.input):
                if name == wname:
                    node.input[i] = new_name
        inv = (1.0 / s).astype(np.float32)
        if cand.exclusive and fold_into_norm and cand.kind != "any":
            norm = next(n for n in g.node if n.name == cand.norm)
            for param in (cand.gamma, cand.beta):
                if param is None:
                    continue
                value = idx.constant(param).astype(np.float64) / s
                new_name = unique_name(f"{param}_smooth", taken)
                new_inits[new_name] = numpy_helper.from_array(value.astype(np.float32), new_name)
                replaced.add(param)
                holder = norm if param in norm.input else next(
                    n for n in g.node if param in n.input and n.output[0] in norm.input)
                for i, name in enumerate(holder.input):
                    if name == param:
                        holder.input[i] = new_name
            report.derived[cand.tensor] = (cand.tensor, inv)
            mode, quantised = "norm", cand.tensor
        else:
            scale_name = unique_name(f"{cand.tensor}_smooth_inv_scale", taken)
            new_inits[scale_name] = numpy_helper.from_array(inv, scale_name)
            smoothed = unique_name(f"{cand.tensor}_smooth", taken)
            mul = onnx.helper.make_node("Mul", [cand.tensor, scale_name], [smoothed],
                                        name=unique_name(f"{cand.norm}/SmoothQuantMul", taken))
            for node in nodes:
                for i, name in enumerate(node.input):
                    if name == cand.tensor:
                        node.input[i] = smoothed
            position = min(list(g.node).index(n) for n in nodes)
            g.node.insert(position, mul)
            report.derived[smoothed] = (cand.tensor, inv)
            mode, quantised = "mul", smoothed
        report.smoothed[cand.tensor] = {"mode": mode, "nodes": list(cand.consumers), "tensor": quantised,
                                        "s_min": float(s.min()), "s_max": float(s.max())}
        if isinstance(alpha, dict):
            report.smoothed[cand.tensor]["alpha"] = alpha.get(cand.tensor)
    g.initializer.extend(new_inits.values())
    _drop_unused_initializers(g, replaced)
    return out, report


def _drop_unused_initializers(g: onnx.GraphProto, names: set[str]) -> None:
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output} | {i.name for i in g.input}
    keep = [t for t in g.initializer if t.name in used or t.name not in names]
    if len(keep) != len(g.initializer):
        del g.initializer[:]
        g.initializer.extend(keep)
