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
    with pytest.raises(BackendError, match="precision must be one of"):
        get_backend("openvino", precision="int3")


def test_unknown_backend_and_bad_options():
    assert backend_names() == ["onnxruntime", "openvino"]
    with pytest.raises(BackendError, match="unknown backend"):
        get_backend("tensorrt")
    with pytest.raises(BackendError, match="threads"):
        get_backend("onnxruntime", threads=0)
    with pytest.raises(BackendError, match="unknown option"):
        get_backend("onnxruntime", colour="red")
    with pytest.raises(BackendError, match="graph_optimization must be one of"):
        get_backend("onnxruntime", graph_optimization="max")


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


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_session_specs_and_close(name, mlp):
    session = get_backend(name, threads=1).compile(mlp)
    (x,), (y,) = session.inputs, session.outputs
    assert (x.name, x.dtype, y.name, y.dtype) == ("x", "float32", "y", "float32")
    assert x.shape[-1] == 16 and y.shape[-1] == 8
    session.close()
    with pytest.raises(BackendError, match="closed"):
        session.run({"x": np.ones((1, 16), np.float32)})


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_session_is_safe_from_several_threads(name, mlp, mlp_proto):
    """Eight threads share one session, each on its own inputs: each gets its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    session = get_backend(name, threads=1).compile(mlp)
    assert session.thread_safe
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal((3, 16)).astype(np.float32) for _ in range(8)]

    def work(x):
        return [session.run({"x": x})["y"] for _ in range(20)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, inputs))
    for x, outs in zip(inputs, results, strict=True):
        for out in outs:
            np.testing.assert_allclose(out, mlp_reference(mlp_proto, x), rtol=1e-4, atol=1e-5)


def test_backend_declarations():
    from hasten.backends import backend_class, backend_computing, parse_backend_spec

    ov = backend_class("openvino")
    assert ov.option_space(("fp32", "bf16", "int8")) == [("precision", "bf16")]
    assert ov.option_space(("fp32", "int8")) == []  # no native bf16: not worth trying
    assert ov.computes("bf16") == {"precision": "bf16"}
    assert backend_class("onnxruntime").dtypes_on(("fp32", "bf16", "int8")) == ("fp32", "int8")
    fp32, low = backend_computing("bf16")
    assert (fp32.name, low.describe()["precision"]) == ("openvino", "bf16")
    assert parse_backend_spec("openvino:bf16") == ("openvino", {"precision": "bf16"})
    assert parse_backend_spec("onnxruntime:graph_optimization=basic") == ("onnxruntime",
                                                                         {"graph_optimization": "basic"})
    with pytest.raises(BackendError, match="no option of onnxruntime"):
        parse_backend_spec("onnxruntime:bf16")


def test_a_backend_refuses_a_target_that_is_not_this_host(mlp):
    from hasten.measure.targets import get_target

    with pytest.raises(BackendError, match="cortex-m7"):
        get_backend("onnxruntime").compile(mlp, get_target("cortex-m7"))
