"""int8 quantisation: dynamic (ONNX Runtime's quantize_dynamic mechanics) and static QDQ (hasten's choices).

Static int8, `Int8StaticConfig` (scheme "int8-static"), in four steps:
1. statistics: one streamed pass over the calibration samples (`collect_stats`, hasten.quantize.stats);
2. optional SmoothQuant (alpha) on normalisation outputs read by quantised MatMuls (hasten.quantize.smoothquant);
3. a plan: which nodes are quantised statically (MatMul/Gemm/Conv with constant weights; optionally
   activation-by-activation MatMuls), which run dynamic int8 (`dynamic_nodes`: per-sample activation ranges
   for outlier-heavy inputs such as the FFN-output MatMuls of BERT), which stay float (`nodes_to_exclude`);
   activation ranges by the calibration method; per-channel symmetric int8 weights; int32 biases;
   data-movement ops (MaxPool, Flatten, ...) between quantised nodes share their input's parameters so a
   CNN runs int8 end to end;
4. the QDQ rewrite (hasten.quantize.qdq). Only the quantised readers of a tensor read its DequantizeLinear;
   others (residual Adds) keep the float value. Options: SmoothQuant alpha (a float or "auto": per tensor,
   the alpha minimising the predicted MatMul output error), `smoothquant_scope` "norm" (MatMuls fed by a
   LayerNorm) or "all" (every MatMul input; a Mul by 1/s where nothing can absorb it), weight-quantisation
   bias correction (b' = b - E[x](Ŵ - W)), `attention` "qk" / "all" (int8 query and key, and also value
   and probabilities, of self-attention, hasten.quantize.attention: OpenVINO then runs the attention in
   int8), and `ort_ops` (lower to ONNX Runtime's MatMulIntegerToFloat with
   the bias inside; the model then runs on ONNX Runtime only).
`overflow_fix` (both schemes, hasten.quantize.overflow): 7-bit weights where a CPU without VNNI would
saturate int16 pair sums; "auto" (default) decides by this host's ISA and, where it saturates, by measuring
each layer with the numpy model of the instruction (hasten.quantize.saturation); dynamic int8 then uses
uint8 weights (U8U8) instead. GPTQ and bias correction round on the same grid. Reported as "overflow_fix".

For other quantisers (sensitivity, mixed precision): one statistics pass serves any number of variants,

    proto = name_nodes(inferred_proto(model))                  # hasten.quantize.qdq / .graph
    stats = collect_stats(model, calib, tensors=stats_tensors(proto, config),
                          hessian_tensors=gptq_inputs(proto, GraphIndex(proto.graph), quantisable_nodes(model)))
    result = quantize_static(model, config, calib, nodes_to_exclude=["/l0/MatMul"], stats=stats)

`quantisable_nodes(model, config)` lists the node names a config would quantise statically;
`stats_tensors(proto, config)` the activations it needs ranges for; `gptq_inputs(...)` the inputs whose
E[x^T x] GPTQ needs (only for `weight_rounding="gptq"`; without them the weights are rounded to nearest).
Recommended for transformers (all-MiniLM-L6-v2: cos 0.9987 vs fp32, bench/quantize_minilm.py):
`Int8StaticConfig(smoothquant=0.8, smoothquant_scope="all", weight_rounding="gptq")`, plus `ort_ops=True`
when the target is ONNX Runtime.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx

from hasten.errors import QuantizationError
from hasten.quantize.base import QuantConfig, QuantResult, register
from hasten.quantize.calibrate import METHODS, calibrate_range
from hasten.quantize.graph import GraphIndex, inferred_proto
from hasten.quantize.ops import (  # noqa: F401  (QUANTISABLE_OPS and the rest are part of this module's API)
    DEFAULT_OP_TYPES,
    OWN_RANGE_OPS,
    QUANTISABLE_OPS,
    SAME_PARAMS_OPS,
    WEIGHTED_OPS,
)
from hasten.quantize.primitives import choose_qparams
from hasten.quantize.qdq import ActQuant, QDQPlan, apply_plan, name_nodes
from hasten.quantize.stats import ActivationStats, activation_tensors, collect_stats


def _tuple(config, name):
    value = getattr(config, name)
    if isinstance(value, str):
        value = (value,)
    object.__setattr__(config, name, tuple(value))


@dataclass(frozen=True)
class Int8StaticConfig(QuantConfig):
    """Static int8 in QDQ format, calibrated on the user's samples (see the module docstring)."""

    scheme: ClassVar[str] = "int8-static"
    min_samples: ClassVar[int] = 16
    speed_options: ClassVar[tuple[str, ...]] = ("attention", "per_channel")  # change the kernels run
    search_priority: ClassVar[int] = 10  # first: the scheme options and mixed precision refine
    calibration: str = "minmax"
    percentile: float = 99.99
    per_channel: bool = True
    symmetric_activations: bool = False
    activation_dtype: str = "uint8"
    smoothquant: float | str | None = None
    smoothquant_scope: str = "norm"
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    nodes_to_exclude: tuple[str, ...] = ()
    dynamic_nodes: tuple[str, ...] = ()
    activation_matmuls: bool = False
    attention: str = "float"
    fold_smooth_mul: bool = False
    bias_correction: bool = False
    weight_rounding: str = "nearest"
    ort_ops: bool = False
    overflow_fix: str = "auto"

    def __post_init__(self):
        from hasten.quantize.overflow import check_mode

        for name in ("op_types", "nodes_to_exclude", "dynamic_nodes"):
            _tuple(self, name)
        check_mode(self.overflow_fix)
        if self.calibration not in METHODS:
            raise QuantizationError(f"unknown calibration method {self.calibration!r}; choose from "
                                    f"{', '.join(METHODS)}")
        if not 0.0 < self.percentile <= 100.0:
            raise QuantizationError(f"percentile must be in (0, 100], got {self.percentile}")
        sq = self.smoothquant
        if sq is not None and sq != "auto" and not (isinstance(sq, int | float) and 0.0 <= sq <= 1.0):
            raise QuantizationError(f"SmoothQuant alpha must be in [0, 1] or 'auto', got {sq!r}")
        if self.smoothquant_scope not in ("norm", "all"):
            raise QuantizationError(f"smoothquant_scope must be 'norm' (MatMuls fed by a LayerNorm) or 'all' "
                                    f"(every MatMul with a constant weight), got {self.smoothquant_scope!r}")
        if self.weight_rounding not in ("nearest", "gptq"):
            raise QuantizationError(f"weight_rounding must be 'nearest' or 'gptq', got {self.weight_rounding!r}")
        if self.attention not in ("float", "qk", "all"):
            raise QuantizationError(f"attention must be 'float', 'qk' (query and key int8) or 'all' (query, "
                                    f"key, value and probabilities int8), got {self.attention!r}")
        if self.activation_dtype not in ("uint8", "int8"):
            raise QuantizationError(f"activation_dtype must be uint8 or int8, got {self.activation_dtype!r}")
        unknown = sorted(set(self.op_types) - set(QUANTISABLE_OPS))
        if unknown:
            raise QuantizationError(f"int8-static cannot quantise op type(s) {unknown}; supported: "
                                    f"{', '.join(QUANTISABLE_OPS)}")

    @classmethod
    def search_space(cls) -> dict[str, list]:
        return {"calibration": list(METHODS), "per_channel": [True, False],
                "smoothquant": [None, 0.5, 0.65, 0.8], "smoothquant_scope": ["all"],
                "weight_rounding": ["gptq"], "attention": ["float", "qk", "all"]}

    def min_opset(self) -> int:
        """Per-channel DequantizeLinear (`axis`) needs opset 13; per-tensor QDQ 10."""
        return 13 if self.per_channel else 10


