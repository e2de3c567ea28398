"""Accuracy of a candidate, cheap before dear: a small evaluation subset first, the full set for survivors.

The reference is the fp32 input model on the SAME backend (same options except the precision), on the same
samples (BENCHMARKING.md). For each metric, drop = metric.drop(baseline score, candidate score), where the
baseline score is the fp32 model's own (1.0 for fidelity metrics, its top-1 for labelled data).
The subset is the first `subset_size` items (so its reference is a slice of the full reference: the first
rows x subset_size rows, where an item's output has `rows` rows on axis 0, e.g. a (T, 1, C) CTC output); a
subset result only screens out candidates far outside the budget (drop > `SCREEN_SLACK` x the limit).
"""

from __future__ import annotations

import time

import numpy as np

from hasten.errors import DataError, MetricError, SearchError
from hasten.fileio import atomic_path
from hasten.measure.accuracy import Metric, Score
from hasten.measure.evaluator import Evaluator as Judge
from hasten.outcome.records import Accuracy  # noqa: F401  (re-exported: the search judges with it)
from hasten.search.budget import Budget

#: a subset drop above this multiple of the limit rejects a candidate without the full evaluation
SCREEN_SLACK = 2.0


class CandidateFailure(Exception):
    """A candidate cannot be judged: it crashed its backend, produced NaN/inf, or a metric raised."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage, self.message = stage, message


def check_samples(model, samples, what: str = "evaluation") -> None:
    """DataError unless `samples` is non-empty and matches the model's inputs."""
    if samples is None:
        raise DataError(f"no {what} samples: give --eval DATA (an .npz of named inputs, a folder of images, "
                        "or a JSON Lines text file)")
    if len(samples) == 0:
        raise DataError(f"{what} samples {samples.name}: empty; give at least a few items")
    samples.validate(model)
    samples.check_finite()


def output_of(outputs: dict[str, np.ndarray], name: str | None) -> np.ndarray:
    if name is not None and name in outputs:
        return outputs[name]
    return next(iter(outputs.values()))


class Evaluator:
    """Scores candidates of one model on one evaluation set with a list of metrics and a budget: the
    subset-then-full layer of the search over `hasten.measure.evaluator.Evaluator` (one per reference
    backend), which does the scoring; failures become CandidateFailure."""

    def __init__(self, model, samples, metrics: list[Metric], budget: Budget, subset_size: int = 64,
                 store=None):
        check_samples(model, samples)
        self.samples = samples
        self.metrics = metrics
        self.budget = budget
        self.output = model.outputs[0].name if model.outputs else None
        n = len(samples)
        need = max([m.k + 1 for m in metrics if hasattr(m, "k")] + [2])
        self.subset_size = n if subset_size >= n or subset_size < need else subset_size
        self.store = store  # callable(name) -> path for .npy reference outputs (resume), or None
        self._judges: dict[str, Judge] = {}
        self._last: tuple[int, np.ndarray] | None = None  # (id of session, its subset outputs)
        self.rows = 1  # output rows per item: outputs are concatenated on axis 0, which need not be the batch

    # -- references ----------------------------------------------------------------------------------
    def run(self, session, samples) -> np.ndarray:
        from hasten.backends import run_samples

        try:
            outs = run_samples(session, samples)
        except Exception as exc:  # a backend that fails at run time
            raise CandidateFailure("run", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                                   ) from exc
        return output_of(outs, self.output)

    def set_reference(self, backend_key: str, session) -> float:
        """Compute (or load) the fp32 reference outputs on `backend_key`; returns the seconds it took."""
        t0 = time.perf_counter()
        path = self.store(f"ref-{backend_key}") if self.store else None
        ref = None
        if path is not None and path.is_file():
            try:
                ref = np.load(path, allow_pickle=False)
                if len(ref) % len(self.samples):  # a multiple: rows per item
                    ref = None
            except (OSError, ValueError):
                ref = None
        if ref is None:
            ref = self.run(session, self.samples)
            if np.issubdtype(ref.dtype, np.floating) and not np.isfinite(ref).all():
                raise SearchError(f"the fp32 model produces NaN/inf on the evaluation samples "
                                  f"({self.samples.name}) on {backend_key}; check the data")
            if path is not None:
                with atomic_path(path) as tmp:
                    np.save(tmp, ref, allow_pickle=False)
        judge = Judge(self.samples, self.metrics)
        judge.set_reference({"output": ref})
        self.rows = judge.rows  # rows per item, as the evaluator derives them from the reference
        if len(ref) % len(self.samples):  # items give different row counts: no slicing, the subset is all
            self.subset_size = len(self.samples)
        self._judges[backend_key] = judge
        for n in {self.subset_size, len(self.samples)}:
            _guarded(judge.baseline, n)
        return time.perf_counter() - t0

    def has_reference(self, backend_key: str) -> bool:
        return backend_key in self._judges

    def baseline_scores(self, backend_key: str) -> dict[str, Score]:
        return self._judges[backend_key].baseline()

    # -- candidates ----------------------------------------------------------------------------------
    def evaluate(self, session, backend_key: str, full: bool) -> Accuracy:
        """Score `session` on the subset (full=False) or the whole set, against `backend_key`'s reference."""
        t0 = time.perf_counter()
        n = len(self.samples) if full else self.subset_size
        if full and self._last is not None and self._last[0] == id(session) and self.subset_size < n:
            # the subset is the first items: run only the rest
            rest = self.run(session, self.samples.select(slice(self.subset_size, None)))
            cand = np.concatenate([self._last[1], rest])
        else:
            cand = self.run(session, self.samples if n == len(self.samples) else self.samples.take(n))
        self._last = (id(session), cand) if not full else None
        if np.issubdtype(cand.dtype, np.floating) and not np.isfinite(cand).all():
            rows = n if len(cand) == self.rows * n else len(cand)
            bad = int((~np.isfinite(cand.reshape(rows, -1))).any(axis=1).sum())
            raise CandidateFailure("nan", f"produces NaN/inf outputs on {bad} of {n} evaluation items")
        judge = self._judges[backend_key]
        ref = judge.reference_output(n)
        if cand.shape != ref.shape:
            raise CandidateFailure("run", f"output shape {cand.shape} differs from the fp32 model's {ref.shape}")
        judged = _guarded(judge.judge, cand, n)
        for name, s in judged.scores.items():
            if not (np.isfinite(s.mean) and np.isfinite(s.worst)):
                raise CandidateFailure("metric", f"metric {name} returned a non-finite score ({s.mean})")
        drops = judged.drops
        slack = 1.0 if n == len(self.samples) else SCREEN_SLACK
        excess = self.budget.excess(drops)
        return Accuracy(judged.scores, drops, n, self.budget.excess(drops, slack) <= 1.0, excess,
                        time.perf_counter() - t0)


def _guarded(fn, *args):
    """`fn(*args)`, with a metric's error (MetricError, naming the metric) as CandidateFailure("metric")."""
    try:
        return fn(*args)
    except MetricError as exc:
        raise CandidateFailure("metric", str(exc)) from exc
