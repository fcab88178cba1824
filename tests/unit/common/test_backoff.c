/* Unit tests for src/common/backoff.c: schedules, jitter bounds, attempts, deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/backoff.h"

#define MS  1000000ull
#define SEC (1000 * MS)

static dais_backoff_config cfg_none(void)
{
    dais_backoff_config c;
    dais_backoff_config_default(&c);
    c.jitter = DAIS_BACKOFF_NONE;
    return c;
}

static void test_defaults_valid(void **state)
{
    (void)state;
    dais_backoff_config c;
    dais_backoff_config_default(&c);
    assert_int_equal(dais_backoff_config_check(&c, NULL), 0);
    assert_int_equal(c.base_ns, 100 * MS);
    assert_int_equal(c.max_ns, 5 * SEC);
    assert_int_equal(c.max_attempts, 5);
    assert_int_equal(c.jitter, DAIS_BACKOFF_FULL);
}

static void test_invalid_configs(void **state)
{
    (void)state;
    dais_err e;
    dais_backoff_config c;
    dais_backoff b;

    c = cfg_none();
    c.base_ns = 0;
    assert_int_equal(dais_backoff_config_check(&c, &e), DAIS_EINVAL);
    assert_int_equal(dais_backoff_init(&b, &c, 0, 1), DAIS_EINVAL);

    c = cfg_none();
    c.max_ns = c.base_ns - 1;
    assert_int_equal(dais_backoff_config_check(&c, &e), DAIS_EINVAL);
    assert_non_null(strstr(e.msg, "max delay"));

    c = cfg_none();
    c.multiplier = 0.5;
    assert_int_equal(dais_backoff_config_check(&c, NULL), DAIS_EINVAL);
    c.multiplier = NAN;
    assert_int_equal(dais_backoff_config_check(&c, NULL), DAIS_EINVAL);
    c.multiplier = 17;
    assert_int_equal(dais_backoff_config_check(&c, NULL), DAIS_EINVAL);

    c = cfg_none();
    c.jitter = (enum dais_backoff_jitter)7;
    assert_int_equal(dais_backoff_config_check(&c, NULL), DAIS_EINVAL);
    assert_int_equal(dais_backoff_config_check(NULL, NULL), DAIS_EINVAL);
}

/* Without jitter the schedule is exactly base * 2^n, and the 5th failure gives up. */
static void test_exponential_schedule_and_attempts(void **state)
{
    (void)state;
    dais_backoff_config c = cfg_none();
    dais_backoff b;
    assert_int_equal(dais_backoff_init(&b, &c, 1000, 42), 0);
    assert_int_equal(dais_backoff_attempts(&b), 1);

    const uint64_t want[] = {100 * MS, 200 * MS, 400 * MS, 800 * MS};
    uint64_t now = 1000, d = 0;
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(dais_backoff_next(&b, now, &d), 0);
        assert_int_equal(d, want[i]);
        assert_int_equal(dais_backoff_attempts(&b), i + 2);
        now += d;
    }
    d = 123;
    assert_int_equal(dais_backoff_next(&b, now, &d), DAIS_ERANGE);
    assert_int_equal(d, 0);
    assert_int_equal(dais_backoff_attempts(&b), 5); /* giving up starts no attempt */
    assert_int_equal(dais_backoff_next(&b, now, &d), DAIS_ERANGE);

    /* After a success, everything starts over. */
    dais_backoff_reset(&b, now);
    assert_int_equal(dais_backoff_attempts(&b), 1);
    assert_int_equal(dais_backoff_next(&b, now, &d), 0);
    assert_int_equal(d, 100 * MS);
}

static void test_single_attempt_never_retries(void **state)
{
    (void)state;
    dais_backoff_config c = cfg_none();
    c.max_attempts = 1;
    dais_backoff b;
    uint64_t d;
    assert_int_equal(dais_backoff_init(&b, &c, 0, 1), 0);
    assert_int_equal(dais_backoff_next(&b, 0, &d), DAIS_ERANGE);
}

/* Delays stop growing at max_ns and nothing overflows with unbounded attempts. */
static void test_cap_and_unbounded(void **state)
{
    (void)state;
    dais_backoff_config c = cfg_none();
    c.max_attempts = 0;
    c.base_ns = 1 * SEC;
    c.max_ns = 30 * SEC;
    c.multiplier = 16;
    dais_backoff b;
    assert_int_equal(dais_backoff_init(&b, &c, 0, 7), 0);
    uint64_t d;
    assert_int_equal(dais_backoff_next(&b, 0, &d), 0);
    assert_int_equal(d, 1 * SEC);
    assert_int_equal(dais_backoff_next(&b, 0, &d), 0);
    assert_int_equal(d, 16 * SEC);
    for (int i = 0; i < 5000; i++) {
        assert_int_equal(dais_backoff_next(&b, 0, &d), 0);
        assert_int_equal(d, 30 * SEC);
    }
    assert_int_equal(dais_backoff_attempts(&b), 5003);

    /* Full jitter at huge attempt counts stays within [0, max]. */
    c.jitter = DAIS_BACKOFF_FULL;
    c.max_ns = UINT64_MAX / 2;
    assert_int_equal(dais_backoff_init(&b, &c, 0, 9), 0);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(dais_backoff_next(&b, 0, &d), 0);
        assert_true(d <= c.max_ns);
    }
}

/* Full jitter: each delay in [0, ceiling_n]; the same seed repeats the sequence, another seed
 * does not; over many draws the mean is near ceiling / 2 and both halves are used. */
