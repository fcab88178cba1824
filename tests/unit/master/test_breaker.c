/* Unit tests for src/master/breaker.c: every transition, driven by explicit timestamps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "master/breaker.h"

#define MS  1000000ull
#define SEC (1000 * MS)
#define T0  (1000 * SEC)

static dais_breaker_config defaults(void)
{
    dais_breaker_config c;
    dais_breaker_config_default(&c);
    return c;
}

/* Admits one request at `now` and records its outcome at the same time. */
static enum dais_breaker_state one(dais_breaker *b, uint64_t now, bool ok)
{
    uint64_t t;
    assert_true(dais_breaker_allow(b, now, &t));
    return dais_breaker_record(b, now, t, ok);
}

static void test_config(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    dais_err e;
    assert_int_equal(dais_breaker_config_check(&c, &e), 0);
    assert_int_equal(c.consecutive_failures, 5);
    assert_int_equal(c.min_requests, 10);

    c.consecutive_failures = 0;
    c.failure_rate = 0;
    assert_int_equal(dais_breaker_config_check(&c, &e), DAIS_EINVAL);
    assert_non_null(strstr(e.msg, "both opening rules"));

    c = defaults();
    c.failure_rate = 1.5;
    assert_int_equal(dais_breaker_config_check(&c, NULL), DAIS_EINVAL);
    c = defaults();
    c.window_ns = 3;
    assert_int_equal(dais_breaker_config_check(&c, NULL), DAIS_EINVAL);
    c = defaults();
    c.min_requests = 0;
    assert_int_equal(dais_breaker_config_check(&c, NULL), DAIS_EINVAL);
    c = defaults();
    c.open_ns = 0;
    assert_int_equal(dais_breaker_config_check(&c, NULL), DAIS_EINVAL);
    c = defaults();
    c.open_max_ns = c.open_ns - 1;
    assert_int_equal(dais_breaker_config_check(&c, NULL), DAIS_EINVAL);
    c = defaults();
    c.half_open_probes = DAIS_BREAKER_MAX_PROBES + 1;
    assert_int_equal(dais_breaker_config_check(&c, NULL), DAIS_EINVAL);
    c = defaults();
    c.half_open_successes = 2; /* > probes (1) */
    assert_int_equal(dais_breaker_config_check(&c, NULL), DAIS_EINVAL);
    c = defaults();
    c.probe_timeout_ns = 0;
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), DAIS_EINVAL);

    assert_string_equal(dais_breaker_state_name(DAIS_BREAKER_CLOSED), "closed");
    assert_string_equal(dais_breaker_state_name(DAIS_BREAKER_OPEN), "open");
    assert_string_equal(dais_breaker_state_name(DAIS_BREAKER_HALF_OPEN), "half_open");
    assert_string_equal(dais_breaker_state_name((enum dais_breaker_state)9), "unknown");
}

/* N consecutive failures open it; a success in between restarts the count. */
static void test_consecutive_failures_open(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    c.failure_rate = 0; /* only the streak rule */
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(one(&b, now += MS, false), DAIS_BREAKER_CLOSED);
    assert_int_equal(one(&b, now += MS, true), DAIS_BREAKER_CLOSED);
    for (int i = 0; i < 4; i++)
        assert_int_equal(one(&b, now += MS, false), DAIS_BREAKER_CLOSED);
    dais_breaker_info info;
    dais_breaker_snapshot(&b, now, &info);
    assert_int_equal(info.consecutive_failures, 4);
    assert_int_equal(one(&b, now += MS, false), DAIS_BREAKER_OPEN);

    dais_breaker_snapshot(&b, now, &info);
    assert_int_equal(info.state, DAIS_BREAKER_OPEN);
    assert_int_equal(info.opens_total, 1);
    assert_int_equal(info.retry_at_ns, now + 5 * SEC);
    assert_int_equal(info.since_ns, now);

    uint64_t t = 77;
    assert_false(dais_breaker_allow(&b, now + 1, &t));
    assert_int_equal(t, 0);
    assert_false(dais_breaker_allow(&b, now + 5 * SEC - 1, &t));
}

/* The rate rule: >= 50 % failures with at least 10 outcomes, never two failures in a row. */
static void test_failure_rate_opens(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    /* 9 outcomes, 4 failures alternating: under min_requests, nothing happens. */
    for (int i = 0; i < 9; i++)
        assert_int_equal(one(&b, now += 100 * MS, (i % 2) == 0), DAIS_BREAKER_CLOSED);
    dais_breaker_info info;
    dais_breaker_snapshot(&b, now, &info);
    assert_int_equal(info.window_successes, 5);
    assert_int_equal(info.window_failures, 4);
    /* 10th outcome a failure: 5 of 10 = 50 % → open. */
    assert_int_equal(one(&b, now += 100 * MS, false), DAIS_BREAKER_OPEN);
}

