"""transformer_fusion on a tiny random BERT exported with the TorchScript exporter; and the default
pipeline `optimize_graph` on it."""

from __future__ import annotations

import numpy as np
import pytest
from modelkit import make_tiny_bert
from onnx import helper

from hasten.backends import backend_class
from hasten.passes import get_pass, optimize_graph
from hasten.passes.transformer_fusion import detect_heads

from .helpers import assert_same_outputs, make_model, vinfo

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, SEQ = 100, 16
FUSED = {"Attention": 2, "SkipLayerNormalization": 4, "EmbedLayerNormalization": 1, "BiasGelu": 2}


@pytest.fixture(scope="module")
def bert():
    return make_tiny_bert(VOCAB, SEQ, hidden=64, layers=2, heads=4, ffn=128)


def bert_feeds(seed: int, batch: int = 3, seq: int = 11) -> dict[str, np.ndarray]:
    """Random token ids, random segment ids, and padding in the attention mask."""
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[1, seq // 2:] = 0
    mask[-1, 2:] = 0
    return {"input_ids": rng.integers(0, VOCAB, (batch, seq)), "attention_mask": mask,
            "token_type_ids": rng.integers(0, 2, (batch, seq))}


def test_detect_heads(bert):
    assert detect_heads(bert) == (4, 64)


def test_fusion_counts_and_numbers(bert):
    fp = bert.fingerprint()
    result = get_pass("transformer_fusion")(bert)
    assert result.modified
    assert result.stats == FUSED
    hist = result.model.op_histogram()
    assert hist["com.microsoft.Attention"] == 2 and "Softmax" not in hist and "Erf" not in hist
    assert bert.fingerprint() == fp
    for seed in (1, 2):
        assert_same_outputs(bert, result.model, bert_feeds(seed), rtol=1e-4, atol=1e-4)


def test_explicit_heads_and_gelu_approximation(bert):
    result = get_pass("transformer_fusion", num_heads=4, hidden_size=64, gelu_approximation=True)(bert)
    assert result.stats == {**{k: v for k, v in FUSED.items() if k != "BiasGelu"}, "FastGelu": 2}
    # tanh-approximate Gelu: close, but not within the exact-fusion tolerance
    assert_same_outputs(bert, result.model, bert_feeds(3), rtol=1e-2, atol=1e-2)


def test_noop_on_a_graph_without_transformer_patterns():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    model = make_model(nodes, [vinfo("x", ["batch", 8])], [vinfo("y", ["batch", 4])],
                       {"w": rng.standard_normal((8, 4)).astype(np.float32)})
    fp = model.fingerprint()
    result = get_pass("transformer_fusion")(model)
    assert result.modified is False and result.model is model and result.stats == {}
    assert model.fingerprint() == fp


def test_graph_without_norm_or_gelu_skips_the_ort_tool(monkeypatch, bert):
    """A CNN has nothing ORT's tool can fuse: the pass must not run it (it took 34 s on PP-OCR's detector)."""
    import onnxruntime.transformers.optimizer as ort_optimizer

    from hasten.passes.transformer_fusion import has_fusable_ops

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    cnn = make_model(nodes, [vinfo("x", ["batch", 3, 8, 8])], [vinfo("y", ["batch", 4, 6, 6])],
                     {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32)})
    assert not has_fusable_ops(cnn) and has_fusable_ops(bert)

    def refuse(*args, **kwargs):
        raise AssertionError("ORT's optimizer was called")

    monkeypatch.setattr(ort_optimizer, "optimize_model", refuse)
    result = get_pass("transformer_fusion")(cnn)
    assert result.modified is False and result.model is cnn
    with pytest.raises(Exception, match="optimizer was called"):  # a BERT still reaches the tool
        get_pass("transformer_fusion")(bert)


def test_optimize_graph_pipeline(bert):
    result = optimize_graph(bert, backend_class("onnxruntime").domains)
    assert result.modified
    assert {k.split(".", 1)[1]: v for k, v in result.stats.items() if k.startswith("transformer_fusion.")} == FUSED
    assert result.stats["iterations"] == 2
    assert result.model.lineage[-1].startswith("transformer_fusion(")
    assert "Identity" not in result.model.op_histogram()
    assert_same_outputs(bert, result.model, bert_feeds(4), rtol=1e-4, atol=1e-4)
    # running the pipeline again changes nothing
    again = optimize_graph(result.model)
    assert again.modified is False and again.model is result.model

    portable = optimize_graph(bert, backend_class("openvino").domains)
    assert not any(k.startswith("com.microsoft") for k in portable.model.op_histogram())
    assert_same_outputs(bert, portable.model, bert_feeds(5))
