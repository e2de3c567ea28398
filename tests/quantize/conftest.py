"""Fixtures shared by the sensitivity and mixed-precision tests: the outlier MLP and its data."""

from __future__ import annotations

import pytest
from modelkit import make_outlier_mlp

import hasten
from hasten.data import Samples


@pytest.fixture(scope="module")
def outlier() -> hasten.Model:
    """modelkit.make_outlier_mlp with its default hard layer (fc2)."""
    return hasten.load(make_outlier_mlp())


@pytest.fixture(scope="module")
def outlier_calib(outlier):
    return Samples.synthetic(outlier, 32, seed=0)


@pytest.fixture(scope="module")
def outlier_held(outlier):
    return Samples.synthetic(outlier, 32, seed=1)
