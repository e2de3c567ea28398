"""Loading, validating and saving models: every bad input gets a ModelLoadError naming the file."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modelkit import make_mlp
from onnx import TensorProto, helper

import hasten
from hasten.errors import HastenError, ModelLoadError, ModelSaveError


def test_load_path_specs_and_facts(tmp_path, mlp_proto):
    path = tmp_path / "m.onnx"
    onnx.save(mlp_proto, path)
    model = hasten.load(path)
    assert [s.name for s in model.inputs] == ["x"]
    assert model.inputs[0].shape == ("N", 16) and model.inputs[0].dtype == np.float32
    assert model.outputs[0].name == "y"
    assert model.parameter_count() == 16 * 32 + 32 + 32 * 8 + 8
    assert model.parameter_bytes() == 4 * model.parameter_count()
    assert model.op_histogram() == {"Add": 2, "MatMul": 2, "Relu": 1}
    assert model.source == path


def test_fingerprint_tracks_content(mlp_proto):
    a, b = hasten.load(mlp_proto), hasten.load(make_mlp(seed=0))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != hasten.load(make_mlp(seed=1)).fingerprint()


def test_save_roundtrip_and_atomic(tmp_path, mlp):
    out = mlp.save(tmp_path / "out.onnx")
    assert hasten.load(out).fingerprint() == mlp.fingerprint()
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]  # no temporary files left behind


def test_save_external_data_threshold(tmp_path, mlp):
    out = mlp.save(tmp_path / "big.onnx", external_data_threshold=100)
    assert (tmp_path / "big.onnx.data").stat().st_size >= 0.9 * mlp.parameter_bytes()
    assert os.path.getsize(out) < mlp.parameter_bytes()
    again = hasten.load(out)
    assert again.fingerprint() == mlp.fingerprint()


def test_refuses_to_overwrite_input(tmp_path, mlp_proto):
    path = tmp_path / "m.onnx"
    onnx.save(mlp_proto, path)
    before = path.read_bytes()
    with pytest.raises(ModelSaveError, match="refusing to overwrite"):
        hasten.load(path).save(path)
    assert path.read_bytes() == before


def test_refuses_to_overwrite_input_external_data(tmp_path, mlp):
    src = mlp.save(tmp_path / "m.onnx", external_data_threshold=100)
    model = hasten.load(src)
    with pytest.raises(ModelSaveError):
        model.save(tmp_path / "m.onnx")


@pytest.mark.parametrize("content, match", [
    (b"", "empty"),
    (b"this is a text file, not a model\n" * 10, "not an ONNX model"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "ONNX"),
])
def test_bad_files(tmp_path, content, match):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=match) as info:
        hasten.load(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        hasten.load(tmp_path / "nope.onnx")


def test_truncated_model(tmp_path, mlp_proto):
    data = mlp_proto.SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        hasten.load(path)


def test_missing_external_data(tmp_path, mlp):
    out = mlp.save(tmp_path / "ext.onnx", external_data_threshold=100)
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(ModelLoadError, match="external data"):
        hasten.load(out)


def test_unsupported_opset(tmp_path):
    path = tmp_path / "old.onnx"
    onnx.save(make_mlp(opset=5), path)
    with pytest.raises(ModelLoadError, match="opset 5"):
        hasten.load(path)


def test_model_without_inputs(tmp_path):
    node = helper.make_node("Constant", [], ["y"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "noin.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelLoadError, match="no inputs"):
        hasten.load(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=2048))
def test_fuzz_loader_only_raises_model_load_error(tmp_path, blob):
    path = tmp_path / "fuzz.onnx"
    path.write_bytes(blob)
    try:
        hasten.load(path)
    except ModelLoadError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=1, max_value=400), st.integers(min_value=0, max_value=255))
def test_fuzz_corrupted_model_bytes(tmp_path, position, value):
    data = bytearray(make_mlp().SerializeToString())
    data[position % len(data)] = value
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(bytes(data))
    try:
        model = hasten.load(path)
    except ModelLoadError:
        return
    assert model.inputs  # a surviving model is usable


def test_unknown_source_type():
    with pytest.raises(HastenError):
        hasten.load(12345)


def test_load_torch_module():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x = torch.randn(5, 4)
    model = hasten.load(net, x)
    from hasten.backends import get_backend

    out = get_backend("onnxruntime").compile(model).run({model.inputs[0].name: x.numpy()})
    np.testing.assert_allclose(next(iter(out.values())), net(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert model.lineage and "torch.onnx.export" in model.lineage[0]


def _contrib_model() -> onnx.ModelProto:
    """x -> com.microsoft.FastGelu -> ai.onnx.ml.Normalizer -> y, declaring only the default domain."""
    nodes = [helper.make_node("FastGelu", ["x"], ["g"], domain="com.microsoft"),
             helper.make_node("Normalizer", ["g"], ["y"], domain="ai.onnx.ml", norm="L2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto


def test_every_used_domain_is_imported_in_memory_and_on_disk(tmp_path):
    proto = _contrib_model()
    with pytest.raises(onnx.checker.ValidationError, match="com.microsoft"):
        onnx.checker.check_model(proto, full_check=True)
    model = hasten.Model.from_proto(proto)
    assert dict(model.ir.opset_imports) == {"": 17, "com.microsoft": 1, "ai.onnx.ml": 1}
    out = model.save(tmp_path / "m.onnx")
    saved = onnx.load(out)
    onnx.checker.check_model(saved, full_check=True)
    assert {o.domain: o.version for o in saved.opset_import} == {"": 17, "com.microsoft": 1, "ai.onnx.ml": 1}


def test_a_file_missing_a_domain_import_still_loads(tmp_path):
    path = tmp_path / "old.onnx"
    onnx.save(_contrib_model(), path)
    model = hasten.load(path)
    assert model.ir.opset_imports["com.microsoft"] == 1
    onnx.checker.check_model(model.proto(), full_check=True)


def test_imports_already_present_are_kept(mlp_proto):
    mlp_proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    model = hasten.load(mlp_proto)
    assert dict(model.ir.opset_imports) == {"": 17, "com.microsoft": 1}
    assert [o.domain for o in hasten.load(make_mlp()).proto().opset_import] == [""]
