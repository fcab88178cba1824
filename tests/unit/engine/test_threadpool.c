/*
 * Tests for src/engine/threadpool.c: every ith runs exactly once per run across thousands of
 * runs, the caller runs ith 0, workers' writes are visible when a run returns, workers that
 * went to sleep wake for the next run, and the cost of an empty run. Meant to run under TSan
 * as well (build/…-tsan).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/clock.h"
#include "engine/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXT 8

typedef struct counts {
    int n;
    long hits[MAXT];    /* slot ith is written only by the thread running ith */
    atomic_int bad_nth; /* runs where nth was not the pool size */
    atomic_long total;
    pthread_t caller;
    atomic_int caller_not_0;
} counts;

static void count_fn(void *arg, int ith, int nth)
{
    counts *c = arg;
    if (nth != c->n || ith < 0 || ith >= nth) {
        atomic_fetch_add(&c->bad_nth, 1);
        return;
    }
    c->hits[ith]++;
    atomic_fetch_add(&c->total, 1);
    if (ith == 0 && !pthread_equal(pthread_self(), c->caller))
        atomic_fetch_add(&c->caller_not_0, 1);
}

static void test_every_ith_once(void **state)
{
    (void)state;
    for (int n = 1; n <= 4; n++) {
        dais_pool *p = dais_pool_new(n);
        assert_non_null(p);
        assert_int_equal(dais_pool_size(p), n);
        counts c = {.n = n, .caller = pthread_self()};
        const int runs = 5000;
        for (int r = 0; r < runs; r++) {
            dais_pool_run(p, count_fn, &c);
            for (int i = 0; i < n; i++)
                if (c.hits[i] != r + 1)
                    fail_msg("n=%d run %d: ith %d ran %ld times", n, r, i, c.hits[i]);
        }
        assert_int_equal(atomic_load(&c.total), (long)runs * n);
        assert_int_equal(atomic_load(&c.bad_nth), 0);
        assert_int_equal(atomic_load(&c.caller_not_0), 0);
        dais_pool_free(p);
    }
}

/* Workers write disjoint halves of a buffer; the caller reads all of it after the run. */
typedef struct fill {
    uint32_t *buf;
    size_t n;
    uint32_t value;
} fill;

static void fill_fn(void *arg, int ith, int nth)
{
    fill *f = arg;
    size_t a = f->n * (size_t)ith / (size_t)nth, b = f->n * (size_t)(ith + 1) / (size_t)nth;
    for (size_t i = a; i < b; i++)
        f->buf[i] = f->value + (uint32_t)i;
}

static void test_results_visible(void **state)
{
    (void)state;
    dais_pool *p = dais_pool_new(3);
    assert_non_null(p);
    fill f = {.n = 100000};
    f.buf = malloc(f.n * sizeof(uint32_t));
    assert_non_null(f.buf);
    for (uint32_t v = 1; v <= 200; v++) {
        f.value = v * 1000003u;
        dais_pool_run(p, fill_fn, &f);
        for (size_t i = 0; i < f.n; i++)
            if (f.buf[i] != f.value + (uint32_t)i)
                fail_msg("round %u: element %zu not written", v, i);
    }
    free(f.buf);
    dais_pool_free(p);
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Pauses around the spin limit exercise the sleep/wake handshake from both sides. */
static void test_sleep_and_wake(void **state)
{
    (void)state;
    dais_pool *p = dais_pool_new(2);
    assert_non_null(p);
    counts c = {.n = 2, .caller = pthread_self()};
    static const long pauses[] = {0, 50, 200, 280, 300, 320, 400, 1000, 3000};
    int runs = 0;
    for (int rep = 0; rep < 6; rep++) {
        for (size_t i = 0; i < sizeof(pauses) / sizeof(pauses[0]); i++) {
            sleep_us(pauses[i]);
            dais_pool_run(p, count_fn, &c);
            runs++;
            assert_int_equal(c.hits[0], runs);
            assert_int_equal(c.hits[1], runs);
        }
    }
    /* after a long pause the workers sleep; the next run still completes */
    sleep_us(20000);
    dais_pool_run(p, count_fn, &c);
    assert_int_equal(c.hits[1], runs + 1);
    dais_pool_free(p);
}

static void empty_fn(void *arg, int ith, int nth)
{
    (void)arg;
    (void)ith;
    (void)nth;
}

static void test_overhead(void **state)
{
    (void)state;
    dais_pool *p = dais_pool_new(2);
    assert_non_null(p);
    for (int i = 0; i < 1000; i++)
        dais_pool_run(p, empty_fn, NULL);
    const int runs = 20000;
    uint64_t best = UINT64_MAX;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t t0 = dais_now_ns();
        for (int i = 0; i < runs; i++)
            dais_pool_run(p, empty_fn, NULL);
        uint64_t dt = dais_now_ns() - t0;
        best = dt < best ? dt : best;
    }
    double us = (double)best / runs / 1000.0;
    printf("  empty dais_pool_run, 2 threads: %.2f us\n", us);
    /* generous bound: sanitizer builds and a busy shared machine are much slower than the
     * ~0.3-1 us of an idle release build, but a run must never cost a scheduler tick */
    assert_true(us < 200.0);
    dais_pool_free(p);
}

static void test_lifecycle(void **state)
{
    (void)state;
    assert_null(dais_pool_new(0));
    assert_null(dais_pool_new(-3));
    dais_pool_free(NULL);
    assert_int_equal(dais_pool_size(NULL), 1);
    /* create and destroy repeatedly, with and without runs in between */
    for (int i = 0; i < 50; i++) {
        dais_pool *p = dais_pool_new(1 + i % 4);
        assert_non_null(p);
        if (i % 2) {
            counts c = {.n = 1 + i % 4, .caller = pthread_self()};
            dais_pool_run(p, count_fn, &c);
            assert_int_equal(atomic_load(&c.total), 1 + i % 4);
        }
        dais_pool_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_ith_once), cmocka_unit_test(test_results_visible),
        cmocka_unit_test(test_sleep_and_wake), cmocka_unit_test(test_overhead),
        cmocka_unit_test(test_lifecycle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
