"""The `compress` recipe step: checked config, YAML round trip, always first, and a deterministic student."""

from __future__ import annotations

import pytest

from hasten import zoo
from hasten.compress.common import CompressError
from hasten.compress.step import PRUNE_DEFAULTS, CompressSpec
from hasten.recipe import Recipe, RecipeError, Step, apply, normalized

TEACHER = zoo.get("digits")


def _config(**kw) -> dict:
    config = {"source": "zoo:digits", "teacher": TEACHER.model().fingerprint(), "prune": {"channels": 0.5},
              "distill": {"steps": 8, "lr": 3e-3, "batch_size": 16, "seed": 0}, "threads": 1}
    return {**config, **kw}


def _recipe(**kw) -> Recipe:
    return Recipe((Step("compress", "prune-distill", _config(**kw)), Step("pass", "cleanup")), "onnxruntime",
                  {"threads": 1})


def test_config_is_checked_and_normalized():
    spec = CompressSpec.from_config("prune-distill", _config())
    assert spec.prune == {**PRUNE_DEFAULTS, "channels": 0.5}
    assert spec.distill["steps"] == 8 and spec.distill["warmup"] == 0.05 and "checkpoint_every" not in spec.distill
    assert spec.train_items is None and spec.data == "source" and spec.threads == 1
    full = normalized(Step("compress", "prune-distill", _config()))
    assert full.config["prune"]["importance"] == "magnitude" and full.config["distill"]["freeze"] == []
    assert full.label() == "prune-distill(channels=0.5,steps=8)"
    bad = [({"prune": {"chanels": 0.5}}, "prune"), ({"distill": {"stepz": 3}}, "stepz"),
           ({"distill": {"steps": 0}}, "steps >= 1"), ({"data": "web"}, "'data'"), ({"threads": 0}, "threads"),
           ({"train_items": 0}, "train_items"), ({"extra": 1}, "unknown key")]
    for change, message in bad:
        with pytest.raises(CompressError, match=message):
            CompressSpec.from_config("prune-distill", _config(**change))
    with pytest.raises(CompressError, match="missing"):
        CompressSpec.from_config("prune-distill", {"source": "zoo:digits"})
    with pytest.raises(CompressError, match="unknown compress step"):
        CompressSpec.from_config("shrink", _config())


def test_yaml_round_trip_and_validation(tmp_path):
    recipe = _recipe()
    back = Recipe.from_yaml(recipe.to_yaml())
    assert back == recipe and back.key() == recipe.key() and back.steps[0].config["prune"] == {"channels": 0.5}
    path = recipe.save(tmp_path / "r.yaml")
    assert Recipe.load(path) == recipe  # validates the compress step too
    assert not recipe.uses_calibration and _recipe(data="calibration", train_items=8).uses_calibration
    assert recipe.label() == "onnxruntime: prune-distill(channels=0.5,steps=8) + cleanup"
    (tmp_path / "bad.yaml").write_text(recipe.to_yaml().replace("lr:", "learning_rate:"))
    with pytest.raises(RecipeError, match="learning_rate") as info:
        Recipe.load(tmp_path / "bad.yaml")
    assert "bad.yaml" in str(info.value)
    with pytest.raises(RecipeError, match="must be the first step"):
        Recipe((Step("pass", "cleanup"), Step("compress", "prune-distill", _config())), "onnxruntime")
    text = recipe.to_yaml().replace("- kind: pass\n  name: cleanup\n  config: {}\n", "")
    reordered = "steps:\n- kind: pass\n  name: cleanup\n" + text.split("steps:\n", 1)[1]
    with pytest.raises(RecipeError, match="first step"):
        Recipe.from_yaml(text.split("steps:\n", 1)[0] + reordered, "r.yaml")


def test_apply_trains_the_same_student_every_time():
    teacher = TEACHER.model()
    first = apply(_recipe(), teacher)
    second = apply(_recipe(), TEACHER.model())
    assert first.fingerprint() == second.fingerprint() != teacher.fingerprint()
    assert first.parameter_bytes() < 0.5 * teacher.parameter_bytes()  # half the channels: about 1/4 the weights
    other_seed = apply(_recipe(distill={"steps": 8, "lr": 3e-3, "batch_size": 16, "seed": 1}), teacher)
    assert other_seed.fingerprint() != first.fingerprint()
    with pytest.raises(RecipeError, match="fingerprint"):
        apply(_recipe(teacher="0" * 16), teacher)
