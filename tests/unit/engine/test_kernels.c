/*
 * Tests for src/engine/kernels.c and its per-ISA twins: f16/bf16 conversions (every half,
 * against the F16C hardware where present), GGML block layouts, quantize -> dequantize error
 * per type, scalar vs AVX2 agreement, agreement with the plain reference dot product,
 * batched vs one-token matmul (bit-exact), odd sizes, multi- vs single-thread (bit-exact),
 * argument checking, and the bandwidth probe.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/error.h"
#include "engine/kernels.h"
#include "engine/kernels_internal.h"
#include "engine/membw.h"
#include "engine/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static float uniform(void)
{
    return (float)((rnd() >> 40) + 0.5) / (float)(1u << 24);
}

static float gauss(void)
{
    float u = uniform(), v = uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static bool have_avx2(void)
{
    dais_kernels_force_isa(DAIS_ISA_AVX2);
    bool ok = dais_kernels_isa() == DAIS_ISA_AVX2;
    dais_kernels_force_isa(DAIS_ISA_SCALAR);
    return ok;
}

static const uint32_t all_types[] = {DAIS_F32,  DAIS_F16,  DAIS_BF16, DAIS_Q8_0,
                                     DAIS_Q4_0, DAIS_Q4_K, DAIS_Q6_K};
#define N_TYPES (sizeof(all_types) / sizeof(all_types[0]))

static size_t row_bytes(uint32_t type, int64_t n)
{
    return dais_dtype_row_bytes(type, (uint64_t)n, NULL);
}

/* A random (n_out, n_in) matrix of `type` (Gaussian weights), owned by the caller. */
static void *make_matrix(uint32_t type, int64_t n_in, int64_t n_out, dais_matrix *m)
{
    size_t rb = row_bytes(type, n_in);
    uint8_t *data = malloc(rb * (size_t)n_out);
    float *row = malloc((size_t)n_in * sizeof(float));
    assert_non_null(data);
    assert_non_null(row);
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t i = 0; i < n_in; i++)
            row[i] = gauss() * 0.5f;
        dais_quantize_row(type, row, data + rb * (size_t)r, n_in);
    }
    free(row);
    m->type = type;
    m->n_in = n_in;
    m->n_out = n_out;
    m->data = data;
    return data;
}

static float *make_acts(int64_t n, float scale)
{
    float *x = malloc((size_t)n * sizeof(float));
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = gauss() * scale;
    return x;
}

/* n_in that every type can use, and one that only block-size-1 types can. */
static int64_t n_in_for(uint32_t type, bool odd)
{
    if (dais_dtype_get(type)->block == 1) return odd ? 301 : 512;
    return dais_dtype_get(type)->block == 256 ? (odd ? 768 : 512) : (odd ? 96 : 512);
}

/* ---- conversions ----------------------------------------------------------------------------- */

static void test_f16_roundtrip_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dais_f16_to_f32((uint16_t)h);
        bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (nan) {
            assert_true(isnan(f));
            uint16_t back = dais_f32_to_f16(f);
            assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
            assert_int_equal(back & 0x8000, h & 0x8000);
        } else {
            assert_int_equal(dais_f32_to_f16(f), h);
        }
    }
}

