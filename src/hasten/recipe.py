"""Recipe: the ordered steps that made a model, plus the backend that runs it; YAML round trip and `apply`.

    hasten_recipe: 1
    backend: onnxruntime
    backend_options: {threads: 2}
    seed: 0
    calibration_items: 128          # the first N calibration samples were used (null: all of them)
    steps:
    - {kind: pass, name: transformer_fusion, config: {gelu_approximation: false}}
    - {kind: quantize, name: int8-dynamic, config: {per_channel: true}}
    tuned_for: {int8_isa: vnni, features: [avx2, avx512_vnni, ...]}   # the CPU the search measured on

`tuned_for` records the int8 path and ISA features (hasten.measure.isa) of the host a recipe was made on (a
new Recipe takes this host's; a file without it loads with none). `Recipe.load` logs one warning (logger
"hasten.recipe") when this host's int8 path differs: speed and int8 accuracy were measured on the other one;
`warn_if_tuned_elsewhere(OUT/model.onnx)` does the same for a model with its recipe.yaml beside it;
`hasten.load` calls it for every .onnx path, so every command and the API warn on such a model.

`apply(recipe, model, calib)` runs the steps in order: a `pass` step is `hasten.passes.get_pass(name,
**config)(model)`, a `quantize` step is `hasten.quantize.quantize(model, config_for(name, **config), calib)`.
A `compress` step (only first) trains a pruned, distilled student of the input model's torch source and
continues with its export (see hasten.compress.step).
Given the same input model and calibration data it reproduces the same model (same fingerprint).
Unknown keys, kinds, passes or schemes raise `RecipeError` naming the file and the key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hasten.backends import DEFAULT_BACKEND
from hasten.configs import config_dict, to_plain
from hasten.errors import HastenError, RecipeError
from hasten.fileio import atomic_write_text

FORMAT_VERSION = 1
KINDS = ("compress", "pass", "quantize")
_TOP_KEYS = {"hasten_recipe", "backend", "backend_options", "seed", "calibration_items", "steps", "tuned_for"}
_STEP_KEYS = {"kind", "name", "config"}
_TUNED_KEYS = {"int8_isa", "features"}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One step: a graph pass or a quantisation scheme, with its config as plain values."""

    kind: str
    name: str
    config: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise RecipeError(f"recipe step {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.name, str) or not self.name:
            raise RecipeError(f"recipe step: name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.config, dict):
            raise RecipeError(f"recipe step {self.name!r}: config must be a mapping, got "
                              f"{type(self.config).__name__}")
        object.__setattr__(self, "config", to_plain(self.config))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "config": dict(self.config)}

    def label(self) -> str:
        """`name(option=value,...)` with only the options that differ from the defaults."""
        if self.kind == "compress":
            from hasten.compress.step import compress_label

            return compress_label(self.config)
        defaults = _default_config(self.kind, self.name)
        opts = ",".join(f"{k}={_short(v)}" for k, v in sorted(self.config.items())
                        if k not in defaults or defaults[k] != v)
        return f"{self.name}({opts})" if opts else self.name


def _host_int8_isa() -> str | None:
    from hasten.measure.isa import host_int8_isa

    return host_int8_isa()


def _host_features() -> tuple[str, ...]:
    from hasten.measure.isa import cpu_features

    return tuple(sorted(cpu_features()))


@dataclass(frozen=True)
class Recipe:
    """Steps (in order), the backend and its options (threads, precision...), a seed, how many calibration
    items the quantisation steps used (None: all that were given), and the host it was tuned for: its int8
    path and ISA features (default: this host's; None / () when unknown, e.g. an older recipe file)."""

    steps: tuple[Step, ...] = ()
    backend: str = DEFAULT_BACKEND
    backend_options: dict = field(default_factory=dict)
    seed: int = 0
    calibration_items: int | None = None
    int8_isa: str | None = field(default_factory=_host_int8_isa)
    isa_features: tuple[str, ...] = field(default_factory=_host_features)

    def __post_init__(self):
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "isa_features", tuple(str(f) for f in self.isa_features))
        if self.int8_isa is not None and (not isinstance(self.int8_isa, str) or not self.int8_isa):
            raise RecipeError(f"recipe: tuned_for.int8_isa must be a name such as 'vnni', got {self.int8_isa!r}")
        object.__setattr__(self, "backend_options", to_plain(dict(self.backend_options)))
        if not isinstance(self.backend, str) or not self.backend:
            raise RecipeError(f"recipe: backend must be a name such as {DEFAULT_BACKEND!r}, got {self.backend!r}")
        if self.calibration_items is not None and int(self.calibration_items) < 1:
            raise RecipeError(f"recipe: calibration_items must be >= 1 or null, got {self.calibration_items}")
        if any(s.kind == "compress" for s in self.steps[1:]):
            raise RecipeError("recipe: a compress step must be the first step (it replaces the input model)")

    # -- identity ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {"hasten_recipe": FORMAT_VERSION, "backend": self.backend,
               "backend_options": dict(self.backend_options), "seed": int(self.seed),
               "calibration_items": self.calibration_items, "steps": [s.to_dict() for s in self.steps]}
        if self.int8_isa is not None or self.isa_features:
            out["tuned_for"] = {"int8_isa": self.int8_isa, "features": list(self.isa_features)}
        return out

    def key(self) -> str:
        """A stable hash of everything that defines the result (sorted JSON); not of the host it was tuned
        on (`tuned_for`), so the same steps and backend are the same candidate on any CPU."""
        d = self.to_dict()
        d.pop("tuned_for", None)
        text = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def model_key(self) -> str:
        """Hash of what defines the model alone (steps, seed, calibration), not the backend it runs on."""
        d = self.to_dict()
        text = json.dumps({"steps": d["steps"], "seed": d["seed"], "calib": d["calibration_items"]},
                          sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def uses_calibration(self) -> bool:
        return any(s.kind == "quantize" or s.kind == "compress" and s.config.get("data") == "calibration"
                   for s in self.steps)

    def label(self) -> str:
        """Short human label: `backend[opts] step + step`."""
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.backend_options.items()) if k != "threads")
        head = f"{self.backend}[{opts}]" if opts else self.backend
        body = " + ".join(s.label() for s in self.steps) or "fp32"
        return f"{head}: {body}"

    # -- YAML ----------------------------------------------------------------------------------------
    def to_yaml(self, header: str = "") -> str:
        comment = "".join(f"# {line}\n" for line in header.splitlines()) if header else ""
        return comment + yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)

    def save(self, path: str | os.PathLike, header: str = "") -> Path:
        path = Path(path)
        atomic_write_text(path, self.to_yaml(header))
        return path

    @classmethod
    def from_dict(cls, data, where: str = "recipe") -> Recipe:
        if not isinstance(data, dict):
            raise RecipeError(f"{where}: expected a mapping with keys {sorted(_TOP_KEYS)}, got "
                              f"{type(data).__name__}")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise RecipeError(f"{where}: unknown key(s) {unknown}; a recipe has {sorted(_TOP_KEYS)}")
        version = data.get("hasten_recipe", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise RecipeError(f"{where}: recipe format {version!r} is not supported (this hasten reads "
                              f"{FORMAT_VERSION}); re-create it with this version")
        if "backend" not in data:
            raise RecipeError(f"{where}: missing 'backend' (e.g. backend: {DEFAULT_BACKEND})")
        raw_steps = data.get("steps") or []
        if not isinstance(raw_steps, list):
            raise RecipeError(f"{where}: 'steps' must be a list")
        steps = []
        for i, raw in enumerate(raw_steps):
            if not isinstance(raw, dict):
                raise RecipeError(f"{where}: step {i} must be a mapping with keys {sorted(_STEP_KEYS)}")
            bad = sorted(set(raw) - _STEP_KEYS)
            if bad:
                raise RecipeError(f"{where}: step {i} has unknown key(s) {bad}; a step has "
                                  f"{sorted(_STEP_KEYS)}")
            if "kind" not in raw or "name" not in raw:
                raise RecipeError(f"{where}: step {i} needs 'kind' ({'|'.join(KINDS)}) and 'name'")
            try:
                steps.append(Step(raw["kind"], raw["name"], raw.get("config") or {}))
            except RecipeError as exc:
                raise RecipeError(f"{where}: step {i}: {exc}") from exc
        options = data.get("backend_options") or {}
        if not isinstance(options, dict):
            raise RecipeError(f"{where}: 'backend_options' must be a mapping")
        seed = data.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise RecipeError(f"{where}: 'seed' must be an integer, got {seed!r}")
        items = data.get("calibration_items")
        if items is not None and (not isinstance(items, int) or isinstance(items, bool)):
            raise RecipeError(f"{where}: 'calibration_items' must be an integer or null, got {items!r}")
        isa, features = _tuned_for(data.get("tuned_for"), where)
        try:
            return cls(tuple(steps), data["backend"], options, seed, items, isa, features)
        except RecipeError as exc:
            raise RecipeError(f"{where}: {exc}") from exc

    @classmethod
    def from_yaml(cls, text: str, where: str = "recipe") -> Recipe:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RecipeError(f"{where}: not valid YAML ({exc})") from exc
        return cls.from_dict(data, where)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recipe:
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"{path}: no such recipe file; give the recipe.yaml written by hasten optimize")
        recipe = cls.from_yaml(path.read_text(encoding="utf-8"), str(path))
        recipe.validate(str(path))
        warning = recipe.isa_warning()
        if warning:
            logger.warning("%s: %s", path, warning)
        return recipe

    def isa_warning(self) -> str | None:
        """One line when this recipe was tuned on a CPU whose int8 path differs from this host's, else None
        (also None when the recipe does not say what it was tuned for)."""
        from hasten.measure.isa import cpu_features, int8_features, int8_isa

        here = int8_isa(cpu_features())
        if self.int8_isa is None or self.int8_isa == here:
            return None
        there_f = int8_features(self.isa_features)[:1]
        here_f = int8_features(cpu_features())[:1]
        there = f"'{self.int8_isa}'" + (f" ({there_f[0]})" if there_f else "")
        this = f"'{here}'" + (f" ({here_f[0]})" if here_f else "")
        return (f"recipe tuned for int8 path {there}; this host is {this}: its speed and int8 accuracy were "
                f"measured there; re-run hasten optimize for the best model here")

    # -- checks and application ----------------------------------------------------------------------
    def validate(self, where: str = "recipe") -> None:
        """Raise RecipeError unless every pass, scheme, option and the backend are known."""
        from hasten.backends import backend_class, backend_names

        if self.backend not in backend_names():
            raise RecipeError(f"{where}: unknown backend {self.backend!r}; choose from {backend_names()}")
        cls = backend_class(self.backend)
        unknown = sorted(set(self.backend_options) - set(cls.option_names()))
        if unknown:
            raise RecipeError(f"{where}: backend {self.backend} has no option(s) {unknown}; it takes "
                              f"{', '.join(cls.option_names())}")
        try:
            cls(**self.backend_options)
        except (HastenError, TypeError) as exc:
            raise RecipeError(f"{where}: backend_options: {exc}") from exc
        for step in self.steps:
            try:
                _build_step(step)
            except HastenError as exc:
                raise RecipeError(f"{where}: step {step.label()}: {exc}") from exc

    def backend_instance(self, threads: int | None = None):
        """The configured Backend (`threads` overrides the recipe's thread count when given)."""
        from hasten.backends import get_backend

        options = dict(self.backend_options)
        if threads is not None:
            options["threads"] = threads
        return get_backend(self.backend, **options)


