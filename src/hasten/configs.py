"""The one config serialiser: a dataclass config (a pass's, a scheme's, a step's, the search's settings)
to a dict, in field order. A leaf module: it imports nothing of hasten.

    config_dict(config)                   {field: value} as the config holds them (tuples stay tuples)
    config_dict(config, plain=True)       JSON/YAML-safe (`to_plain`): tuples become lists, numpy scalars Python ones
    config_dict(config, exclude=("checkpoint_every",))   without fields that do not define the result
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

__all__ = ["config_dict", "to_plain"]


def to_plain(value):
    """JSON/YAML-safe copy of a config value: dict keys become strings, tuples lists, numpy scalars Python."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def config_dict(config, *, plain: bool = False, exclude: Iterable[str] = ()) -> dict:
    """{field name: value} of the dataclass instance `config`, in field order (class variables are not
    fields, so they are not included); TypeError for anything that is not a dataclass instance."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config_dict expects a dataclass instance, got {type(config).__name__}")
    skip = set(exclude)
    out = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in skip}
    return {k: to_plain(v) for k, v in out.items()} if plain else out
