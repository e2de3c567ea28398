"""ONNX Runtime and OpenVINO behind one interface: same outputs, options honoured, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from modelkit import make_mlp, mlp_reference

import hasten
from hasten.backends import backend_names, get_backend, run_samples
from hasten.data import Samples
from hasten.errors import BackendError


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_backend_matches_numpy(name, mlp, mlp_proto):
    x = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    session = get_backend(name, threads=1).compile(mlp)
    assert session.input_names == ["x"] and session.output_names == ["y"]
    out = session.run({"x": x})["y"]
    np.testing.assert_allclose(out, mlp_reference(mlp_proto, x), rtol=1e-4, atol=1e-5)
    assert session.describe()["threads"] == 1


def test_backends_agree_on_samples(mlp):
    samples = Samples.synthetic(mlp, n=6, seed=2)
    ort = run_samples(get_backend("onnxruntime").compile(mlp), samples, batch_size=4)["y"]
    ov = run_samples(get_backend("openvino").compile(mlp), samples, batch_size=4)["y"]
    assert ort.shape == (6, 8)
    np.testing.assert_allclose(ort, ov, rtol=1e-4, atol=1e-5)


def test_openvino_precision_option(mlp):
    assert get_backend("openvino").describe()["precision"] == "f32"
    bf16 = get_backend("openvino", precision="bf16").compile(mlp)
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    ref = get_backend("openvino").compile(mlp).run({"x": x})["y"]
    out = bf16.run({"x": x})["y"]
    np.testing.assert_allclose(out, ref, rtol=0.1, atol=0.1)  # bf16 keeps ~3 significant digits
    with pytest.raises(BackendError, match="precision"):
        get_backend("openvino", precision="int3").compile(mlp)


def test_unknown_backend_and_bad_options():
    assert backend_names() == ["onnxruntime", "openvino"]
    with pytest.raises(BackendError, match="unknown backend"):
        get_backend("tensorrt")
    with pytest.raises(BackendError, match="threads"):
        get_backend("onnxruntime", threads=0)
    with pytest.raises(BackendError, match="bad option"):
        get_backend("onnxruntime", colour="red")


def test_run_error_is_backend_error(mlp):
    session = get_backend("onnxruntime").compile(mlp)
    with pytest.raises(BackendError, match="onnxruntime"):
        session.run({"x": np.zeros((2, 5), np.float32)})


def test_openvino_refuses_contrib_ops():
    proto = make_mlp()
    from onnx import helper

    proto.graph.node[2].CopyFrom(helper.make_node("FastGelu", ["h1"], ["h2"], domain="com.microsoft"))
    proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    model = hasten.load(proto)
    with pytest.raises(BackendError, match="com.microsoft"):
        get_backend("openvino").compile(model)
    assert get_backend("onnxruntime").compile(model).run({"x": np.ones((1, 16), np.float32)})["y"].shape == (1, 8)


@pytest.mark.parametrize("name, rtol", [("digits", 1e-4), ("minilm", 1e-4)])
def test_backends_agree_on_zoo_models(name, rtol):
    from hasten import zoo
    from hasten.measure.accuracy import CosineFidelity

    entry = zoo.get(name)
    model = entry.model()
    samples = entry.evaluation().take(8)
    ort = run_samples(get_backend("onnxruntime").compile(model), samples, batch_size=4)
    ov = run_samples(get_backend("openvino").compile(model), samples, batch_size=4)
    out = model.outputs[0].name
    np.testing.assert_allclose(ov[out], ort[out], rtol=rtol, atol=1e-4)
    assert CosineFidelity().score(ov[out], ort[out]).worst > 0.99999
