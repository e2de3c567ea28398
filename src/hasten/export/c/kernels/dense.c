/* Dense (Gemm / MatMul with constant weights): y[n] = requant(bias[n] + sum_k (x[k] - in_zp) * w[n][k]).
 * `hs_dense_f32` is the same accumulator scaled to float (ONNX Runtime's QGemm with a float output:
 * y = float(acc) * scale[n], scale = x_scale * w_scale[n]). */
typedef struct {
    int32_t k, n;
    int32_t in_zp, out_zp;
    const int8_t *w;
    const int32_t *bias;
    const float *scale;
} hs_dense_t;

HS_KERNEL int32_t hs_dense_acc(const hs_dense_t *p, const int8_t *x, int32_t j)
{
    const int8_t *w = p->w + j * p->k;
    int32_t acc = p->bias[j], i;
    for (i = 0; i < p->k; i++) acc += (x[i] - p->in_zp) * w[i];
    return acc;
}

HS_KERNEL void hs_dense(const hs_dense_t *p, const int8_t *x, int8_t *y)
{
    int32_t j;
    for (j = 0; j < p->n; j++) y[j] = hs_requant(hs_dense_acc(p, x, j), p->scale[j], p->out_zp);
}

HS_KERNEL void hs_dense_f32(const hs_dense_t *p, const int8_t *x, float *y)
{
    int32_t j;
    for (j = 0; j < p->n; j++) y[j] = (float)hs_dense_acc(p, x, j) * p->scale[j];
}