@dataclass(frozen=True)
class Int8DynamicConfig(QuantConfig):
    """Dynamic int8: int8 weights, activations quantised per run (ONNX Runtime's quantize_dynamic; Conv
    becomes ConvInteger)."""

    scheme: ClassVar[str] = "int8-dynamic"
    speed_options: ClassVar[tuple[str, ...]] = ("per_channel",)
    per_channel: bool = True
    reduce_range: bool = False
    op_types: tuple[str, ...] = ("MatMul", "Conv", "Attention")
    nodes_to_exclude: tuple[str, ...] = ()
    overflow_fix: str = "auto"

    def __post_init__(self):
        from hasten.quantize.overflow import check_mode

        for name in ("op_types", "nodes_to_exclude"):
            _tuple(self, name)
        check_mode(self.overflow_fix, dynamic=True)

    @classmethod
    def search_space(cls) -> dict[str, list]:
        return {"per_channel": [True, False]}

    def min_opset(self) -> int:
        """DynamicQuantizeLinear needs opset 11."""
        return 11


# -- dynamic ------------------------------------------------------------------------------------------
@register(Int8DynamicConfig)
def quantize_int8_dynamic(model, config: Int8DynamicConfig, calib=None) -> QuantResult:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from hasten.quantize import overflow

    proto = name_nodes(inferred_proto(model))
    eligible = [n.name for n in proto.graph.node
                if n.op_type in config.op_types and n.name not in config.nodes_to_exclude]
    if not eligible:
        raise QuantizationError(f"int8-dynamic: the model has no nodes of type {list(config.op_types)} to "
                                f"quantise (its ops: {sorted({n.op_type for n in proto.graph.node})})")
    applied = overflow.resolve(config.overflow_fix, dynamic=True)
    with tempfile.TemporaryDirectory(prefix="hasten-q-") as tmp:
        out = Path(tmp) / "dynamic.onnx"
        quantize_dynamic(proto, str(out), per_channel=config.per_channel,
                         reduce_range=config.reduce_range or applied == "all",
                         weight_type=QuantType.QUInt8 if applied == "u8u8" else QuantType.QInt8,
                         op_types_to_quantize=list(config.op_types), nodes_to_exclude=list(config.nodes_to_exclude))
        quantised = onnx.load(str(out))
    done = {n.op_type for n in quantised.graph.node}
    if not done & {"MatMulInteger", "DynamicQuantizeLinear", "QAttention", "ConvInteger", "DynamicQuantizeLSTM"}:
        raise QuantizationError("int8-dynamic: no node could be quantised (weights must be constant)")
    idx = GraphIndex(proto.graph)
    matmuls = [n.name for n in proto.graph.node if n.name in set(eligible) and _dynamic_eligible(n, idx)]
    reason = ""
    if applied == "measured" and calib is None:
        applied, reason = "all", "no calibration samples to measure on: every layer"
    seven, layers = overflow.choose(applied, matmuls, lambda: overflow.measure_layers(
        proto, [(n, 1, None) for n in matmuls], calib, config.per_channel))
    quantised = overflow.seven_bit_dynamic_weights(quantised, proto, seven, config.per_channel)
    report = {"scheme": config.scheme, "quantised": eligible, "kept_float": list(config.nodes_to_exclude),
              "overflow_fix": overflow.overflow_report(config.overflow_fix, applied, seven, layers, reason)}
    return QuantResult(model.derive(quantised, _step(config)), config, report)


