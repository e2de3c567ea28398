"""Mixed precision: the fewest most-sensitive nodes kept in float so that the budget holds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from modelkit import OUTLIER_WIDTH, make_outlier_mlp

import hasten
from hasten.backends import get_backend, run_samples
from hasten.data import Samples
from hasten.errors import QuantizationError
from hasten.measure.accuracy import sqnr_db
from hasten.quantize.base import quantize
from hasten.quantize.mixed_precision import mixed_precision

WIDTH = OUTLIER_WIDTH


def _y(model, samples):
    return run_samples(get_backend("onnxruntime").compile(model), samples)["y"]


def test_sqnr_budget_keeps_exactly_the_hard_node(outlier, outlier_calib, outlier_held):
    result = mixed_precision(outlier, outlier_calib, outlier_held, min_sqnr_db=25.0, progress=False)
    mp = result.report["mixed_precision"]
    assert [k["node"] for k in mp["kept_float"]] == ["fc2"]
    assert mp["kept_float"][0]["rank"] == 1 and mp["kept_float"][0]["sqnr_db"] < 10
    assert mp["achieved"]["sqnr_db"] >= 25.0 and mp["quantised"] == 3
    assert [e["kept"] for e in mp["evaluations"]] == [0, 1]
    assert not mp["evaluations"][0]["holds"]
    assert result.config.nodes_to_exclude == ("fc2",)
    assert sqnr_db(_y(result.model, outlier_held), _y(outlier, outlier_held)) == pytest.approx(mp["achieved"]["sqnr_db"], abs=1e-6)
    # the config alone reproduces the outlier
    again = quantize(outlier, result.config, outlier_calib)
    np.testing.assert_array_equal(_y(again.model, outlier_held), _y(result.model, outlier_held))


def test_metric_budget(outlier, outlier_calib, outlier_held):
    result = mixed_precision(outlier, outlier_calib, outlier_held, metric="cosine", max_drop=0.005, progress=False)
    mp = result.report["mixed_precision"]
    assert [k["node"] for k in mp["kept_float"]] == ["fc2"]
    assert mp["achieved"]["metric_drop"] <= 0.005 and mp["budget"]["metric"] == "cosine"


def test_two_hard_nodes_gallop():
    m = hasten.load(make_outlier_mlp(hard=(1, 3), layers=5, seed=3))
    outlier_calib, outlier_held = Samples.synthetic(m, 32, seed=0), Samples.synthetic(m, 32, seed=1)
    result = mixed_precision(m, outlier_calib, outlier_held, min_sqnr_db=20.0, progress=False)
    mp = result.report["mixed_precision"]
    assert sorted(k["node"] for k in mp["kept_float"]) == ["fc1", "fc3"]
    assert [e["kept"] for e in mp["evaluations"]] == [0, 1, 2]  # gallop: 0 and 1 fail, 2 holds
    assert [e["holds"] for e in mp["evaluations"]] == [False, False, True]
    # keeping more nodes (8 evaluations allowed) walks on: 2 fail -> bisect between the gallop points
    tight = mixed_precision(m, outlier_calib, outlier_held, min_sqnr_db=25.0, progress=False)
    ks = [e["kept"] for e in tight.report["mixed_precision"]["evaluations"]]
    assert ks == [0, 1, 2, 4, 3] and len(tight.report["mixed_precision"]["kept_float"]) == 3


def test_budget_errors(outlier, outlier_calib, outlier_held):
    with pytest.raises(QuantizationError, match="needs a budget"):
        mixed_precision(outlier, outlier_calib, outlier_held, progress=False)
    with pytest.raises(QuantizationError, match="needs a metric"):
        mixed_precision(outlier, outlier_calib, outlier_held, max_drop=0.01, progress=False)
    with pytest.raises(QuantizationError, match="not met"):
        mixed_precision(outlier, outlier_calib, outlier_held, min_sqnr_db=150.0, progress=False)
    with pytest.raises(QuantizationError, match="not met"):
        mixed_precision(outlier, outlier_calib, outlier_held, min_sqnr_db=25.0, max_evals=1, progress=False)


@pytest.mark.parametrize("n, threshold, start, bad", [(20, 5, 0, -1), (20, 0, 0, -1), (20, 19, 0, -1),
                                                      (54, 28, 1, 0), (7, 3, 1, 0), (1, 0, 0, -1)])
def test_ksearch_finds_the_fewest_nodes_that_hold(n, threshold, start, bad):
    """Holding is monotone (k >= threshold holds): the search ends on exactly the threshold, in about
    2·log2(threshold) + 2 measurements, and never measures k = n (the float model)."""
    from hasten.quantize.mixed_precision import KSearch

    search, measured = KSearch(n, start=start, bad=bad), []
    while (k := search.next()) is not None:
        assert 0 <= k < n and k not in measured
        measured.append(k)
        search.record(k >= threshold)
    assert search.good == threshold and not search.exhausted
    assert len(measured) <= 2 * math.log2(max(threshold, 1)) + 3


def test_ksearch_exhausted_when_even_all_but_one_node_misses():
    from hasten.quantize.mixed_precision import KSearch

    search, measured = KSearch(10, start=1, bad=0), []
    while (k := search.next()) is not None:
        measured.append(k)
        search.record(False)
    assert measured == [1, 2, 4, 8, 9] and search.exhausted and search.good is None