def tuned_elsewhere(model_path: str | os.PathLike) -> str | None:
    """For a model hasten wrote (OUT/model.onnx): the `isa_warning` of the recipe.yaml beside it, with the
    model's path, if it was tuned on another int8 path; None otherwise (also for any other file: a user's
    model that merely sits beside a recipe is not one hasten wrote)."""
    path = Path(model_path)
    recipe_path = path.with_name("recipe.yaml")
    if path.name != "model.onnx" or not recipe_path.is_file():
        return None
    try:
        warning = Recipe.from_yaml(recipe_path.read_text(encoding="utf-8"), str(recipe_path)).isa_warning()
    except (OSError, HastenError):
        return None
    return f"{path} (made with {recipe_path.name}): {warning}" if warning else None


def warn_if_tuned_elsewhere(model_path: str | os.PathLike) -> str | None:
    """`tuned_elsewhere`, logged as one warning line (`hasten.load` calls it for every .onnx path)."""
    warning = tuned_elsewhere(model_path)
    if warning:
        logger.warning("%s", warning)
    return warning


def _tuned_for(raw, where: str) -> tuple[str | None, tuple[str, ...]]:
    """(int8_isa, features) from a recipe's `tuned_for` mapping; (None, ()) when it has none."""
    if raw is None:
        return None, ()
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: 'tuned_for' must be a mapping with keys {sorted(_TUNED_KEYS)}")
    bad = sorted(set(raw) - _TUNED_KEYS)
    if bad:
        raise RecipeError(f"{where}: 'tuned_for' has unknown key(s) {bad}; it has {sorted(_TUNED_KEYS)}")
    isa, features = raw.get("int8_isa"), raw.get("features") or []
    if isa is not None and not isinstance(isa, str):
        raise RecipeError(f"{where}: 'tuned_for.int8_isa' must be a name such as 'vnni', got {isa!r}")
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise RecipeError(f"{where}: 'tuned_for.features' must be a list of CPU feature names")
    return isa, tuple(features)


