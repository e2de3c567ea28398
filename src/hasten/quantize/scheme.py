"""The scheme contract, a leaf of `hasten.quantize`: one frozen, typed config per scheme (`QuantConfig`),
what a handler returns (`QuantResult`), and the registry of exactly one handler per config class.
`hasten.quantize.base` re-exports these names and runs a config (`quantize`); `prepare` reads configs only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from hasten.configs import config_dict
from hasten.errors import QuantizationError


@dataclass(frozen=True)
class QuantConfig:
    """Base of every scheme's config. Subclasses set `scheme` and add typed, defaulted fields."""

    scheme: ClassVar[str] = ""
    #: fewest calibration items the scheme needs (0: none)
    min_samples: ClassVar[int] = 0
    #: the `search_space()` options that can change what the runtime executes (and so its speed); the others
    #: only move numbers (calibration, rounding). None: any option may change speed. The tuner tries only
    #: these on a candidate already inside the accuracy budget: the others cannot make it faster.
    speed_options: ClassVar[tuple[str, ...] | None] = None
    #: the order the search tries schemes in (lower first, then by name): under a tight time budget the
    #: scheme with the most to gain should not wait behind the others
    search_priority: ClassVar[int] = 50
    #: the arithmetic it needs (pruned where the backend does not compute in it on the target); None: any
    compute_dtype: ClassVar[str | None] = None
    #: op domains beyond the standard ones its output holds (it runs on backends that execute them)
    emits_domains: ClassVar[tuple[str, ...]] = ()
    #: tried by the search only when asked for by name
    experimental: ClassVar[bool] = False

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, **config_dict(self)}

    def min_opset(self) -> int:
        """The default-domain opset this config's output needs (0: any); `prepare` upgrades to it."""
        return 0

    @classmethod
    def search_space(cls) -> dict[str, list]:
        """Option values worth trying for this scheme (read by the tuner); {} when none."""
        return {}


@dataclass
class QuantResult:
    """A quantised model, its config, and a report of what was done (nodes quantised, kept in float, why)."""

    model: object  # hasten.model.Model
    config: QuantConfig
    report: dict = field(default_factory=dict)


Handler = Callable[..., QuantResult]
_HANDLERS: dict[type, Handler] = {}
_SCHEMES: dict[str, type] = {}


def register(config_cls: type[QuantConfig]):
    """Register the one handler `fn(model, config, calib) -> QuantResult` of `config_cls`."""

    def wrap(fn: Handler) -> Handler:
        if config_cls in _HANDLERS or config_cls.scheme in _SCHEMES:
            raise ValueError(f"quantisation scheme {config_cls.scheme!r} is registered twice")
        if not config_cls.scheme:
            raise ValueError(f"{config_cls.__name__} has no scheme name")
        _HANDLERS[config_cls] = fn
        _SCHEMES[config_cls.scheme] = config_cls
        return fn

    return wrap


def schemes() -> dict[str, type[QuantConfig]]:
    """Registered scheme name -> config class (importing hasten.quantize registers the built-ins)."""
    return dict(_SCHEMES)


def config_for(scheme: str, **options) -> QuantConfig:
    """The config of `scheme` with `options`; unknown schemes or options raise QuantizationError."""
    if scheme not in _SCHEMES:
        raise QuantizationError(f"unknown scheme {scheme!r}; choose from {', '.join(sorted(_SCHEMES))}")
    cls = _SCHEMES[scheme]
    names = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(options) - names)
    if bad:
        raise QuantizationError(f"scheme {scheme!r} has no option(s) {bad}; it takes {sorted(names)}")
    return cls(**options)


def handler_for(config: QuantConfig) -> Handler | None:
    """The handler registered for `config`'s class, or None."""
    return _HANDLERS.get(type(config))
