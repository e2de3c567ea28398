"""Samples and their loaders: shapes, ranges, validation, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import hasten
from hasten.data import Samples
from hasten.errors import DataError


def _embedding_model(vocab: int = 50):
    table = numpy_helper.from_array(np.random.default_rng(0).standard_normal((vocab, 4)).astype(np.float32), "emb")
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
             helper.make_node("Mul", ["e", "m3"], ["y"])]
    axes = numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        nodes, "emb",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 4])], [table, axes])
    return hasten.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_synthetic_respects_ranges():
    model = _embedding_model(vocab=50)
    s = Samples.synthetic(model, n=64, seed=1, shapes={"sequence": 16})
    ids, mask = s.arrays["input_ids"], s.arrays["attention_mask"]
    assert ids.shape == (64, 16) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < 50 and ids.max() > 40  # spans the vocabulary
    assert set(np.unique(mask)) <= {0, 1} and mask[:, 0].all() and not mask.all()
    s.validate(model)


def test_synthetic_float_and_image_inputs(mlp):
    s = Samples.synthetic(mlp, n=5)
    x = s.arrays["x"]
    assert x.shape == (5, 16) and x.dtype == np.float32 and np.abs(x).sum() > 0
    image = helper.make_graph([helper.make_node("Relu", ["img"], ["y"])], "g",
                              [helper.make_tensor_value_info("img", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 8, 8])])
    im = Samples.synthetic(hasten.load(helper.make_model(image, opset_imports=[helper.make_opsetid("", 17)])), 3)
    arr = im.arrays["img"]
    assert arr.min() >= 0 and arr.max() <= 1 and arr.std() > 0.1


def test_npz_roundtrip_and_labels(tmp_path, mlp):
    x = np.random.default_rng(0).standard_normal((7, 16)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, labels=np.arange(7))
    s = Samples.from_npz(tmp_path / "d.npz")
    assert len(s) == 7 and s.labels.tolist() == list(range(7))
    s.validate(mlp)
    feeds = list(s.feeds(batch_size=3))
    assert [f["x"].shape[0] for f in feeds] == [3, 3, 1]
    a, b = s.split(5)
    assert len(a) == 5 and len(b) == 2 and b.labels.tolist() == [5, 6]


def test_npz_refuses_pickled_objects(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import zipfile

    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as z:
        z.write(tmp_path / "obj.npy", "x.npy")
    with pytest.raises(DataError, match="obj.npz"):
        Samples.from_npz(tmp_path / "obj.npz").arrays["x"]


@pytest.mark.parametrize("arrays, match", [
    ({"y": np.zeros((2, 16), np.float32)}, "missing \\['x'\\]"),
    ({"x": np.zeros((2, 16), np.float64)}, "float64"),
    ({"x": np.zeros((2, 15), np.float32)}, "shape"),
    ({"x": np.zeros((2, 16, 1), np.float32)}, "rank"),
])
def test_validate_mismatch(mlp, arrays, match):
    with pytest.raises(DataError, match=match):
        Samples(arrays, name="user.npz").validate(mlp)


def test_nan_rejected():
    s = Samples({"x": np.array([[1.0, np.nan]], np.float32)}, name="bad")
    with pytest.raises(DataError, match="NaN"):
        s.check_finite()


def test_jsonl_with_tokenizer(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in ["a b", "c d e", "f"]) + "\n")

    def tokenize(texts):
        ids = np.zeros((len(texts), 4), np.int64)
        for i, t in enumerate(texts):
            ids[i, : len(t.split())] = 1
        return {"input_ids": ids}

    s = Samples.from_jsonl(path, tokenize)
    assert len(s) == 3 and s.arrays["input_ids"].sum() == 6 and s.meta["texts"][1] == "c d e"
    path.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DataError, match="t.jsonl:2"):
        Samples.from_jsonl(path, tokenize)


def test_callable_loader():
    s = Samples.from_callable(lambda i: {"x": np.full((2, 3), i, np.float32)}, 4)
    assert len(s) == 8 and s.arrays["x"][-1, 0] == 3
    with pytest.raises(DataError):
        Samples.from_callable(lambda i: {"x": np.zeros((1, 3))} if i == 0 else {"z": np.zeros((1, 3))}, 2)


def test_mismatched_batch_axis():
    with pytest.raises(DataError, match="leading batch axis"):
        Samples({"a": np.zeros((2, 3)), "b": np.zeros((3, 3))})


def test_image_folder(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            pil.fromarray(np.full((16, 16), 60 * i + (100 if cls == "dog" else 0), np.uint8)).save(
                tmp_path / cls / f"{i}.png")
    spec = hasten.TensorSpec("img", np.dtype(np.float32), ("N", 1, 8, 8))
    s = Samples.from_images(tmp_path, spec)
    assert s.arrays["img"].shape == (4, 1, 8, 8) and s.labels.tolist() == [0, 0, 1, 1]
    assert 0 <= s.arrays["img"].min() and s.arrays["img"].max() <= 1
    assert s.arrays["img"][3].mean() == pytest.approx(160 / 255, abs=1e-3)


_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(st.binary(max_size=1024))
def test_fuzz_npz_loader_only_raises_data_error(tmp_path, blob):
    path = tmp_path / "fuzz.npz"
    path.write_bytes(blob)
    try:
        Samples.from_npz(path)
    except DataError:
        pass


@_FUZZ
@given(st.text(max_size=400))
def test_fuzz_jsonl_loader_only_raises_data_error(tmp_path, text):
    path = tmp_path / "fuzz.jsonl"
    path.write_text(text, encoding="utf-8")
    try:
        s = Samples.from_jsonl(path, lambda texts: {"ids": np.zeros((len(texts), 2), np.int64)})
    except DataError:
        return
    assert len(s) >= 1
