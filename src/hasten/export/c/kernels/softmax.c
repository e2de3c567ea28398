/* Softmax of int8 codes as ONNX Runtime's QLinearSoftmax computes it: for each slice of `d` values (`inner`
 * apart), with m its largest code, e_j = table[m - x_j] (float: exp((x_j - m + shift) * x_scale), the shift
 * keeping the sum in range), sum = e_0 + ... + e_{d-1} in order, y_j = round_half_even(e_j * y_scale / sum)
 * + y_zp, where y_scale = floor(1 / scale of y). The result is capped at 255 and stored as ONNX Runtime
 * stores it: uint8 (as v - 128 here), or int8 by wrapping (its cast of 128..255 to int8). */
typedef struct {
    int32_t outer, d, inner;
    float y_scale;
    int32_t y_zp; /* ONNX Runtime's own zero point: 0..255 (uint8) or -128..127 (int8) */
    int32_t is_signed;
    const float *table; /* 256 entries */
} hs_softmax_t;

HS_KERNEL void hs_softmax(const hs_softmax_t *p, const int8_t *x, int8_t *y)
{
    int32_t o, k, j;
    for (o = 0; o < p->outer; o++) {
        for (k = 0; k < p->inner; k++) {
            const int8_t *xs = x + (o * p->d) * p->inner + k;
            int8_t *ys = y + (o * p->d) * p->inner + k;
            int32_t m = xs[0];
            float sum = 0.0f;
            for (j = 1; j < p->d; j++)
                if (xs[j * p->inner] > m) m = xs[j * p->inner];
            for (j = 0; j < p->d; j++) sum += p->table[m - xs[j * p->inner]];
            for (j = 0; j < p->d; j++) {
                const float v = (p->table[m - xs[j * p->inner]] * p->y_scale) / sum;
                int32_t q = hs_round_even(v) + p->y_zp;
                if (q > 255) q = 255;
                ys[j * p->inner] = (int8_t)(p->is_signed ? (q >= 128 ? q - 256 : q) : q - 128);
            }
        }
    }
}