def _step(config: QuantConfig) -> str:
    fields = ", ".join(f"{f.name}={getattr(config, f.name)!r}" for f in dataclasses.fields(config)
                       if getattr(config, f.name) != f.default)
    return f"{config.scheme}({fields})"


# -- static: which nodes -----------------------------------------------------------------------------
def _weight_index(node: onnx.NodeProto, idx: GraphIndex) -> int | None:
    """Input index of the constant weight of a MatMul/Gemm/Conv, None when it has none."""
    if node.op_type in ("Gemm", "Conv") and len(node.input) > 1 and idx.is_constant(node.input[1]):
        return 1
    if node.op_type == "MatMul" and len(node.input) == 2:
        for i in (1, 0):
            if idx.is_constant(node.input[i]) and not idx.is_constant(node.input[1 - i]):
                w = idx.constant(node.input[i])
                return i if w is not None and w.ndim == 2 and i == 1 else None
    return None


def _activation_inputs(node: onnx.NodeProto, idx: GraphIndex, activation_matmuls: bool) -> list[int] | None:
    """Indices of the inputs to quantise as activations; None when the node is not statically quantisable."""
    w = _weight_index(node, idx)
    if node.op_type in ("Gemm", "Conv"):
        return [0] if w == 1 and not idx.is_constant(node.input[0]) else None
    if node.op_type == "MatMul":
        if w == 1:
            return [0]
        if activation_matmuls and not any(idx.is_constant(i) for i in node.input):
            return [0, 1]
    return None


