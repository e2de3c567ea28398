"""hasten.fileio: the one atomic writer (a reader sees the old file or the new one; nothing left behind)."""

import json

import numpy as np
import pytest

from hasten.fileio import atomic_path, atomic_paths, atomic_write_json, atomic_write_text


def test_text_and_json_replace_the_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write_text(path, "old")
    atomic_write_json(path, {"x": np.float32(1.5), "a": np.arange(3), "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": 1.5, "a": [0, 1, 2], "p": str(tmp_path)}
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_path_keeps_the_suffix_for_writers_that_add_one(tmp_path):
    path = tmp_path / "ref.npy"
    with atomic_path(path) as tmp:
        np.save(tmp, np.arange(4))  # np.save appends .npy to a name that lacks it
    assert np.load(path).tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.npy"]


def test_atomic_paths_renames_what_was_written_in_order(tmp_path):
    data, model = tmp_path / "m.onnx.data", tmp_path / "m.onnx"
    with atomic_paths(data, model) as (tmp_data, tmp_model):
        assert tmp_data.parent == tmp_model.parent and tmp_model.name == "m.onnx"
        tmp_model.write_text("model")  # no data file written: the target is not touched
    assert model.read_text() == "model" and not data.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
