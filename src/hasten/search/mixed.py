"""Mixed-precision candidates from measured per-layer sensitivity, for a scheme that misses the budget.

`hasten.quantize.sensitivity.sensitivity` ranks the nodes the scheme quantises by what quantising each one
alone costs (first metric, on a slice of the evaluation set); candidates then keep the k most sensitive
nodes out of the scheme: in float (`nodes_to_exclude`) for k = 1, 2, 4, 8, ... until the budget holds, then
bisection down to the smallest k that holds; and, where the config has `dynamic_nodes`, the MatMuls among
those k nodes as dynamic int8 instead of float (faster than float, often as accurate; the others stay in
float, and a k with no MatMul, as in a CNN, has no such candidate). Every candidate is an ordinary recipe
(the node names are in its config), judged by the tuner's own evaluator on every metric and backend.
Sensitivity exists for int8-static (the quantisation module's contract); for other schemes this says so.

This module measures (`Sensitivities`: the analyses, each computed once); the k-search itself is the
planner's (`hasten.search.planner.MixedPrecision`), fed the ranking measured here.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from hasten.recipe import Recipe, calibration_subset
from hasten.search.planner import DYNAMIC_OPTION, FLOAT_OPTION

logger = logging.getLogger(__name__)

#: evaluation items the sensitivity analysis uses (one quantised variant per node is run on them)
SENSITIVITY_SAMPLES = 32


@dataclass(frozen=True)
class Analysis:
    """One per-layer sensitivity analysis: the nodes worst first and the report's dict, or why there is
    none (`error`)."""

    ranked: list[str]
    data: dict | None
    error: str = ""


class Sensitivities:
    """Per-layer sensitivity of a recipe's last quantise step, computed once per (backend, steps before it,
    scheme, config without the kept-out nodes). build(recipe) -> (model, report) builds a recipe's prefix;
    calib / samples / metric: the calibration data, the evaluation samples and the metric ranked by."""

    def __init__(self, model, build: Callable, calib, samples, metric):
        self.model, self.build, self.calib, self.samples, self.metric = model, build, calib, samples, metric
        self._done: dict[tuple, Analysis | None] = {}

    def get(self, recipe: Recipe, deadline: float | None = None) -> tuple[Analysis | None, bool]:
        """(the analysis or None when `recipe` quantises nothing, whether it was computed by this call).
        `deadline` (perf_counter time) bounds the analysis: nodes not measured by then are left out."""
        from hasten.errors import HastenError
        from hasten.quantize.base import config_for
        from hasten.quantize.sensitivity import sensitivity

        qsteps = [i for i, s in enumerate(recipe.steps) if s.kind == "quantize"]
        if not qsteps:
            return None, False
        i = qsteps[-1]
        step = recipe.steps[i]
        key = (recipe.backend, tuple(s.to_dict().__repr__() for s in recipe.steps[:i]), step.name,
               repr(sorted((k, v) for k, v in step.config.items() if k not in (FLOAT_OPTION, DYNAMIC_OPTION))))
        if key in self._done:
            return self._done[key], False
        base_recipe = dataclasses.replace(recipe, steps=recipe.steps[:i])
        config_opts = {k: v for k, v in step.config.items() if k not in (FLOAT_OPTION, DYNAMIC_OPTION)}
        t0 = time.perf_counter()
        try:
            config = config_for(step.name, **config_opts)
            base_model, _ = self.build(base_recipe) if base_recipe.steps else (self.model, {})
            calib = calibration_subset(recipe, self.calib)
            report = sensitivity(base_model, calib, eval=self.samples.take(min(len(self.samples), SENSITIVITY_SAMPLES)),
                                 metric=self.metric, scheme=config, include_full=False, progress=False,
                                 deadline=deadline)
        except HastenError as exc:
            self._done[key] = Analysis([], None, f"no per-layer sensitivity for {step.name}: {exc}")
            return self._done[key], True
        data = report.to_dict()
        data.update({"recipe": recipe.label(), "seconds": round(time.perf_counter() - t0, 1),
                     "metric_name": report.metric})
        self._done[key] = Analysis(list(report.ranked_nodes), data)
        return self._done[key], True
