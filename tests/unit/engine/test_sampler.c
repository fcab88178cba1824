/*
 * Sampler: greedy, the run.c RNG sequence, temperature, top-k, top-p (run.c's cut-off rule),
 * min-p, repetition penalty, determinism per seed, parameter validation. The seeded parity
 * with run.c on a real model is in test_golden.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/sampler.h"

#include <math.h>
#include <string.h>

static dais_sampler_params plain(float temp, uint64_t seed)
{
    dais_sampler_params p;
    dais_sampler_params_default(&p);
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

static void test_greedy(void **state)
{
    (void)state;
    dais_sampler_params p = plain(0.0f, 1);
    dais_sampler *s = dais_sampler_new(&p, 5);
    assert_non_null(s);
    float l1[5] = {0.1f, 3.0f, -2.0f, 2.9f, 3.0f};
    assert_int_equal(dais_sampler_sample(s, l1), 1); /* first of equal maxima */
    float l2[5] = {-5, -4, -3, -2, -1};
    assert_int_equal(dais_sampler_sample(s, l2), 4);
    dais_sampler_free(s);
}

/* With 256 equal logits and no filters, run.c's sample_mult returns floor(coin * 256), i.e. the
 * top 8 bits of each random_u32. Expected values from an independent implementation of run.c's
 * xorshift (seed 42). */
static void test_rng_matches_runc(void **state)
{
    (void)state;
    static const int expect[16] = {86, 200, 202, 241, 195, 213, 52, 112,
                                   77, 172, 108, 87,  224, 48,  18, 156};
    dais_sampler_params p = plain(1.0f, 42);
    dais_sampler *s = dais_sampler_new(&p, 256);
    assert_non_null(s);
    float l[256];
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 256; j++)
            l[j] = 0.0f;
        assert_int_equal(dais_sampler_sample(s, l), expect[i]);
    }
    /* reset restarts the sequence */
    dais_sampler_reset(s, 42);
    for (int j = 0; j < 256; j++)
        l[j] = 0.0f;
    assert_int_equal(dais_sampler_sample(s, l), expect[0]);
    dais_sampler_free(s);
}

/* Draws n samples from fixed logits and counts them. */
static void histogram(dais_sampler *s, const float *logits, int nv, int n, int *count)
{
    float l[16];
    memset(count, 0, (size_t)nv * sizeof *count);
    for (int i = 0; i < n; i++) {
        memcpy(l, logits, (size_t)nv * sizeof *l);
        int t = dais_sampler_sample(s, l);
        assert_true(t >= 0 && t < nv);
        count[t]++;
    }
}

static void test_distribution(void **state)
{
    (void)state;
    float logits[4] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
    int count[4];
    const int n = 40000;
    dais_sampler_params p = plain(1.0f, 7);
    dais_sampler *s = dais_sampler_new(&p, 4);
    histogram(s, logits, 4, n, count);
    for (int i = 0; i < 4; i++)
        assert_true(fabs((double)count[i] / n - 0.1 * (i + 1)) < 0.01);
    dais_sampler_free(s);

    /* temperature 0.5 squares the probabilities: 1:4:9:16 of 30 */
    p.temperature = 0.5f;
    s = dais_sampler_new(&p, 4);
    histogram(s, logits, 4, n, count);
    const double sq[4] = {1 / 30.0, 4 / 30.0, 9 / 30.0, 16 / 30.0};
    for (int i = 0; i < 4; i++)
        assert_true(fabs((double)count[i] / n - sq[i]) < 0.01);
    dais_sampler_free(s);
}

static void test_top_k(void **state)
{
    (void)state;
    float logits[6] = {logf(0.05f), logf(0.3f), logf(0.1f), logf(0.4f), logf(0.1f), logf(0.05f)};
    int count[6];
    dais_sampler_params p = plain(1.0f, 3);
    p.top_k = 1;
    dais_sampler *s = dais_sampler_new(&p, 6);
    histogram(s, logits, 6, 1000, count);
    assert_int_equal(count[3], 1000);
    dais_sampler_free(s);

    p.top_k = 2; /* tokens 3 and 1, in proportion 4:3 */
    s = dais_sampler_new(&p, 6);
    histogram(s, logits, 6, 20000, count);
    assert_int_equal(count[0] + count[2] + count[4] + count[5], 0);
    assert_true(fabs((double)count[3] / 20000 - 4.0 / 7.0) < 0.015);
    dais_sampler_free(s);
}

