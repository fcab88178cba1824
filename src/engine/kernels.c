/*
 * Kernels, the ISA-independent part: f16/bf16 conversions, the reference dequantizers and
 * quantizers for every compute type (bit-exact GGML block layouts), the plain reference dot
 * product used as the oracle in tests, run-time ISA dispatch, the matmul scratch, and the
 * matmul driver that quantizes the activations and splits the weight rows over the pool.
 * The per-ISA inner loops live in kernels_scalar.c and kernels_avx2.c.
 */
#include "engine/kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "common/error.h"
#include "engine/kernels_internal.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- f16 / bf16 ---------------------------------------------------------------------------- */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

float dais_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31)
        return bits_f32(sign | 0x7f800000u | (mant << 13)); /* inf, or NaN keeping its payload */
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t dais_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xffu;
    uint32_t mant = u & 0x7fffffu;
    if (exp == 255) /* inf, or NaN made quiet with the top payload bits (as F16C does) */
        return (uint16_t)(sign | (mant ? 0x7e00u | (mant >> 13) : 0x7c00u));
    if (exp >= 143) /* >= 2^16: beyond the largest finite half even before rounding */
        return (uint16_t)(sign | 0x7c00u);
    if (exp < 113) {
        /* the result is subnormal (or zero): round the 24-bit significand to units of 2^-24 */
        if (exp < 102) return sign; /* below half the smallest subnormal */
        uint32_t m = mant | 0x800000u;
        uint32_t shift = 126 - exp; /* 14 .. 24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((exp - 112) << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++; /* a carry into the exponent is the correct result, up to infinity */
    return (uint16_t)(sign | h);
}

float dais_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t dais_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); /* NaN stays NaN (quiet) */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* ---- reference dequantizers ------------------------------------------------------------------ */

static void dequant_q8_0(const dais__blk_q8_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = dais_f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++)
            y[i * QK8_0 + j] = (float)b[i].qs[j] * d;
    }
}

static void dequant_q4_0(const dais__blk_q4_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = dais_f16_to_f32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[i * QK4_0 + j] = (float)((b[i].qs[j] & 0x0f) - 8) * d;
            y[i * QK4_0 + j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_K(const dais__blk_q4_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = dais_f16_to_f32(b[i].d);
        float dmin = dais_f16_to_f32(b[i].dmin);
        uint8_t sc[8], mn[8];
        dais__q4k_scales(b[i].scales, sc, mn);
        float *out = y + i * QK_K;
        for (int c = 0; c < 4; c++) {
            const uint8_t *q = b[i].qs + 32 * c;
            float d1 = d * sc[2 * c], m1 = dmin * mn[2 * c];
            float d2 = d * sc[2 * c + 1], m2 = dmin * mn[2 * c + 1];
            for (int l = 0; l < 32; l++) {
                out[64 * c + l] = d1 * (float)(q[l] & 0x0f) - m1;
                out[64 * c + 32 + l] = d2 * (float)(q[l] >> 4) - m2;
            }
        }
    }
}

static void dequant_q6_K(const dais__blk_q6_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        float d = dais_f16_to_f32(b[i].d);
        float *out = y + i * QK_K;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = b[i].ql + 64 * h;
            const uint8_t *qh = b[i].qh + 32 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                out[128 * h + l] = d * (float)sc[is] * (float)q1;
                out[128 * h + l + 32] = d * (float)sc[is + 2] * (float)q2;
                out[128 * h + l + 64] = d * (float)sc[is + 4] * (float)q3;
                out[128 * h + l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

static void dequant_q8_K(const dais__blk_q8_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < QK_K; j++)
            y[i * QK_K + j] = (float)b[i].qs[j] * b[i].d;
}

/* Converts n elements, nb whole blocks of `type`, to f32; always writes dst[0..n). */
static void dequantize_blocks(uint32_t type, const void *src, float *dst, int64_t n, int64_t nb)
{
    switch (type) {
    case DAIS_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case DAIS_F16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = dais_f16_to_f32(h[i]);
        break;
    }
    case DAIS_BF16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++)
            dst[i] = dais_bf16_to_f32(h[i]);
        break;
    }
    case DAIS_Q8_0:
        dequant_q8_0(src, dst, nb);
        break;
    case DAIS_Q4_0:
        dequant_q4_0(src, dst, nb);
        break;
    case DAIS_Q4_K:
        dequant_q4_K(src, dst, nb);
        break;
    case DAIS_Q6_K:
        dequant_q6_K(src, dst, nb);
        break;
    case DAIS_Q8_K:
        dequant_q8_K(src, dst, nb);
        break;
    default:
        /* A type the table knows but the engine cannot compute (model.c refuses it): zeros,
         * so a caller such as dais_dot_ref never reads an unwritten buffer. */
        memset(dst, 0, (size_t)n * sizeof(float));
        break;
    }
}

