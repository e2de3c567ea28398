import pytest

import hasten
from hasten import zoo
from hasten.errors import HastenError


def test_names_and_get():
    assert zoo.names() == ["digits", "minilm"]
    for name in zoo.names():
        entry = zoo.get(name)
        assert entry.name == name and len(entry.description) > 20
    assert zoo.get("zoo:digits") is zoo.get("digits")


def test_unknown_name_lists_known_ones():
    with pytest.raises(HastenError, match="unknown zoo model 'resnet'.*digits, minilm"):
        zoo.get("resnet")


def test_load_via_public_api():
    model = hasten.load("zoo:digits")
    assert [s.name for s in model.inputs] == ["image"]
    assert model.outputs[0].name == "logits"


def test_default_metrics():
    assert [m.name for m in zoo.get("minilm").metrics()] == ["cosine", "retrieval@10"]
    entry = zoo.get("digits")
    from hasten.measure.accuracy import evaluate

    scores = evaluate(entry.model(), entry.evaluation(), entry.metrics(), batch_size=64)
    assert list(scores) == ["top1"] and scores["top1"].mean >= 0.97
