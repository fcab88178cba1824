/*
 * AVX2/FMA attention for one (token, head) pair: the same chunked online softmax as the
 * scalar twin in attn.c, with the q·K dot products and the V accumulation vectorised 8 floats
 * at a time. Compiled with -mavx2 -mfma (see CMakeLists.txt) and only called after the
 * run-time CPU check behind dais_kernels_isa().
 */
#include "engine/attn.h"

#include <immintrin.h>
#include <math.h>

#define ATTN_CHUNK 64

static inline float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

static inline float dot(const float *a, const float *b, int32_t n)
{
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int32_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float d = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++)
        d += a[i] * b[i];
    return d;
}

/* y = y*f + e*x */
static inline void scale_axpy(float *y, float f, float e, const float *x, int32_t n)
{
    __m256 vf = _mm256_set1_ps(f), ve = _mm256_set1_ps(e);
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 vy = _mm256_mul_ps(_mm256_loadu_ps(y + i), vf);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(ve, _mm256_loadu_ps(x + i), vy));
    }
    for (; i < n; i++)
        y[i] = y[i] * f + e * x[i];
}

void dais_attn_head_avx2(const float *q, const float *k, const float *v, int64_t stride,
                         int32_t n_pos, int32_t hd, float scale, float *out)
{
    float s[ATTN_CHUNK];
    float m = -INFINITY;
    float l = 0.0f;
    for (int32_t i = 0; i < hd; i++)
        out[i] = 0.0f;
    for (int32_t p0 = 0; p0 < n_pos; p0 += ATTN_CHUNK) {
        int32_t n = n_pos - p0 < ATTN_CHUNK ? n_pos - p0 : ATTN_CHUNK;
        float cm = -INFINITY;
        for (int32_t j = 0; j < n; j++) {
            s[j] = dot(q, k + (int64_t)(p0 + j) * stride, hd) * scale;
            if (s[j] > cm) cm = s[j];
        }
        float f = 1.0f;
        if (cm > m) {
            f = expf(m - cm);
            l *= f;
            m = cm;
        }
        /* The rescale of `out` is folded into the first accumulation of the chunk. */
        for (int32_t j = 0; j < n; j++) {
            float e = expf(s[j] - m);
            l += e;
            scale_axpy(out, j == 0 ? f : 1.0f, e, v + (int64_t)(p0 + j) * stride, hd);
        }
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    __m256 vi = _mm256_set1_ps(inv);
    int32_t i = 0;
    for (; i + 8 <= hd; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(out + i), vi));
    for (; i < hd; i++)
        out[i] *= inv;
}