static void test_top_p(void **state)
{
    (void)state;
    float logits[4] = {logf(0.1f), logf(0.4f), logf(0.2f), logf(0.3f)};
    int count[4];
    /* run.c: sorted 0.4, 0.3, 0.2, 0.1; the cumulative first exceeds 0.5 at 0.7 → {1, 3}. */
    dais_sampler_params p = plain(1.0f, 11);
    p.top_p = 0.5f;
    dais_sampler *s = dais_sampler_new(&p, 4);
    histogram(s, logits, 4, 20000, count);
    assert_int_equal(count[0] + count[2], 0);
    assert_true(fabs((double)count[1] / 20000 - 4.0 / 7.0) < 0.015);
    dais_sampler_free(s);

    /* top-p 0.75 keeps three tokens */
    p.top_p = 0.75f;
    s = dais_sampler_new(&p, 4);
    histogram(s, logits, 4, 20000, count);
    assert_int_equal(count[0], 0);
    assert_true(count[2] > 0);
    dais_sampler_free(s);
}

static void test_min_p(void **state)
{
    (void)state;
    float logits[4] = {logf(0.1f), logf(0.4f), logf(0.2f), logf(0.3f)};
    int count[4];
    dais_sampler_params p = plain(1.0f, 5);
    p.min_p = 0.6f; /* keep p >= 0.24 → {1, 3} */
    dais_sampler *s = dais_sampler_new(&p, 4);
    histogram(s, logits, 4, 20000, count);
    assert_int_equal(count[0] + count[2], 0);
    assert_true(fabs((double)count[1] / 20000 - 4.0 / 7.0) < 0.015);
    dais_sampler_free(s);

    /* min-p, top-k and top-p together: min-p 0.2 keeps p >= 0.08, all four; top-k 2 keeps
     * {1, 3}; renormalised they are 4/7 and 3/7, so top-p 0.6 keeps both, top-p 0.5 only 1. */
    p.min_p = 0.2f;
    p.top_k = 2;
    p.top_p = 0.6f;
    s = dais_sampler_new(&p, 4);
    histogram(s, logits, 4, 20000, count);
    assert_int_equal(count[0] + count[2], 0);
    assert_true(fabs((double)count[1] / 20000 - 4.0 / 7.0) < 0.015);
    dais_sampler_free(s);
    p.top_p = 0.5f;
    s = dais_sampler_new(&p, 4);
    histogram(s, logits, 4, 2000, count);
    assert_int_equal(count[1], 2000);
    dais_sampler_free(s);
}

static void test_repeat_penalty(void **state)
{
    (void)state;
    dais_sampler_params p = plain(0.0f, 1);
    p.repeat_penalty = 1.5f;
    p.repeat_last_n = 2;
    dais_sampler *s = dais_sampler_new(&p, 4);
    assert_non_null(s);
    float l[4];
    /* no history: argmax */
    memcpy(l, (float[4]){2.0f, 1.9f, -1.0f, -0.5f}, sizeof l);
    assert_int_equal(dais_sampler_sample(s, l), 0);
    /* token 0 seen (twice: penalised once): 2.0 / 1.5 < 1.9 */
    dais_sampler_accept(s, 0);
    dais_sampler_accept(s, 0);
    memcpy(l, (float[4]){2.0f, 1.9f, -1.0f, -0.5f}, sizeof l);
    assert_int_equal(dais_sampler_sample(s, l), 1);
    assert_true(fabsf(l[0] - 2.0f / 1.5f) < 1e-6f);
    /* negative logits are multiplied */
    dais_sampler_accept(s, 3);
    memcpy(l, (float[4]){-3.0f, -3.0f, -0.7f, -0.5f}, sizeof l);
    assert_int_equal(dais_sampler_sample(s, l), 2); /* token 3: -0.5 * 1.5 = -0.75 < -0.7 */
    assert_true(fabsf(l[3] + 0.75f) < 1e-6f);
    /* window of 2: after 3 and 2, token 0 is no longer penalised */
    dais_sampler_accept(s, 2);
    memcpy(l, (float[4]){2.0f, 1.9f, -1.0f, -0.5f}, sizeof l);
    assert_int_equal(dais_sampler_sample(s, l), 0);
    dais_sampler_accept(s, 99999); /* out of range: ignored */
    dais_sampler_accept(s, -1);
    dais_sampler_free(s);
}