static void test_f16_values(void **state)
{
    (void)state;
    assert_true(dais_f16_to_f32(0x3c00) == 1.0f);
    assert_true(dais_f16_to_f32(0xc000) == -2.0f);
    assert_true(dais_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(dais_f16_to_f32(0x0001) == 0x1p-24f);   /* smallest subnormal */
    assert_true(dais_f16_to_f32(0x03ff) == 0x3ffp-24f); /* largest subnormal */
    assert_true(dais_f16_to_f32(0x0400) == 0x1p-14f);   /* smallest normal */
    assert_true(isinf(dais_f16_to_f32(0x7c00)) && dais_f16_to_f32(0x7c00) > 0);
    assert_true(isinf(dais_f16_to_f32(0xfc00)) && dais_f16_to_f32(0xfc00) < 0);
    assert_true(signbit(dais_f16_to_f32(0x8000)) && dais_f16_to_f32(0x8000) == 0.0f);

    assert_int_equal(dais_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(dais_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(dais_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(dais_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(dais_f32_to_f16(65520.0f), 0x7c00); /* tie rounds to even = infinity */
    assert_int_equal(dais_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(dais_f32_to_f16(-1e10f), 0xfc00);
    assert_int_equal(dais_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(dais_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(dais_f32_to_f16(0x1p-25f), 0x0000);     /* tie to even: 0 */
    assert_int_equal(dais_f32_to_f16(0x1.8p-25f), 0x0001);   /* above the tie */
    assert_int_equal(dais_f32_to_f16(0x3p-25f), 0x0002);     /* 1.5 units: tie to even 2 */
    assert_int_equal(dais_f32_to_f16(0x5p-25f), 0x0002);     /* 2.5 units: tie to even 2 */
    assert_int_equal(dais_f32_to_f16(0x1.ffcp-15f), 0x0400); /* rounds up into the normals */
    assert_int_equal(dais_f32_to_f16(1e-10f), 0x0000);
    assert_int_equal(dais_f32_to_f16(1.0f + 0x1p-11f), 0x3c00); /* tie to even */
    assert_int_equal(dais_f32_to_f16(1.0f + 0x3p-11f), 0x3c02);
    uint16_t n = dais_f32_to_f16(NAN);
    assert_true((n & 0x7c00) == 0x7c00 && (n & 0x3ff));
}

/* The scalar conversions agree bit for bit with F16C on every half and on many floats. */
static void test_f16_vs_hardware(void **state)
{
    (void)state;
    if (!have_avx2()) {
        skip();
        return;
    }
    enum { N = 1 << 16 };
    uint16_t *h = malloc(N * sizeof(uint16_t)), *hw = malloc(N * sizeof(uint16_t));
    float *f = malloc(N * sizeof(float)), *fw = malloc(N * sizeof(float));
    for (uint32_t i = 0; i < N; i++)
        h[i] = (uint16_t)i;
    dais__impl_avx2.f16_to_f32_row(h, fw, N);
    for (uint32_t i = 0; i < N; i++) {
        float s = dais_f16_to_f32(h[i]);
        if (isnan(s))
            assert_true(isnan(fw[i]));
        else
            assert_int_equal(f2u(s), f2u(fw[i]));
    }
    for (int round = 0; round < 32; round++) {
        for (uint32_t i = 0; i < N; i++) {
            uint32_t u = (uint32_t)rnd();
            if (round % 2) /* concentrate on the f16 range, subnormals included */
                u = (u & 0x80000000u) | (((u >> 23) % 48 + 96) << 23) | (u & 0x7fffffu);
            if (round == 0 && i < 4096) /* exact ties around every subnormal/normal step */
                u = (((i >> 4) % 40 + 100) << 23) | ((i & 15) << 19) | 0x1000u;
            f[i] = u2f(u);
        }
        dais__impl_avx2.f32_to_f16_row(f, hw, N);
        for (uint32_t i = 0; i < N; i++) {
            uint16_t s = dais_f32_to_f16(f[i]);
            if (isnan(f[i]))
                assert_true((s & 0x7c00) == 0x7c00 && (s & 0x3ff) && (hw[i] & 0x3ff));
            else if (s != hw[i])
                fail_msg("f32 %a (0x%08x): scalar 0x%04x, f16c 0x%04x", (double)f[i], f2u(f[i]), s,
                         hw[i]);
        }
    }
    free(h);
    free(hw);
    free(f);
    free(fw);
}

static void test_bf16(void **state)
{
    (void)state;
    assert_true(dais_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(dais_bf16_to_f32(0xc040) == -3.0f);
    assert_int_equal(dais_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(dais_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);   /* tie to even */
    assert_int_equal(dais_f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);   /* tie to even (up) */
    assert_int_equal(dais_f32_to_bf16(1.0f + 0x1.2p-8f), 0x3f81); /* above the tie */
    assert_int_equal(dais_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(dais_f32_to_bf16(-INFINITY), 0xff80);
    assert_int_equal(dais_f32_to_bf16(u2f(0x7f7fffffu)), 0x7f80); /* FLT_MAX rounds to inf */
    assert_int_equal(dais_f32_to_bf16(u2f(0x00000001u)), 0x0000); /* tiny subnormal */
    assert_int_equal(dais_f32_to_bf16(u2f(0x00018000u)), 0x0002); /* subnormal tie to even */
    uint16_t n = dais_f32_to_bf16(u2f(0x7f800001u)); /* NaN with a low payload stays NaN */
    assert_true((n & 0x7f80) == 0x7f80 && (n & 0x7f));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dais_bf16_to_f32((uint16_t)h);
        if (!isnan(f)) assert_int_equal(dais_f32_to_bf16(f), h);
    }
}

/* ---- block layouts ----------------------------------------------------------------------- */

/* ggml's get_scale_min_k4, written out per index. */
static void scale_min_k4(int j, const uint8_t *q, int *d, int *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void test_q4k_scale_unpack(void **state)
{
    (void)state;
    for (int it = 0; it < 10000; it++) {
        uint8_t s[12], sc[8], mn[8];
        for (int i = 0; i < 12; i++)
            s[i] = (uint8_t)rnd();
        dais__q4k_scales(s, sc, mn);
        for (int j = 0; j < 8; j++) {
            int d, m;
            scale_min_k4(j, s, &d, &m);
            assert_int_equal(sc[j], d);
            assert_int_equal(mn[j], m);
        }
    }
}

/* Hand-built blocks decode to the values GGML defines. */
static void test_layouts(void **state)
{
    (void)state;
    float out[256];

    dais__blk_q4_0 q4 = {.d = dais_f32_to_f16(0.5f)};
    q4.qs[0] = 0x9f;  /* element 0: 15 - 8 = 7; element 16: 9 - 8 = 1 */
    q4.qs[15] = 0x08; /* element 15: 0; element 31: 0 - 8 */
    for (int i = 1; i < 15; i++)
        q4.qs[i] = 0x88;
    dais_dequantize_row(DAIS_Q4_0, &q4, out, 32);
    assert_true(out[0] == 3.5f && out[16] == 0.5f && out[15] == 0.0f && out[31] == -4.0f);
    assert_true(out[1] == 0.0f && out[17] == 0.0f);

    dais__blk_q8_0 q8 = {.d = dais_f32_to_f16(0.25f)};
    for (int i = 0; i < 32; i++)
        q8.qs[i] = (int8_t)(i - 16);
    dais_dequantize_row(DAIS_Q8_0, &q8, out, 32);
    for (int i = 0; i < 32; i++)
        assert_true(out[i] == 0.25f * (float)(i - 16));

    /* Q4_K: every element from the formula d*sc*q - dmin*m with ggml's index mapping */
    dais__blk_q4_K k4;
    k4.d = dais_f32_to_f16(0.125f);
    k4.dmin = dais_f32_to_f16(0.0625f);
    for (int i = 0; i < 12; i++)
        k4.scales[i] = (uint8_t)rnd();
    for (int i = 0; i < 128; i++)
        k4.qs[i] = (uint8_t)rnd();
    dais_dequantize_row(DAIS_Q4_K, &k4, out, 256);
    for (int e = 0; e < 256; e++) {
        int chunk = e / 64, within = e % 64, sub = e / 32;
        int q =
            within < 32 ? k4.qs[32 * chunk + within] & 0xf : k4.qs[32 * chunk + within - 32] >> 4;
        int d, m;
        scale_min_k4(sub, k4.scales, &d, &m);
        float want = 0.125f * (float)d * (float)q - 0.0625f * (float)m;
        assert_float_equal(out[e], want, 1e-6);
    }

    /* Q6_K: element e of half h = e / 128, position l = e % 128: level bits 0-3 from ql
     * (l < 64: low nibble of ql[64h + l], else high nibble of ql[64h + l - 64]), bits 4-5 from
     * qh[32h + l % 32] at shift 2 * (l / 32); scale scales[e / 16]. */
    dais__blk_q6_K k6;
    k6.d = dais_f32_to_f16(0.03125f);
    for (int i = 0; i < 128; i++)
        k6.ql[i] = (uint8_t)rnd();
    for (int i = 0; i < 64; i++)
        k6.qh[i] = (uint8_t)rnd();
    for (int i = 0; i < 16; i++)
        k6.scales[i] = (int8_t)rnd();
    dais_dequantize_row(DAIS_Q6_K, &k6, out, 256);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, l = e % 128;
        int lo = l < 64 ? k6.ql[64 * h + l] & 0xf : k6.ql[64 * h + l - 64] >> 4;
        int hi = (k6.qh[32 * h + l % 32] >> (2 * (l / 32))) & 3;
        float want = 0.03125f * (float)k6.scales[e / 16] * (float)((lo | hi << 4) - 32);
        assert_float_equal(out[e], want, 1e-6);
    }
}

/* ---- quantization error ------------------------------------------------------------------------
 */

static void test_quantize_error(void **state)
{
    (void)state;
    /* RMS error / RMS value on N(0, 1) data; bounds 1.2-2x what the quantizers reach */
    static const struct {
        uint32_t type;
        double bound;
    } cases[] = {
        {DAIS_F32, 0.0},   {DAIS_F16, 4e-4},  {DAIS_BF16, 3e-3},  {DAIS_Q8_0, 6.5e-3},
        {DAIS_Q8_K, 8e-3}, {DAIS_Q4_0, 0.10}, {DAIS_Q4_K, 0.085}, {DAIS_Q6_K, 0.02},
    };
    enum { N = 1 << 16 };
    float *x = make_acts(N, 1.0f), *y = malloc(N * sizeof(float));
    void *q = malloc(N * 4);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        memset(y, 0, N * sizeof(float));
        dais_quantize_row(cases[c].type, x, q, N);
        dais_dequantize_row(cases[c].type, q, y, N);
        double se = 0, sx = 0;
        for (int i = 0; i < N; i++) {
            se += (double)(y[i] - x[i]) * (y[i] - x[i]);
            sx += (double)x[i] * x[i];
        }
        double rel = sqrt(se / sx);
        printf("  quantize %-5s rms error / rms = %.5f\n", dais_dtype_name(cases[c].type), rel);
        assert_true(rel <= cases[c].bound);
    }
    /* an all-zero row and a constant row stay exact */
    for (size_t c = 0; c < N_TYPES; c++) {
        float z[256] = {0}, back[256];
        dais_quantize_row(all_types[c], z, q, 256);
        dais_dequantize_row(all_types[c], q, back, 256);
        for (int i = 0; i < 256; i++)
            assert_true(back[i] == 0.0f);
    }
    free(x);
    free(y);
    free(q);
}

/* Quantized blocks keep extreme values in range (no wrap-around). */
static void test_quantize_extremes(void **state)
{
    (void)state;
    float x[256], back[256];
    uint8_t q[1024];
    for (int i = 0; i < 256; i++)
        x[i] = (i % 7 == 0) ? -1000.0f : (i % 5 == 0 ? 1000.0f : 0.001f * (float)i);
    for (size_t c = 0; c < N_TYPES; c++) {
        dais_quantize_row(all_types[c], x, q, 256);
        dais_dequantize_row(all_types[c], q, back, 256);
        for (int i = 0; i < 256; i++)
            if (fabsf(x[i]) == 1000.0f) assert_true(fabsf(back[i] - x[i]) < 0.15f * 1000.0f);
    }
}

/* ---- activation quantization: both ISAs give the same bytes -----------------------------------
 */

static void test_act_quant_identical(void **state)
{
    (void)state;
    if (!have_avx2()) {
        skip();
        return;
    }
    enum { N = 4096 };
    float *x = make_acts(N, 3.0f);
    x[5] = 0.0f;
    for (int i = 64; i < 96; i++)
        x[i] = 0.0f; /* an all-zero block */
    int8_t qa[N], qb[N];
    float da[N / 32], db[N / 32];
    float sa[N / 32], sb[N / 32];
    for (int paired = 0; paired < 2; paired++) {
        /* N - 32: an odd number of blocks, so the paired layout has an unpaired last block */
        memset(qa, 0, sizeof(qa));
        memset(qb, 0, sizeof(qb));
        dais__impl_scalar.quant_q8a(x, N - 32, qa, da, sa, paired);
        dais__impl_avx2.quant_q8a(x, N - 32, qb, db, sb, paired);
        assert_memory_equal(qa, qb, N - 32);
        assert_memory_equal(da, db, sizeof(float) * (N / 32 - 1));
        assert_memory_equal(sa, sb, sizeof(float) * (N / 32 - 1));
    }
    int16_t ba[N / 16], bb[N / 16];
    float ka[N / 256], kb[N / 256];
    dais__impl_scalar.quant_q8ka(x, N, qa, ka, ba);
    dais__impl_avx2.quant_q8ka(x, N, qb, kb, bb);
    assert_memory_equal(qa, qb, sizeof(qa));
    assert_memory_equal(ka, kb, sizeof(ka));
    assert_memory_equal(ba, bb, sizeof(ba));
    /* and the Q8_K reference quantizer writes the same levels and sums */
    dais__blk_q8_K blk[N / 256];
    dais_quantize_row(DAIS_Q8_K, x, blk, N);
    for (int b = 0; b < N / 256; b++) {
        assert_memory_equal(blk[b].qs, qa + 256 * b, 256);
        assert_memory_equal(blk[b].bsums, ba + 16 * b, 32);
        assert_true(blk[b].d == ka[b]);
    }
    free(x);
}

/* ---- matmul against the reference, scalar vs AVX2 ------------------------------------------- */

static void run_mm(enum dais_isa isa, dais_pool *pool, const dais_matrix *w, const float *x,
                   float *y, int n_tok)
{
    dais_kernels_force_isa(isa);
    dais_mm_scratch *s = dais_mm_scratch_new(w->n_in, n_tok);
    assert_non_null(s);
    assert_int_equal(dais_matmul(pool, s, w, x, y, n_tok), 0);
    dais_mm_scratch_free(s);
}

/* Tolerances against dais_dot_ref, as a fraction of |w|*|x| (Cauchy-Schwarz bound of the
 * dot product): the activations are quantized to 8 bits for the quantized types. */
static double ref_tol(uint32_t type)
{
    return (type == DAIS_F32 || type == DAIS_F16 || type == DAIS_BF16) ? 1e-6 : 4e-3;
}

static void test_matmul_vs_ref(void **state)
{
    (void)state;
    bool avx2 = have_avx2();
    for (size_t c = 0; c < N_TYPES; c++) {
        uint32_t type = all_types[c];
        for (int odd = 0; odd < 2; odd++) {
            int64_t n_in = n_in_for(type, odd), n_out = 37;
            int n_tok = 3;
            dais_matrix w;
            void *data = make_matrix(type, n_in, n_out, &w);
            float *x = make_acts(n_in * n_tok, 1.0f);
            float *ys = malloc(sizeof(float) * (size_t)(n_out * n_tok));
            float *ya = malloc(sizeof(float) * (size_t)(n_out * n_tok));
            float *deq = malloc(sizeof(float) * (size_t)n_in);
            run_mm(DAIS_ISA_SCALAR, NULL, &w, x, ys, n_tok);
            if (avx2) run_mm(DAIS_ISA_AVX2, NULL, &w, x, ya, n_tok);
            double worst_ref = 0, worst_isa = 0;
            for (int t = 0; t < n_tok; t++) {
                const float *xt = x + t * n_in;
                double xx = 0;
                for (int64_t i = 0; i < n_in; i++)
                    xx += (double)xt[i] * xt[i];
                for (int64_t r = 0; r < n_out; r++) {
                    const uint8_t *row = (const uint8_t *)data + row_bytes(type, n_in) * (size_t)r;
                    double ref = dais_dot_ref(type, row, xt, n_in);
                    dais_dequantize_row(type, row, deq, n_in);
                    double ww = 0, wabs = 0;
                    for (int64_t i = 0; i < n_in; i++) {
                        ww += (double)deq[i] * deq[i];
                        wabs += fabs((double)deq[i] * xt[i]);
                    }
                    double norm = sqrt(ww * xx);
                    double ys_v = ys[t * n_out + r];
                    double e = fabs(ys_v - ref) / norm;
                    worst_ref = e > worst_ref ? e : worst_ref;
                    if (e > ref_tol(type))
                        fail_msg("%s n_in %lld row %lld tok %d: scalar %g ref %g (%.3g of |w||x|)",
                                 dais_dtype_name(type), (long long)n_in, (long long)r, t, ys_v, ref,
                                 e);
                    if (avx2) {
                        /* same integer block sums, different float summation order */
                        double ea = fabs((double)ya[t * n_out + r] - ys_v) / (wabs + 1e-30);
                        worst_isa = ea > worst_isa ? ea : worst_isa;
                        if (ea > 2e-6)
                            fail_msg("%s n_in %lld row %lld tok %d: avx2 %g scalar %g",
                                     dais_dtype_name(type), (long long)n_in, (long long)r, t,
                                     (double)ya[t * n_out + r], ys_v);
                    }
                }
            }
            printf(
                "  %-5s n_in %4lld: |scalar-ref| <= %.2e |w||x|, |avx2-scalar| <= %.2e sum|wx|\n",
                dais_dtype_name(type), (long long)n_in, worst_ref, worst_isa);
            free(data);
            free(x);
            free(ys);
            free(ya);
            free(deq);
        }
    }
    dais_kernels_force_isa(DAIS_ISA_SCALAR);
}

/* ---- batched == one token at a time, multi-thread == single thread (bit-exact) ----------------
 */

static void check_batch_and_threads(enum dais_isa isa)
{
    static const int toks[] = {1, 3, 7, 64};
    static const int64_t outs[] = {1, 5, 13, 130};
    dais_pool *pools[3] = {dais_pool_new(1), dais_pool_new(2), dais_pool_new(3)};
    for (int p = 0; p < 3; p++)
        assert_non_null(pools[p]);
    for (size_t c = 0; c < N_TYPES; c++) {
        uint32_t type = all_types[c];
        for (int oi = 0; oi < 4; oi++) {
            int64_t n_in = n_in_for(type, oi % 2 == 1), n_out = outs[oi];
            dais_matrix w;
            void *data = make_matrix(type, n_in, n_out, &w);
            int n_tok = toks[oi];
            float *x = make_acts(n_in * n_tok, 2.0f);
            size_t ysz = sizeof(float) * (size_t)(n_out * n_tok);
            float *yb = malloc(ysz), *y1 = malloc(ysz), *yt = malloc(ysz);
            run_mm(isa, pools[0], &w, x, yb, n_tok);
            for (int t = 0; t < n_tok; t++)
                run_mm(isa, pools[0], &w, x + t * n_in, y1 + t * n_out, 1);
            if (memcmp(yb, y1, ysz) != 0)
                fail_msg("%s %s n_in %lld n_out %lld n_tok %d: batched != per-token",
                         dais__kernels_impl()->name, dais_dtype_name(type), (long long)n_in,
                         (long long)n_out, n_tok);
            for (int p = 1; p < 3; p++) {
                run_mm(isa, pools[p], &w, x, yt, n_tok);
                if (memcmp(yb, yt, ysz) != 0)
                    fail_msg("%s %s n_out %lld n_tok %d: %d threads != 1 thread",
                             dais__kernels_impl()->name, dais_dtype_name(type), (long long)n_out,
                             n_tok, p + 1);
            }
            free(data);
            free(x);
            free(yb);
            free(y1);
            free(yt);
        }
    }
    for (int p = 0; p < 3; p++)
        dais_pool_free(pools[p]);
    dais_kernels_force_isa(DAIS_ISA_SCALAR);
}

static void test_batch_threads_scalar(void **state)
{
    (void)state;
    check_batch_and_threads(DAIS_ISA_SCALAR);
}

static void test_batch_threads_avx2(void **state)
{
    (void)state;
    if (!have_avx2()) {
        skip();
        return;
    }
    check_batch_and_threads(DAIS_ISA_AVX2);
}

/* A large batch goes through the parallel activation quantization and token chunking. */
static void test_large_batch(void **state)
{
    (void)state;
    dais_pool *pool = dais_pool_new(2);
    assert_non_null(pool);
    bool avx2 = have_avx2();
    static const uint32_t types[] = {DAIS_Q4_0, DAIS_Q4_K, DAIS_F16};
    for (int c = 0; c < 3; c++) {
        int64_t n_in = 1024, n_out = 24;
        int n_tok = 200;
        dais_matrix w;
        void *data = make_matrix(types[c], n_in, n_out, &w);
        float *x = make_acts(n_in * n_tok, 1.0f);
        size_t ysz = sizeof(float) * (size_t)(n_out * n_tok);
        float *yb = malloc(ysz), *y1 = malloc(ysz);
        enum dais_isa isa = avx2 ? DAIS_ISA_AVX2 : DAIS_ISA_SCALAR;
        run_mm(isa, pool, &w, x, yb, n_tok);
        for (int t = 0; t < n_tok; t++)
            run_mm(isa, NULL, &w, x + t * n_in, y1 + t * n_out, 1);
        assert_memory_equal(yb, y1, ysz);
        free(data);
        free(x);
        free(yb);
        free(y1);
    }
    dais_pool_free(pool);
    dais_kernels_force_isa(DAIS_ISA_SCALAR);
}

/* Rows of a single block (and of one float), where every kernel runs only its tail paths. */
static void test_single_block_rows(void **state)
{
    (void)state;
    bool avx2 = have_avx2();
    for (size_t c = 0; c < N_TYPES; c++) {
        uint32_t type = all_types[c];
        int64_t n_in = dais_dtype_get(type)->block == 1 ? 1 : dais_dtype_get(type)->block;
        int64_t n_out = 3;
        int n_tok = 5;
        dais_matrix w;
        void *data = make_matrix(type, n_in, n_out, &w);
        float *x = make_acts(n_in * n_tok, 1.0f);
        size_t ysz = sizeof(float) * (size_t)(n_out * n_tok);
        float *yb = malloc(ysz), *y1 = malloc(ysz);
        for (int isa = 0; isa < (avx2 ? 2 : 1); isa++) {
            run_mm((enum dais_isa)isa, NULL, &w, x, yb, n_tok);
            for (int t = 0; t < n_tok; t++)
                run_mm((enum dais_isa)isa, NULL, &w, x + t * n_in, y1 + t * n_out, 1);
            assert_memory_equal(yb, y1, ysz);
            for (int t = 0; t < n_tok; t++)
                for (int64_t r = 0; r < n_out; r++) {
                    const uint8_t *row = (const uint8_t *)data + row_bytes(type, n_in) * (size_t)r;
                    double ref = dais_dot_ref(type, row, x + t * n_in, n_in);
                    float deq[256];
                    dais_dequantize_row(type, row, deq, n_in);
                    double ww = 0, xx = 0;
                    for (int64_t i = 0; i < n_in; i++) {
                        ww += (double)deq[i] * deq[i];
                        xx += (double)x[t * n_in + i] * x[t * n_in + i];
                    }
                    double e = fabs(yb[t * n_out + r] - ref) / (sqrt(ww * xx) + 1e-30);
                    if (e > ref_tol(type))
                        fail_msg("%s isa %d n_in %lld: %g vs ref %g", dais_dtype_name(type), isa,
                                 (long long)n_in, (double)yb[t * n_out + r], ref);
                }
        }
        free(data);
        free(x);
        free(yb);
        free(y1);
    }
    dais_kernels_force_isa(DAIS_ISA_SCALAR);
}

/* ---- argument checking -------------------------------------------------------------------------
 */

static void test_matmul_invalid(void **state)
{
    (void)state;
    dais_matrix w;
    void *data = make_matrix(DAIS_Q4_0, 64, 4, &w);
    float x[128] = {0}, y[16];
    dais_mm_scratch *s = dais_mm_scratch_new(64, 2);
    assert_non_null(s);
    assert_int_equal(dais_matmul(NULL, s, &w, x, y, 2), 0);
    assert_int_equal(dais_matmul(NULL, s, &w, x, y, 3), DAIS_EINVAL); /* too many tokens */
    assert_int_equal(dais_matmul(NULL, s, &w, x, y, 0), DAIS_EINVAL);
    dais_matrix big = w;
    big.n_in = 96;
    assert_int_equal(dais_matmul(NULL, s, &big, x, y, 1), DAIS_EINVAL); /* past the scratch */
    dais_matrix odd = w;
    odd.n_in = 48;
    assert_int_equal(dais_matmul(NULL, s, &odd, x, y, 1), DAIS_EINVAL); /* not whole blocks */
    dais_matrix q5 = w;
    q5.type = DAIS_Q5_0;
    assert_int_equal(dais_matmul(NULL, s, &q5, x, y, 1), DAIS_EINVAL); /* no kernel */
    q5.type = 200;
    assert_int_equal(dais_matmul(NULL, s, &q5, x, y, 1), DAIS_EINVAL);
    assert_int_equal(dais_matmul(NULL, NULL, &w, x, y, 1), DAIS_EINVAL);
    assert_null(dais_mm_scratch_new(0, 1));
    assert_null(dais_mm_scratch_new(64, 0));
    dais_mm_scratch_free(NULL);
    dais_mm_scratch_free(s);
    free(data);
}

static void test_isa_and_features(void **state)
{
    (void)state;
    dais_kernels_force_isa(DAIS_ISA_SCALAR);
    assert_int_equal(dais_kernels_isa(), DAIS_ISA_SCALAR);
    assert_string_equal(dais__kernels_impl()->name, "scalar");
    const char *f = dais_kernels_features();
    assert_non_null(f);
    assert_true(strlen(f) > 0);
    if (have_avx2()) assert_non_null(strstr(f, "avx2"));
}

static void test_membw(void **state)
{
    (void)state;
    dais_pool *pool = dais_pool_new(2);
    double gbs = dais_membw_read_gbs(pool, 8u << 20, 2);
    printf("  read bandwidth (8 MiB, 2 threads): %.1f GB/s\n", gbs);
    assert_true(gbs > 0.1 && gbs < 10000.0);
    assert_true(dais_membw_read_gbs(NULL, 1u << 20, 1) > 0.0);
    assert_true(dais_membw_read_gbs(pool, 100, 1) == 0.0);
    assert_true(dais_membw_read_gbs(pool, 1u << 20, 0) == 0.0);
    dais_membw *m = dais_membw_new(pool, 4u << 20);
    assert_non_null(m);
    assert_true(dais_membw_measure(m, pool, 2) > 0.1);
    assert_true(dais_membw_measure(m, NULL, 1) == 0.0); /* thread count differs */
    dais_membw_free(m);
    dais_membw_free(NULL);
    dais_pool_free(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_roundtrip_all),
        cmocka_unit_test(test_f16_values),
        cmocka_unit_test(test_f16_vs_hardware),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_q4k_scale_unpack),
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_quantize_error),
        cmocka_unit_test(test_quantize_extremes),
        cmocka_unit_test(test_act_quant_identical),
        cmocka_unit_test(test_matmul_vs_ref),
        cmocka_unit_test(test_batch_threads_scalar),
        cmocka_unit_test(test_batch_threads_avx2),
        cmocka_unit_test(test_large_batch),
        cmocka_unit_test(test_single_block_rows),
        cmocka_unit_test(test_matmul_invalid),
        cmocka_unit_test(test_isa_and_features),
        cmocka_unit_test(test_membw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