void dais_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    const dais_dtype_info *ti = dais_dtype_get(type);
    if (!ti || n <= 0 || n % ti->block) return;
    dequantize_blocks(type, src, dst, n, n / ti->block);
}

/* ---- reference quantizers -------------------------------------------------------------------- */

/* Round to nearest (even on ties), clamped to [lo, hi]; NaN gives 0. */
static inline int qround(float v, int lo, int hi)
{
    if (!(v == v)) return 0;
    if (v <= (float)lo) return lo;
    if (v >= (float)hi) return hi;
    return (int)lrintf(v);
}

static void quant_q8_0(const float *x, dais__blk_q8_0 *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float *v = x + i * QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(v[j]));
        b[i].d = dais_f32_to_f16(amax / 127.0f);
        float d = dais_f16_to_f32(b[i].d);
        float id = d > 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK8_0; j++)
            b[i].qs[j] = (int8_t)qround(v[j] * id, -127, 127);
    }
}

static void quant_q4_0(const float *x, dais__blk_q4_0 *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float *v = x + i * QK4_0;
        /* the value of largest magnitude maps to -8, so the full 16 levels are used */
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++) {
            if (fabsf(v[j]) > amax) {
                amax = fabsf(v[j]);
                max = v[j];
            }
        }
        b[i].d = dais_f32_to_f16(max / -8.0f);
        float d = dais_f16_to_f32(b[i].d);
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = qround(v[j] * id, -8, 7) + 8;
            int q1 = qround(v[j + 16] * id, -8, 7) + 8;
            b[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* Fits x[i] ≈ a * q[i] - m with q in [0, nmax], a >= 0, m >= 0 (a "scale and min" pair as the
 * K-quants store it). Tries a range of scales around (max - min) / nmax, refits each by least
 * squares on its rounded levels, and keeps the pair with the smallest squared error (computed
 * in closed form from the sums, so each candidate is one pass over x). */
static void fit_scale_min(const float *x, int n, int nmax, float *scale, float *min)
{
    float lo = x[0], hi = x[0];
    double sx = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
        sx += x[i];
        sxx += (double)x[i] * x[i];
    }
    if (lo > 0.0f) lo = 0.0f; /* the offset can only move values down */
    if (!(hi > lo)) {
        *scale = 0.0f;
        *min = -lo;
        return;
    }
    float best_a = (hi - lo) / (float)nmax, best_b = lo;
    double best_err = INFINITY;
    for (int step = -4; step <= 8; step++) {
        float iscale = ((float)nmax + 0.125f * (float)step) / (hi - lo);
        int sq = 0, sq2 = 0;
        float sqx = 0.0f;
        for (int i = 0; i < n; i++) {
            int q = (int)(iscale * (x[i] - lo) + 0.5f); /* x - lo >= 0 */
            q = q > nmax ? nmax : q;
            sq += q;
            sq2 += q * q;
            sqx += (float)q * x[i];
        }
        double det = (double)n * sq2 - (double)sq * sq;
        if (det <= 0) continue;
        double a = (n * (double)sqx - sq * sx) / det;
        double b = (sx - a * sq) / n;
        if (b > 0) { /* the offset must be <= 0: refit the scale alone */
            b = 0;
            a = sqx / (double)sq2;
        }
        if (a < 0) continue;
        double err = a * a * sq2 + 2 * a * b * sq + n * b * b - 2 * a * sqx - 2 * b * sx + sxx;
        if (err < best_err) {
            best_err = err;
            best_a = (float)a;
            best_b = (float)b;
        }
    }
    *scale = best_a;
    *min = -best_b;
}