def quantisable_nodes(model, config: Int8StaticConfig | None = None) -> list[str]:
    """Names of the weighted nodes `config` would quantise statically, in graph order (before exclusions)."""
    config = config or Int8StaticConfig()
    proto = name_nodes(inferred_proto(model))
    idx = GraphIndex(proto.graph)
    return [n.name for n in proto.graph.node if n.op_type in WEIGHTED_OPS and n.op_type in config.op_types
            and _activation_inputs(n, idx, config.activation_matmuls) is not None]


def _dynamic_eligible(node: onnx.NodeProto, idx: GraphIndex) -> bool:
    return node.op_type == "MatMul" and _weight_index(node, idx) == 1


def _weight_axis(node: onnx.NodeProto, idx: GraphIndex, per_channel: bool) -> int | None:
    if not per_channel:
        return None
    if node.op_type == "Gemm":
        return 0 if idx.attr(node, "transB", 0) else 1
    return 0 if node.op_type == "Conv" else 1


def stats_tensors(proto: onnx.ModelProto, config: Int8StaticConfig) -> list[str]:
    """Every activation tensor `config` may need a range for (with no node excluded)."""
    idx = GraphIndex(proto.graph)

    def wanted(node):
        if node.op_type in WEIGHTED_OPS:
            return node.op_type in config.op_types and _activation_inputs(
                node, idx, config.activation_matmuls) is not None
        return node.op_type in config.op_types

    tensors = activation_tensors(proto, wanted)
    if config.attention != "float":
        from hasten.quantize.attention import attention_points

        tensors += [t for t in attention_points(proto, config.attention, idx) if t not in tensors]
    return tensors


# -- static: the handler ------------------------------------------------------------------------------
@register(Int8StaticConfig)
def quantize_int8_static(model, config: Int8StaticConfig, calib) -> QuantResult:
    return quantize_static(model, config, calib)


