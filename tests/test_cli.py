"""The CLI: one-line errors with exit code 2, --json output, bench side by side."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest
from modelkit import make_mlp

from hasten.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hasten", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def mlp_file(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(make_mlp(), path)
    return path


@pytest.mark.parametrize("content", [b"", b"not a model at all", bytes(range(256)) * 8])
def test_bad_model_one_line_exit_2(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    proc = run_cli("inspect", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad.onnx" in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_file_and_debug(tmp_path):
    proc = run_cli("bench", str(tmp_path / "none.onnx"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = run_cli("bench", str(tmp_path / "none.onnx"), "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_bad_shape_argument(mlp_file, capsys):
    assert main(["bench", str(mlp_file), "--shape", "nonsense=3"]) == 2
    assert "not an input or a dynamic dim" in capsys.readouterr().err


def test_bench_json_side_by_side(mlp_file, capsys):
    code = main(["bench", str(mlp_file), "--backend", "onnxruntime,openvino", "--threads", "1",
                 "--seconds", "0.2", "--rounds", "2", "--shape", "N=4", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["backend"] for r in data["rows"]] == ["onnxruntime", "openvino"]
    assert data["shapes"] == {"x": [4, 16]} and data["threads"] == 1
    assert all(r["median_ms"] > 0 and r["runs"] >= 100 for r in data["rows"])
    assert data["rows"][1]["max_abs_diff_vs_first"] < 1e-4


def test_bench_takes_the_shape_grammar_of_every_command(mlp_file, capsys):
    code = main(["bench", str(mlp_file), "--backend", "onnxruntime", "--threads", "1", "--seconds", "0.05",
                 "--rounds", "1", "--shape", "x=3,16", "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["shapes"] == {"x": [3, 16]}
    assert main(["bench", str(mlp_file), "--shape", "x=3,zero"]) == 2
    assert "not a shape" in capsys.readouterr().err


def test_the_cli_prints_no_library_warnings(mlp_file, tmp_path):
    import numpy as np

    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32))
    proc = run_cli("quantize", str(mlp_file), "--scheme", "int8-dynamic", "--calib", str(calib),
                   "-o", str(tmp_path / "q.onnx"))  # onnxruntime's quantize_dynamic logs a root warning
    assert proc.returncode == 0, proc.stderr
    assert "Please consider to run pre-processing" not in proc.stderr + proc.stdout  # onnxruntime.quantization
    assert "WARNING" not in proc.stderr, proc.stderr


def test_hastens_own_warnings_still_print():
    import logging

    from hasten.cli import LibraryQuiet

    def record(name, level=logging.WARNING, msg="m"):
        return logging.LogRecord(name, level, __file__, 1, msg, (), None)

    quiet = LibraryQuiet()
    assert quiet.filter(record("hasten.recipe")) and quiet.filter(record("hasten"))
    assert not quiet.filter(record("root")) and not quiet.filter(record("onnxruntime.quantization"))
    assert quiet.filter(record("root", logging.ERROR))  # errors always pass
    import hasten.cli

    own = f"{hasten.cli.__file__}:3: UserWarning: tuned for vnni"
    assert quiet.filter(record("py.warnings", msg=own))
    assert not quiet.filter(record("py.warnings", msg="/x/site-packages/torch/a.py:3: UserWarning: w"))
