/*
 * Unit tests for src/master/detector.c. Besides the unit cases, a small discrete-event
 * simulation drives one detector the way the master does (timer at next_event, probe when
 * due, ACKs arriving after a round trip unless the network drops them) and checks the two
 * promises of the defaults: heavy loss does not kill a healthy worker, and a gone worker is
 * removed within dais_detector_bound_ns().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "master/detector.h"

#define MS  1000000ull
#define SEC (1000 * MS)
#define T0  (100 * SEC)

static dais_detector_config defaults(void)
{
    dais_detector_config c;
    dais_detector_config_default(&c);
    return c;
}

static void test_config(void **state)
{
    (void)state;
    dais_detector_config c = defaults();
    assert_int_equal(dais_detector_config_check(&c, NULL), 0);
    assert_int_equal(c.interval_ns, 5 * SEC);
    assert_int_equal(c.suspect_interval_ns, 500 * MS);
    assert_int_equal(c.ack_timeout_ns, 1 * SEC);
    assert_int_equal(c.dead_missed, 20);
    assert_int_equal(c.dead_after_ns, 15 * SEC);
    /* 5 + 2 * 1 + 18 * 0.5 = 16 s */
    assert_int_equal(dais_detector_bound_ns(&c), 16 * SEC);

    c.dead_missed = 1;
    c.dead_after_ns = 0;
    assert_int_equal(dais_detector_bound_ns(&c), 6 * SEC);
    c.dead_after_ns = 30 * SEC;
    assert_int_equal(dais_detector_bound_ns(&c), 30 * SEC);

    dais_err e;
    c = defaults();
    c.interval_ns = 0;
    assert_int_equal(dais_detector_config_check(&c, &e), DAIS_EINVAL);
    c = defaults();
    c.suspect_interval_ns = 6 * SEC;
    assert_int_equal(dais_detector_config_check(&c, &e), DAIS_EINVAL);
    c = defaults();
    c.dead_missed = 0;
    assert_int_equal(dais_detector_config_check(&c, &e), DAIS_EINVAL);
    c = defaults();
    c.suspect_interval_ns = 10 * MS; /* 100 probes pending within one ack timeout */
    assert_int_equal(dais_detector_config_check(&c, &e), DAIS_EINVAL);
    assert_non_null(strstr(e.msg, "pending"));
    dais_detector d;
    assert_int_equal(dais_detector_init(&d, &c, T0), DAIS_EINVAL);

    assert_string_equal(dais_detector_verdict_name(DAIS_DETECTOR_ALIVE), "alive");
    assert_string_equal(dais_detector_verdict_name(DAIS_DETECTOR_SUSPECT), "suspect");
    assert_string_equal(dais_detector_verdict_name(DAIS_DETECTOR_DEAD), "dead");
    assert_string_equal(dais_detector_verdict_name((enum dais_detector_verdict)5), "unknown");
}

/* Probe schedule: one interval after registration, then every interval while answered. */
static void test_schedule_and_ack(void **state)
{
    (void)state;
    dais_detector_config c = defaults();
    dais_detector d;
    assert_int_equal(dais_detector_init(&d, &c, T0), 0);
    assert_false(dais_detector_due(&d, T0));
    assert_int_equal(dais_detector_next_event_ns(&d), T0 + 5 * SEC);
    assert_false(dais_detector_due(&d, T0 + 5 * SEC - 1));
    assert_true(dais_detector_due(&d, T0 + 5 * SEC));

    dais_detector_sent(&d, T0 + 5 * SEC, 1);
    assert_false(dais_detector_due(&d, T0 + 5 * SEC));
    /* The ack deadline comes before the next probe. */
    assert_int_equal(dais_detector_next_event_ns(&d), T0 + 6 * SEC);
    uint64_t rtt = 0;
    assert_int_equal(dais_detector_ack(&d, T0 + 5 * SEC + 3 * MS, 1, &rtt), 0);
    assert_int_equal(rtt, 3 * MS);
    assert_int_equal(d.srtt_ns, 3 * MS);
    assert_int_equal(dais_detector_ack(&d, T0 + 5 * SEC + 4 * MS, 1, &rtt), DAIS_ENOTFOUND);
    assert_int_equal(dais_detector_ack(&d, T0 + 5 * SEC + 4 * MS, 99, NULL), DAIS_ENOTFOUND);
    assert_int_equal(dais_detector_check(&d, T0 + 7 * SEC), DAIS_DETECTOR_ALIVE);
    assert_int_equal(dais_detector_next_event_ns(&d), T0 + 10 * SEC);
    assert_true(dais_detector_loss(&d) == 0.0);
}