def quantize_static(model, config: Int8StaticConfig, calib=None, nodes_to_exclude=(),
                    stats: ActivationStats | None = None, progress=None) -> QuantResult:
    """Static int8 QDQ of `model`. `nodes_to_exclude` adds to `config.nodes_to_exclude`; `stats` from
    `collect_stats(model, calib)` (of this same model) skips the calibration pass. Returns a QuantResult whose
    report lists the static, dynamic and float nodes, the SmoothQuant factors and the ranges."""
    from hasten.quantize.prepare import upgrade_for

    model, config = upgrade_for(model, config)  # callers other than quantize() (sensitivity) skip its prepare
    proto = name_nodes(inferred_proto(model))
    idx = GraphIndex(proto.graph)
    excluded = set(config.nodes_to_exclude) | set(nodes_to_exclude)
    dynamic_wanted = set(config.dynamic_nodes) - excluded
    static, float_kept = [], []
    for node in proto.graph.node:
        if node.op_type not in WEIGHTED_OPS or node.op_type not in config.op_types:
            continue
        if _activation_inputs(node, idx, config.activation_matmuls) is None:
            continue
        if node.name in excluded:
            float_kept.append(node.name)
        elif node.name not in dynamic_wanted:
            static.append(node.name)
    dynamic = [n.name for n in proto.graph.node if n.name in dynamic_wanted and _dynamic_eligible(n, idx)]
    bad_dynamic = sorted(dynamic_wanted - set(dynamic))
    if bad_dynamic:
        raise QuantizationError(f"dynamic_nodes {bad_dynamic[:5]} are not MatMuls with a constant 2-D weight "
                                "in this model")
    if not static and not dynamic:
        ops = sorted({n.op_type for n in proto.graph.node})
        raise QuantizationError(f"int8-static: no quantisable nodes (MatMul/Gemm/Conv with constant weights "
                                f"among op types {list(config.op_types)}, not excluded); the model's ops: {ops}")
    if static and stats is None:
        if calib is None:
            raise QuantizationError("int8-static needs calibration samples")
        hessians = gptq_inputs(proto, idx, static) if config.weight_rounding == "gptq" else ()
        stats = collect_stats(model, calib, tensors=stats_tensors(proto, config), hessian_tensors=hessians,
                              progress=progress)
    tensor_stats = dict(stats.tensors) if stats is not None else {}

    smooth_report = None
    if config.smoothquant is not None and static:
        proto, smooth_report = _smooth(proto, static, tensor_stats, config)
        idx = GraphIndex(proto.graph)

    seven, overflow_report = _overflow_fix(proto, idx, config, static, dynamic, tensor_stats, calib)
    weight_values, rounded = {}, []
    if config.weight_rounding == "gptq":
        weight_values, rounded = _gptq_weights(proto, idx, static, tensor_stats, config.per_channel, seven)
    corrected = []
    if config.bias_correction:
        proto, corrected = _correct_biases(proto, static + dynamic, tensor_stats, config.per_channel,
                                           weight_values, seven)
        idx = GraphIndex(proto.graph)
    plan = _plan(proto, idx, config, static, dynamic, tensor_stats)
    attention = _plan_attention(proto, idx, config, plan, tensor_stats) if config.attention != "float" else []
    if attention:
        from hasten.quantize.overflow import fix_attention

        fix_attention(proto, plan, overflow_report, calib)
    plan.weight_values = weight_values
    plan.seven_bit = {(n, 1) for n in seven}  # the weight is input 1 of every node that can have 7 bits
    out = _original_value_info(apply_plan(proto, plan), model)
    lowered = []
    if config.ort_ops:
        from hasten.quantize.ort_lowering import lower_matmuls

        out, lowered = lower_matmuls(out)
    report = {"scheme": config.scheme, "calibration": config.calibration, "static": static,
              "dynamic": dynamic, "kept_float": float_kept, "activations": len(plan.activations),
              "attention": attention,
              "smoothquant": smooth_report.to_dict() if smooth_report else None,
              "bias_corrected": corrected, "gptq": rounded, "overflow_fix": overflow_report,
              "emits_domains": sorted({n.domain for n in out.graph.node if n.domain not in ("", "ai.onnx")}),
              "samples": stats.samples if stats is not None else 0}
    return QuantResult(model.derive(out, _step(config)), config, report)


def _smooth(proto, static: list[str], tensor_stats: dict, config: Int8StaticConfig):
    from hasten.quantize.smoothquant import choose_factors, find_smoothable, smooth, weights_of

    static_set = set(static)
    idx = GraphIndex(proto.graph)
    factors, alphas = {}, {}
    for cand in find_smoothable(proto, config.smoothquant_scope == "all"):
        ts = tensor_stats.get(cand.tensor)
        if ts is None or ts.channel_absmax is None or not set(cand.consumers) <= static_set:
            continue
        s, alpha = choose_factors(ts, weights_of(idx, cand), config.smoothquant, config.activation_dtype,
                                  config.symmetric_activations)
        if alpha is not None:
            factors[cand.tensor], alphas[cand.tensor] = s, alpha
    proto, report = smooth(proto, factors, any_producer=config.smoothquant_scope == "all",
                           alpha=alphas if config.smoothquant == "auto" else config.smoothquant)
    for new, (source, inv) in report.derived.items():
        tensor_stats[new] = tensor_stats[source].scaled(inv, name=new)
    return proto, report


