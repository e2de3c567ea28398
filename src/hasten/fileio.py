"""Atomic file writes: the one writer every module uses (a leaf module: it imports nothing of hasten).

A write goes to a temporary file in the target's own folder (same file system), is flushed, then renamed
onto the target with `os.replace`: a reader sees the old file or the new one, never half of one, and an
interrupted write (Ctrl-C, a crash) leaves the old file and no temporary behind.

    atomic_write_text(path, text)         atomic_write_json(path, data)        atomic_write_bytes(path, data)
    with atomic_path(path) as tmp:        # any writer that takes a path (np.save, safetensors' save_file)
        np.save(tmp, array)
    with atomic_paths(data, model) as (tmp_data, tmp_model):   # files that refer to each other by name
        ...                               # renamed in the order given: the last one is the one to read
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_paths", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "jsonable"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (ending in the same suffix, so writers that add one do not); when the
    block exits cleanly the file written there replaces `path`; otherwise it is removed and `path` is left
    as it was. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[tuple[Path, ...]]:
    """Temporary paths with the targets' own names in one hidden folder beside the first target, for files
    that name each other (an ONNX model and its external data). When the block exits cleanly, each one that
    was written replaces its target, in the order given; the folder is removed either way."""
    targets = [Path(p) for p in paths]
    targets[0].parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".hasten-", dir=targets[0].parent))
    try:
        temps = tuple(folder / t.name for t in targets)
        yield temps
        for tmp, target in zip(temps, targets, strict=True):
            if tmp.exists():
                os.replace(tmp, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (flushed to disk before the rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data, indent: int | None = 2) -> Path:
    """Write `data` as JSON (numpy scalars and arrays, paths: see `jsonable`) to `path` atomically."""
    return atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=False, default=jsonable) + "\n")


def jsonable(obj):
    """JSON `default=` hook: numpy scalars and arrays to Python, paths to strings, anything else to str."""
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars alike
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float):
        return None
    return str(obj)
