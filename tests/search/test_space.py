"""The search space prunes what the CPU cannot run natively (bf16 on an AVX2-only host), on any host."""

from hasten.recipe import Recipe
from hasten.search import space as space_mod
from hasten.search.space import Space

ZEN3 = frozenset({"avx", "avx2", "fma", "f16c", "sse4_1"})
ZEN4 = ZEN3 | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"}


def _schemes(target_dtypes):
    sp = Space(["onnxruntime", "openvino"], [1], 16, target_dtypes=target_dtypes)
    names = {c.recipe.steps[-1].name for c in sp.scheme_candidates(Recipe((), "openvino", {"threads": 1}))}
    return names, sp.skipped


def test_bf16_scheme_pruned_without_native_bf16():
    names, skipped = _schemes(("fp32", "int8"))
    assert "bf16" not in names and "fp16" not in names and "int8-static" in names
    assert "no bf16 arithmetic" in skipped["bf16 on openvino"]
    names, _ = _schemes(("fp32", "bf16", "int8"))
    assert "bf16" in names


def test_openvino_bf16_precision_only_with_native_bf16(monkeypatch):
    sp = Space(["openvino"], [1], 16)
    monkeypatch.setattr(space_mod, "cpu_features", lambda: ZEN3)
    assert ("precision", "bf16") not in sp.runtime_options("openvino")
    monkeypatch.setattr(space_mod, "cpu_features", lambda: ZEN4)
    assert ("precision", "bf16") in sp.runtime_options("openvino")


def test_weight_only_schemes_left_off_openvino_unless_asked_for():
    names, skipped = _schemes(("fp32", "int8"))
    assert "int8-weight" not in names and "int4-weight" not in names and "int8-dynamic" in names
    assert "com.microsoft ops, which openvino does not run" in skipped["int4-weight on openvino"]
    sp = Space(["openvino"], [1], 16, schemes=["int8-weight"])
    asked = [c.recipe.steps[-1].name for c in sp.scheme_candidates(Recipe((), "openvino", {"threads": 1}))]
    assert asked == ["int8-weight"]
    ort = Space(["onnxruntime"], [1], 16).scheme_candidates(Recipe((), "onnxruntime", {"threads": 1}))
    assert {"int8-weight", "int4-weight"} <= {c.recipe.steps[-1].name for c in ort}


def test_an_in_budget_recipe_gets_only_the_options_that_change_speed():
    from hasten.recipe import Step

    sp = Space(["onnxruntime"], [1], 16)
    static = sp.recipe([Step("quantize", "int8-static", {})], "onnxruntime")
    every = {o for _, o, _ in sp.option_values(static)}
    fast = {o for _, o, _ in sp.option_values(static, speed_only=True)}
    assert {"calibration", "weight_rounding", "smoothquant", "attention", "per_channel"} <= every
    assert fast == {"attention", "per_channel"}
    weight = sp.recipe([Step("quantize", "int8-weight", {})], "onnxruntime")  # declares none: all kept
    assert sp.option_values(weight, speed_only=True) == sp.option_values(weight)


def test_int8_static_is_the_first_scheme_tried():
    sp = Space(["onnxruntime"], [1], 16)
    names = [c.recipe.steps[-1].name for c in sp.scheme_candidates(Recipe((), "onnxruntime", {"threads": 1}))]
    assert names[0] == "int8-static" and names[1:] == sorted(names[1:]), names


def test_int8_static_starts_from_int8_attention_on_openvino_only():
    for backend, want in (("openvino", {"attention": "qk"}), ("onnxruntime", {})):
        sp = Space([backend], [1], 16)
        cand = next(c for c in sp.scheme_candidates(Recipe((), backend, {"threads": 1}))
                    if c.recipe.steps[-1].name == "int8-static")
        config = cand.recipe.steps[-1].config
        assert config["attention"] == want.get("attention", "float"), (backend, config)
        values = {v for _, o, v in sp.option_values(cand.recipe, speed_only=True) if o == "attention"}
        assert config["attention"] not in values and len(values) == 2
