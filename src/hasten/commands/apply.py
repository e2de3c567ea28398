"""`hasten apply recipe.yaml MODEL [--calib DATA] -o OUT/`: reproduce an optimised model from its recipe."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape as esc

from hasten.commands.registry import command


@command("apply", "apply a recipe (from hasten optimize) to a model: reproduces the optimised model")
def run(args, console):
    from hasten.api import apply
    from hasten.recipe import Recipe

    recipe = Recipe.load(args.recipe)
    out = Path(args.out)
    training = " (training the student again: this takes as long as it did in the search)" \
        if any(s.kind == "compress" for s in recipe.steps) else ""
    with console.status(f"applying {len(recipe.steps)} step(s){training}..."):
        model = apply(recipe, args.model, calib=args.calib, out=out)
    fingerprint = model.fingerprint()
    if not args.json:
        console.print(esc(recipe.label()))
        console.print(esc(f"wrote {out / 'model.onnx'} (fingerprint {fingerprint}) and {out / 'recipe.yaml'}; "
                      f"run it on {recipe.backend} with {recipe.backend_options}"))
    # Recipe.load has logged `warning` (one line on stderr) when the recipe was tuned on another int8 path
    return {"model": str(out / "model.onnx"), "recipe": str(out / "recipe.yaml"), "fingerprint": fingerprint,
            "backend": recipe.backend, "backend_options": recipe.backend_options,
            "steps": [s.to_dict() for s in recipe.steps], "tuned_for": recipe.to_dict().get("tuned_for"),
            "warning": recipe.isa_warning()}


def arguments(p):
    p.add_argument("recipe", help="recipe.yaml written by hasten optimize")
    p.add_argument("model", help="the input model: an .onnx file, zoo:NAME or package.module:function (the "
                                 "same one the recipe was made from)")
    p.add_argument("--calib", default=None, help="the calibration data the search used (a zoo model's own by "
                                                 "default); needed when the recipe quantises statically")
    p.add_argument("-o", "--out", required=True, help="output folder for model.onnx and recipe.yaml")


run.arguments = arguments
