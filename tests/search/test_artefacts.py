"""The files a backend writes beside OUT/model.onnx (results.json's `artefacts`): `--force` and a later run
remove an earlier run's, and nothing else; paths outside OUT/ are never touched."""

from __future__ import annotations

import json

from hasten.search.cache import ResultCache, listed_artefacts, remove_artefacts


def _earlier_run(out, artefacts):
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(json.dumps({"model": "old", "model_fingerprint": "old"}))
    (out / "model.onnx").write_bytes(b"old")
    (out / "results.json").write_text(json.dumps({"hasten_results": 1, "artefacts": ["model.onnx", *artefacts]}))
    for name in artefacts:
        if ".." not in name and not name.startswith("/"):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text("int x;")


def test_force_removes_the_earlier_run_s_artefacts_and_leaves_other_files(tmp_path):
    out = tmp_path / "out"
    _earlier_run(out, ["mcu/model.c", "mcu/model.h", "cost.txt"])
    (out / "notes.txt").write_text("mine")
    outside = tmp_path / "precious.c"
    outside.write_text("keep")
    results = json.loads((out / "results.json").read_text())
    results["artefacts"] += ["../precious.c", str(outside)]
    (out / "results.json").write_text(json.dumps(results))
    assert {p.name for p in listed_artefacts(out)} == {"model.c", "model.h", "cost.txt"}
    state = ResultCache(out, {"model_fingerprint": "new"}).claim(force=True)
    assert state == "reset"
    assert not (out / "mcu").exists() and not (out / "cost.txt").exists() and not (out / "model.onnx").exists()
    assert (out / "notes.txt").read_text() == "mine" and outside.read_text() == "keep"


def test_a_later_run_keeps_what_it_wrote_and_removes_the_rest(tmp_path):
    out = tmp_path / "out"
    _earlier_run(out, ["mcu/model.c", "cost.txt"])
    remove_artefacts(out, keep=(out / "cost.txt",))
    assert (out / "cost.txt").is_file() and not (out / "mcu").exists()


def test_no_results_json_means_nothing_is_removed(tmp_path):
    (tmp_path / "model.c").write_text("int x;")
    remove_artefacts(tmp_path)
    assert listed_artefacts(tmp_path) == [] and (tmp_path / "model.c").is_file()