def _overflow_fix(proto, idx: GraphIndex, config: Int8StaticConfig, static: list[str], dynamic: list[str],
                  tensor_stats: dict, calib) -> tuple[set[str], dict]:
    """(names of the weighted nodes to give 7-bit weights, the report) by `config.overflow_fix`
    (hasten.quantize.overflow); "measured" runs the numpy model of the saturating kernel on each layer's
    calibration inputs quantised with the parameters the plan will use."""
    from hasten.quantize import overflow

    applied = overflow.resolve(config.overflow_fix)
    nodes = {n.name: n for n in proto.graph.node}
    wanted = {n for n in static if _weight_index(nodes[n], idx) == 1} | set(dynamic)
    names = [n.name for n in proto.graph.node if n.name in wanted]
    reason = ""
    if applied == "measured" and calib is None:
        applied, reason = "all", "no calibration samples to measure on: every layer"

    def measure():
        acts = _plan(proto, idx, config, static, dynamic, tensor_stats).activations
        layers = [(n, 1, None if n in dynamic else (acts[nodes[n].input[0]].scale,
                                                    acts[nodes[n].input[0]].zero_point)) for n in names]
        return overflow.measure_layers(proto, layers, calib, config.per_channel, config.activation_dtype)

    seven, layers = overflow.choose(applied, names, measure)
    return set(seven), overflow.overflow_report(config.overflow_fix, applied, seven, layers, reason)


def _original_value_info(out: onnx.ModelProto, model) -> onnx.ModelProto:
    """Drop the value types/shapes inferred for planning; keep only what the input model declared.

    Inferred shapes with unnamed symbolic dims (unk__N) make ONNX Runtime fuse Add + LayerNormalization into
    SkipLayerNormalization, which is slower on CPU than the two ops it replaces (measured on all-MiniLM-L6-v2).
    """
    declared = {v.name: v for v in model.proto().graph.value_info}
    names = {o for n in out.graph.node for o in n.output}
    del out.graph.value_info[:]
    out.graph.value_info.extend(v for name, v in declared.items() if name in names)
    return out


def gptq_inputs(proto, idx: GraphIndex, static: list[str]) -> list[str]:
    """Input tensors of the static MatMul/Gemm nodes whose weight GPTQ can round (2-D, rows = last axis)."""
    nodes = {n.name: n for n in proto.graph.node}
    return list(dict.fromkeys(nodes[n].input[0] for n in static if _gptq_weight(nodes[n], idx) is not None))


def _gptq_weight(node, idx: GraphIndex):
    """The weight as [input rows, outputs] and whether it is stored transposed, or None."""
    if node.op_type not in ("MatMul", "Gemm") or _weight_index(node, idx) != 1:
        return None
    w = idx.constant(node.input[1])
    if w is None or w.ndim != 2:
        return None
    transposed = node.op_type == "Gemm" and bool(idx.attr(node, "transB", 0))
    return (w.T if transposed else w), transposed