/* Below the rate, or above it with too few outcomes, it stays closed. */
static void test_failure_rate_thresholds(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    /* 2 successes then 1 failure, repeated: 33 % failures. */
    for (int i = 0; i < 60; i++)
        assert_int_equal(one(&b, now += 100 * MS, (i % 3) != 2), DAIS_BREAKER_CLOSED);

    /* Rate 100 % but only 3 outcomes (streak rule off): stays closed. */
    c.consecutive_failures = 0;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    now = T0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(one(&b, now += MS, false), DAIS_BREAKER_CLOSED);
}

/* Outcomes older than the window no longer count. */
static void test_window_expiry(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    c.consecutive_failures = 0;
    c.window_ns = 10 * SEC; /* buckets of 1 s */
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    /* 9 failures at t0 .. t0+0.9 s: one short of min_requests. */
    for (int i = 0; i < 9; i++)
        assert_int_equal(one(&b, now += 100 * MS, false), DAIS_BREAKER_CLOSED);
    /* 11 s later they have left the window: one more failure is 1 of 1. */
    now += 11 * SEC;
    dais_breaker_info info;
    dais_breaker_snapshot(&b, now, &info);
    assert_int_equal(info.window_failures, 0);
    assert_int_equal(one(&b, now, false), DAIS_BREAKER_CLOSED);
    dais_breaker_snapshot(&b, now, &info);
    assert_int_equal(info.window_failures, 1);

    /* Fill the window again within 5 s: 10 failures of 10 → open. */
    for (int i = 0; i < 9; i++)
        one(&b, now += 500 * MS, false);
    assert_int_equal(dais_breaker_state_at(&b, now), DAIS_BREAKER_OPEN);
}

static void open_it(dais_breaker *b, uint64_t *now)
{
    for (uint32_t i = 0; i < b->cfg.consecutive_failures; i++)
        one(b, *now += MS, false);
    assert_int_equal(b->state, DAIS_BREAKER_OPEN);
}

/* OPEN → (cool-down) → HALF_OPEN admits one probe; success closes and clears the counts. */
static void test_half_open_success_closes(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    open_it(&b, &now);
    uint64_t opened = now;
    assert_int_equal(dais_breaker_state_at(&b, opened + 5 * SEC - 1), DAIS_BREAKER_OPEN);
    assert_int_equal(dais_breaker_state_at(&b, opened + 5 * SEC), DAIS_BREAKER_HALF_OPEN);

    uint64_t probe, other;
    assert_true(dais_breaker_allow(&b, opened + 5 * SEC, &probe));
    assert_int_equal(b.state, DAIS_BREAKER_HALF_OPEN);
    assert_false(dais_breaker_allow(&b, opened + 5 * SEC + 1, &other)); /* one probe at once */
    assert_int_equal(dais_breaker_record(&b, opened + 6 * SEC, probe, true), DAIS_BREAKER_CLOSED);

    dais_breaker_info info;
    dais_breaker_snapshot(&b, opened + 6 * SEC, &info);
    assert_int_equal(info.window_failures, 0);
    assert_int_equal(info.consecutive_failures, 0);
    assert_int_equal(info.retry_at_ns, 0);
    assert_true(dais_breaker_allow(&b, opened + 6 * SEC, &other));
}

/* A failed probe re-opens with a doubled cool-down, capped at open_max_ns; a success resets
 * the cool-down to its initial value. */
static void test_probe_failure_reopens_with_growing_cooldown(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    c.open_ns = 5 * SEC;
    c.open_max_ns = 30 * SEC;
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    open_it(&b, &now);

    const uint64_t expect[] = {10 * SEC, 20 * SEC, 30 * SEC, 30 * SEC};
    uint64_t cool = 5 * SEC;
    for (size_t i = 0; i < 4; i++) {
        now += cool;
        uint64_t t;
        assert_false(dais_breaker_allow(&b, now - 1, &t));
        assert_true(dais_breaker_allow(&b, now, &t));
        assert_int_equal(dais_breaker_record(&b, now + MS, t, false), DAIS_BREAKER_OPEN);
        now += MS;
        dais_breaker_info info;
        dais_breaker_snapshot(&b, now, &info);
        assert_int_equal(info.retry_at_ns - now, expect[i]);
        cool = expect[i];
    }
    assert_int_equal(b.opens_total, 5);

    now += cool;
    uint64_t t;
    assert_true(dais_breaker_allow(&b, now, &t));
    assert_int_equal(dais_breaker_record(&b, now, t, true), DAIS_BREAKER_CLOSED);
    open_it(&b, &now);
    dais_breaker_info info;
    dais_breaker_snapshot(&b, now, &info);
    assert_int_equal(info.retry_at_ns - now, 5 * SEC);
}