def _short(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value[:3]) + (f",+{len(value) - 3}" if len(value) > 3 else "") + "]"
    return str(value)


@functools.cache
def _default_config(kind: str, name: str) -> dict:
    """The default config of a pass or scheme as plain values ({} when it cannot be built)."""
    import dataclasses

    try:
        built = _build_step(Step(kind, name, {}))
    except Exception:
        return {}
    config = built.config if kind == "pass" else built
    if not dataclasses.is_dataclass(config):
        return {}
    return config_dict(config, plain=True)


def _build_step(step: Step):
    """What a step stands for: a Pass instance, a QuantConfig or a CompressSpec."""
    if step.kind == "compress":
        from hasten.compress.step import CompressSpec

        return CompressSpec.from_config(step.name, step.config)
    if step.kind == "pass":
        from hasten import passes

        if step.name not in passes.registered():
            raise RecipeError(f"unknown pass {step.name!r}; known passes: {', '.join(passes.registered())}")
        return passes.get_pass(step.name, **step.config)
    import hasten.quantize as quantize_pkg
    from hasten.quantize.base import config_for, schemes

    del quantize_pkg  # importing the package registers the built-in schemes
    if step.name not in schemes():
        raise RecipeError(f"unknown quantisation scheme {step.name!r}; known: {', '.join(sorted(schemes()))}")
    return config_for(step.name, **step.config)


