"""Mixed-precision candidates from measured per-layer sensitivity, for a scheme that misses the budget.

`hasten.quantize.sensitivity.sensitivity` ranks the nodes the scheme quantises by what quantising each one
alone costs (first metric, on a slice of the evaluation set); candidates then keep the k most sensitive
nodes out of the scheme: in float (`nodes_to_exclude`) for k = 1, 2, 4, 8, ... until the budget holds, then
bisection down to the smallest k that holds; and, where the config has `dynamic_nodes`, the MatMuls among
those k nodes as dynamic int8 instead of float (faster than float, often as accurate; the others stay in
float, and a k with no MatMul, as in a CNN, has no such candidate). Every candidate is an ordinary recipe
(the node names are in its config), judged by the tuner's own evaluator on every metric and backend.
Sensitivity exists for int8-static (the quantisation module's contract); for other schemes this says so.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from hasten.recipe import Recipe, Step
from hasten.search.records import Status
from hasten.search.space import Candidate

logger = logging.getLogger(__name__)

#: evaluation items the sensitivity analysis uses (one quantised variant per node is run on them)
SENSITIVITY_SAMPLES = 32
FLOAT_OPTION = "nodes_to_exclude"
DYNAMIC_OPTION = "dynamic_nodes"


def _seed(family):
    """The family member to start from: not failed, closest to the budget."""
    ok = [r for r in family if r.status in (Status.REJECTED, Status.IN_BUDGET) and r.accuracy is not None]
    return min(ok, key=lambda r: r.accuracy.excess) if ok else None


def compute_sensitivity(tuner, recipe: Recipe, deadline: float | None = None) -> tuple[list[str], dict] | None:
    """(ranked node names, report dict) for the last quantise step of `recipe`, or None (with a note).
    `deadline` (perf_counter time) bounds the analysis: nodes not measured by then are left out of the ranking."""
    from hasten.errors import HastenError
    from hasten.quantize.base import config_for
    from hasten.quantize.sensitivity import sensitivity

    qsteps = [i for i, s in enumerate(recipe.steps) if s.kind == "quantize"]
    if not qsteps:
        return None
    i = qsteps[-1]
    step = recipe.steps[i]
    key = (recipe.backend, tuple(s.to_dict().__repr__() for s in recipe.steps[:i]), step.name,
           repr(sorted((k, v) for k, v in step.config.items() if k not in (FLOAT_OPTION, DYNAMIC_OPTION))))
    cache = tuner.__dict__.setdefault("_sensitivity_cache", {})
    if key in cache:
        return cache[key]
    base_recipe = dataclasses.replace(recipe, steps=recipe.steps[:i])
    config_opts = {k: v for k, v in step.config.items() if k not in (FLOAT_OPTION, DYNAMIC_OPTION)}
    t0 = time.perf_counter()
    try:
        config = config_for(step.name, **config_opts)
        base_model, _ = tuner.build(base_recipe) if base_recipe.steps else (tuner.model, {})
        from hasten.recipe import calibration_subset

        calib = calibration_subset(recipe, tuner.calib)
        ev = tuner.evaluator
        report = sensitivity(base_model, calib, eval=ev.samples.take(min(len(ev.samples), SENSITIVITY_SAMPLES)),
                             metric=tuner.metrics[0], scheme=config, include_full=False, progress=False,
                             deadline=deadline)
    except HastenError as exc:
        tuner.notes.append(f"no per-layer sensitivity for {step.name}: {exc}")
        cache[key] = None
        return None
    data = report.to_dict()
    data.update({"recipe": recipe.label(), "seconds": round(time.perf_counter() - t0, 1),
                 "metric_name": report.metric})
    if tuner.sensitivity is None:
        tuner.sensitivity = data
    cache[key] = (report.ranked_nodes, data)
    return cache[key]


class MixedPrecision:
    """Drives the candidates: `next()` gives the next Candidate (None when done), `feedback(record)`."""

    def __init__(self, tuner, family):
        self.tuner = tuner
        self.seed = _seed(family)
        self.ranked: list[str] = []
        self.op_types: dict[str, str] = {}  # node -> op type, from the sensitivity rows
        self.bad, self.good = 0, None  # largest k known to miss, smallest k known to hold
        self.k = 1
        self.pending: list[Candidate] = []
        self.dynamic_tried = False
        self.done = self.seed is None
        self.outcome = ""  # one line for the notes when done: how the space ended
        if self.seed is not None:
            last = [s for s in self.seed.recipe.steps if s.kind == "quantize"]
            cls = tuner.space.scheme_classes().get(last[-1].name) if last else None
            fields = {f.name for f in dataclasses.fields(cls)} if cls is not None else set()
            if FLOAT_OPTION not in fields:
                tuner.notes.append(f"mixed precision: scheme {last[-1].name if last else '?'} has no "
                                   f"'{FLOAT_OPTION}' option; not tried")
                self.done = True
            self.has_dynamic = DYNAMIC_OPTION in fields

    def estimate_s(self) -> float:
        """Rough cost of the sensitivity analysis: one quantisation and a short run per node."""
        if self.ranked or self.done or self.seed is None:
            return 0.0
        return max(5.0, self.seed.build_s) * 2.5

    def _candidate(self, k: int, option: str) -> Candidate:
        recipe = self.seed.recipe
        steps = list(recipe.steps)
        i = max(j for j, s in enumerate(steps) if s.kind == "quantize")
        nodes = list(self.ranked[:k])
        config = dict(steps[i].config)
        if option == DYNAMIC_OPTION:  # only a MatMul runs dynamic int8; the others stay in float
            dynamic = self._matmuls(nodes)
            config[DYNAMIC_OPTION] = sorted(set(config.get(DYNAMIC_OPTION) or []) | set(dynamic))
            nodes = [n for n in nodes if n not in dynamic]
        if nodes:
            config[FLOAT_OPTION] = sorted(set(config.get(FLOAT_OPTION) or []) | set(nodes))
        steps[i] = Step("quantize", steps[i].name, config)
        where = "in float" if option == FLOAT_OPTION else "in dynamic int8"
        if option == DYNAMIC_OPTION and nodes:
            where = f"kept out: {k - len(nodes)} MatMul(s) in dynamic int8, {len(nodes)} in float"
        return Candidate(dataclasses.replace(recipe, steps=tuple(steps)), "mixed", self.seed.key,
                         f"{k} most sensitive node(s) {where}")

    def _matmuls(self, nodes: list[str]) -> list[str]:
        return [n for n in nodes if self.op_types.get(n) == "MatMul"]

    def next(self) -> Candidate | None:
        if self.done:
            return None
        if not self.ranked:
            # the analysis may use the time up to what the final measurement needs
            t = self.tuner
            got = compute_sensitivity(t, self.seed.recipe, t.deadline - (t.reserve_s() - t.sensitivity_reserve_s()))
            if not got or not got[0]:
                self.done = True
                return None
            self.ranked = got[0]
            self.op_types = {r["node"]: r["op_type"] for r in got[1].get("rows", [])}
        n = len(self.ranked)
        if self.good is None:
            if self.k >= n:  # keeping every node out is the input model: the most is all but one
                if self.bad < n - 1:
                    self.k = n - 1
                else:
                    self.done = True
                    self.outcome = (f"mixed precision: {self.seed.label} misses the budget even with {n - 1} of "
                                    f"its {n} nodes kept in float: its space is exhausted")
                    return None
            return self._candidate(self.k, FLOAT_OPTION)
        if self.good - self.bad > 1:
            self.k = (self.good + self.bad) // 2
            return self._candidate(self.k, FLOAT_OPTION)
        if self.has_dynamic and not self.dynamic_tried and self._matmuls(self.ranked[:self.good]):
            self.dynamic_tried = True
            self.k = self.good
            return self._candidate(self.good, DYNAMIC_OPTION)
        self.done = True
        self.outcome = (f"mixed precision: {self.seed.label} fits the budget with its {self.good} most sensitive "
                        f"node(s) of {n} kept out of int8 (the fewest that do)")
        return None

    def feedback(self, rec) -> None:
        if rec.origin != "mixed" or "dynamic" in rec.note:
            return
        if rec.within:
            self.good = self.k
        elif rec.status == Status.FAILED:
            self.done = True
            self.outcome = f"mixed precision on {self.seed.label} stopped: {rec.label} failed ({rec.reason[:200]})"
        else:
            self.bad = self.k
            self.k = self.k * 2
