"""The C exporter: lowering, arena, kernels bit-exact with ONNX Runtime on the host `cc`, errors, writing."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from graphs import Graph, quantised
from onnx import numpy_helper

from hasten.errors import ExportError
from hasten.export.arena import lifetimes, plan_arena
from hasten.export.build import export_model, load_quantised, ort_outputs, random_inputs, verify, write_export
from hasten.export.lower import lower


def _residual():
    g = Graph((1, 4, 9, 9))
    a = g.node("Relu", [g.conv("x", 8, stride=2)])
    b = g.conv(a, 8)
    return g, g.conv(g.node("Add", [a, b]), 6, k=1, pads=(0, 0, 0, 0))


def _depthwise_pools():
    g = Graph((1, 4, 10, 7), 1)
    a = g.conv("x", 8, k=3, groups=4, pads=(2, 0, 1, 2), dilation=2)  # depthwise, multiplier 2
    a = g.node("MaxPool", [a], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    b = g.node("AveragePool", [a], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    return g, g.node("Concat", [a, b], 16, axis=1)


def _strided_groups():
    g = Graph((1, 6, 11, 11), 2)
    a = g.conv("x", 6, k=2, stride=3, pads=(0, 1, 1, 0), groups=3, bias=False)  # stride > kernel
    a = g.node("AveragePool", [a], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1],
               count_include_pad=1)
    return g, g.node("Flatten", [a], 6 * 3 * 3)


def _mlp():
    g = Graph((1, 12), 3)
    a = g.node("Relu", [g.gemm("x", 16, 12)])
    b = g.gemm(a, 16, 16)
    return g, g.gemm(g.node("Mul", [a, b]), 5, 16)


def _pooled_head():
    g = Graph((1, 3, 8, 8), 4)
    a = g.node("Relu", [g.conv("x", 8)])
    a = g.node("GlobalAveragePool", [a])
    return g, g.gemm(g.node("Flatten", [a], 8), 10, 8)


def _softmax_head():
    g = Graph((1, 12), 5)
    return g, g.node("Softmax", [g.gemm("x", 10, 12)], axis=-1)


def _transposes_softmax():
    g = Graph((1, 4, 5, 6), 6)
    a = g.node("Softmax", [g.conv("x", 6)], axis=2)  # over H: a strided stored axis
    a = g.node("Transpose", [a], perm=[0, 2, 3, 1])  # NCHW -> NHWC, then flattened
    a = g.gemm(g.node("Flatten", [a], 5 * 6 * 6), 7, 5 * 6 * 6)
    g.inits.append(numpy_helper.from_array(np.array([2], np.int64), "axes"))
    a = g.node("Transpose", [g.node("Unsqueeze", [a, "axes"], 7)], perm=[1, 2, 0])  # [1, 7, 1] -> [7, 1, 1]
    return g, g.node("Softmax", [a], axis=0)


def _reshapes():
    g = Graph((1, 48), 7)
    g.inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
                (("to_image", [1, 3, 4, 4]), ("regrid", [1, 2, 8, 4]))]
    g.channels["to_image"] = g.channels["regrid"] = 0
    a = g.conv(g.node("Reshape", ["x", "to_image"], 3), 4)  # flat -> NCHW: a transpose into HWC bytes
    a = g.node("Reshape", [a, "regrid"], 2)  # 4-D -> another 4-D: out of HWC and back
    return g, g.conv(a, 3)


GRAPHS = {"reshapes": _reshapes, "softmax_head": _softmax_head, "transposes_softmax": _transposes_softmax,"residual": _residual, "depthwise_pools": _depthwise_pools, "strided_groups": _strided_groups,
          "mlp": _mlp, "pooled_head": _pooled_head}


@pytest.fixture(scope="module", params=sorted(GRAPHS))
def qmodel(request):
    g, out = GRAPHS[request.param]()
    return quantised(g, out)


def test_kernels_are_bit_exact_with_onnx_runtime_on_the_host(qmodel, tmp_path):
    export = export_model(qmodel)
    rows = verify(export, qmodel, [], random_inputs(export, 120, seed=1), tmp_path)
    assert [(r.where, r.inputs, r.mismatches) for r in rows] == [("host", 120, 0)]


def test_transpose_is_a_view_where_the_bytes_keep_their_order_and_softmax_runs_along_its_stored_axis():
    program = lower(quantised(*_transposes_softmax()))
    ops = [layer.op for layer in program.layers]
    assert ops.count("permute") == 1  # the [1, 7, 1] -> [7, 1, 1] transpose moves no byte
    assert [(p["d"], p["inner"]) for p in (la.params for la in program.layers if la.op == "softmax")] == [
        (5, 36), (7, 1)]


def test_layout_ops_before_the_input_s_quantisation_run_on_its_codes(tmp_path):
    proto = quantised(*_mlp())  # float input [1, 12] -> QuantizeLinear -> ...
    graph = proto.graph
    graph.input[0].name = "x3d"
    del graph.input[0].type.tensor_type.shape.dim[:]
    for d in (1, 3, 4):
        graph.input[0].type.tensor_type.shape.dim.add().dim_value = d
    graph.initializer.append(numpy_helper.from_array(np.array([1, 12], np.int64), "flat"))
    graph.node.insert(0, onnx.helper.make_node("Reshape", ["x3d", "flat"], ["x"], name="flatten_input"))
    export = export_model(proto)
    assert export.program.tensors[export.program.input].shape == (1, 3, 4)
    rows = verify(export, proto, [], random_inputs(export, 100), tmp_path)
    assert rows[0].mismatches == 0


def test_saturation_both_ways_is_bit_exact(tmp_path):
    """Calibrated on inputs 20x smaller than the full int8 range the test feeds, the outputs clip at both
    ends, and the C clips as ONNX Runtime does."""
    from hasten.export.quantize import quantize_int8

    g = Graph((1, 3, 6, 6), 5)
    out = g.conv(g.conv("x", 8), 4)
    q = quantize_int8(g.model(out), [{"x": f["x"] * 0.05} for f in g.feeds()])
    export = export_model(q)
    inputs = random_inputs(export, 100, seed=3)
    want = ort_outputs(q, export, inputs)
    assert (want == -128).any() and (want == 127).any()
    assert verify(export, q, [], inputs, tmp_path)[0].mismatches == 0


def test_zero_points_at_the_int8_limits(tmp_path):
    """Calibrated on positive inputs only, the input zero point is the lowest code (uint8 0 -> int8 -128)."""
    g, out = _residual()
    from hasten.export.quantize import quantize_int8

    feeds = [{"x": np.abs(f["x"])} for f in g.feeds()]
    q = quantize_int8(g.model(out), feeds)
    export = export_model(q)
    assert export.program.tensors[export.program.input].zero_point == -128
    rows = verify(export, q, [], random_inputs(export, 100, seed=2), tmp_path)
    assert rows[0].mismatches == 0


def test_every_node_that_cannot_be_exported_is_named():
    g = Graph((1, 4, 6, 6))
    a = g.node("Sigmoid", [g.conv("x", 8)])
    b = g.node("LeakyRelu", [g.conv(a, 8)], alpha=0.1)
    with pytest.raises(ExportError) as err:
        export_model(quantised(g, g.conv(b, 4)))
    text = str(err.value)
    assert "2 node(s)" in text and "sigmoid" in text and "leakyrelu" in text
    assert "(QLinearSigmoid, QLinearLeakyRelu;" in text  # the ops counted first


def test_a_model_whose_input_is_not_quantised_lists_every_float_node():
    g = Graph((1, 12), 3)
    model = quantised(g, g.gemm(g.node("Tanh", ["x"], 12), 4, 12))  # ONNX Runtime runs Tanh in float
    with pytest.raises(ExportError) as err:
        export_model(model)
    text = str(err.value)
    assert "the input 'x' (float) is not quantised" in text and "Tanh" in text


def test_a_float_model_is_refused_with_the_command_that_quantises_it(tmp_path):
    g, out = _mlp()
    path = tmp_path / "mlp.onnx"
    onnx.save(g.model(out), path)
    with pytest.raises(ExportError, match="hasten quantize .* --scheme int8-static"):
        load_quantised(str(path))


# -- the arena --------------------------------------------------------------------------------------------


def test_arena_places_no_two_live_tensors_on_the_same_bytes(qmodel):
    program = lower(qmodel)
    plan = plan_arena(program)
    life = lifetimes(program)
    assert set(plan.slots) == set(life)
    for a, b in itertools.combinations(plan.slots.values(), 2):
        live_together = a.first <= b.last and b.first <= a.last
        apart = a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
        assert apart or not live_together, (a, b)
    assert all(s.offset + s.size <= plan.size for s in plan.slots.values())


def test_arena_lower_bound_is_the_peak_of_live_bytes_and_the_plan_is_within_10_percent(qmodel):
    program = lower(qmodel)
    plan = plan_arena(program)
    life = lifetimes(program)
    peak = max(sum((s + 3) // 4 * 4 for s, a, b in life.values() if a <= i <= b)
               for i in range(len(program.layers))) if life else 0
    assert plan.lower_bound == peak
    assert plan.lower_bound <= plan.size <= 1.10 * plan.lower_bound


def test_a_model_s_input_and_output_are_not_in_the_arena(qmodel):
    program = lower(qmodel)
    stored = set(plan_arena(program).slots)
    assert program.storage(program.input) not in stored and program.storage(program.output) not in stored


# -- writing ----------------------------------------------------------------------------------------------


def test_write_export_refuses_to_overwrite_and_leaves_other_files_alone(tmp_path):
    g, out = _mlp()
    export = export_model(quantised(g, out))
    (tmp_path / "notes.txt").write_text("mine")
    write_export(export, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"notes.txt", "model.c", "model.h", "README.md"}
    with pytest.raises(ExportError, match="--force"):
        write_export(export, tmp_path)
    (tmp_path / "model.c").write_text("old")
    write_export(export, tmp_path, force=True)
    assert (tmp_path / "model.c").read_text() == export.model_c
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_generated_c_uses_no_malloc_or_printf_and_puts_weights_in_const_arrays():
    g, out = _pooled_head()
    export = export_model(quantised(g, out))
    code = export.model_c
    for banned in ("malloc", "printf", "#include <stdio.h>", "#include <stdlib.h>"):
        assert banned not in code
    assert "static const int8_t l1_w[" in code and "static int8_t hs_arena[" in code
    assert f"#define HS_MODEL_ARENA_BYTES {export.arena.size}" in export.model_h