static void quant_q4_K(const float *x, dais__blk_q4_K *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float *v = x + i * QK_K;
        float sc_f[8], mn_f[8], max_sc = 0.0f, max_mn = 0.0f;
        for (int j = 0; j < 8; j++) {
            fit_scale_min(v + 32 * j, 32, 15, &sc_f[j], &mn_f[j]);
            max_sc = fmaxf(max_sc, sc_f[j]);
            max_mn = fmaxf(max_mn, mn_f[j]);
        }
        b[i].d = dais_f32_to_f16(max_sc / 63.0f);
        b[i].dmin = dais_f32_to_f16(max_mn / 63.0f);
        float d = dais_f16_to_f32(b[i].d), dmin = dais_f16_to_f32(b[i].dmin);
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = (uint8_t)(d > 0.0f ? qround(sc_f[j] / d, 0, 63) : 0);
            mn[j] = (uint8_t)(dmin > 0.0f ? qround(mn_f[j] / dmin, 0, 63) : 0);
        }
        for (int j = 0; j < 4; j++) {
            b[i].scales[j] = (uint8_t)(sc[j] | (sc[j + 4] >> 4) << 6);
            b[i].scales[j + 4] = (uint8_t)(mn[j] | (mn[j + 4] >> 4) << 6);
            b[i].scales[j + 8] = (uint8_t)((sc[j + 4] & 0x0f) | (mn[j + 4] & 0x0f) << 4);
        }
        /* levels from the scales as stored, so rounding of the scales is compensated */
        uint8_t q[QK_K];
        for (int j = 0; j < 8; j++) {
            float s = d * sc[j], m = dmin * mn[j];
            float is = s > 0.0f ? 1.0f / s : 0.0f;
            for (int l = 0; l < 32; l++)
                q[32 * j + l] = (uint8_t)qround((v[32 * j + l] + m) * is, 0, 15);
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
    }
}

/* Best symmetric scale for 16 values on levels [-32, 31]: candidates that map the value of
 * largest magnitude to -32 or slightly inside, each refit by least squares; the squared error
 * of a refit is sum(x^2) - sum(qx)^2 / sum(q^2), so the best has the largest sum(qx)^2/sum(q^2). */
static float fit_scale_q6(const float *x)
{
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < 16; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax == 0.0f) return 0.0f;
    float best = max / -32.0f;
    double best_gain = -1.0;
    for (int step = 0; step <= 8; step++) {
        float is = -(32.0f - 0.5f * (float)step) / max;
        float sqx = 0.0f;
        int sq2 = 0;
        for (int i = 0; i < 16; i++) {
            int q = qround(x[i] * is, -32, 31);
            sqx += (float)q * x[i];
            sq2 += q * q;
        }
        if (sq2 == 0) continue;
        double gain = (double)sqx * sqx / sq2;
        if (gain > best_gain) {
            best_gain = gain;
            best = sqx / (float)sq2;
        }
    }
    return best;
}

