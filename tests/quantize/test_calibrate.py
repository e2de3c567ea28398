"""Calibration methods on constructed distributions: outliers are clipped by all but minmax."""

import numpy as np
import pytest

from hasten.errors import QuantizationError
from hasten.quantize.calibrate import METHODS, calibrate, calibrate_range
from hasten.quantize.primitives import fake_quantize
from hasten.quantize.stats import ActivationStats, TensorStats


def _stats(x, name="t", bins=2048):
    ts = TensorStats(name, bins=bins)
    for chunk in np.array_split(x, 4):
        ts.update(chunk)
    return ts


@pytest.fixture(scope="module")
def outliers():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 400_000).astype(np.float32)
    x[:40] = rng.uniform(30, 60, 40)  # 0.01 % outliers, far out
    return x, _stats(x)


def test_minmax_is_the_observed_range(outliers):
    x, ts = outliers
    assert calibrate_range(ts, "minmax") == (float(x.min()), float(x.max()))


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_clipping_methods_clip_the_outliers(outliers, method):
    x, ts = outliers
    lo, hi = calibrate_range(ts, method, symmetric=True, dtype="int8")
    assert 2.5 < hi < 0.5 * x.max(), (method, hi)
    assert x.min() <= lo < -2.5
    # the ordinary values keep more precision than under min-max
    bulk = x[40:]
    err = np.mean((fake_quantize(bulk, lo, hi, "int8", symmetric=True) - bulk) ** 2)
    err_mm = np.mean((fake_quantize(bulk, x.min(), x.max(), "int8", symmetric=True) - bulk) ** 2)
    assert err < 0.2 * err_mm


def test_mse_clips_a_heavy_tail_but_keeps_costly_outliers(outliers):
    # Laplace(1): the MSE-optimal int8 clip (about 10 for 8 bits) is below the largest of 400k samples
    x = np.random.default_rng(5).laplace(0, 1, 400_000).astype(np.float32)
    lo, hi = calibrate_range(_stats(x), "mse", symmetric=True, dtype="int8")
    assert 6 < hi < 0.9 * np.abs(x).max()
    # 40 outliers near 45 cost more clipped than the coarser step costs the 400k others: MSE keeps them
    y, ts = outliers
    assert calibrate_range(ts, "mse", symmetric=True, dtype="int8")[1] > 0.5 * y.max()


def test_methods_differ(outliers):
    _, ts = outliers
    his = {m: calibrate_range(ts, m, symmetric=True, dtype="int8")[1] for m in METHODS}
    assert len({round(h, 3) for h in his.values()}) == 4, his


def test_mse_is_close_to_the_brute_force_optimum():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.laplace(0, 1, 100_000), rng.uniform(-40, 40, 30)]).astype(np.float32)
    ts = _stats(x)
    lo, hi = calibrate_range(ts, "mse", dtype="uint8")
    ours = np.mean((fake_quantize(x, lo, hi, "uint8") - x) ** 2)
    brute = min(np.mean((fake_quantize(x, max(x.min(), -t), min(x.max(), t), "uint8") - x) ** 2)
                for t in np.geomspace(0.5, np.abs(x).max(), 200))
    assert ours <= 1.1 * brute


def test_uniform_data_is_not_clipped_much():
    x = np.random.default_rng(2).uniform(-1, 1, 100_000).astype(np.float32)
    ts = _stats(x)
    for method in ("entropy", "mse", "percentile"):
        lo, hi = calibrate_range(ts, method, symmetric=True, dtype="int8")
        assert hi > 0.9 and lo < -0.9, method


def test_asymmetric_percentile_keeps_a_one_sided_range():
    x = np.abs(np.random.default_rng(3).normal(0, 1, 100_000)).astype(np.float32)
    x[:10] = 50.0
    lo, hi = calibrate_range(_stats(x), "percentile", symmetric=False, percentile=99.9)
    assert lo == pytest.approx(float(x.min()), abs=0.02) and 2.5 < hi < 10


def test_calibrate_all_tensors_and_errors(outliers):
    _, ts = outliers
    stats = ActivationStats({"a": ts, "b": _stats(np.linspace(-1, 2, 100))}, samples=1)
    ranges = calibrate(stats, "minmax")
    assert set(ranges) == {"a", "b"} and ranges["b"] == (-1.0, 2.0)
    with pytest.raises(QuantizationError, match="unknown calibration method"):
        calibrate_range(ts, "kl")
    with pytest.raises(QuantizationError, match="never observed"):
        calibrate_range(TensorStats("empty"), "minmax")
    with pytest.raises(QuantizationError, match="percentile"):
        calibrate_range(ts, "percentile", percentile=0.0)
