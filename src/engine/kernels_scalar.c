/*
 * Portable scalar kernels: the twin of every AVX2 kernel in kernels_avx2.c. They use the same
 * activation quantization (bit-identical bytes) and the same integer block sums, so the two
 * paths differ only in the order the per-block float products are added: tests compare them
 * within a relative error of 1e-5. They also run the engine on CPUs without AVX2.
 */
#include "engine/kernels.h"
#include "engine/kernels_internal.h"

#include <math.h>
#include <string.h>

/* ---- activation quantization ------------------------------------------------------------ */

static inline int8_t q8(float v)
{
    long q = lrintf(v); /* nearest, ties to even: the same as cvtps2dq */
    return (int8_t)(q < -127 ? -127 : q > 127 ? 127 : q);
}

static void quant_q8a(const float *x, int64_t n, int8_t *qs, float *d, float *s, int paired)
{
    int64_t nb = n / QK8_0;
    for (int64_t b = 0; b < nb; b++) {
        const float *v = x + b * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(v[j]));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        int64_t pos = paired ? dais__q8p_pos(b) : b;
        d[pos] = amax / 127.0f;
        int32_t sum = 0;
        for (int j = 0; j < QK8_0; j++) {
            int64_t at = paired ? dais__q8p_half(b, nb, j / 16) + j % 16 : b * QK8_0 + j;
            qs[at] = q8(v[j] * id);
            sum += qs[at];
        }
        s[pos] = (paired ? -8.0f * d[pos] : d[pos]) * (float)sum;
    }
}

static void quant_q8ka(const float *x, int64_t n, int8_t *qs, float *d, int16_t *bsums)
{
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *v = x + b * QK_K;
        float amax = 0.0f;
        for (int j = 0; j < QK_K; j++)
            amax = fmaxf(amax, fabsf(v[j]));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) {
                int8_t q = q8(v[16 * g + l] * id);
                qs[b * QK_K + 16 * g + l] = q;
                sum += q;
            }
            bsums[b * 16 + g] = (int16_t)sum;
        }
    }
}

/* ---- tiles --------------------------------------------------------------------------------
 * One generic function per type; the driver's (nr, nt) are plain loop bounds here. */

#define ROW(m, r)    ((m)->w + (size_t)(r) * (m)->w_stride)
#define XROW(m, t)   ((m)->x + (size_t)(t) * (m)->x_stride)
#define OUT(m, r, t) ((m)->y[(int64_t)(t) * (m)->y_stride + (r)])

static void tile_q4_0(const dais__mm *m, int64_t r, int t, int nr, int nt)
{
    int64_t nb = m->n_in / QK4_0;
    for (int i = 0; i < nr; i++) {
        const dais__blk_q4_0 *w = (const dais__blk_q4_0 *)ROW(m, r + i);
        for (int k = 0; k < nt; k++) {
            const uint8_t *xr = XROW(m, t + k);
            const int8_t *xq = (const int8_t *)xr;
            const float *xd = (const float *)(xr + m->d_off);
            const float *xs = (const float *)(xr + m->s_off);
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const int8_t *lo = xq + dais__q8p_half(b, nb, 0); /* paired layout */
                const int8_t *hi = xq + dais__q8p_half(b, nb, 1);
                int32_t sum = 0;
                for (int j = 0; j < 16; j++)
                    sum += (w[b].qs[j] & 0x0f) * lo[j] + (w[b].qs[j] >> 4) * hi[j];
                float dw = dais_f16_to_f32(w[b].d);
                int64_t pos = dais__q8p_pos(b);
                acc += (float)sum * (dw * xd[pos]);
                acc += dw * xs[pos]; /* nibbles are stored +8: xs = -8 * dx * sum */
            }
            OUT(m, r + i, t + k) = acc;
        }
    }
}