/* One missed probe makes it SUSPECT and switches to the fast schedule; an answer, even late
 * and to an old probe, makes it ALIVE again. */
static void test_suspect_and_recovery(void **state)
{
    (void)state;
    dais_detector_config c = defaults();
    dais_detector d;
    assert_int_equal(dais_detector_init(&d, &c, T0), 0);
    uint64_t t = T0 + 5 * SEC;
    dais_detector_sent(&d, t, 10);
    assert_false(dais_detector_due(&d, t + 999 * MS));
    assert_true(dais_detector_due(&d, t + 1 * SEC)); /* overdue → suspect period, even unchecked */
    assert_int_equal(dais_detector_check(&d, t + 1 * SEC), DAIS_DETECTOR_SUSPECT);
    assert_int_equal(d.missed, 1);
    dais_detector_sent(&d, t + 1 * SEC, 11);
    assert_int_equal(dais_detector_next_event_ns(&d), t + 1500 * MS);
    assert_true(dais_detector_due(&d, t + 1500 * MS));
    /* The first probe's late answer arrives: alive. */
    assert_int_equal(dais_detector_ack(&d, t + 1200 * MS, 10, NULL), 0);
    assert_int_equal(d.verdict, DAIS_DETECTOR_ALIVE);
    assert_int_equal(d.missed, 0);
    /* Probe 11 (sent before that answer) times out later: it does not restart the streak. */
    assert_int_equal(dais_detector_check(&d, t + 2100 * MS), DAIS_DETECTOR_ALIVE);
    assert_int_equal(d.missed, 0);
    assert_int_equal(d.probes_missed, 2);
    assert_true(dais_detector_loss(&d) == 1.0); /* both probes missed their deadline */
    assert_int_equal(dais_detector_next_event_ns(&d), t + 6 * SEC);

    /* Other traffic is a sign of life too. */
    dais_detector_sent(&d, t + 6 * SEC, 12);
    assert_int_equal(dais_detector_check(&d, t + 7 * SEC), DAIS_DETECTOR_SUSPECT);
    dais_detector_heard(&d, t + 7100 * MS);
    assert_int_equal(dais_detector_check(&d, t + 7200 * MS), DAIS_DETECTOR_ALIVE);
}

/* DEAD needs both k misses and the time floor, and is final. */
static void test_dead_needs_count_and_time(void **state)
{
    (void)state;
    dais_detector_config c = defaults();
    c.dead_missed = 3;
    c.dead_after_ns = 10 * SEC;
    dais_detector d;
    assert_int_equal(dais_detector_init(&d, &c, T0), 0);
    uint64_t t = T0;
    /* 3 probes missed quickly, well before 10 s of silence. */
    for (uint64_t id = 1; id <= 3; id++) {
        t += 500 * MS;
        dais_detector_sent(&d, t, id);
    }
    assert_int_equal(dais_detector_check(&d, t + 1 * SEC), DAIS_DETECTOR_SUSPECT);
    assert_int_equal(d.missed, 3);
    assert_int_equal(dais_detector_next_event_ns(&d), t + 500 * MS); /* next fast probe */
    assert_int_equal(dais_detector_check(&d, T0 + 10 * SEC - 1), DAIS_DETECTOR_SUSPECT);
    assert_int_equal(dais_detector_check(&d, T0 + 10 * SEC), DAIS_DETECTOR_DEAD);
    assert_int_equal(d.dead_at_ns, T0 + 10 * SEC);
    /* Final: an answer now does not revive it; no more probes. */
    assert_int_equal(dais_detector_ack(&d, T0 + 11 * SEC, 3, NULL), 0);
    dais_detector_heard(&d, T0 + 11 * SEC);
    assert_int_equal(dais_detector_check(&d, T0 + 11 * SEC), DAIS_DETECTOR_DEAD);
    assert_false(dais_detector_due(&d, T0 + 100 * SEC));
    assert_true(dais_detector_next_event_ns(&d) == UINT64_MAX);
    dais_detector_sent(&d, T0 + 100 * SEC, 4);
    assert_int_equal(d.probes_sent, 3);

    /* Silence alone, without probes (a master that stalled), is not death. */
    assert_int_equal(dais_detector_init(&d, &c, T0), 0);
    assert_int_equal(dais_detector_check(&d, T0 + 3600 * SEC), DAIS_DETECTOR_ALIVE);
    dais_detector_sent(&d, T0 + 3600 * SEC, 1);
    assert_int_equal(dais_detector_check(&d, T0 + 3700 * SEC), DAIS_DETECTOR_SUSPECT);
}

