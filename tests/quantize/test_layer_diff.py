"""Layer-by-layer diff: SQNR per tensor in topological order, the first broken layer, QDQ mapping."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hasten
from hasten.data import Samples
from hasten.errors import QuantizationError
from hasten.measure.accuracy import SQNR_CAP_DB
from hasten.quantize.layer_diff import layer_diff, match_tensors

WIDTH, LAYERS = 32, 4


def _chain(weights: list[np.ndarray], qdq_on: str | None = None, scale: float = 0.05) -> onnx.ModelProto:
    """x -> [MatMul fc_i -> Relu relu_i] * LAYERS -> y; optionally Q/DQ (uint8) on tensor `qdq_on`."""
    nodes, inits, x = [], [], "x"
    for i, w in enumerate(weights):
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        src = x
        if qdq_on == x:
            inits += [numpy_helper.from_array(np.array(scale, np.float32), "s"),
                      numpy_helper.from_array(np.array(128, np.uint8), "z")]
            nodes += [helper.make_node("QuantizeLinear", [x, "s", "z"], [f"{x}_q"], name=f"{x}_Q"),
                      helper.make_node("DequantizeLinear", [f"{x}_q", "s", "z"], [f"{x}_dq"], name=f"{x}_DQ")]
            src = f"{x}_dq"
        nodes.append(helper.make_node("MatMul", [src, f"w{i}"], [f"h{i}"], name=f"fc{i}"))
        out = "y" if i == len(weights) - 1 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"h{i}"], [out], name=f"relu{i}"))
        x = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", WIDTH])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH / 2)).astype(np.float32) for _ in range(LAYERS)]


def test_first_broken_layer_found(weights):
    rng = np.random.default_rng(1)
    broken = list(weights)
    broken[2] = weights[2] + 0.5 * np.abs(weights[2]).mean() * rng.standard_normal(weights[2].shape).astype(
        np.float32)
    ref, cand = hasten.load(_chain(weights)), hasten.load(_chain(broken))
    samples = Samples.synthetic(ref, 8, seed=0)
    report = layer_diff(cand, ref, samples, threshold_db=20.0)
    assert [r.tensor for r in report.rows] == ["h0", "r0", "h1", "r1", "h2", "r2", "h3", "y"]
    by = {r.tensor: r for r in report.rows}
    assert by["h0"].sqnr_db == by["r1"].sqnr_db == SQNR_CAP_DB  # untouched layers are exact
    assert by["h2"].sqnr_db < 20
    assert report.first_broken.tensor == "h2" and report.first_broken.node == "fc2"
    assert report.worst_step.node == "fc2"
    assert by["h2"].drop_db == pytest.approx(SQNR_CAP_DB - by["h2"].sqnr_db)
    assert by["h2"].step_db == pytest.approx(by["h2"].sqnr_db, abs=1e-6)  # from exact: the step is all of it
    assert by["h3"].step_db > by["h2"].step_db + 10  # fc3 itself is exact: it adds (almost) nothing
    d = report.to_dict()
    assert d["first_broken"]["node"] == "fc2" and len(d["rows"]) == 8 and d["samples"] == 8


def test_nothing_broken_when_only_mildly_changed(weights):
    mild = [w.copy() for w in weights]
    mild[1] = mild[1] * 1.001
    ref, cand = hasten.load(_chain(weights)), hasten.load(_chain(mild))
    report = layer_diff(cand, ref, Samples.synthetic(ref, 4, seed=0))
    assert report.first_broken is None
    assert report.worst_step.node == "fc1"
    assert 50 < min(r.sqnr_db for r in report.rows) < 70  # a 0.1% gain error is 60 dB


def test_qdq_output_mapped_back_to_float_name(weights):
    ref = hasten.load(_chain(weights))
    coarse = hasten.load(_chain(weights, qdq_on="r1", scale=0.5))
    pairs = match_tensors(ref.proto(), coarse.proto())
    assert pairs["r1"] == "r1_dq" and pairs["h0"] == "h0"
    report = layer_diff(coarse, ref, Samples.synthetic(ref, 8, seed=0), threshold_db=25.0)
    by = {r.tensor: r for r in report.rows}
    assert by["r0"].sqnr_db == SQNR_CAP_DB
    assert by["r1"].sqnr_db < 25 and by["r1"].node == "relu1"  # the quantised view of r1
    assert report.first_broken.tensor == "r1"


def test_inf_is_broken(weights):
    huge = list(weights)
    huge[1] = weights[1] * np.float32(1e38)
    ref, cand = hasten.load(_chain(weights)), hasten.load(_chain(huge))
    report = layer_diff(cand, ref, Samples.synthetic(ref, 4, seed=0))
    fb = report.first_broken
    assert fb.node == "fc1" and fb.nonfinite > 0 and fb.sqnr_db == -SQNR_CAP_DB


def test_unrelated_model_is_an_error(weights):
    ref = hasten.load(_chain(weights))
    other = ref.proto()
    for n in other.graph.node:
        n.output[:] = [f"other_{o}" for o in n.output]
        n.input[:] = [i if i in ("x",) or i.startswith("w") else f"other_{i}" for i in n.input]
    other.graph.output[0].name = "other_y"
    with pytest.raises(QuantizationError, match="shares no tensor"):
        layer_diff(hasten.load(other), ref, Samples.synthetic(ref, 2, seed=0))


def test_quantised_graph_input_is_a_row(weights):
    ref = hasten.load(_chain(weights))
    cand = hasten.load(_chain(weights, qdq_on="x", scale=0.02))
    report = layer_diff(cand, ref, Samples.synthetic(ref, 4, seed=0))
    first = report.rows[0]
    assert first.tensor == "x" and first.op_type == "input" and 20 < first.sqnr_db < 60
    assert report.rows[1].tensor == "h0" and report.rows[1].step_db > first.sqnr_db  # fc0 adds nothing


def test_mask_sentinels_not_counted():
    from hasten.quantize.layer_diff import TensorStat

    r = np.array([[1.0, 2.0, -3.4e38, 4.0]], np.float32)
    c = np.array([[1.0, 2.1, -np.inf, 4.0]], np.float32)
    st = TensorStat()
    st.update(r, c)
    assert st.nonfinite == 0 and st.ref_absmax == 4.0
    assert st.sqnr_db == pytest.approx(10 * np.log10(21.0 / 0.01), abs=1e-3)
    st.update(np.array([[1.0]], np.float32), np.array([[np.nan]], np.float32))
    assert st.nonfinite == 1 and st.sqnr_db == -SQNR_CAP_DB
