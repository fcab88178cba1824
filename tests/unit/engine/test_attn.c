/*
 * Attention for one (token, head): the scalar and AVX2 versions against a double-precision
 * softmax over all positions, across head sizes with and without an 8-float tail, position
 * counts below, at and above the 64-position chunk, strided rows, and scores large enough that
 * a later chunk raises the running maximum. Stated tolerance: max |out - ref| <= 1e-5 ·
 * (1 + max |V|) for both versions, and the two within 1e-5 of each other.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/attn.h"
#include "engine/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static void reference(const float *q, const float *k, const float *v, int64_t stride, int n, int hd,
                      float scale, double *out)
{
    double *s = malloc((size_t)n * sizeof *s), mx = -INFINITY, sum = 0;
    for (int p = 0; p < n; p++) {
        double d = 0;
        for (int i = 0; i < hd; i++)
            d += (double)q[i] * k[p * stride + i];
        s[p] = d * scale;
        if (s[p] > mx) mx = s[p];
    }
    for (int p = 0; p < n; p++)
        sum += (s[p] = exp(s[p] - mx));
    for (int i = 0; i < hd; i++) {
        double a = 0;
        for (int p = 0; p < n; p++)
            a += s[p] / sum * v[p * stride + i];
        out[i] = a;
    }
    free(s);
}

static void check(int hd, int n, int64_t stride, float qscale, bool rising)
{
    float *q = malloc((size_t)hd * sizeof *q);
    float *k = malloc((size_t)n * stride * sizeof *k), *v = malloc((size_t)n * stride * sizeof *v);
    float *o1 = malloc((size_t)hd * sizeof *o1), *o2 = malloc((size_t)hd * sizeof *o2);
    double *ref = malloc((size_t)hd * sizeof *ref);
    for (int i = 0; i < hd; i++)
        q[i] = frand() * qscale;
    for (int64_t i = 0; i < n * stride; i++) {
        k[i] = frand();
        v[i] = frand() * 3.0f;
    }
    if (rising) /* later positions align better with q: the maximum moves chunk by chunk */
        for (int p = 0; p < n; p++)
            for (int i = 0; i < hd; i++)
                k[p * stride + i] = q[i] * (float)p / (float)n + 0.01f * frand();
    float scale = 1.0f / sqrtf((float)hd);
    reference(q, k, v, stride, n, hd, scale, ref);
    dais_attn_head_scalar(q, k, v, stride, n, hd, scale, o1);
    dais_attn_fn fast = dais_attn_select(dais_kernels_isa());
    fast(q, k, v, stride, n, hd, scale, o2);
    for (int i = 0; i < hd; i++) {
        assert_true(fabs(o1[i] - ref[i]) <= 1e-5 * 4);
        assert_true(fabs(o2[i] - ref[i]) <= 1e-5 * 4);
        assert_true(fabsf(o1[i] - o2[i]) <= 1e-5f * 4);
    }
    free(q), free(k), free(v), free(o1), free(o2), free(ref);
}

static void test_shapes(void **state)
{
    (void)state;
    const int hds[] = {2, 8, 16, 24, 64, 100, 128};
    const int ns[] = {1, 2, 63, 64, 65, 200, 1000};
    for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++) {
            check(hds[a], ns[b], hds[a], 1.0f, false);
            check(hds[a], ns[b], hds[a] * 4 + 8, 1.0f, false);
        }
}

static void test_peaked_and_rising(void **state)
{
    (void)state;
    check(64, 300, 256, 8.0f, false); /* large scores: near one-hot softmax */
    check(64, 300, 64, 20.0f, true);
    check(100, 130, 100, 30.0f, true);
}

/* The forced-scalar selection returns the scalar version. */
static void test_select(void **state)
{
    (void)state;
    assert_ptr_equal(dais_attn_select(DAIS_ISA_SCALAR), dais_attn_head_scalar);
    assert_ptr_equal(dais_attn_select(DAIS_ISA_AVX2), dais_attn_head_avx2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_peaked_and_rising),
        cmocka_unit_test(test_select),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
