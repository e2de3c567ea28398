"""A numpy model of the int8 dot product that saturates (x86 without VNNI/AMX), and the 7-bit rule built on it.

On AVX2 and AVX-512 without VNNI, ONNX Runtime's (MLAS) and oneDNN's u8 x s8 kernels compute, for each pair
of consecutive K elements (2k, 2k+1) of a row of A (uint8) and a column of B (int8),

    vpmaddubsw:  p = sat16(a[2k] * w[2k] + a[2k+1] * w[2k+1])       (int16 saturation: [-32768, 32767])
    vpmaddwd:    int32 sum of two such p (exact), accumulated in int32 (exact)

so C = sum_k sat16(pair_k); odd K is padded with a zero. With VNNI (`vpdpbusd`) or AMX the pairs go straight
into int32 and C is the exact product. The zero points are applied outside the kernel: ONNX Runtime computes
sum (a - za)(w - zw) as A.W - za sum(w) - ... in int32, so the pairs see the *raw* uint8 activations
(0..255), and symmetric int8 weights (zw = 0). Signed (int8) activations are run by the same u8 x s8 kernel
after flipping the sign bit: a_u8 = a_s8 + 128, za_u8 = za_s8 + 128 (MLAS `FixupZeroPointA`; oneDNN shifts by
128 and compensates). With weights in 7 bits, |w| <= 64: |a0 w0 + a1 w1| <= 2 * 255 * 64 = 32640, no pair can
saturate.

Conv runs the same kernels on im2col patches in (kernel row, kernel column, input channel) order with the
input channel fastest (ONNX Runtime reorders filters to HWIO and runs NHWC), per group; depthwise Conv uses a
widening kernel that does not saturate.

- `pair_sums(a, w)`: every pair sum (N, ceil(K/2), M), exact int32 (small inputs; the reference).
- `saturating_matmul(a, w)`: what the saturating kernel returns, int64 (N, M), fast for real layers.
- `saturation_rate(a, w)`: the fraction of pair sums that clip.
- `conv_rows(x, w_shape, ...)` / `conv_weight_matrix(w)`: the im2col view of a Conv, per group.
- `compare_layer(...)`: for one layer, the output SQNR of 8-bit weights through the saturating kernel vs
  7-bit weights through it (never clips), against the float product; `seven_bit` says which is closer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT16_MIN, INT16_MAX = -32768, 32767
#: |w0| + |w1| at or below this cannot saturate with any uint8 activations (255 * 128 = 32640)
SAFE_PAIR_ABS = 128


def _pairs(a: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a int64 [N, K'], w int64 [K', M]) with K' = K rounded up to even (zero padding)."""
    a = np.asarray(a)
    w = np.asarray(w)
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[0]:
        raise ValueError(f"need a [N, K] and w [K, M], got {a.shape} and {w.shape}")
    if a.dtype != np.uint8 or w.dtype != np.int8:
        raise ValueError(f"the saturating kernel multiplies uint8 by int8, got {a.dtype} x {w.dtype}")
    a, w = a.astype(np.int64), w.astype(np.int64)
    if a.shape[1] % 2:
        a = np.pad(a, ((0, 0), (0, 1)))
        w = np.pad(w, ((0, 1), (0, 0)))
    return a, w


def pair_sums(a_u8: np.ndarray, w_s8: np.ndarray) -> np.ndarray:
    """Every unsaturated pair sum a[n,2k] w[2k,m] + a[n,2k+1] w[2k+1,m] as int32 [N, ceil(K/2), M]."""
    a, w = _pairs(a_u8, w_s8)
    return (a[:, 0::2, None] * w[None, 0::2, :] + a[:, 1::2, None] * w[None, 1::2, :]).astype(np.int32)


def _overflow(a: np.ndarray, w: np.ndarray, chunk: int = 4096):
    """(correction [N, M] = saturated - exact, clipped count) over the (pair, column) cells that can clip."""
    w0, w1 = w[0::2], w[1::2]
    p_idx, m_idx = np.nonzero(np.abs(w0) + np.abs(w1) > SAFE_PAIR_ABS)
    corr = np.zeros((a.shape[0], w.shape[1]), dtype=np.int64)
    clipped = 0
    a0, a1 = a[:, 0::2], a[:, 1::2]
    for start in range(0, len(p_idx), chunk):
        p, m = p_idx[start:start + chunk], m_idx[start:start + chunk]
        s = a0[:, p] * w0[p, m] + a1[:, p] * w1[p, m]
        over = np.clip(s, INT16_MIN, INT16_MAX) - s
        nz = over != 0
        if nz.any():
            clipped += int(nz.sum())
            rows, cols = np.nonzero(nz)
            np.add.at(corr, (rows, m[cols]), over[rows, cols])
    return corr, clipped


def _int_matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The exact integer product through float64 BLAS: every partial sum is an integer below 2^53
    (|sum| <= K * 255 * 128), so no rounding happens; numpy's int64 matmul has no BLAS and is ~50x slower."""
    return np.rint(a.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)


def saturating_matmul(a_u8: np.ndarray, w_s8: np.ndarray) -> np.ndarray:
    """A.W as the vpmaddubsw + vpmaddwd kernel computes it (int16-saturated pair sums), int64 [N, M]."""
    a, w = _pairs(a_u8, w_s8)
    exact = _int_matmul(a, w)
    corr, _ = _overflow(a, w)
    return exact + corr