static void quant_q6_K(const float *x, dais__blk_q6_K *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float *v = x + i * QK_K;
        float s[16], amax = 0.0f;
        for (int g = 0; g < 16; g++) {
            s[g] = fit_scale_q6(v + 16 * g);
            amax = fmaxf(amax, fabsf(s[g]));
        }
        b[i].d = dais_f32_to_f16(amax / 127.0f);
        float d = dais_f16_to_f32(b[i].d);
        uint8_t q[QK_K];
        for (int g = 0; g < 16; g++) {
            int sc = d > 0.0f ? qround(s[g] / d, -127, 127) : 0;
            b[i].scales[g] = (int8_t)sc;
            float e = d * (float)sc;
            float ie = e != 0.0f ? 1.0f / e : 0.0f;
            for (int l = 0; l < 16; l++)
                q[16 * g + l] = (uint8_t)(qround(v[16 * g + l] * ie, -32, 31) + 32);
        }
        for (int h = 0; h < 2; h++) {
            for (int l = 0; l < 32; l++) {
                const uint8_t *qq = q + 128 * h + l;
                b[i].ql[64 * h + l] = (uint8_t)((qq[0] & 0x0f) | (qq[64] & 0x0f) << 4);
                b[i].ql[64 * h + l + 32] = (uint8_t)((qq[32] & 0x0f) | (qq[96] & 0x0f) << 4);
                b[i].qh[32 * h + l] = (uint8_t)((qq[0] >> 4) | (qq[32] >> 4) << 2 |
                                                (qq[64] >> 4) << 4 | (qq[96] >> 4) << 6);
            }
        }
    }
}

static void quant_q8_K(const float *x, dais__blk_q8_K *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float *v = x + i * QK_K;
        float amax = 0.0f;
        for (int j = 0; j < QK_K; j++)
            amax = fmaxf(amax, fabsf(v[j]));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        b[i].d = amax / 127.0f;
        for (int j = 0; j < QK_K; j++)
            b[i].qs[j] = (int8_t)qround(v[j] * id, -127, 127);
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += b[i].qs[16 * g + l];
            b[i].bsums[g] = (int16_t)sum;
        }
    }
}

void dais_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
    const dais_dtype_info *ti = dais_dtype_get(type);
    if (!ti || n <= 0 || n % ti->block) return;
    int64_t nb = n / ti->block;
    switch (type) {
    case DAIS_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case DAIS_F16: {
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++)
            h[i] = dais_f32_to_f16(src[i]);
        break;
    }
    case DAIS_BF16: {
        uint16_t *h = dst;
        for (int64_t i = 0; i < n; i++)
            h[i] = dais_f32_to_bf16(src[i]);
        break;
    }
    case DAIS_Q8_0:
        quant_q8_0(src, dst, nb);
        break;
    case DAIS_Q4_0:
        quant_q4_0(src, dst, nb);
        break;
    case DAIS_Q4_K:
        quant_q4_K(src, dst, nb);
        break;
    case DAIS_Q6_K:
        quant_q6_K(src, dst, nb);
        break;
    case DAIS_Q8_K:
        quant_q8_K(src, dst, nb);
        break;
    default:
        break;
    }
}

double dais_dot_ref(uint32_t type, const void *row, const float *x, int64_t n)
{
    const dais_dtype_info *ti = dais_dtype_get(type);
    if (!ti || n <= 0 || n % ti->block || ti->block > QK_K)
        return 0.0; /* (a block larger than QK_K would not fit in buf) */
    /* dequantize a chunk of whole blocks at a time into a stack buffer; zeroed because the
     * analyzer cannot relate m to the block count and so cannot see every element written */
    int64_t chunk = QK_K - QK_K % ti->block;
    float buf[QK_K] = {0};
    double sum = 0.0;
    const uint8_t *p = row;
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t m = n - i < chunk ? n - i : chunk;
        dequantize_blocks(type, p + (size_t)(i / ti->block) * ti->bytes, buf, m, m / ti->block);
        for (int64_t j = 0; j < m; j++)
            sum += (double)buf[j] * (double)x[i + j];
    }
    return sum;
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static atomic_int g_isa = -1;
static char g_features[64];

/* CPUID straight from the processor: gcc's __builtin_cpu_supports knows "f16c" but clang 14's
 * does not, and the project builds with both. AVX2 code also needs the OS to save the YMM
 * registers (OSXSAVE, and XCR0 bits 1-2). */
