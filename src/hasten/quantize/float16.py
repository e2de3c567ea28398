"""fp16 and bf16: half-precision weights and compute, with automatic fp32 fallback (schemes "fp16", "bf16").

fp16 (`Float16Config`) rewrites the graph (own converter on onnx-ir):
- nodes of `LOW_OPS` (linear layers, elementwise maths, normalisation, pooling, data movement) run in fp16:
  their float32 inputs and outputs become float16, float32 initializers they read are stored as float16,
  `Cast(to=float)` becomes `Cast(to=float16)`, float Constants are converted; every other node (no fp16 kernel
  on CPU, integer/index semantics, custom domains, sub-graphs) stays fp32;
- Casts are inserted wherever an fp16 value meets an fp32 consumer and back; graph inputs and outputs keep
  their fp32 type, so the model is a drop-in replacement;
- fallback, measured: the candidate and the fp32 original run on the calibration samples with EVERY
  intermediate float tensor exposed. A tensor is bad when it holds inf/NaN where the original does not, or when
  ||c - r|| / ||r|| > `max_rel_error`. A tensor whose fp32 range exceeds fp16 (|x| > 65504/2) keeps its
  producer and consumers in fp32 at once; then each round puts back in fp32 the fp16 nodes where badness
  *starts* (bad output, all compared inputs good) and re-checks, until no tensor is bad. The report lists each
  node kept in fp32 and why.
ONNX Runtime's CPU provider has few fp16 kernels on x86 and inserts Casts around the others: fp16 halves the
file and weight memory but is rarely faster on this CPU; it is for GPUs and fp16-capable CPUs. The check runs
on ONNX Runtime CPU (the runtime the model is verified on), which elides some Cast pairs and so does not round
every fp16-typed tensor: a device that computes truly in fp16 may need more nodes in fp32.

bf16 (`BFloat16Config`), honestly: ONNX Runtime's CPU provider has no bf16 MatMul/Gemm kernels (a bf16 graph
fails to load), while OpenVINO runs bf16 natively on AVX-512 BF16/AMX through its precision hint and keeps
precision-sensitive ops in fp32 itself. So "bf16" leaves the graph fp32 and records the runtime setting
of the backend that computes in bf16 (`hasten.backends.backend_computing`: OpenVINO, precision bf16) in the
report; the handler runs the calibration samples on that backend in bf16 against its fp32, refuses non-finite outputs and reports the output SQNR. Per-node fallback
is OpenVINO's own (not controllable from an ONNX file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx_ir as ir

from hasten.errors import QuantizationError
from hasten.quantize.base import QuantConfig, QuantResult, register

FP16_MAX = 65504.0
#: fp32 tensors whose |x| exceeds this stay fp32 with their producer and consumers (headroom for sums)
RANGE_LIMIT = FP16_MAX / 2

LOW_OPS = frozenset({
    # linear
    "MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum",
    # elementwise
    "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid",
    "HardSigmoid", "HardSwish", "Tanh", "Erf", "Gelu", "Sqrt", "Reciprocal", "Pow", "Exp", "Clip", "Where",
    "Max", "Min", "Softmax", "LogSoftmax", "Mish", "Softplus", "Sign",
    # normalisation, pooling, reductions
    "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceMin",
    "ReduceSum",
    # data movement
    "Reshape", "Transpose", "Concat", "Slice", "Gather", "GatherElements", "Squeeze", "Unsqueeze", "Flatten",
    "Expand", "Split", "Identity", "Tile", "Pad", "Resize", "Dropout", "DepthToSpace", "SpaceToDepth",
    # typed by attribute; type-agnostic
    "Cast", "Constant", "ConstantOfShape", "Shape", "Size",
})
#: ops that read any type: their inputs are left as they are (no Cast just to take a shape)
TYPE_AGNOSTIC = frozenset({"Shape", "Size"})
#: input positions that must stay float32 even in an fp16 node (scales / roi of Resize, Upsample)
FP32_INPUTS = {"Resize": {1, 2}, "Upsample": {1}}


@dataclass(frozen=True)
class Float16Config(QuantConfig):
    """fp16 weights and compute with measured fp32 fallback.

    max_rel_error: a tensor with ||c - r|| / ||r|| above this (on the check samples) counts as broken.
    check_samples: calibration items used for the check (synthetic inputs when no calibration is given).
    keep_nodes / keep_ops: node names / op types to keep in fp32 from the start.
    """

    scheme: ClassVar[str] = "fp16"
    compute_dtype: ClassVar[str] = "fp16"
    max_rel_error: float = 0.05
    check_samples: int = 8
    keep_nodes: tuple[str, ...] = ()
    keep_ops: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.max_rel_error > 0:
            raise QuantizationError(f"fp16: max_rel_error must be > 0, got {self.max_rel_error}")
        if self.check_samples < 1:
            raise QuantizationError(f"fp16: check_samples must be >= 1, got {self.check_samples}")
        object.__setattr__(self, "keep_nodes", tuple(self.keep_nodes))
        object.__setattr__(self, "keep_ops", tuple(self.keep_ops))


@dataclass(frozen=True)
class BFloat16Config(QuantConfig):
    """bf16 as OpenVINO's execution precision (see module docstring); the graph stays fp32."""

    scheme: ClassVar[str] = "bf16"
    compute_dtype: ClassVar[str] = "bf16"
    check_samples: int = 8


