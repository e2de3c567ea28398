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
