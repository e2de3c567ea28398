"""The ONNX Runtime kernels an int8 program is made of, one lowering each: a fused node of ONNX Runtime's
optimised graph (QLinearConv, QGemm, QLinearAdd, ...) becomes a `Layer` and its output `Tensor`, or is
refused (`Refuse`) with the reason `hasten.export.lower` lists. The kernels' arithmetic is in c/kernels/."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from hasten.export.program import Layer, Tensor

MS = "com.microsoft"
RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _shift(value, zp_dtype) -> int:
    """A zero point as int8 storage sees it (uint8 tensors are stored as v - 128)."""
    return int(value) - 128 if zp_dtype == np.uint8 else int(value)


class Lowering:
    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.tensors: dict[str, Tensor] = {}
        self.layers: list[Layer] = []
        self.unsupported: list[str] = []
        self.skipped: set[str] = set()
        self.floats: set[str] = set()  # outputs of DequantizeLinear nodes inside the graph
        self.input_q = None  # the input's QuantizeLinear when layout ops come before it (a view)
        self.input_problem = ""  # why the model's input is not an int8 tensor of the program
        self.output_problem = ""  # why its output is not one
        self.unsupported_ops: list[str] = []

    def refuse(self, node, text: str) -> None:
        """List `node` as one that cannot be exported, with why."""
        self.unsupported.append(text)
        self.unsupported_ops.append(node.op_type)

    # -- helpers ----------------------------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def qparams(self, node, scale_name: str, zp_name: str | None) -> tuple[float, int]:
        scale = self.const(scale_name)
        zp = self.const(zp_name) if zp_name else np.array(0, dtype=np.uint8)
        if scale is None or zp is None or scale.size != 1 or zp.size != 1:
            raise Refuse(f"{node.name or node.op_type}: its quantisation parameters are not constant scalars")
        return float(np.float32(scale.reshape(()))), _shift(zp.reshape(()), zp.dtype)

    def tensor(self, name: str) -> Tensor:
        if name not in self.tensors:
            raise Refuse(f"tensor {name!r} is not an int8 tensor of the program")
        return self.tensors[name]

    def add(self, name: str, shape, scale=None, zp=None, alias=None) -> Tensor:
        t = Tensor(name, tuple(int(d) for d in shape), scale, zp, alias)
        self.tensors[name] = t
        return t

    def set_q(self, name: str, scale: float, zp: int):
        t = self.tensors[name]
        if t.scale is None:
            t.scale, t.zero_point = scale, zp

    # -- ops --------------------------------------------------------------------------------------------
    def conv(self, node):
        i = list(node.input) + [""] * (9 - len(node.input))
        x = self.tensor(i[0])
        xs, xz = self.qparams(node, i[1], i[2])
        w, ws, wz = self.const(i[3]), self.const(i[4]), self.const(i[5])
        ys, yz = self.qparams(node, i[6], i[7])
        bias = self.const(i[8]) if i[8] else None
        if w is None or ws is None or w.ndim != 4:
            raise Refuse(f"{node.name}: only 2-D convolutions with constant weights are exported")
        w = _signed_weights(node, w, wz)
        a = _attrs(node)
        cout, cin_g, kh, kw = w.shape
        _, cin, h, wd = x.shape
        groups = int(a.get("group", 1))
        if cin_g * groups != cin:
            raise Refuse(f"{node.name}: weight shape {w.shape} does not match {cin} input channels")
        strides, dil = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
        pads = _pads(node, a, (h, wd), (kh, kw), strides, dil)
        oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
        ow = (wd + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
        self.set_q(x.name, xs, xz)
        self.add(node.output[0], (1, cout, oh, ow), ys, yz)
        self.layers.append(Layer("conv", node.name, [x.name], [node.output[0]], {
            "weights": w, "bias": _bias(bias, cout), "x_scale": np.float32(xs), "w_scale": _per_channel(ws, cout),
            "y_scale": np.float32(ys), "x_zp": xz, "y_zp": yz, "strides": tuple(strides), "pads": tuple(pads),
            "dilations": tuple(dil), "groups": groups, "macs": oh * ow * cout * cin_g * kh * kw}))

    def dense(self, node, w, ws, wz, bias, xs, xz, ys, yz, x_name):
        """y[N] = x[K] . W[N, K] (+ bias), requantised."""
        x = self.tensor(x_name)
        if len(x.shape) != 2 or x.shape[0] != 1:
            raise Refuse(f"{node.name}: only [1, K] activations are exported (got {list(x.shape)})")
        w = _signed_weights(node, w, wz)
        n, k = w.shape
        if k != x.shape[1]:
            raise Refuse(f"{node.name}: weight [{n}, {k}] does not match input {list(x.shape)}")
        self.set_q(x.name, xs, xz)
        self.add(node.output[0], (1, n), ys, yz)
        self.layers.append(Layer("dense", node.name, [x.name], [node.output[0]], {
            "weights": w, "bias": _bias(bias, n), "x_scale": np.float32(xs), "w_scale": _per_channel(ws, n),
            "y_scale": None if ys is None else np.float32(ys), "x_zp": xz, "y_zp": yz, "macs": n * k}))

    def qgemm(self, node):
        i = list(node.input) + [""] * (9 - len(node.input))
        a = _attrs(node)
        float_out = not i[7]
        if float_out and node.output[0] not in {o.name for o in self.graph.output}:
            raise Refuse(f"{node.name}: QGemm with a float output inside the graph")
        if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0:
            raise Refuse(f"{node.name}: QGemm with transA or alpha != 1")
        w = self.const(i[3])
        if w is None:
            raise Refuse(f"{node.name}: the weight is not constant")
        w = w if a.get("transB", 0) else w.T
        xs, xz = self.qparams(node, i[1], i[2])
        ys, yz = (None, None) if float_out else self.qparams(node, i[7], i[8])
        self.dense(node, w, self.const(i[4]), self.const(i[5]), self.const(i[6]) if i[6] else None,
                   xs, xz, ys, yz, i[0])
        if float_out:
            self.tensors[node.output[0]].dtype = "float32"

    def qmatmul(self, node):
        i = list(node.input)
        w = self.const(i[3])
        if w is None or w.ndim != 2:
            raise Refuse(f"{node.name}: only a constant 2-D right-hand side is exported")
        xs, xz = self.qparams(node, i[1], i[2])
        ys, yz = self.qparams(node, i[6], i[7])
        self.dense(node, w.T, self.const(i[4]), self.const(i[5]), None, xs, xz, ys, yz, i[0])

    def binary(self, node, op):
        i = list(node.input) + [""] * (8 - len(node.input))
        a, b = self.tensor(i[0]), self.tensor(i[3])
        if a.shape != b.shape:
            raise Refuse(f"{node.name}: {node.op_type} with broadcasting ({list(a.shape)} and {list(b.shape)})")
        as_, az = self.qparams(node, i[1], i[2])
        bs, bz = self.qparams(node, i[4], i[5])
        ys, yz = self.qparams(node, i[6], i[7])
        self.set_q(a.name, as_, az)
        self.set_q(b.name, bs, bz)
        self.add(node.output[0], a.shape, ys, yz)
        zps = [self.const(n) for n in (i[2], i[5], i[7]) if n]
        if not zps:
            raise Refuse(f"{node.name}: no zero point gives its int8/uint8 type")
        self.layers.append(Layer(op, node.name, [a.name, b.name], [node.output[0]], {
            "a_scale": np.float32(as_), "a_zp": az, "b_scale": np.float32(bs), "b_zp": bz,
            "y_scale": np.float32(ys), "y_zp": yz, "unsigned": zps[0].dtype == np.uint8}))

    def pool(self, node, op):
        x = self.tensor(node.input[0])
        if len(x.shape) != 4:
            raise Refuse(f"{node.name}: only 2-D pooling is exported")
        a = _attrs(node)
        if a.get("channels_last", 0):
            raise Refuse(f"{node.name}: channels_last pooling")
        _, c, h, w = x.shape
        params = {}
        if op == "global_average_pool":
            oh = ow = 1
        else:
            k = a["kernel_shape"]
            strides, dil = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
            if a.get("ceil_mode", 0):
                raise Refuse(f"{node.name}: ceil_mode=1")
            if list(dil) != [1, 1]:
                raise Refuse(f"{node.name}: dilated pooling")
            pads = _pads(node, a, (h, w), k, strides, dil)
            oh = (h + pads[0] + pads[2] - k[0]) // strides[0] + 1
            ow = (w + pads[1] + pads[3] - k[1]) // strides[1] + 1
            params = {"kernel": tuple(k), "strides": tuple(strides), "pads": tuple(pads)}
            if op == "average_pool":
                params["count_include_pad"] = int(a.get("count_include_pad", 0))
        if op == "max_pool":
            scale, zp = x.scale, x.zero_point
        else:
            xs, xz = self.qparams(node, node.input[1], node.input[2])
            scale, zp = self.qparams(node, node.input[3], node.input[4])
            self.set_q(x.name, xs, xz)
            params.update({"x_scale": np.float32(xs), "x_zp": xz, "y_scale": np.float32(scale), "y_zp": zp,
                           "y_zp_native": int(self.const(node.input[4]).reshape(()))})
        self.add(node.output[0], (1, c, oh, ow), scale, zp)
        self.layers.append(Layer(op, node.name, [x.name], [node.output[0]], params))

    def concat(self, node):
        a = _attrs(node)
        i = list(node.input)
        ys, yz = self.qparams(node, i[0], i[1])
        parts = [(self.tensor(i[k]), *self.qparams(node, i[k + 1], i[k + 2])) for k in range(2, len(i), 3)]
        rank = len(parts[0][0].shape)
        axis = int(a["axis"]) % rank
        shape = list(parts[0][0].shape)
        shape[axis] = sum(p[0].shape[axis] for p in parts)
        if rank == 4 and axis != 1:
            raise Refuse(f"{node.name}: Concat of 4-D tensors along axis {axis} (only channels)")
        for t, s, z in parts:
            self.set_q(t.name, s, z)
        self.add(node.output[0], shape, ys, yz)
        self.layers.append(Layer("concat", node.name, [p[0].name for p in parts], [node.output[0]], {
            "axis": axis, "scales": np.array([p[1] for p in parts], np.float32),
            "zps": [p[2] for p in parts], "y_scale": np.float32(ys), "y_zp": yz}))

    def reshape(self, node):
        x = self.tensor(node.input[0])
        shape = _reshaped(node, x.shape, self.const(node.input[1]) if len(node.input) > 1 else None)
        src = x.name
        moved = x.channels_last != (len(shape) == 4) or (len(shape) == 4 and tuple(shape[1:]) != x.shape[1:])
        if moved and x.channels_last and pixels(x.shape) > 1 and x.shape[1] > 1:  # HWC bytes -> ONNX order
            flat = self.add(f"{x.name}/chw", (1, x.size), x.scale, x.zero_point)
            self.layers.append(Layer("to_chw", f"{node.name}/to_chw", [x.name], [flat.name], {"hwc": x.hwc()}))
            src = flat.name
        if moved and len(shape) == 4 and pixels(shape) > 1 and shape[1] > 1:  # ONNX order -> HWC bytes
            self.add(node.output[0], shape, x.scale, x.zero_point)
            self.layers.append(Layer("to_hwc", f"{node.name}/to_hwc", [src], [node.output[0]],
                                     {"hwc": (shape[2], shape[3], shape[1])}))
            return
        self.add(node.output[0], shape, x.scale, x.zero_point, alias=src)

    def transpose(self, node):
        """An int8 Transpose: a view when the stored bytes keep their order, else a permuting copy."""
        x = self.tensor(node.input[0])
        rank = len(x.shape)
        perm = [int(p) % rank for p in _attrs(node).get("perm", range(rank - 1, -1, -1))]
        if rank > 6:
            raise Refuse(f"{node.name}: a transpose of {rank} axes (at most 6)")
        shape = tuple(x.shape[p] for p in perm)
        stored_in, stored_out = _storage_axes(x.shape), _storage_axes(shape)
        source = [stored_in.index(perm[a]) for a in stored_out]  # stored input axis of each stored output axis
        dims = [shape[a] for a in stored_out]
        kept = [src for src, n in zip(source, dims, strict=True) if n > 1]
        if kept == sorted(kept):
            self.add(node.output[0], shape, x.scale, x.zero_point, alias=x.name)
            return
        in_dims = [x.shape[a] for a in stored_in]
        in_strides = [int(np.prod(in_dims[k + 1:])) for k in range(rank)]
        self.add(node.output[0], shape, x.scale, x.zero_point)
        self.layers.append(Layer("permute", node.name, [x.name], [node.output[0]], {
            "dims": dims, "strides": [in_strides[src] for src in source]}))

    def softmax(self, node):
        """ONNX Runtime's QLinearSoftmax over one stored axis (any axis from opset 13, else the last)."""
        i = list(node.input) + [""] * (5 - len(node.input))
        x = self.tensor(i[0])
        a = _attrs(node)
        opset, rank = int(a.get("opset", 13)), len(x.shape)
        axis = int(a.get("axis", 1 if opset < 13 else -1)) % rank
        if opset < 13 and axis != rank - 1:
            raise Refuse(f"{node.name}: an opset-{opset} softmax over the flattened axes {axis}..{rank - 1}")
        zps = [self.const(n) for n in (i[2], i[4]) if n]
        if not zps:
            raise Refuse(f"{node.name}: no zero point gives its int8/uint8 type")
        xs, xz = self.qparams(node, i[1], i[2])
        ys, yz = self.qparams(node, i[3], i[4])
        y_scale = np.floor(F32(1.0) / F32(ys))
        if not 0 < y_scale < 2 ** 21:
            raise Refuse(f"{node.name}: output scale {ys:g} out of range")
        stored = [x.shape[k] for k in _storage_axes(x.shape)]
        at = _storage_axes(x.shape).index(axis)
        self.set_q(x.name, xs, xz)
        self.add(node.output[0], x.shape, ys, yz)
        self.layers.append(Layer("softmax", node.name, [x.name], [node.output[0]], {
            "outer": int(np.prod(stored[:at])), "d": stored[at], "inner": int(np.prod(stored[at + 1:])),
            "table": softmax_table(xs, stored[at]), "y_scale": F32(y_scale), "is_signed": int(zps[0].dtype == np.int8),
            "y_zp_native": int(self.const(i[4]).reshape(())) if i[4] else 0}))

    def relu_clip(self, node):
        raise Refuse(f"{node.name}: {node.op_type} that ONNX Runtime did not fold into the quantisation")