static void tile_q8_0(const dais__mm *m, int64_t r, int t, int nr, int nt)
{
    int64_t nb = m->n_in / QK8_0;
    for (int i = 0; i < nr; i++) {
        const dais__blk_q8_0 *w = (const dais__blk_q8_0 *)ROW(m, r + i);
        for (int k = 0; k < nt; k++) {
            const uint8_t *xr = XROW(m, t + k);
            const int8_t *xq = (const int8_t *)xr;
            const float *xd = (const float *)(xr + m->d_off);
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                int32_t sum = 0;
                for (int j = 0; j < QK8_0; j++)
                    sum += w[b].qs[j] * xq[b * QK8_0 + j];
                acc += (float)sum * (dais_f16_to_f32(w[b].d) * xd[b]);
            }
            OUT(m, r + i, t + k) = acc;
        }
    }
}

static void tile_q4_K(const dais__mm *m, int64_t r, int t, int nr, int nt)
{
    int64_t nb = m->n_in / QK_K;
    for (int i = 0; i < nr; i++) {
        const dais__blk_q4_K *w = (const dais__blk_q4_K *)ROW(m, r + i);
        for (int k = 0; k < nt; k++) {
            const uint8_t *xr = XROW(m, t + k);
            const int8_t *xq = (const int8_t *)xr;
            const float *xd = (const float *)(xr + m->d_off);
            const int16_t *bs = (const int16_t *)(xr + m->s_off);
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t sc[8], mn[8];
                dais__q4k_scales(w[b].scales, sc, mn);
                const int8_t *y = xq + b * QK_K;
                int32_t isum = 0, imin = 0;
                for (int c = 0; c < 4; c++) {
                    int32_t lo = 0, hi = 0;
                    for (int l = 0; l < 32; l++) {
                        lo += (w[b].qs[32 * c + l] & 0x0f) * y[64 * c + l];
                        hi += (w[b].qs[32 * c + l] >> 4) * y[64 * c + 32 + l];
                    }
                    isum += lo * sc[2 * c] + hi * sc[2 * c + 1];
                }
                for (int j = 0; j < 8; j++)
                    imin += mn[j] * (bs[16 * b + 2 * j] + bs[16 * b + 2 * j + 1]);
                float d = dais_f16_to_f32(w[b].d), dmin = dais_f16_to_f32(w[b].dmin);
                acc += (float)isum * (d * xd[b]);
                acc += (float)imin * (-dmin * xd[b]);
            }
            OUT(m, r + i, t + k) = acc;
        }
    }
}

