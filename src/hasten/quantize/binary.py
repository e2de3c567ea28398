"""Binary weights, XNOR-Net style (scheme "binary"; experimental).

Each weight of a MatMul / Gemm / Conv is replaced by its sign times a per-output-channel scale:

    W_b[c] = α_c · sign(W[c]),   α_c = mean |W[c]|        (sign(0) = +1, so every weight is one bit)

α_c = mean|W[c]| minimises ||W[c] - α·sign(W[c])||² (Rastegari et al., XNOR-Net, 2016), and the error is
exact: Σ(W - W_b)² = Σ W² - n·α², per channel of n weights. For Gaussian weights the SQNR is therefore
-10·log10(1 - 2/π) ≈ 4.4 dB per layer.

Storage: plain float initializers holding α·sign (default, `storage="float"`), or
`DequantizeLinear(int8 signs ∈ {-1, +1}, α per channel, axis)` (`storage="dequantize"`, opset >= 13), so a
later exporter can read the bits and the scales. Beware the latter on ONNX Runtime: from the "extended"
optimisation level it fuses DequantizeLinear(int8, per-channel) + MatMul into MatMulNBits with
accuracy_level 4, i.e. it also quantises the activations to int8, so the measured accuracy is no longer that of
binary weights alone. No runtime hasten targets has 1-bit kernels yet: the binary model runs at fp32 speed.
This scheme measures accuracy honestly, nothing more. Activations stay float (weight binarisation, not full
XNOR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
from onnx import numpy_helper

from hasten.errors import QuantizationError
from hasten.measure.accuracy import sqnr_db
from hasten.quantize.base import QuantConfig, QuantResult, register

BINARY_OPS = ("MatMul", "Gemm", "Conv")


@dataclass(frozen=True)
class BinaryConfig(QuantConfig):
    """keep_first_last: leave the first and last binarisable layers in float (their error costs the most).
    storage: "float" (α·sign initializers) or "dequantize" (int8 signs + per-channel α, DequantizeLinear).
    exclude: node names to leave in float."""

    scheme: ClassVar[str] = "binary"
    experimental: ClassVar[bool] = True  # no runtime here has 1-bit kernels: tried only when asked for
    keep_first_last: bool = True
    storage: str = "float"
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        if self.storage not in ("dequantize", "float"):
            raise QuantizationError(f"binary: storage must be 'dequantize' or 'float', got {self.storage!r}")
        object.__setattr__(self, "exclude", tuple(self.exclude))

    @classmethod
    def search_space(cls) -> dict[str, list]:
        return {"keep_first_last": [True]}


def binarize(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(signs as int8 in {-1, +1}, α of shape [w.shape[axis]]) with α = mean |w| over the other axes."""
    w = np.asarray(w, dtype=np.float32)
    signs = np.where(w >= 0, 1, -1).astype(np.int8)
    reduce = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    alpha = np.abs(w).mean(axis=reduce).astype(np.float32)
    return signs, alpha


def dequantize_binary(signs: np.ndarray, alpha: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * signs.ndim
    shape[axis % signs.ndim] = -1
    return signs.astype(np.float32) * alpha.reshape(shape)


def binary_sqnr_db(w: np.ndarray, axis: int) -> float:
    """Analytic SQNR of binarising `w`: 10·log10(Σ W² / Σ_c (Σ W[c]² - n·α_c²))."""
    w = np.asarray(w, dtype=np.float64)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    n = moved.shape[1]
    alpha = np.abs(moved).mean(axis=1)
    signal = float((moved**2).sum())
    noise = float(((moved**2).sum(axis=1) - n * alpha**2).sum())
    return sqnr_db(w, w) if noise <= 0 else float(10 * np.log10(signal / noise))


def weight_axis(node: onnx.NodeProto, w: np.ndarray) -> int | None:
    """The output-channel axis of the weight of `node`, or None when it is not a plain weight."""
    if node.op_type == "Conv":
        return 0 if w.ndim >= 3 else None
    if w.ndim != 2:
        return None
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 1  # MatMul: [K, N]


def binarisable(proto: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str, int]]:
    """(node, weight name, channel axis) of every MatMul/Gemm/Conv whose weight is a float initializer."""
    inits = {t.name: t for t in proto.graph.initializer}
    found = []
    for node in proto.graph.node:
        if node.op_type not in BINARY_OPS or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        t = inits.get(node.input[1])
        if t is None or t.data_type != onnx.TensorProto.FLOAT:
            continue
        axis = weight_axis(node, numpy_helper.to_array(t))
        if axis is not None:
            found.append((node, t.name, axis))
    return found


@register(BinaryConfig)
def quantize_binary(model, config: BinaryConfig, calib) -> QuantResult:
    proto = model.proto()
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    found = binarisable(proto)
    if not found:
        raise QuantizationError("binary: the model has no MatMul/Gemm/Conv with a constant float weight")
    skipped: dict[str, str] = {}
    if config.keep_first_last:
        skipped[found[0][0].name] = "first layer (keep_first_last)"
        skipped[found[-1][0].name] = "last layer (keep_first_last)"
    for node, _, _ in found:
        if node.name in config.exclude:
            skipped[node.name] = "excluded by the user"
    use_dq = config.storage == "dequantize" and model.opset >= 13
    inits = {t.name: t for t in proto.graph.initializer}
    uses = {}
    for node in proto.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    done, new_nodes = [], {}
    for node, wname, axis in found:
        if node.name in skipped:
            continue
        w = numpy_helper.to_array(inits[wname])
        signs, alpha = binarize(w, axis)
        target = wname if uses.get(wname, 0) == 1 else f"{wname}/binary/{node.name}"
        if use_dq:
            q_name, s_name = f"{target}/signs", f"{target}/alpha"
            proto.graph.initializer.extend([numpy_helper.from_array(signs, q_name),
                                            numpy_helper.from_array(alpha, s_name)])
            new_nodes[node.name] = onnx.helper.make_node(
                "DequantizeLinear", [q_name, s_name], [f"{target}/binary"], name=f"{node.name}/binary_dq",
                axis=axis)
            node.input[1] = f"{target}/binary"
        else:
            proto.graph.initializer.append(numpy_helper.from_array(dequantize_binary(signs, alpha, axis),
                                                                   f"{target}/binary"))
            node.input[1] = f"{target}/binary"
        done.append({"node": node.name, "op_type": node.op_type, "weight": wname, "channels": int(alpha.size),
                     "weight_sqnr_db": binary_sqnr_db(w, axis)})
    if not done:
        raise QuantizationError(f"binary: nothing left to binarise ({len(found)} layer(s), all kept in float: "
                                f"{sorted(skipped)}); set keep_first_last=False")
    if new_nodes:
        ordered = []
        for node in proto.graph.node:
            if node.name in new_nodes:
                ordered.append(new_nodes[node.name])
            ordered.append(node)
        del proto.graph.node[:]
        proto.graph.node.extend(ordered)
    used = {i for n in proto.graph.node for i in n.input} | {i.name for i in proto.graph.input}
    replaced = {d["weight"] for d in done}
    keep = [t for t in proto.graph.initializer if t.name in used or t.name not in replaced]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    report = {
        "binarised": done,
        "kept_float": [{"node": n, "reason": r} for n, r in skipped.items()],
        "storage": "DequantizeLinear(int8 signs, per-channel alpha)" if use_dq else "float initializers",
        "note": "experimental: no runtime has 1-bit kernels here; the model runs at fp32 speed and this "
                "scheme only measures what 1-bit weights cost in accuracy",
    }
    return QuantResult(model.derive(proto, "binary"), config, report)
