"""Element-wise kernels against ONNX Runtime's own QLinearAdd / QLinearMul on every pair of uint8 codes
(256 x 256), for many random scales and zero points: the C built with the host `cc`, its parameters formed
by the exporter (`emit`). A one-LSB difference on one pair fails."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from hasten.export.emit import _Emitter, _kernel_source
from hasten.export.program import Layer, Program, Tensor
from hasten.export.toolchain import CFLAGS

F32 = np.float32
PAIRS = 256 * 256
pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler")


def _ort(op, sa, za, sb, zb, sc, zc, a, b):
    inits = [numpy_helper.from_array(np.array(v, dt), n) for n, v, dt in
             [("sa", sa, F32), ("za", za, np.uint8), ("sb", sb, F32), ("zb", zb, np.uint8), ("sc", sc, F32),
              ("zc", zc, np.uint8)]]
    node = helper.make_node(op, ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["c"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.UINT8, [PAIRS])
                                            for n in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.UINT8, [PAIRS])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"a": a, "b": b})[0]


@pytest.mark.parametrize("op", ["add", "mul"])
def test_eltwise_kernels_equal_onnx_runtime_on_every_pair_of_codes(op, tmp_path):
    rng = np.random.default_rng(7)
    a, b = (g.ravel().astype(np.uint8) for g in np.meshgrid(np.arange(256), np.arange(256)))
    tensors = {n: Tensor(n, (1, PAIRS)) for n in ("a", "b", "y")}
    cases, want = [], []
    for _ in range(40):
        sa, sb, sc = (F32(rng.uniform(0.002, 0.2)) for _ in range(3))
        za, zb, zc = (int(rng.integers(0, 256)) for _ in range(3))
        want.append(_ort("QLinearAdd" if op == "add" else "QLinearMul", sa, za, sb, zb, sc, zc, a, b))
        cases.append(Layer(op, op, ["a", "b"], ["y"], {"a_scale": sa, "a_zp": za - 128, "b_scale": sb,
                                                       "b_zp": zb - 128, "y_scale": sc, "y_zp": zc - 128,
                                                       "unsigned": True}))
    em = _Emitter(Program(tensors, cases, "a", "y"), plan=None)
    em.ptr = lambda name: name  # the driver's own buffers
    for i, layer in enumerate(cases):
        em.layer(i, layer)
    codes = ", ".join(str(int(v) - 128) for v in a)
    driver = "\n".join([
        "#include <stdint.h>", "#include <stdio.h>", _kernel_source("hs_base.h"), _kernel_source("eltwise.c"),
        *em.decls, f"static const int8_t a[{PAIRS}] = {{{codes}}};",
        f"static const int8_t b[{PAIRS}] = {{{', '.join(str(int(v) - 128) for v in b)}}};",
        f"static int8_t y[{PAIRS}];", "int main(void) {",
        *[f"    {call} fwrite(y, 1, sizeof y, stdout);" for call in em.calls], "    return 0;", "}"])
    (tmp_path / "driver.c").write_text(driver)
    subprocess.run(["cc", *CFLAGS, str(tmp_path / "driver.c"), "-o", str(tmp_path / "driver")], check=True,
                   timeout=120)
    out = subprocess.run([str(tmp_path / "driver")], capture_output=True, check=True, timeout=60).stdout
    got = (np.frombuffer(out, np.int8).astype(np.int32) + 128).reshape(len(cases), PAIRS)
    mismatches = int((got != np.stack(want).astype(np.int32)).sum())
    assert mismatches == 0, f"{mismatches} of {len(cases) * PAIRS} pairs differ from ONNX Runtime"


# -- single ONNX Runtime kernels, exported whole: uint8 input and output, every code or pair of codes ------
def _node_model(node, x_shape, y_shape, inits, dtype=TensorProto.UINT8):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", dtype, list(x_shape))],
                              [helper.make_tensor_value_info("y", dtype, list(y_shape))], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("com.microsoft", 1)])


def _mismatches(proto, x: np.ndarray, tmp_path) -> int:
    """Bytes where the exported C differs from ONNX Runtime running `proto` on the uint8 input `x`."""
    from hasten.export.build import export_model
    from hasten.export.toolchain import run_host

    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    export = export_model(proto)
    model_dir = export.write(tmp_path / "m")
    codes = (x.astype(np.int16) - 128).astype(np.int8).reshape(1, -1)
    got = run_host(model_dir, codes, tmp_path / "host").outputs.view(np.int8).astype(np.int16) + 128
    return int((got.reshape(-1) != want.reshape(-1).astype(np.int16)).sum())


def _qparams(rng, names):
    inits = []
    for name in names:
        inits += [numpy_helper.from_array(F32(rng.uniform(0.002, 0.2)), f"{name}_s"),
                  numpy_helper.from_array(np.uint8(rng.integers(0, 256)), f"{name}_z")]
    return inits


PAIRS_NCHW = np.stack(np.meshgrid(np.arange(256), np.arange(256)), -1).reshape(1, PAIRS, 1, 2).astype(np.uint8)


def test_pooling_kernels_equal_onnx_runtime_on_every_pair_of_codes(tmp_path):
    rng = np.random.default_rng(11)
    x = np.ascontiguousarray(PAIRS_NCHW)
    bad = 0
    for k in range(6):
        inits = _qparams(rng, ["x", "y"])
        gap = helper.make_node("QLinearGlobalAveragePool", ["x", "x_s", "x_z", "y_s", "y_z"], ["y"],
                               domain="com.microsoft", channels_last=0)
        bad += _mismatches(_node_model(gap, x.shape, (1, PAIRS, 1, 1), inits), x, tmp_path / f"g{k}")
        avg = helper.make_node("QLinearAveragePool", ["x", "x_s", "x_z", "y_s", "y_z"], ["y"],
                               domain="com.microsoft", kernel_shape=[1, 2], pads=[0, 1, 0, 1],
                               count_include_pad=k % 2)  # windows of 1 and 2 codes
        bad += _mismatches(_node_model(avg, x.shape, (1, PAIRS, 1, 3), inits), x, tmp_path / f"a{k}")
    assert bad == 0


def test_softmax_equals_onnx_runtime_on_every_pair_of_codes(tmp_path):
    rng = np.random.default_rng(12)
    x = np.ascontiguousarray(PAIRS_NCHW.reshape(PAIRS, 2))
    bad = 0
    for k in range(6):
        inits = _qparams(rng, ["x"]) + [numpy_helper.from_array(F32(1 / 256), "y_s"),
                                        numpy_helper.from_array(np.uint8(0), "y_z")]
        node = helper.make_node("QLinearSoftmax", ["x", "x_s", "x_z", "y_s", "y_z"], ["y"], domain="com.microsoft",
                                axis=-1, opset=13)
        bad += _mismatches(_node_model(node, x.shape, x.shape, inits), x, tmp_path / f"s{k}")
    assert bad == 0


def test_requantisation_equals_onnx_runtime_on_every_code_and_many_scales(tmp_path):
    """QLinearConv 1x1 (per-channel weights and biases) and QLinearConcat (a part with its own scale) on
    every uint8 code: each output channel another accumulator scale and bias."""
    rng = np.random.default_rng(13)
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    bad = 0
    for k in range(4):
        n = 256
        inits = _qparams(rng, ["x", "y"]) + [
            numpy_helper.from_array(rng.integers(-64, 64, (n, 1, 1, 1)).astype(np.int8), "w"),
            numpy_helper.from_array(F32(rng.uniform(0.001, 0.05, n)), "w_s"),
            numpy_helper.from_array(np.zeros(n, np.int8), "w_z"),
            numpy_helper.from_array(rng.integers(-5000, 5000, n).astype(np.int32), "b")]
        conv = helper.make_node("QLinearConv", ["x", "x_s", "x_z", "w", "w_s", "w_z", "y_s", "y_z", "b"], ["y"])
        bad += _mismatches(_node_model(conv, x.shape, (1, n, 16, 16), inits), x, tmp_path / f"c{k}")
        cat = helper.make_node("QLinearConcat", ["y_s", "y_z", "x", "x_s", "x_z", "x", "x_s", "x_z"], ["y"],
                               domain="com.microsoft", axis=1)
        bad += _mismatches(_node_model(cat, x.shape, (1, 2, 16, 16), inits[:4]), x, tmp_path / f"k{k}")
    assert bad == 0
