/* Unit tests for src/master/registry.c and balancer.c: states, heartbeat accounting, load
 * estimate, and the power-of-two-choices pick. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "master/balancer.h"
#include "master/registry.h"

#define MS 1000000ull

static dais_worker *add(dais_registry *r, const char *id, uint64_t sid, const char *model,
                        int slots, int queue)
{
    dais_worker *w = dais_registry_add(r, id, sid, 1000 * MS, NULL);
    assert_non_null(w);
    snprintf(w->caps.model.name, sizeof(w->caps.model.name), "%s", model);
    w->caps.slots = slots;
    w->caps.queue = queue;
    return w;
}

static void ack(dais_worker *w, uint64_t now)
{
    assert_true(dais_worker_hb_ack(w, w->tx_seq, NULL, now, NULL));
}

static void send_hb_at(dais_worker *w, uint64_t now)
{
    dais_worker_hb_sent(w, ++w->tx_seq, now);
}

static void send_hb(dais_worker *w)
{
    send_hb_at(w, 1000 * MS);
}

static void test_add_find_remove(void **state)
{
    (void)state;
    dais_registry *r = dais_registry_new();
    dais_worker *a = add(r, "a", 1, "m", 4, 0);
    dais_worker *b = add(r, "b", 2, "m", 4, 0);
    assert_null(dais_registry_add(r, "a", 3, 0, NULL)); /* duplicate id */
    assert_null(dais_registry_add(r, "c", 2, 0, NULL)); /* duplicate session */
    assert_null(dais_registry_add(r, "c", 0, 0, NULL)); /* session 0 */
    dais_detector_config bad;
    dais_detector_config_default(&bad);
    bad.dead_missed = 0;
    assert_null(dais_registry_add(r, "c", 9, 0, &bad)); /* invalid detector settings */
    assert_ptr_equal(dais_registry_find(r, "b"), b);
    assert_ptr_equal(dais_registry_find_session(r, 1), a);
    assert_null(dais_registry_find(r, "zz"));
    assert_int_equal(dais_registry_count(r), 2);
    assert_int_equal(dais_registry_count_state(r, DAIS_WORKER_JOINING), 2);
    dais_registry_remove(r, a);
    assert_int_equal(dais_registry_count(r), 1);
    assert_ptr_equal(dais_registry_at(r, 0), b);
    assert_null(dais_registry_at(r, 1));
    dais_registry_free(r);
}

/* The heartbeat cadence of the tests: 200 ms, suspect probes every 200 ms, ack timeout 200 ms,
 * dead after 3 misses and 600 ms of silence. */
static const dais_detector_config TEST_DC = {.interval_ns = 200 * MS,
                                             .suspect_interval_ns = 200 * MS,
                                             .ack_timeout_ns = 200 * MS,
                                             .dead_missed = 3,
                                             .dead_after_ns = 600 * MS};

/* Drives the worker's detector to `until` the way the master's timer does (probing whenever
 * due, checking at each next event), answering every probe when `answer`. */
static void drive(dais_worker *w, uint64_t *t, uint64_t until, bool answer)
{
    while (*t < until && w->state != DAIS_WORKER_DEAD) {
        dais_worker_hb_check(w, *t);
        if (dais_worker_hb_due(w, *t)) {
            send_hb_at(w, *t);
            if (answer) assert_true(dais_worker_hb_ack(w, w->tx_seq, NULL, *t + MS, NULL));
        }
        uint64_t next = dais_worker_hb_next_ns(w);
        *t = next > *t ? next : *t + MS;
    }
}

