"""Check hasten's numpy model of the saturating int8 kernel against ONNX Runtime's real kernels.

Run natively (this host's int8 path) and under user-mode QEMU with a CPU without VNNI, e.g.

    .venv/bin/python bench/saturation_qemu.py
    qemu-x86_64 -cpu Haswell .venv/bin/python bench/saturation_qemu.py      # AVX2 + FMA, no AVX-512/VNNI

and compare: on a VNNI host ONNX Runtime's MatMulInteger equals the exact product; on an AVX2-only CPU it
should equal `saturating_matmul` (int16-saturated pair sums) bit for bit. Also runs a static QDQ MatMul
(uint8 activations with a zero point, 8-bit and 7-bit weights) and a QLinearConv, and prints how far ONNX
Runtime is from the exact and the saturating model. Verification only: tests never need QEMU.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from hasten.quantize.saturation import conv_rows, conv_weight_matrix, saturating_matmul, saturation_rate


def _session(nodes, inputs, outputs, inits, ms: bool = False):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if ms else [])
    proto = helper.make_model(graph, opset_imports=opsets)
    proto.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def matmul_integer(a: np.ndarray, w: np.ndarray, za: int) -> np.ndarray:
    sess = _session([helper.make_node("MatMulInteger", ["a", "w", "za"], ["y"])],
                    [helper.make_tensor_value_info("a", TensorProto.UINT8, list(a.shape))],
                    [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                    [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.uint8(za), "za")])
    return sess.run(None, {"a": a})[0].astype(np.int64)


def matmul_integer_to_float(a: np.ndarray, w: np.ndarray, za: int) -> np.ndarray:
    """ONNX Runtime's MatMulIntegerToFloat (what a static QDQ MatMul becomes) with scales 1: exact in float."""
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32(1.0), "s"),
             numpy_helper.from_array(np.array(za, dtype=a.dtype), "za"), numpy_helper.from_array(np.int8(0), "zw")]
    node = helper.make_node("MatMulIntegerToFloat", ["a", "w", "s", "s", "za", "zw"], ["y"], domain="com.microsoft")
    dtype = TensorProto.INT8 if a.dtype == np.int8 else TensorProto.UINT8
    sess = _session([node], [helper.make_tensor_value_info("a", dtype, list(a.shape))],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits, ms=True)
    return sess.run(None, {"a": a})[0].astype(np.int64)


def qlinear_conv(x: np.ndarray, w: np.ndarray, y_scale: float) -> np.ndarray:
    """QLinearConv (x uint8 zero point 0, w int8, pads 1), output uint8 with zero point 128."""
    inits = [numpy_helper.from_array(np.float32(1.0), "s"), numpy_helper.from_array(np.uint8(0), "zx"),
             numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.int8(0), "zw"),
             numpy_helper.from_array(np.float32(y_scale), "ys"), numpy_helper.from_array(np.uint8(128), "zy")]
    node = helper.make_node("QLinearConv", ["x", "s", "zx", "w", "s", "zw", "ys", "zy"], ["y"], pads=[1, 1, 1, 1])
    sess = _session([node], [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))],
                    [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    return sess.run(None, {"x": x})[0].astype(np.int64) - 128


def main() -> None:
    rng = np.random.default_rng(0)
    n, k, m = 64, 96, 48
    a = rng.integers(150, 256, (n, k), dtype=np.uint8)  # large activations: pairs saturate
    for bits, wmax in ((8, 127), (7, 63)):
        w = rng.integers(-wmax, wmax + 1, (k, m)).astype(np.int8)
        for za in (0, 128):
            got = matmul_integer(a, w, za)
            exact = (a.astype(np.int64) - za) @ w.astype(np.int64)
            model = saturating_matmul(a, w) - za * w.astype(np.int64).sum(axis=0)
            print(f"MatMulInteger {bits}-bit weights, zero point {za:3d}: clipped pairs "
                  f"{saturation_rate(a, w):.4f}; ORT == exact: {np.array_equal(got, exact)}; "
                  f"ORT == saturating model: {np.array_equal(got, model)}; "
                  f"max |ORT - exact| {int(np.abs(got - exact).max())}")
    w = rng.integers(-127, 128, (k, m)).astype(np.int8)
    for name, act, za in (("uint8", a, 0), ("int8", (a.astype(np.int16) - 128).astype(np.int8), 0)):
        got = matmul_integer_to_float(act, w, za)
        exact = (act.astype(np.int64) - za) @ w.astype(np.int64)
        shifted = (act.astype(np.int16) + 128).astype(np.uint8) if name == "int8" else act
        zk = za + 128 if name == "int8" else za
        model = saturating_matmul(shifted, w) - zk * w.astype(np.int64).sum(axis=0)
        print(f"MatMulIntegerToFloat {name} activations, 8-bit weights: ORT == exact: "
              f"{np.array_equal(got, exact)}; ORT == saturating model"
              f"{' (a + 128)' if name == 'int8' else ''}: {np.array_equal(got, model)}")
    x = rng.integers(150, 256, (1, 8, 6, 6), dtype=np.uint8)
    w = rng.integers(-127, 128, (4, 8, 3, 3)).astype(np.int8)
    y_scale = 2048.0
    got = qlinear_conv(x, w, y_scale)
    rows = conv_rows(x.astype(np.float32), (3, 3), pads=(1, 1, 1, 1))[0].astype(np.uint8)
    wm = conv_weight_matrix(w)[0]
    as_nchw = lambda v: v.reshape(1, 6, 6, 4).transpose(0, 3, 1, 2)  # noqa: E731
    requant = lambda v: np.clip(np.rint(v / y_scale), -128, 127)  # noqa: E731
    exact = requant(as_nchw(rows.astype(np.int64) @ wm.astype(np.int64)))
    model = requant(as_nchw(saturating_matmul(rows, wm)))
    print(f"QLinearConv 8-bit weights (output requantised by {y_scale:.0f}): clipped pairs "
          f"{saturation_rate(rows, wm):.3f}; mean |ORT - exact| {np.abs(got - exact).mean():.3f}, "
          f"mean |ORT - saturating model (HWC im2col)| {np.abs(got - model).mean():.3f}")

if __name__ == "__main__":
    main()
