"""Quantisation: one frozen config per scheme, one handler each (hasten.quantize.base).

    from hasten.quantize import quantize, config_for
    result = quantize(model, config_for("int8-static", calibration="mse", smoothquant=0.5), calib)

Schemes: int8-dynamic, int8-static (hasten.quantize.int8), and the weight-only, float16 and binary schemes.
The maths lives in hasten.quantize.primitives, the statistics in hasten.quantize.stats (collected once,
streamed), the ranges in hasten.quantize.calibrate, SmoothQuant in hasten.quantize.smoothquant.
"""

import sys
import types

from hasten.quantize import int8  # noqa: F401  (registers int8-dynamic, int8-static)
from hasten.quantize.base import QuantConfig, QuantResult, config_for, quantize, schemes
from hasten.quantize.int8 import Int8DynamicConfig, Int8StaticConfig, quantize_static
from hasten.quantize.stats import ActivationStats, collect_stats

for _name in ("weight_only", "float16", "binary"):  # the other schemes register themselves on import
    try:
        __import__(f"hasten.quantize.{_name}")
    except ImportError as _exc:  # not written yet, or an optional dependency is missing
        if _exc.name not in (f"hasten.quantize.{_name}",):
            raise

__all__ = ["ActivationStats", "Int8DynamicConfig", "Int8StaticConfig", "QuantConfig", "QuantResult",
           "collect_stats", "config_for", "quantize", "quantize_static", "schemes"]


class _CallablePackage(types.ModuleType):
    """`hasten.quantize(...)` is the public function even after this package is imported: Python binds the
    subpackage to the name `hasten.quantize`, so the package itself forwards calls to `quantize`."""

    def __call__(self, *args, **kwargs):
        return quantize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
