"""Where hasten keeps its cache (zoo models, the measured host profile), and what keys it."""

import importlib.metadata
import os
from pathlib import Path


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/hasten`, else `~/.cache/hasten`; created on first use."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "hasten"
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_version(dist: str) -> str | None:
    """The installed version of distribution `dist`, or None; part of cache keys and the environment."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
