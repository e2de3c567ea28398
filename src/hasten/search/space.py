"""The candidate space, built from what passes, schemes and backends declare (nothing hard-coded by name).

- baselines: the input model, unchanged, on each backend (and each thread setting); the runtime options a
  backend declares worth trying on the target (`Backend.option_space`, e.g. OpenVINO bf16 where the CPU has
  bf16 instructions) are variants of it;
- graph pipelines, per backend that takes graph passes: every registered pass whose output the backend runs
  (`Pass.runs_on(backend.domains)`), in the order of `hasten.passes.default_pipeline(backend.domains)`, then each
  option of the passes' `search_space()` one at a time, and each other registered pass switched on;
- schemes: every registered quantisation scheme (`hasten.quantize.base.schemes()`) on top of a backend's
  best graph pipeline, with its default config; a scheme class may declare `emits_domains` (op domains its
  output holds beyond the standard ones: it runs on backends executing them), `compute_dtype` (pruned where
  the backend does not compute in it on the target), `experimental = True` (tried only when asked for by
  name) and `search_priority` (the order schemes are tried in: int8-static first); a backend may declare
  `scheme_defaults` (the config a scheme starts from there: int8-static with int8 attention on OpenVINO);
- options: for a scheme candidate, each value of its config class's `search_space()` one at a time, and the
  backend's runtime options; then the best values combined (coordinate descent). A candidate already inside
  the budget gets only its scheme's `speed_options` (the others cannot make it faster).
Mixed-precision candidates (sensitive nodes kept in float) are made by the tuner from measured sensitivity.
- students (--allow-training): a `compress` step (a pruned, distilled student; hasten.search.training) on a
  backend's best graph pipeline; the in-budget ones then go through the scheme and option stages too.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from hasten.backends import backend_class
from hasten.configs import config_dict
from hasten.measure.isa import cpu_features, native_dtypes
from hasten.passes.base import STANDARD_DOMAINS
from hasten.quantize.base import QuantConfig
from hasten.recipe import Recipe, Step

logger = logging.getLogger(__name__)

#: option names that only change speed, never the numbers (so a variant shares its parent's accuracy)
SPEED_ONLY_OPTIONS = ("threads",)
#: the note of each backend's default graph-pipeline candidate
DEFAULT_PIPELINE = "default graph pipeline"


@dataclass(frozen=True)
class Candidate:
    """A recipe to try, where it came from (`origin`) and the parent's recipe key."""

    recipe: Recipe
    origin: str
    parent: str | None = None
    note: str = ""
    recovery: str = ""  # a retry of a failed candidate: the fix applied (search/runner.py)
    mixed: str = ""  # a mixed-precision candidate: how its kept-out nodes run, "float" or "dynamic"
    change: tuple[str, str] = ()  # a one-option variant: (option, str(value)) it changed from its parent

    @property
    def key(self) -> str:
        return self.recipe.key()


def accuracy_recipe(recipe: Recipe) -> Recipe:
    """The recipe without speed-only options: candidates that differ only there share one accuracy."""
    options = {k: v for k, v in recipe.backend_options.items() if k not in SPEED_ONLY_OPTIONS}
    return dataclasses.replace(recipe, backend_options=options)


def reference_key(recipe: Recipe) -> str:
    """Which fp32 reference a candidate is compared with: the same backend at its default precision."""
    return recipe.backend


def _config_dict(config) -> dict:
    return config_dict(config)


def _defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


