"""A backend defined here, in the test file, is a full member of the search: registered with one call, it
gets graph passes, quantisation schemes and a chosen result, without any hasten module knowing its name.

The backend runs models on ONNX's own reference interpreter (`onnx.reference.ReferenceEvaluator`, a real
runtime that is not ONNX Runtime) and declares a latency source of its own, a cost model of the bytes of
weights each run reads (a weight-bound MLP: int8 weights read a quarter of fp32's), so the search's choice
cannot depend on this host's load."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from search.helpers import QUICK, samples, wide_mlp

import hasten
from hasten.api import optimize
from hasten.backends import Backend, Session, TensorSpec, backend_names, register_backend, unregister_backend
from hasten.errors import BackendError, ResultError


class ReferenceSession(Session):
    backend_name = "onnx-reference"
    thread_safe = False  # ReferenceEvaluator keeps state per run
    latency_source = "weight-bytes cost model"

    def __init__(self, model, backend):
        proto = model.proto()
        self._evaluator = ReferenceEvaluator(proto)
        self._backend = backend
        self.inputs = [TensorSpec(v.name, "float32") for v in proto.graph.input]
        self.outputs = [TensorSpec(v.name, "float32") for v in proto.graph.output]
        #: the cost model: 1 ms per MB of initializers read, plus 1 us per node
        weights = sum(numpy_helper.to_array(t).nbytes for t in proto.graph.initializer)
        self._ms = weights / 1e6 + 1e-3 * len(proto.graph.node)

    def run(self, feeds):
        values = self._evaluator.run(None, feeds)
        return dict(zip(self.output_names, values, strict=True))

    def latency_ms(self, feeds):
        return self._ms

    def describe(self):
        return self._backend.describe()


@dataclass(frozen=True)
class ReferenceBackend(Backend):
    name = "onnx-reference"
    domains = ("", "ai.onnx")
    dtypes = ("fp32", "int8")
    latency_source = "weight-bytes cost model"

    def write_artefacts(self, model, out):
        """Its artefact: the cost model's figure for the chosen model, as a text file in OUT/."""
        path = out / "cost.txt"
        path.write_text(f"{ReferenceSession(model, self)._ms:.6f} ms\n")
        return [path]

    def build(self, model):
        try:
            return ReferenceSession(model, self)
        except Exception as exc:
            raise BackendError(f"onnx-reference cannot load the model: {exc}") from exc


@pytest.fixture
def plugin():
    register_backend(ReferenceBackend)
    yield ReferenceBackend.name
    unregister_backend(ReferenceBackend.name)


def test_registration_is_checked(plugin):
    assert plugin in backend_names()
    with pytest.raises(BackendError, match="already registered"):
        register_backend(ReferenceBackend)
    with pytest.raises(TypeError):
        register_backend(object)


def test_a_backend_from_a_test_file_gets_passes_schemes_and_a_chosen_result(plugin, tmp_path):
    model = wide_mlp(width=96, layers=2, d_in=32)
    calib, ev = samples(48, d_in=32, seed=1, name="calib"), samples(24, d_in=32, seed=2, name="eval")
    result = optimize(model, calib, ev, metric="cosine", max_drop=0.02, backends=plugin, out=tmp_path / "out",
                      time_budget=120, mixed_precision=False, **QUICK)
    records = result.search.records
    assert {r.recipe.backend for r in records} == {plugin}
    graph = [r for r in records if r.recipe.steps and all(s.kind == "pass" for s in r.recipe.steps)]
    assert graph, "no graph-pass candidate on the plug-in backend"
    passes = {s.name for r in graph for s in r.recipe.steps}
    assert "cleanup" in passes and "transformer_fusion" not in passes  # it emits ops this backend lacks
    schemes = {s.name for r in records for s in r.recipe.steps if s.kind == "quantize"}
    assert {"int8-static", "int8-dynamic"} <= schemes
    assert not schemes & {"int4-weight", "int8-weight", "fp16", "bf16"}  # pruned by its domains and dtypes
    chosen = result.chosen
    assert chosen is not result.search.baseline
    assert any(s.kind == "quantize" and s.name.startswith("int8") for s in chosen.recipe.steps)
    assert chosen.latency.ratio > 1.5  # int8 weights: a quarter of the bytes of fp32 in the cost model
    in_budget = [r for r in records if r.latency and r.full is not None and r.full.within]
    assert chosen.latency.ratio == pytest.approx(max(r.latency.ratio for r in in_budget))
    out = tmp_path / "out"
    assert (out / "model.onnx").is_file() and (out / "cost.txt").is_file()
    assert json.loads((out / "results.json").read_text())["artefacts"] == ["model.onnx", "cost.txt"]
    assert hasten.load_result(out).artefacts == (out / "cost.txt",)
    again = tmp_path / "again"
    hasten.apply(out / "recipe.yaml", model, calib, out=again)  # apply writes the backend's artefacts too
    assert (again / "cost.txt").read_text() == (out / "cost.txt").read_text()
    (out / "cost.txt").unlink()
    with pytest.raises(ResultError, match="cost.txt"):
        hasten.load_result(out)
    # the chosen model runs on the plug-in and matches the fp32 model within the budget
    x = ev.take(4)
    session = ReferenceBackend().compile(hasten.load(result.model_path))
    ref = ReferenceBackend().compile(model)
    for feeds in x.feeds(1):
        a, b = session.run(feeds)["y"], ref.run(feeds)["y"]
        assert float(np.dot(a.ravel(), b.ravel()) / np.linalg.norm(a) / np.linalg.norm(b)) > 0.98
