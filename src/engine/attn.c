/*
 * Scalar attention for one (token, head) pair (see attn.h) and the ISA dispatch. Scores are
 * computed in chunks of ATTN_CHUNK positions on the stack; when a chunk raises the running
 * maximum, the accumulated output and denominator are rescaled, so the result equals a full
 * softmax over all positions without a buffer of n_ctx floats.
 */
#include "engine/attn.h"

#include <math.h>

#define ATTN_CHUNK 64

void dais_attn_head_scalar(const float *q, const float *k, const float *v, int64_t stride,
                           int32_t n_pos, int32_t hd, float scale, float *out)
{
    float s[ATTN_CHUNK];
    float m = -INFINITY; /* running maximum of the scores */
    float l = 0.0f;      /* running sum of exp(score - m) */
    for (int32_t i = 0; i < hd; i++)
        out[i] = 0.0f;
    for (int32_t p0 = 0; p0 < n_pos; p0 += ATTN_CHUNK) {
        int32_t n = n_pos - p0 < ATTN_CHUNK ? n_pos - p0 : ATTN_CHUNK;
        float cm = -INFINITY;
        for (int32_t j = 0; j < n; j++) {
            const float *kr = k + (int64_t)(p0 + j) * stride;
            float d = 0.0f;
            for (int32_t i = 0; i < hd; i++)
                d += q[i] * kr[i];
            s[j] = d * scale;
            if (s[j] > cm) cm = s[j];
        }
        if (cm > m) {
            float f = expf(m - cm); /* 0 on the first chunk (m = -inf) */
            for (int32_t i = 0; i < hd; i++)
                out[i] *= f;
            l *= f;
            m = cm;
        }
        for (int32_t j = 0; j < n; j++) {
            float e = expf(s[j] - m);
            const float *vr = v + (int64_t)(p0 + j) * stride;
            l += e;
            for (int32_t i = 0; i < hd; i++)
                out[i] += e * vr[i];
        }
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int32_t i = 0; i < hd; i++)
        out[i] *= inv;
}

dais_attn_fn dais_attn_select(enum dais_isa isa)
{
    if (isa == DAIS_ISA_AVX2) return dais_attn_head_avx2;
    return dais_attn_head_scalar;
}
