"""The int8 QDQ model a float model is exported as: ONNX Runtime's static quantiser, integer end to end.

Scheme: activations uint8 asymmetric (ONNX Runtime fuses QDQ convolutions into QLinearConv only for uint8
activations on x86) (MinMax over the calibration feeds), weights int8 symmetric per channel
with `reduce_range` (7-bit weights, [-64, 63]). The reduced range is what makes ONNX Runtime itself exact on
every x86 host: its AVX2 and AVX-512 (non-VNNI) u8s8 kernels add pairs of products in saturating int16
(`vpmaddubsw`), which 255 * 127 * 2 overflows and 255 * 64 * 2 does not; the exported C never saturates, so
with 8-bit weights it would agree with ONNX Runtime on VNNI hosts only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx

from hasten.errors import ExportError


def quantize_int8(proto: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]],
                  samples: int = 32) -> onnx.ModelProto:
    """`proto` quantised to int8 QDQ for export, calibrated on up to `samples` feeds (batch 1 each)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationDataReader

    from hasten.export.lower import fixed_batch

    items = []
    for feed in feeds:
        for i in range(len(next(iter(feed.values())))):
            items.append({k: np.ascontiguousarray(v[i:i + 1]) for k, v in feed.items()})
            if len(items) >= samples:
                break
        if len(items) >= samples:
            break
    if not items:
        raise ExportError("export: no calibration samples to quantise the model with")

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(items)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory(prefix="hasten-export-q-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        onnx.save(fixed_batch(proto), src)
        quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=True, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        return onnx.load(dst)
