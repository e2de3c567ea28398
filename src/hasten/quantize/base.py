"""The quantisation contract: one frozen, typed config per scheme and exactly one handler for it.

    @dataclass(frozen=True)
    class Int8StaticConfig(QuantConfig):
        scheme: ClassVar[str] = "int8-static"
        calibration: str = "minmax"
        ...

    @register(Int8StaticConfig)
    def quantize_int8_static(model, config, calib) -> QuantResult: ...

`quantize(model, config, calib)` prepares the model (hasten.quantize.prepare: weights folded into
initializers, the opset upgraded to the config's `min_opset()`, or per-tensor where that fails; recorded in
the result's `report["prepare"]`), dispatches to the handler, then runs the result on the calibration samples
and refuses (QuantizationError) a model whose outputs hold NaN or inf: such a model is never a success.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

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
        return {"scheme": self.scheme, **dataclasses.asdict(self)}

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


def quantize(model, config: QuantConfig, calib=None) -> QuantResult:
    """Quantise `model` with `config` (calibrating on `calib` when the scheme needs data)."""
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise QuantizationError(f"no handler for {type(config).__name__}")
    if config.min_samples:
        if calib is None:
            raise QuantizationError(f"scheme {config.scheme} needs calibration samples (--calib DATA), at "
                                    f"least {config.min_samples}")
        if len(calib) < config.min_samples:
            raise QuantizationError(f"scheme {config.scheme} needs at least {config.min_samples} calibration "
                                    f"samples, got {len(calib)}; give more")
        calib.validate(model)
        calib.check_finite()
    from hasten.quantize.prepare import prepare

    prepared = prepare(model, config)
    result = handler(prepared.model, prepared.config, calib)
    result.report = {**(result.report or {}), "prepare": prepared.report}
    if calib is not None:
        check_finite_outputs(result.model, calib.take(min(len(calib), 16)), config.scheme)
    return result


def check_finite_outputs(model, samples, what: str) -> None:
    """Raise QuantizationError if `model` yields NaN/inf on `samples` (on the reference backend)."""
    from hasten.backends import reference_backend, run_samples

    outs = run_samples(reference_backend().compile(model), samples)
    bad = [name for name, v in outs.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]
    if bad:
        raise QuantizationError(f"{what}: the quantised model produces NaN/inf in output(s) {bad}; "
                                "not written. Keep the offending layers in float (mixed precision)")