# -- the converter -----------------------------------------------------------------------------------
def name_nodes(model: ir.Model) -> None:
    """Give every unnamed node of the main graph a unique name `<op_type>_<index>` (in place)."""
    used = {n.name for n in model.graph if n.name}
    for i, node in enumerate(model.graph):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def _captured_names(graph: ir.Graph) -> set[str]:
    """Names of main-graph values read inside sub-graphs (If/Loop/Scan bodies)."""
    names: set[str] = set()
    for node in graph:
        for attr in node.attributes.values():
            subs = []
            if attr.type == ir.AttributeType.GRAPH:
                subs = [attr.value]
            elif attr.type == ir.AttributeType.GRAPHS:
                subs = list(attr.value)
            for sub in subs:
                inner = {v.name for n in sub.all_nodes() for v in n.outputs} | {v.name for v in sub.inputs}
                inner |= set(sub.initializers)
                names |= {v.name for n in sub.all_nodes() for v in n.inputs
                          if v is not None and v.name not in inner}
    return names


def plan(model: ir.Model, keep: dict[str, str]) -> dict[str, str]:
    """Node name -> why it stays fp32, for the nodes that cannot or must not run in fp16 (`keep` included)."""
    graph = model.graph
    kept = dict(keep)
    captured = _captured_names(graph)
    for node in graph:
        if node.name in kept:
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type not in LOW_OPS:
            kept[node.name] = f"no fp16 conversion for {node.domain + '.' if node.domain else ''}{node.op_type}"
        elif any(v is not None and v.dtype is None for v in (*node.inputs, *node.outputs)):
            kept[node.name] = "untyped tensor (shape inference could not type it)"
        elif any(v.name in captured for v in node.outputs):
            kept[node.name] = "its output is read inside a sub-graph"
        elif node.op_type == "Cast" and node.attributes.get("to") is not None \
                and node.attributes["to"].value not in (ir.DataType.FLOAT, ir.DataType.FLOAT16) \
                and node.inputs[0].dtype != ir.DataType.FLOAT:
            kept[node.name] = "cast between non-float types"
    return kept


