"""Ranges [lo, hi] for activation quantisation, computed from streamed statistics by one of four methods.

- minmax:     [min, max] seen on the calibration data.
- percentile: symmetric: T = the p-th percentile of |x| (default p = 99.99), range [max(min, -T), min(max, T)];
              asymmetric: lo/hi = the (100 - p)-th and p-th percentiles of x (clamped to [min, max]).
- entropy:    TensorRT's KL calibration on the |x| histogram: for each candidate threshold i (in bins), the
              reference P = hist[:i] with the clipped tail added to its last bin, the candidate Q = P squeezed
              into 128 levels and expanded back over P's non-empty bins; T = the i minimising KL(P || Q).
- mse:        the threshold T minimising the expected squared error of quantise-dequantise over the
              histogram (bin centres weighted by counts) with the real quantiser (dtype, symmetric), searched
              over 128 thresholds from max|x| down to max|x| / 64 (geometric grid).
Every method returns a sub-range of [min, max] that still includes 0 once widened by choose_qparams.
"""

from __future__ import annotations

import numpy as np

from hasten.errors import QuantizationError
from hasten.quantize.primitives import choose_qparams, qrange
from hasten.quantize.stats import ActivationStats, TensorStats

METHODS = ("minmax", "percentile", "entropy", "mse")


def _clip_symmetric(ts: TensorStats, t: float) -> tuple[float, float]:
    return max(ts.min, -t), min(ts.max, t)


def _percentile_range(ts: TensorStats, p: float, symmetric: bool) -> tuple[float, float]:
    if not 0.0 < p <= 100.0:
        raise QuantizationError(f"percentile must be in (0, 100], got {p}")
    if symmetric:
        counts, width = ts.abs_hist()
        cdf = np.cumsum(counts) / max(counts.sum(), 1)
        i = int(np.searchsorted(cdf, p / 100.0))
        return _clip_symmetric(ts, (min(i, len(counts) - 1) + 1) * width)
    cdf = np.cumsum(ts.hist) / max(ts.hist.sum(), 1)
    edges = -ts.edge + np.arange(ts.bins + 1) * ts.width
    hi_bin = min(int(np.searchsorted(cdf, p / 100.0)), ts.bins - 1)
    lo_bin = min(int(np.searchsorted(cdf, 1.0 - p / 100.0, side="right")), ts.bins - 1)
    lo, hi = float(edges[lo_bin]), float(edges[hi_bin + 1])
    return max(ts.min, min(lo, 0.0)), min(ts.max, max(hi, 0.0))


def _kl_threshold(counts: np.ndarray, width: float, levels: int = 128, max_candidates: int = 256) -> float:
    """TensorRT-style entropy calibration on a histogram of |x|; returns the threshold T."""
    counts = counts.astype(np.float64)
    n = len(counts)
    nonzero = np.nonzero(counts)[0]
    if len(nonzero) == 0:
        return 0.0
    last = int(nonzero[-1]) + 1
    if last <= levels:
        return last * width
    step = max(1, (last - levels) // max_candidates)
    best_i, best_kl = last, np.inf
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])  # tail[i] = sum(counts[i:])
    for i in range(levels, last + 1, step):
        p = counts[:i].copy()
        p[-1] += tail[i]
        # squeeze the first i bins of the unclipped histogram into `levels` groups, expand back
        ref = counts[:i]
        groups = np.minimum((np.arange(i) * levels) // i, levels - 1)
        totals = np.bincount(groups, weights=ref, minlength=levels)
        nz = p > 0
        filled = np.bincount(groups, weights=nz.astype(np.float64), minlength=levels)
        q = np.where(nz, totals[groups] / np.maximum(filled[groups], 1.0), 0.0)
        ps, qs = p.sum(), q.sum()
        if qs == 0:
            continue
        p_n, q_n = p / ps, q / qs
        mask = p_n > 0
        with np.errstate(divide="ignore"):
            kl = np.sum(p_n[mask] * np.log(p_n[mask] / np.where(q_n[mask] > 0, q_n[mask], 1e-12)))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return min(best_i, n) * width


def _mse_range(ts: TensorStats, symmetric: bool, dtype: str, candidates: int = 128) -> tuple[float, float]:
    absmax = ts.absmax
    if absmax == 0.0:
        return 0.0, 0.0
    thresholds = absmax * np.geomspace(1.0, 1.0 / 64.0, candidates)
    centres, counts = ts.centres(), ts.hist.astype(np.float64)
    keep = counts > 0
    centres, counts = centres[keep], counts[keep]
    if ts.zeros_pending:
        centres, counts = np.append(centres, 0.0), np.append(counts, float(ts.zeros_pending))
    lo = np.maximum(ts.min, -thresholds)
    hi = np.minimum(ts.max, thresholds)
    scale, zp = choose_qparams(lo, hi, dtype, symmetric, axis=0)
    qmin, qmax = qrange(dtype)
    s = scale.astype(np.float64)[:, None]
    z = zp.astype(np.float64)[:, None]
    q = np.clip(np.rint(centres[None, :] / s) + z, qmin, qmax)
    err = ((((q - z) * s) - centres[None, :]) ** 2 * counts[None, :]).sum(axis=1)
    k = int(np.argmin(err))
    return float(lo[k]), float(hi[k])


def calibrate_range(ts: TensorStats, method: str = "minmax", symmetric: bool = False, dtype: str = "uint8",
                    percentile: float = 99.99) -> tuple[float, float]:
    """The range [lo, hi] of one tensor by `method` (see the module docstring)."""
    if method not in METHODS:
        raise QuantizationError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    if ts.count == 0:
        raise QuantizationError(f"tensor '{ts.name}' was never observed during calibration")
    if method == "minmax" or ts.edge == 0.0:
        return float(ts.min), float(ts.max)
    if method == "percentile":
        return _percentile_range(ts, percentile, symmetric)
    if method == "entropy":
        counts, width = ts.abs_hist()
        return _clip_symmetric(ts, _kl_threshold(counts, width))
    return _mse_range(ts, symmetric, dtype)


def calibrate(stats: ActivationStats, method: str = "minmax", symmetric: bool = False, dtype: str = "uint8",
              percentile: float = 99.99, names=None) -> dict[str, tuple[float, float]]:
    """{tensor name: (lo, hi)} for `names` (default: every tensor in `stats`)."""
    names = list(stats.tensors) if names is None else list(names)
    return {n: calibrate_range(stats[n], method, symmetric, dtype, percentile) for n in names}
