"""Cost model: FLOPs equal the formulas exactly on hand-built graphs; bytes follow dtype sizes; MiniLM."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hasten
from hasten.measure.cost import estimate_cost

F32 = TensorProto.FLOAT
RNG = np.random.default_rng(0)


def _init(name, shape, dtype=np.float32):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        arr = RNG.integers(max(info.min, -100), min(info.max, 100), shape).astype(dtype)
    else:
        arr = RNG.standard_normal(shape).astype(dtype)
    return numpy_helper.from_array(arr, name)


def _model(nodes, inputs, outputs, inits=(), contrib=False) -> hasten.Model:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], list(inits))
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("com.microsoft", 1)] if contrib else [])
    return hasten.load(helper.make_model(graph, opset_imports=opsets))


def _row(report, name):
    return next(r for r in report.rows if r.name == name)


def test_batched_matmul_flops_and_bytes_exact():
    b, h, m, k, n = 2, 3, 64, 32, 48
    model = _model([helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")],
                   [("a", F32, [b, h, m, k])], [("y", F32, None)], [_init("w", (k, n))])
    row = _row(estimate_cost(model), "mm")
    assert row.flops == 2 * b * h * m * n * k
    assert row.bytes == 4 * (b * h * m * k + k * n + b * h * m * n)
    assert (row.category, row.dtype) == ("linear", "fp32")


def test_matmul_of_two_activations_is_attention():
    model = _model([helper.make_node("MatMul", ["q", "k"], ["s"], name="qk")],
                   [("q", F32, [1, 4, 16, 8]), ("k", F32, [1, 4, 8, 16])], [("s", F32, None)])
    report = estimate_cost(model)
    assert _row(report, "qk").category == "attention"
    assert report.attention_flops == 2 * 4 * 16 * 16 * 8 and report.linear_flops == 0


def test_gemm_exact_with_trans_and_bias():
    m, k, n = 5, 12, 7
    model = _model([helper.make_node("Gemm", ["a", "w", "c"], ["y"], name="gemm", transB=1)],
                   [("a", F32, [m, k])], [("y", F32, None)], [_init("w", (n, k)), _init("c", (n,))])
    row = _row(estimate_cost(model), "gemm")
    assert row.flops == 2 * m * n * k + m * n
    assert row.bytes == 4 * (m * k + n * k + n + m * n)


@pytest.mark.parametrize("bias", [False, True])
def test_conv_exact(bias):
    n, cin, cout, groups, kh, kw, hw = 2, 8, 16, 2, 3, 3, 32
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    inits = [_init("w", (cout, cin // groups, kh, kw))] + ([_init("b", (cout,))] if bias else [])
    node = helper.make_node("Conv", inputs, ["y"], name="conv", group=groups, strides=[2, 2], pads=[1, 1, 1, 1],
                            kernel_shape=[kh, kw])
    model = _model([node], [("x", F32, [n, cin, hw, hw])], [("y", F32, None)], inits)
    hout = wout = 16
    formula = 2 * n * cout * hout * wout * (cin // groups) * kh * kw
    assert _row(estimate_cost(model), "conv").flops == formula + (n * cout * hout * wout if bias else 0)


def test_conv_transpose_exact():
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv", strides=[2, 2])
    model = _model([node], [("x", F32, [1, 4, 8, 8])], [("y", F32, None)], [_init("w", (4, 6, 3, 3))])
    report = estimate_cost(model)
    assert _row(report, "deconv").flops == 2 * (4 * 8 * 8) * 6 * 9
    assert report.rows[0].bytes == 4 * (4 * 64 + 4 * 6 * 9 + 6 * 17 * 17)


def test_int8_weights_count_one_byte_matmulinteger():
    m, k, n = 16, 64, 32
    node = helper.make_node("MatMulInteger", ["a", "w", "az", "wz"], ["y"], name="mmi")
    inits = [_init("w", (k, n), np.int8), numpy_helper.from_array(np.array(3, np.uint8), "az"),
             numpy_helper.from_array(np.array(0, np.int8), "wz")]
    model = _model([node], [("a", TensorProto.UINT8, [m, k])], [("y", TensorProto.INT32, None)], inits)
    report = estimate_cost(model)
    row = _row(report, "mmi")
    assert row.flops == 2 * m * n * k and row.dtype == "int8" and row.category == "linear"
    assert row.bytes == m * k + k * n + 1 + 1 + 4 * m * n
    assert report.weight_bytes == k * n + 2


def test_qdq_weights_are_read_at_stored_size_and_qdq_matmul_is_int8():
    m, k, n = 8, 64, 32
    inits = [_init("wq", (k, n), np.int8), numpy_helper.from_array(np.array(0.02, np.float32), "ws"),
             numpy_helper.from_array(np.array(0, np.int8), "wz"),
             numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
             numpy_helper.from_array(np.array(128, np.uint8), "xz")]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], name="dq_w"),
             helper.make_node("MatMul", ["x", "w"], ["y1"], name="weight_only"),
             helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"),
             helper.make_node("MatMul", ["xd", "w"], ["y2"], name="qdq")]
    model = _model(nodes, [("x", F32, [m, k])], [("y1", F32, None), ("y2", F32, None)], inits)
    report = estimate_cost(model)
    dq = _row(report, "dq_w")
    assert dq.folded and dq.flops == 0 and dq.bytes == 0
    weight_only = _row(report, "weight_only")
    assert weight_only.bytes == 4 * m * k + (k * n + 4 + 1) + 4 * m * n
    assert weight_only.dtype == "fp32" and _row(report, "qdq").dtype == "int8"
    assert _row(report, "q_x").flops == 3 * m * k and _row(report, "dq_x").flops == 2 * m * k
    assert report.weight_bytes == k * n + 4 + 1 + 4 + 1  # int8 weight, its scale/zp, x's scale/zp


def _bert_like(layers=2, hidden=32, heads=4, ffn=64, vocab=50) -> hasten.Model:
    """A small BERT encoder with a dynamic sequence: embedding, attention, GELU(erf) FFN, LayerNorms."""
    dh = hidden // heads
    inits = [_init("emb", (vocab, hidden)), _init("ln_g", (hidden,)), _init("ln_b", (hidden,)),
             numpy_helper.from_array(np.array([0, -1, heads, dh], np.int64), "split_heads"),
             numpy_helper.from_array(np.array([0, -1, hidden], np.int64), "merge_heads"),
             numpy_helper.from_array(np.array(math.sqrt(dh), np.float32), "scale"),
             numpy_helper.from_array(np.array(math.sqrt(2), np.float32), "sqrt2"),
             numpy_helper.from_array(np.array(1, np.float32), "one"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
             helper.make_node("LayerNormalization", ["e", "ln_g", "ln_b"], ["x0"], name="ln_emb", axis=-1)]
    x = "x0"
    for i in range(layers):
        p = f"l{i}_"
        for w, shape in (("wq", (hidden, hidden)), ("wk", (hidden, hidden)), ("wv", (hidden, hidden)),
                         ("wo", (hidden, hidden)), ("w1", (hidden, ffn)), ("w2", (ffn, hidden))):
            inits += [_init(p + w, shape), _init(p + "b" + w[1:], (shape[1],))]
        for t in "qkv":
            nodes += [helper.make_node("MatMul", [x, p + "w" + t], [p + t + "0"], name=p + t),
                      helper.make_node("Add", [p + t + "0", p + "b" + t], [p + t + "1"]),
                      helper.make_node("Reshape", [p + t + "1", "split_heads"], [p + t + "2"])]
        nodes += [
            helper.make_node("Transpose", [p + "q2"], [p + "qt"], perm=[0, 2, 1, 3]),
            helper.make_node("Transpose", [p + "k2"], [p + "kt"], perm=[0, 2, 3, 1]),
            helper.make_node("Transpose", [p + "v2"], [p + "vt"], perm=[0, 2, 1, 3]),
            helper.make_node("MatMul", [p + "qt", p + "kt"], [p + "s"], name=p + "qk"),
            helper.make_node("Div", [p + "s", "scale"], [p + "s1"]),
            helper.make_node("Softmax", [p + "s1"], [p + "pr"], name=p + "softmax", axis=-1),
            helper.make_node("MatMul", [p + "pr", p + "vt"], [p + "c"], name=p + "pv"),
            helper.make_node("Transpose", [p + "c"], [p + "ct"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [p + "ct", "merge_heads"], [p + "cm"]),
            helper.make_node("MatMul", [p + "cm", p + "wo"], [p + "o0"], name=p + "o"),
            helper.make_node("Add", [p + "o0", p + "bo"], [p + "o1"]),
            helper.make_node("Add", [p + "o1", x], [p + "r1"]),
            helper.make_node("LayerNormalization", [p + "r1", "ln_g", "ln_b"], [p + "n1"], axis=-1),
            helper.make_node("MatMul", [p + "n1", p + "w1"], [p + "f0"], name=p + "ffn1"),
            helper.make_node("Add", [p + "f0", p + "b1"], [p + "f1"]),
            helper.make_node("Div", [p + "f1", "sqrt2"], [p + "g0"]),
            helper.make_node("Erf", [p + "g0"], [p + "g1"]),
            helper.make_node("Add", [p + "g1", "one"], [p + "g2"]),
            helper.make_node("Mul", [p + "f1", p + "g2"], [p + "g3"]),
            helper.make_node("Mul", [p + "g3", "half"], [p + "g4"]),
            helper.make_node("MatMul", [p + "g4", p + "w2"], [p + "f2"], name=p + "ffn2"),
            helper.make_node("Add", [p + "f2", p + "b2"], [p + "f3"]),
            helper.make_node("Add", [p + "f3", p + "n1"], [p + "r2"]),
            helper.make_node("LayerNormalization", [p + "r2", "ln_g", "ln_b"], [p + "out"], axis=-1),
        ]
        x = p + "out"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    return _model(nodes, [("ids", TensorProto.INT64, ["batch", "sequence"])], [("y", F32, None)], inits)


def test_bert_like_graph_counts_match_the_analytic_formulas():
    layers, hidden, heads, ffn, seq, vocab = 2, 32, 4, 64, 16, 50
    report = estimate_cost(_bert_like(layers, hidden, heads, ffn, vocab), {"sequence": seq})
    s, h = seq, hidden
    linear = layers * 2 * s * h * (4 * h + 2 * ffn)
    attention = layers * (2 * 2 * s * s * h + 5 * heads * s * s)
    norm = (2 * layers + 1) * 8 * s * h
    elementwise = layers * (7 * s * h + 9 * s * ffn + heads * s * s)
    assert report.linear_flops == linear
    assert report.attention_flops == attention
    cats = report.flops_by_category()
    assert cats["norm"] == norm and cats["elementwise"] == elementwise and cats["other"] == 0
    assert report.total_flops == linear + attention + norm + elementwise
    assert _row(report, "l0_softmax").category == "attention"
    # The embedding Gather reads only the rows it outputs: s rows of the table, not all `vocab`.
    emb = next(t for t in report.tensors if t.name == "emb")
    assert emb.nbytes == 4 * s * h
    assert report.uncosted() == {}
    ops = report.by_op_type()
    assert ops["MatMul"].count == 8 * layers and ops["MatMul"].flops == linear + layers * 4 * s * s * h
    assert [r.name for r in report.top(2)] == ["l0_ffn1", "l0_ffn2"]
    assert report.top(3, key="bytes")[0].bytes == max(r.bytes for r in report.rows)
    json.dumps(report.to_dict())


def test_contrib_attention_splits_projection_and_attention():
    s, h, heads = 16, 32, 4
    node = helper.make_node("Attention", ["x", "w", "b"], ["y"], name="attn", domain="com.microsoft",
                            num_heads=heads)
    model = _model([node], [("x", F32, [1, s, h])], [("y", F32, None)],
                   [_init("w", (h, 3 * h)), _init("b", (3 * h,))], contrib=True)
    report = estimate_cost(model)
    row = _row(report, "attn")
    assert report.linear_flops == 2 * s * h * 3 * h + s * 3 * h
    assert report.attention_flops == 2 * s * s * h * 2 + 5 * heads * s * s
    assert row.flops == report.linear_flops + report.attention_flops and row.known


def test_matmulnbits_reads_packed_int4_weights():
    s, k, n, block = 8, 64, 32, 32
    node = helper.make_node("MatMulNBits", ["a", "b", "scales"], ["y"], name="nbits", domain="com.microsoft",
                            K=k, N=n, bits=4, block_size=block)
    inits = [_init("b", (n, k // block, block // 2), np.uint8), _init("scales", (n * k // block,))]
    model = _model([node], [("a", F32, [1, s, k])], [("y", F32, None)], inits, contrib=True)
    row = _row(estimate_cost(model), "nbits")
    assert row.flops == 2 * s * n * k
    assert row.bytes == 4 * s * k + n * k // 2 + 4 * (n * k // block) + 4 * s * n


def test_unknown_ops_are_reported_not_guessed():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Mystery", ["r"], ["y"], name="m", domain="custom")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F32, [4, 4])],
                              [helper.make_tensor_value_info("y", F32, None)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])
    report = estimate_cost(hasten.load(proto))
    assert report.uncosted() == {"Mystery": 1}
    assert report.total_flops == 16


def test_mlp_floor_bytes_are_weights_and_io(mlp):
    report = estimate_cost(mlp, {"N": 4})
    weights = 4 * (16 * 32 + 32 + 32 * 8 + 8)
    assert report.weight_bytes == weights
    assert report.floor_bytes == weights + 4 * (4 * 16 + 4 * 8)
    assert report.activation_bytes == 4 * (3 * 4 * 32 + 4 * 8)
    assert report.bytes_as("bf16") == report.floor_bytes // 2
    # int8 linear weights at 1 byte, biases and io stay fp32
    assert report.bytes_as("fp32", linear_dtype="int8") == (16 * 32 + 32 * 8) + 4 * (32 + 8) + 4 * (64 + 32)


def test_minilm_is_within_two_percent_of_the_analytic_count():
    try:
        from hasten import zoo

        model = zoo.get("minilm").model()
    except Exception as exc:  # the zoo (or its optional torch extra) is not available
        pytest.skip(f"zoo:minilm unavailable: {exc}")
    report = estimate_cost(model, {"batch": 1, "sequence": 128})
    # 6 layers x 128 tokens x 2 x (4 x 384^2 + 2 x 384 x 1536) and 6 x 2 x 2 x 128^2 x 384
    assert report.linear_flops == 6 * 128 * 2 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert abs(report.linear_flops / 2.72e9 - 1) < 0.01
    assert abs(report.attention_flops / 0.15e9 - 1) < 0.06
    assert abs(report.total_flops / 2.87e9 - 1) < 0.02
    assert report.uncosted() == {}


def test_flops_and_floor_of_a_dynamic_model_use_the_samples_sizes():
    from modelkit import THIRDPARTY_CLASSES, make_thirdparty, thirdparty_images

    from hasten.input_shapes import sample_shapes
    from hasten.inspect import host_floors

    model = hasten.load(make_thirdparty())
    shapes = sample_shapes({"x": thirdparty_images(2, 0)})
    cost = estimate_cost(model, input_shapes=shapes)
    hw = 48 * 320
    assert _row(cost, "conv").flops == 2 * 8 * hw * 3 * 9 + 8 * hw
    assert _row(cost, "proj").flops == 2 * hw * 16 * 8
    assert _row(cost, "head").flops == 2 * THIRDPARTY_CLASSES * 16 + THIRDPARTY_CLASSES
    floors = host_floors(model, shapes)
    if floors is not None:  # None only when this host cannot be measured
        assert floors["flops"] == cost.total_flops
    assert estimate_cost(model).total_flops != cost.total_flops  # the no-data default is another size
