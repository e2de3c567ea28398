"""Streamed statistics: exact counts and re-binning, bounded memory, per-channel derived statistics."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import hasten
from hasten.data import Samples
from hasten.errors import QuantizationError
from hasten.quantize.calibrate import calibrate_range
from hasten.quantize.stats import TensorStats, collect_stats


def test_histogram_counts_minmax_and_exact_rebinning():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.5, 5000).astype(np.float32)
    b = rng.normal(0, 8.0, 5000).astype(np.float32)  # forces several doublings of the edge
    ts = TensorStats("t", bins=64)
    ts.update(a)
    first_edge = ts.edge
    ts.update(b)
    assert ts.edge >= np.abs(np.concatenate([a, b])).max() and ts.edge / first_edge in (2, 4, 8, 16, 32, 64)
    data = np.concatenate([a, b])
    assert ts.count == data.size and ts.hist.sum() == data.size
    assert ts.min == data.min() and ts.max == data.max()
    expected, _ = np.histogram(data, bins=64, range=(-ts.edge, ts.edge))
    assert np.abs(ts.hist - expected).sum() <= 2  # identical up to float rounding at bin edges


def test_zeros_seen_before_any_value_are_counted_at_zero():
    ts = TensorStats("t", bins=8)
    ts.update(np.zeros(10))
    ts.update(np.array([-1.0, 1.0]))
    assert ts.hist.sum() == 12 and ts.hist[4] >= 10  # bin [0, edge/4) holds the zeros


def test_nan_or_inf_is_refused():
    with pytest.raises(QuantizationError, match="NaN or inf"):
        TensorStats("t").update(np.array([1.0, np.nan]))


def test_per_channel_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 7, 6)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)
    ts = TensorStats("t")
    ts.update(x[:20], per_channel=True)
    ts.update(x[20:], per_channel=True)
    flat = x.reshape(-1, 6)
    np.testing.assert_allclose(ts.channel_absmax, np.abs(flat).max(0))
    np.testing.assert_allclose(ts.channel_mean, flat.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ts.channel_meansq, (flat.astype(np.float64) ** 2).mean(0), rtol=1e-6)
    assert (ts.channel_hist.sum(axis=1) == flat.shape[0]).all()


def test_scaled_statistics_match_collecting_the_scaled_tensor():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 16)).astype(np.float32) * rng.uniform(0.1, 20, 16).astype(np.float32)
    f = rng.uniform(0.05, 3.0, 16)
    ts = TensorStats("x")
    for chunk in np.split(x, 8):
        ts.update(chunk, per_channel=True)
    derived = ts.scaled(f, name="y")
    direct = TensorStats("y")
    direct.update(x * f.astype(np.float32), per_channel=True)
    assert derived.name == "y" and derived.hist.sum() == direct.hist.sum()
    np.testing.assert_allclose([derived.min, derived.max], [direct.min, direct.max], rtol=1e-5)
    np.testing.assert_allclose(derived.channel_mean, direct.channel_mean, rtol=1e-4, atol=1e-5)
    for method in ("percentile", "mse", "entropy"):
        lo_d, hi_d = calibrate_range(derived, method)
        lo, hi = calibrate_range(direct, method)
        assert abs(hi_d - hi) <= 0.05 * direct.absmax and abs(lo_d - lo) <= 0.05 * direct.absmax, method
    with pytest.raises(ValueError):
        ts.scaled(-f)


def _mlp_model(d=8, hidden=16):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(d, hidden)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(hidden, 4)).astype(np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return hasten.load(proto), inits


def test_collect_stats_observes_the_right_tensors_in_one_pass():
    model, inits = _mlp_model()
    x = np.random.default_rng(3).normal(size=(40, 8)).astype(np.float32)
    stats = collect_stats(model, Samples({"x": x}), batch_size=7)
    assert set(stats.tensors) == {"x", "r"} and stats.samples == 40
    r = np.maximum(x @ numpy_helper.to_array(inits[0]), 0)
    assert np.isclose(stats["r"].max, r.max(), rtol=1e-5) and stats["r"].min == 0.0
    np.testing.assert_allclose(stats["r"].channel_absmax, np.abs(r).max(0), rtol=1e-5)
    assert stats["x"].count == x.size


def test_memory_is_independent_of_the_number_of_samples():
    model, _ = _mlp_model()
    rng = np.random.default_rng(4)
    small = collect_stats(model, Samples({"x": rng.normal(size=(16, 8)).astype(np.float32)}))
    large = collect_stats(model, Samples({"x": rng.normal(size=(2048, 8)).astype(np.float32) * 5}))
    assert large["r"].count == 128 * small["r"].count
    assert small.nbytes() == large.nbytes() > 0


def test_unknown_tensor_and_progress():
    model, _ = _mlp_model()
    samples = Samples({"x": np.ones((5, 8), np.float32)})
    with pytest.raises(QuantizationError, match="unknown tensor"):
        collect_stats(model, samples, tensors=["nope"])
    seen = []
    collect_stats(model, samples, batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