class Refuse(Exception):
    pass


F32 = np.float32


def softmax_table(x_scale: float, d: int) -> np.ndarray:
    """QLinearSoftmax's lookup table, indexed by (largest code - code): float32 of the double
    exp((255 - k - 255 + shift) * x_scale), shift = max(0, log(FLT_MAX / d) - 5) / x_scale (ONNX Runtime's
    QlinearBuildLookupTableUint32, float table)."""
    quotient = F32(np.finfo(F32).max) / F32(d)
    shift = max(0.0, float(np.log(np.float64(quotient))) - 5.0) / float(F32(x_scale))
    i = np.arange(255, -1, -1, dtype=np.float64)
    return np.exp((i - 255 + shift) * float(F32(x_scale))).astype(F32)


def _storage_axes(shape) -> list[int]:
    """The logical axes in the order their bytes are stored (4-D tensors channels-last)."""
    return [0, 2, 3, 1] if len(shape) == 4 else list(range(len(shape)))


def _signed_weights(node, w: np.ndarray, wz) -> np.ndarray:
    """int8 weights with zero point 0 (uint8 weights of zero point 128 are shifted); else refused."""
    zp = np.zeros(1, np.int64) if wz is None else wz.astype(np.int64).reshape(-1)
    if w.dtype == np.uint8:
        w, zp = (w.astype(np.int16) - 128).astype(np.int8), zp - 128
    if w.dtype != np.int8 or np.any(zp != 0):
        raise Refuse(f"{node.name}: weights must be int8 with zero point 0 (symmetric); got {w.dtype} with "
                      f"zero points {sorted(set(zp.tolist()))[:4]}")
    return w