def saturation_rate(a_u8: np.ndarray, w_s8: np.ndarray) -> float:
    """Fraction of the N * ceil(K/2) * M pair sums that leave the int16 range."""
    a, w = _pairs(a_u8, w_s8)
    _, clipped = _overflow(a, w)
    return clipped / max(1, a.shape[0] * (a.shape[1] // 2) * w.shape[1])


def as_kernel_input(q: np.ndarray, zero_point, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 activations, zero point) as the u8 x s8 kernel sees them: int8 is shifted by +128."""
    if np.dtype(dtype) == np.int8:
        return (q.astype(np.int16) + 128).astype(np.uint8), np.asarray(zero_point, np.int64) + 128
    return q.astype(np.uint8), np.asarray(zero_point, np.int64)


# -- Conv as a matrix product ----------------------------------------------------------------------------
def conv_weight_matrix(w: np.ndarray, group: int = 1) -> list[np.ndarray]:
    """Per group, the filter [O, I/g, kh, kw] as a [kh*kw*I/g, O/g] matrix (input channel fastest)."""
    o = w.shape[0]
    per = o // group
    return [w[g * per:(g + 1) * per].transpose(2, 3, 1, 0).reshape(-1, per) for g in range(group)]


def conv_rows(x: np.ndarray, kernel: tuple[int, ...], strides=None, pads=None, dilations=None,
              group: int = 1) -> list[np.ndarray]:
    """Per group, the im2col rows [N*OH*OW, kh*kw*C/g] of a 2-D Conv input x [N, C, H, W] (padding value
    `0.0`: pass the float input; a padded zero quantises to the zero point like the runtime's padding)."""
    if x.ndim != 4 or len(kernel) != 2:
        raise ValueError(f"conv_rows models 2-D Conv only (x [N, C, H, W]), got x {x.shape}")
    kh, kw = kernel
    sh, sw = strides or (1, 1)
    dh, dw = dilations or (1, 1)
    pt, pl, pb, pr = pads or (0, 0, 0, 0)
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    win = np.lib.stride_tricks.sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # [N, C, OH, OW, kh, kw]
    n, c, oh, ow = win.shape[:4]
    per = c // group
    out = []
    for g in range(group):
        part = win[:, g * per:(g + 1) * per]  # [N, C/g, OH, OW, kh, kw] -> [N, OH, OW, kh, kw, C/g]
        out.append(part.transpose(0, 2, 3, 4, 5, 1).reshape(n * oh * ow, kh * kw * per))
    return out


# -- the rule --------------------------------------------------------------------------------------------
@dataclass
class LayerSaturation:
    """One layer measured by the numpy model: rate of clipped pair sums with 8-bit weights, and the output
    SQNR (dB, vs the float product) of 8-bit weights through the saturating kernel and of 7-bit weights."""

    rate: float
    sqnr_8bit_db: float
    sqnr_7bit_db: float

    @property
    def seven_bit(self) -> bool:
        return bool(self.sqnr_7bit_db > self.sqnr_8bit_db)

    def to_dict(self) -> dict:
        return {"rate": float(self.rate), "sqnr_8bit_saturating_db": round(float(self.sqnr_8bit_db), 2),
                "sqnr_7bit_db": round(float(self.sqnr_7bit_db), 2), "seven_bit": bool(self.seven_bit)}


def _sqnr(ref: np.ndarray, err: np.ndarray) -> float:
    num, den = float(np.sum(ref * ref)), float(np.sum(err * err))
    if den == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(num, 1e-30) / den)


def _dequantised(acc: np.ndarray, za, sa, q: np.ndarray, sw) -> np.ndarray:
    acc = acc - np.int64(za) * q.astype(np.int64).sum(axis=0)[None, :]
    return acc.astype(np.float64) * float(sa) * np.broadcast_to(np.asarray(sw, np.float64), (q.shape[1],))


def compare_layer(parts, act_dtype: str = "uint8") -> LayerSaturation:
    """Measure one layer from `parts` = [(x float [R, K], act_scale, act_zero_point, w float [K, M],
    q8 int8 [K, M], s8 [M] or scalar, q7 int8 [K, M], s7)]: one entry per group (Conv) or per set of rows
    sharing activation parameters (dynamic int8 quantises each run's input with its own range)."""
    from hasten.quantize.primitives import quantize

    ref_all, e8_all, e7_all, clipped, total = [], [], [], 0, 0
    for x, sa, za, w, q8, s8, q7, s7 in parts:
        a, zk = as_kernel_input(quantize(x, sa, za, act_dtype), za, act_dtype)
        ref = x.astype(np.float64) @ w.astype(np.float64)
        ap, wp = _pairs(a, q8)
        corr, n_clipped = _overflow(ap, wp)
        y8 = _dequantised(_int_matmul(ap, wp) + corr, zk, sa, q8, s8)
        y7 = _dequantised(_int_matmul(a, q7), zk, sa, q7, s7)  # 7 bits never clip
        clipped += n_clipped
        total += a.shape[0] * (ap.shape[1] // 2) * q8.shape[1]
        ref_all.append(ref.ravel())
        e8_all.append((y8 - ref).ravel())
        e7_all.append((y7 - ref).ravel())
    ref, e8, e7 = (np.concatenate(v) for v in (ref_all, e8_all, e7_all))
    return LayerSaturation(clipped / max(1, total), _sqnr(ref, e8), _sqnr(ref, e7))
