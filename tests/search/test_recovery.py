"""A candidate that fails with a known recovery is retried once with it, recorded in both records: per-tensor
for an error about per-channel axes / opsets, the node an error names kept out of the scheme."""

from __future__ import annotations

import pytest

from hasten.api import optimize
from hasten.errors import QuantizationError
from hasten.search import runner as runner_module

from .helpers import QUICK, FakeTimer, samples, scheme_speed, wide_mlp


@pytest.fixture
def data():
    return samples(32, seed=1, name="calib"), samples(24, seed=2, name="eval")


def _failing(monkeypatch, fails):
    """run_step raises QuantizationError(fails(step)) where that is not None (the real step otherwise)."""
    real = runner_module.run_step

    def run_step(step, model, calib):
        message = fails(step) if step.kind == "quantize" else None
        if message:
            raise QuantizationError(message)
        return real(step, model, calib)

    monkeypatch.setattr(runner_module, "run_step", run_step)


def _search(data, out, schemes):
    calib, ev = data
    return optimize(wide_mlp(width=128, layers=2), calib, ev, metric="cosine", out=out, backends="onnxruntime",
                    schemes=schemes, passes=(), mixed_precision=False, time_budget=600,
                    timer=FakeTimer(scheme_speed({"int8-dynamic": 2.0}), seed=0), **QUICK)


def test_per_channel_failure_is_retried_per_tensor(data, tmp_path, monkeypatch):
    # as ONNX Runtime refuses per-channel DequantizeLinear in an opset-12 model
    _failing(monkeypatch, lambda s: "DequantizeLinear: attribute 'axis' needs opset 13" if
             s.config.get("per_channel", True) else None)
    result = _search(data, tmp_path / "out", ("int8-dynamic",))
    first = next(r for r in result.records if r.origin == "scheme" and not r.recovery)
    assert first.status == "failed" and first.stage == "build"
    assert "axis" in first.reason and "retried once with per_channel=False" in first.reason
    retry = next(r for r in result.records if r.recovery)
    assert retry.parent == first.key and retry.recovery.startswith("per_channel=False")
    assert retry.recipe.steps[-1].config["per_channel"] is False and retry.status == "in-budget"
    assert result.chosen.key == retry.key or result.chosen.recipe.steps[-1].config["per_channel"] is False
    assert len([r for r in result.records if r.recovery]) == 1  # once, not again for the retry's variants


def test_a_node_named_in_the_error_is_kept_out(data, tmp_path, monkeypatch):
    _failing(monkeypatch, lambda s: None if "fc1" in (s.config.get("nodes_to_exclude") or ()) else
             "cannot infer type and shape for node fc1 (MatMul)")
    result = _search(data, tmp_path / "out", ("int8-dynamic",))
    retry = next(r for r in result.records if r.recovery)
    assert retry.recovery == "node fc1 kept out of int8-dynamic"
    assert list(retry.recipe.steps[-1].config["nodes_to_exclude"]) == ["fc1"] and retry.status == "in-budget"


def test_no_known_recovery_no_retry(data, tmp_path, monkeypatch):
    _failing(monkeypatch, lambda s: "out of memory")
    result = _search(data, tmp_path / "out", ("int8-dynamic",))
    quantised = [r for r in result.records if r.recipe.steps]
    assert quantised and all(r.status == "failed" and not r.recovery for r in quantised)
    assert "retried" not in quantised[0].reason
    assert result.chosen is result.baseline


def test_a_scheme_failing_on_a_graph_variant_is_retried_on_the_default_pipeline(data, tmp_path, monkeypatch):
    # as OpenVINO refuses magika's int8 Gemm after matmul_add_to_gemm; that variant is the fastest graph here
    real = runner_module.run_step

    def run_step(step, model, calib):
        if step.kind == "quantize" and any(n.op_type == "Gemm" for n in model.proto().graph.node):
            raise QuantizationError("openvino cannot read the model")
        return real(step, model, calib)

    monkeypatch.setattr(runner_module, "run_step", run_step)

    def speed(rec):
        return 1.5 if any(s.name == "matmul_add_to_gemm" for s in rec.recipe.steps) else 1.0

    calib, ev = data
    result = optimize(wide_mlp(width=128, layers=2), calib, ev, metric="cosine", out=tmp_path / "out",
                      backends="onnxruntime", schemes=("int8-dynamic",), mixed_precision=False, time_budget=600,
                      timer=FakeTimer(speed, seed=0), **QUICK)
    first = next(r for r in result.records if r.origin == "scheme" and not r.recovery)
    assert any(s.name == "matmul_add_to_gemm" for s in first.recipe.steps), first.label
    assert first.status == "failed" and "retried once with on the default graph pipeline" in first.reason
    retry = next(r for r in result.records if r.recovery)
    assert retry.recovery == "on the default graph pipeline" and retry.status == "in-budget", retry.reason
    assert not any(s.name == "matmul_add_to_gemm" for s in retry.recipe.steps)