def _gptq_weights(proto, idx: GraphIndex, static: list[str], tensor_stats: dict, per_channel: bool,
                  seven_bit=frozenset()):
    """{(node, 1): (q, scale, zp)} rounded by GPTQ where the input's E[x^T x] is known (on the 7-bit grid
    for the nodes in `seven_bit`); names rounded."""
    from hasten.quantize.gptq import gptq_quantize

    nodes = {n.name: n for n in proto.graph.node}
    values, rounded = {}, []
    for name in static:
        node = nodes[name]
        found = _gptq_weight(node, idx)
        ts = tensor_stats.get(node.input[0])
        if found is None or ts is None or ts.second_moment is None:
            continue
        w, transposed = found
        if ts.second_moment.shape[0] != w.shape[0]:
            continue
        q, scale, zp = gptq_quantize(w, ts.second_moment, per_channel, reduce_range=name in seven_bit)
        values[(name, 1)] = (q.T if transposed else q, scale, zp)
        rounded.append(name)
    return values, rounded


def _correct_biases(proto, names: list[str], tensor_stats: dict, per_channel: bool, weight_values=None,
                    seven_bit=frozenset()):
    """Weight-quantisation bias correction: for y = x W + b with W quantised to Ŵ, E[ŷ - y] = E[x](Ŵ - W),
    so b' = b - E[x](Ŵ - W), with E[x] per channel from the statistics. MatMul + Add(constant bias) and Gemm
    with a constant bias; nodes whose input has no per-channel statistics are left alone."""
    from onnx import numpy_helper

    from hasten.quantize.graph import all_names, unique_name
    from hasten.quantize.qdq import quantize_weight

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    idx = GraphIndex(out.graph)
    taken = all_names(out.graph)
    nodes = {n.name: n for n in out.graph.node}
    corrected, new_inits = [], []
    for name in names:
        node = nodes[name]
        ts = tensor_stats.get(node.input[0])
        if ts is None or ts.channel_mean is None or _weight_index(node, idx) != 1:
            continue
        w = idx.constant(node.input[1]).astype(np.float32)
        if node.op_type == "Gemm" and idx.attr(node, "transB", 0):
            w = w.T
        if node.op_type not in ("MatMul", "Gemm") or w.ndim != 2 or w.shape[0] != ts.channel_mean.shape[0]:
            continue
        if weight_values and (name, 1) in weight_values:
            q, scale, zp = weight_values[(name, 1)]
            q = q.T if node.op_type == "Gemm" and idx.attr(node, "transB", 0) else q
        else:
            q, scale, zp = quantize_weight(w, 1 if per_channel else None, reduce_range=name in seven_bit)
        deq = (q.astype(np.float64) - zp.astype(np.float64)) * scale.astype(np.float64)
        delta = ts.channel_mean @ (deq - w.astype(np.float64))
        holder, bias_name = None, None
        if node.op_type == "Gemm" and len(node.input) > 2 and idx.is_constant(node.input[2]):
            holder, bias_name = node, node.input[2]
        else:
            readers = idx.consumers.get(node.output[0], [])
            if len(readers) == 1 and readers[0].op_type == "Add" and node.output[0] not in idx.outputs:
                other = [i for i in readers[0].input if i != node.output[0]]
                if len(other) == 1 and idx.is_constant(other[0]):
                    holder, bias_name = readers[0], other[0]
        if holder is None:
            continue
        bias = idx.constant(bias_name)
        if bias.size != delta.size:
            continue
        new = (bias.astype(np.float64) - delta.reshape(bias.shape)).astype(bias.dtype)
        new_name = unique_name(f"{bias_name}_corrected", taken)
        new_inits.append(numpy_helper.from_array(new, new_name))
        for i, inp in enumerate(holder.input):
            if inp == bias_name:
                holder.input[i] = new_name
        corrected.append(name)
    out.graph.initializer.extend(new_inits)
    return out, corrected


