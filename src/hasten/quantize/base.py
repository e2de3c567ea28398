"""The quantisation contract (defined in hasten.quantize.scheme, re-exported here) and `quantize`, which runs it:
one frozen, typed config per scheme and exactly one handler for it.

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

import numpy as np

from hasten.errors import QuantizationError
from hasten.quantize.scheme import (  # noqa: F401  (re-exported: the schemes import them from here)
    Handler,
    QuantConfig,
    QuantResult,
    config_for,
    handler_for,
    register,
    schemes,
)


def quantize(model, config: QuantConfig, calib=None) -> QuantResult:
    """Quantise `model` with `config` (calibrating on `calib` when the scheme needs data)."""
    handler = handler_for(config)
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