static void test_full_jitter(void **state)
{
    (void)state;
    dais_backoff_config c;
    dais_backoff_config_default(&c);
    c.max_attempts = 0;
    dais_backoff a, b, o;
    assert_int_equal(dais_backoff_init(&a, &c, 0, 1234), 0);
    assert_int_equal(dais_backoff_init(&b, &c, 0, 1234), 0);
    assert_int_equal(dais_backoff_init(&o, &c, 0, 4321), 0);
    int differ = 0;
    for (int n = 0; n < 8; n++) {
        uint64_t ceil_n = 100 * MS << n;
        if (ceil_n > 5 * SEC) ceil_n = 5 * SEC;
        uint64_t da, db, dob;
        assert_int_equal(dais_backoff_next(&a, 0, &da), 0);
        assert_int_equal(dais_backoff_next(&b, 0, &db), 0);
        assert_int_equal(dais_backoff_next(&o, 0, &dob), 0);
        assert_int_equal(da, db);
        assert_true(da <= ceil_n);
        differ += da != dob;
    }
    assert_true(differ >= 6);

    /* Distribution at a fixed ceiling (attempt >= 6 → 5 s). */
    double sum = 0;
    int low = 0, high = 0;
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        uint64_t d;
        assert_int_equal(dais_backoff_next(&a, 0, &d), 0);
        assert_true(d <= 5 * SEC);
        sum += (double)d;
        if (d < 5 * SEC / 10) low++;
        if (d > 5 * SEC * 9 / 10) high++;
    }
    double mean = sum / N / (double)SEC;
    assert_true(mean > 2.4 && mean < 2.6);
    assert_true(low > N / 20 && high > N / 20); /* ~10 % each */
}

/* Decorrelated jitter: base <= d_n <= min(max, 3 * d_{n-1}). */
static void test_decorrelated_jitter(void **state)
{
    (void)state;
    dais_backoff_config c;
    dais_backoff_config_default(&c);
    c.jitter = DAIS_BACKOFF_DECORRELATED;
    c.max_attempts = 0;
    c.max_ns = 2 * SEC;
    dais_backoff b;
    assert_int_equal(dais_backoff_init(&b, &c, 0, 99), 0);
    uint64_t prev = c.base_ns, d;
    int at_cap_region = 0;
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(dais_backoff_next(&b, 0, &d), 0);
        assert_true(d >= c.base_ns);
        assert_true(d <= c.max_ns);
        assert_true(d <= prev * 3);
        at_cap_region += d > c.max_ns / 2;
        prev = d;
    }
    assert_true(at_cap_region > 100); /* it does grow */
}

/* A retry that could not start before the deadline is refused with ETIMEOUT. */
static void test_deadline(void **state)
{
    (void)state;
    dais_backoff_config c = cfg_none();
    c.max_attempts = 0;
    c.deadline_ns = 1 * SEC;
    dais_backoff b;
    const uint64_t t0 = 5 * SEC;
    assert_int_equal(dais_backoff_init(&b, &c, t0, 3), 0);
    assert_int_equal(dais_backoff_remaining_ns(&b, t0), 1 * SEC);
    assert_int_equal(dais_backoff_remaining_ns(&b, t0 + 300 * MS), 700 * MS);

    uint64_t d;
    assert_int_equal(dais_backoff_next(&b, t0 + 100 * MS, &d), 0); /* 100 ms: ends at 200 */
    assert_int_equal(d, 100 * MS);
    assert_int_equal(dais_backoff_next(&b, t0 + 500 * MS, &d), 0); /* 200 ms: ends at 700 */
    assert_int_equal(d, 200 * MS);
    /* 400 ms from 700 would end at 1100 > 1000. */
    assert_int_equal(dais_backoff_next(&b, t0 + 700 * MS, &d), DAIS_ETIMEOUT);
    assert_int_equal(d, 0);
    assert_int_equal(dais_backoff_attempts(&b), 3);
    assert_int_equal(dais_backoff_next(&b, t0 + 2 * SEC, &d), DAIS_ETIMEOUT);
    assert_int_equal(dais_backoff_remaining_ns(&b, t0 + 2 * SEC), 0);

    /* No deadline: remaining is unbounded. */
    c.deadline_ns = 0;
    assert_int_equal(dais_backoff_init(&b, &c, t0, 3), 0);
    assert_true(dais_backoff_remaining_ns(&b, UINT64_MAX) == UINT64_MAX);

    /* A deadline near the end of the clock range saturates instead of wrapping. */
    c.deadline_ns = UINT64_MAX;
    assert_int_equal(dais_backoff_init(&b, &c, UINT64_MAX - 10, 3), 0);
    assert_int_equal(dais_backoff_next(&b, UINT64_MAX - 10, &d), DAIS_ETIMEOUT);
}

/* Seed 0 picks a seed; two objects created at once still give valid delays. */
static void test_auto_seed(void **state)
{
    (void)state;
    dais_backoff_config c;
    dais_backoff_config_default(&c);
    dais_backoff a, b;
    assert_int_equal(dais_backoff_init(&a, &c, 0, 0), 0);
    assert_int_equal(dais_backoff_init(&b, &c, 0, 0), 0);
    uint64_t da, db;
    assert_int_equal(dais_backoff_next(&a, 0, &da), 0);
    assert_int_equal(dais_backoff_next(&b, 0, &db), 0);
    assert_true(da <= c.base_ns && db <= c.base_ns);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_valid),
        cmocka_unit_test(test_invalid_configs),
        cmocka_unit_test(test_exponential_schedule_and_attempts),
        cmocka_unit_test(test_single_attempt_never_retries),
        cmocka_unit_test(test_cap_and_unbounded),
        cmocka_unit_test(test_full_jitter),
        cmocka_unit_test(test_decorrelated_jitter),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_auto_seed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