static void tile_q6_K(const dais__mm *m, int64_t r, int t, int nr, int nt)
{
    int64_t nb = m->n_in / QK_K;
    for (int i = 0; i < nr; i++) {
        const dais__blk_q6_K *w = (const dais__blk_q6_K *)ROW(m, r + i);
        for (int k = 0; k < nt; k++) {
            const uint8_t *xr = XROW(m, t + k);
            const int8_t *xq = (const int8_t *)xr;
            const float *xd = (const float *)(xr + m->d_off);
            const int16_t *bs = (const int16_t *)(xr + m->s_off);
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const int8_t *y = xq + b * QK_K;
                int32_t g[16] = {0};
                for (int h = 0; h < 2; h++) {
                    const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
                    const int8_t *yy = y + 128 * h;
                    for (int l = 0; l < 32; l++) {
                        int q0 = (ql[l] & 0x0f) | (qh[l] & 3) << 4;
                        int q1 = (ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4;
                        int q2 = (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4;
                        int q3 = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4;
                        g[8 * h + l / 16] += q0 * yy[l];
                        g[8 * h + 2 + l / 16] += q1 * yy[l + 32];
                        g[8 * h + 4 + l / 16] += q2 * yy[l + 64];
                        g[8 * h + 6 + l / 16] += q3 * yy[l + 96];
                    }
                }
                int32_t isum = 0;
                for (int j = 0; j < 16; j++) /* levels are stored +32 */
                    isum += w[b].scales[j] * (g[j] - 32 * bs[16 * b + j]);
                acc += (float)isum * (dais_f16_to_f32(w[b].d) * xd[b]);
            }
            OUT(m, r + i, t + k) = acc;
        }
    }
}

static inline float load_w(uint32_t type, const uint8_t *row, int64_t e)
{
    uint16_t h;
    switch (type) {
    case DAIS_F16:
        memcpy(&h, row + 2 * e, 2);
        return dais_f16_to_f32(h);
    case DAIS_BF16:
        memcpy(&h, row + 2 * e, 2);
        return dais_bf16_to_f32(h);
    default: {
        float f;
        memcpy(&f, row + 4 * e, 4);
        return f;
    }
    }
}

static inline void tile_float(const dais__mm *m, int64_t r, int t, int nr, int nt, uint32_t type)
{
    for (int i = 0; i < nr; i++) {
        const uint8_t *w = ROW(m, r + i);
        for (int k = 0; k < nt; k++) {
            const float *x = (const float *)XROW(m, t + k);
            float acc = 0.0f;
            for (int64_t e = 0; e < m->n_in; e++)
                acc += load_w(type, w, e) * x[e];
            OUT(m, r + i, t + k) = acc;
        }
    }
}

static void tile_f32(const dais__mm *m, int64_t r, int t, int nr, int nt)
{
    tile_float(m, r, t, nr, nt, DAIS_F32);
}

static void tile_f16(const dais__mm *m, int64_t r, int t, int nr, int nt)
{
    tile_float(m, r, t, nr, nt, DAIS_F16);
}

static void tile_bf16(const dais__mm *m, int64_t r, int t, int nr, int nt)
{
    tile_float(m, r, t, nr, nt, DAIS_BF16);
}

/* rb = rd = 1, tb = 4: a weight row stays in L1 while four tokens pass over it. */
#define TILES(fn)                                                                                  \
    {                                                                                              \
        1, 4, 1,                                                                                   \
        {                                                                                          \
            [1] = { NULL, fn, fn, fn, fn }                                                         \
        }                                                                                          \
    }

static const dais__tiles tiles_f32 = TILES(tile_f32);
static const dais__tiles tiles_f16 = TILES(tile_f16);
static const dais__tiles tiles_bf16 = TILES(tile_bf16);
static const dais__tiles tiles_q8_0 = TILES(tile_q8_0);
static const dais__tiles tiles_q4_0 = TILES(tile_q4_0);
static const dais__tiles tiles_q4_K = TILES(tile_q4_K);
static const dais__tiles tiles_q6_K = TILES(tile_q6_K);

/* ---- memory probe and row conversions ----------------------------------------------------- */

static uint64_t read_sum(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        uint64_t v[4];
        memcpy(v, b + i, sizeof(v));
        a0 += v[0];
        a1 ^= v[1];
        a2 += v[2];
        a3 ^= v[3];
    }
    return a0 + a1 + a2 + a3;
}

static void f16_to_f32_row(const uint16_t *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = dais_f16_to_f32(src[i]);
}

static void f32_to_f16_row(const float *src, uint16_t *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = dais_f32_to_f16(src[i]);
}

const dais__isa_impl dais__impl_scalar = {
    .name = "scalar",
    .quant_q8a = quant_q8a,
    .quant_q8ka = quant_q8ka,
    .tiles =
        {
            [DAIS_F32] = &tiles_f32,
            [DAIS_F16] = &tiles_f16,
            [DAIS_BF16] = &tiles_bf16,
            [DAIS_Q8_0] = &tiles_q8_0,
            [DAIS_Q4_0] = &tiles_q4_0,
            [DAIS_Q4_K] = &tiles_q4_K,
            [DAIS_Q6_K] = &tiles_q6_K,
        },
    .read_sum = read_sum,
    .f16_to_f32_row = f16_to_f32_row,
    .f32_to_f16_row = f32_to_f16_row,
};