def normalized(step: Step) -> Step:
    """The step with its full config (every option, defaults filled in), so a recipe does not depend on
    future defaults."""
    import dataclasses

    built = _build_step(step)
    config = built.config if step.kind == "pass" else built
    if not dataclasses.is_dataclass(config):
        return step
    return Step(step.kind, step.name, config_dict(config))


def run_step(step: Step, model, calib=None):
    """Apply one step to `model`; returns (new model, report dict)."""
    built = _build_step(step)
    if step.kind == "compress":
        from hasten.compress.step import run_compress

        model, report = run_compress(built, model, calib)
        return model, to_plain(report)
    if step.kind == "pass":
        result = built(model)
        return result.model, {"modified": bool(result.modified), **{k: int(v) for k, v in result.stats.items()}}
    from hasten.quantize.base import quantize

    result = quantize(model, built, calib)
    return result.model, to_plain(result.report or {})


def calibration_subset(recipe: Recipe, calib):
    """The calibration samples a recipe uses: the first `calibration_items`, or all."""
    if calib is None or recipe.calibration_items is None:
        return calib
    return calib.take(min(len(calib), int(recipe.calibration_items)))


def seed_everything(seed: int) -> None:
    """Seed the random generators a step may use (numpy's global, Python's, torch's when loaded)."""
    import random
    import sys

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def apply(recipe: Recipe | str | os.PathLike, model, calib=None):
    """Run `recipe`'s steps on `model` (a hasten Model); returns the new Model.

    `calib` (Samples) is needed when a step quantises with calibration; the recipe's `calibration_items`
    selects the first N of them, as during the search.
    """
    from hasten.errors import DataError

    if not isinstance(recipe, Recipe):
        recipe = Recipe.load(recipe)
    if recipe.uses_calibration and calib is not None and recipe.calibration_items is not None \
            and len(calib) < recipe.calibration_items:
        raise DataError(f"the recipe was made with {recipe.calibration_items} calibration items; only "
                        f"{len(calib)} were given: give the same calibration data to reproduce it")
    for _, built, _ in run_steps(recipe, model, calib):
        model = built
    return model


def run_steps(recipe: Recipe, model, calib=None, start: int = 0, run=run_step):
    """The one recipe runner (`apply` and the search's builds): seed as the recipe says, take its calibration
    subset, run `recipe.steps[start:]` on `model` with `run(step, model, calib) -> (model, report)`, and
    yield (index, model, report) after each step."""
    calib = calibration_subset(recipe, calib)
    seed_everything(recipe.seed)
    for i in range(start, len(recipe.steps)):
        model, report = run(recipe.steps[i], model, calib)
        yield i, model, report