/* A probe that never reports (worker hung) counts as a failure after probe_timeout. */
static void test_probe_timeout(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    c.probe_timeout_ns = 2 * SEC;
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    open_it(&b, &now);
    now += 5 * SEC;
    uint64_t probe, t;
    assert_true(dais_breaker_allow(&b, now, &probe));
    assert_false(dais_breaker_allow(&b, now + 2 * SEC - 1, &t));
    assert_int_equal(b.state, DAIS_BREAKER_HALF_OPEN);
    assert_false(dais_breaker_allow(&b, now + 2 * SEC, &t));
    assert_int_equal(b.state, DAIS_BREAKER_OPEN);
    /* The hung probe's late answer changes nothing. */
    assert_int_equal(dais_breaker_record(&b, now + 3 * SEC, probe, true), DAIS_BREAKER_OPEN);
}

/* A cancelled probe frees its slot without a verdict. */
static void test_cancel_probe(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    open_it(&b, &now);
    now += 5 * SEC;
    uint64_t probe, t;
    assert_true(dais_breaker_allow(&b, now, &probe));
    assert_false(dais_breaker_allow(&b, now, &t));
    dais_breaker_cancel(&b, probe);
    dais_breaker_cancel(&b, probe); /* twice: harmless */
    assert_int_equal(b.state, DAIS_BREAKER_HALF_OPEN);
    assert_true(dais_breaker_allow(&b, now, &t));
    /* The cancelled ticket's outcome is ignored; the live one decides. */
    assert_int_equal(dais_breaker_record(&b, now, probe, false), DAIS_BREAKER_HALF_OPEN);
    assert_int_equal(dais_breaker_record(&b, now, t, true), DAIS_BREAKER_CLOSED);
    /* Cancelling a CLOSED-state ticket is a no-op. */
    assert_true(dais_breaker_allow(&b, now, &t));
    dais_breaker_cancel(&b, t);
    assert_int_equal(b.state, DAIS_BREAKER_CLOSED);
}

/* Several probes; closing needs half_open_successes of them. */
static void test_multiple_probes(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    c.half_open_probes = 3;
    c.half_open_successes = 2;
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    open_it(&b, &now);
    now += 5 * SEC;
    uint64_t p[3], t;
    for (int i = 0; i < 3; i++)
        assert_true(dais_breaker_allow(&b, now, &p[i]));
    assert_false(dais_breaker_allow(&b, now, &t));
    assert_int_equal(dais_breaker_record(&b, now, p[1], true), DAIS_BREAKER_HALF_OPEN);
    assert_true(dais_breaker_allow(&b, now, &t)); /* the freed slot is reused */
    assert_int_equal(dais_breaker_record(&b, now, p[0], true), DAIS_BREAKER_CLOSED);
    /* Remaining probes report after the close: they count in the window, move nothing. */
    assert_int_equal(dais_breaker_record(&b, now, p[2], false), DAIS_BREAKER_CLOSED);
    assert_int_equal(dais_breaker_record(&b, now, t, false), DAIS_BREAKER_CLOSED);
    assert_int_equal(b.consecutive, 0);

    /* One failed probe among several re-opens at once. */
    open_it(&b, &now);
    now += 5 * SEC;
    for (int i = 0; i < 3; i++)
        assert_true(dais_breaker_allow(&b, now, &p[i]));
    assert_int_equal(dais_breaker_record(&b, now, p[0], true), DAIS_BREAKER_HALF_OPEN);
    assert_int_equal(dais_breaker_record(&b, now, p[2], false), DAIS_BREAKER_OPEN);
    assert_int_equal(dais_breaker_record(&b, now, p[1], true), DAIS_BREAKER_OPEN);
}

/* Requests admitted before the last state change do not move the state machine. */
/* dais_breaker_trip (heartbeat misses): opens a CLOSED breaker at once without a ticket, makes
 * tickets in flight stale, leaves OPEN/HALF_OPEN alone; the half-open probe closes it again. */
