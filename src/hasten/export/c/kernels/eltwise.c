/* Element-wise Add and Mul of two int8 tensors of one shape, in ONNX Runtime's float arithmetic:
 * add: v = (a_scale * (a - a_zp) + b_scale * (b - b_zp)) / y_scale,
 * mul: v = (a - a_zp) * (b - b_zp) * scale (scale = a_scale * b_scale / y_scale),
 * y = clamp(v, -128 - y_zp, 127 - y_zp) rounded half to even + y_zp. */
typedef struct {
    uint32_t n;
    int32_t a_zp, b_zp, y_zp;
    float a_scale, b_scale, y_scale;
} hs_eltwise_t;

HS_KERNEL void hs_add(const hs_eltwise_t *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    uint32_t i;
    for (i = 0; i < p->n; i++) {
        const float va = p->a_scale * (float)(a[i] - p->a_zp), vb = p->b_scale * (float)(b[i] - p->b_zp);
        y[i] = hs_saturate_round((va + vb) / p->y_scale, p->y_zp);
    }
}

HS_KERNEL void hs_mul(const hs_eltwise_t *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    uint32_t i;
    for (i = 0; i < p->n; i++)
        y[i] = hs_requant((a[i] - p->a_zp) * (b[i] - p->b_zp), p->y_scale, p->y_zp);
}
