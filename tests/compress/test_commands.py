"""`hasten prune` and `hasten distill` end to end on zoo:digits (a few seconds)."""

from __future__ import annotations

import json

import pytest

import hasten.commands.distill  # noqa: F401  (registers the command)
import hasten.commands.prune  # noqa: F401
from hasten.cli import main


def test_prune_then_distill_digits(tmp_path, capsys):
    out = tmp_path / "half.onnx"
    assert main(["prune", "zoo:digits", "--channels", "0.5", "--importance", "taylor", "-o", str(out),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shapes"] == {"channels": {"0": 16, "3": 32, "7": 32}}
    assert 0.24 < report["macs_ratio"] < 0.27
    assert report["max_abs_diff_torch_vs_onnx"] < 1e-4
    assert out.exists() and out.with_suffix(".safetensors").exists()

    final = tmp_path / "half-distilled.onnx"
    assert main(["distill", "zoo:digits", "--student", str(out.with_suffix(".safetensors")), "--steps", "200",
                 "--threads", "1", "-o", str(final), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 200 and report["final_loss"] < report["first_loss"] / 5
    top1, teacher = report["fidelity"]["top1"]["mean"], report["fidelity"]["teacher_top1"]["mean"]
    assert top1 >= teacher - 0.03
    assert (tmp_path / "half-distilled.ckpt" / "state.json").exists()
    # running it again finds the finished checkpoint and does not train again
    assert main(["distill", "zoo:digits", "--student", str(out.with_suffix(".safetensors")), "--steps", "200",
                 "--threads", "1", "-o", str(final), "--json", "--no-eval"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["resumed_from"] == 200


def test_distill_needs_a_student(tmp_path, capsys):
    assert main(["distill", "zoo:digits", "--steps", "5", "-o", str(tmp_path / "x.onnx")]) == 2
    assert "--student" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--heads", "0.5"], ["--channels", "1.5"]])
def test_prune_refuses_bad_options(tmp_path, capsys, args):
    assert main(["prune", "zoo:digits", *args, "-o", str(tmp_path / "x.onnx")]) == 2
    assert capsys.readouterr().err.startswith("error:")
