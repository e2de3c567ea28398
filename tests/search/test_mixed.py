"""Mixed precision in the search: a scheme that misses the budget because of one sensitive layer is
rescued by keeping that layer out of it, found through measured per-layer sensitivity."""

from __future__ import annotations

import json

import numpy as np

from hasten.api import optimize
from hasten.data import Samples

from .helpers import QUICK, wide_mlp


def _outlier_samples(n: int, seed: int) -> Samples:
    """Inputs where feature 0 is ~30x the others: per-tensor uint8 ranges of fc0's input erase the rest."""
    x = np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32)
    x[:, 0] *= 30.0
    return Samples({"x": x}, name=f"outliers{seed}")


def test_sensitivity_drives_mixed_precision(tmp_path):
    model = wide_mlp(width=1024, layers=3)
    result = optimize(model, _outlier_samples(64, 1), _outlier_samples(48, 2), metric="cosine",
                      max_drop=0.002, out=tmp_path / "out", backends="onnxruntime", schemes=("int8-static",),
                      passes=(), time_budget=150, **QUICK)
    static = [r for r in result.records if r.origin in ("scheme", "option", "combined")]
    assert static and not any(r.full is not None and r.full.within for r in static)  # whole-model misses
    mixed = [r for r in result.records if r.origin == "mixed"]
    assert mixed, [(r.label, r.status, r.speedup) for r in result.records]
    rescued = [r for r in mixed if r.full is not None and r.full.within]
    assert rescued, [(r.label, r.status, r.reason) for r in mixed]
    kept_out = rescued[0].recipe.steps[-1].config
    assert "fc0" in (kept_out["nodes_to_exclude"] or []) + (kept_out["dynamic_nodes"] or [])
    data = json.loads(result.results_path.read_text())
    sens = data["sensitivity"]
    assert sens["rows"][0]["node"] == "fc0"  # the layer reading the outlier feature ranks worst
    assert [c for c in data["candidates"] if c["origin"] == "mixed" and "sensitive" in c["note"]]