static enum dais_isa detect_isa(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return DAIS_ISA_SCALAR;
    bool fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return DAIS_ISA_SCALAR;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6u) != 6u) return DAIS_ISA_SCALAR;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((b >> 5) & 1)) return DAIS_ISA_SCALAR;
    return DAIS_ISA_AVX2;
#else
    return DAIS_ISA_SCALAR;
#endif
}

enum dais_isa dais_kernels_isa(void)
{
    int v = atomic_load_explicit(&g_isa, memory_order_acquire);
    if (v < 0) {
        v = (int)detect_isa();
        int expect = -1;
        atomic_compare_exchange_strong(&g_isa, &expect, v);
        v = atomic_load(&g_isa);
    }
    return (enum dais_isa)v;
}

void dais_kernels_force_isa(enum dais_isa isa)
{
    if (isa == DAIS_ISA_AVX2 && detect_isa() != DAIS_ISA_AVX2)
        isa = DAIS_ISA_SCALAR; /* cannot run what the CPU lacks */
    atomic_store(&g_isa, (int)isa);
}

const char *dais_kernels_features(void)
{
    /* written once with the same bytes by whichever thread gets here; reads are benign */
    if (!g_features[0]) {
        char buf[64] = "scalar";
#if defined(__x86_64__)
        __builtin_cpu_init();
        if (detect_isa() == DAIS_ISA_AVX2)
            snprintf(buf, sizeof(buf), "avx2 fma f16c%s",
                     __builtin_cpu_supports("avx512f") ? " (avx512f unused)" : "");
#endif
        memcpy(g_features, buf, sizeof(g_features));
    }
    return g_features;
}

const dais__isa_impl *dais__kernels_impl(void)
{
#if defined(__x86_64__)
    if (dais_kernels_isa() == DAIS_ISA_AVX2) return &dais__impl_avx2;
#endif
    return &dais__impl_scalar;
}

/* ---- activation layouts and scratch -------------------------------------------------------- */

static inline size_t round_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

void dais__q8a_layout(int64_t n_in, size_t *stride, size_t *d_off, size_t *s_off)
{
    size_t nb = round_up((size_t)n_in / QK8_0, 8);
    *d_off = round_up((size_t)n_in, 64);
    *s_off = round_up(*d_off + 4 * nb, 32);
    *stride = round_up(*s_off + 4 * nb, 64);
}

void dais__q8ka_layout(int64_t n_in, size_t *stride, size_t *d_off, size_t *s_off)
{
    size_t nb = (size_t)n_in / QK_K;
    *d_off = round_up((size_t)n_in, 64);
    *s_off = round_up(*d_off + 4 * nb, 32);
    *stride = round_up(*s_off + 2 * 16 * nb, 64);
}

struct dais_mm_scratch {
    int64_t max_n_in;
    int max_tokens;
    size_t row_bytes; /* bytes for one token's quantized row, either layout */
    uint8_t *buf;     /* (max_tokens, row_bytes) */
};

dais_mm_scratch *dais_mm_scratch_new(int64_t max_n_in, int max_tokens)
{
    if (max_n_in <= 0 || max_n_in > ((int64_t)1 << 30) || max_tokens <= 0 || max_tokens > (1 << 20))
        return NULL;
    dais_mm_scratch *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->max_n_in = max_n_in;
    s->max_tokens = max_tokens;
    int64_t n = (int64_t)round_up((size_t)max_n_in, QK_K);
    size_t a, b, d_off, s_off;
    dais__q8a_layout(n, &a, &d_off, &s_off);
    dais__q8ka_layout(n, &b, &d_off, &s_off);
    s->row_bytes = a > b ? a : b;
    size_t total = s->row_bytes * (size_t)max_tokens;
    s->buf = aligned_alloc(64, total);
    if (!s->buf) {
        free(s);
        return NULL;
    }
    memset(s->buf, 0, total);
    return s;
}

void dais_mm_scratch_free(dais_mm_scratch *s)
{
    if (!s) return;
    free(s->buf);
    free(s);
}

