/* Convolution (any groups: depthwise with a multiplier too), int8 in and out, HWC activations, weights
 * [out_c][k_h][k_w][in_c / groups] (zero point 0).
 * acc[oc] = bias[oc] + sum over the window of (x - in_zp) * w; padded taps add nothing (ONNX Runtime pads
 * with the input zero point); y = hs_requant(acc, scale[oc], out_zp). */
typedef struct {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w;
    int32_t stride_h, stride_w, dil_h, dil_w, pad_t, pad_l, groups;
    int32_t in_zp, out_zp;
    const int8_t *w;
    const int32_t *bias;
    const float *scale;
} hs_conv_t;

HS_KERNEL void hs_conv(const hs_conv_t *p, const int8_t *in, int8_t *out)
{
    const int32_t cg = p->in_c / p->groups, og = p->out_c / p->groups, taps = p->k_h * p->k_w * cg;
    int32_t oy, ox, oc, ky, kx, ci;
    for (oy = 0; oy < p->out_h; oy++) {
        for (ox = 0; ox < p->out_w; ox++) {
            int8_t *o = out + (oy * p->out_w + ox) * p->out_c;
            for (oc = 0; oc < p->out_c; oc++) {
                const int8_t *w = p->w + oc * taps;
                const int32_t c0 = (oc / og) * cg;
                int32_t acc = p->bias[oc];
                for (ky = 0; ky < p->k_h; ky++) {
                    const int32_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) continue;
                    for (kx = 0; kx < p->k_w; kx++) {
                        const int32_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
                        const int8_t *x, *wk;
                        if (ix < 0 || ix >= p->in_w) continue;
                        x = in + (iy * p->in_w + ix) * p->in_c + c0;
                        wk = w + (ky * p->k_w + kx) * cg;
                        for (ci = 0; ci < cg; ci++) acc += (x[ci] - p->in_zp) * wk[ci];
                    }
                }
                o[oc] = hs_requant(acc, p->scale[oc], p->out_zp);
            }
        }
    }
}
