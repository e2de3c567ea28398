/* Data movement: requantising copies (Concat parts with their own scale) and the HWC <-> CHW transposes at
 * the model's boundaries and before a flatten. */
HS_KERNEL void hs_transpose(const int8_t *in, int8_t *out, int32_t rows, int32_t cols)
{ /* out[c][r] = in[r][c] */
    int32_t r, c;
    for (r = 0; r < rows; r++)
        for (c = 0; c < cols; c++) out[c * rows + r] = in[r * cols + c];
}

/* Concat along the innermost stored axis of `outer` rows: each part's rows of `width` bytes, requantised
 * to the output's scale unless it already has it (scale == 0 marks a plain copy). */
HS_KERNEL void hs_concat_part(const int8_t *in, int8_t *out, int32_t outer, int32_t width, int32_t out_width,
                           float scale, int32_t in_zp, int32_t out_zp)
{
    int32_t r, i;
    for (r = 0; r < outer; r++) {
        if (scale == 0.0f) {
            memcpy(out + r * out_width, in + r * width, (size_t)width);
        } else {
            for (i = 0; i < width; i++)
                out[r * out_width + i] = hs_requant(in[r * width + i] - in_zp, scale, out_zp);
        }
    }
}

/* Transpose of up to 6 axes: out[n] for n over the output in storage order, read at
 * in[sum_k idx_k * strides[k]] (strides[k]: the input's stride of output axis k). */
typedef struct {
    int32_t rank;
    int32_t dims[6];
    int32_t strides[6];
} hs_permute_t;

HS_KERNEL void hs_permute(const hs_permute_t *p, const int8_t *in, int8_t *out)
{
    int32_t idx[6] = {0, 0, 0, 0, 0, 0};
    int32_t total = 1, n, k, off = 0;
    for (k = 0; k < p->rank; k++) total *= p->dims[k];
    for (n = 0; n < total; n++) {
        out[n] = in[off];
        for (k = p->rank - 1; k >= 0; k--) {
            idx[k]++;
            off += p->strides[k];
            if (idx[k] < p->dims[k]) break;
            off -= p->strides[k] * p->dims[k];
            idx[k] = 0;
        }
    }
}
