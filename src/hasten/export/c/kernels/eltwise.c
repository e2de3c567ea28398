/* Element-wise Add and Mul of two int8 tensors of one shape, as ONNX Runtime computes them on x86 (MLAS).
 *
 * add (QLinearAdd, MLAS's AVX2 kernel, also used on AVX-512 hosts): on the native values a, b (a uint8
 * tensor's stored code + 128), y = fma(a, ratio_a, fma(b, ratio_b, fixed)) with ratio_a = a_scale / y_scale,
 * ratio_b = b_scale / y_scale and fixed = y_zp - fma(ratio_a, a_zp, ratio_b * b_zp), all in single precision
 * (fixed is formed by the exporter); y rounded half to even and saturated to the native range.
 * mul (QLinearMul, MLAS's SSE2 kernel): v = float((a - a_zp) * (b - b_zp)) * scale + y_zp on native values
 * (scale = a_scale * b_scale / y_scale, formed by the exporter; the zero point is added in float, before
 * the rounding), rounded half to even and saturated. */
typedef struct {
    uint32_t n;
    int32_t offset; /* native value - stored code: 128 for uint8 tensors, 0 for int8 */
    float ratio_a, ratio_b, fixed;
} hs_add_t;

typedef struct {
    uint32_t n;
    int32_t a_zp, b_zp; /* stored zero points: a - a_zp is the same on stored and native values */
    int32_t offset;     /* native value - stored code: 128 for uint8 tensors, 0 for int8 */
    float scale, y_zp;  /* y_zp: the native zero point */
} hs_mul_t;

/* fma(x, y, z) of floats, rounded once: x * y is exact in double; the double sum is made round-to-odd
 * (its exact error found by TwoSum), after which rounding to float is correct (double has 53 >= 2 * 24 + 2
 * bits). Plain C: no fmaf() from libm, and the same on a Cortex-M3 without FPU. */
static inline float hs_fma(float x, float y, float z)
{
    const double p = (double)x * (double)y;
    double s = p + (double)z;
    const double t = s - p;
    const double e = (p - (s - t)) + ((double)z - t);
    if (e != 0.0) {
        uint64_t bits;
        memcpy(&bits, &s, sizeof bits);
        if ((bits & 1u) == 0) {
            bits = ((e > 0.0) == (s > 0.0)) ? bits + 1u : bits - 1u;
            memcpy(&s, &bits, sizeof bits);
        }
    }
    return (float)s;
}

HS_KERNEL void hs_add(const hs_add_t *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    const float lo = (float)(-128 + p->offset), hi = (float)(127 + p->offset);
    uint32_t i;
    for (i = 0; i < p->n; i++) {
        const float inner = hs_fma((float)(b[i] + p->offset), p->ratio_b, p->fixed);
        float v = hs_fma((float)(a[i] + p->offset), p->ratio_a, inner);
        if (v < lo) v = lo;
        if (v > hi) v = hi;
        y[i] = (int8_t)(hs_round_even(v) - p->offset);
    }
}

HS_KERNEL void hs_mul(const hs_mul_t *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    const float lo = (float)(-128 + p->offset), hi = (float)(127 + p->offset);
    uint32_t i;
    for (i = 0; i < p->n; i++) {
        float v = (float)((a[i] - p->a_zp) * (b[i] - p->b_zp)) * p->scale + p->y_zp;
        if (v < lo) v = lo;
        if (v > hi) v = hi;
        y[i] = (int8_t)(hs_round_even(v) - p->offset);
    }
}