def _plan(proto, idx: GraphIndex, config: Int8StaticConfig, static: list[str], dynamic: list[str],
          tensor_stats: dict) -> QDQPlan:
    nodes = {n.name: n for n in proto.graph.node}
    plan = QDQPlan(fold_smooth_mul=config.fold_smooth_mul)
    readers: dict[str, set[str]] = {}
    for name in static:
        node = nodes[name]
        for i in _activation_inputs(node, idx, config.activation_matmuls):
            readers.setdefault(node.input[i], set()).add(name)
        w = _weight_index(node, idx)
        if w is None:  # activation x activation MatMul
            continue
        plan.weights[(name, w)] = _weight_axis(node, idx, config.per_channel)
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2] \
                and idx.is_constant(node.input[2]):
            plan.biases[(name, 2)] = (0, w)
    # data-movement and pooling ops between quantised nodes join the int8 chain (walk backwards)
    chain: list[onnx.NodeProto] = []
    for node in reversed(proto.graph.node):
        if node.op_type in SAME_PARAMS_OPS + OWN_RANGE_OPS and node.op_type in config.op_types \
                and node.name not in config.nodes_to_exclude and node.input and node.input[0] \
                and not idx.is_constant(node.input[0]) and readers.get(node.output[0]):
            readers.setdefault(node.input[0], set()).add(node.name)
            chain.append(node)
    ranges = {}
    for tensor in readers:
        ts = tensor_stats.get(tensor)
        if ts is None:
            raise QuantizationError(f"no calibration statistics for tensor '{tensor}'; collect them with "
                                    "collect_stats(model, calib) on this same model")
        ranges[tensor] = calibrate_range(ts, config.calibration, config.symmetric_activations,
                                         config.activation_dtype, config.percentile)
    for tensor, (lo, hi) in ranges.items():
        scale, zp = choose_qparams(lo, hi, config.activation_dtype, config.symmetric_activations)
        plan.activations[tensor] = ActQuant(float(scale), int(zp), config.activation_dtype, readers[tensor])
    for node in reversed(chain):  # graph order: outputs share their input's parameters
        if node.op_type in SAME_PARAMS_OPS and node.output[0] in plan.activations:
            src, dst = plan.activations[node.input[0]], plan.activations[node.output[0]]
            dst.scale, dst.zero_point = src.scale, src.zero_point
    for name in dynamic:
        plan.dynamic[name] = 1 if config.per_channel else None
    return plan


def _plan_attention(proto, idx: GraphIndex, config: Int8StaticConfig, plan: QDQPlan,
                    tensor_stats: dict) -> list[str]:
    """Add the attention's QDQ pairs to `plan` (hasten.quantize.attention): query, key (and value) symmetric
    int8, probabilities uint8 with zero point 0; a tensor already quantised for another reader keeps its
    parameters. Returns the tensors added."""
    from hasten.quantize.attention import attention_points

    added = []
    for tensor, (readers, kind) in attention_points(proto, config.attention, idx).items():
        if tensor in plan.activations:
            continue
        ts = tensor_stats.get(tensor)
        if ts is None:
            raise QuantizationError(f"no calibration statistics for attention tensor '{tensor}'; collect "
                                    "them with stats_tensors(proto, config) of this config")
        if kind == "probs":
            lo, hi = 0.0, calibrate_range(ts, config.calibration, False, "uint8", config.percentile)[1]
            scale, zp = choose_qparams(lo, hi, "uint8", False)
        else:
            lo, hi = calibrate_range(ts, config.calibration, True, "int8", config.percentile)
            scale, zp = choose_qparams(lo, hi, "int8", True)
        dtype = "uint8" if kind == "probs" else "int8"
        plan.activations[tensor] = ActQuant(float(scale), int(zp), dtype, set(readers))
        added.append(tensor)
    return added


def activation_ranges(stats: ActivationStats, config: Int8StaticConfig) -> dict[str, tuple[float, float]]:
    """{tensor: (lo, hi)} of every tensor in `stats` by `config`'s calibration method (for reports)."""
    return {n: calibrate_range(t, config.calibration, config.symmetric_activations, config.activation_dtype,
                               config.percentile) for n, t in stats.tensors.items()}


__all__ = ["Int8StaticConfig", "Int8DynamicConfig", "quantize_static", "quantisable_nodes", "stats_tensors",
           "collect_stats", "activation_ranges", "QUANTISABLE_OPS"]