static void test_deterministic_per_seed(void **state)
{
    (void)state;
    dais_sampler_params p;
    dais_sampler_params_default(&p); /* temp 0.8, top-k 40, top-p 0.95, min-p 0.05 */
    float base[16];
    for (int i = 0; i < 16; i++)
        base[i] = (float)((i * 7) % 5) * 0.3f;
    int seq[3][64];
    uint64_t seeds[3] = {9, 9, 10};
    for (int r = 0; r < 3; r++) {
        p.seed = seeds[r];
        dais_sampler *s = dais_sampler_new(&p, 16);
        assert_non_null(s);
        for (int i = 0; i < 64; i++) {
            float l[16];
            memcpy(l, base, sizeof l);
            seq[r][i] = dais_sampler_sample(s, l);
        }
        dais_sampler_free(s);
    }
    assert_memory_equal(seq[0], seq[1], sizeof seq[0]);
    assert_memory_not_equal(seq[0], seq[2], sizeof seq[0]);
    /* seed 0 works (replaced by a fixed constant) and is reproducible */
    p.seed = 0;
    int a[32], b[32];
    for (int r = 0; r < 2; r++) {
        dais_sampler *s = dais_sampler_new(&p, 16);
        for (int i = 0; i < 32; i++) {
            float l[16];
            memcpy(l, base, sizeof l);
            (r ? b : a)[i] = dais_sampler_sample(s, l);
        }
        dais_sampler_free(s);
    }
    assert_memory_equal(a, b, sizeof a);
}

static void test_validation(void **state)
{
    (void)state;
    dais_sampler_params p = plain(1.0f, 1);
    assert_null(dais_sampler_new(&p, 0));
    p.temperature = NAN;
    assert_null(dais_sampler_new(&p, 4));
    p.temperature = -1.0f;
    assert_null(dais_sampler_new(&p, 4));
    p = plain(1.0f, 1);
    p.top_k = -1;
    assert_null(dais_sampler_new(&p, 4));
    p = plain(1.0f, 1);
    p.top_p = 1.5f;
    assert_null(dais_sampler_new(&p, 4));
    p = plain(1.0f, 1);
    p.min_p = 2.0f;
    assert_null(dais_sampler_new(&p, 4));
    p = plain(1.0f, 1);
    p.repeat_penalty = 0.0f;
    assert_null(dais_sampler_new(&p, 4));
    p = plain(1.0f, 1);
    p.repeat_last_n = -1;
    assert_null(dais_sampler_new(&p, 4));
    assert_int_not_equal(dais_sampler_params_check(NULL), 0);
    /* top_p <= 0 means off, and n_vocab 1 always gives token 0 */
    p = plain(1.0f, 1);
    p.top_p = 0.0f;
    dais_sampler *s = dais_sampler_new(&p, 1);
    assert_non_null(s);
    float l[1] = {5.0f};
    assert_int_equal(dais_sampler_sample(s, l), 0);
    dais_sampler_free(s);
    dais_sampler_free(NULL);
}

/* Non-finite logits must not crash or pick an out-of-range token. */
static void test_nonfinite_logits(void **state)
{
    (void)state;
    dais_sampler_params p;
    dais_sampler_params_default(&p);
    p.seed = 3;
    dais_sampler *s = dais_sampler_new(&p, 8);
    float l[8];
    for (int i = 0; i < 8; i++)
        l[i] = NAN;
    int t = dais_sampler_sample(s, l);
    assert_true(t >= 0 && t < 8);
    for (int i = 0; i < 8; i++)
        l[i] = (i == 2) ? INFINITY : 0.0f;
    t = dais_sampler_sample(s, l);
    assert_true(t >= 0 && t < 8);
    dais_sampler_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),         cmocka_unit_test(test_rng_matches_runc),
        cmocka_unit_test(test_distribution),   cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),          cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_repeat_penalty), cmocka_unit_test(test_deterministic_per_seed),
        cmocka_unit_test(test_validation),     cmocka_unit_test(test_nonfinite_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
