"""Weight-only int4 / int8, block-wise (schemes "int4-weight", "int8-weight").

Each MatMul with a constant 2-D weight W[K, N] becomes ONNX Runtime's `com.microsoft.MatMulNBits` (4 or 8
bits; both run on the CPU provider of ORT 1.32). W is cut along K into blocks of `block_size` rows; each block
of one column gets its own scale (and zero point when asymmetric):

    symmetric:  s = max|w| / 2^(b-1),  q = clamp(round(w / s), -2^(b-1), 2^(b-1) - 1)
    asymmetric: s = (max(w, 0) - min(w, 0)) / (2^b - 1),  z = round(-min / s),  q = clamp(round(w / s) + z)

Activations stay float; `accuracy_level` is ORT's compute type (0/1: fp32 compute, 4: activations quantised
to int8 per block at run time, which uses the VNNI int8 dot products and is faster but less exact). Gemm with a
constant B (transA = 0, alpha = 1) is first rewritten as MatMul (+ Add of beta·C) so it is quantised too. The
packing is done by ORT's own MatMulNBitsQuantizer (C++ kernels); the choice of nodes and options is hasten's.
MatMulNBits is an ONNX Runtime contrib op: OpenVINO cannot run these models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hasten.errors import QuantizationError
from hasten.quantize.base import QuantConfig, QuantResult, register

BLOCK_SIZES = (16, 32, 64, 128, 256)


@dataclass(frozen=True)
class _WeightOnlyConfig(QuantConfig):
    """block_size: rows of W per scale (power of two, 16..256). symmetric: no zero point.
    accuracy_level: ORT MatMulNBits compute type (0 = fp32, 4 = int8 activations). exclude: node names."""

    bits: ClassVar[int] = 0
    #: MatMulNBits is a contrib op (com.microsoft): only backends that run that domain take it
    emits_domains: ClassVar[tuple[str, ...]] = ("com.microsoft",)
    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int = 0
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        if self.block_size not in BLOCK_SIZES:
            raise QuantizationError(f"{self.scheme}: block_size must be one of {BLOCK_SIZES}, got "
                                    f"{self.block_size}")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise QuantizationError(f"{self.scheme}: accuracy_level must be 0..4, got {self.accuracy_level}")
        object.__setattr__(self, "exclude", tuple(self.exclude))

    @classmethod
    def search_space(cls) -> dict[str, list]:
        return {"block_size": [32, 64, 128], "symmetric": [True, False], "accuracy_level": [0, 4]}


@dataclass(frozen=True)
class Int4WeightConfig(_WeightOnlyConfig):
    scheme: ClassVar[str] = "int4-weight"
    bits: ClassVar[int] = 4


@dataclass(frozen=True)
class Int8WeightConfig(_WeightOnlyConfig):
    scheme: ClassVar[str] = "int8-weight"
    bits: ClassVar[int] = 8


def gemm_to_matmul(proto: onnx.ModelProto) -> list[str]:
    """Rewrite (in place) each Gemm with a constant 2-D B, transA = 0 and alpha = 1 as MatMul (+ Add of beta·C).

    The MatMul keeps the Gemm's name; returns the names rewritten."""
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    out_nodes, rewritten = [], []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        b = inits.get(node.input[1]) if node.op_type == "Gemm" and len(node.input) > 1 else None
        if b is None or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or len(b.dims) != 2 \
                or b.data_type != onnx.TensorProto.FLOAT:
            out_nodes.append(node)
            continue
        w = numpy_helper.to_array(b)
        b_name = node.input[1]
        if attrs.get("transB", 0):
            b_name = f"{node.input[1]}/T"
            if b_name not in inits:
                t = numpy_helper.from_array(np.ascontiguousarray(w.T), b_name)
                graph.initializer.append(t)
                inits[b_name] = t
        has_c = len(node.input) > 2 and node.input[2]
        mm_out = f"{node.output[0]}/matmul" if has_c else node.output[0]
        out_nodes.append(helper.make_node("MatMul", [node.input[0], b_name], [mm_out], name=node.name))
        if has_c:
            c_name = node.input[2]
            beta = attrs.get("beta", 1.0)
            if beta != 1.0:
                c = inits.get(c_name)
                if c is None:
                    out_nodes[-1] = node  # a non-constant C scaled by beta: leave the Gemm
                    continue
                c_name = f"{c_name}/beta"
                graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(c) * beta, c_name))
            out_nodes.append(helper.make_node("Add", [mm_out, c_name], [node.output[0]], name=f"{node.name}/bias"))
        rewritten.append(node.name)
    del graph.node[:]
    graph.node.extend(out_nodes)
    used = {i for n in graph.node for i in n.input} | {i.name for i in graph.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return rewritten


def weight_matmuls(proto: onnx.ModelProto) -> tuple[list[str], dict[str, str]]:
    """(MatMul nodes MatMulNBits can take, {other MatMul/Gemm: why not})."""
    inits = {t.name: t for t in proto.graph.initializer}
    ok, skipped = [], {}
    for node in proto.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        b = inits.get(node.input[1])
        if node.op_type == "Gemm":
            skipped[node.name] = "Gemm with transA, alpha != 1 or a non-constant B"
        elif b is None:
            skipped[node.name] = "B is not a constant (activation x activation)"
        elif b.data_type != onnx.TensorProto.FLOAT:
            skipped[node.name] = "B is not float32"
        elif len(b.dims) < 2 or any(d != 1 for d in b.dims[:-2]):
            skipped[node.name] = f"B has shape {list(b.dims)}, not [K, N]"
        else:
            ok.append(node.name)
    return ok, skipped


def quantize_weight_only(model, config: _WeightOnlyConfig) -> QuantResult:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    proto = model.proto()
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    rewritten = gemm_to_matmul(proto)
    candidates, skipped = weight_matmuls(proto)
    for name in config.exclude:
        if name in candidates:
            candidates.remove(name)
            skipped[name] = "excluded by the user"
    if not candidates:
        raise QuantizationError(f"{config.scheme}: the model has no MatMul/Gemm with a constant 2-D weight to "
                                f"quantise (skipped: {skipped or 'none'})")
    algo = DefaultWeightOnlyQuantConfig(block_size=config.block_size, is_symmetric=config.symmetric,
                                        accuracy_level=config.accuracy_level or None, bits=config.bits)
    quantizer = MatMulNBitsQuantizer(proto, bits=config.bits, block_size=config.block_size,
                                     is_symmetric=config.symmetric, accuracy_level=config.accuracy_level or None,
                                     nodes_to_exclude=sorted(skipped), algo_config=algo)
    ort_logger = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = ort_logger.level
    ort_logger.setLevel(logging.WARNING)
    try:
        quantizer.process()
    except Exception as exc:
        raise QuantizationError(f"{config.scheme}: ONNX Runtime's MatMulNBits quantizer failed: {exc}") from exc
    finally:
        ort_logger.setLevel(level)
    out = quantizer.model.model
    present = {n.name for n in out.graph.node}
    quantized = [n for n in candidates if n not in present]
    report = {
        "bits": config.bits,
        "block_size": config.block_size,
        "symmetric": config.symmetric,
        "accuracy_level": config.accuracy_level,
        "quantized": quantized,
        "skipped": [{"node": n, "reason": r} for n, r in skipped.items()],
        "gemm_rewritten": rewritten,
        "runtime": "onnxruntime (com.microsoft.MatMulNBits); OpenVINO cannot run it",
    }
    return QuantResult(model.derive(out, config.scheme), config, report)


@register(Int4WeightConfig)
def quantize_int4_weight(model, config: Int4WeightConfig, calib) -> QuantResult:
    return quantize_weight_only(model, config)


@register(Int8WeightConfig)
def quantize_int8_weight(model, config: Int8WeightConfig, calib) -> QuantResult:
    return quantize_weight_only(model, config)
