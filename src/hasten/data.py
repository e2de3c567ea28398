"""Samples: inputs for calibration and evaluation, as named arrays with a leading batch axis.

Loaders: `.npz` (named arrays, never pickled objects), JSON Lines text (tokenised by the model's tokenizer),
a folder of images, a Python callable, and synthetic inputs built from the model's input specs inside
valid ranges (token ids below the vocabulary size, masks of 0/1, images in [0, 1]; never all zeros).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hasten.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class Samples:
    """Named input arrays sharing a leading batch axis, plus optional labels (one per item)."""

    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.arrays:
            raise DataError(f"samples {self.name or ''}: no input arrays".replace("  ", " "))
        sizes = {k: (v.shape[0] if v.ndim else -1) for k, v in self.arrays.items()}
        if len(set(sizes.values())) != 1 or -1 in sizes.values():
            raise DataError(f"samples {self.name}: arrays must share a leading batch axis, got sizes {sizes}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if len(self.labels) != len(self):
                raise DataError(f"samples {self.name}: {len(self.labels)} labels for {len(self)} items")

    def __len__(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    # -- views --------------------------------------------------------------------------------------
    def feeds(self, batch_size: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Feed dicts of up to `batch_size` items each, in order."""
        for start in range(0, len(self), batch_size):
            yield {k: v[start:start + batch_size] for k, v in self.arrays.items()}

    def select(self, index) -> Samples:
        labels = None if self.labels is None else self.labels[index]
        return Samples({k: v[index] for k, v in self.arrays.items()}, labels, self.name, dict(self.meta))

    def take(self, n: int) -> Samples:
        return self.select(slice(0, n))

    def split(self, n_first: int) -> tuple[Samples, Samples]:
        if not 0 < n_first < len(self):
            raise DataError(f"samples {self.name}: cannot split {len(self)} items at {n_first}")
        return self.select(slice(0, n_first)), self.select(slice(n_first, None))

    def check_finite(self) -> None:
        for k, v in self.arrays.items():
            if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all():
                bad = int((~np.isfinite(v)).sum())
                raise DataError(f"samples {self.name}: input '{k}' has {bad} NaN/inf values; clean the data")

    def validate(self, model) -> None:
        """Raise DataError unless names, ranks, fixed dims and dtypes match the model's inputs."""
        specs = {s.name: s for s in model.inputs}
        missing = sorted(set(specs) - set(self.arrays))
        extra = sorted(set(self.arrays) - set(specs))
        if missing or extra:
            raise DataError(f"samples {self.name}: inputs do not match the model: missing {missing}, "
                            f"unexpected {extra}; the model expects {sorted(specs)}")
        for name, spec in specs.items():
            arr = self.arrays[name]
            if arr.dtype != spec.dtype:
                raise DataError(f"samples {self.name}: input '{name}' is {arr.dtype}, the model expects "
                                f"{spec.dtype}; convert it (e.g. arr.astype('{spec.dtype}'))")
            if spec.shape and arr.ndim != len(spec.shape):
                raise DataError(f"samples {self.name}: input '{name}' has shape {arr.shape}, the model "
                                f"expects rank {len(spec.shape)} {spec.shape}")
            for i, d in enumerate(spec.shape):
                if isinstance(d, int) and d > 0 and i > 0 and arr.shape[i] != d:
                    raise DataError(f"samples {self.name}: input '{name}' has shape {arr.shape}, the "
                                    f"model expects {spec.shape}")

    # -- loaders ------------------------------------------------------------------------------------
    @classmethod
    def from_npz(cls, path: str | os.PathLike, label_key: str = "labels") -> Samples:
        """Named arrays from an .npz file; an array named `label_key` becomes the labels. No pickle."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such file; give an .npz of named input arrays")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npz of plain arrays ({exc})") from exc
        labels = arrays.pop(label_key, None)
        if not arrays:
            raise DataError(f"{path}: holds no input arrays")
        return cls(arrays, labels, name=path.name)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike, tokenize: Callable[[list[str]], dict[str, np.ndarray]],
                   text_key: str = "text", label_key: str = "label") -> Samples:
        """One JSON object per line with a `text` field (optional `label`), tokenised by `tokenize`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such file; give a JSON Lines file with a '{text_key}' field")
        texts, labels = [], []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
                if not isinstance(obj, dict) or not isinstance(obj.get(text_key), str):
                    raise DataError(f"{path}:{lineno}: expected an object with a string '{text_key}'")
                texts.append(obj[text_key])
                labels.append(obj.get(label_key))
        if not texts:
            raise DataError(f"{path}: no text lines")
        arrays = tokenize(texts)
        has_labels = all(lab is not None for lab in labels)
        return cls(arrays, np.asarray(labels) if has_labels else None, name=path.name,
                   meta={"texts": texts})

    @classmethod
    def from_images(cls, folder: str | os.PathLike, spec) -> Samples:
        """Images of a folder (sorted by name), resized to `spec`'s NCHW shape, scaled to [0, 1].

        Sub-folders, if any, are class labels (sorted names -> 0, 1, ...).
        """
        from PIL import Image

        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: no such folder of images")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        n, c, h, w = spec.concrete_shape()
        if not (isinstance(h, int) and isinstance(w, int)) or c not in (1, 3):
            raise DataError(f"input '{spec.name}' shape {spec.shape} is not an NCHW image with 1 or 3 channels")
        classes = sorted({p.parent.name for p in files if p.parent != folder})
        images, labels = [], []
        for p in files:
            try:
                with Image.open(p) as im:
                    im = im.convert("L" if c == 1 else "RGB").resize((w, h))
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except OSError as exc:
                raise DataError(f"{p}: not a readable image ({exc})") from exc
            images.append(arr[None] if c == 1 else arr.transpose(2, 0, 1))
            if classes:
                labels.append(classes.index(p.parent.name) if p.parent.name in classes else -1)
        arrays = {spec.name: np.stack(images).astype(spec.dtype)}
        return cls(arrays, np.asarray(labels) if classes else None, name=folder.name,
                   meta={"classes": classes})

    @classmethod
    def from_callable(cls, fn: Callable[[int], dict[str, np.ndarray]], n: int) -> Samples:
        """Call `fn(i)` for i in range(n); each returns a feed dict with a leading batch axis."""
        if n <= 0:
            raise DataError(f"from_callable needs n > 0, got {n}")
        feeds = [fn(i) for i in range(n)]
        if not all(isinstance(f, dict) for f in feeds):
            raise DataError("the samples callable must return dicts of name -> array")
        keys = set(feeds[0])
        if any(set(f) != keys for f in feeds):
            raise DataError("the samples callable returned different input names across calls")
        arrays = {k: np.concatenate([np.asarray(f[k]) for f in feeds]) for k in keys}
        return cls(arrays, name=getattr(fn, "__name__", "callable"))

    @classmethod
    def synthetic(cls, model, n: int = 8, seed: int = 0, shapes: dict | None = None) -> Samples:
        """`n` random items inside each input's valid range (see module docstring); never all zeros.

        `shapes` is as in `hasten.input_shapes.concrete_input_shapes` (input name -> shape, or dim name -> int).
        """
        from hasten.input_shapes import concrete_input_shapes

        rng = np.random.default_rng(seed)
        ranges = _integer_input_ranges(model)
        concrete = concrete_input_shapes(model, shapes)
        arrays = {}
        for spec in model.inputs:
            shape = (n, *concrete[spec.name][1:])
            lname = spec.name.lower()
            if np.issubdtype(spec.dtype, np.integer) or spec.dtype == np.bool_:
                if "mask" in lname and len(shape) == 2:  # right padding, at least one real token
                    lengths = rng.integers(1, shape[1] + 1, size=shape[0])
                    arr = (np.arange(shape[1])[None, :] < lengths[:, None]).astype(np.int64)
                elif "mask" in lname:
                    arr = np.ones(shape, dtype=np.int64)
                else:
                    high = ranges.get(spec.name, 2)
                    arr = rng.integers(0, high, size=shape)
                    if high > 1 and not arr.any():
                        arr.flat[0] = 1
                arrays[spec.name] = arr.astype(spec.dtype)
            elif len(shape) == 4:  # images in [0, 1]
                arrays[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.dtype)
            else:
                arrays[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        return cls(arrays, name=f"synthetic(seed={seed})")


def _integer_input_ranges(model) -> dict[str, int]:
    """Upper bound (exclusive) of each integer input that indexes an embedding table (Gather data rows)."""
    graph = model.graph
    consumers: dict[str, list] = {}
    for node in graph.all_nodes():
        for v in node.inputs:
            if v is not None:
                consumers.setdefault(v.name, []).append(node)
    ranges: dict[str, int] = {}
    for spec in model.inputs:
        frontier, seen = [spec.name], set()
        while frontier:
            name = frontier.pop()
            if name in seen:
                continue
            seen.add(name)
            for node in consumers.get(name, []):
                if node.op_type == "Gather" and node.inputs[1] is not None and node.inputs[1].name == name:
                    table = node.inputs[0]
                    if table is not None and table.shape is not None and isinstance(table.shape[0], int):
                        rows = int(table.shape[0])
                        ranges[spec.name] = min(ranges.get(spec.name, rows), rows)
                elif node.op_type in ("Cast", "Unsqueeze", "Reshape", "Squeeze", "Identity"):
                    frontier.extend(o.name for o in node.outputs)
    return ranges


def load_samples(source, model, what: str = "data", tokenizer=None) -> Samples | None:
    """Samples from `source`: Samples (as is), None (None), an .npz, a folder of images, or JSON Lines
    text, tokenised by `tokenizer` (list of str -> feeds: the model's own, `hasten.source.tokenizer_for`;
    DataError without one). `what` names the data in errors."""
    if source is None or isinstance(source, Samples):
        return source
    p = Path(source)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder ({what}); give an .npz of named input arrays, a folder "
                        "of images, or JSON Lines text for a zoo model")
    if p.is_dir():
        return Samples.from_images(p, model.inputs[0])
    if p.suffix == ".npz":
        return Samples.from_npz(p)
    if p.suffix in (".jsonl", ".json"):
        if tokenizer is not None:
            return Samples.from_jsonl(p, tokenizer)
        raise DataError(f"{p}: text data needs the model's tokenizer (known for zoo:minilm); give an .npz of "
                        "token arrays instead")
    raise DataError(f"{p}: unknown data format for {what}; give an .npz of named input arrays, a folder of "
                    "images, or JSON Lines text for zoo:minilm")
