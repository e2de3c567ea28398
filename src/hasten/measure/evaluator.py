"""The evaluator: run models on fixed samples and judge their outputs against a reference's, with metrics.

For each metric m, on the first n items (all by default):
    score    = m.score(candidate, reference, labels)
    baseline = m.score(reference, reference, labels)      (1.0 for fidelity metrics; the reference's own
                                                           top-1 against labels)
    drop     = m.drop(baseline, score)                     (positive = worse)
and the output SQNR over every float output together, 10·log10(Σ r² / Σ (r - c)²) dB (capped at ±200 dB;
a candidate with NaN/inf gets -200). Metrics read one output (`output`; the first by default). Items are
concatenated along axis 0 of each output; an output with `rows` rows per item (a (T, 1, C) CTC output)
is sliced by rows x n. The search (hasten.search.evaluate), per-layer sensitivity, mixed precision and
`hasten quantize` all judge through this class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hasten.errors import MetricError
from hasten.measure.accuracy import SQNR_CAP_DB, Metric, Score, get_metric


def outputs_sqnr_db(candidate: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    """SQNR in dB over all float outputs together (capped at ±200 dB; NaN/inf -> -200)."""
    signal = noise = 0.0
    for name, r in reference.items():
        if not np.issubdtype(r.dtype, np.floating) or name not in candidate:
            continue
        c = candidate[name].astype(np.float64)
        r = r.astype(np.float64)
        if not np.isfinite(c).all():
            return -SQNR_CAP_DB
        signal += float((r * r).sum())
        noise += float(((r - c) ** 2).sum())
    if noise == 0:
        return SQNR_CAP_DB
    return float(np.clip(10 * math.log10(max(signal, 1e-300) / noise), -SQNR_CAP_DB, SQNR_CAP_DB))


@dataclass(frozen=True)
class Judgement:
    """A candidate's scores, their drops against the reference's own scores, and its output SQNR."""

    scores: dict[str, Score]
    drops: dict[str, float]
    sqnr_db: float


class Evaluator:
    """Judges candidates on `samples` with `metrics` against a reference set by `set_reference`.

    backend: where Models run (None: the reference backend); batch_size: items per run (None: 1 for a
    model with a fixed batch dimension, else 8)."""

    def __init__(self, samples, metrics=(), output: str | None = None, batch_size: int | None = None,
                 backend=None):
        self.samples = samples
        self.metrics: list[Metric] = [get_metric(m) for m in metrics]
        self.output = output
        self.batch_size = batch_size
        self.backend = backend
        self.reference: dict[str, np.ndarray] | None = None
        self.rows = 1
        self._baselines: dict[int, dict[str, Score]] = {}

    # -- running -------------------------------------------------------------------------------------
    def outputs(self, source, samples=None) -> dict[str, np.ndarray]:
        """Every output of `source` (a Model or a Session) on `samples` (default: all of them)."""
        from hasten.backends import Session, reference_backend, run_samples

        if not isinstance(source, Session):
            if self.batch_size is None:
                fixed = any(s.shape and isinstance(s.shape[0], int) and s.shape[0] > 0 for s in source.inputs)
                self.batch_size = 1 if fixed else 8
            source = (self.backend or reference_backend()).compile(source)
        return run_samples(source, self.samples if samples is None else samples, self.batch_size or 1)

    def first(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The output the metrics read."""
        if self.output is not None and self.output in outputs:
            return outputs[self.output]
        return next(iter(outputs.values()))

    def set_reference(self, source) -> dict[str, np.ndarray]:
        """Run the reference (a Model, a Session, or its outputs {name: array}) and keep its outputs."""
        outputs = source if isinstance(source, dict) else self.outputs(source)
        self.reference = outputs
        self._baselines = {}
        n = len(self.samples)
        first = len(self.first(outputs))
        self.rows = first // n if n and first % n == 0 else 1
        return outputs

    # -- judging -------------------------------------------------------------------------------------
    def labels(self, n: int | None = None):
        labels = self.samples.labels
        return labels if labels is None or n is None else labels[:n]

    def scores(self, candidate: np.ndarray, reference: np.ndarray, n: int | None = None) -> dict[str, Score]:
        """Each metric's score of `candidate` against `reference` (both the metrics' output, first n items).
        A metric that raises anything but MetricError raises MetricError naming it."""
        out = {}
        for m in self.metrics:
            try:
                out[m.name] = m.score(candidate, reference, self.labels(n))
            except MetricError:
                raise
            except Exception as exc:
                raise MetricError(f"metric {m.name} raised {type(exc).__name__}: {exc}") from exc
        return out

    def reference_output(self, n: int | None = None) -> np.ndarray:
        ref = self.first(self._reference())
        return ref if n is None else ref[:self.rows * n]

    def baseline(self, n: int | None = None) -> dict[str, Score]:
        """The reference's own scores on the first n items (all by default)."""
        key = len(self.samples) if n is None else n
        if key not in self._baselines:
            ref = self.reference_output(n)
            self._baselines[key] = self.scores(ref, ref, n)
        return self._baselines[key]

    def judge(self, candidate, n: int | None = None) -> Judgement:
        """Judge `candidate` (its outputs {name: array}, or the metrics' output alone) on the first n items."""
        outputs = candidate if isinstance(candidate, dict) else None
        cand = self.first(candidate) if outputs is not None else candidate
        scores = self.scores(cand, self.reference_output(n), n)
        base = self.baseline(n)
        drops = {m.name: float(m.drop(base[m.name], scores[m.name])) for m in self.metrics}
        sqnr = outputs_sqnr_db(outputs, self._reference()) if outputs is not None and n is None else math.nan
        return Judgement(scores, drops, sqnr)

    def measure(self, source) -> Judgement:
        """Run `source` (a Model or a Session) on every sample and judge it."""
        return self.judge(self.outputs(source))

    def _reference(self) -> dict[str, np.ndarray]:
        if self.reference is None:
            raise RuntimeError("Evaluator: set_reference() first")
        return self.reference