/* More probes pending than the ring holds: the oldest are resolved as missed, no overrun. */
static void test_ring_overflow(void **state)
{
    (void)state;
    dais_detector_config c = defaults();
    c.dead_missed = 1000;
    dais_detector d;
    assert_int_equal(dais_detector_init(&d, &c, T0), 0);
    for (uint64_t i = 0; i < 3 * DAIS_DETECTOR_RING; i++)
        dais_detector_sent(&d, T0 + 1 + i, i);
    assert_int_equal(d.probes_missed, 2 * DAIS_DETECTOR_RING);
    assert_int_equal(d.missed, 2 * DAIS_DETECTOR_RING);
    assert_int_equal(dais_detector_ack(&d, T0 + SEC, 0, NULL), DAIS_ENOTFOUND); /* forgotten */
    assert_int_equal(dais_detector_ack(&d, T0 + SEC, 3 * DAIS_DETECTOR_RING - 1, NULL), 0);
    assert_int_equal(d.missed, 0);
    assert_true(dais_detector_loss(&d) > 0.95);
}

/* ---- simulation ---------------------------------------------------------------------------- */

typedef struct sim {
    dais_detector d;
    uint64_t rng;
    uint64_t now;
    uint64_t next_id;
    double loss_out;  /* probability a HEARTBEAT is dropped */
    double loss_back; /* probability its ACK is dropped */
    uint64_t rtt_ns;
    uint64_t gone_at;                /* worker stops answering from here on (UINT64_MAX = never) */
    uint64_t outage_from, outage_to; /* every packet dropped in [from, to) */
    bool fixed_cadence;              /* the master ignores _due and probes every interval */
    struct {
        uint64_t at, id;
    } acks[256];
    size_t n_acks;
} sim;

static double rnd(sim *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static void sim_init(sim *s, uint64_t seed)
{
    memset(s, 0, sizeof(*s));
    dais_detector_config c = defaults();
    assert_int_equal(dais_detector_init(&s->d, &c, T0), 0);
    s->rng = seed;
    s->now = T0;
    s->rtt_ns = 100 * MS; /* 50 ms each way */
    s->gone_at = UINT64_MAX;
}

static bool dropped(sim *s, uint64_t at, double p)
{
    if (at >= s->gone_at) return true;
    if (at >= s->outage_from && at < s->outage_to) return true;
    return rnd(s) < p;
}

/* Runs until `until` or DEAD; returns the verdict. */
static enum dais_detector_verdict sim_run(sim *s, uint64_t until)
{
    uint64_t next_fixed = T0 + s->d.cfg.interval_ns;
    while (s->now < until) {
        uint64_t t = s->fixed_cadence ? next_fixed : dais_detector_next_event_ns(&s->d);
        if (s->fixed_cadence) {
            /* Still look at ack deadlines, like a master checking on each tick (the next due
             * probe, possibly in the past, is ignored). */
            uint64_t e = dais_detector_next_event_ns(&s->d);
            if (e > s->now && e < t) t = e;
        }
        for (size_t i = 0; i < s->n_acks; i++)
            if (s->acks[i].at < t) t = s->acks[i].at;
        if (t > until) t = until;
        if (t < s->now) t = s->now;
        s->now = t;
        for (size_t i = 0; i < s->n_acks;) {
            if (s->acks[i].at <= s->now) {
                dais_detector_ack(&s->d, s->now, s->acks[i].id, NULL);
                s->acks[i] = s->acks[--s->n_acks];
            } else {
                i++;
            }
        }
        if (dais_detector_check(&s->d, s->now) == DAIS_DETECTOR_DEAD) return DAIS_DETECTOR_DEAD;
        bool send = s->fixed_cadence ? s->now >= next_fixed : dais_detector_due(&s->d, s->now);
        if (send) {
            if (s->fixed_cadence) next_fixed += s->d.cfg.interval_ns;
            uint64_t id = ++s->next_id;
            dais_detector_sent(&s->d, s->now, id);
            bool lost = dropped(s, s->now, s->loss_out);
            uint64_t back = s->now + s->rtt_ns / 2;
            if (!lost && !dropped(s, back, s->loss_back) && s->n_acks < 256) {
                s->acks[s->n_acks].at = s->now + s->rtt_ns;
                s->acks[s->n_acks].id = id;
                s->n_acks++;
            }
        }
    }
    return s->d.verdict;
}

/* 30 % loss of heartbeats (one direction, as the fault test's nftables rule makes) for 24
 * simulated hours: never DEAD. */
static void test_sim_30pct_loss_one_way(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        sim s;
        sim_init(&s, seed);
        s.loss_out = 0.30;
        assert_int_not_equal(sim_run(&s, T0 + 6 * 3600 * SEC), DAIS_DETECTOR_DEAD);
        double loss = (double)s.d.probes_missed / (double)s.d.probes_sent;
        assert_true(loss > 0.25 && loss < 0.35);
    }
}

