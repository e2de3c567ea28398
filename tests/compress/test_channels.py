"""Channel pruning of CNNs through the torch.fx dependency walk: residual adds, concatenations, depthwise
convs, flatten -> Linear, and groups that must stay whole."""

from __future__ import annotations

import numpy as np
import torch
from tiny import images, res_cat_net
from torch import nn

from hasten.backends import get_backend
from hasten.compress import count_macs, prune, to_model
from hasten.compress.channels import analyze

torch.set_num_threads(1)


def test_groups_follow_residuals_and_concatenations():
    g = analyze(res_cat_net(), images())
    groups = {k: (v.size, sorted(v.producers), v.pinned) for k, v in g.groups.items()}
    assert groups["stem"] == (8, ["b2", "stem"], "")  # the residual add ties stem and b2
    assert groups["b1"] == (8, ["b1"], "")
    assert groups["side"] == (4, ["side"], "")
    assert groups["head"] == (6, ["head"], "")


def test_half_the_channels_removed_and_dependents_fixed():
    net, x = res_cat_net(), images()
    r = prune(net, x, channels=0.5)
    m = r.module
    assert m.stem.out_channels == m.b2.out_channels == m.bn.num_features == 4
    assert m.b1.out_channels == m.bn1.num_features == m.b2.in_channels == 4
    assert m.side.out_channels == 2 and m.side.in_channels == 4
    assert m.dw.in_channels == m.dw.out_channels == m.dw.groups == 6 and m.dw.weight.shape == (6, 1, 3, 3)
    assert m.head.in_channels == 6 and m.head.out_channels == 3
    assert m.fc.in_features == 3 * 16 and m.fc.out_features == 5
    assert r.macs_after < 0.35 * r.macs_before
    # the stem's kept channels are the same in the stem, in b2 and in every consumer
    kept = r.plan["channels"]["stem"]
    assert torch.equal(m.b1.weight, net.b1.weight[r.plan["channels"]["b1"]][:, kept])


def test_pruned_cnn_exports_and_onnx_matches_torch():
    r = prune(res_cat_net(), images(), channels=0.5, importance="taylor", calib=[images(8, seed=s) for s in (1, 2)])
    model = to_model(r.module, images(), input_names=["x"], output_names=["y"])
    fresh = images(5, seed=9)
    out = get_backend("onnxruntime", threads=1).compile(model).run({"x": fresh.numpy()})["y"]
    with torch.no_grad():
        np.testing.assert_allclose(out, r.module(fresh).numpy(), atol=1e-5, rtol=0)


def test_zero_channels_is_a_no_op():
    net, x = res_cat_net(), images()
    r = prune(net, x, channels=0.0)
    with torch.no_grad():
        assert torch.equal(net(x), r.module(x))
    assert count_macs(r.module, x) == count_macs(net, x)


def test_groups_that_reach_the_output_or_unknown_ops_stay_whole():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.GroupNorm(2, 6), nn.Conv2d(6, 4, 1))
    r = prune(net.eval(), images(), channels=0.5, importance="activation", calib=[images()])
    assert r.module[0].out_channels == 4 and r.module[2].in_channels == 4
    assert r.module[2].out_channels == 6  # feeds a GroupNorm: pinned
    assert r.module[4].out_channels == 4  # the model output: pinned
    assert any("GroupNorm" in n and "output" in n for n in r.notes)


def test_digits_network_shapes():
    from hasten.zoo.digits import build_network

    torch.manual_seed(0)
    net = build_network().eval()
    r = prune(net, images(2, shape=(1, 8, 8)), channels=0.5)
    assert [r.module[i].out_channels for i in (0, 3, 7)] == [16, 32, 32]
    assert r.module[12].in_features == 32
    assert 0.24 < r.macs_ratio < 0.27