def convert(model: ir.Model, kept: dict[str, str], low: ir.DataType = ir.DataType.FLOAT16) -> ir.Model:
    """Convert (in place) every node not in `kept` to `low` precision, inserting Casts at the borders."""
    graph = model.graph
    f32 = ir.DataType.FLOAT
    low_cache: dict[int, ir.Value] = {}   # id(fp32 value) -> its low copy
    high_cache: dict[int, ir.Value] = {}  # id(low value) -> its fp32 copy
    low_values: set[int] = set()
    new_nodes: list[ir.Node] = []
    tag = "fp16" if low == ir.DataType.FLOAT16 else "bf16"

    def cast(v: ir.Value, to: ir.DataType, suffix: str) -> ir.Value:
        out = ir.Value(name=f"{v.name}/{suffix}", type=ir.TensorType(to), shape=v.shape)
        new_nodes.append(ir.Node("", "Cast", [v], [ir.AttrInt64("to", to)], outputs=[out],
                                 name=f"cast/{v.name}/{suffix}"))
        return out

    def as_low(v: ir.Value) -> ir.Value:
        if id(v) in low_values:
            return v
        if id(v) not in low_cache:
            if v.const_value is not None and v.is_initializer() and not v.is_graph_input():
                tensor = ir.tensor(_narrow(v.const_value.numpy(), low), dtype=low, name=f"{v.name}/{tag}")
                new = ir.Value(name=tensor.name, type=ir.TensorType(low), shape=v.shape, const_value=tensor)
                graph.register_initializer(new)
            else:
                new = cast(v, low, tag)
            low_cache[id(v)] = new
            low_values.add(id(new))
        return low_cache[id(v)]

    def as_high(v: ir.Value) -> ir.Value:
        if id(v) not in high_cache:
            high_cache[id(v)] = cast(v, f32, "fp32")
        return high_cache[id(v)]

    for node in list(graph):
        if node.name in kept:
            for i, v in enumerate(node.inputs):
                if v is not None and id(v) in low_values:
                    node.replace_input_with(i, as_high(v))
            continue
        if node.op_type in TYPE_AGNOSTIC:
            continue
        exempt = FP32_INPUTS.get(node.op_type, set())
        for i, v in enumerate(node.inputs):
            if v is not None and v.dtype == f32 and i not in exempt and id(v) not in low_values:
                node.replace_input_with(i, as_low(v))
        if node.op_type == "Cast" and node.attributes["to"].value == f32:
            node.attributes["to"] = ir.AttrInt64("to", low)
        if node.op_type in ("Constant", "ConstantOfShape") and "value" in node.attributes:
            t = node.attributes["value"].value
            if t.dtype == f32:
                node.attributes["value"] = ir.AttrTensor("value", ir.tensor(_narrow(t.numpy(), low), dtype=low,
                                                                            name=t.name))
        for out in node.outputs:
            if out.dtype == f32:
                out.dtype = low
                low_values.add(id(out))
    # graph outputs keep their fp32 type and name
    for i, out in enumerate(list(graph.outputs)):
        if id(out) in low_values:
            name = out.name
            out.name = f"{name}/{tag}"
            back = cast(out, f32, "fp32")
            back.name = name
            graph.outputs[i] = back
    graph.extend(new_nodes)
    # drop fp32 initializers that no node reads any more
    for name, v in list(graph.initializers.items()):
        if not v.uses() and not v.is_graph_output() and not v.is_graph_input():
            del graph.initializers[name]
    graph.sort()
    return model


def _typed_ir(model) -> ir.Model:
    """An onnx-ir copy of `model` with inferred value types and every node named."""
    from hasten.quantize.graph import inferred_proto

    m = ir.serde.deserialize_model(inferred_proto(model))
    name_nodes(m)
    return m


def _narrow(arr: np.ndarray, low: ir.DataType) -> np.ndarray:
    """float32 -> `low`; for fp16, finite values beyond ±65504 saturate there (sentinels like -3.4e38)."""
    arr = np.asarray(arr, dtype=np.float32)
    if low == ir.DataType.FLOAT16:
        arr = np.where(np.isfinite(arr), np.clip(arr, -FP16_MAX, FP16_MAX), arr)
    return arr.astype(low.numpy())


def _touches_float(node: ir.Node) -> bool:
    return any(v is not None and v.dtype == ir.DataType.FLOAT for v in (*node.inputs, *node.outputs))


def _copy(m: ir.Model) -> ir.Model:
    return ir.serde.deserialize_model(ir.serde.serialize_model(m))


def _check_samples(model, calib, n: int):
    """(samples, where they came from) for the float check: the first `n` calibration items, else synthetic."""
    from hasten.data import Samples

    if calib is None:
        return Samples.synthetic(model, n, seed=0), "synthetic inputs"
    return calib.take(min(len(calib), n)), "calibration samples"


