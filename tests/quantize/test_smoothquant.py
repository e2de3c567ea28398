"""SmoothQuant: exact in float (outputs unchanged), structure changed, the right tensors found."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from hasten.quantize.smoothquant import (
    ALPHA_GRID,
    choose_factors,
    find_smoothable,
    predicted_error,
    smooth,
    smoothing_factors,
    weights_of,
)
from hasten.quantize.stats import TensorStats

C = 16


def make_block(residual: bool, decomposed: bool = False, seed: int = 0) -> onnx.ModelProto:
    """x[N,T,C] -> LayerNorm (gamma with an outlier channel) -> two MatMuls (+bias) -> Add [-> + LN output]."""
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.5, 1.5, C).astype(np.float32)
    gamma[3] = 25.0
    inits = [numpy_helper.from_array(gamma, "gamma"),
             numpy_helper.from_array(rng.normal(0, 0.1, C).astype(np.float32), "beta"),
             numpy_helper.from_array(rng.normal(0, 0.3, (C, C)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, C).astype(np.float32), "b1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (C, C)).astype(np.float32), "w2")]
    if decomposed:
        inits += [numpy_helper.from_array(np.float32(1e-5), "eps"), numpy_helper.from_array(np.float32(2.0), "two")]
        nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[-1], name="ln_mean"),
                 helper.make_node("Sub", ["x", "mean"], ["d"], name="ln_sub"),
                 helper.make_node("Pow", ["d", "two"], ["d2"], name="ln_pow"),
                 helper.make_node("ReduceMean", ["d2"], ["var"], axes=[-1], name="ln_var"),
                 helper.make_node("Add", ["var", "eps"], ["ve"], name="ln_eps"),
                 helper.make_node("Sqrt", ["ve"], ["std"], name="ln_sqrt"),
                 helper.make_node("Div", ["d", "std"], ["n"], name="ln_div"),
                 helper.make_node("Mul", ["n", "gamma"], ["g"], name="ln_gamma"),
                 helper.make_node("Add", ["g", "beta"], ["y"], name="ln_beta")]
    else:
        nodes = [helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["y"], axis=-1, name="ln")]
    nodes += [helper.make_node("MatMul", ["y", "w1"], ["a0"], name="fc1"),
              helper.make_node("Add", ["a0", "b1"], ["a"], name="fc1_bias"),
              helper.make_node("MatMul", ["y", "w2"], ["b"], name="fc2"),
              helper.make_node("Add", ["a", "b"], ["h"], name="sum")]
    if residual:
        nodes.append(helper.make_node("Add", ["h", "y"], ["out"], name="residual"))
    else:
        nodes.append(helper.make_node("Identity", ["h"], ["out"], name="out"))
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, C])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, C])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run(proto, x):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def layernorm_output_stats(proto, x) -> TensorStats:
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    probe.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    ts = TensorStats("y")
    ts.update(sess.run(["y"], {"x": x})[0], per_channel=True)
    return ts


def fresh(seed, n=8):
    return np.random.default_rng(seed).normal(0, 2, (n, 4, C)).astype(np.float32)


@pytest.mark.parametrize("residual, mode", [(False, "norm"), (True, "mul")])
def test_smoothing_is_exact_and_changes_the_structure(residual, mode):
    proto = make_block(residual)
    cands = find_smoothable(proto)
    assert [(c.tensor, c.kind, sorted(c.consumers), c.exclusive) for c in cands] == \
        [("y", "LayerNormalization", ["fc1", "fc2"], not residual)]
    ts = layernorm_output_stats(proto, fresh(1, 64))
    s = smoothing_factors(ts.channel_absmax, np.max([np.abs(w).max(1) for w in weights_of(proto, cands[0])], 0), 0.5)
    out, report = smooth(proto, {"y": s}, alpha=0.5)
    assert report.smoothed["y"]["mode"] == mode
    x = fresh(2)
    np.testing.assert_allclose(run(out, x), run(proto, x), rtol=1e-4, atol=1e-4)
    ops = [n.op_type for n in out.graph.node]
    ln = next(n for n in out.graph.node if n.op_type == "LayerNormalization")
    if mode == "norm":
        assert ops.count("Mul") == 0 and ln.input[1] != "gamma" and report.derived == {"y": ("y", report.derived["y"][1])}
    else:
        assert ops.count("Mul") == 1 and ln.input[1] == "gamma"
        mul = next(n for n in out.graph.node if n.op_type == "Mul")
        readers = sorted(n.name for n in out.graph.node if mul.output[0] in n.input)
        assert readers == ["fc1", "fc2"]  # the residual still reads the LayerNorm output itself
        assert next(n for n in out.graph.node if n.name == "residual").input[1] == "y"
    names = {n.name: n for n in out.graph.node}
    assert names["fc1"].input[1] != "w1" and names["fc2"].input[1] != "w2"
    assert {"w1", "w2"}.isdisjoint({t.name for t in out.graph.initializer})  # replaced weights dropped
    # the smoothed activation is flatter across channels
    derived = ts.scaled(report.derived[next(iter(report.derived))][1])
    spread = lambda a: a.max() / np.median(a)  # noqa: E731
    assert spread(derived.channel_absmax) < 0.5 * spread(ts.channel_absmax)


def test_decomposed_layernorm_is_found_and_smoothed_exactly():
    proto = make_block(residual=False, decomposed=True)
    cands = find_smoothable(proto)
    assert len(cands) == 1 and cands[0].kind == "decomposed" and cands[0].gamma == "gamma"
    s = np.random.default_rng(3).uniform(0.2, 5.0, C)
    out, report = smooth(proto, {"y": s})
    assert report.smoothed["y"]["mode"] == "norm"
    x = fresh(4)
    np.testing.assert_allclose(run(out, x), run(proto, x), rtol=1e-4, atol=1e-4)
    gamma_mul = next(n for n in out.graph.node if n.name == "ln_gamma")
    assert gamma_mul.input[1] != "gamma"


def test_any_producer_scope_smooths_other_matmul_inputs_with_a_mul():
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
             helper.make_node("Add", ["y", "r"], ["out"], name="residual")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, C])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 4, C])],
                              [numpy_helper.from_array(rng.normal(size=(C, C)).astype(np.float32), "w1"),
                               numpy_helper.from_array(rng.normal(size=(C, C)).astype(np.float32), "w2")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    assert find_smoothable(proto) == []  # no normalisation
    cands = find_smoothable(proto, any_producer=True)
    assert sorted((c.tensor, c.kind) for c in cands) == [("r", "any"), ("x", "any")]
    factors = {c.tensor: rng.uniform(0.1, 10, C) for c in cands}
    out, report = smooth(proto, factors, any_producer=True)
    assert {v["mode"] for v in report.smoothed.values()} == {"mul"}
    assert [n.op_type for n in out.graph.node].count("Mul") == 2
    x = fresh(8)
    np.testing.assert_allclose(run(out, x), run(proto, x), rtol=1e-4, atol=1e-4)


def test_no_normalisation_is_a_no_op():
    rng = np.random.default_rng(5)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["out"], name="fc")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", C])],
                              [numpy_helper.from_array(rng.normal(size=(C, C)).astype(np.float32), "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert find_smoothable(proto) == []
    out, report = smooth(proto, {})
    assert report.smoothed == {} and out.graph == proto.graph


def test_factor_formula_and_guards():
    s = smoothing_factors(np.array([4.0, 0.0, 9.0]), np.array([1.0, 2.0, 0.0]), 0.5)
    np.testing.assert_allclose(s, [2.0, 1.0, 1.0])
    s = smoothing_factors(np.array([100.0]), np.array([0.01]), 0.8)
    np.testing.assert_allclose(s, [100.0**0.8 / 0.01**0.2])


def test_auto_alpha_never_predicts_worse_than_no_smoothing():
    proto = make_block(residual=True)
    ts = layernorm_output_stats(proto, fresh(6, 64))
    weights = weights_of(proto, find_smoothable(proto)[0])
    s, alpha = choose_factors(ts, weights, "auto")
    assert alpha in ALPHA_GRID  # the outlier channel makes smoothing worth it
    assert predicted_error(ts, weights, s) < 0.5 * predicted_error(ts, weights, np.ones(C))
    s_fixed, a_fixed = choose_factors(ts, weights, 0.5)
    assert a_fixed == 0.5 and predicted_error(ts, weights, s) <= predicted_error(ts, weights, s_fixed)


@pytest.mark.slow
def test_minilm_layernorm_outputs_are_smoothed_exactly():
    from hasten import zoo
    from hasten.quantize.graph import inferred_proto

    entry = zoo.get("minilm")
    proto = inferred_proto(entry.model())
    cands = find_smoothable(proto)
    # the embedding LayerNorm and five post-FFN LayerNorms feed Q/K/V, six post-attention ones the FFN-in
    # MatMul (the last LayerNorm feeds the pooling); each also feeds a residual Add, so every one is smoothed
    # with a Mul on the branch to its MatMuls
    assert len(cands) == 12 and not any(c.exclusive for c in cands)
    assert sorted(len(c.consumers) for c in cands) == [1] * 6 + [3] * 6
    rng = np.random.default_rng(0)
    out, report = smooth(proto, {c.tensor: rng.uniform(0.1, 10.0, 384) for c in cands})
    assert [n.op_type for n in out.graph.node].count("Mul") == [n.op_type for n in proto.graph.node].count("Mul") + 12
    feeds = next(entry.evaluation().take(4).feeds(4))
    sess = lambda p: ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"])  # noqa: E731
    np.testing.assert_allclose(sess(out).run(None, feeds)[0], sess(proto).run(None, feeds)[0], rtol=1e-4,
                               atol=1e-5)