static void test_trip(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t inflight, probe;
    assert_true(dais_breaker_allow(&b, T0, &inflight));
    assert_true(dais_breaker_trip(&b, T0 + SEC));
    assert_int_equal(b.state, DAIS_BREAKER_OPEN);
    assert_int_equal(b.opens_total, 1);
    assert_false(dais_breaker_trip(&b, T0 + 2 * SEC)); /* already open: no change */
    assert_int_equal(b.opens_total, 1);
    /* the request admitted before the trip fails late: stale, does not re-trip */
    assert_int_equal(dais_breaker_record(&b, T0 + 2 * SEC, inflight, false), DAIS_BREAKER_OPEN);
    assert_int_equal(b.opens_total, 1);
    assert_false(dais_breaker_allow(&b, T0 + 3 * SEC, &probe));
    assert_true(dais_breaker_allow(&b, T0 + 6 * SEC, &probe)); /* cool-down over */
    assert_false(dais_breaker_trip(&b, T0 + 6 * SEC));         /* half-open: its probe decides */
    assert_int_equal(dais_breaker_record(&b, T0 + 7 * SEC, probe, true), DAIS_BREAKER_CLOSED);
}

static void test_stale_tickets(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    c.failure_rate = 0;
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    uint64_t slow[5];
    for (int i = 0; i < 5; i++)
        assert_true(dais_breaker_allow(&b, now, &slow[i]));
    open_it(&b, &now);
    /* The slow requests now fail too: the breaker is already open, nothing changes. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(dais_breaker_record(&b, now, slow[i], false), DAIS_BREAKER_OPEN);
    assert_int_equal(b.opens_total, 1);

    now += 5 * SEC;
    uint64_t probe;
    assert_true(dais_breaker_allow(&b, now, &probe));
    /* A stale success is not a probe success. */
    assert_int_equal(dais_breaker_record(&b, now, slow[0], true), DAIS_BREAKER_HALF_OPEN);
    assert_int_equal(dais_breaker_record(&b, now, probe, true), DAIS_BREAKER_CLOSED);
    /* Stale failures after closing do not start a new streak. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(dais_breaker_record(&b, now, slow[i], false), DAIS_BREAKER_CLOSED);
    assert_int_equal(b.consecutive, 0);
}

/* A reset returns to CLOSED and makes earlier tickets stale. */
static void test_reset(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0, old;
    assert_true(dais_breaker_allow(&b, now, &old));
    open_it(&b, &now);
    dais_breaker_reset(&b, now);
    assert_int_equal(dais_breaker_state_at(&b, now), DAIS_BREAKER_CLOSED);
    assert_int_equal(b.opens_total, 1); /* a counter: kept */
    for (int i = 0; i < 4; i++)
        one(&b, now, false);
    assert_int_equal(dais_breaker_record(&b, now, old, false), DAIS_BREAKER_CLOSED);
    assert_int_equal(b.consecutive, 4);
}

/* Timestamps that go backwards neither crash nor open the breaker early. */
static void test_clock_backwards(void **state)
{
    (void)state;
    dais_breaker_config c = defaults();
    dais_breaker b;
    assert_int_equal(dais_breaker_init(&b, &c, T0), 0);
    uint64_t now = T0;
    open_it(&b, &now);
    uint64_t t;
    assert_false(dais_breaker_allow(&b, 0, &t));
    assert_int_equal(dais_breaker_state_at(&b, 0), DAIS_BREAKER_OPEN);
    assert_true(dais_breaker_allow(&b, now + 5 * SEC, &t));
    assert_int_equal(dais_breaker_record(&b, 0, t, true), DAIS_BREAKER_CLOSED);
    /* Outcomes timestamped long before the window are dropped, not miscounted. */
    for (int i = 0; i < 20; i++)
        one(&b, now + 100 * SEC, true);
    one(&b, 1, false);
    dais_breaker_info info;
    dais_breaker_snapshot(&b, now + 100 * SEC, &info);
    assert_int_equal(info.window_successes, 20);
    assert_int_equal(info.window_failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_consecutive_failures_open),
        cmocka_unit_test(test_failure_rate_opens),
        cmocka_unit_test(test_failure_rate_thresholds),
        cmocka_unit_test(test_window_expiry),
        cmocka_unit_test(test_half_open_success_closes),
        cmocka_unit_test(test_probe_failure_reopens_with_growing_cooldown),
        cmocka_unit_test(test_probe_timeout),
        cmocka_unit_test(test_cancel_probe),
        cmocka_unit_test(test_multiple_probes),
        cmocka_unit_test(test_stale_tickets),
        cmocka_unit_test(test_trip),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_clock_backwards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
