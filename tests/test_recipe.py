"""Recipe: YAML round trip, clear errors on bad files, and `apply` reproducing a model exactly."""

from __future__ import annotations

import numpy as np
import pytest
from modelkit import make_mlp

import hasten
from hasten.data import Samples
from hasten.recipe import Recipe, RecipeError, Step, apply, normalized


def _calib(n=32, seed=1):
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    return Samples({"x": x}, name="calib")


def _recipe(**kw) -> Recipe:
    steps = (Step("pass", "cleanup"), Step("quantize", "int8-static", {"calibration": "percentile"}))
    return Recipe(steps, "onnxruntime", {"threads": 1}, seed=3, calibration_items=24, **kw)


def test_yaml_round_trip_is_exact():
    recipe = _recipe()
    text = recipe.to_yaml(header="a comment\nsecond line")
    assert text.startswith("# a comment\n# second line\n")
    back = Recipe.from_yaml(text)
    assert back == recipe and back.key() == recipe.key()
    assert back.steps[1].config == {"calibration": "percentile"}
    assert back.calibration_items == 24 and back.seed == 3 and back.backend_options == {"threads": 1}


def test_key_depends_on_every_field():
    base = _recipe()
    assert Recipe(base.steps, "openvino", base.backend_options, 3, 24).key() != base.key()
    assert Recipe(base.steps, "onnxruntime", {"threads": 2}, 3, 24).key() != base.key()
    assert Recipe(base.steps[:1], "onnxruntime", {"threads": 1}, 3, 24).key() != base.key()
    # the model key ignores the backend: the same steps make the same model anywhere
    assert Recipe(base.steps, "openvino", {}, 3, 24).model_key() == base.model_key()


@pytest.mark.parametrize("text, message", [
    ("backend: onnxruntime\nstepz: []\n", "unknown key(s) ['stepz']"),
    ("steps: []\n", "missing 'backend'"),
    ("backend: onnxruntime\nsteps:\n- {kind: pass, name: cleanup, confg: {}}\n", "unknown key(s) ['confg']"),
    ("backend: onnxruntime\nsteps:\n- {kind: magic, name: cleanup}\n", "kind must be one of"),
    ("backend: onnxruntime\nsteps: 3\n", "'steps' must be a list"),
    ("backend: onnxruntime\nseed: abc\n", "'seed' must be an integer"),
    ("hasten_recipe: 99\nbackend: onnxruntime\n", "format 99 is not supported"),
    ("- just\n- a list\n", "expected a mapping"),
    ("backend: [unclosed\n", "not valid YAML"),
])
def test_bad_yaml_raises_clear_error(text, message):
    with pytest.raises(RecipeError, match=None) as info:
        Recipe.from_yaml(text, "r.yaml")
    assert message in str(info.value) and "r.yaml" in str(info.value)


def test_unknown_pass_scheme_option_and_backend(tmp_path):
    cases = {
        "unknown pass 'no_such_pass'": "backend: onnxruntime\nsteps:\n- {kind: pass, name: no_such_pass}\n",
        "unknown quantisation scheme 'int3'": "backend: onnxruntime\nsteps:\n- {kind: quantize, name: int3}\n",
        "no option(s) ['colour']": "backend: onnxruntime\nsteps:\n"
                                   "- {kind: quantize, name: int8-dynamic, config: {colour: red}}\n",
        "unknown backend 'tpu'": "backend: tpu\nsteps: []\n",
    }
    for message, text in cases.items():
        path = tmp_path / "recipe.yaml"
        path.write_text(text)
        with pytest.raises(RecipeError) as info:
            Recipe.load(path)
        assert message in str(info.value) and str(path) in str(info.value), str(info.value)
    with pytest.raises(RecipeError, match="no such recipe file"):
        Recipe.load(tmp_path / "missing.yaml")


def test_label_shows_only_non_default_options():
    step = normalized(Step("quantize", "int8-static", {"calibration": "entropy"}))
    assert "per_channel" in step.config  # normalised: the full config is recorded
    assert step.label() == "int8-static(calibration=entropy)"
    assert normalized(Step("pass", "cleanup")).label() == "cleanup"


def test_apply_reproduces_the_same_fingerprint(tmp_path):
    model = hasten.load(make_mlp())
    calib = _calib()
    recipe = _recipe()
    first = apply(recipe, model, calib)
    assert first.fingerprint() != model.fingerprint()
    assert "QuantizeLinear" in first.op_histogram()
    path = recipe.save(tmp_path / "recipe.yaml")
    second = apply(path, hasten.load(make_mlp()), calib)  # from the file, on a freshly loaded input
    assert second.fingerprint() == first.fingerprint()
    # calibration_items selects the first 24 items: extra items after them change nothing
    more = Samples({"x": np.concatenate([calib.arrays["x"], _calib(8, seed=9).arrays["x"]])})
    assert apply(recipe, model, more).fingerprint() == first.fingerprint()
    # ...but different calibration data gives a different model
    assert apply(recipe, model, _calib(seed=2)).fingerprint() != first.fingerprint()
    # saving and reloading the output keeps the fingerprint
    first.save(tmp_path / "m.onnx")
    assert hasten.load(str(tmp_path / "m.onnx")).fingerprint() == first.fingerprint()


def test_apply_with_too_few_calibration_items_says_so():
    from hasten.errors import DataError

    with pytest.raises(DataError, match="24 calibration items"):
        apply(_recipe(), hasten.load(make_mlp()), _calib(10))
