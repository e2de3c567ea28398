"""Metrics and `evaluate`: how far a candidate's outputs are from the reference (or from the labels).

A metric maps (candidate outputs, reference outputs, labels) to a Score(mean, worst): the mean over items
and the worst item (or worst class / query). Built-ins:
- top1:      fraction of items whose argmax equals the label (or the reference's argmax when no labels);
             worst = the lowest per-class accuracy.
- cosine:    cos(c_i, r_i) = c_i·r_i / (|c_i| |r_i|) per item (outputs flattened per item).
- retrieval: for each of the first `queries` items, the top-k nearest other items by cosine similarity under
             the candidate and under the reference; agreement = |A ∩ B| / k.
- sqnr:      10·log10(Σ r² / Σ (r - c)²) per item, in dB (capped at 200 dB for identical outputs).
A user callable `fn(candidate, reference, labels) -> float | Score` is a metric too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hasten.errors import MetricError

SQNR_CAP_DB = 200.0


@dataclass(frozen=True)
class Score:
    mean: float
    worst: float

    def to_dict(self) -> dict:
        return {"mean": self.mean, "worst": self.worst}


class Metric:
    """Base: `score(candidate, reference, labels) -> Score`; `name`; `higher_is_better`."""

    name = "metric"
    higher_is_better = True
    needs_labels = False
    needs_reference = True

    def score(self, candidate: np.ndarray, reference: np.ndarray | None, labels=None) -> Score:
        raise NotImplementedError

    def drop(self, baseline: Score, candidate: Score) -> float:
        """How much worse `candidate` is than `baseline` on the mean (positive = worse)."""
        d = baseline.mean - candidate.mean
        return d if self.higher_is_better else -d

    def __repr__(self) -> str:
        return self.name


def _rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1)


def _check_pair(name: str, candidate, reference) -> None:
    if reference is None:
        raise MetricError(f"metric {name} compares against reference outputs; none were given")
    if np.shape(candidate) != np.shape(reference):
        raise MetricError(f"metric {name}: candidate shape {np.shape(candidate)} differs from the "
                          f"reference {np.shape(reference)}")


class Top1(Metric):
    name = "top1"
    needs_reference = False

    def score(self, candidate, reference, labels=None):
        pred = _rows(candidate).argmax(axis=1)
        if labels is not None:
            truth = np.asarray(labels).reshape(-1)
        elif reference is not None:
            truth = _rows(reference).argmax(axis=1)
        else:
            raise MetricError("top1 needs labels or reference outputs")
        if len(truth) != len(pred):
            raise MetricError(f"top1: {len(pred)} predictions for {len(truth)} labels")
        hit = pred == truth
        per_class = [hit[truth == c].mean() for c in np.unique(truth)]
        return Score(float(hit.mean()), float(min(per_class)))


class CosineFidelity(Metric):
    name = "cosine"

    def score(self, candidate, reference, labels=None):
        _check_pair(self.name, candidate, reference)
        c, r = _rows(candidate), _rows(reference)
        denom = np.linalg.norm(c, axis=1) * np.linalg.norm(r, axis=1)
        cos = np.where(denom > 0, (c * r).sum(axis=1) / np.maximum(denom, 1e-300), 0.0)
        cos = np.where(~np.isfinite(cos), -1.0, cos)
        return Score(float(cos.mean()), float(cos.min()))


class RetrievalAgreement(Metric):
    def __init__(self, k: int = 10, queries: int = 50):
        if k < 1 or queries < 1:
            raise MetricError(f"retrieval needs k >= 1 and queries >= 1, got k={k}, queries={queries}")
        self.k, self.queries = k, queries
        self.name = f"retrieval@{k}"

    @staticmethod
    def _topk(x: np.ndarray, q: int, k: int) -> np.ndarray:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sims = x[:q] @ x.T
        sims[np.arange(q), np.arange(q)] = -np.inf  # a query never retrieves itself
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]

    def score(self, candidate, reference, labels=None):
        _check_pair(self.name, candidate, reference)
        c, r = _rows(candidate), _rows(reference)
        if not np.isfinite(c).all():
            return Score(0.0, 0.0)
        n = c.shape[0]
        if n <= self.k:
            raise MetricError(f"{self.name} needs more than {self.k} items, got {n}")
        q = min(self.queries, n)
        a, b = self._topk(c, q, self.k), self._topk(r, q, self.k)
        agree = np.array([len(set(a[i]) & set(b[i])) / self.k for i in range(q)])
        return Score(float(agree.mean()), float(agree.min()))


class SQNR(Metric):
    name = "sqnr"

    def score(self, candidate, reference, labels=None):
        _check_pair(self.name, candidate, reference)
        c, r = _rows(candidate), _rows(reference)
        signal = (r**2).sum(axis=1)
        noise = ((r - c) ** 2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            db = 10 * np.log10(signal / noise)
        db = np.where(noise == 0, SQNR_CAP_DB, db)
        db = np.where(np.isnan(db), -SQNR_CAP_DB, np.clip(db, -SQNR_CAP_DB, SQNR_CAP_DB))
        return Score(float(db.mean()), float(db.min()))


def sqnr_db(candidate: np.ndarray, reference: np.ndarray) -> float:
    """SQNR of a whole tensor in dB: 10·log10(Σ r² / Σ (r - c)²), capped at ±200 dB."""
    r = np.asarray(reference, dtype=np.float64)
    noise = float(((r - np.asarray(candidate, dtype=np.float64)) ** 2).sum())
    if noise == 0:
        return SQNR_CAP_DB
    if not np.isfinite(noise):
        return -SQNR_CAP_DB
    return float(np.clip(10 * np.log10(max(float((r**2).sum()), 1e-300) / noise), -SQNR_CAP_DB, SQNR_CAP_DB))


class CallableMetric(Metric):
    """A user's function `fn(candidate, reference, labels) -> float | Score`; higher is better by default."""

    def __init__(self, fn: Callable, name: str | None = None, higher_is_better: bool = True):
        self.fn, self.name, self.higher_is_better = fn, name or getattr(fn, "__name__", "custom"), higher_is_better

    def score(self, candidate, reference, labels=None):
        try:
            value = self.fn(candidate, reference, labels)
        except Exception as exc:
            raise MetricError(f"metric {self.name} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(value, Score):
            return value
        try:
            v = float(value)
        except (TypeError, ValueError) as exc:
            raise MetricError(f"metric {self.name} returned {value!r}, not a number") from exc
        return Score(v, v)


def get_metric(spec) -> Metric:
    """A Metric from a name (`top1`, `cosine`, `retrieval`, `retrieval@K`, `sqnr`), `module:function`, or a
    callable."""
    if isinstance(spec, Metric):
        return spec
    if callable(spec):
        return CallableMetric(spec)
    name = str(spec)
    simple = {"top1": Top1, "cosine": CosineFidelity, "sqnr": SQNR, "retrieval": RetrievalAgreement}
    if name in simple:
        return simple[name]()
    if name.startswith("retrieval@") and name[10:].isdigit():
        return RetrievalAgreement(k=int(name[10:]))
    if ":" in name:
        module_name, fn_name = name.split(":", 1)
        try:
            fn = getattr(importlib.import_module(module_name), fn_name)
        except (ImportError, AttributeError) as exc:
            raise MetricError(f"metric {name}: cannot import {fn_name} from {module_name} ({exc})") from exc
        return CallableMetric(fn, name=name)
    raise MetricError(f"unknown metric {name!r}; use top1, cosine, retrieval, retrieval@K, sqnr or "
                      "module:function")


def _outputs(source, samples, backend, batch_size) -> np.ndarray:
    """The first output of `source` (Session, Model, array or {name: array}) on `samples`."""
    from hasten.backends import DEFAULT_BACKEND, Session, get_backend, run_samples
    from hasten.model import Model

    if isinstance(source, np.ndarray):
        return source
    if isinstance(source, dict):
        return next(iter(source.values()))
    if isinstance(source, Model):
        source = get_backend(backend or DEFAULT_BACKEND).compile(source)
    if isinstance(source, Session):
        outs = run_samples(source, samples, batch_size)
        return outs[source.output_names[0]]
    raise MetricError(f"cannot evaluate a {type(source).__name__}; give a Model, Session or outputs")


def evaluate(candidate, samples, metrics=None, reference=None, backend: str | None = None,
             batch_size: int = 1) -> dict[str, Score]:
    """Score `candidate` (Model, Session or outputs) on `samples` with each metric.

    `reference` (Model, Session or outputs) is what fidelity metrics compare against; labels come from
    `samples.labels`; Models run on `backend` (None: the default backend). Returns {metric name: Score}.
    """
    metrics = [get_metric(m) for m in (metrics or ["cosine"])]
    cand = _outputs(candidate, samples, backend, batch_size)
    ref = None
    if reference is not None:
        ref = _outputs(reference, samples, backend, batch_size)
    elif any(m.needs_reference for m in metrics):
        raise MetricError(f"metrics {[m.name for m in metrics if m.needs_reference]} need a reference model "
                          "or its outputs")
    return {m.name: m.score(cand, ref, samples.labels) for m in metrics}
