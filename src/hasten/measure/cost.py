"""FLOPs and bytes moved per node of a model with concrete shapes (see `shapes.infer_shapes`).

One FLOP is one scalar add or multiply (a multiply-accumulate is 2). Per node:
- MatMul and kin (MatMulInteger, QLinearMatMul, FusedMatMul, DynamicQuantizeMatMul, MatMulIntegerToFloat,
  MatMulNBits, MatMulBnb4): 2 * numel(Y) * K, batched or not (+ numel(Y) for a bias).
- Gemm: 2*M*N*K (+ M*N with C; alpha/beta not counted). Conv (ConvInteger, QLinearConv, FusedConv,
  NhwcConv): 2 * N*Cout*prod(out spatial) * Cin/groups*prod(kernel) (+ numel(Y) with a bias).
  ConvTranspose: 2 * numel(X) * Cout/groups * prod(kernel) (+ numel(Y) with a bias).
- Attention: Q.K^T and P.V are MatMuls whose operands are both activations ("attention"); a MatMul with a
  constant operand is "linear"; a Softmax feeding an attention MatMul is "attention". com.microsoft
  Attention/QAttention split into the QKV projection ("linear") and 2*B*S*L*(Dq+Dv) + 5*B*H*S*L
  ("attention"); MultiHeadAttention, GroupQueryAttention and ONNX Attention count the latter.
- Norms, per element of X: LayerNormalization 8, SkipLayerNormalization 9 (+1 with bias), RMS/Simplified 5,
  BatchNormalization 2, Instance/GroupNormalization 8. A decomposed LayerNorm (ReduceMean/Sub/Pow/Sqrt/Div)
  is costed op by op.
- Elementwise, per output element: arithmetic, comparison, logic 1; Exp/Log/Erf/Tanh/Sigmoid and other
  transcendentals 4; Gelu/FastGelu 8, BiasGelu 9; Softmax 5; QuantizeLinear 3, DequantizeLinear 2,
  DynamicQuantizeLinear 5. Reductions 1 per input element (L2/SumSquare 2, LogSumExp 5). Pooling
  numel(Y) * prod(kernel), global pooling numel(X). Data movement (Transpose, Gather, Cast...): 0.

Bytes = inputs read + outputs written at each tensor's dtype size. Views (Reshape, Squeeze, Unsqueeze,
Flatten, Identity, Dropout) move nothing; Shape/Size read no data; Gather/Slice/EmbedLayerNormalization read
only the rows they output. Nodes whose inputs are all constant are folded by runtimes: 0 FLOPs, 0 bytes.
A constant operand is read at its stored size: an int8 weight behind a DequantizeLinear is 1 byte.

`CostReport.floor_bytes`, the roofline's bytes term, is the least any implementation must move: each
weight read once (an embedding only the rows it gathers), inputs read once, outputs written once.
Intermediate activations are left out (a fused runtime keeps them in cache); `activation_bytes` (each
written once) and `total_bytes` (per-node traffic, nothing fused) are reported beside it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable

import onnx_ir as ir

from hasten.measure.cost_report import (
    CATEGORIES,
    CostReport,
    CostRow,
    TensorBytes,
    dtype_name,
)
from hasten.model import Model

_VIEWS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout"}
_LAYOUT = _VIEWS | {"Transpose"}  # ops a weight may pass through on its way from a DequantizeLinear
_NO_READ = {"Shape", "Size"}
#: Inputs read only as far as the output needs them (an embedding lookup reads the rows it outputs).
_GATHERED = {"Gather": (0,), "GatherElements": (0,), "GatherND": (0,), "Slice": (0,),
             "EmbedLayerNormalization": (2, 3, 4)}
_INT8_OPS = set("""MatMulInteger QLinearMatMul ConvInteger QLinearConv DynamicQuantizeMatMul MatMulIntegerToFloat
    QAttention QGemm QLinearAdd QLinearMul QLinearConcat QLinearSigmoid QLinearLeakyRelu QLinearAveragePool
    QLinearGlobalAveragePool QLinearSoftmax""".split())
_DEFAULT_DOMAINS = ("", "ai.onnx")


def estimate_cost(model: Model, overrides: dict[str, int] | None = None,
                  input_shapes: dict[str, tuple[int, ...]] | None = None,
                  infer: bool | None = None) -> CostReport:
    """Cost every node of the main graph. Runs `infer_shapes` first when `infer` is True, or when it is
    None and shapes are given or not yet concrete everywhere."""
    from hasten.input_shapes import resolve_input_shapes
    from hasten.measure.shapes import infer_shapes

    if infer is None:
        infer = bool(overrides or input_shapes) or not _fully_shaped(model)
    if infer:
        model = infer_shapes(model, overrides, input_shapes)
    return _Walker(model).run(resolve_input_shapes(model))


def _fully_shaped(model: Model) -> bool:
    if any(s.is_dynamic for s in model.inputs):
        return False
    return all(_shape(v) is not None for n in model.graph for v in n.outputs if v.name)


def _shape(value: ir.Value | None) -> tuple[int, ...] | None:
    if value is None or value.shape is None or not all(isinstance(d, int) for d in value.shape):
        return None
    return tuple(value.shape)  # type: ignore[arg-type]


def _numel(value: ir.Value | None) -> int | None:
    shape = _shape(value)
    return None if shape is None else math.prod(shape)


def _nbytes(value: ir.Value | None) -> int | None:
    n = _numel(value)
    if n is None or value is None or value.dtype is None:
        return None
    return math.ceil(n * value.dtype.itemsize)


def _floating(value: ir.Value) -> bool:
    return bool(value.dtype is not None and value.dtype.is_floating_point())


def _attr(node: ir.Node, name: str, default=None):
    a = node.attributes.get(name)
    return default if a is None else a.value


class _Walker:
    def __init__(self, model: Model):
        self.graph = model.graph
        self.const: dict[str, bool] = {}
        self.stored: dict[str, tuple[int, bool]] = {}  # constant value -> (bytes as kept, floating)
        self.attention_matmuls: set[str] = set()  # node names

    def is_const(self, value: ir.Value | None) -> bool:
        """Initializers, Constant outputs, and outputs of default-domain nodes with only constant inputs."""
        if value is None:
            return True
        if value.name not in self.const:
            result = value.is_initializer() or value.const_value is not None
            producer = value.producer()
            if not result and producer is not None and not value.is_graph_input():
                result = producer.op_type == "Constant" or self.folded(producer)
            self.const[value.name] = result
        return self.const[value.name]

    def folded(self, node: ir.Node) -> bool:
        return node.op_type == "Constant" or (node.domain in _DEFAULT_DOMAINS and bool(node.inputs) and
                                              all(self.is_const(i) for i in node.inputs))

    def stored_bytes(self, value: ir.Value) -> tuple[int, bool]:
        """(bytes, floating) of a constant as runtimes keep it: QDQ weights stay int8 behind their DQ."""
        if value.name not in self.stored:
            producer = value.producer()
            if value.const_value is not None:
                kept = (int(value.const_value.nbytes), _floating(value))
            elif producer is not None and producer.op_type == "DequantizeLinear":
                kept = (sum(self.stored_bytes(i)[0] for i in producer.inputs if i is not None), False)
            elif producer is not None and producer.op_type in _LAYOUT and producer.inputs[0] is not None:
                kept = self.stored_bytes(producer.inputs[0])
            else:
                kept = (_nbytes(value) or 0, _floating(value))
            self.stored[value.name] = kept
        return self.stored[value.name]

    def from_int8_dq(self, value: ir.Value | None) -> bool:
        while value is not None and (producer := value.producer()) is not None:
            if producer.op_type == "DequantizeLinear":
                return producer.inputs[0] is not None and dtype_name(producer.inputs[0].dtype) == "int8"
            if producer.op_type not in _LAYOUT:
                return False
            value = producer.inputs[0]
        return False

    def run(self, input_shapes: dict[str, tuple[int, ...]]) -> CostReport:
        nodes = list(self.graph)
        for node in nodes:  # MatMuls of two activations: Q.K^T and P.V
            if node.op_type in ("MatMul", "Einsum", "MatMulInteger", "QLinearMatMul", "FusedMatMul"):
                b = 3 if node.op_type == "QLinearMatMul" else 1
                data = [node.inputs[0], node.inputs[b] if len(node.inputs) > b else None]
                if all(v is not None and not self.is_const(v) for v in data):
                    self.attention_matmuls.add(node.name)
        return CostReport([self.cost(node) for node in nodes], dict(input_shapes), self._tensors(nodes))

    def feeds_attention(self, node: ir.Node, depth: int = 3) -> bool:
        """Whether an attention MatMul consumes `node`, directly or through a few elementwise ops."""
        for out in node.outputs:
            for user in out.consumers():
                if user.name in self.attention_matmuls or (
                        depth and user.op_type not in _LINEAR_OPS and self.feeds_attention(user, depth - 1)):
                    return True
        return False

    def cost(self, node: ir.Node) -> CostRow:
        name = node.name or (node.outputs[0].name if node.outputs else node.op_type)
        head = (name, node.op_type, node.domain)
        dtype = self._dtype(node)
        if self.folded(node):
            return CostRow(*head, 0, 0, "other", dtype, folded=True)
        nbytes = self._bytes(node)
        rule, parts = _RULES.get(node.op_type), None
        if rule is not None and node.domain in (*_DEFAULT_DOMAINS, "com.microsoft"):
            try:
                parts = rule(node, self)
            except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError):
                parts = None
        if parts is None:
            return CostRow(*head, 0, nbytes, "other", dtype, known=False)
        split = {c: sum(int(f) for cc, f in parts if cc == c) for c in CATEGORIES}
        split = {c: f for c, f in split.items() if f}
        if not split:
            return CostRow(*head, 0, nbytes, _DEFAULT_CATEGORY.get(node.op_type, "other"), dtype)
        category = max(split, key=lambda c: split[c])
        return CostRow(*head, sum(split.values()), nbytes, category, dtype,
                       tuple(split.items()) if len(split) > 1 else ())

    def _dtype(self, node: ir.Node) -> str:
        if node.op_type in _INT8_OPS or (node.op_type == "MatMulNBits" and _attr(node, "accuracy_level") == 4):
            return "int8"
        if node.op_type in ("MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum") and len(node.inputs) > 1:
            if self.from_int8_dq(node.inputs[0]) and self.from_int8_dq(node.inputs[1]):
                return "int8"  # QDQ: runtimes run it as an int8 kernel
        for value in node.inputs:
            if value is not None and value.dtype is not None:
                return dtype_name(value.dtype)
        return dtype_name(node.outputs[0].dtype) if node.outputs else "?"

    def _bytes(self, node: ir.Node) -> int:
        if node.op_type in _VIEWS and node.domain in _DEFAULT_DOMAINS:
            return 0
        written = sum(_nbytes(v) or 0 for v in node.outputs)
        if node.op_type in _NO_READ:
            return written
        return sum(self._input_read(node, i) for i, v in enumerate(node.inputs) if v is not None) + written

    def _input_read(self, node: ir.Node, index: int) -> int:
        """Bytes `node` reads from input `index`; a gathered input only as much as the output holds."""
        data = node.inputs[index]
        full = self.stored_bytes(data)[0] if self.is_const(data) else (_nbytes(data) or 0)
        n_out, n_data = _numel(node.outputs[0]), _numel(data)
        if index not in _GATHERED.get(node.op_type, ()) or n_out is None or not n_data:
            return full
        return min(full, math.ceil(full * n_out / n_data))

    def _tensors(self, nodes: list[ir.Node]) -> list[TensorBytes]:
        """Each weight once (at the most any consumer reads of it), inputs, outputs, activations once."""
        weights: dict[str, TensorBytes] = {}
        tensors = [TensorBytes(v.name, _nbytes(v) or 0, _numel(v) or 0, _floating(v), "input")
                   for v in self.graph.inputs if not v.is_initializer() and _nbytes(v)]
        for node in nodes:
            if self.folded(node):
                continue
            linear = node.op_type in _LINEAR_OPS and node.name not in self.attention_matmuls
            for i, value in enumerate(node.inputs):
                if value is None or not self.is_const(value) or node.op_type in _NO_READ:
                    continue
                read, (stored, floating) = self._input_read(node, i), self.stored_bytes(value)
                elements = _numel(value) or 0
                if stored and read < stored:
                    elements = math.ceil(elements * read / stored)
                old = weights.get(value.name)
                if old is None or read > old.nbytes:
                    old_linear = old is not None and old.linear_weight
                    weights[value.name] = TensorBytes(value.name, read, elements, floating, "weight",
                                                      linear or old_linear)
                elif linear:
                    weights[value.name] = dataclasses.replace(old, linear_weight=True)
            view = node.op_type in _VIEWS and node.domain in _DEFAULT_DOMAINS
            for value in node.outputs:
                if value.name and _nbytes(value) and (not view or value.is_graph_output()):
                    kind = "output" if value.is_graph_output() else "activation"
                    tensors.append(TensorBytes(value.name, _nbytes(value) or 0, _numel(value) or 0,
                                               _floating(value), kind))
        return tensors + list(weights.values())


# -- formulas: each returns [(category, flops), ...] or None when shapes are missing -------------------
Parts = list[tuple[str, int]] | None
_RULES: dict[str, Callable[[ir.Node, _Walker], Parts]] = {}
_DEFAULT_CATEGORY: dict[str, str] = {}
_LINEAR_OPS: set[str] = set()


def _register(ops: Iterable[str], category: str, linear: bool = False):
    def deco(fn):
        for op in ops:
            _RULES[op], _DEFAULT_CATEGORY[op] = fn, category
            if linear:
                _LINEAR_OPS.add(op)
        return fn
    return deco


def _per_element(per: float, category: str, ops: str, of_input: bool = False) -> None:
    """`per` FLOPs for each element of the first output (or of the first input: reductions, norms)."""
    def rule(node: ir.Node, w: _Walker) -> Parts:
        n = _numel(node.inputs[0] if of_input else node.outputs[0])
        return None if n is None else [(category, per * n)]
    _register(ops.split(), category)(rule)


_per_element(1, "elementwise", """Add Sub Mul Div Neg Abs Relu Where Equal Less LessOrEqual Greater
    GreaterOrEqual Not And Or Xor Clip Pow Sqrt Reciprocal Floor Ceil Round Sign Mod BitShift IsNaN IsInf
    BitwiseAnd BitwiseOr BitwiseXor BitwiseNot ThresholdedRelu Shrink""")
_per_element(2, "elementwise", "PRelu LeakyRelu BiasAdd BiasDropout DequantizeLinear")
_per_element(3, "elementwise", "HardSigmoid Softsign QuantizeLinear RotaryEmbedding QLinearAdd QLinearMul "
                               "QLinearLeakyRelu")
_per_element(4, "elementwise", """Exp Log Erf Tanh Sigmoid Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh
    Atanh Softplus Elu Selu Celu HardSwish QLinearSigmoid""")
_per_element(5, "elementwise", "QuickGelu DynamicQuantizeLinear")
_per_element(8, "elementwise", "Gelu FastGelu Mish")
_per_element(9, "elementwise", "BiasGelu")
_per_element(0, "other", """Transpose Concat Split Slice Gather GatherElements GatherND ScatterND
    ScatterElements Scatter Expand Tile Pad DepthToSpace SpaceToDepth Compress NonZero OneHot Range
    ConstantOfShape Shape Size Reshape Squeeze Unsqueeze Flatten Identity Dropout Cast CastLike Trilu
    ReverseSequence EyeLike QLinearConcat Constant""")
_per_element(1, "elementwise", """ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL1 ArgMax ArgMin
    TopK GlobalAveragePool GlobalMaxPool QLinearGlobalAveragePool""", of_input=True)
_per_element(2, "elementwise", "ReduceL2 ReduceSumSquare GlobalLpPool ReduceLogSum", of_input=True)
_per_element(5, "elementwise", "ReduceLogSumExp", of_input=True)
_per_element(8, "norm", "LayerNormalization InstanceNormalization GroupNormalization MeanVarianceNormalization",
             of_input=True)
_per_element(5, "norm", "SimplifiedLayerNormalization RMSNormalization", of_input=True)
_per_element(2, "norm", "BatchNormalization", of_input=True)
_per_element(3, "norm", "LpNormalization", of_input=True)
_per_element(10, "norm", "EmbedLayerNormalization")


def _given(node: ir.Node, index: int | None) -> bool:
    return index is not None and len(node.inputs) > index and node.inputs[index] is not None


@_register(["Softmax", "LogSoftmax", "QLinearSoftmax", "BiasSoftmax"], "elementwise")
def _softmax(node: ir.Node, w: _Walker) -> Parts:
    n = _numel(node.outputs[0])
    per = 6 if node.op_type == "BiasSoftmax" else 5
    return None if n is None else [("attention" if w.feeds_attention(node) else "elementwise", per * n)]


@_register(["SkipLayerNormalization", "SkipSimplifiedLayerNormalization"], "norm")
def _skip_norm(node: ir.Node, w: _Walker) -> Parts:
    n = _numel(node.inputs[0])
    per = 8 if node.op_type == "SkipLayerNormalization" else 5
    return None if n is None else [("norm", n * (per + 1 + _given(node, 4)))]


@_register(["MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "MatMulNBits", "MatMulBnb4", "MatMulFpQ4"], "linear", linear=True)
def _matmul(node: ir.Node, w: _Walker) -> Parts:
    out, a = _numel(node.outputs[0]), _shape(node.inputs[0])
    if out is None:
        return None
    if node.op_type in ("MatMulNBits", "MatMulBnb4", "MatMulFpQ4"):
        k, bias = int(_attr(node, "K")), (5 if node.op_type == "MatMulNBits" else None)
    elif a is None:
        return None
    else:
        k = a[-2] if (node.op_type == "FusedMatMul" and _attr(node, "transA", 0) and len(a) > 1) else a[-1]
        bias = {"DynamicQuantizeMatMul": 4, "MatMulIntegerToFloat": 6}.get(node.op_type)
    flops = 2 * out * k + out * _given(node, bias)
    if node.op_type == "DynamicQuantizeMatMul":
        flops += 5 * math.prod(a)  # quantising A on the fly
    return [("attention" if node.name in w.attention_matmuls else "linear", flops)]


@_register(["Gemm", "QGemm", "GemmFastGelu"], "linear", linear=True)
def _gemm(node: ir.Node, w: _Walker) -> Parts:
    q = node.op_type == "QGemm"
    a, b = _shape(node.inputs[0]), _shape(node.inputs[3 if q else 1])
    if a is None or b is None:
        return None
    m, k = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
    n = b[0] if _attr(node, "transB", 0) else b[1]
    gelu = 8 * m * n if node.op_type == "GemmFastGelu" else 0
    return [("linear", 2 * m * n * k + m * n * _given(node, 6 if q else 2) + gelu)]


@_register(["Conv", "ConvInteger", "QLinearConv", "FusedConv", "NhwcConv"], "linear", linear=True)
def _conv(node: ir.Node, w: _Walker) -> Parts:
    weight = _shape(node.inputs[3 if node.op_type == "QLinearConv" else 1])
    out = _numel(node.outputs[0])
    if weight is None or out is None:
        return None
    bias = {"QLinearConv": 8, "ConvInteger": None}.get(node.op_type, 2)
    # Cin/groups * prod(kernel) MACs per output element (N * Cout * prod(out spatial) of them)
    return [("linear", 2 * out * math.prod(weight[1:]) + out * _given(node, bias))]


@_register(["ConvTranspose"], "linear", linear=True)
def _conv_transpose(node: ir.Node, w: _Walker) -> Parts:
    x, weight, out = _numel(node.inputs[0]), _shape(node.inputs[1]), _numel(node.outputs[0])
    if x is None or weight is None or out is None:
        return None
    # each input element scatters into Cout/groups * prod(kernel) outputs
    return [("linear", 2 * x * math.prod(weight[1:]) + out * _given(node, 2))]


@_register(["MaxPool", "AveragePool", "LpPool", "QLinearAveragePool"], "elementwise")
def _pool(node: ir.Node, w: _Walker) -> Parts:
    out, kernel = _numel(node.outputs[0]), _attr(node, "kernel_shape")
    return None if out is None or not kernel else [("elementwise", out * math.prod(kernel))]


@_register(["Resize", "Upsample"], "other")
def _resize(node: ir.Node, w: _Walker) -> Parts:
    out, per = _numel(node.outputs[0]), {"linear": 4, "cubic": 16}.get(_attr(node, "mode", "nearest"), 0)
    return None if out is None else [("elementwise", per * out)]


@_register(["Sum", "Mean", "Max", "Min"], "elementwise")
def _variadic(node: ir.Node, w: _Walker) -> Parts:
    out, n = _numel(node.outputs[0]), len([i for i in node.inputs if i is not None])
    return None if out is None else [("elementwise", out * max(1, n - 1))]


@_register(["Einsum"], "linear", linear=True)
def _einsum(node: ir.Node, w: _Walker) -> Parts:
    lhs, _, rhs = str(_attr(node, "equation")).replace(" ", "").partition("->")
    sizes: dict[str, int] = {}
    for term, value in zip(lhs.split(","), node.inputs, strict=False):
        shape = _shape(value)
        if shape is None or "..." in term:
            return None
        sizes.update(zip(term, shape, strict=False))
    contracted = bool(set(lhs.replace(",", "")) - set(rhs))
    flops = (1 + contracted) * math.prod(sizes.values()) * max(1, len(node.inputs) - 1)
    return [("attention" if node.name in w.attention_matmuls else "linear", flops)]


@_register(["LSTM", "GRU", "RNN"], "linear", linear=True)
def _rnn(node: ir.Node, w: _Walker) -> Parts:
    x, weight = _shape(node.inputs[0]), _shape(node.inputs[1])
    if x is None or weight is None:
        return None
    steps, batch, inp = (x[1], x[0], x[2]) if _attr(node, "layout", 0) else x
    gates, pointwise = {"LSTM": (4, 12), "GRU": (3, 10), "RNN": (1, 2)}[node.op_type]
    hidden = int(_attr(node, "hidden_size", weight[1] // gates))
    return [("linear", steps * batch * weight[0] * (2 * gates * hidden * (inp + hidden) + pointwise * hidden))]


def _attention_core(rows: int, length: int, d_qk: int, d_v: int, heads: int) -> int:
    """Q.K^T, softmax (with scale and mask) and P.V for `rows` = batch * query length."""
    return 2 * rows * length * (d_qk + d_v) + 5 * rows * heads * length


@_register(["Attention", "QAttention"], "attention")
def _attention(node: ir.Node, w: _Walker) -> Parts:
    if node.domain != "com.microsoft":
        return _mha(node, w)
    x, weight = _shape(node.inputs[0]), _shape(node.inputs[1])
    if x is None or weight is None:
        return None
    sizes = _attr(node, "qkv_hidden_sizes")
    d_q, _, d_v = list(sizes) if sizes else [weight[1] // 3] * 3
    rows, length = math.prod(x[:-1]), x[-2]
    past_index = 8 if node.op_type == "QAttention" else 4
    past = _shape(node.inputs[past_index]) if len(node.inputs) > past_index else None
    if past is not None and len(past) == 5:  # [2, B, H, past, dh]
        length += past[3]
    heads = int(_attr(node, "num_heads"))
    linear = 2 * rows * x[-1] * weight[1] + rows * weight[1]
    return [("linear", linear), ("attention", _attention_core(rows, length, d_q, d_v, heads))]


@_register(["MultiHeadAttention", "GroupQueryAttention", "PackedMultiHeadAttention"], "attention")
def _mha(node: ir.Node, w: _Walker) -> Parts:
    """Q, K, V already projected: [B, S, D] (or [B, H, S, dh] for ONNX Attention); keys as long as the
    present/past key cache when there is one, else as K, else (packed QKV) as the queries."""
    q, out = _shape(node.inputs[0]), _shape(node.outputs[0])
    if q is None or out is None:
        return None
    key = _shape(node.inputs[1]) if len(node.inputs) > 1 else None
    present = _shape(node.outputs[1]) if len(node.outputs) > 1 and node.outputs[1].name else None
    if len(q) == 4 and len(out) == 4:  # ONNX Attention, 4-D: [B, H, S, dh]
        heads, rows, d_qk, d_v = q[1], q[0] * q[2], q[1] * q[3], out[1] * out[3]
    else:
        heads = int(_attr(node, "num_heads", _attr(node, "q_num_heads", 1)))
        rows, d_v = math.prod(out[:-1]), out[-1]
        d_qk = q[-1] if key is not None and len(q) == 3 else d_v
    if present is not None and len(present) == 4:
        length = present[2]
    elif key is not None and len(key) in (3, 4):
        length = key[-2] if len(key) == 4 else key[1]
    else:
        length = out[-2] if len(out) == 3 else out[0]
    return [("attention", _attention_core(rows, length, d_qk, d_v, heads))]
