"""Where hasten keeps its cache (zoo models, the measured host profile)."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/hasten`, else `~/.cache/hasten`; created on first use."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "hasten"
    path.mkdir(parents=True, exist_ok=True)
    return path
