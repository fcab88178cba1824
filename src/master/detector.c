/*
 * Loss-tolerant dead-node detector (see detector.h and docs/reliability.md). Probes live in a
 * fixed ring; a probe is resolved once: answered (ACK in time or late) or missed (ack timeout
 * passed first; a later ACK still proves the worker alive). Only probes sent after the last
 * sign of life extend the miss streak, so a probe lost just before an answer to a newer one
 * does not make a healthy worker suspect.
 */
#include "master/detector.h"

#include <string.h>

#define MS  1000000ull
#define SEC (1000 * MS)

enum { PROBE_EMPTY = 0, PROBE_PENDING, PROBE_ANSWERED, PROBE_MISSED };

void dais_detector_config_default(dais_detector_config *cfg)
{
    cfg->interval_ns = 5 * SEC;
    cfg->suspect_interval_ns = 500 * MS;
    cfg->ack_timeout_ns = 1 * SEC;
    cfg->dead_missed = 20;
    cfg->dead_after_ns = 15 * SEC;
}

int dais_detector_config_check(const dais_detector_config *cfg, dais_err *err)
{
    if (cfg == NULL) return dais_err_set(err, DAIS_EINVAL, "detector: no configuration");
    if (cfg->interval_ns == 0 || cfg->suspect_interval_ns == 0 || cfg->ack_timeout_ns == 0)
        return dais_err_set(err, DAIS_EINVAL,
                            "detector: interval, suspect interval and ack timeout must be > 0");
    if (cfg->suspect_interval_ns > cfg->interval_ns)
        return dais_err_set(err, DAIS_EINVAL, "detector: suspect interval must be <= interval");
    if (cfg->dead_missed == 0)
        return dais_err_set(err, DAIS_EINVAL, "detector: dead_missed must be >= 1");
    if (cfg->ack_timeout_ns / cfg->suspect_interval_ns >= DAIS_DETECTOR_RING - 1)
        return dais_err_set(err, DAIS_EINVAL,
                            "detector: ack timeout / suspect interval must be < %d (probes "
                            "pending at once)",
                            DAIS_DETECTOR_RING - 1);
    return 0;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    return (b != 0 && a > UINT64_MAX / b) ? UINT64_MAX : a * b;
}

static uint64_t elapsed(uint64_t now, uint64_t since)
{
    return now > since ? now - since : 0;
}

uint64_t dais_detector_bound_ns(const dais_detector_config *cfg)
{
    uint64_t t;
    if (cfg->dead_missed <= 1)
        t = sat_add(cfg->interval_ns, cfg->ack_timeout_ns);
    else
        t = sat_add(sat_add(cfg->interval_ns, sat_mul(2, cfg->ack_timeout_ns)),
                    sat_mul(cfg->dead_missed - 2, cfg->suspect_interval_ns));
    return t > cfg->dead_after_ns ? t : cfg->dead_after_ns;
}

int dais_detector_init(dais_detector *d, const dais_detector_config *cfg, uint64_t now_ns)
{
    int rc = dais_detector_config_check(cfg, NULL);
    if (rc != 0) return rc;
    memset(d, 0, sizeof(*d));
    d->cfg = *cfg;
    d->verdict = DAIS_DETECTOR_ALIVE;
    d->last_heard_ns = now_ns;
    d->last_sent_ns = now_ns; /* the first probe is due one interval after registration */
    return 0;
}

static void history_push(dais_detector *d, bool missed)
{
    d->history = (d->history << 1) | (missed ? 1u : 0u);
    if (d->history_n < 64) d->history_n++;
}

/* Resolves a pending probe as missed. */
static void miss(dais_detector *d, dais_detector_probe *p)
{
    p->state = PROBE_MISSED;
    d->probes_missed++;
    history_push(d, true);
    if (p->sent_ns >= d->last_heard_ns && d->missed < UINT32_MAX) d->missed++;
}

static void alive(dais_detector *d, uint64_t now_ns)
{
    if (now_ns > d->last_heard_ns) d->last_heard_ns = now_ns;
    d->missed = 0;
}

/* Whether a pending probe, sent since the last sign of life, has passed its ack timeout:
 * the worker is SUSPECT at now_ns even before _check resolved it. */
static bool overdue(const dais_detector *d, uint64_t now_ns)
{
    for (int i = 0; i < DAIS_DETECTOR_RING; i++) {
        const dais_detector_probe *p = &d->ring[i];
        if (p->state == PROBE_PENDING && p->sent_ns >= d->last_heard_ns &&
            elapsed(now_ns, p->sent_ns) >= d->cfg.ack_timeout_ns)
            return true;
    }
    return false;
}

static uint64_t period(const dais_detector *d, bool suspect)
{
    return suspect ? d->cfg.suspect_interval_ns : d->cfg.interval_ns;
}

bool dais_detector_due(const dais_detector *d, uint64_t now_ns)
{
    if (d->verdict == DAIS_DETECTOR_DEAD) return false;
    bool suspect = d->missed > 0 || overdue(d, now_ns);
    return elapsed(now_ns, d->last_sent_ns) >= period(d, suspect);
}

