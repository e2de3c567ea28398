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
Everything is cached under OUT/cache (see hasten.search.cache); the time budget (which starts after the
host profile is read) stops new work early enough to leave time for the final measurement.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hasten.errors import HastenError, SearchError
from hasten.measure.latency import compile_measured
from hasten.search.budget import Budget
from hasten.search.cache import ResultCache, atomic_write_json, digest
from hasten.search.evaluate import Accuracy, CandidateFailure, Evaluator
from hasten.search.records import Record, Screen, Status, model_bytes
from hasten.search.runner import CandidateRunner, _dup_key, _one_line
from hasten.search.space import DEFAULT_PIPELINE, Candidate, Space, reference_key
from hasten.search.timing import Timing
from hasten.search.training import student_stage

logger = logging.getLogger(__name__)


@dataclass
class Settings:
    """How the search runs. `time_budget_s` covers everything from start to the written report."""

    backends: tuple[str, ...] = ("onnxruntime", "openvino")
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
        return dataclasses.asdict(self)


@dataclass
class Event:
    """A progress report: what happened, how far the search is, the best so far, the time left."""

    kind: str  # "stage" | "candidate" | "benchmark" | "train" (one line per distillation) | "done"
    message: str
    tried: int
    best: Record | None
    time_left_s: float
    record: Record | None = None


@dataclass
class SearchResult:
    records: list[Record]
    baseline: Record
    chosen: Record
    budget: Budget
    metrics: list
    settings: Settings
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    interrupted: bool = False
    sensitivity: dict | None = None
    context: dict = field(default_factory=dict)

    @property
    def beat_baseline(self) -> bool:
        return self.chosen is not self.baseline