/* ---- matmul driver ------------------------------------------------------------------------- */

/* Below this many activation elements the caller quantizes them alone: cheaper than a second
 * pool run (about a microsecond) for the one-token case. */
#define QUANT_SERIAL_ELEMS 65536
/* Quantization work unit: elements of one token row (a multiple of 256). */
#define QUANT_UNIT 2048
/* Cache blocking of a batched matmul (see mm_rows): activation bytes per token chunk (L1)
 * and weight bytes per row block (L2). */
#ifndef TOKEN_CHUNK_BYTES
#define TOKEN_CHUNK_BYTES (24 * 1024)
#endif
#ifndef ROW_BLOCK_BYTES
#define ROW_BLOCK_BYTES (192 * 1024)
#endif

typedef struct mm_job {
    const dais__isa_impl *impl;
    const dais__tiles *tiles;
    dais__mm m;
    uint32_t type;
    int64_t n_out;
    const float *x; /* (n_tok, n_in) f32 input, for the quantization step */
} mm_job;

static bool q8k_act(uint32_t type)
{
    return type == DAIS_Q4_K || type == DAIS_Q6_K;
}

/* Quantizes units [u0, u1) of QUANT_UNIT elements (unit u: token u / per_tok). */
static void quantize_units(const mm_job *j, int64_t u0, int64_t u1)
{
    const dais__mm *m = &j->m;
    int64_t per_tok = (m->n_in + QUANT_UNIT - 1) / QUANT_UNIT;
    for (int64_t u = u0; u < u1; u++) {
        int64_t t = u / per_tok;
        int64_t off = (u % per_tok) * QUANT_UNIT;
        int64_t n = m->n_in - off < QUANT_UNIT ? m->n_in - off : QUANT_UNIT;
        const float *x = j->x + t * m->n_in + off;
        uint8_t *row = (uint8_t *)m->x + (size_t)t * m->x_stride;
        if (q8k_act(j->type))
            j->impl->quant_q8ka(x, n, (int8_t *)row + off, (float *)(row + m->d_off) + off / QK_K,
                                (int16_t *)(row + m->s_off) + off / 16);
        else
            j->impl->quant_q8a(x, n, (int8_t *)row + off, (float *)(row + m->d_off) + off / QK8_0,
                               (float *)(row + m->s_off) + off / QK8_0, j->type == DAIS_Q4_0);
        if (!q8k_act(j->type) && off + n == m->n_in) {
            /* zero the entries of the missing blocks of the last group of 8, which the
             * kernels load with the others */
            int64_t nb = m->n_in / QK8_0;
            for (int64_t b = nb; b % 8; b++) {
                int64_t pos = j->type == DAIS_Q4_0 ? dais__q8p_pos(b) : b;
                ((float *)(row + m->d_off))[pos] = 0.0f;
                ((float *)(row + m->s_off))[pos] = 0.0f;
            }
        }
    }
}

static void quant_worker(void *arg, int ith, int nth)
{
    const mm_job *j = arg;
    int64_t per_tok = (j->m.n_in + QUANT_UNIT - 1) / QUANT_UNIT;
    int64_t units = per_tok * j->m.n_tok;
    quantize_units(j, units * ith / nth, units * (ith + 1) / nth);
}

/* Rows [r0, r1) for every token. One token: tiles of rd rows, streaming the weights once.
 * A batch is blocked for the caches: a block of rows small enough to stay in L2 meets the
 * tokens a chunk at a time, a chunk small enough to stay in L1, in tiles of rb rows x tb
 * tokens; so each weight byte comes from memory once and each activation byte from L1. */
