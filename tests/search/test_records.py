"""The headline's failure line and file sizes from records (pure functions, no search)."""

from __future__ import annotations

from hasten.recipe import Recipe, Step
from hasten.search.evaluate import Accuracy
from hasten.search.records import Record, failure_line, model_bytes

from .helpers import wide_mlp


def _rec(scheme: str | None, status: str, reason: str = "", stage: str = "", excess: float = 0.0) -> Record:
    steps = (Step("quantize", scheme, {}),) if scheme else ()
    r = Record(f"{scheme}-{status}-{reason}", Recipe(steps, "onnxruntime", {"threads": 1}), "scheme",
               status=status, reason=reason, stage=stage)
    if status == "rejected":
        r.full = Accuracy({}, {}, 10, False, excess, 0.0)
    return r


def test_failure_line_names_what_failed():
    base = _rec(None, "baseline")
    axis = "DequantizeLinear needs opset 13 for 'axis'"
    every = [base, _rec("int8-static", "failed", axis, "compile"), _rec("int8-dynamic", "failed", axis, "compile"),
             _rec("int8-weight", "failed", "no constant weights", "build")]
    line = failure_line(every)
    assert line.startswith("every int8 candidate failed: ") and "axis" in line and "(2x)" in line
    assert "no constant weights" in line
    mixed = every + [_rec("fp16", "failed", "boom", "build")]
    assert failure_line(mixed).startswith("every quantised candidate failed: ")
    fp16_ok = every + [_rec("fp16", "in-budget")]
    assert failure_line(fp16_ok).startswith("every int8 candidate failed: ")  # fp16 fitting is no excuse
    missed = [base, _rec("int8-static", "rejected", "accuracy", "full", 1.7), _rec("int8-dynamic", "failed", "x")]
    assert failure_line(missed).startswith("no quantised candidate fits the budget (1 missed it; the closest")
    assert "1.7x the allowed drop" in failure_line(missed) and "1 failed" in failure_line(missed)
    assert failure_line([base, _rec("int8-static", "in-budget"), _rec("int8-dynamic", "failed", "x")]) == ""
    assert failure_line([base]) == ""  # nothing quantised was tried


def test_model_bytes_is_the_saved_file_size(tmp_path):
    model = wide_mlp(width=96, layers=1)
    path = model.save(tmp_path / "m.onnx")
    assert model_bytes(model) == path.stat().st_size
