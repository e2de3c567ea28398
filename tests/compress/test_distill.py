"""Distillation: the loss goes down, the student gets closer to the teacher, an interrupted run resumes
bit-for-bit, and a checkpoint made with other settings is refused."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tiny import images, res_cat_net, tiny_bert, token_inputs

from hasten.compress import CompressError, DistillConfig, auto_layer_map, distill, prune
from hasten.compress.distill import _Data

torch.set_num_threads(1)


def _tokens(n: int = 64, seq: int = 16):
    x = token_inputs(batch=n, seq=seq, seed=3)
    return {k: v.numpy() for k, v in x.items()}


def _cos(a, b, x):
    with torch.no_grad():
        return float(torch.nn.functional.cosine_similarity(a(**x), b(**x)).mean())


def test_layer_dropped_student_learns_its_teacher():
    teacher = tiny_bert(layers=4)
    r = prune(teacher, token_inputs(), keep_layers=[1, 3])
    assert auto_layer_map(teacher, r.module, r.plan) == {"bert.encoder.layer.0": "bert.encoder.layer.1",
                                                          "bert.encoder.layer.1": "bert.encoder.layer.3"}
    held = token_inputs(batch=16, seq=16, seed=11)
    before = _cos(teacher, r.module, held)
    cfg = DistillConfig(steps=40, batch_size=16, lr=3e-3, attention_weight=0.5, freeze=("word_embeddings",))
    res = distill(teacher, r.module, _tokens(), cfg, plan=r.plan)
    assert res.output_loss == "cosine" and len(res.losses) == 40
    assert np.mean(res.losses[-5:]) < 0.5 * np.mean(res.losses[:5])
    assert _cos(teacher, res.student, held) > before
    assert all(p.requires_grad for p in teacher.parameters())  # the teacher's flags are restored


def test_pruned_cnn_student_learns_logits_with_kl():
    teacher = res_cat_net()
    r = prune(teacher, images(), channels=0.5)
    data = {"x": images(64, seed=5).numpy()}
    res = distill(teacher, r.module, data, DistillConfig(steps=30, batch_size=16, lr=1e-2, hidden_weight=0))
    assert res.output_loss == "kl"
    assert np.mean(res.losses[-5:]) < 0.5 * np.mean(res.losses[:5])


def _run(tmp, stop_after=None):
    teacher = tiny_bert(layers=4)
    r = prune(teacher, token_inputs(), keep_layers=[1, 3], heads=0.5)
    cfg = DistillConfig(steps=8, batch_size=16, lr=1e-3, checkpoint_every=4, attention_weight=0.5)
    return distill(teacher, r.module, _tokens(), cfg, plan=r.plan, checkpoint_dir=tmp, stop_after=stop_after)


def test_resume_after_interruption_gives_the_same_student(tmp_path):
    whole = _run(tmp_path / "a")
    part = _run(tmp_path / "b", stop_after=3)  # interrupted between checkpoints: saved at step 3
    assert part.steps == 3
    resumed = _run(tmp_path / "b")  # a fresh process would build the same student and resume
    assert resumed.resumed_from == 3 and resumed.steps == 8
    assert resumed.losses == whole.losses
    a, b = whole.student.state_dict(), resumed.student.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_with_other_settings_is_refused(tmp_path):
    _run(tmp_path, stop_after=2)
    teacher = tiny_bert(layers=4)
    r = prune(teacher, token_inputs(), keep_layers=[1, 3], heads=0.5)
    with pytest.raises(CompressError, match="other config"):
        distill(teacher, r.module, _tokens(), DistillConfig(steps=8, batch_size=16, lr=5e-4), plan=r.plan,
                checkpoint_dir=tmp_path)


def test_batches_depend_only_on_seed_and_step():
    arrays = _tokens(100)
    a, b = _Data(arrays, None, 16, seed=1), _Data(arrays, None, 16, seed=1)
    steps = [0, 5, 7, 12, 3]
    assert all(np.array_equal(a.indices(s), b.indices(s)) for s in steps)
    epoch = np.concatenate([a.indices(s) for s in range(6)])
    assert len(set(epoch.tolist())) == 96  # one epoch visits distinct items
    assert not np.array_equal(a.indices(0), _Data(arrays, None, 16, seed=2).indices(0))


def test_cached_teacher_equals_live_teacher_on_real_tokens():
    teacher = tiny_bert()
    student = copy.deepcopy(teacher)
    live = distill(teacher, copy.deepcopy(student), _tokens(), DistillConfig(steps=3, batch_size=16,
                                                                            cache_teacher=False))
    cached = distill(teacher, copy.deepcopy(student), _tokens(), DistillConfig(steps=3, batch_size=16))
    assert live.losses[0] == pytest.approx(0.0, abs=1e-6)  # student == teacher at the start
    np.testing.assert_allclose(live.losses, cached.losses, atol=1e-4)


def test_bf16_autocast_student_still_learns():
    teacher = tiny_bert(layers=4)
    r = prune(teacher, token_inputs(), keep_layers=[1, 3])
    res = distill(teacher, r.module, _tokens(), DistillConfig(steps=30, batch_size=16, lr=3e-3, bf16=True),
                  plan=r.plan)
    assert np.mean(res.losses[-5:]) < 0.6 * np.mean(res.losses[:5])
    assert all(p.dtype == torch.float32 for p in res.student.parameters())
