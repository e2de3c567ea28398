"""`hasten export` end to end on zoo:digits: the int8 model hasten quantize writes, exported, verified on the
host against ONNX Runtime, and its top-1 on the held-out split equal to ONNX Runtime's int8 model."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import run_cli
from graphs import Graph, quantised

from hasten.export.build import export_model


def test_export_digits_verify_on_the_host(digits_int8, tmp_path):
    out = tmp_path / "c"
    proc = run_cli("export", str(digits_int8), "--target", "c99", "-o", str(out), "--verify", "--inputs", "100",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [(r["where"], r["inputs"], r["mismatches"]) for r in summary["verify"]] == [("host", 100, 0)]
    assert summary["arena_bytes"] <= 1.10 * summary["arena_lower_bound"]
    assert {p.name for p in out.iterdir()} == {"model.c", "model.h", "README.md"}
    assert f"HS_MODEL_ARENA_BYTES {summary['arena_bytes']}" in (out / "model.h").read_text()
    again = run_cli("export", str(digits_int8), "-o", str(out))
    assert again.returncode == 2 and "--force" in again.stderr


def test_digits_top1_in_c_equals_onnx_runtime_int8(digits_int8, tmp_path):
    from hasten.export import toolchain
    from hasten.export.build import as_output, ort_outputs, quantise_input
    from hasten.zoo.digits import dataset

    proto = onnx.load(digits_int8)
    export = export_model(proto)
    images, labels = dataset()["evaluation"]
    codes = quantise_input(export, images)
    run = toolchain.run_host(export.write(tmp_path / "m"), codes, tmp_path / "host")
    got = as_output(export, run.outputs)
    want = ort_outputs(proto, export, codes)
    assert np.array_equal(got, want)
    top1_c, top1_ort = (got.argmax(1) == labels).mean(), (want.argmax(1) == labels).mean()
    assert top1_c == top1_ort and top1_c > 0.9


def test_unsupported_nodes_exit_2_and_nothing_is_written(tmp_path):
    g = Graph((1, 4, 6, 6))
    a = g.node("Sigmoid", [g.conv("x", 8)])
    path = tmp_path / "sig.onnx"
    onnx.save(quantised(g, g.conv(a, 4)), path)
    out = tmp_path / "c"
    proc = run_cli("export", str(path), "-o", str(out))
    assert proc.returncode == 2
    assert "sigmoid" in proc.stderr and "QLinearSigmoid" in proc.stderr
    assert not out.exists()


def test_a_float_zoo_model_is_refused_in_one_line(tmp_path):
    proc = run_cli("export", "zoo:digits", "-o", str(tmp_path / "c"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "hasten quantize zoo:digits --scheme int8-static" in proc.stderr


def test_an_optimize_result_folder_is_exported_from_its_model_onnx(digits_int8, tmp_path):
    import shutil

    from hasten.errors import ExportError
    from hasten.export.build import load_quantised

    result = tmp_path / "out" / "digits"
    result.mkdir(parents=True)
    shutil.copy(digits_int8, result / "model.onnx")
    proto, name = load_quantised(str(result))
    assert name == "digits" and export_model(proto, name).program.macs() > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match="without model.onnx"):
        load_quantised(str(empty))
    proc = run_cli("export", str(result), "-o", str(tmp_path / "c"), "--verify", "--inputs", "0")
    assert proc.returncode == 2 and "--inputs 0" in proc.stderr
