"""hasten.configs.config_dict: the one config serialiser (passes, schemes, compress steps, recipes)."""

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest

from hasten.configs import config_dict, to_plain


@dataclass(frozen=True)
class Example:
    kind: ClassVar[str] = "not a field"
    alpha: float = 0.5
    names: tuple[str, ...] = ("a", "b")
    nested: dict = field(default_factory=lambda: {1: (np.float32(2.0),)})
    every: int = 200


def test_fields_in_order_as_held():
    d = config_dict(Example())
    assert list(d) == ["alpha", "names", "nested", "every"]
    assert d["names"] == ("a", "b") and "kind" not in d


def test_plain_values_are_json_and_yaml_safe():
    d = config_dict(Example(), plain=True)
    assert d == {"alpha": 0.5, "names": ["a", "b"], "nested": {"1": [2.0]}, "every": 200}
    assert type(d["nested"]["1"][0]) is float
    assert to_plain((np.int64(3), [np.float64(0.25)])) == [3, [0.25]]


def test_exclude_drops_fields():
    assert list(config_dict(Example(), exclude=("every", "nested"))) == ["alpha", "names"]


@pytest.mark.parametrize("value", [Example, {"alpha": 1}, None])
def test_only_dataclass_instances(value):
    with pytest.raises(TypeError, match="dataclass instance"):
        config_dict(value)


def test_every_kind_of_config_uses_it():
    from hasten import passes
    from hasten.compress.distill import DistillConfig
    from hasten.quantize import config_for
    from hasten.recipe import Step, normalized

    q = config_for("int8-static", calibration="mse")
    assert q.to_dict() == {"scheme": "int8-static", **config_dict(q)}
    assert DistillConfig(steps=3).fingerprint() == config_dict(DistillConfig(steps=3), exclude=("checkpoint_every",))
    p = passes.get_pass("cleanup")
    assert normalized(Step("pass", "cleanup", {})).config == config_dict(p.config, plain=True)
