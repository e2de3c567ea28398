"""The accuracy-aware tuner: the FASTEST candidate whose accuracy drop is inside the budget.

Stages (each candidate: build -> compile -> accuracy on a subset -> full accuracy for survivors):
1. baselines: the fp32 model on every backend (the references) and the backends' runtime options;
2. graph pipelines per backend; the fastest in-budget one per backend becomes that backend's base;
   with --allow-training and a torch source, pruned and distilled students on each base (search/training.py);
   the in-budget ones are bases too;
3. every quantisation scheme (default config) on each base; all that run are screened for latency (an
   out-of-budget scheme is timed too: it tells whether refining it could win);
4. refinement, fastest scheme first: the config's search space one option at a time, the winners combined,
   and, when the scheme still misses the budget while being faster than the best in-budget model, mixed
   precision from measured per-layer sensitivity; when EVERY whole-model scheme misses the budget, mixed
   precision is tried regardless of the (noisy) screens, until it fits, its space is exhausted or the
   time budget ends (the notes say which);
5. the finalists (the fastest in-budget by screen, plus thread variants) and the baseline measured together
   as BENCHMARKING.md says, with more interleaved rounds while a ratio is unresolved (search/timing.py); the
   winner must beat 1 + noise margin with its interval above 1, else the baseline is returned and the
   results say why.
Latency screens always time candidates interleaved with the baseline in one call (ratios are fair).
A candidate that fails with a known recovery is retried once with it (search/runner.py).

Who does what: the stages below ask the planner (search/planner.py: pure, from typed records) what to try
and keep, and the runner (search/runner.py: owns the records, compiles, measures) to evaluate and time;
search/finish.py measures the finalists and writes OUT/ (results.json through search/results.py).
Everything is cached under OUT/cache (see hasten.search.cache); the time budget (which starts after the
host profile is read) stops new work early enough to leave time for the final measurement.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hasten.backends import installed_backends
from hasten.configs import config_dict
from hasten.outcome.records import Record, Status
from hasten.search import planner
from hasten.search.budget import Budget
from hasten.search.cache import ResultCache, atomic_write_json, digest
from hasten.search.evaluate import Evaluator
from hasten.search.finish import finish, make_results
from hasten.search.mixed import Sensitivities
from hasten.search.results import SearchResult
from hasten.search.runner import Runner
from hasten.search.space import DEFAULT_PIPELINE, Candidate, Space
from hasten.search.timing import Timing
from hasten.search.training import student_stage

logger = logging.getLogger(__name__)


@dataclass
class Settings:
    """How the search runs. `time_budget_s` covers everything from start to the written report."""

    backends: tuple[str, ...] = field(default_factory=lambda: tuple(installed_backends()))  # first: baseline
    threads: tuple[int, ...] = ()  # () = physical cores
    time_budget_s: float = 600.0
    subset_size: int = 64
    calibration_items: int = 128
    screen_seconds: float = 1.0
    final_seconds: float = 5.0
    finalists: int = 3
    schemes: tuple[str, ...] | None = None
    passes: tuple[str, ...] | None = None
    mixed_precision: bool = True
    noise_margin: float = 0.02  # a winner must beat the baseline by more than this (its interval above 1)
    seed: int = 0
    feeds: int = 16
    allow_training: bool = False  # add pruned + distilled students (needs a torch source)
    train_steps: int | None = None  # distillation steps per student (None: what the time budget affords)

    def to_dict(self) -> dict:
        return config_dict(self)


@dataclass
class Event:
    """A progress report: what happened, how far the search is, the best so far, the time left."""

    kind: str  # "stage" | "candidate" | "benchmark" | "train" (one line per distillation) | "done"
    message: str
    tried: int
    best: Record | None
    time_left_s: float
    record: Record | None = None


class Tuner:
    """One search: the stages below ask the planner (search/planner.py) what to try and keep, and the runner
    (search/runner.py) to compile, measure and record. The caller's Settings are not changed: `settings` is
    a resolved copy (threads filled in)."""

    def __init__(self, model, calib, evaluation, metrics, budget: Budget, out, settings: Settings,
                 progress: Callable[[Event], None] | None = None, resume: bool = False, force: bool = False,
                 model_name: str = "", source=None, timer=None):
        """source: the torch source (a spec such as zoo:digits, or a TorchSource) students are trained from
        when `settings.allow_training`. timer: None (time on this host with hasten.measure.latency.benchmark)
        or a function of this Tuner returning a timing source with benchmark's signature; the sessions it
        gets are named by candidate key (`tuner.records[key]`). Tests and simulators inject one."""
        from hasten.backends import physical_cores
        from hasten.search.training import make_students

        self.model, self.calib, self.metrics, self.budget = model, calib, metrics, budget
        self.settings = dataclasses.replace(settings, threads=tuple(settings.threads) or (physical_cores(),))
        settings = self.settings
        self.out = Path(out)
        self.progress = progress
        # the host profile (measured once per host, then cached) is not charged to the search's time budget
        target_dtypes, self.host = _target_dtypes(), host_isa()
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + settings.time_budget_s
        self.context = {"model": model_name or (str(model.source) if model.source else "model"),
                        "model_fingerprint": model.fingerprint(),
                        "calibration": _samples_fingerprint(calib), "evaluation": _samples_fingerprint(evaluation),
                        "metrics": [m.name for m in metrics], "budget": budget.to_dict(),
                        "int8_isa": self.host.get("int8_isa")}  # int8 numerics depend on it (saturation)
        self.cache = ResultCache(self.out, self.context)
        self.cache_state = self.cache.claim(resume=resume, force=force)
        self.evaluator = Evaluator(model, evaluation, metrics, budget, settings.subset_size,
                                   store=lambda name: self.cache.dir / f"{digest(self.cache.context_key, name)}.npy")
        n_calib = None if calib is None else min(len(calib), settings.calibration_items)
        self.space = Space(list(settings.backends), list(settings.threads), n_calib, settings.schemes,
                           settings.passes, settings.seed, target_dtypes)
        self.feeds = list(evaluation.take(min(len(evaluation), settings.feeds)).feeds(1))
        self.held_s = 0.0  # time held back for mixed precision while a missing scheme's options are tried
        self.notes: list[str] = []
        if calib is not None and self.context["calibration"] == self.context["evaluation"]:
            self.notes.append("the calibration and evaluation samples are the same data: accuracy figures are "
                              "optimistic (BENCHMARKING.md asks for disjoint sets)")
        self.sensitivity: dict | None = None
        self.students = make_students(settings, source, self.cache.dir, self.context, calib, self.emit)
        self.runner = Runner(model, calib, self.cache, self.evaluator, budget, self.space, self.feeds,
                             settings.screen_seconds, students=self.students, emit=self.emit,
                             changed=self.write_partial)
        self.runner.bench = timer(self) if timer is not None else None  # None: hasten.measure.latency.benchmark
        self.sensitivities = Sensitivities(model, self.runner.build, calib, self.evaluator.samples, metrics[0])

    # -- bookkeeping ---------------------------------------------------------------------------------
    @property
    def records(self):
        """Every Record so far, in the order tried (the runner's)."""
        return self.runner.records

    @property
    def baseline(self) -> Record | None:
        return self.runner.baseline

    def time_left(self) -> float:
        return self.deadline - time.perf_counter()

    def best(self) -> Record | None:
        return planner.best(self.records.values())

    def emit(self, kind: str, message: str, record: Record | None = None) -> None:
        runner = getattr(self, "runner", None)  # None while the tuner is being made
        if self.progress:
            records = list(runner.records.values()) if runner is not None else []
            tried = sum(1 for r in records if r.status not in (Status.NOT_TRIED, Status.PENDING))
            self.progress(Event(kind, message, tried, planner.best(records), self.time_left(), record))

    def reserve_s(self) -> float:
        """Time kept back for the final measurement (its planned rounds and the first look's extra rounds on
        a noisy host: a 1.05x winner needs them), the outputs and the report."""
        ms = (self.baseline.median_ms if self.baseline and self.baseline.median_ms else 20.0)
        n = self.settings.finalists * len(self.settings.threads) + 1
        final = Timing.final(self.settings.final_seconds)
        looks = final.checkpoints()
        extra = looks[1] / looks[0] if len(looks) > 1 else 1.0
        return final.estimate_s(n, ms) * extra + 2.0 * n + 10.0 + self.sensitivity_reserve_s() + self.held_s

    def sensitivity_reserve_s(self) -> float:
        """Time kept for the report's per-layer sensitivity while none has been measured: about five
        quantisations (one per node, sharing one statistics pass), from the quantised candidates' build times."""
        if self.sensitivity is not None or not self.settings.mixed_precision:
            return 0.0
        builds = sorted(r.build_s for r in self.records.values() if r.build_s > 0 and r.quantised)
        return 5.0 * builds[len(builds) // 2] if builds else 0.0

    def can_start(self, estimate: float | None = None) -> bool:
        est = estimate if estimate is not None else self.runner.estimate_s()
        return self.time_left() - self.reserve_s() > est

    def add(self, cand: Candidate, time_rejected: bool = False) -> Record:
        """Evaluate `cand` (the runner's job)."""
        return self.runner.add(cand, time_rejected)

    def screen(self, recs: list[Record], label: str) -> None:
        """Time `recs` against the baseline, leaving the reserve for the final measurement."""
        self.runner.screen(recs, label, deadline=self.deadline - self.reserve_s())

    def not_tried(self, cands: list[Candidate], reason: str = "the time budget ran out") -> None:
        self.runner.mark(cands, Status.NOT_TRIED, reason)

    def analyse(self, recipe, deadline: float, quiet: bool = False):
        """Per-layer sensitivity for `recipe` (search/mixed.py); the first one measured is the report's.
        A failure is noted unless `quiet`. Returns the Analysis, or None."""
        got, fresh = self.sensitivities.get(recipe, deadline=deadline)
        if got is not None and got.error:
            if fresh and not quiet:
                self.notes.append(got.error)
            return None
        if got is not None and self.sensitivity is None:
            self.sensitivity = got.data
        return got

    def no_sensitivity(self, reason: str) -> None:
        """Say in the report why no per-layer sensitivity was measured."""
        if self.sensitivity is None:
            self.sensitivity = {"reason": reason, "rows": []}

    # -- the search ----------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        interrupted = False
        if self.cache_state == "resume":
            self.emit("stage", f"resuming: results cached in {self.cache.dir} are reused")
        elif self.cache_state == "reset":
            self.emit("stage", f"--force: earlier results in {self.out} were deleted")
        try:
            self._stage_baselines()
            bases = self._stage_graph()
            students, notes = student_stage(self, bases)
            self.notes += notes
            schemes = self._stage_schemes(bases, students)
            self._stage_refine(schemes)
            return self._finish(interrupted)
        except KeyboardInterrupt:
            self.write_partial(interrupted=True)
            raise

    def _stage_baselines(self) -> None:
        self.emit("stage", "baselines: the fp32 model on each backend")
        backends = []
        for cand in self.space.baselines():
            if cand.origin != "baseline":
                continue
            required = self.baseline is None and cand.recipe.backend == self.settings.backends[0]
            rec = self.runner.add_reference(cand, required, self.context["model_fingerprint"])
            if rec.status != Status.BASELINE:
                continue
            backends.append(cand.recipe.backend)
            self.emit("candidate", f"baseline: {rec.label}", rec)
        self.space.backends = [b for b in self.space.backends if b in backends]
        for cand in self.space.baselines():
            if cand.origin != "baseline" and cand.recipe.backend in self.space.backends:
                self.add(cand)

    def _stage_graph(self) -> dict[str, Record]:
        self.emit("stage", "graph passes per backend")
        # each backend's default pipeline first (the schemes build on it), then one change at a time while
        # the stage is inside its share of the time left: graph variants must not starve the schemes
        every = [c for b in self.space.backends for c in self.space.graph_variants(b)]
        defaults = [c for c in every if c.note == DEFAULT_PIPELINE]
        stage_end = time.perf_counter() + planner.GRAPH_SHARE * max(0.0, self.time_left() - self.reserve_s())
        for cand in defaults + [c for c in every if c.note != DEFAULT_PIPELINE]:
            if not self.can_start() or (cand.note != DEFAULT_PIPELINE and time.perf_counter() > stage_end):
                self.not_tried([cand], "the graph stage's share of the time budget ran out"
                               if self.can_start() else "the time budget ran out")
                continue
            self.add(cand)
        recs = [r for r in self.records.values() if r.within and r is not self.baseline]
        self.screen(recs, "baselines and graph variants")
        return planner.graph_bases(self.records.values(), self.space.backends, self.settings.threads[0])

    def _stage_schemes(self, bases: dict[str, Record], students: list[Record] = ()) -> list[Record]:
        self.emit("stage", "quantisation schemes on each backend's best graph" +
                  (" and on the in-budget students" if students else ""))
        recs = []
        # the fastest base first: under a tight time budget its schemes matter most
        for base in planner.by_speed([*bases.values(), *students]):
            for cand in self.space.scheme_candidates(base.recipe):
                if not self.can_start():
                    self.not_tried([cand])
                    continue
                recs.append(self.add(cand, time_rejected=True))
        self.screen([r for r in recs if r.status.judged], "quantised candidates")
        grouped: dict[str, list[str]] = {}
        for what, why in self.space.skipped.items():
            grouped.setdefault(why, []).append(what.split(" on ")[0])
        for why, names in grouped.items():
            self.notes.append(f"not tried: {', '.join(sorted(set(names)))}: {why}")
        return recs

    def _stage_refine(self, parents: list[Record]) -> None:
        self.emit("stage", "refining the fastest schemes: options, combinations, mixed precision")
        live = planner.refinable(parents)
        families: list[tuple[Record, list[Record]]] = []  # (whole-model scheme, its refined family)
        mixed: set[str] = set()  # the schemes mixed precision was tried on
        margin = self.settings.noise_margin
        for parent in live:
            if not self.can_start():
                break
            if not planner.worth_refining(parent, self.best()):
                continue
            root = parent  # the whole-model scheme: its screen says what its family could gain
            # a scheme that misses the budget, with no integer model as fast inside it: its options may use
            # only part of the time left, the rest is kept for mixed precision (which targets the miss directly)
            if not parent.within and self.settings.mixed_precision and planner.sensitive(parent) \
                    and planner.mixing_may_gain(self.records.values(), parent):
                self.held_s = planner.MIXED_SHARE * max(0.0, self.time_left() - self.reserve_s())
            family = self._refine_options(parent)
            far: set[tuple[str, str]] = set()
            for _ in range(planner.MAX_ROUNDS - 1):  # coordinate descent: refine the best variant again
                lead = planner.lead(family)
                if lead is None or lead is parent or not self.can_start():
                    break
                # values the subset screen rejected in an earlier round are far off: not tried again
                far |= planner.far_off(family, parent)
                parent = lead
                family += [r for r in self._refine_options(lead, skip=far) if r not in family]
            self.held_s = 0.0
            families.append((root, family))
            if self.settings.mixed_precision and planner.mixing_needed(root, family, self.best(), margin):
                mixed.add(root.key)
                self._mixed(family)
        if not self.settings.mixed_precision:
            return
        # every whole-model scheme misses the budget: mixed precision is tried before the search ends (even
        # where a screen says the scheme is slower than the best fp32 model: screens are noisy)
        refined = {root.key for root, _ in families}
        families += [(p, [p]) for p in live if p.key not in refined]
        for root, family in planner.mixing_order(families):
            if root.key in mixed or not planner.sensitive(root) or not self.can_start():
                continue
            if not planner.mixing_may_gain(self.records.values(), root):
                continue
            mixed.add(root.key)
            self._mixed(family)
        if not mixed and not any(planner.sensitive(root) for root, _ in families) and \
                not any(r.within and planner.integer_quantised(r) for r in self.records.values()):
            self.notes.append("mixed precision was not tried: every whole-model scheme misses the budget, but "
                              "none that ran is int8-static (per-layer sensitivity exists for int8-static)")

    def _mixed(self, family: list[Record]) -> None:
        seed = planner.mixing_seed(family)
        cls = self.space.scheme_classes().get(seed.scheme) if seed is not None else None
        mp = planner.MixedPrecision(family, {f.name for f in dataclasses.fields(cls)} if cls is not None else set())
        self.notes += mp.notes
        while self.can_start(mp.estimate_s() + self.runner.estimate_s()):
            if mp.needs_ranking:
                self._rank(mp)
            cand = mp.next()
            if cand is None:
                break
            rec = self.add(cand)
            mp.feedback(rec)
            if rec.within:
                self.screen([rec], "mixed-precision candidate")
        if not mp.done and mp.ranked:
            mp.next()  # cheap once ranked (it builds nothing): was the space exhausted when time ran out?
        if not mp.done:
            self.notes.append(f"mixed precision on {mp.seed.label if mp.seed else '?'} stopped early: the time "
                              "budget ran out")
        elif mp.outcome:
            self.notes.append(mp.outcome)

    def _rank(self, mp) -> None:
        """Measure the seed's per-layer sensitivity for `mp`, using the time up to what the final
        measurement needs."""
        got = self.analyse(mp.seed.recipe, self.deadline - (self.reserve_s() - self.sensitivity_reserve_s()))
        mp.rank(got.ranked if got else None, (got.data or {}).get("rows", []) if got else [])

    def _refine_options(self, parent: Record, skip: set | None = None) -> list[Record]:
        """One option at a time (except the (option, value) pairs in `skip`), then the winners combined;
        returns the parent and every variant. A parent inside the budget gets only the options that can
        change its speed (its scheme's `speed_options`): calibration or rounding cannot make it faster."""
        pc = Candidate(parent.recipe, parent.origin, parent.parent, parent.note)
        speed_only = bool(parent.within)
        children: list[Record] = []
        for cand in self.space.option_variants(pc, speed_only):
            if skip and cand.change in skip:
                continue
            if not self.can_start():
                self.not_tried([cand])
                continue
            children.append(self.add(cand))
        self.screen([r for r in children if r.within], "option variants")
        variants = [((where, option, value),
                     self.records.get(self.space.with_option(parent.recipe, where, option, value).key()))
                    for where, option, value in self.space.option_values(parent.recipe, speed_only)]
        combo = self.space.combined(pc, planner.option_winners(parent, variants, self.settings.noise_margin))
        family = [parent] + children
        if combo is not None and self.can_start():
            rec = self.add(combo)
            self.screen([rec] if rec.within else [], "combined options")
            family.append(rec)
        return family

    # -- the end -------------------------------------------------------------------------------------
    def _finish(self, interrupted: bool) -> SearchResult:
        return finish(self, interrupted)

    def write_partial(self, interrupted: bool = False) -> None:
        atomic_write_json(self.out / "results.json",
                          make_results(self, partial=True, interrupted=interrupted).to_json())


def _target_dtypes() -> tuple[str, ...] | None:
    """The arithmetic the host target has (measured once and cached), or None when unknown."""
    try:
        from hasten.measure.targets import host_target

        return tuple(host_target().dtypes)
    except Exception:  # the profile is a help for pruning, not a requirement
        return None


def host_isa() -> dict:
    """The host's int8 path and instruction-set features (what a result is tuned for)."""
    try:
        from hasten.measure.isa import cpu_features, int8_dot_saturates, int8_isa

        features = cpu_features()
        return {"int8_isa": int8_isa(features), "int8_saturates": int8_dot_saturates(features),
                "features": sorted(features)}
    except Exception:  # informative only
        return {"int8_isa": None, "int8_saturates": None, "features": []}


def _samples_fingerprint(samples) -> str | None:
    import hashlib

    import numpy as np

    if samples is None:
        return None
    h = hashlib.sha256()
    for k in sorted(samples.arrays):
        a = np.ascontiguousarray(samples.arrays[k])
        h.update(f"{k}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    if samples.labels is not None:
        h.update(np.ascontiguousarray(samples.labels).tobytes())
    return h.hexdigest()[:16]