# -- the handlers ------------------------------------------------------------------------------------
@register(Float16Config)
def quantize_fp16(model, config: Float16Config, calib) -> QuantResult:
    from hasten.model import Model
    from hasten.quantize.layer_diff import compare_tensors

    samples, origin = _check_samples(model, calib, config.check_samples)
    base = _typed_ir(model)
    graph = base.graph
    named = Model(base, model.source, model.lineage)
    requested = {n: "kept by the user (keep_nodes)" for n in config.keep_nodes}
    for node in graph:
        if node.op_type in config.keep_ops:
            requested[node.name] = f"kept by the user (keep_ops {node.op_type})"
    unknown = sorted(set(config.keep_nodes) - {n.name for n in graph})
    if unknown:
        raise QuantizationError(f"fp16: keep_nodes {unknown} are not nodes of the model")
    producer = {o.name: (n, o) for n in graph for o in n.outputs}
    pairs = {name: name for name, (_, o) in producer.items() if o.dtype == ir.DataType.FLOAT}
    measured: dict[str, str] = {}
    rounds = 0
    while True:
        rounds += 1
        kept = plan(base, {**requested, **measured})
        candidate = named.derive(convert(_copy(base), kept), "fp16")
        stats = compare_tensors(named, candidate, samples, pairs)
        bad = {name: st for name, st in stats.items()
               if st.nonfinite or st.rel_error > config.max_rel_error}
        if rounds == 1:  # range check: values fp16 cannot hold keep their producer and consumers in fp32
            for name, st in stats.items():
                if st.ref_absmax > RANGE_LIMIT:
                    why = f"range: max |{name}| = {st.ref_absmax:.3g} exceeds fp16 headroom ({RANGE_LIMIT:.0f})"
                    node, value = producer[name]
                    for n in (node, *(u.node for u in value.uses() if u.node.graph is graph)):
                        if n.name not in kept:
                            measured.setdefault(n.name, why)
            if measured:
                continue
        if not bad:
            break
        origins = {}
        for name, st in bad.items():
            node, _ = producer[name]
            ins = [v.name for v in node.inputs if v is not None and v.name in stats]
            if any(i in bad for i in ins):
                continue  # badness starts upstream
            why = ("inf/NaN in output" if st.nonfinite else
                   f"relative error {st.rel_error:.3g} > {config.max_rel_error}")
            if node.name not in kept:
                origins[node.name] = why
            else:  # an fp32 node fed by fp16 values that lost what it needs: put their producers back
                for i in ins:
                    up = producer[i][0]
                    if up.name not in kept:
                        origins[up.name] = f"its fp16 output feeds {node.name}, whose {why}"
        if not origins:  # every bad tensor comes from an fp32 node: nothing left to put back
            break
        measured.update(origins)
    n_low = sum(1 for n in graph if n.name not in kept and n.op_type not in TYPE_AGNOSTIC and _touches_float(n))
    if n_low == 0:
        raise QuantizationError("fp16: no node of the model can run in fp16 (all kept in fp32)")
    worst = max((st.rel_error for st in stats.values()), default=0.0)
    report = {
        "precision": "float16",
        "nodes_fp16": n_low,
        "nodes_fp32": sum(1 for n in graph if n.name in kept and _touches_float(n)),
        "fallback": [{"node": n, "op_type": _op(base, n), "reason": r} for n, r in measured.items()],
        "kept": [{"node": n.name, "op_type": n.op_type, "reason": kept[n.name]} for n in graph
                 if n.name in kept and _touches_float(n)],
        "rounds": rounds,
        "checked_on": f"{len(samples)} {origin}",
        "clean": not bad,
        "worst_rel_error": worst,
        "note": "ONNX Runtime CPU runs most fp16 ops through inserted Casts on x86: smaller, rarely faster",
    }
    if bad:
        report["still_bad"] = sorted(bad)
    return QuantResult(candidate, config, report)


def _op(model, name: str) -> str:
    return next((n.op_type for n in model.graph if n.name == name), "?")


@register(BFloat16Config)
def quantize_bf16(model, config: BFloat16Config, calib) -> QuantResult:
    from hasten.backends import backend_computing, run_samples
    from hasten.errors import BackendError
    from hasten.measure.accuracy import sqnr_db

    samples, origin = _check_samples(model, calib, config.check_samples)
    try:
        fp32, low = backend_computing("bf16")
        ref = run_samples(fp32.compile(model), samples)
        out = run_samples(low.compile(model), samples)
    except BackendError as exc:
        raise QuantizationError(f"bf16 is a runtime precision, and no backend here can run this model in "
                                f"bf16: {exc}") from exc
    bad = [k for k, v in out.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]
    if bad:
        raise QuantizationError(f"bf16: {low.name} bf16 produces NaN/inf in output(s) {bad}; use fp32 or fp16")
    sq = {k: sqnr_db(out[k], ref[k]) for k in ref if np.issubdtype(ref[k].dtype, np.floating)}
    runtime = {k: v for k, v in low.describe().items() if k != "threads"}
    report = {
        "precision": "bfloat16",
        "runtime": runtime,
        "output_sqnr_db": sq,
        "checked_on": f"{len(samples)} {origin}",
        "note": "the graph stays fp32; bf16 is OpenVINO's execution precision (INFERENCE_PRECISION_HINT) on "
                "AVX-512 BF16/AMX. ONNX Runtime's CPU provider has no bf16 MatMul kernels. OpenVINO keeps "
                "precision-sensitive ops in fp32 itself.",
    }
    return QuantResult(model.derive(model.proto(), f"bf16 ({low.name} precision option)"), config, report)