static void test_heartbeat_states(void **state)
{
    (void)state;
    dais_registry *r = dais_registry_new();
    uint64_t t = 1000 * MS;
    dais_worker *w = dais_registry_add(r, "w", 7, t, &TEST_DC);
    snprintf(w->caps.model.name, sizeof(w->caps.model.name), "m");
    /* joining until the first answer (the master probes at once on registration) */
    send_hb_at(w, t);
    assert_false(dais_registry_model_active(r, "m"));
    assert_false(dais_worker_hb_ack(w, 99, NULL, t, NULL)); /* never sent */
    double rtt = 0;
    assert_true(dais_worker_hb_ack(w, w->tx_seq, NULL, t + 2 * MS, &rtt));
    assert_true(rtt > 1.9 && rtt < 2.1);
    assert_int_equal(w->state, DAIS_WORKER_ACTIVE);
    assert_true(dais_registry_model_active(r, "m"));
    assert_false(dais_registry_model_active(r, "other"));
    /* answering keeps it active for as long as it answers */
    drive(w, &t, t + 2000 * MS, true);
    assert_int_equal(w->state, DAIS_WORKER_ACTIVE);
    assert_int_equal(dais_worker_misses(w), 0);
    /* silence: suspect after the first probe times out, dead after 3 misses and 600 ms */
    uint64_t silent_from = t;
    uint64_t t_suspect = 0;
    while (w->state != DAIS_WORKER_DEAD) {
        drive(w, &t, t + MS, false);
        if (w->state == DAIS_WORKER_SUSPECT && t_suspect == 0) t_suspect = t;
    }
    assert_true(t_suspect > silent_from && t_suspect - silent_from <= 420 * MS);
    assert_true(w->state_since_ns - silent_from >= 600 * MS);
    assert_true(w->state_since_ns - silent_from <= dais_detector_bound_ns(&TEST_DC) + 10 * MS);
    assert_true(dais_worker_misses(w) >= 3);
    /* dead is final */
    assert_false(dais_worker_hb_ack(w, w->tx_seq, NULL, t, NULL));
    assert_int_equal(dais_worker_hb_check(w, t + 1000 * MS), DAIS_WORKER_DEAD);
    assert_false(dais_worker_hb_due(w, t + 1000 * MS));
    assert_int_equal(dais_worker_hb_next_ns(w), UINT64_MAX);
    assert_string_equal(dais_worker_state_name(w->state), "dead");
    dais_registry_free(r);
}

static void test_heartbeat_loss_tolerated(void **state)
{
    (void)state;
    /* A suspect worker that answers a later probe is active again; losing every other
     * answer never makes it dead. */
    dais_registry *r = dais_registry_new();
    uint64_t t = 1000 * MS;
    dais_worker *w = dais_registry_add(r, "w", 7, t, &TEST_DC);
    send_hb_at(w, t);
    assert_true(dais_worker_hb_ack(w, w->tx_seq, NULL, t + MS, NULL));
    bool seen_suspect = false;
    int k = 0;
    uint64_t end = t + 20000 * MS;
    while (t < end) {
        dais_worker_hb_check(w, t);
        seen_suspect |= w->state == DAIS_WORKER_SUSPECT;
        if (dais_worker_hb_due(w, t)) {
            send_hb_at(w, t);
            if (k++ % 2 == 1) assert_true(dais_worker_hb_ack(w, w->tx_seq, NULL, t + MS, NULL));
        }
        uint64_t next = dais_worker_hb_next_ns(w);
        t = next > t ? next : t + MS;
    }
    assert_true(seen_suspect);
    assert_true(w->state != DAIS_WORKER_DEAD);
    /* an authentic answer too old to match a probe still counts as a sign of life */
    assert_true(dais_worker_hb_ack(w, 1, NULL, t, NULL));
    assert_int_equal(w->state, DAIS_WORKER_ACTIVE);
    dais_registry_free(r);
}

static void test_load_estimate(void **state)
{
    (void)state;
    dais_registry *r = dais_registry_new();
    dais_worker *w = add(r, "w", 1, "m", 4, 8);
    assert_int_equal(dais_worker_slots(w), 4);
    assert_int_equal(dais_worker_capacity(w), 12);
    w->inflight = 2;
    assert_true(dais_worker_load(w) == 0.5);
    /* the worker reports 5 busy while we had 2 on it: 3 came from elsewhere */
    dais_msg_heartbeat_ack m;
    memset(&m, 0, sizeof(m));
    m.load.active = 4;
    m.load.queue_depth = 1;
    send_hb(w);
    assert_true(dais_worker_hb_ack(w, w->tx_seq, &m, 1000 * MS, NULL));
    assert_true(dais_worker_load(w) == (2.0 + 3.0) / 4.0);
    /* our own requests finishing lower the estimate at once */
    w->inflight = 0;
    assert_true(dais_worker_load(w) == 3.0 / 4.0);
    dais_registry_free(r);
}

