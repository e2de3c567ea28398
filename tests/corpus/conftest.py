"""The corpus lives in bench/corpus/ (not an installed package): import it from the repository root; build
the CI subset once per session into a temporary cache."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("corpus")


@pytest.fixture(scope="session")
def built(corpus_root):
    """name -> Built for the CI subset (small sets), built once per test session."""
    from bench import corpus

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings
        for name in corpus.names(ci=True):
            out[name] = corpus.build(name, corpus_root, small=True)
    return out