/* 30 % loss in both directions (51 % of round trips fail) for 2 simulated hours: never DEAD. */
static void test_sim_30pct_loss_both_ways(void **state)
{
    (void)state;
    for (uint64_t seed = 11; seed <= 12; seed++) {
        sim s;
        sim_init(&s, seed);
        s.loss_out = 0.30;
        s.loss_back = 0.30;
        assert_int_not_equal(sim_run(&s, T0 + 3600 * SEC), DAIS_DETECTOR_DEAD);
    }
}

/* A total outage (link flap) shorter than dead_after - interval = 10 s is survived, whatever
 * its phase against the probes, although it spans far more than dead_missed fast probes. */
static void test_sim_short_outage_survived(void **state)
{
    (void)state;
    for (uint64_t phase = 0; phase < 10; phase++) {
        sim s;
        sim_init(&s, 5 + phase);
        s.outage_from = T0 + 60 * SEC + phase * 500 * MS;
        s.outage_to = s.outage_from + 9900 * MS;
        assert_int_not_equal(sim_run(&s, T0 + 300 * SEC), DAIS_DETECTOR_DEAD);
        assert_int_equal(s.d.verdict, DAIS_DETECTOR_ALIVE);
    }
    sim s;
    sim_init(&s, 5);
    s.outage_from = T0 + 60 * SEC;
    s.outage_to = T0 + 80 * SEC; /* 20 s: longer than the bound */
    assert_int_equal(sim_run(&s, T0 + 300 * SEC), DAIS_DETECTOR_DEAD);
    sim_init(&s, 5);
    s.outage_from = T0 + 60 * SEC;
    s.outage_to = T0 + 60 * SEC;
    assert_int_not_equal(sim_run(&s, T0 + 300 * SEC), DAIS_DETECTOR_DEAD);
    assert_int_equal(s.d.verdict, DAIS_DETECTOR_ALIVE);
}

/* A worker that is really gone is DEAD within the bound of its last answer, with or without
 * background loss before it went. */
static void test_sim_gone_within_bound(void **state)
{
    (void)state;
    const uint64_t bound =
        dais_detector_bound_ns(&(dais_detector_config){5 * SEC, 500 * MS, 1 * SEC, 20, 15 * SEC});
    for (uint64_t seed = 21; seed <= 40; seed++) {
        sim s;
        sim_init(&s, seed);
        s.loss_out = seed > 30 ? 0.3 : 0.0;
        /* Gone at a moment that varies with the seed relative to the probe phase. */
        s.gone_at = T0 + 100 * SEC + seed * 317 * MS;
        assert_int_equal(sim_run(&s, T0 + 600 * SEC), DAIS_DETECTOR_DEAD);
        uint64_t since_answer = s.d.dead_at_ns - s.d.last_heard_ns;
        assert_true(since_answer <= bound);
        assert_true(since_answer >= s.d.cfg.dead_after_ns);
        /* ... and within bound + one round trip of the moment it went away. */
        assert_true(s.d.dead_at_ns - s.gone_at <= bound);
    }
}

/* A master that probes on a fixed 5 s cadence still gets a verdict, only slower. */
static void test_sim_fixed_cadence(void **state)
{
    (void)state;
    sim s;
    sim_init(&s, 77);
    s.fixed_cadence = true;
    s.gone_at = T0 + 30 * SEC;
    assert_int_equal(sim_run(&s, T0 + 600 * SEC), DAIS_DETECTOR_DEAD);
    uint64_t took = s.d.dead_at_ns - s.d.last_heard_ns;
    assert_true(took >= 20 * 5 * SEC && took <= 21 * 5 * SEC + 1 * SEC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_schedule_and_ack),
        cmocka_unit_test(test_suspect_and_recovery),
        cmocka_unit_test(test_dead_needs_count_and_time),
        cmocka_unit_test(test_ring_overflow),
        cmocka_unit_test(test_sim_30pct_loss_one_way),
        cmocka_unit_test(test_sim_30pct_loss_both_ways),
        cmocka_unit_test(test_sim_short_outage_survived),
        cmocka_unit_test(test_sim_gone_within_bound),
        cmocka_unit_test(test_sim_fixed_cadence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