static void test_balancer(void **state)
{
    (void)state;
    dais_registry *r = dais_registry_new();
    dais_balancer b;
    dais_balancer_init(&b, 12345);
    enum dais_pick_result why;
    assert_null(dais_balancer_pick(&b, r, "m", NULL, NULL, &why));
    assert_int_equal(why, DAIS_PICK_NONE);

    dais_worker *w[4];
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof(id), "w%d", i);
        w[i] = add(r, id, (uint64_t)i + 1, i < 3 ? "m" : "other", 2, 0);
    }
    /* joining workers are not picked */
    assert_null(dais_balancer_pick(&b, r, "m", NULL, NULL, &why));
    assert_int_equal(why, DAIS_PICK_NONE);
    for (int i = 0; i < 4; i++) {
        send_hb(w[i]);
        ack(w[i], 0);
    }
    /* with equal loads every serving worker is picked, never the other model's */
    int counts[4] = {0};
    for (int i = 0; i < 3000; i++) {
        dais_worker *p = dais_balancer_pick(&b, r, "m", NULL, NULL, &why);
        assert_non_null(p);
        for (int k = 0; k < 4; k++)
            counts[k] += p == w[k];
    }
    assert_int_equal(counts[3], 0);
    for (int i = 0; i < 3; i++)
        assert_true(counts[i] > 700);
    /* the least loaded worker always wins against either other one, so it is never the loser:
     * with w2 idle and the others busy, w2 is picked whenever it is drawn (2/3 of the time) */
    w[0]->inflight = 1;
    w[1]->inflight = 1;
    int idle = 0;
    for (int i = 0; i < 3000; i++)
        idle += dais_balancer_pick(&b, r, "m", NULL, NULL, &why) == w[2];
    assert_true(idle > 1800 && idle < 2200);
    /* full workers are skipped; all full → FULL */
    w[2]->inflight = 2;
    for (int i = 0; i < 100; i++)
        assert_true(dais_balancer_pick(&b, r, "m", NULL, NULL, &why) != w[2]);
    w[0]->inflight = 2;
    w[1]->inflight = 2;
    assert_null(dais_balancer_pick(&b, r, "m", NULL, NULL, &why));
    assert_int_equal(why, DAIS_PICK_FULL);
    /* suspect workers are used only when no active one qualifies */
    w[0]->inflight = w[1]->inflight = w[2]->inflight = 0;
    dais_worker_set_state(w[0], DAIS_WORKER_SUSPECT, 0);
    dais_worker_set_state(w[1], DAIS_WORKER_SUSPECT, 0);
    for (int i = 0; i < 100; i++)
        assert_ptr_equal(dais_balancer_pick(&b, r, "m", NULL, NULL, &why), w[2]);
    dais_worker_set_state(w[2], DAIS_WORKER_DEAD, 0);
    dais_worker *p = dais_balancer_pick(&b, r, "m", NULL, NULL, &why);
    assert_true(p == w[0] || p == w[1]);
    /* draining workers take nothing */
    w[0]->draining = w[1]->draining = true;
    assert_null(dais_balancer_pick(&b, r, "m", NULL, NULL, &why));
    assert_int_equal(why, DAIS_PICK_NONE);
    /* "" = any model */
    assert_ptr_equal(dais_balancer_pick(&b, r, "", NULL, NULL, &why), w[3]);
    dais_registry_free(r);
}

static bool only_w1(dais_worker *w, void *arg)
{
    (void)arg;
    return strcmp(w->id, "w1") == 0;
}

static void test_balancer_filter(void **state)
{
    (void)state;
    dais_registry *r = dais_registry_new();
    dais_balancer b;
    dais_balancer_init(&b, 0);
    for (int i = 0; i < 3; i++) {
        char id[8];
        snprintf(id, sizeof(id), "w%d", i);
        dais_worker *w = add(r, id, (uint64_t)i + 1, "m", 1, 0);
        send_hb(w);
        ack(w, 0);
    }
    enum dais_pick_result why;
    for (int i = 0; i < 50; i++)
        assert_string_equal(dais_balancer_pick(&b, r, "m", only_w1, NULL, &why)->id, "w1");
    for (int i = 0; i < 1000; i++)
        assert_true(dais_balancer_rand(&b, 7) < 7);
    dais_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_find_remove),
        cmocka_unit_test(test_heartbeat_states),
        cmocka_unit_test(test_heartbeat_loss_tolerated),
        cmocka_unit_test(test_load_estimate),
        cmocka_unit_test(test_balancer),
        cmocka_unit_test(test_balancer_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
