"""The Python API of the search: `optimize(...)` and `apply(...)` (re-exported by `hasten`).

    result = hasten.optimize("zoo:minilm")                      # zoo data, metrics and budget by default
    result = hasten.optimize("zoo:digits", allow_training=True)  # also pruned + distilled students
    result = hasten.optimize("model.onnx", calib="calib.npz", eval="eval.npz", metric="top1",
                             max_drop=0.01, time_budget="10m", out="out/model")
    result.chosen.label, result.speedup, result.report_path
    model = hasten.apply("out/model/recipe.yaml", "model.onnx", calib="calib.npz", out="out2")
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from hasten.errors import SearchError
from hasten.source import resolve, torch_spec

TARGETS = ("cpu",)
DEFAULT_TIME_BUDGET_S = 480.0


def parse_duration(value) -> float:
    """Seconds from 600, "600", "90s", "10m", "1h", "1m30s"."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
            if not parts or "".join(f"{a}{b}" for a, b in parts) != text.replace(" ", ""):
                raise SearchError(f"--time-budget {value!r}: write a duration like 90s, 10m or 1h")
            seconds = sum(float(a) * {"h": 3600, "m": 60, "s": 1}[b] for a, b in parts)
    if not seconds > 0:
        raise SearchError(f"--time-budget must be positive, got {value!r}")
    return seconds


def _metrics(spec, defaults: list | None) -> list:
    """The metrics `spec` names (names, Metrics or callables); `defaults` (the source's own) without one."""
    from hasten.measure.accuracy import Metric, get_metric

    if spec is None or spec == "" or spec == []:
        return defaults
    if isinstance(spec, (str, Metric)) or callable(spec):
        items = [s for s in spec.split(",") if s] if isinstance(spec, str) else [spec]
    else:
        items = list(spec)
    return [get_metric(s) for s in items]


@dataclass
class OptimizeResult:
    """What `optimize` returns: the search result plus where its files are."""

    search: object  # hasten.search.tuner.SearchResult
    out: Path

    @property
    def chosen(self):
        return self.search.chosen

    @property
    def baseline(self):
        return self.search.baseline

    @property
    def records(self):
        return self.search.records

    @property
    def speedup(self) -> float:
        lat = self.chosen.latency
        return float(lat.ratio) if lat else 1.0

    @property
    def recipe(self):
        return self.chosen.recipe

    @property
    def model_path(self) -> Path:
        return self.out / "model.onnx"

    @property
    def recipe_path(self) -> Path:
        return self.out / "recipe.yaml"

    @property
    def results_path(self) -> Path:
        return self.out / "results.json"

    @property
    def report_path(self) -> Path:
        return self.out / "report.html"

    def model(self):
        from hasten.model import load_onnx

        return load_onnx(self.model_path)


def _check_names(settings: dict) -> None:
    """SearchError for a scheme or pass name that is not registered."""
    from hasten import passes
    from hasten.search.space import Space

    for key, known in (("schemes", sorted(Space.scheme_classes())), ("passes", passes.registered())):
        names = settings.get(key)
        if names is None:
            continue
        if isinstance(names, str):
            names = tuple(n.strip() for n in names.split(",") if n.strip())
            settings[key] = names
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise SearchError(f"--{key}: unknown {unknown}; known: {', '.join(known)}")


