"""Unlabelled English training text for distilling sentence encoders, built offline and deterministically.

In this order:
1. the zoo text set's "train" split (standard-library prose, disjoint from its calibration / evaluation);
2. sentences from the docstrings of the WHOLE standard library (every module but tests and idlelib), the
   same domain as the evaluation sentences;
3. sentences from the docstrings of every installed package in site-packages (at most
   `MAX_FILES_PER_PACKAGE` files each, tests skipped).
Files are parsed with `ast`, never imported; the prose filter is `hasten.zoo.text`'s. Any sentence that
appears in the calibration or evaluation split (case-insensitively) is dropped, so the evaluation stays
unseen (near-duplicates that differ by a word may remain: the docs repeat themselves). Within parts 2 and 3
the order is the sentences' sha256, so one installation always gives the same list. The mined sentences are
cached under `cache_dir()/compress/`, keyed by the Python version and the installed distributions.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sysconfig
from pathlib import Path

from hasten.fileio import atomic_write_text

MAX_FILES_PER_PACKAGE = 1500
CODE_VERSION = "corpus-2"
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _skip(parts) -> bool:
    return any("test" in p.lower() or p in ("idlelib", "site-packages", "dist-packages") for p in parts)


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if not _skip(p.relative_to(root).parts[:-1] + (p.stem,)))


def _package_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["purelib"])
    files: list[Path] = []
    for top in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isidentifier()):
        found = sorted(p for p in top.rglob("*.py") if not _skip(p.relative_to(root).parts[:-1] + (p.stem,)))
        files += found[:MAX_FILES_PER_PACKAGE]
    return files


def _sentences(files: list[Path]) -> list[str]:
    from hasten.zoo.text import docstrings, is_prose, paragraphs

    out: list[str] = []
    for path in files:
        for doc in docstrings(path):
            for para in paragraphs(doc):
                for raw in _SPLIT.split(para):
                    sentence = re.sub(r"\s+", " ", raw).strip()
                    if is_prose(sentence) and "\n" not in sentence:
                        out.append(sentence)
    return out


def _cache_file() -> Path:
    import importlib.metadata
    import sys

    from hasten.paths import cache_dir

    dists = sorted(f"{d.metadata['Name']}={d.version}" for d in importlib.metadata.distributions())
    key = "|".join([CODE_VERSION, str(MAX_FILES_PER_PACKAGE), sys.version.split()[0], *dists])
    return cache_dir() / "compress" / f"sentences-{hashlib.sha256(key.encode()).hexdigest()[:12]}.txt"


@functools.cache
def _mined() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(standard-library sentences, package sentences), deduplicated, each sorted by sha256."""
    path = _cache_file()
    if path.exists():
        stdlib, _, packages = path.read_text(encoding="utf-8").partition("\n\f\n")
        return tuple(stdlib.splitlines()), tuple(packages.splitlines())
    seen: set[str] = set()
    parts = []
    for files in (_stdlib_files(), _package_files()):
        kept = []
        for s in _sentences(files):
            if s.lower() not in seen:
                seen.add(s.lower())
                kept.append(s)
        kept.sort(key=lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest())
        parts.append(tuple(kept))
    atomic_write_text(path, "\n".join(parts[0]) + "\n\f\n" + "\n".join(parts[1]))
    return parts[0], parts[1]


def training_sentences(count: int | None = None) -> list[str]:
    """The first `count` (None: all) training sentences, in the order of the module docstring; never a
    calibration or evaluation sentence. Deterministic for a given installation."""
    from hasten.zoo import text

    base = text.sentences("train")
    if count is not None and count <= len(base):
        return base[:count]
    held_out = {s.lower() for split in ("calibration", "evaluation") for s in text.sentences(split)}
    seen = held_out | {s.lower() for s in base}
    out = list(base)
    for part in _mined():
        for s in part:
            if s.lower() not in seen:
                seen.add(s.lower())
                out.append(s)
                if count is not None and len(out) >= count:
                    return out
    return out
