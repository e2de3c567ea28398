"""magika's content-type classifier (tf2onnx, opset 15 + ai.onnx.ml) on files that are on every machine.

Data: files of the Python installation and of the project's own virtual environment (and Debian's /usr),
labelled by extension and magic bytes with magika's label names (a real labelled task); features exactly as
magika extracts them (first 1024 bytes after lstrip, last 1024 before rstrip, padded with 256). Metric: top-1
accuracy against the labels.
"""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import numpy as np

from bench.corpus.models import copy_model, package_file, save_npz, split

MODEL = ("magika", "models/standard_v3_3/model.onnx")
CONFIG = ("magika", "models/standard_v3_3/config.min.json")

#: magika label -> (file suffixes, required leading magic bytes or None)
RULES: dict[str, tuple[tuple[str, ...], bytes | None]] = {
    "python": ((".py",), None),
    "pythonbytecode": ((".pyc",), None),
    "c": ((".c",), None),
    "cpp": ((".cpp", ".cc", ".hpp"), None),
    "rst": ((".rst",), None),
    "json": ((".json",), None),
    "gzip": ((".gz",), b"\x1f\x8b"),
    "txt": ((".txt",), None),
    "elf": ((".so",), b"\x7fELF"),
    "html": ((".html", ".htm"), None),
    "markdown": ((".md",), None),
    "xml": ((".xml",), None),
    "csv": ((".csv",), None),
    "png": ((".png",), b"\x89PNG"),
    "toml": ((".toml",), None),
    "css": ((".css",), None),
    "pem": ((".pem",), b"-----BEGIN"),
    "gif": ((".gif",), b"GIF8"),
    "shell": ((".sh",), None),
    "javascript": ((".js",), None),
    "perl": ((".pl", ".pm"), None),
    "fortran": ((".f90",), None),
    "cmake": ((".cmake",), None),
    "zip": ((".zip", ".whl"), b"PK\x03\x04"),
    "npy": ((".npy",), b"\x93NUMPY"),
    "onnx": ((".onnx",), None),
    "ini": ((".ini",), None),
    "yaml": ((".yaml", ".yml"), None),
    "wav": ((".wav",), b"RIFF"),
}
MIN_BYTES = 128  # magika's own rule is 8; smaller files are decided without the network
PER_CLASS = 24  # files per label at most (half calibration, half evaluation)
MIN_CLASS = 6  # a label with fewer files found is left out


def roots() -> list[Path]:
    """Where files are looked for: the Python installation, this environment, Debian's shared files."""
    paths = sysconfig.get_paths()
    out = [Path(paths["stdlib"]), Path(paths["purelib"]), Path("/usr/share/doc"), Path("/usr/include"),
           Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"), Path("/usr/share/perl5")]
    seen, unique = set(), []
    for p in out:
        if p.is_dir() and p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def find_files(per_class: int = PER_CLASS) -> dict[str, list[Path]]:
    """Up to `per_class` files per label, spread evenly over the sorted candidates; labels with fewer than
    MIN_CLASS files are dropped."""
    by_suffix = {s: label for label, (suffixes, _) in RULES.items() for s in suffixes}
    found: dict[str, list[Path]] = {label: [] for label in RULES}
    for root in roots():
        for path in root.rglob("*"):
            label = by_suffix.get(path.suffix.lower())
            if label is None or path.is_symlink() or not path.is_file():
                continue
            try:
                if path.stat().st_size >= MIN_BYTES:
                    found[label].append(path)
            except OSError:
                continue
    chosen = {}
    for label, paths in found.items():
        paths = sorted(set(paths))
        magic = RULES[label][1]
        if len(paths) > 4 * per_class:  # thin out before reading magic bytes
            paths = [paths[i] for i in np.linspace(0, len(paths) - 1, 4 * per_class).astype(int)]
        if magic is not None:
            paths = [p for p in paths if _head(p, len(magic)) == magic]
        if len(paths) > per_class:
            paths = [paths[i] for i in np.linspace(0, len(paths) - 1, per_class).astype(int)]
        if len(paths) >= MIN_CLASS:
            chosen[label] = paths
    return chosen


def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def features(path: Path, config: dict) -> np.ndarray:
    """magika's v2 features of one file: (beg_size + end_size,) int32."""
    beg_size, end_size, pad, block = (config[k] for k in ("beg_size", "end_size", "padding_token", "block_size"))
    size = path.stat().st_size
    n = min(block, size)
    with open(path, "rb") as f:
        beg = f.read(n)
        f.seek(size - n)
        end = f.read(n)
    beg = list(beg.lstrip()[:beg_size])
    end = list(end.rstrip()[-end_size:]) if end_size else []
    beg = beg + [pad] * (beg_size - len(beg))
    end = [pad] * (end_size - len(end)) + end
    return np.asarray(beg + end, dtype=np.int32)


def build(folder: Path, small: bool) -> dict:
    """Copy magika's model; label files on disk; write calib.npz / eval.npz (input `bytes`, `labels`)."""
    config = json.loads(package_file(*CONFIG).read_text())
    space = config["target_labels_space"]
    files = find_files(per_class=8 if small else PER_CLASS)
    items = [(p, space.index(label)) for label, paths in sorted(files.items()) for p in paths]
    x = np.stack([features(p, config) for p, _ in items])
    y = np.asarray([c for _, c in items], dtype=np.int64)
    calib, ev = split(len(items), len(items) // 2, seed=0)
    save_npz(folder / "calib.npz", {"bytes": x[calib]}, y[calib])
    save_npz(folder / "eval.npz", {"bytes": x[ev]}, y[ev])
    copy_model(folder, MODEL)
    return {"source": "PyPI magika (standard_v3_3), tf2onnx, opset 15", "labels": sorted(files),
            "n_calib": len(calib), "n_eval": len(ev), "files": {k: len(v) for k, v in files.items()},
            "roots": [str(r) for r in roots()]}


def entries() -> list:
    from bench.corpus import Entry

    return [Entry("magika", "packaged", build, metric="top1", max_drop=0.01,
                  description="magika content-type CNN (214 labels) on files from disk, top-1 vs the true type",
                  ci=True)]