class Space:
    """Generates candidates for one model.

    backends: backend names; threads: thread settings (the first is the default for every candidate);
    calibration_items: items of calibration data quantisation steps use (None: no calibration data);
    schemes / passes: restrict to these names (None: all registered and not experimental).
    """

    def __init__(self, backends: list[str], threads: list[int], calibration_items: int | None,
                 schemes: list[str] | None = None, passes: list[str] | None = None, seed: int = 0,
                 target_dtypes: tuple[str, ...] | None = None):
        self.backends = list(backends)
        self.threads = list(threads)
        self.calibration_items = calibration_items
        self.only_schemes = schemes
        self.only_passes = passes
        self.seed = seed
        self.target_dtypes = target_dtypes  # None: do not prune by dtype
        self.skipped: dict[str, str] = {}  # scheme@backend -> why it was left out

    # -- helpers -------------------------------------------------------------------------------------
    def recipe(self, steps, backend: str, options: dict | None = None) -> Recipe:
        """A recipe with every step's config in full (defaults filled in)."""
        steps = [_normalized(s) for s in steps]
        options = dict(options or {})
        options.setdefault("threads", self.threads[0])
        quantized = any(s.kind == "quantize" for s in steps)
        return Recipe(tuple(steps), backend, options, self.seed,
                      self.calibration_items if quantized else None)

    @staticmethod
    def _registry():
        from hasten import passes

        return passes

    @staticmethod
    def scheme_classes() -> dict[str, type]:
        import hasten.quantize  # noqa: F401  (registers the built-in schemes)
        from hasten.quantize.base import schemes

        return schemes()

    # -- baselines and runtime options ---------------------------------------------------------------
    def baselines(self) -> list[Candidate]:
        out = []
        for backend in self.backends:
            for t in self.threads:
                out.append(Candidate(self.recipe((), backend, {"threads": t}), "baseline",
                                     note=f"fp32 input model on {backend}, {t} threads"))
        for backend in self.backends:
            for option, value in self.runtime_options(backend):
                out.append(Candidate(self.recipe((), backend, {option: value}), "runtime",
                                     note=f"fp32 model with {backend} {option}={value}"))
        return out

    def runtime_options(self, backend: str) -> list[tuple[str, object]]:
        """The (option, value) pairs `backend` declares worth trying on this target."""
        native = self.target_dtypes if self.target_dtypes is not None else native_dtypes(cpu_features())
        return backend_class(backend).option_space(native)

    def thread_variants(self, recipe: Recipe) -> list[Recipe]:
        return [dataclasses.replace(recipe, backend_options={**recipe.backend_options, "threads": t})
                for t in self.threads[1:]]

    # -- graph passes --------------------------------------------------------------------------------
    def _pass_allowed(self, name: str) -> bool:
        return self.only_passes is None or name in self.only_passes

    def pipeline(self, backend: str) -> list[Step]:
        """The default graph pipeline for `backend` as steps (each pass once, its default config)."""
        if not backend_class(backend).graph_passes:
            return []
        members = self._registry().default_pipeline(backend_class(backend).domains).passes
        return [Step("pass", p.name, _config_dict(p.config)) for p in members if self._pass_allowed(p.name)]

    def graph_variants(self, backend: str) -> list[Candidate]:
        """The default pipeline, then one change at a time: a pass option, or another pass switched on."""
        reg = self._registry()
        base = self.pipeline(backend)
        out = []
        if not backend_class(backend).graph_passes:
            return out
        domains = backend_class(backend).domains
        if base:
            out.append(Candidate(self.recipe(base, backend), "graph", note=DEFAULT_PIPELINE))
        in_base = {s.name for s in base}
        for name in reg.registered():
            if not self._pass_allowed(name):
                continue
            p = reg.get_pass(name)
            if not p.runs_on(domains):
                continue
            if name in in_base:
                i = next(k for k, s in enumerate(base) if s.name == name)
                for option, values in (p.search_space() or {}).items():
                    for value in values:
                        if base[i].config.get(option) == value:
                            continue
                        steps = list(base)
                        steps[i] = Step("pass", name, {**base[i].config, option: value})
                        out.append(Candidate(self.recipe(steps, backend), "graph",
                                             note=f"{name} {option}={value}"))
            elif not getattr(p, "search_exclude", False):
                steps = [*base, Step("pass", name, _config_dict(p.config))]
                out.append(Candidate(self.recipe(steps, backend), "graph", note=f"{name} on"))
        return out

    # -- students ------------------------------------------------------------------------------------
    def student_candidate(self, step: Step, base: Recipe, note: str) -> Candidate:
        """The student `step` (kind compress) followed by `base`'s graph steps, fp32, on `base`'s backend."""
        steps = [step, *(s for s in base.steps if s.kind == "pass")]
        return Candidate(self.recipe(steps, base.backend, base.backend_options), "student", parent=base.key(),
                         note=note)

    # -- quantisation schemes ------------------------------------------------------------------------
    def scheme_allowed(self, name: str, cls, backend: str) -> str | None:
        """None when `name` may run on `backend`, else why not."""
        if self.only_schemes is not None and name not in self.only_schemes:
            return "not requested"
        if self.only_schemes is None and getattr(cls, "experimental", False):
            return "experimental (ask for it by name: schemes=...)"
        runtime = backend_class(backend)
        dtype = getattr(cls, "compute_dtype", None)
        if self.only_schemes is None and dtype and self.target_dtypes is not None \
                and dtype not in runtime.dtypes_on(self.target_dtypes):
            where = f"the target has no {dtype} arithmetic (it has {', '.join(self.target_dtypes)})" \
                if dtype not in self.target_dtypes else f"{backend} does not compute in {dtype}"
            return f"{where}; ask for it by name to try it anyway"
        foreign = sorted(set(getattr(cls, "emits_domains", ())) - set(runtime.domains) - set(STANDARD_DOMAINS))
        if self.only_schemes is None and foreign:
            return f"its output holds {', '.join(foreign)} ops, which {backend} does not run " \
                   "(ask for it by name to try it anyway)"
        if getattr(cls, "min_samples", 0) and self.calibration_items is None:
            return "needs calibration data (--calib)"
        return None

    def scheme_candidates(self, base: Recipe) -> list[Candidate]:
        """Each scheme, default config, on top of `base` (a graph-pass recipe), in the order of the
        classes' `search_priority` (int8-static first), then by name."""
        out = []
        for name, cls in sorted(self.scheme_classes().items(),
                                key=lambda kv: (getattr(kv[1], "search_priority", QuantConfig.search_priority), kv[0])):
            why = self.scheme_allowed(name, cls, base.backend)
            if why is not None:
                if why != "not requested":
                    self.skipped[f"{name} on {base.backend}"] = why
                continue
            start = dict(backend_class(base.backend).scheme_defaults.get(name, {}))
            steps = [*base.steps, Step("quantize", name, start)]
            note = f"{name}, {base.backend}'s defaults ({', '.join(f'{k}={v}' for k, v in start.items())})" \
                if start else f"{name}, default options"
            out.append(Candidate(self.recipe(steps, base.backend, base.backend_options), "scheme",
                                 parent=base.key(), note=note))
        return out

    def option_values(self, recipe: Recipe, speed_only: bool = False) -> list[tuple[str, str, object]]:
        """(where, option, value) pairs worth trying from `recipe`: the last quantise step's search space
        (where = "quantize") and the backend's runtime options (where = "backend"). `speed_only` (a recipe
        already inside the budget): only the options its scheme declares in `speed_options`."""
        pairs: list[tuple[str, str, object]] = []
        # runtime options first: they re-use the parent's model, so they cost no quantisation
        for option, value in self.runtime_options(recipe.backend):
            if recipe.backend_options.get(option) != value:
                pairs.append(("backend", option, value))
        quant = [s for s in recipe.steps if s.kind == "quantize"]
        if quant:
            step = quant[-1]
            cls = self.scheme_classes().get(step.name)
            if cls is not None:
                current = {**_defaults(cls), **step.config}
                space = cls.search_space() or {}
                speed = getattr(cls, "speed_options", None)
                for option, values in space.items():
                    if speed_only and speed is not None and option not in speed:
                        continue
                    for value in values:
                        if _same(current.get(option), value):
                            continue
                        pairs.append(("quantize", option, value))
        return pairs

    def with_option(self, recipe: Recipe, where: str, option: str, value) -> Recipe:
        if where == "backend":
            return dataclasses.replace(recipe, backend_options={**recipe.backend_options, option: value})
        steps = list(recipe.steps)
        i = max(k for k, s in enumerate(steps) if s.kind == "quantize")
        steps[i] = _normalized(Step("quantize", steps[i].name, {**steps[i].config, option: value}))
        return dataclasses.replace(recipe, steps=tuple(steps))

    def option_variants(self, parent: Candidate, speed_only: bool = False) -> list[Candidate]:
        out = []
        for where, option, value in self.option_values(parent.recipe, speed_only):
            out.append(Candidate(self.with_option(parent.recipe, where, option, value), "option",
                                 parent=parent.key, note=f"{option}={value}", change=(option, str(value))))
        return out

    def combined(self, parent: Candidate, choices: list[tuple[str, str, object]]) -> Candidate | None:
        """The parent with several one-at-a-time winners applied together (None when fewer than two)."""
        if len(choices) < 2:
            return None
        recipe = parent.recipe
        for where, option, value in choices:
            recipe = self.with_option(recipe, where, option, value)
        note = ", ".join(f"{o}={v}" for _, o, v in choices)
        return Candidate(recipe, "combined", parent=parent.key, note=note)


def _normalized(step: Step) -> Step:
    from hasten.errors import HastenError
    from hasten.recipe import normalized

    try:
        return normalized(step)
    except (HastenError, TypeError, ValueError):  # a bad option: the build will fail and say why
        return step


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(b, tuple):
        b = list(b)
    return a == b
