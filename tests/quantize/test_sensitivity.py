"""Per-layer sensitivity: one node quantised at a time, statistics collected once, ranked worst first."""

from __future__ import annotations

import json

import numpy as np
import pytest
from modelkit import OUTLIER_WIDTH
from onnx import TensorProto, helper
from rich.console import Console

import hasten
from hasten.data import Samples
from hasten.errors import QuantizationError
from hasten.quantize.sensitivity import sensitivity

WIDTH = OUTLIER_WIDTH


def test_hard_layer_ranked_first(outlier, outlier_calib, outlier_held):
    report = sensitivity(outlier, outlier_calib, outlier_held, progress=False)
    assert report.ranked_nodes[0] == "fc2"
    assert sorted(report.ranked_nodes) == ["fc0", "fc1", "fc2", "fc3"]
    by = {r.node: r for r in report.rows}
    assert by["fc2"].sqnr_db < 10
    assert all(by[n].sqnr_db > 25 for n in ("fc0", "fc1", "fc3"))
    assert [r.sqnr_db for r in report.rows] == sorted(r.sqnr_db for r in report.rows)
    assert all(r.op_type == "MatMul" and r.metric is None for r in report.rows)
    # everything quantised is no better than the worst node alone
    assert report.full_sqnr_db <= by["fc2"].sqnr_db + 0.5
    d = report.to_dict()
    assert d["samples"] == 32 and d["rows"][0]["node"] == "fc2" and d["scheme"]["scheme"] == "int8-static"


def test_statistics_collected_once(outlier, outlier_calib, outlier_held, monkeypatch):
    import hasten.quantize.int8 as int8
    import hasten.quantize.stats as stats_mod

    calls = []
    real = stats_mod.collect_stats

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(stats_mod, "collect_stats", counting)
    monkeypatch.setattr(int8, "collect_stats", counting)
    report = sensitivity(outlier, outlier_calib, outlier_held, progress=False)
    assert len(report.rows) == 4 and len(calls) == 1


def test_metric_with_labels_ranks_by_drop(outlier, outlier_calib, outlier_held):
    from hasten.backends import get_backend, run_samples

    ref = run_samples(get_backend("onnxruntime").compile(outlier), outlier_held)["y"]
    labelled = Samples(outlier_held.arrays, ref.argmax(axis=1), "labelled")
    report = sensitivity(outlier, outlier_calib, labelled, metric="top1", progress=False)
    assert report.metric == "top1" and report.baseline_metric == 1.0
    first = report.rows[0]
    assert first.node == "fc2" and first.metric_drop > 0.2
    assert all(r.metric_drop <= 0.1 for r in report.rows[1:])
    drops = [r.metric_drop for r in report.rows]
    assert drops == sorted(drops, reverse=True)


def test_render_names_the_worst(outlier, outlier_calib):
    report = sensitivity(outlier, outlier_calib, metric="cosine", progress=False)
    assert any("calibration samples" in n for n in report.notes)
    console = Console(record=True, width=140)
    report.render(console, top=2)
    text = console.export_text()
    table = text.split("all 4")[0]
    assert report.rows[0].node == "fc2"
    assert "fc2" in table and report.rows[1].node in table
    assert report.rows[2].node not in table and report.rows[3].node not in table
    assert "cosine" in text and "all 4 nodes quantised together" in text


def test_bad_input(outlier, outlier_calib):
    with pytest.raises(QuantizationError, match="at least 16"):
        sensitivity(outlier, outlier_calib.take(4), progress=False)
    with pytest.raises(QuantizationError, match="not quantisable"):
        sensitivity(outlier, outlier_calib, nodes=["act0"], progress=False)
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    relu = hasten.load(proto)
    with pytest.raises(QuantizationError, match="no quantisable nodes"):
        sensitivity(relu, Samples.synthetic(relu, 16), progress=False)


def test_cli_json(outlier, outlier_calib, tmp_path, capsys):
    import hasten.commands.sensitivity  # noqa: F401  (registers the sub-command)
    from hasten.cli import main

    path = outlier.save(tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", **outlier_calib.arrays)
    assert main(["sensitivity", str(path), "--calib", str(tmp_path / "calib.npz"), "--top", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["node"] for r in out["rows"]][0] == "fc2" and len(out["rows"]) == 2
    assert main(["sensitivity", str(path)]) == 2  # no calibration data for a plain .onnx
    assert "--calib" in capsys.readouterr().err


def test_a_passed_deadline_stops_after_the_node_in_hand(outlier, outlier_calib, outlier_held):
    """The search's time budget bounds the analysis: nothing is measured after the deadline, and it says so."""
    import time

    report = sensitivity(outlier, outlier_calib, outlier_held, progress=False, deadline=time.perf_counter())
    full = sensitivity(outlier, outlier_calib, outlier_held, progress=False)
    assert len(full.rows) >= 2 and report.rows == []
    assert report.notes == [f"stopped after 0 of {len(full.rows)} nodes: the time budget ran out"]
    assert report.full_sqnr_db is None and full.full_sqnr_db is not None