class Tuner(CandidateRunner):
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
        self.settings = settings
        if not settings.threads:
            settings.threads = (physical_cores(),)
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
        self.records: OrderedDict[str, Record] = OrderedDict()
        self.sessions: dict[str, object] = {}  # live sessions awaiting a latency screen
        self.time_rejected = False  # time out-of-budget candidates too (the scheme stage)
        self.held_s = 0.0  # time held back for mixed precision while a missing scheme's options are tried
        self.by_fingerprint: dict[tuple, str] = {}
        self.models: OrderedDict[str, object] = OrderedDict()  # steps key -> Model (a small LRU)
        self.notes: list[str] = []
        self.baseline: Record | None = None
        self.base_session = None
        self.cost = {"candidate": None}
        self.sensitivity: dict | None = None
        self.noise_log: list[dict] = []  # the baseline's per-round spread in each latency screen
        self.students = make_students(self, source)
        self.bench = timer(self) if timer is not None else None  # None: hasten.measure.latency.benchmark

    # -- bookkeeping ---------------------------------------------------------------------------------
    def time_left(self) -> float:
        return self.deadline - time.perf_counter()

    def best(self) -> Record | None:
        timed = [r for r in self.records.values() if r.within and r.speedup]
        return max(timed, key=lambda r: r.speedup) if timed else None

    def emit(self, kind: str, message: str, record: Record | None = None) -> None:
        if self.progress:
            tried = sum(1 for r in self.records.values() if r.status not in (Status.NOT_TRIED, Status.PENDING))
            self.progress(Event(kind, message, tried, self.best(), self.time_left(), record))

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
        builds = sorted(r.build_s for r in self.records.values()
                        if r.build_s > 0 and any(s.kind == "quantize" for s in r.recipe.steps))
        return 5.0 * builds[len(builds) // 2] if builds else 0.0

    def can_start(self, estimate: float | None = None) -> bool:
        est = estimate if estimate is not None else (self.cost["candidate"] or 5.0)
        return self.time_left() - self.reserve_s() > est

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
            students = student_stage(self, bases)
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
            rec = Record(cand.key, cand.recipe, "baseline", note=cand.note)
            self.records[cand.key] = rec
            ref = reference_key(cand.recipe)
            try:
                session, rec.compile_s, rec.rss_added_mb = compile_measured(cand.recipe.backend_instance(),
                                                                           self.model)
                if not self.evaluator.has_reference(ref):
                    self.evaluator.set_reference(ref, session)
            except CandidateFailure as exc:
                if exc.stage == "metric":  # nothing can be judged without scoring the reference
                    raise SearchError(f"the metric cannot score the fp32 model itself on "
                                      f"{cand.recipe.backend}: {exc.message}; fix the metric or the "
                                      f"evaluation data") from exc
                if self.baseline is None and cand.recipe.backend == self.settings.backends[0]:
                    raise SearchError(f"the input model cannot run on {cand.recipe.backend}: "
                                      f"{exc.message}") from exc
                rec.status, rec.stage, rec.reason = Status.FAILED, exc.stage, exc.message
                continue
            except HastenError as exc:
                if self.baseline is None and cand.recipe.backend == self.settings.backends[0]:
                    raise SearchError(f"the input model cannot run on {cand.recipe.backend}: "
                                      f"{_one_line(exc)}") from exc
                rec.status, rec.stage, rec.reason = Status.FAILED, "compile", _one_line(exc)
                continue
            scores = self.evaluator.baseline_scores(ref)
            rec.full = Accuracy(scores, {m: 0.0 for m in scores}, len(self.evaluator.samples), True, 0.0, 0.0)
            rec.status, rec.fingerprint = Status.BASELINE, self.context["model_fingerprint"]
            rec.size_bytes = model_bytes(self.model)
            if self.baseline is None:
                self.baseline, self.base_session = rec, session
                self.sessions[rec.key] = session
            else:
                self.sessions[rec.key] = session
            self.by_fingerprint[_dup_key(rec)] = rec.key
            backends.append(cand.recipe.backend)
            self.emit("candidate", f"baseline: {rec.label}", rec)
        self.space.backends = [b for b in self.space.backends if b in backends]
        self.baseline.screen = Screen(ratio=1.0)  # the real figures come with the first screen
        for cand in self.space.baselines():
            if cand.origin != "baseline" and cand.recipe.backend in self.space.backends:
                self.add(cand)

    def _stage_graph(self) -> dict[str, Record]:
        self.emit("stage", "graph passes per backend")
        # each backend's default pipeline first (the schemes build on it), then one change at a time while
        # the stage is inside its share of the time left: graph variants must not starve the schemes
        every = [c for b in self.space.backends for c in self.space.graph_variants(b)]
        defaults = [c for c in every if c.note == DEFAULT_PIPELINE]
        stage_end = time.perf_counter() + GRAPH_SHARE * max(0.0, self.time_left() - self.reserve_s())
        for cand in defaults + [c for c in every if c.note != DEFAULT_PIPELINE]:
            if not self.can_start() or (cand.note != DEFAULT_PIPELINE and time.perf_counter() > stage_end):
                self._not_tried([cand], "the graph stage's share of the time budget ran out"
                                if self.can_start() else "the time budget ran out")
                continue
            self.add(cand)
        recs = [r for r in self.records.values() if r.within and r is not self.baseline]
        self.screen(recs, "baselines and graph variants")
        bases = {}
        for backend in self.space.backends:
            pool = [r for r in self.records.values() if r.recipe.backend == backend and r.within
                    and not any(s.kind == "quantize" for s in r.recipe.steps)
                    and r.recipe.backend_options.get("threads") == self.settings.threads[0]
                    and set(r.recipe.backend_options) <= {"threads"}]
            if pool:
                bases[backend] = max(pool, key=lambda r: r.speedup or 0.0)
        return bases

    def _stage_schemes(self, bases: dict[str, Record], students: list[Record] = ()) -> list[Record]:
        self.emit("stage", "quantisation schemes on each backend's best graph" +
                  (" and on the in-budget students" if students else ""))
        recs = []
        # the fastest base first: under a tight time budget its schemes matter most
        for base in sorted([*bases.values(), *students], key=lambda r: -(r.speedup or 0.0)):
            for cand in self.space.scheme_candidates(base.recipe):
                if not self.can_start():
                    self._not_tried([cand])
                    continue
                self.time_rejected = True
                try:
                    recs.append(self.add(cand))
                finally:
                    self.time_rejected = False
        self.screen([r for r in recs if r.status in (Status.IN_BUDGET, Status.REJECTED)], "quantised candidates")
        grouped: dict[str, list[str]] = {}
        for what, why in self.space.skipped.items():
            grouped.setdefault(why, []).append(what.split(" on ")[0])
        for why, names in grouped.items():
            self.notes.append(f"not tried: {', '.join(sorted(set(names)))}: {why}")
        return recs

    def _stage_refine(self, parents: list[Record]) -> None:
        self.emit("stage", "refining the fastest schemes: options, combinations, mixed precision")
        live = [p for p in parents if p.status in (Status.IN_BUDGET, Status.REJECTED) and p.speedup]
        live.sort(key=lambda r: -(r.speedup or 0.0))
        families: list[tuple[Record, list[Record]]] = []  # (whole-model scheme, its refined family)
        mixed: set[str] = set()  # the schemes mixed precision was tried on
        for parent in live:
            if not self.can_start():
                break
            best = self.best()
            # far slower than what is already in budget: options rarely make up that much
            if best is not None and best is not parent and \
                    (parent.speedup or 0) <= (best.speedup or 0) * (0.6 if parent.within else 0.8):
                continue
            root = parent  # the whole-model scheme: its screen says what its family could gain
            # a scheme that misses the budget, with no integer model as fast inside it: its options may use
            # only part of the time left, the rest is kept for mixed precision (which targets the miss directly)
            if not parent.within and self.settings.mixed_precision and _sensitive(parent) \
                    and _mixing_may_gain(self.records.values(), parent):
                self.held_s = MIXED_SHARE * max(0.0, self.time_left() - self.reserve_s())
            family = self._refine_options(parent)
            far: set[tuple[str, str]] = set()
            for _ in range(MAX_ROUNDS - 1):  # coordinate descent: refine the best variant again
                lead = _lead(family)
                if lead is None or lead is parent or not self.can_start():
                    break
                # values the subset screen rejected in an earlier round are far off: not tried again
                far |= {_changed(r, parent) for r in family if r.stage == "subset" and r.parent == parent.key}
                parent = lead
                family += [r for r in self._refine_options(lead, skip=far) if r not in family]
            self.held_s = 0.0
            families.append((root, family))
            if not any(r.within for r in family) and self.settings.mixed_precision:
                best = self.best()
                if best is None or (root.speedup or 0) > (best.speedup or 0) * (1 + self.settings.noise_margin):
                    mixed.add(root.key)
                    self._mixed(family)
        if not self.settings.mixed_precision:
            return
        # every whole-model scheme misses the budget: mixed precision is tried before the search ends (even
        # where a screen says the scheme is slower than the best fp32 model: screens are noisy)
        refined = {root.key for root, _ in families}
        families += [(p, [p]) for p in live if p.key not in refined]
        families.sort(key=lambda rf: (not _sensitive(rf[0]), -(rf[0].speedup or 0.0)))
        for root, family in families:
            if root.key in mixed or not _sensitive(root) or not self.can_start():
                continue
            if not _mixing_may_gain(self.records.values(), root):
                continue
            mixed.add(root.key)
            self._mixed(family)
        if not mixed and not any(_sensitive(root) for root, _ in families) and \
                not any(r.within and _integer_quantised(r) for r in self.records.values()):
            self.notes.append("mixed precision was not tried: every whole-model scheme misses the budget, but "
                              "none that ran is int8-static (per-layer sensitivity exists for int8-static)")

    def _mixed(self, family: list[Record]) -> None:
        from hasten.search.mixed import MixedPrecision

        mp = MixedPrecision(self, family)
        while self.can_start(mp.estimate_s() + (self.cost["candidate"] or 5.0)):
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

    def _refine_options(self, parent: Record, skip: set | None = None) -> list[Record]:
        """One option at a time (except the (option, value) pairs in `skip`), then the winners combined;
        returns the parent and every variant. A parent inside the budget gets only the options that can
        change its speed (its scheme's `speed_options`): calibration or rounding cannot make it faster."""
        pc = Candidate(parent.recipe, parent.origin, parent.parent, parent.note)
        speed_only = bool(parent.within)
        children: list[tuple[tuple, Record]] = []
        for cand in self.space.option_variants(pc, speed_only):
            if skip and cand.note in {f"{o}={v}" for o, v in skip if o}:
                continue
            if not self.can_start():
                self._not_tried([cand])
                continue
            rec = self.add(cand)
            children.append(((cand.note,), rec))
        self.screen([r for _, r in children if r.within], "option variants")
        winners = []
        for where, option, value in self.space.option_values(parent.recipe, speed_only):
            rec = self.records.get(self.space.with_option(parent.recipe, where, option, value).key())
            if rec is not None and _better(rec, parent, self.settings.noise_margin):
                winners.append((where, option, value, rec))
        by_option: dict[str, tuple] = {}
        for w in winners:  # per option, the best value
            if w[1] not in by_option or _better(w[3], by_option[w[1]][3], 0.0):
                by_option[w[1]] = w
        combo = self.space.combined(pc, [(w, o, v) for w, o, v, _ in by_option.values()])
        family = [parent] + [r for _, r in children]
        if combo is not None and self.can_start():
            rec = self.add(combo)
            self.screen([rec] if rec.within else [], "combined options")
            family.append(rec)
        return family

    def _not_tried(self, cands: list[Candidate], reason: str = "the time budget ran out") -> None:
        for cand in cands:
            if cand.key not in self.records:
                self.records[cand.key] = Record(cand.key, cand.recipe, cand.origin, cand.parent, cand.note,
                                                status=Status.NOT_TRIED, reason=reason)

    # -- the end -------------------------------------------------------------------------------------
    def _finish(self, interrupted: bool) -> SearchResult:
        from hasten.search.finish import finish

        return finish(self, interrupted)

    def write_partial(self, interrupted: bool = False) -> None:
        from hasten.search.finish import results_dict

        atomic_write_json(self.out / "results.json", results_dict(self, partial=True, interrupted=interrupted))


#: float schemes: an in-budget one does not end the int8 search (mixed precision may still beat it)
FLOAT_SCHEMES = ("fp16", "bf16")


def _integer_quantised(rec: Record) -> bool:
    return any(s.kind == "quantize" and s.name not in FLOAT_SCHEMES for s in rec.recipe.steps)


def _mixing_may_gain(records, root: Record) -> bool:
    """Can mixed precision on `root` (a scheme that misses the budget) still gain? Not when an integer-
    quantised candidate (int8, int4, binary; fp16/bf16 do not count) is already inside the budget and at
    least as fast as `root`'s screen (a slow int4-weight in budget does not end it)."""
    return not any(r.within and _integer_quantised(r) and (r.speedup or 0.0) >= (root.speedup or 0.0)
                   for r in records)


def _sensitive(rec: Record) -> bool:
    """Does per-layer sensitivity (and so mixed precision) exist for `rec`'s scheme?"""
    from hasten.search.finish import SENSITIVITY_SCHEME

    names = [s.name for s in rec.recipe.steps if s.kind == "quantize"]
    return bool(names) and names[-1] == SENSITIVITY_SCHEME


#: rounds of one-option-at-a-time refinement per scheme (each round starts from the previous round's best)
MAX_ROUNDS = 3
#: share of the time left after the baselines that graph variants (beyond each default pipeline) may use
GRAPH_SHARE = 0.3
#: share of the time left that a missing scheme's option refinement leaves to mixed precision
MIXED_SHARE = 0.5


def _changed(child: Record, parent: Record) -> tuple[str, str]:
    """The (option, value) a one-option variant changed, from its note "option=value"."""
    option, _, value = child.note.partition("=")
    return (option, value) if child.origin == "option" and value else ("", "")


def _lead(family: list[Record]) -> Record | None:
    """The best of a family: the fastest in budget, else the one closest to the budget."""
    timed = [r for r in family if r.within and r.speedup]
    if timed:
        return max(timed, key=lambda r: r.speedup)
    judged = [r for r in family if r.status == Status.REJECTED and r.accuracy is not None]
    return min(judged, key=lambda r: r.accuracy.excess) if judged else None


def _better(a: Record, b: Record, margin: float) -> bool:
    """Is `a` a better candidate than `b`: in budget and faster, or (both out) closer to the budget."""
    if a.status in (Status.FAILED, Status.DUPLICATE, Status.NOT_TRIED):
        return False
    if a.within and not b.within:
        return True
    if a.within and b.within:
        return (a.speedup or 0) > (b.speedup or 0) * (1 + margin)
    if not a.within and not b.within and a.accuracy and b.accuracy:
        return a.accuracy.excess < b.accuracy.excess * 0.9
    return False


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
