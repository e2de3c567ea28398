"""int8 self-attention points: structure (which tensors, which readers, zero point 0), numbers (SQNR of the
quantised block), the no-op case (no Softmax), and OpenVINO running the result."""

import numpy as np
import onnx
import pytest
import torch
from modelkit import make_mlp
from onnx import numpy_helper

import hasten
from hasten.data import Samples
from hasten.errors import QuantizationError
from hasten.measure.accuracy import sqnr_db
from hasten.quantize import Int8StaticConfig
from hasten.quantize.attention import attention_points, score_matmuls
from hasten.quantize.graph import GraphIndex
from hasten.quantize.int8 import quantize_static

D, HEADS, T = 16, 2, 12


class TinyAttention(torch.nn.Module):
    """One self-attention layer as transformers write it: q, k, v projections, heads by view + transpose,
    scores / sqrt(d) + mask, softmax, context, output projection, residual."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.q, self.k, self.v, self.o = (torch.nn.Linear(D, D) for _ in range(4))

    def forward(self, x, mask):
        b, t, _ = x.shape

        def heads(y):
            return y.view(b, t, HEADS, D // HEADS).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = q @ k.transpose(-1, -2) / (D // HEADS) ** 0.5 + (1.0 - mask[:, None, None, :]) * -1e4
        ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, D)
        return x + self.o(ctx)


@pytest.fixture(scope="module")
def block():
    x, mask = torch.randn(1, T, D), torch.ones(1, T)
    return hasten.load(TinyAttention().eval(), (x, mask))


@pytest.fixture(scope="module")
def data(block):
    rng = np.random.default_rng(1)
    names = [i.name for i in block.inputs]
    arrays = {names[0]: rng.standard_normal((40, T, D)).astype(np.float32),
              names[1]: np.ones((40, T), np.float32)}
    arrays[names[1]][::3, -4:] = 0.0  # some padded items
    return Samples(arrays, name="attention")


def _producers(proto):
    return {o: n for n in proto.graph.node for o in n.output}


def test_points_are_the_projection_outputs_read_by_layout_ops(block):
    proto = block.proto()
    idx = GraphIndex(proto.graph)
    assert len(score_matmuls(proto, idx)) == 1
    prod = _producers(proto)
    qk = attention_points(proto, "qk", idx)
    assert len(qk) == 2
    for tensor, (readers, kind) in qk.items():
        assert kind == "signed" and prod[tensor].op_type == "Add"  # the projection's bias Add
        assert {idx.consumers[tensor][0].op_type} == {"Reshape"} and len(readers) == 1
    every = attention_points(proto, "all", idx)
    assert len(every) == 4 and set(qk) < set(every)
    kinds = sorted(kind for _, kind in every.values())
    assert kinds == ["probs", "signed", "signed", "signed"]
    probs = next(t for t, (_, kind) in every.items() if kind == "probs")
    assert prod[probs].op_type == "Softmax"


def test_no_softmax_no_points():
    proto = make_mlp()
    assert attention_points(proto, "all") == {}
    model = hasten.load(proto)
    calib = Samples({"x": np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32)})
    plain = quantize_static(model, Int8StaticConfig(), calib)
    with_attention = quantize_static(model, Int8StaticConfig(attention="all"), calib)
    assert with_attention.report["attention"] == []
    assert with_attention.model.proto().graph == plain.model.proto().graph


@pytest.mark.parametrize("scope", ["qk", "all"])
def test_quantised_attention_is_symmetric_int8_and_accurate(block, data, scope):
    result = quantize_static(block, Int8StaticConfig(attention=scope), data)
    expected = 2 if scope == "qk" else 4
    assert len(result.report["attention"]) == expected
    proto = result.model.proto()
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    qs = {n.input[0]: n for n in proto.graph.node if n.op_type == "QuantizeLinear"}
    for tensor in result.report["attention"]:
        zp = inits[qs[tensor].input[2]]
        assert zp.item() == 0  # zero point 0: what OpenVINO needs to keep attention in int8
        assert zp.dtype == (np.uint8 if "Softmax" in tensor else np.int8)
    ref = hasten.backends.run_samples(hasten.backends.get_backend("onnxruntime").compile(block), data)
    out = hasten.backends.run_samples(hasten.backends.get_backend("onnxruntime").compile(result.model), data)
    name = block.outputs[0].name
    assert sqnr_db(out[name], ref[name]) > 25.0
    plain = quantize_static(block, Int8StaticConfig(), data)
    n_plain = sum(n.op_type == "QuantizeLinear" for n in plain.model.proto().graph.node)
    assert len(qs) == n_plain + expected


def test_openvino_runs_the_int8_attention(block, data):
    result = quantize_static(block, Int8StaticConfig(attention="all"), data)
    ov = hasten.backends.get_backend("openvino").compile(result.model)
    ort = hasten.backends.get_backend("onnxruntime").compile(result.model)
    feed = next(iter(data.take(1).feeds(1)))
    a, b = ov.run(feed)[ov.output_names[0]], ort.run(feed)[ort.output_names[0]]
    assert sqnr_db(a, b) > 25.0


def test_bad_attention_option():
    with pytest.raises(QuantizationError, match="attention must be"):
        Int8StaticConfig(attention="heads")
    with pytest.raises(ValueError, match="scope"):
        attention_points(onnx.ModelProto(), "heads")
