"""optimize_graph (the default pipeline) on a small CNN: cleanup + folding + BatchNorm folding."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from hasten.backends import backend_class
from hasten.errors import HastenError
from hasten.passes import default_pipeline, optimize_graph

from .helpers import assert_same_outputs, make_model, op_types, random_feeds, run, vinfo


def _cnn():
    """x -> Conv -> Identity -> BN -> Relu -> Dropout -> Flatten -> Gemm(+ Mul(c, 2)) -> y"""
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "scale": rng.uniform(0.5, 2, 4).astype(np.float32), "bias": rng.standard_normal(4).astype(np.float32),
             "mean": rng.standard_normal(4).astype(np.float32), "var": rng.uniform(0.5, 2, 4).astype(np.float32),
             "fc": rng.standard_normal((10, 64)).astype(np.float32), "c": rng.standard_normal(10).astype(np.float32),
             "two": np.array(2.0, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("Identity", ["c0"], ["c1"]),
             helper.make_node("BatchNormalization", ["c1", "scale", "bias", "mean", "var"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("Dropout", ["r"], ["d"]),
             helper.make_node("Flatten", ["d"], ["f"]),
             helper.make_node("Mul", ["c", "two"], ["c2"]),
             helper.make_node("Gemm", ["f", "fc", "c2"], ["y"], transB=1)]
    return make_model(nodes, [vinfo("x", ["batch", 3, 4, 4])], [vinfo("y", ["batch", 10])], inits)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_optimize_graph_on_cnn(backend):
    model = _cnn()
    fp = model.fingerprint()
    result = optimize_graph(model, backend_class(backend).domains)
    assert result.modified
    assert op_types(result.model) == ["Conv", "Relu", "Flatten", "Gemm"]
    assert len(result.model.graph.initializers) == 4
    assert result.stats["fold_batchnorm.conv"] == 1 and result.stats["iterations"] == 2
    assert model.fingerprint() == fp
    for seed in (1, 2):
        assert_same_outputs(model, result.model, random_feeds(model, seed, {"batch": 2}))
    again = optimize_graph(result.model, backend_class(backend).domains)
    assert again.modified is False and again.model is result.model


def test_default_pipeline_members_and_errors():
    assert [p.name for p in default_pipeline(backend_class("openvino").domains).passes] == ["cleanup", "constant_folding",
                                                                      "fold_batchnorm"]
    assert default_pipeline(backend_class("onnxruntime").domains).passes[-1].name == "transformer_fusion"
    assert default_pipeline(backend_class("onnxruntime").domains).emits_domains == ("com.microsoft",)
    assert default_pipeline(backend_class("openvino").domains).emits_domains == ()
    assert default_pipeline().passes[-1].name == "transformer_fusion"  # no domains given: every pass
    with pytest.raises(HastenError, match="takes op domains"):
        optimize_graph(_cnn(), "openvino")


def test_openvino_runs_the_portable_pipeline_output():
    ov = pytest.importorskip("openvino")
    model = _cnn()
    result = optimize_graph(model, backend_class("openvino").domains)
    core = ov.Core()
    compiled = core.compile_model(core.read_model(result.model.proto().SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    feeds = random_feeds(model, 3, {"batch": 2})
    got = compiled(feeds)[compiled.outputs[0]]
    np.testing.assert_allclose(got, run(model, feeds)[0], rtol=1e-4, atol=1e-5)
