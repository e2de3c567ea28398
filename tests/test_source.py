"""hasten.source: one place resolves a model spec (an .onnx path, zoo:NAME, module:function, a torch module,
a ModelProto, a Model) into its Model, torch source, default data, metrics and tokenizer."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from modelkit import make_mlp

import hasten
from hasten.errors import DataError, HastenError, ModelLoadError
from hasten.model import Model
from hasten.source import (
    Source,
    is_function_spec,
    load,
    load_input,
    resolve,
    tokenizer_for,
    torch_spec,
    zoo_name,
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's own torch model as `package.module:function` -> (module, example inputs)."""
    (tmp_path / "hasten_user_mlp.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def make():
            torch.manual_seed(0)
            return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval(), {"x": torch.rand(1, 6)}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "hasten_user_mlp:make"


def test_an_onnx_path(tmp_path):
    path = Model.from_proto(make_mlp()).save(tmp_path / "mlp.onnx")
    src = resolve(str(path))
    assert src.name == "mlp" and src.spec == str(path) and src.model.inputs[0].name == "x"
    assert src.entry is None and src.torch is None and src.torch_spec is None and src.tokenizer is None
    assert src.calibration is None and src.evaluation is None and src.metrics is None
    assert resolve(path).model.fingerprint() == load(path).fingerprint() == src.model.fingerprint()
    with pytest.raises(ModelLoadError):
        resolve(str(tmp_path / "missing.onnx"))


def test_a_zoo_name_brings_its_data_and_metrics():
    src = resolve("zoo:digits")
    assert src.name == "digits" and src.entry.name == "digits" and src.torch_spec == "zoo:digits"
    assert len(src.calibration) == 256 and len(src.evaluation) == 360 and src.evaluation.labels is not None
    assert [m.name for m in src.metrics] == ["top1"]
    assert src.calibration is src.calibration  # resolved once
    assert src.model.fingerprint() == hasten.load("zoo:digits").fingerprint()
    torch_src = src.torch
    assert torch_src.kind == "classifier" and torch_src.output_names == ["logits"]
    assert len(torch_src.training_data(10)) == 10
    with pytest.raises(HastenError, match="unknown zoo model"):
        resolve("zoo:nope")


def test_a_module_function_is_exported_with_its_torch_source(user_module):
    src = resolve(user_module)
    assert src.name == "make" and src.torch_spec == user_module and src.torch is src.built_torch
    assert src.torch.kind == "custom" and [s.name for s in src.model.inputs] == ["x"]
    model, torch_src = load_input(user_module)
    assert torch_src is not None and model.fingerprint() == src.model.fingerprint()
    assert load(user_module).fingerprint() == src.model.fingerprint()


def test_objects_resolve_too(tmp_path):
    import torch

    proto = make_mlp()
    assert resolve(proto).name == "model" and resolve(proto).model.fingerprint() == Model.from_proto(proto).fingerprint()
    model = Model.from_proto(proto)
    assert resolve(model).model is model and resolve(resolve(model)) is not None
    net = torch.nn.Sequential(torch.nn.Linear(4, 2)).eval()
    src = resolve(net, {"inp": torch.rand(1, 4)})
    assert src.name == "model" and [s.name for s in src.model.inputs] == ["inp"]
    out = hasten.get_backend("onnxruntime", threads=1).compile(src.model).run({"inp": np.ones((1, 4), np.float32)})
    np.testing.assert_allclose(next(iter(out.values())), net(torch.ones(1, 4)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_samples_use_the_source_tokenizer(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in ["one", "two words"]) + "\n")
    model = Model.from_proto(make_mlp())

    def tokenize(texts):
        return {"x": np.array([[len(t)] * 16 for t in texts], np.float32)}

    samples = Source(model, tokenizer=tokenize).samples(path, "evaluation")
    assert len(samples) == 2 and samples.arrays["x"][1, 0] == 9
    with pytest.raises(DataError, match="needs the model's tokenizer"):
        Source(model).samples(path, "evaluation")
    assert Source(model).samples(None) is None


def test_spec_tests_read_the_text_only(tmp_path):
    assert zoo_name("zoo:minilm") == "minilm" and zoo_name("minilm") is None and zoo_name(3) is None
    assert is_function_spec("pkg.mod:make") and not is_function_spec("zoo:digits")
    assert not is_function_spec("model.onnx")
    assert torch_spec("zoo:digits") == "zoo:digits" and torch_spec("pkg.mod:make") == "pkg.mod:make"
    assert torch_spec(str(tmp_path / "m.onnx")) is None and torch_spec(make_mlp()) is None
    from hasten.zoo import minilm

    assert tokenizer_for("zoo:minilm") is minilm.tokenize and tokenizer_for("zoo:digits") is None
    assert tokenizer_for("m.onnx") is None
