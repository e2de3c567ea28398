"""The quantisation maths: three pure functions, options as arguments (ARCHITECTURE.md habit 4).

Affine quantisation of a real x to an integer q of `dtype` (int8: [-128, 127], uint8: [0, 255]):

    q = clip(round_half_even(x / scale) + zero_point, qmin, qmax)        (ONNX QuantizeLinear)
    x̂ = (q - zero_point) * scale                                        (ONNX DequantizeLinear)

`choose_qparams(lo, hi, dtype, symmetric)` picks (scale, zero_point) so the range [lo, hi] (widened to
include 0, so that 0 is exact) maps onto the integer range:
- asymmetric: scale = (hi - lo) / (qmax - qmin), zero_point = round(qmin - lo / scale), clipped;
- symmetric:  zero_point = 0 (int8) or 128 (uint8), scale = max(|lo|, |hi|) / 127 (int8, the restricted
  range [-127, 127] so that -x quantises to -q) or max(|lo|, |hi|) / 127.5 (uint8);
- `reduce_range`: one bit fewer (int8 [-64, 63], uint8 [0, 127]), for kernels without VNNI that overflow.
A zero range gives scale 1 (any value then quantises to the zero point without dividing by zero).
Inside the range the round-trip error is at most scale / 2.

Per-channel: `lo`/`hi` are arrays (one value per channel) and `axis` names the channel axis of `x` in
`quantize`/`dequantize`; scale and zero_point then have one entry per channel.
"""

from __future__ import annotations

import numpy as np

QTYPES = {"int8": np.int8, "uint8": np.uint8}


def qrange(dtype="int8", reduce_range: bool = False, symmetric: bool = False) -> tuple[int, int]:
    """(qmin, qmax) of `dtype`; symmetric int8 uses the restricted range [-127, 127]."""
    name = np.dtype(dtype).name
    if name == "int8":
        lo, hi = (-64, 63) if reduce_range else (-128, 127)
        if symmetric:
            lo = -hi
        return lo, hi
    if name == "uint8":
        return (0, 127) if reduce_range else (0, 255)
    raise ValueError(f"unsupported quantised dtype {dtype!r}; use int8 or uint8")


def choose_qparams(lo, hi, dtype="int8", symmetric: bool = False, axis: int | None = None,
                   reduce_range: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(scale float32, zero_point of `dtype`) mapping [lo, hi] onto `dtype`; arrays when per-channel.

    `lo`/`hi` are scalars (per-tensor) or 1-D arrays (per-channel along `axis`; `axis` is recorded only
    by the caller, the result has the shape of `lo`)."""
    lo = np.minimum(np.asarray(lo, dtype=np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, dtype=np.float64), 0.0)
    if lo.shape != hi.shape:
        raise ValueError(f"lo and hi differ in shape: {lo.shape} vs {hi.shape}")
    if axis is not None and lo.ndim != 1:
        raise ValueError("per-channel qparams need 1-D lo/hi arrays")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError("quantisation range is not finite")
    qtype = np.dtype(dtype)
    qmin, qmax = qrange(qtype, reduce_range, symmetric)
    if symmetric:
        absmax = np.maximum(-lo, hi)
        if qtype.name == "int8":
            scale = absmax / qmax
            zp = np.zeros_like(absmax)
        else:  # uint8 centred on the middle of its range (128; 64 with reduce_range)
            mid = (qmax + 1) // 2
            scale = absmax / (qmax - mid) if reduce_range else absmax / 127.5
            zp = np.full_like(absmax, mid)
    else:
        scale = (hi - lo) / (qmax - qmin)
        with np.errstate(divide="ignore", invalid="ignore"):
            zp = np.where(scale > 0, np.round(qmin - lo / np.where(scale > 0, scale, 1.0)), 0.0)
        zp = np.clip(zp, qmin, qmax)
    scale = np.where(scale > 0, scale, 1.0)
    return scale.astype(np.float32), np.asarray(zp).astype(qtype)


def _expand(p: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    p = np.asarray(p)
    if p.ndim == 0 or axis is None:
        return p
    axis = axis % ndim
    shape = [1] * ndim
    shape[axis] = p.shape[0]
    return p.reshape(shape)


def quantize(x, scale, zero_point, dtype="int8", axis: int | None = None) -> np.ndarray:
    """ONNX QuantizeLinear: clip(round_half_even(x / scale) + zero_point) as `dtype`."""
    x = np.asarray(x, dtype=np.float32)
    qmin, qmax = qrange(dtype)
    s = _expand(np.asarray(scale, dtype=np.float32), x.ndim, axis)
    zp = _expand(np.asarray(zero_point).astype(np.int32), x.ndim, axis)
    q = np.rint(x / s) + zp
    return np.clip(q, qmin, qmax).astype(np.dtype(dtype))


def dequantize(q, scale, zero_point, axis: int | None = None) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zero_point) * scale as float32."""
    q = np.asarray(q)
    s = _expand(np.asarray(scale, dtype=np.float32), q.ndim, axis)
    zp = _expand(np.asarray(zero_point).astype(np.int32), q.ndim, axis)
    return ((q.astype(np.int32) - zp).astype(np.float32) * s).astype(np.float32)


def fake_quantize(x, lo, hi, dtype="int8", symmetric: bool = False, axis: int | None = None,
                  reduce_range: bool = False) -> np.ndarray:
    """dequantize(quantize(x)) with qparams chosen from [lo, hi]: the float value the model will see."""
    scale, zp = choose_qparams(lo, hi, dtype, symmetric, axis, reduce_range)
    return dequantize(quantize(x, scale, zp, dtype, axis), scale, zp, axis)
