"""Shared fixtures."""

from __future__ import annotations

import onnx
import pytest
from modelkit import make_mlp

import hasten


@pytest.fixture
def mlp_proto() -> onnx.ModelProto:
    return make_mlp()


@pytest.fixture
def mlp(mlp_proto) -> hasten.Model:
    return hasten.load(mlp_proto)
