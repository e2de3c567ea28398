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
        "precision must be one of": "backend: openvino\nbackend_options: {precision: garbage}\nsteps: []\n",
        "has no option(s) ['colour']": "backend: openvino\nbackend_options: {colour: red}\nsteps: []\n",
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


ZEN3 = frozenset({"sse4_1", "avx", "avx2", "fma", "f16c"})
ZEN4 = frozenset({"sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                  "avx512_bf16"})


def test_tuned_for_is_the_hosts_and_round_trips():
    from hasten.measure.isa import cpu_features, host_int8_isa

    recipe = _recipe()
    assert recipe.int8_isa == host_int8_isa() and recipe.isa_features == tuple(sorted(cpu_features()))
    text = recipe.to_yaml()
    assert "tuned_for:" in text and f"int8_isa: {recipe.int8_isa}" in text
    assert Recipe.from_yaml(text) == recipe
    other = Recipe(recipe.steps, "onnxruntime", {"threads": 1}, 3, 24, "vnni", tuple(sorted(ZEN4)))
    back = Recipe.from_yaml(other.to_yaml())
    assert back.int8_isa == "vnni" and back.isa_features == tuple(sorted(ZEN4))
    # where it was tuned is not part of what it is: the same candidate on any CPU
    assert other.key() == recipe.key() and other.model_key() == recipe.model_key()


def test_old_recipe_without_tuned_for_loads_and_never_warns(tmp_path, caplog, monkeypatch):
    from hasten.measure import isa

    monkeypatch.setattr(isa, "cpu_features", lambda: ZEN3)
    path = tmp_path / "recipe.yaml"
    path.write_text("hasten_recipe: 1\nbackend: onnxruntime\nsteps:\n- {kind: pass, name: cleanup}\n")
    with caplog.at_level("WARNING"):
        recipe = Recipe.load(path)
    assert recipe.int8_isa is None and recipe.isa_features == () and "tuned_for" not in recipe.to_dict()
    assert recipe.isa_warning() is None and caplog.records == []


@pytest.mark.parametrize("text, message", [
    ("backend: onnxruntime\ntuned_for: vnni\n", "'tuned_for' must be a mapping"),
    ("backend: onnxruntime\ntuned_for: {int8: vnni}\n", "'tuned_for' has unknown key(s) ['int8']"),
    ("backend: onnxruntime\ntuned_for: {int8_isa: 3}\n", "'tuned_for.int8_isa' must be a name"),
    ("backend: onnxruntime\ntuned_for: {int8_isa: vnni, features: avx2}\n", "'tuned_for.features' must be"),
])
def test_bad_tuned_for_raises_clear_error(text, message):
    with pytest.raises(RecipeError) as info:
        Recipe.from_yaml(text, "r.yaml")
    assert message in str(info.value) and "r.yaml" in str(info.value)


def test_loading_a_recipe_tuned_on_another_int8_path_warns_once(tmp_path, caplog, monkeypatch):
    from hasten.measure import isa

    path = Recipe((Step("pass", "cleanup"),), "onnxruntime", {}, 0, None, "vnni", tuple(sorted(ZEN4))).save(
        tmp_path / "recipe.yaml")
    monkeypatch.setattr(isa, "cpu_features", lambda: ZEN3)  # this host: AVX2 only, whatever it really is
    with caplog.at_level("WARNING"):
        Recipe.load(path)
    lines = [r.getMessage() for r in caplog.records if r.name == "hasten.recipe"]
    assert lines == [f"{path}: recipe tuned for int8 path 'vnni' (avx512_vnni); this host is 'avx2-saturating' "
                     "(avx2): its speed and int8 accuracy were measured there; re-run hasten optimize for the "
                     "best model here"]
    assert "\n" not in lines[0] and caplog.records[0].levelname == "WARNING"
    caplog.clear()
    monkeypatch.setattr(isa, "cpu_features", lambda: ZEN4 | {"amx_tile"})  # the same int8 path: no word
    with caplog.at_level("WARNING"):
        Recipe.load(path)
    assert caplog.records == []


def test_hasten_apply_warns_on_another_int8_path(tmp_path, caplog, monkeypatch, capsys):
    import json

    from hasten.cli import main
    from hasten.measure import isa

    make_mlp_path = tmp_path / "mlp.onnx"
    hasten.load(make_mlp()).save(make_mlp_path)
    np.savez(tmp_path / "calib.npz", x=_calib().arrays["x"])
    recipe = Recipe(_recipe().steps, "onnxruntime", {"threads": 1}, 3, 24, "avx2-saturating", tuple(sorted(ZEN3)))
    path = recipe.save(tmp_path / "recipe.yaml")
    monkeypatch.setattr(isa, "cpu_features", lambda: ZEN4)
    with caplog.at_level("WARNING"):
        code = main(["apply", str(path), str(make_mlp_path), "--calib", str(tmp_path / "calib.npz"),
                     "-o", str(tmp_path / "out"), "--json"])
    assert code == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "tuned for int8 path 'avx2-saturating' (avx2); this host is 'vnni'" in warned[0]
    result = json.loads(capsys.readouterr().out)
    assert result["warning"] == recipe.isa_warning()
    # the recipe written beside the output keeps where it was tuned
    assert Recipe.from_yaml((tmp_path / "out" / "recipe.yaml").read_text()).int8_isa == "avx2-saturating"


def test_hasten_load_warns_on_a_model_tuned_on_another_int8_path(tmp_path, caplog, monkeypatch):
    from hasten.measure import isa

    out = tmp_path / "out"
    hasten.load(make_mlp()).save(out / "model.onnx")
    Recipe((Step("pass", "cleanup"),), "onnxruntime", {}, 0, None, "vnni", tuple(sorted(ZEN4))).save(
        out / "recipe.yaml")
    monkeypatch.setattr(isa, "cpu_features", lambda: ZEN3)
    with caplog.at_level("WARNING"):
        hasten.load(out / "model.onnx")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [f"{out / 'model.onnx'} (made with recipe.yaml): recipe tuned for int8 path 'vnni' "
                      "(avx512_vnni); this host is 'avx2-saturating' (avx2): its speed and int8 accuracy were "
                      "measured there; re-run hasten optimize for the best model here"]
    caplog.clear()
    monkeypatch.setattr(isa, "cpu_features", lambda: ZEN4)  # the int8 path it was tuned on: no word
    with caplog.at_level("WARNING"):
        hasten.load(str(out / "model.onnx"))
    assert caplog.records == []