def _per_channel(ws: np.ndarray, n: int) -> np.ndarray:
    ws = np.asarray(ws, np.float32).reshape(-1)
    return np.full(n, ws[0], np.float32) if ws.size == 1 else ws


def _bias(bias, n: int) -> np.ndarray:
    if bias is None:
        return np.zeros(n, np.int32)
    if bias.dtype != np.int32:
        raise Refuse(f"bias of dtype {bias.dtype} (int32 expected)")
    return bias.reshape(-1).astype(np.int32)


def pixels(shape) -> int:
    return int(np.prod(shape[2:])) if len(shape) == 4 else 1


def _pads(node, a: dict, hw, k, strides, dil) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from `pads` or `auto_pad`."""
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        p = list(a.get("pads", [0, 0, 0, 0]))
        return p[0], p[1], p[2], p[3]
    if auto == "VALID":
        return 0, 0, 0, 0
    total = []
    for size, kk, s, d in zip(hw, k, strides, dil, strict=True):
        out = -(-size // s)
        total.append(max(0, (out - 1) * s + d * (kk - 1) + 1 - size))
    lo = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
    return lo[0], lo[1], total[0] - lo[0], total[1] - lo[1]


def _reshaped(node, shape, target) -> tuple[int, ...]:
    a = _attrs(node)
    if node.op_type == "Flatten":
        axis = int(a.get("axis", 1)) % (len(shape) + 1) if len(shape) else 0
        return (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
    if node.op_type == "Reshape":
        if target is None:
            raise Refuse(f"{node.name}: Reshape to a shape that is not constant")
        dims = [shape[i] if d == 0 else int(d) for i, d in enumerate(target.tolist())]
        if -1 in dims:
            known = int(np.prod([d for d in dims if d != -1]))
            dims[dims.index(-1)] = int(np.prod(shape)) // known
        return tuple(dims)
    axes = [int(x) for x in (target.tolist() if target is not None else a.get("axes", []))]
    if node.op_type == "Squeeze":
        axes = [x % len(shape) for x in axes] or [i for i, d in enumerate(shape) if d == 1]
        return tuple(d for i, d in enumerate(shape) if i not in axes)
    out = list(shape)
    for x in sorted(x % (len(shape) + len(axes)) for x in axes):
        out.insert(x, 1)
    return tuple(out)


DISPATCH = {
    ("", "QLinearConv"): Lowering.conv,
    (MS, "QGemm"): Lowering.qgemm,
    ("", "QLinearMatMul"): Lowering.qmatmul,
    (MS, "QLinearAdd"): lambda s, n: s.binary(n, "add"),
    (MS, "QLinearMul"): lambda s, n: s.binary(n, "mul"),
    ("", "MaxPool"): lambda s, n: s.pool(n, "max_pool"),
    (MS, "QLinearAveragePool"): lambda s, n: s.pool(n, "average_pool"),
    (MS, "QLinearGlobalAveragePool"): lambda s, n: s.pool(n, "global_average_pool"),
    (MS, "QLinearConcat"): Lowering.concat,
    **{("", op): Lowering.reshape for op in RESHAPES},
    ("", "Transpose"): Lowering.transpose,
    (MS, "QLinearSoftmax"): Lowering.softmax,
    ("", "Relu"): Lowering.relu_clip,
    ("", "Clip"): Lowering.relu_clip,
}


LAYOUT = {("", op) for op in (*RESHAPES, "Transpose")}
