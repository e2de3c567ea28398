"""The runner: compiles, measures and records. Build (re-using built prefixes and the cache), check the
interface, de-duplicate by fingerprint, compile, accuracy (subset, then full), and latency screens against
the baseline.

`Runner` owns the records, the live sessions, the built models and the cost estimate; what it needs is given
to its constructor. The decisions (what to try next) are the planner's (search/planner.py), the stages the
tuner's (search/tuner.py).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable

from hasten.errors import HastenError, SearchError
from hasten.measure.latency import compile_measured
from hasten.outcome.records import Accuracy, Record, Screen, Status, model_bytes, summarize_report
from hasten.recipe import Recipe, Step, run_step, run_steps
from hasten.search.cache import atomic_write_json, digest, read_json
from hasten.search.evaluate import SCREEN_SLACK, CandidateFailure
from hasten.search.planner import rejudge
from hasten.search.space import Candidate, accuracy_recipe, reference_key
from hasten.search.timing import BASELINE, Timing, time_sessions

logger = logging.getLogger(__name__)


class Runner:
    """Evaluates candidates and times them; keeps every Record (`records`, in the order tried).

    model / calib: the input model and calibration samples; cache: the ResultCache; evaluator: the Evaluator
    (references set per backend); budget: the accuracy Budget; space: the Space (recoveries, pipelines);
    feeds: inputs the latency screens run; screen_seconds: a screen's length per candidate; bench: a timing
    source with hasten.measure.latency.benchmark's signature (None: that function); students: the
    --allow-training Students (or None); emit(kind, message, record): progress; changed(): called after
    each evaluation and screen (the tuner writes its partial results)."""

    def __init__(self, model, calib, cache, evaluator, budget, space, feeds, screen_seconds: float = 1.0,
                 bench=None, students=None, emit: Callable | None = None, changed: Callable | None = None):
        self.model, self.calib, self.cache, self.evaluator, self.budget = model, calib, cache, evaluator, budget
        self.space, self.feeds, self.screen_seconds, self.bench = space, feeds, screen_seconds, bench
        self.students = students
        self._emit, self._changed = emit, changed
        self.records: OrderedDict[str, Record] = OrderedDict()
        self.sessions: dict[str, object] = {}  # live sessions awaiting a latency screen
        self.by_fingerprint: dict[tuple, str] = {}
        self.models: OrderedDict[str, object] = OrderedDict()  # steps key -> Model (a small LRU)
        self.baseline: Record | None = None
        self.base_session = None
        self.candidate_s: float | None = None  # smoothed seconds one candidate takes (None: none yet)
        self.noise_log: list[dict] = []  # the baseline's per-round spread in each latency screen

    def emit(self, kind: str, message: str, record: Record | None = None) -> None:
        if self._emit:
            self._emit(kind, message, record)

    def changed(self) -> None:
        if self._changed:
            self._changed()

    def estimate_s(self) -> float:
        """Seconds the next candidate is expected to take (5 s before any has run)."""
        return self.candidate_s or 5.0

    # -- records the runner did not evaluate ---------------------------------------------------------
    def keep(self, rec: Record) -> Record:
        """Add a record made elsewhere (a baseline, a thread variant, an untrained student); an existing
        record with its key is kept instead."""
        return self.records.setdefault(rec.key, rec)

    def mark(self, cands, status: Status, reason: str = "the time budget ran out", stage: str = "") -> None:
        """Record candidates that are not evaluated (not tried, not trained), with why."""
        for cand in cands:
            if cand.key not in self.records:
                self.records[cand.key] = Record(cand.key, cand.recipe, cand.origin, cand.parent, cand.note,
                                                status=status, stage=stage, reason=reason, mixed=cand.mixed,
                                                change=cand.change)

    def set_baseline(self, rec: Record, session) -> None:
        """The reference every ratio is against (the first backend's fp32 model) and its live session."""
        self.baseline, self.base_session = rec, session
        rec.screen = Screen(ratio=1.0)  # the real figures come with the first screen

    def add_reference(self, cand: Candidate, required: bool, fingerprint: str) -> Record:
        """Compile the input model for `cand` (a baseline), set its backend's fp32 reference and keep it
        with its session (timed by the first screens); the first one is the baseline every ratio is
        against. A failure is recorded, or raises SearchError when `required` (the first backend) or when
        the metric cannot score the reference itself."""
        rec = self.keep(Record(cand.key, cand.recipe, "baseline", note=cand.note))
        ref = reference_key(cand.recipe)
        try:
            session, rec.compile_s, rec.rss_added_mb = compile_measured(cand.recipe.backend_instance(), self.model)
            if not self.evaluator.has_reference(ref):
                self.evaluator.set_reference(ref, session)
        except CandidateFailure as exc:
            if exc.stage == "metric":  # nothing can be judged without scoring the reference
                raise SearchError(f"the metric cannot score the fp32 model itself on {cand.recipe.backend}: "
                                  f"{exc.message}; fix the metric or the evaluation data") from exc
            if required:
                raise SearchError(f"the input model cannot run on {cand.recipe.backend}: {exc.message}") from exc
            rec.status, rec.stage, rec.reason = Status.FAILED, exc.stage, exc.message
            return rec
        except HastenError as exc:
            if required:
                raise SearchError(f"the input model cannot run on {cand.recipe.backend}: "
                                  f"{_one_line(exc)}") from exc
            rec.status, rec.stage, rec.reason = Status.FAILED, "compile", _one_line(exc)
            return rec
        scores = self.evaluator.baseline_scores(ref)
        rec.full = Accuracy(scores, {m: 0.0 for m in scores}, len(self.evaluator.samples), True, 0.0, 0.0)
        rec.status, rec.fingerprint = Status.BASELINE, fingerprint
        rec.size_bytes = model_bytes(self.model)
        if self.baseline is None:
            self.set_baseline(rec, session)
        self.sessions[rec.key] = session
        self.by_fingerprint[_dup_key(rec)] = rec.key
        return rec

    def set_final(self, results: dict, finalists) -> None:
        """The final measurement's figures ({key or BASELINE: latency dict}) on the baseline and finalists."""
        self.baseline.latency = results[BASELINE]
        for r in finalists:
            if r.key in results:
                r.latency = results[r.key]

    def choose(self, key: str, size_bytes: int | None = None) -> None:
        """Mark the chosen record (with the size of the file written for it)."""
        rec = self.records[key]
        rec.chosen = True
        if size_bytes is not None:
            rec.size_bytes = size_bytes

    def update(self, key: str, status: Status, stage: str, reason: str) -> None:
        """Set a record's outcome (the final explanation of why each kept one was or was not chosen)."""
        rec = self.records[key]
        rec.status, rec.stage, rec.reason = status, stage, reason

    # -- building ------------------------------------------------------------------------------------
    def build(self, recipe: Recipe):
        """The model `recipe`'s steps make (re-using the longest prefix built before); (model, report)."""
        steps = recipe.steps
        start, model, report = 0, self.model, {}
        for i in range(len(steps), 0, -1):
            key = digest([s.to_dict() for s in steps[:i]], recipe.calibration_items, recipe.seed)
            if key in self.models:
                start, model = i, self.models[key]
                self.models.move_to_end(key)
                break
        if start < len(steps):
            cached = self.cache.load_model(recipe.model_key())
            if cached is not None:
                return cached, {}
        for i, built, rep in run_steps(recipe, model, self.calib, start, self._run_step):
            model = built
            if steps[i].kind == "quantize":
                report = rep
            key = digest([s.to_dict() for s in steps[:i + 1]], recipe.calibration_items, recipe.seed)
            self.models[key] = model
            while len(self.models) > 4:
                self.models.popitem(last=False)
        return model, report

    def _run_step(self, step, model, calib):
        if step.kind == "compress" and self.students is not None:
            return self.students.model(step), {}  # trained once, cached (search/training.py)
        return run_step(step, model, calib)

    # -- one candidate -------------------------------------------------------------------------------
    def add(self, cand: Candidate, time_rejected: bool = False) -> Record:
        """Evaluate `cand` (or take its result from the cache); keeps a live session for in-budget ones (and
        for out-of-budget ones when `time_rejected`: the scheme stage times those too). A failure with a
        known recovery is retried once (`_recovery`): then the retry's record is returned."""
        if cand.key in self.records:
            return self.records[cand.key]
        rec = self._add_one(cand, time_rejected)
        retry = self._recovery(cand, rec)
        if retry is not None:
            rec.reason += f"; retried once with {retry.recovery}"
            return self.add(retry, time_rejected)
        return rec

    def _add_one(self, cand: Candidate, time_rejected: bool) -> Record:
        rec = Record(cand.key, cand.recipe, cand.origin, cand.parent, cand.note, recovery=cand.recovery,
                     mixed=cand.mixed, change=cand.change)
        self.records[cand.key] = rec
        acc_key = self.cache.key(accuracy_recipe(cand.recipe).key())
        state = self.cache.get(acc_key)
        if state and state.get("status") == Status.RUNNING:
            rec.status, rec.stage = Status.FAILED, "crash"
            rec.reason = ("the process died while this candidate was being evaluated (an earlier run); "
                          "it is not retried: delete OUT/cache to retry it")
            self.cache.put(acc_key, rec.accuracy_state())
            self.emit("candidate", f"failed (earlier crash): {rec.label}", rec)
            return rec
        if state and state.get("status") in (Status.IN_BUDGET, Status.REJECTED, Status.FAILED, Status.DUPLICATE):
            rec.restore(state)
            verdict = rejudge(rec, self.budget)  # cached scores, judged against the current budget
            if verdict is not None:
                rec.status, rec.stage, rec.reason, rec.full = verdict.status, verdict.stage, verdict.reason, verdict.full
                if rec.fingerprint:
                    self.by_fingerprint.setdefault(_dup_key(rec), rec.key)
                self.emit("candidate", f"{rec.status} (cached): {rec.label}", rec)
                return rec
            rec.subset = rec.full = None  # judged on the subset under a stricter budget: evaluate again
            rec.status, rec.cached = Status.PENDING, False
        self.cache.put(acc_key, {"status": Status.RUNNING, "recipe": cand.recipe.to_dict()})
        t0 = time.perf_counter()
        try:
            self._evaluate(rec, time_rejected)
        except BaseException:  # Ctrl-C: forget the half-done candidate, re-raise
            (self.cache.dir / f"{acc_key}.json").unlink(missing_ok=True)
            raise
        elapsed = time.perf_counter() - t0
        prev = self.candidate_s
        self.candidate_s = elapsed if prev is None else 0.7 * prev + 0.3 * elapsed
        self.cache.put(acc_key, rec.accuracy_state())
        self.changed()
        self.emit("candidate", f"{rec.status}: {rec.label}", rec)
        return rec

    def _recovery(self, cand: Candidate, rec: Record) -> Candidate | None:
        """The candidate retried once with a known recovery for its failure, or None: the node the error
        names kept out of the scheme, else per-tensor instead of per-channel where the error is about axes,
        scales or opsets, else the scheme on the backend's default graph pipeline. Only for build / compile /
        run failures of a quantised candidate, never twice."""
        if rec.status != Status.FAILED or rec.stage not in ("build", "compile", "run", "nan") or cand.recovery:
            return None
        steps = list(cand.recipe.steps)
        qs = [i for i, s in enumerate(steps) if s.kind == "quantize"]
        if not qs:
            return None
        i = qs[-1]
        cls = self.space.scheme_classes().get(steps[i].name)
        fields = {f.name: f for f in dataclasses.fields(cls)} if cls is not None else {}
        config = dict(steps[i].config)
        fix = ""
        named = [n for n in _node_names(self.model) if _names_node(rec.reason, n)]
        if named and "nodes_to_exclude" in fields and named[0] not in (config.get("nodes_to_exclude") or []):
            config["nodes_to_exclude"] = sorted({*(config.get("nodes_to_exclude") or []), named[0]})
            fix = f"node {named[0]} kept out of {steps[i].name}"
        elif "per_channel" in fields and config.get("per_channel", fields["per_channel"].default) is True and \
                re.search(r"axis|per.?channel|opset|scale|zero.?point|QuantizeLinear|DequantizeLinear",
                          rec.reason, re.I):
            config["per_channel"] = False
            fix = "per_channel=False (per-tensor)"
        default = self.space.pipeline(cand.recipe.backend)
        if not fix and steps[:i] != default and all(s.kind == "pass" for s in steps[:i]):
            # a scheme that fails on a graph variant (e.g. OpenVINO refusing int8 Gemm after
            # matmul_add_to_gemm): the same scheme on the backend's default pipeline
            steps = [*default, *steps[i:]]
            i = len(default)
            fix = "on the default graph pipeline"
        if not fix:
            return None
        steps[i] = Step("quantize", steps[i].name, config)
        recipe = dataclasses.replace(cand.recipe, steps=tuple(steps))
        if recipe.key() in self.records:
            return None
        return Candidate(recipe, cand.origin, rec.key, f"{cand.note}; retry: {fix}".lstrip("; "), recovery=fix,
                         mixed=cand.mixed)

    def _evaluate(self, rec: Record, time_rejected: bool = False) -> None:
        recipe = rec.recipe
        stage = "build"
        try:
            t0 = time.perf_counter()
            model, report = self.build(recipe)
            rec.build_s = time.perf_counter() - t0
            rec.quant_report = summarize_report(report)
            changed = _interface_change(self.model, model)
            if changed:
                rec.status, rec.stage, rec.reason = Status.REJECTED, "interface", changed
                return
            rec.fingerprint = model.fingerprint()
            rec.size_bytes = model_bytes(model)
            dup_key = _dup_key(rec)
            other = self.by_fingerprint.get(dup_key)
            if other is not None and other != rec.key:
                rec.status, rec.stage = Status.DUPLICATE, "build"
                rec.reason = f"same model as {self.records[other].label}"
                return
            self.by_fingerprint[dup_key] = rec.key
            stage = "compile"
            session, rec.compile_s, rec.rss_added_mb = compile_measured(recipe.backend_instance(), model)
            ref = reference_key(recipe)
            stage = "subset"
            rec.subset = self.evaluator.evaluate(session, ref, full=False)
            whole = rec.subset.items == len(self.evaluator.samples)  # the subset is every item: no screen
            if not rec.subset.within and not whole:
                rec.status, rec.stage = Status.REJECTED, "subset"
                rec.reason = "accuracy on the subset screen: " + "; ".join(
                    self.budget.violations(rec.subset.drops, SCREEN_SLACK))
                self._keep_for_timing(rec, session, model, time_rejected)
                return
            stage = "full"
            rec.full = rec.subset if whole else \
                self.evaluator.evaluate(session, ref, full=True)
            if rec.full.within:
                rec.status = Status.IN_BUDGET
            else:
                rec.status, rec.stage = Status.REJECTED, "full"
                rec.reason = "accuracy: " + "; ".join(self.budget.violations(rec.full.drops))
            self._keep_for_timing(rec, session, model, time_rejected)
        except CandidateFailure as exc:
            rec.status, rec.stage, rec.reason = Status.FAILED, exc.stage, exc.message
        except HastenError as exc:
            rec.status, rec.stage, rec.reason = Status.FAILED, stage, _one_line(exc)
        except Exception as exc:  # a crash inside a pass, a quantiser or a runtime: recorded, search goes on
            logger.debug("candidate %s failed", rec.label, exc_info=True)
            rec.status, rec.stage, rec.reason = Status.FAILED, stage, f"{type(exc).__name__}: {_one_line(exc)}"

    def _keep_for_timing(self, rec: Record, session, model, time_rejected: bool) -> None:
        """Keep the session for the next latency screen when it will be timed; cache a quantised model (a
        graph-pass model is cheap to rebuild, a calibrated one is not)."""
        if not (rec.within or time_rejected):
            return
        self.sessions[rec.key] = session
        if any(s.kind == "quantize" for s in rec.recipe.steps):
            self.cache.save_model(rec.recipe.model_key(), model)

    def sessions_for(self, records) -> dict:
        """{key: Session} for `records`; a record that cannot be compiled is marked failed and left out."""
        sessions = {}
        for r in records:
            try:
                sessions[r.key] = self.session_for(r)
            except Exception as exc:
                r.status, r.stage, r.reason = Status.FAILED, "compile", f"cannot be timed: {_one_line(exc)}"
        return sessions

    def session_for(self, rec: Record):
        """A live session for `rec`: kept from its evaluation, else compiled from the cached model."""
        if rec.key in self.sessions:
            return self.sessions[rec.key]
        if not rec.recipe.steps:
            model = self.model
        else:
            model = self.cache.load_model(rec.recipe.model_key())
            if model is None:
                model, _ = self.build(rec.recipe)
                self.cache.save_model(rec.recipe.model_key(), model)
        session, rec.compile_s, rec.rss_added_mb = compile_measured(rec.recipe.backend_instance(), model)
        self.sessions[rec.key] = session
        return session

    # -- latency screens -----------------------------------------------------------------------------
    def screen(self, recs: list[Record], label: str, deadline: float | None = None) -> None:
        """Time `recs` (those without a screen yet) against the baseline, interleaved, in one call; no extra
        round starts after `deadline` (a time.perf_counter() value)."""
        todo = [r for r in recs if r.screen is None and r.status not in (Status.FAILED, Status.DUPLICATE, Status.NOT_TRIED)]
        if not todo:
            return
        key = digest("screen", self.cache.context_key, sorted(r.key for r in todo), self.screen_seconds)
        path = self.cache.dir / f"bench-{key}.json"
        cached = read_json(path)
        if isinstance(cached, dict) and all(r.key in cached for r in todo):
            for r in todo:
                r.screen = cached[r.key]
            self._release(todo)
            return
        sessions = self.sessions_for(todo)
        self.emit("benchmark", f"timing {len(sessions)} {label} against the baseline (interleaved)")
        try:
            # a noisy host gets more rounds, until each ratio is clearly above or below 1 (or known to +-12%)
            results = time_sessions(self.base_session, sessions, self.feeds,
                                    Timing.screen(self.screen_seconds), bench=self.bench,
                                    threshold=1.0, deadline=deadline)
        except Exception as exc:
            for r in todo:
                if r.key in sessions:
                    r.status, r.stage, r.reason = Status.FAILED, "latency", f"crashed while timed: {_one_line(exc)}"
            self._release(todo)
            return
        if self.baseline.screen.median_ms is None:
            self.baseline.screen = results[BASELINE]
        self.noise_log.append({"screen": label, **results[BASELINE].get("noise", {})})
        for r in todo:
            if r.key in results:
                r.screen = results[r.key]
                if r.screen.ratio > 0 and not r.within:
                    r.screen.potential = True  # timed only to decide whether refining it can win
        atomic_write_json(path, {r.key: r.screen.to_json() for r in todo if r.screen})
        self._release(todo)
        self.changed()

    def _release(self, recs: list[Record]) -> None:
        """Drop the sessions of timed records; delete cached models no later stage needs (out of budget)."""
        for r in recs:
            if r is not self.baseline:
                self.sessions.pop(r.key, None)
            if not r.within and r.recipe.steps:
                self.cache.model_path(r.recipe.model_key()).unlink(missing_ok=True)



def _dup_key(rec: Record) -> tuple:
    """Records with this key are the same model on the same runtime settings (threads aside)."""
    return (rec.fingerprint, rec.recipe.backend,
            tuple(sorted((k, str(v)) for k, v in accuracy_recipe(rec.recipe).backend_options.items())))


def _interface_change(original, candidate) -> str:
    """Why `candidate` is not a drop-in replacement for `original` (inputs or outputs differ), or ""."""
    a = [(s.name, str(s.dtype), tuple(s.shape)) for s in original.inputs]
    b = [(s.name, str(s.dtype), tuple(s.shape)) for s in candidate.inputs]
    if a != b:
        return f"changes the model's inputs from {a} to {b}: not a drop-in replacement"
    a = [(s.name, str(s.dtype)) for s in original.outputs]
    b = [(s.name, str(s.dtype)) for s in candidate.outputs]
    if a != b:
        return f"changes the model's outputs from {a} to {b}: not a drop-in replacement"
    return ""


def _names_node(text: str, name: str) -> bool:
    """Does `text` name node `name`: after the word "node", or quoted / in brackets (not as a plain word)."""
    n = re.escape(name)
    edge = r"(?![\w/.:-])"
    return bool(re.search(rf"\bnodes?\s*[:=]?\s*[\(\[\"'`]?{n}{edge}", text, re.I)
                or re.search(rf"[\(\[\"'`]{n}[\)\]\"'`]", text))


def _node_names(model) -> list[str]:
    """The model's node names, longest first (so "fc10" is found before "fc1")."""
    try:
        names = {n.name for n in model.graph.all_nodes() if n.name}
    except Exception:
        return []
    return sorted(names, key=lambda n: (-len(n), n))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:400] if text else type(exc).__name__
