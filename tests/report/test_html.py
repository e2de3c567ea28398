"""report.html: one self-contained file with every section filled, from a real (small) search."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from search.helpers import QUICK, FakeTimer, samples, scheme_speed, wide_mlp

from hasten.api import optimize
from hasten.report import svg
from hasten.report.html import SECTIONS, render


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    model = wide_mlp(width=384, layers=2)
    # timings from a seeded fake (int8-dynamic 2x, int8-static 1.6x the fp32 model, 20% noise): the choice
    # and the report do not depend on this host's speed or load; accuracy is measured on the real runtime
    timer = FakeTimer(scheme_speed({"int8-dynamic": 2.0, "int8-static": 1.6}), noise=0.2, seed=3)
    result = optimize(model, samples(48, seed=1), samples(40, seed=2), metric="cosine", out=out,
                      backends="onnxruntime", schemes=("int8-static", "int8-dynamic"), passes=(),
                      time_budget=600, timer=timer, **QUICK)
    return result, out


def _section(html: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert m, f"section {sid} missing"
    return m.group(1)


def test_report_has_every_section_filled(searched):
    result, out = searched
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for sid in SECTIONS:
        body = _section(html, sid)
        assert "could not be drawn" not in body, (sid, body[:300])
    assert _section(html, "scatter").count("<circle") >= 3  # baseline, chosen and the others
    assert "budget: cosine" in _section(html, "scatter")
    floor = _section(html, "floor")
    assert "roofline floor, fp32" in floor and "baseline" in floor
    assert _section(html, "distributions").count("<rect") >= 2  # a box per finalist and the baseline
    cands = _section(html, "candidates")
    assert cands.count("<tr") == len(result.records) + 1
    sens = _section(html, "sensitivity")
    assert "fc0" in sens and "fc1" in sens and "<svg" in sens  # per-layer rows of the int8-static nodes
    cost = _section(html, "cost")
    assert "MatMul" in cost and "QuantizeLinear" in cost or "MatMulInteger" in cost
    env = _section(html, "environment")
    assert "avx512_vnni" in env and "onnxruntime" in env


def test_report_is_self_contained(searched):
    _, out = searched
    html = (out / "report.html").read_text()
    assert "<script" not in html
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)  # nothing fetched
    assert "@import" not in html and "url(" not in html


def test_results_json_lists_every_candidate_with_why(searched):
    result, out = searched
    data = json.loads((out / "results.json").read_text())
    assert not data["partial"]
    assert len(data["candidates"]) == len(result.records)
    for c in data["candidates"]:
        assert c["status"] in ("baseline", "in-budget", "rejected", "failed", "duplicate", "not-tried")
        assert c["recipe"]["backend"] == "onnxruntime"
        if c["status"] in ("rejected", "failed", "duplicate"):
            assert c["reason"], c
        if c["kept"]:
            assert c["accuracy"]["metrics"]["cosine"]["mean"] > 0.98
    chosen = next(c for c in data["candidates"] if c["chosen"])
    assert chosen["latency"]["runs"] >= 100 and len(chosen["latency"]["times_ms"]) > 10
    assert data["environment"]["cpu"] and data["floor"]["fp32_ms"] > 0
    assert (out / "recipe.yaml").read_text().startswith("# made by hasten optimize")


def test_svg_helpers():
    assert svg.nice_ticks(0, 1, 5) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svg.pareto_front([(1, 0.9), (2, 0.95), (3, 0.93), (0.5, 0.5)]) == [(0.5, 0.5), (1, 0.9), (2, 0.95)]
    s = svg.scatter([{"x": 1, "y": 2, "color": "#000", "title": "<a&b>"}], "x", "y")
    assert "&lt;a&amp;b&gt;" in s and s.startswith("<svg")


def test_render_survives_a_partial_results_file():
    data = {"model": "m", "metrics": ["top1"], "budget": {"top1": 0.01}, "candidates": [], "partial": True}
    html = render(data)
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html


def test_sizes_in_the_tables_are_the_files_sizes(searched):
    result, out = searched
    html = (out / "report.html").read_text()
    data = json.loads((out / "results.json").read_text())
    chosen = next(c for c in data["candidates"] if c["chosen"])
    base = next(c for c in data["candidates"] if c["key"] == data["baseline"])
    assert chosen["size_bytes"] == (out / "model.onnx").stat().st_size  # the file written, to the byte
    baseline_file = out / "baseline.onnx"  # the input model saved as hasten saves every model
    wide_mlp(width=384, layers=2).save(baseline_file)
    assert base["size_bytes"] == baseline_file.stat().st_size
    summary = _section(html, "summary")
    for c in (base, chosen):
        assert f"<td>{c['size_bytes'] / 1e6:.3g}</td>" in summary  # MB, three digits: never "0.0"


def test_headline_names_what_failed(tmp_path):
    def fussy(candidate, reference, labels):  # a task metric that refuses any approximate output
        if not np.allclose(candidate, reference, atol=1e-5):
            raise ValueError("refuses approximate outputs")
        return 1.0

    timer = FakeTimer(scheme_speed({}), seed=0)
    result = optimize(wide_mlp(width=128, layers=1), samples(32, seed=1), samples(24, seed=2), metric=fussy,
                      out=tmp_path / "out", backends="onnxruntime", schemes=("int8-static", "int8-dynamic"),
                      passes=(), mixed_precision=False, time_budget=600, timer=timer, **QUICK)
    data = json.loads(result.results_path.read_text())
    assert data["summary"]["failures"].startswith("every int8 candidate failed: ")
    assert "refuses approximate outputs" in data["summary"]["failures"]
    headline = re.search(r'<p class="big (\w+)" id="headline">(.*?)</p>', result.report_path.read_text())
    assert headline and headline.group(1) == "bad" and "every int8 candidate failed" in headline.group(2)


def test_sensitivity_section_says_why_it_is_empty():
    data = {"model": "m", "metrics": ["top1"], "budget": {"top1": 0.01}, "candidates": [],
            "sensitivity": {"reason": "the time budget ran out before it could be measured", "rows": []}}
    body = _section(render(data), "sensitivity")
    assert "the time budget ran out" in body and "not needed" not in body


def test_results_json_reads_back_through_the_types_it_was_written_with(searched):
    from hasten.outcome.results import RESULTS_VERSION, Results

    result, out = searched
    data = json.loads((out / "results.json").read_text())
    assert data["version"] == RESULTS_VERSION
    res = Results.from_json(data)
    assert res.to_json() == data  # one to_json / from_json pair: nothing lost or changed
    assert res.record(res.chosen).latency.ratio == pytest.approx(result.chosen.latency.ratio)
    assert [c.status for c in res.candidates] == [r.status for r in result.records]
    old = {k: v for k, v in data.items() if k != "version"}  # a file from before results.json had a version
    assert "could not be drawn" not in render(old)