static void mm_rows(const dais__mm *m, const dais__tiles *ts, int64_t r0, int64_t r1)
{
    int64_t r = r0;
    if (m->n_tok == 1) {
        for (; r + ts->rd <= r1; r += ts->rd)
            ts->fn[ts->rd][1](m, r, 0, ts->rd, 1);
        for (; r < r1; r++)
            ts->fn[1][1](m, r, 0, 1, 1);
        return;
    }
    int tc = (int)(TOKEN_CHUNK_BYTES / m->x_stride);
    tc = tc < ts->tb ? ts->tb : tc / ts->tb * ts->tb;
    int64_t rblk = (int64_t)(ROW_BLOCK_BYTES / m->w_stride);
    rblk = rblk < ts->rb ? ts->rb : rblk / ts->rb * ts->rb;
    for (int64_t rb0 = r0; rb0 < r1; rb0 += rblk) {
        int64_t rb1 = r1 - rb0 < rblk ? r1 : rb0 + rblk;
        for (int t0 = 0; t0 < m->n_tok; t0 += tc) {
            int t1 = m->n_tok - t0 < tc ? m->n_tok : t0 + tc;
            for (r = rb0; r < rb1;) {
                int nr = rb1 - r >= ts->rb ? ts->rb : 1;
                for (int t = t0; t < t1; t += ts->tb) {
                    int nt = t1 - t < ts->tb ? t1 - t : ts->tb;
                    ts->fn[nr][nt](m, r, t, nr, nt);
                }
                r += nr;
            }
        }
    }
}

static void mm_worker(void *arg, int ith, int nth)
{
    const mm_job *j = arg;
    int64_t rows = j->n_out;
    /* contiguous shares, multiples of 4 rows, so each thread streams its own memory */
    int64_t per = (rows + nth - 1) / nth;
    per = (per + 3) / 4 * 4;
    int64_t r0 = per * ith, r1 = r0 + per;
    if (r1 > rows) r1 = rows;
    if (r0 < r1) mm_rows(&j->m, j->tiles, r0, r1);
}

int dais_matmul(dais_pool *pool, dais_mm_scratch *s, const dais_matrix *w, const float *x, float *y,
                int n_tok)
{
    if (!s || !w || !x || !y || n_tok < 1 || n_tok > s->max_tokens || w->n_in <= 0 ||
        w->n_in > s->max_n_in || w->n_out < 0 || !w->data)
        return DAIS_EINVAL;
    const dais_dtype_info *ti = dais_dtype_get(w->type);
    const dais__isa_impl *impl = dais__kernels_impl();
    if (!ti || w->type >= DAIS_DTYPE_MAX || !impl->tiles[w->type] || w->n_in % ti->block)
        return DAIS_EINVAL;
    if (w->n_out == 0) return 0;

    mm_job j = {
        .impl = impl,
        .tiles = impl->tiles[w->type],
        .type = w->type,
        .n_out = w->n_out,
        .x = x,
        .m =
            {
                .n_in = w->n_in,
                .w = w->data,
                .w_stride = dais_dtype_row_bytes(w->type, (uint64_t)w->n_in, NULL),
                .y = y,
                .y_stride = w->n_out,
                .n_tok = n_tok,
            },
    };
    if (w->type == DAIS_F32 || w->type == DAIS_F16 || w->type == DAIS_BF16) {
        j.m.x = (const uint8_t *)x;
        j.m.x_stride = (size_t)w->n_in * sizeof(float);
    } else {
        if (q8k_act(w->type))
            dais__q8ka_layout(w->n_in, &j.m.x_stride, &j.m.d_off, &j.m.s_off);
        else
            dais__q8a_layout(w->n_in, &j.m.x_stride, &j.m.d_off, &j.m.s_off);
        j.m.x = s->buf;
        int64_t per_tok = (w->n_in + QUANT_UNIT - 1) / QUANT_UNIT;
        if (!pool || dais_pool_size(pool) == 1 || (int64_t)n_tok * w->n_in <= QUANT_SERIAL_ELEMS)
            quantize_units(&j, 0, per_tok * n_tok);
        else
            dais_pool_run(pool, quant_worker, &j);
    }
    if (pool)
        dais_pool_run(pool, mm_worker, &j);
    else
        mm_worker(&j, 0, 1);
    return 0;
}
