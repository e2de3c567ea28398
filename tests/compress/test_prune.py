"""Structured pruning of transformer encoders: shapes, numbers, no-op, MACs, export, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import tiny_bert, token_inputs

from hasten.backends import get_backend
from hasten.compress import CompressError, apply_plan, count_macs, load_student, prune, save_student, to_model
from hasten.compress.prune import find_encoder_layers, layer_keep

torch.set_num_threads(1)


def _layers(module):
    return find_encoder_layers(module)[1]


def test_heads_and_ffn_are_removed_as_asked():
    net, x = tiny_bert(), token_inputs()
    r = prune(net, x, heads=0.5, ffn=0.5)
    for layer in _layers(r.module):
        att = layer.attention.self
        assert att.num_attention_heads == 2 and att.all_head_size == 16
        assert att.query.weight.shape == att.key.weight.shape == att.value.weight.shape == (16, 32)
        assert layer.attention.output.dense.weight.shape == (32, 16)
        assert layer.intermediate.dense.weight.shape == (32, 32)
        assert layer.output.dense.weight.shape == (32, 32)
    assert r.plan["heads"] == [sorted(h) for h in r.plan["heads"]] and all(len(h) == 2 for h in r.plan["heads"])
    # the original is untouched
    assert _layers(net)[0].attention.self.query.weight.shape == (32, 32)


def test_macs_are_counted_from_shapes_and_drop():
    net, x = tiny_bert(), token_inputs(batch=1, seq=10)
    b, t, h, f, layers = 1, 10, 32, 64, 3
    per_layer = 4 * t * h * h + 2 * t * h * f + 2 * t * t * h
    assert count_macs(net, x) == layers * per_layer + b * h * h  # + the BERT pooler on the first token
    r = prune(net, x, heads=0.5, ffn=0.5)
    half = 4 * t * h * 16 + 2 * t * h * 32 + 2 * t * t * 16
    assert r.macs_after == layers * half + h * h
    assert r.macs_after < 0.55 * r.macs_before


def test_zero_fractions_are_a_no_op():
    net, x = tiny_bert(), token_inputs()
    r = prune(net, x, heads=0.0, ffn=0.0)
    with torch.no_grad():
        assert torch.equal(net(**x), r.module(**x))
    assert r.macs_after == r.macs_before


def test_pruned_model_exports_and_onnx_matches_torch():
    net = tiny_bert()
    r = prune(net, token_inputs(), heads=0.5, ffn=0.25, keep_layers=[0, 2])
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dyn = {n: {0: "batch", 1: "sequence"} for n in names}
    model = to_model(r.module, token_inputs(), input_names=names, output_names=["emb"], dynamic_axes=dyn)
    session = get_backend("onnxruntime", threads=1).compile(model)
    fresh = token_inputs(batch=3, seq=9, seed=7)  # other shapes, fresh values
    out = session.run({k: v.numpy() for k, v in fresh.items()})["emb"]
    with torch.no_grad():
        ref = r.module(**fresh).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)
    assert len(_layers(r.module)) == 2


def test_keep_layers_keeps_those_layers_in_order():
    net, x = tiny_bert(layers=4), token_inputs()
    assert layer_keep(6, 3) == [1, 3, 5] and layer_keep(4, 2) == [1, 3]
    r = prune(net, x, keep_layers=[1, 3])
    kept = _layers(r.module)
    assert len(kept) == 2
    for new, old in zip(kept, [_layers(net)[1], _layers(net)[3]], strict=True):
        assert torch.equal(new.output.dense.weight, old.output.dense.weight)


def test_target_flops_is_reached():
    net, x = tiny_bert(), token_inputs()
    r = prune(net, x, target_flops=0.6)
    assert 0.5 < r.macs_ratio <= 0.6
    assert any("target_flops" in n for n in r.notes)


@pytest.mark.parametrize("method", ["magnitude", "l1", "taylor", "activation"])
def test_every_importance_removes_a_dead_head_first(method):
    net, x = tiny_bert(), token_inputs()
    att = _layers(net)[1].attention
    with torch.no_grad():  # head 2 of layer 1 contributes nothing
        for lin in (att.self.query, att.self.key, att.self.value):
            lin.weight[16:24] = 0
            lin.bias[16:24] = 0
        att.output.dense.weight[:, 16:24] = 0
    calib = [token_inputs(seed=s) for s in range(3)]
    r = prune(net, x, heads=0.25, importance=method, calib=calib)
    assert r.plan["heads"][1] == [0, 1, 3]


def test_importance_needing_data_refuses_without_it():
    with pytest.raises(CompressError, match="calibration"):
        prune(tiny_bert(), token_inputs(), heads=0.5, importance="taylor")
    with pytest.raises(CompressError, match="fraction"):
        prune(tiny_bert(), token_inputs(), heads=1.0)


def test_student_round_trips_through_safetensors(tmp_path):
    net, x = tiny_bert(), token_inputs()
    r = prune(net, x, heads=0.5, ffn=0.5, keep_layers=[0, 2])
    with torch.no_grad():
        r.module.bert.encoder.layer[0].output.dense.weight.mul_(1.5)  # a "trained" student
    path = save_student(tmp_path / "s.safetensors", r.module, r.plan, "tiny")
    back = load_student(path, tiny_bert(), x)
    with torch.no_grad():
        assert torch.equal(back(**x), r.module(**x))
    assert apply_plan(net, r.plan).bert.encoder.layer[0].attention.self.num_attention_heads == 2
    with pytest.raises(CompressError, match="pickled"):
        load_student(tmp_path / "s.pt", net)
