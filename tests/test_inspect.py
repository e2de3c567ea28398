"""inspect_model: shapes, histogram, parameters, costs, floors per target; JSON and rich rendering."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from hasten.errors import DataError
from hasten.inspect import host_floors, inspect_model
from hasten.measure import targets as T

FAKE = T.Target("fake", {"fp32": 1e11, "int8": 4e11}, bandwidth=1e10, source="published")
MLP_FLOPS_PER_ROW = 2 * 16 * 32 + 32 + 32 + 2 * 32 * 8 + 8  # fc1, bias, relu, fc2, bias


def test_report_contents(mlp):
    report = inspect_model(mlp, shapes={"N": 4}, targets=[FAKE])
    assert report.inputs == [{"name": "x", "dtype": "float32", "declared_shape": ["N", 16], "shape": [4, 16]}]
    assert report.outputs[0]["shape"] == [4, 8]
    assert report.op_histogram == {"Add": 2, "MatMul": 2, "Relu": 1}
    assert report.parameter_count == 16 * 32 + 32 + 32 * 8 + 8
    assert report.parameter_bytes == 4 * report.parameter_count
    assert report.cost.total_flops == 4 * MLP_FLOPS_PER_ROW
    assert [r.name for r in report.top_nodes()][:2] == ["fc1", "fc2"]
    fp32 = report.floor("fake", "fp32")
    assert fp32.seconds == pytest.approx(max(4 * MLP_FLOPS_PER_ROW / 1e11, report.cost.floor_bytes / 1e10))
    int8 = report.floor("fake", "int8")
    assert int8.compute_s == pytest.approx(4 * (2 * 16 * 32 + 2 * 32 * 8) / 4e11 + 4 * (32 + 32 + 8) / 1e11)
    assert report.floor("fake", "bf16") is None  # the target has no bf16 peak


def test_shapes_accept_input_names_and_scale_flops(mlp):
    small = inspect_model(mlp, targets=[FAKE])
    big = inspect_model(mlp, shapes={"x": "6x16"}, targets=[FAKE])
    assert small.inputs[0]["shape"] == [1, 16] and big.inputs[0]["shape"] == [6, 16]
    assert big.cost.total_flops == 6 * small.cost.total_flops
    with pytest.raises(DataError, match="not an input or a dynamic dim"):
        inspect_model(mlp, shapes={"sequence": 3}, targets=[FAKE])


def test_json_and_render(mlp):
    report = inspect_model(mlp, targets=[FAKE, "nvidia-h100"])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["cost"]["total_flops"] == MLP_FLOPS_PER_ROW
    assert data["parameters"]["count"] == report.parameter_count
    assert [n["name"] for n in data["top_nodes"]][:2] == ["fc1", "fc2"]
    floors = {(f["target"], f["dtype"]): f for f in data["floors"]}
    assert set(floors) == {(t, d) for t in ("fake", "nvidia-h100") for d in ("fp32", "bf16", "int8")}
    assert floors[("fake", "bf16")]["seconds"] is None
    assert floors[("nvidia-h100", "fp32")]["formula"].startswith("floor = max(FLOPs/peak, bytes/bandwidth) = ")
    console = Console(record=True, width=160)
    report.render(console)
    text = console.export_text()
    for title in ("Inputs and outputs", "By op type", "costliest nodes", "Roofline floor"):
        assert title in text
    assert text.count("floor = max(FLOPs/peak, bytes/bandwidth) = ") == 5  # fake fp32/int8 + h100 x3
    assert "nvidia-h100 (published)" in text and "no bf16 on this target" in text


def test_default_targets_are_host_and_published(mlp, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    host = T.Target("host", {"fp32": 2e11, "bf16": 4e11, "int8": 8e11}, 3e10, source="measured")
    T.host_cache_path().write_text(json.dumps(host.to_dict()), encoding="utf-8")  # no measuring in this test
    report = inspect_model(mlp)
    assert [t.name for t in report.targets] == ["host", *T.PUBLISHED]
    assert report.floor("host", "bf16").peak == 4e11
    floors = host_floors(mlp, {"N": 2})
    weights, io = 4 * report.parameter_count, 4 * 2 * (16 + 8)
    assert floors["fp32_ms"] == pytest.approx(1e3 * max(2 * MLP_FLOPS_PER_ROW / 2e11, (weights + io) / 3e10))
    assert floors["int8_ms"] < floors["fp32_ms"]
    assert host_floors(mlp, {"nope": 1}) is None


@pytest.mark.parametrize("features, path, saturates", [
    (("avx", "avx2", "f16c", "fma", "sse4_1"), "avx2-saturating", True),
    (("avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f"), "vnni", False),
])
def test_host_section_shows_features_and_int8_path(mlp, tmp_path, monkeypatch, features, path, saturates):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    native = ["fp32", "int8"] if saturates else ["fp32", "bf16", "int8"]
    host = T.Target("host", {d: 1e11 for d in native}, 3e10, source="measured", description="Test CPU, 2 cores",
                    details={"machine": "x86_64", "native_dtypes": native}, features=features)
    T.host_cache_path().write_text(json.dumps(host.to_dict()), encoding="utf-8")  # no measuring in this test
    report = inspect_model(mlp)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["host"]["features"] == list(features) and data["host"]["int8_isa"] == path
    assert data["host"]["int8_saturates"] is saturates and data["host"]["native_dtypes"] == native
    console = Console(record=True, width=400)
    report.render(console)
    line = next(x for x in console.export_text().splitlines() if x.startswith("host: "))
    assert line.startswith(f"host: Test CPU, 2 cores; native dtypes {', '.join(native)}; int8 path {path} (")
    assert ("saturate in int16" in line) is saturates and line.endswith("features " + " ".join(features))
    assert inspect_model(mlp, targets=[FAKE]).to_dict()["host"] is None  # no host among the targets


def test_inspect_of_a_model_tuned_on_another_int8_path_warns(mlp, tmp_path, monkeypatch, caplog, capsys):
    from hasten.cli import main
    from hasten.measure import isa
    from hasten.recipe import Recipe, Step

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(isa, "cpu_features", lambda: frozenset({"avx", "avx2", "fma", "f16c", "sse4_1"}))
    host = T.Target("host", {"fp32": 1e11, "int8": 2e11}, 3e10, source="measured", details={"machine": "x86_64"},
                    features=("avx", "avx2", "f16c", "fma", "sse4_1"))
    T.host_cache_path().write_text(json.dumps(host.to_dict()), encoding="utf-8")  # no measuring in this test
    out = tmp_path / "out"
    mlp.save(out / "model.onnx")
    Recipe((Step("pass", "cleanup"),), "onnxruntime", {}, 0, None, "vnni",
           ("avx2", "avx512_vnni", "avx512bw")).save(out / "recipe.yaml")
    with caplog.at_level("WARNING"):
        assert main(["inspect", str(out / "model.onnx"), "--json"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and warned[0].startswith(f"{out / 'model.onnx'} (made with recipe.yaml): recipe "
                                                     "tuned for int8 path 'vnni' (avx512_vnni); this host is "
                                                     "'avx2-saturating' (avx2)")
    data = json.loads(capsys.readouterr().out)
    assert data["warning"] and data["host"]["int8_isa"] == "avx2-saturating"
    caplog.clear()
    (out / "recipe.yaml").unlink()  # a model without its recipe: nothing to say
    with caplog.at_level("WARNING"):
        assert main(["inspect", str(out / "model.onnx"), "--json"]) == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert json.loads(capsys.readouterr().out)["warning"] is None