def optimize(model, calib=None, eval=None, metric=None, max_drop=None, *, target: str = "cpu",
             backends=None, time_budget=None, threads=None, out=None, resume: bool = False,
             force: bool = False, progress=None, timer=None, **settings) -> OptimizeResult:
    """Search for the fastest model whose accuracy drop stays inside the budget; write OUT/.

    model: .onnx path, zoo:NAME, package.module:function (returning (torch module, example inputs)),
    ModelProto or Model. calib / eval: Samples or paths (a zoo model's own data by default). metric: name(s) (top1, cosine, retrieval, sqnr, module:function), Metric(s) or a callable.
    max_drop: see hasten.search.budget. backends: names or "a,b". time_budget: seconds or "10m".
    threads: an int, a list of ints to search over, or None (physical cores). out: folder (default
    ./out/<model name>). resume/force: what to do with a folder holding another model's results.
    progress: callable(Event). timer: None (time on this host), or a function of the Tuner returning a
    timing source with hasten.measure.latency.benchmark's signature (tests and simulators). Other keywords go to hasten.search.tuner.Settings, e.g. allow_training=True
    (torch sources only: adds pruned + distilled students) and train_steps=N (their distillation steps).
    """
    from hasten.search.budget import Budget
    from hasten.search.evaluate import check_samples
    from hasten.search.tuner import Settings, Tuner

    if target not in TARGETS:
        raise SearchError(f"--target {target!r}: hasten optimize supports {', '.join(TARGETS)} for now")
    name = str(model) if isinstance(model, str) else ""
    source = _training_source(model, settings)  # checks the training options before anything loads
    src = resolve(model)
    loaded = src.model
    source = src.built_torch if src.built_torch is not None and source is not None else source
    calib = src.samples(calib, "calibration")
    eval = src.samples(eval, "evaluation")
    calib = calib if calib is not None else src.calibration
    eval = eval if eval is not None else src.evaluation
    check_samples(loaded, eval, "evaluation")
    if calib is not None:
        check_samples(loaded, calib, "calibration")
    metrics = _metrics(metric, src.metrics)
    if not metrics:
        metrics = _metrics("top1" if eval.labels is not None else "cosine", None)
    budget = Budget.build(metrics, max_drop)
    if isinstance(backends, str):
        backends = [b.strip() for b in backends.split(",") if b.strip()]
    from hasten.backends import backend_names, installed_backends

    backends = list(backends or installed_backends())
    unknown = sorted(set(backends) - set(backend_names()))
    if unknown:
        raise SearchError(f"--backends: unknown {unknown}; choose from {', '.join(backend_names())}")
    if isinstance(threads, int):
        threads = (threads,)
    elif isinstance(threads, str):
        threads = tuple(int(t) for t in threads.split(",") if t.strip())
    if threads and any(t < 1 for t in threads):
        raise SearchError(f"--threads must be >= 1, got {threads}")
    _check_names(settings)
    seconds = parse_duration(time_budget) if time_budget is not None else DEFAULT_TIME_BUDGET_S
    import dataclasses

    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(Settings)})
    if unknown:
        raise SearchError(f"optimize(): unknown option(s) {unknown}; see hasten.search.tuner.Settings")
    opts = Settings(backends=tuple(backends), threads=tuple(threads or ()), time_budget_s=seconds, **settings)
    model_name = src.name
    out = Path(out) if out is not None else Path("out") / model_name
    tuner = Tuner(loaded, calib, eval, metrics, budget, out, opts, progress=progress, resume=resume, force=force,
                  model_name=name or model_name, source=source, timer=timer)
    return OptimizeResult(tuner.run(), out)


def _training_source(model, settings: dict) -> str | None:
    """The torch-source spec students are trained from (None without allow_training); SearchError for
    --allow-training on a model without a torch module, or --train-steps without --allow-training."""
    allow, steps = settings.get("allow_training", False), settings.get("train_steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise SearchError(f"--train-steps must be an integer >= 1, got {steps!r}")
    if steps is not None and not allow:
        raise SearchError("--train-steps sets the distillation steps of the students: give --allow-training too")
    if not allow:
        return None
    spec = torch_spec(model)
    if spec is None:
        what = str(model) if isinstance(model, (str, os.PathLike)) else f"a {type(model).__name__}"
        raise SearchError(f"{what}: --allow-training prunes and distils the torch module, which an ONNX model "
                          "does not have; give zoo:minilm, zoo:digits or package.module:function (returning "
                          "(module, example_inputs)), or drop --allow-training")
    return spec


def apply(recipe, model, calib=None, out=None):
    """Run `recipe` (a Recipe or a recipe.yaml path) on `model` (path, zoo:NAME or Model); returns the Model.

    `calib`: the calibration data the search used (Samples or a path; a zoo model's own by default). With
    `out`, writes OUT/model.onnx, OUT/recipe.yaml and the artefacts the recipe's backend writes beside the
    model (as `hasten optimize` does). A recipe with a compress step trains its student again
    (same seed and threads: the same model); `model` must be the teacher it was made from."""
    from hasten.recipe import Recipe
    from hasten.recipe import apply as apply_recipe

    if not isinstance(recipe, Recipe):
        recipe = Recipe.load(recipe)
    else:
        recipe.validate()
    src = resolve(model)
    calib = src.samples(calib, "calibration")
    if calib is None and recipe.uses_calibration:
        calib = src.calibration  # a zoo model's own (None for a file)
    result = apply_recipe(recipe, src.model, calib)
    if out is not None:
        out = Path(out)
        result.save(out / "model.onnx")
        recipe.backend_instance().write_artefacts(result, out)
        recipe.save(out / "recipe.yaml", header=f"applied by hasten apply; output fingerprint "
                                                f"{result.fingerprint()}")
    return result