void dais_detector_sent(dais_detector *d, uint64_t now_ns, uint64_t id)
{
    if (d->verdict == DAIS_DETECTOR_DEAD) return;
    dais_detector_probe *p = &d->ring[d->head];
    if (p->state == PROBE_PENDING) miss(d, p);
    p->id = id;
    p->sent_ns = now_ns;
    p->state = PROBE_PENDING;
    d->head = (d->head + 1) % DAIS_DETECTOR_RING;
    d->last_sent_ns = now_ns;
    d->probes_sent++;
}

int dais_detector_ack(dais_detector *d, uint64_t now_ns, uint64_t id, uint64_t *rtt_ns)
{
    if (rtt_ns != NULL) *rtt_ns = 0;
    /* Newest first: if an id repeats within the ring, the recent probe is the one answered. */
    for (int k = 1; k <= DAIS_DETECTOR_RING; k++) {
        dais_detector_probe *p = &d->ring[(d->head + DAIS_DETECTOR_RING - k) % DAIS_DETECTOR_RING];
        if (p->id != id || (p->state != PROBE_PENDING && p->state != PROBE_MISSED)) continue;
        if (p->state == PROBE_PENDING) history_push(d, false);
        p->state = PROBE_ANSWERED;
        uint64_t rtt = elapsed(now_ns, p->sent_ns);
        if (rtt_ns != NULL) *rtt_ns = rtt;
        if (d->verdict == DAIS_DETECTOR_DEAD) return 0;
        if (d->srtt_ns == 0)
            d->srtt_ns = rtt == 0 ? 1 : rtt;
        else if (rtt >= d->srtt_ns)
            d->srtt_ns += (rtt - d->srtt_ns) / 8;
        else
            d->srtt_ns -= (d->srtt_ns - rtt) / 8;
        alive(d, now_ns);
        if (d->verdict == DAIS_DETECTOR_SUSPECT) d->verdict = DAIS_DETECTOR_ALIVE;
        return 0;
    }
    return DAIS_ENOTFOUND;
}

void dais_detector_heard(dais_detector *d, uint64_t now_ns)
{
    if (d->verdict == DAIS_DETECTOR_DEAD) return;
    alive(d, now_ns);
    d->verdict = DAIS_DETECTOR_ALIVE;
}

enum dais_detector_verdict dais_detector_check(dais_detector *d, uint64_t now_ns)
{
    if (d->verdict == DAIS_DETECTOR_DEAD) return d->verdict;
    /* Oldest first, so the history keeps send order. */
    for (int k = 0; k < DAIS_DETECTOR_RING; k++) {
        dais_detector_probe *p = &d->ring[(d->head + k) % DAIS_DETECTOR_RING];
        if (p->state == PROBE_PENDING && elapsed(now_ns, p->sent_ns) >= d->cfg.ack_timeout_ns)
            miss(d, p);
    }
    if (d->missed >= d->cfg.dead_missed &&
        elapsed(now_ns, d->last_heard_ns) >= d->cfg.dead_after_ns) {
        d->verdict = DAIS_DETECTOR_DEAD;
        d->dead_at_ns = now_ns;
    } else {
        d->verdict = d->missed > 0 ? DAIS_DETECTOR_SUSPECT : DAIS_DETECTOR_ALIVE;
    }
    return d->verdict;
}

uint64_t dais_detector_next_event_ns(const dais_detector *d)
{
    if (d->verdict == DAIS_DETECTOR_DEAD) return UINT64_MAX;
    /* While a probe is pending the period switches to the suspect one at its deadline, so the
     * earliest of these is a safe time to look again. */
    uint64_t t = sat_add(d->last_sent_ns, period(d, d->missed > 0));
    for (int i = 0; i < DAIS_DETECTOR_RING; i++) {
        const dais_detector_probe *p = &d->ring[i];
        if (p->state != PROBE_PENDING) continue;
        uint64_t deadline = sat_add(p->sent_ns, d->cfg.ack_timeout_ns);
        if (deadline < t) t = deadline;
    }
    if (d->missed >= d->cfg.dead_missed) {
        uint64_t dead = sat_add(d->last_heard_ns, d->cfg.dead_after_ns);
        if (dead < t) t = dead;
    }
    return t;
}

double dais_detector_loss(const dais_detector *d)
{
    if (d->history_n == 0) return 0.0;
    uint64_t mask = d->history_n >= 64 ? UINT64_MAX : ((1ull << d->history_n) - 1);
    return (double)__builtin_popcountll(d->history & mask) / (double)d->history_n;
}

const char *dais_detector_verdict_name(enum dais_detector_verdict v)
{
    switch (v) {
    case DAIS_DETECTOR_ALIVE:
        return "alive";
    case DAIS_DETECTOR_SUSPECT:
        return "suspect";
    case DAIS_DETECTOR_DEAD:
        return "dead";
    }
    return "unknown";
}
