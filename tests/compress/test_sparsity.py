"""Unstructured and N:M sparsity: exact patterns, and a report that says dense CPU kernels gain nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hasten.compress import CompressError, follows_n_m, magnitude_prune, n_m_prune


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 3))


def test_two_of_four_is_exact():
    net, report = n_m_prune(_net(), 2, 4)
    for mod in (net[0], net[2], net[4]):
        w = mod.weight.permute(0, 2, 3, 1) if mod.weight.dim() == 4 else mod.weight
        nonzero = (w.reshape(-1, 4) != 0).sum(dim=1)
        assert torch.equal(nonzero, torch.full_like(nonzero, 2))
        assert follows_n_m(mod.weight, 2, 4)
    assert report.sparsity == pytest.approx(0.5)
    assert "same speed" in report.note
    # the kept pair is the two largest |w| of each group
    w0 = _net()[4].weight.reshape(-1, 4).abs()
    kept = net[4].weight.reshape(-1, 4) != 0
    assert torch.equal(kept, w0 >= w0.sort(dim=1).values[:, 2:3])


def test_layers_that_do_not_fit_n_m_are_left_dense():
    torch.manual_seed(0)
    net, report = n_m_prune(nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 2)), 2, 4)
    assert "0" in report.skipped and (net[0].weight != 0).all()
    assert follows_n_m(net[1].weight) and not follows_n_m(_net()[4].weight)
    with pytest.raises(CompressError):
        n_m_prune(nn.Sequential(nn.Linear(6, 8)), 2, 4)


def test_magnitude_pruning_zeroes_the_smallest_share():
    original = _net()
    net, report = magnitude_prune(original, 0.75)
    for a, b in ((original[2], net[2]), (original[4], net[4])):
        zeros = b.weight == 0
        assert zeros.float().mean().item() == pytest.approx(0.75, abs=1 / b.weight.numel())
        assert a.weight.abs()[zeros].max() <= a.weight.abs()[~zeros].min()
    assert report.sparsity == pytest.approx(0.75, abs=1e-3)
    g, greport = magnitude_prune(original, 0.5, scope="global")
    assert greport.sparsity == pytest.approx(0.5, abs=1e-3)
    same, _ = magnitude_prune(original, 0.0)
    assert all(torch.equal(p, q) for p, q in zip(original.parameters(), same.parameters(), strict=True))
