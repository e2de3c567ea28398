/* Pooling over HWC int8 tensors.
 * max: the window's maximum (padding ignored), same scale and zero point as the input.
 * average: ONNX Runtime's QLinearAveragePool in float: the window's dequantised values x_scale * (x - in_zp)
 *   summed in window order, divided by the count of taps inside the image (the whole kernel with
 *   count_include_pad), then quantised: round_half_even(v / y_scale + zp), zp the model's own zero point
 *   (uint8 models: out_zp + 128), saturated; scales = {x_scale, y_scale, that zero point}.
 * global average: acc = sum(x) - in_zp * H * W, y = requant(acc, x_scale / (y_scale * H * W), out_zp). */
typedef struct {
    int32_t in_h, in_w, c, out_h, out_w, k_h, k_w, stride_h, stride_w, pad_t, pad_l, include_pad;
    int32_t in_zp, out_zp;
    const float *scales; /* average: {x_scale, y_scale, y_zp as in the model}; global average: {x_scale / (y_scale * H * W)} */
} hs_pool_t;

HS_KERNEL void hs_max_pool(const hs_pool_t *p, const int8_t *in, int8_t *out)
{
    int32_t oy, ox, c, ky, kx;
    for (oy = 0; oy < p->out_h; oy++)
        for (ox = 0; ox < p->out_w; ox++)
            for (c = 0; c < p->c; c++) {
                int32_t m = -128;
                for (ky = 0; ky < p->k_h; ky++) {
                    const int32_t iy = oy * p->stride_h - p->pad_t + ky;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (kx = 0; kx < p->k_w; kx++) {
                        const int32_t ix = ox * p->stride_w - p->pad_l + kx;
                        int32_t v;
                        if (ix < 0 || ix >= p->in_w) continue;
                        v = in[(iy * p->in_w + ix) * p->c + c];
                        if (v > m) m = v;
                    }
                }
                out[(oy * p->out_w + ox) * p->c + c] = (int8_t)m;
            }
}

HS_KERNEL void hs_average_pool(const hs_pool_t *p, const int8_t *in, int8_t *out)
{
    int32_t oy, ox, c, ky, kx;
    for (oy = 0; oy < p->out_h; oy++)
        for (ox = 0; ox < p->out_w; ox++)
            for (c = 0; c < p->c; c++) {
                float acc = 0.0f;
                int32_t count = 0;
                for (ky = 0; ky < p->k_h; ky++) {
                    const int32_t iy = oy * p->stride_h - p->pad_t + ky;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (kx = 0; kx < p->k_w; kx++) {
                        const int32_t ix = ox * p->stride_w - p->pad_l + kx;
                        if (ix < 0 || ix >= p->in_w) continue;
                        acc += (float)(in[(iy * p->in_w + ix) * p->c + c] - p->in_zp) * p->scales[0];
                        count++;
                    }
                }
                if (p->include_pad) count = p->k_h * p->k_w;
                { /* quantise as ONNX Runtime does: round(v / y_scale + zp) in the model's own zero point */
                    const int32_t shift = (int32_t)p->scales[2] - p->out_zp;
                    float v = acc / (float)count / p->scales[1] + p->scales[2];
                    if (v < (float)(shift - 128)) v = (float)(shift - 128);
                    if (v > (float)(shift + 127)) v = (float)(shift + 127);
                    out[(oy * p->out_w + ox) * p->c + c] = (int8_t)(hs_round_even(v) - shift);
                }
            }
}

HS_KERNEL void hs_global_average_pool(const hs_pool_t *p, const int8_t *in, int8_t *out)
{
    const int32_t n = p->in_h * p->in_w;
    int32_t c, i;
    for (c = 0; c < p->c; c++) {
        int32_t acc = -p->in_zp * n;
        for (i = 0; i < n; i++) acc += in[i * p->c + c];
        out[c] = hs_requant(acc, p->scales[0], p->out_zp);
    }
}
