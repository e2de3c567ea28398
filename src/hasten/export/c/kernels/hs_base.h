/* hasten kernels: shared definitions. Plain C99; only memcpy/memset from libc.
 *
 * Requantisation is ONNX Runtime's (MlasRequantizeOutput): y = clamp(float(acc) * scale, -128 - zp, 127 - zp)
 * rounded half to even, plus zp. The rounding adds and subtracts 1.5 * 2^23 in single precision, which is
 * exact for |v| < 2^22 (the clamp guarantees |v| <= 255). Build with -ffp-contract=off (no fused
 * multiply-add) and single-precision float (no excess precision) so every step rounds as in ONNX Runtime. */
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define HS_KERNEL static __attribute__((unused)) /* a model uses only some of the kernels of a file */
#else
#define HS_KERNEL static
#endif

/* round half to even of a float known to satisfy |v| < 2^22 */
static inline int32_t hs_round_even(float v)
{
    int32_t bits;
    v += 12582912.0f; /* 1.5 * 2^23: the mantissa now holds round-half-even(v) */
    memcpy(&bits, &v, sizeof bits);
    return bits - 0x4B400000;
}

/* quantise a float: clamp(v, -128 - zp, 127 - zp) rounded half to even, plus zp (MlasQuantizeLinear) */
static inline int8_t hs_saturate_round(float v, int32_t zp)
{
    const float lo = (float)(-128 - zp), hi = (float)(127 - zp);
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int8_t)(hs_round_even(v) + zp);
}

static inline int8_t hs_requant(int32_t acc, float scale, int32_t zp)
{
    return hs_saturate_round((float)acc * scale, zp);
}
