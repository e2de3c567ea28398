"""Every model the search can produce is a valid ONNX file: each scheme x graph pipeline (with and without ONNX
Runtime's transformer fusion) on a tiny BERT, and each scheme on the third-party-style CNN as given (opset 12,
weights behind Cast/Reshape/Transpose/Identity) and after the graph pipeline, passes
`onnx.checker.check_model(full_check=True)` from disk, imports every domain it uses, re-loads to the same
fingerprint and `hasten inspect FILE` exits 0 on it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from modelkit import make_thirdparty, make_tiny_bert, thirdparty_images

import hasten
from hasten.backends import backend_class
from hasten.cli import main
from hasten.data import Samples
from hasten.passes import default_pipeline
from hasten.quantize import config_for, quantize

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, SEQ = 100, 12
#: (scheme, options): the default config of every scheme the search tries, and the options that change the
#: graph's op domains (ORT lowering, int8 attention). bf16 leaves the graph as it is (an OpenVINO setting).
SCHEMES = [("int8-static", {}), ("int8-static", {"ort_ops": True}),
           ("int8-static", {"attention": "all", "smoothquant": 0.5, "smoothquant_scope": "all"}),
           ("int8-dynamic", {}), ("int8-weight", {}),
           ("int4-weight", {}), ("fp16", {}), ("binary", {})]
#: (model, graph pipeline): onnxruntime's default pipeline includes the transformer fusion (a no-op on the
#: CNN, so the CNN gets the openvino one); None is the model as given.
CASES = [("bert", "onnxruntime"), ("bert", "openvino"), ("cnn", None), ("cnn", "openvino")]


def _tiny_bert() -> hasten.Model:
    return make_tiny_bert(VOCAB, SEQ, hidden=32, layers=1, heads=2, ffn=64)


def _bert_samples(n: int, seed: int) -> Samples:
    rng = np.random.default_rng(seed)
    mask = np.ones((n, SEQ), np.int64)
    mask[::2, SEQ // 2:] = 0
    return Samples({"input_ids": rng.integers(0, VOCAB, (n, SEQ)), "attention_mask": mask,
                    "token_type_ids": rng.integers(0, 2, (n, SEQ))})


@pytest.fixture(scope="module")
def bert() -> hasten.Model:
    return _tiny_bert()


@pytest.fixture(scope="module")
def graphs(bert) -> dict:
    """(model name, pipeline) -> (graph-optimised model, calibration samples)."""
    out = {}
    cnn = hasten.load(make_thirdparty())
    models = {"bert": (bert, _bert_samples(16, 0)), "cnn": (cnn, Samples({"x": thirdparty_images(16, 0)}))}
    for name, pipeline in CASES:
        model, calib = models[name]
        out[(name, pipeline)] = (model if pipeline is None else default_pipeline(backend_class(pipeline).domains)(model).model, calib)
    fused = out[("bert", "onnxruntime")][0].op_histogram()
    assert fused.get("com.microsoft.Attention") == 1 and "com.microsoft.EmbedLayerNormalization" in fused
    return out


def _assert_valid_and_inspectable(model: hasten.Model, path, capsys) -> None:
    model.save(path)
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    imported = {o.domain or "ai.onnx" for o in proto.opset_import}
    used = {n.domain or "ai.onnx" for n in proto.graph.node}
    assert used <= imported, f"{sorted(used - imported)} used but not imported"
    capsys.readouterr()
    code = main(["inspect", str(path), "--json"])
    err = capsys.readouterr().err
    assert code == 0, err


@pytest.mark.parametrize("name,pipeline", [c for c in CASES if c[1] is not None])
def test_graph_pipeline_output_is_valid(graphs, name, pipeline, tmp_path, capsys):
    model, _ = graphs[(name, pipeline)]
    _assert_valid_and_inspectable(model, tmp_path / "g.onnx", capsys)


@pytest.mark.parametrize("scheme,options", SCHEMES, ids=[f"{s}{'-' + '-'.join(o) if o else ''}"
                                                         for s, o in SCHEMES])
@pytest.mark.parametrize("name,pipeline", CASES)
def test_every_scheme_after_every_pipeline_writes_a_valid_model(graphs, name, pipeline, scheme, options,
                                                                 tmp_path, capsys):
    model, calib = graphs[(name, pipeline)]
    if name == "cnn" and options.get("attention"):
        pytest.skip("no self-attention in a CNN")
    result = quantize(model, config_for(scheme, **options), calib)
    assert result.model.lineage[-1].startswith(scheme)
    _assert_valid_and_inspectable(result.model, tmp_path / "q.onnx", capsys)
    assert hasten.load(tmp_path / "q.onnx").fingerprint() == result.model.fingerprint()


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["int8-static", "int8-dynamic"])
def test_minilm_after_transformer_fusion_writes_a_valid_model(scheme, tmp_path, capsys):
    """make demo's combination: zoo:minilm, ONNX Runtime's transformer fusion, then int8."""
    from hasten import zoo

    entry = zoo.get("minilm")
    fused = default_pipeline(backend_class("onnxruntime").domains)(entry.model()).model
    assert any(k.startswith("com.microsoft.") for k in fused.op_histogram())
    result = quantize(fused, config_for(scheme), entry.calibration().take(16))
    _assert_valid_and_inspectable(result.model, tmp_path / "model.onnx", capsys)


def _search_graph_variants() -> list:
    """(backend, note, pass steps) of every graph variant the search's Space proposes beyond the defaults."""
    from hasten.search.space import Space

    space = Space(["onnxruntime", "openvino"], [1], 16)
    return [(b, c.note, c.recipe.steps) for b in space.backends for c in space.graph_variants(b)
            if c.note != "default graph pipeline"]


VARIANTS = _search_graph_variants()


@pytest.fixture(scope="module")
def bert_variants(bert) -> dict:
    from hasten.recipe import run_step

    out = {}
    for backend, note, steps in VARIANTS:
        model = bert
        for step in steps:
            model, _ = run_step(step, model)
        out[(backend, note)] = model
    return out


@pytest.mark.parametrize("scheme", ["int8-static", "int8-dynamic", "fp16"])  # the value_info-sensitive ones
@pytest.mark.parametrize("backend,note", [(b, n) for b, n, _ in VARIANTS])
def test_schemes_after_the_searchs_other_graph_variants_write_valid_models(bert_variants, backend, note, scheme,
                                                                         tmp_path, capsys):
    model = bert_variants[(backend, note)]
    _assert_valid_and_inspectable(model, tmp_path / "g.onnx", capsys)
    result = quantize(model, config_for(scheme), _bert_samples(16, 0))
    _assert_valid_and_inspectable(result.model, tmp_path / "q.onnx", capsys)


def test_inferred_proto_types_every_output_of_a_fused_graph(graphs):
    """ONNX's own inference leaves contrib-op outputs untyped; inferred_proto fills them (ORT symbolic)."""
    from hasten.quantize.graph import inferred_proto, untyped_values

    fused = graphs[("bert", "onnxruntime")][0]
    onnx_only = onnx.shape_inference.infer_shapes(fused.proto(), strict_mode=False)
    assert untyped_values(onnx_only)  # e.g. the Attention and SkipLayerNormalization outputs
    assert untyped_values(inferred_proto(fused)) == set()
