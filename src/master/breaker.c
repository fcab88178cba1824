/*
 * Circuit breaker state machine (see breaker.h). Time only enters through the `now_ns`
 * arguments; timestamps that go backwards are treated as "no time passed", never as a huge
 * unsigned difference.
 *
 * Tickets: bits 0..31 the generation the request was admitted in, bit 32 set for a HALF_OPEN
 * probe, bits 33..35 the probe slot, bits 36..63 the probe's admission number (so the ticket
 * of a cancelled probe cannot release the next probe that reuses its slot).
 */
#include "master/breaker.h"

#include <string.h>

#define MS  1000000ull
#define SEC (1000 * MS)

#define TICKET_PROBE      (1ull << 32)
#define TICKET_SLOT_SHIFT 33
#define TICKET_SEQ_SHIFT  36
#define TICKET_SEQ_MASK   0x0fffffffu

void dais_breaker_config_default(dais_breaker_config *cfg)
{
    cfg->consecutive_failures = 5;
    cfg->failure_rate = 0.5;
    cfg->window_ns = 30 * SEC;
    cfg->min_requests = 10;
    cfg->open_ns = 5 * SEC;
    cfg->open_max_ns = 60 * SEC;
    cfg->half_open_probes = 1;
    cfg->half_open_successes = 1;
    cfg->probe_timeout_ns = 30 * SEC;
}

int dais_breaker_config_check(const dais_breaker_config *cfg, dais_err *err)
{
    if (cfg == NULL) return dais_err_set(err, DAIS_EINVAL, "breaker: no configuration");
    if (!(cfg->failure_rate >= 0.0 && cfg->failure_rate <= 1.0))
        return dais_err_set(err, DAIS_EINVAL, "breaker: failure_rate must be in [0, 1]");
    if (cfg->consecutive_failures == 0 && cfg->failure_rate == 0.0)
        return dais_err_set(err, DAIS_EINVAL,
                            "breaker: both opening rules are off (consecutive_failures = 0, "
                            "failure_rate = 0)");
    if (cfg->failure_rate > 0.0) {
        if (cfg->window_ns < DAIS_BREAKER_BUCKETS)
            return dais_err_set(err, DAIS_EINVAL, "breaker: window_ns must be >= %d ns",
                                DAIS_BREAKER_BUCKETS);
        if (cfg->min_requests == 0)
            return dais_err_set(err, DAIS_EINVAL, "breaker: min_requests must be >= 1");
    }
    if (cfg->open_ns == 0)
        return dais_err_set(err, DAIS_EINVAL, "breaker: open_ns (cool-down) must be > 0");
    if (cfg->open_max_ns < cfg->open_ns)
        return dais_err_set(err, DAIS_EINVAL, "breaker: open_max_ns must be >= open_ns");
    if (cfg->half_open_probes == 0 || cfg->half_open_probes > DAIS_BREAKER_MAX_PROBES)
        return dais_err_set(err, DAIS_EINVAL, "breaker: half_open_probes must be in [1, %d]",
                            DAIS_BREAKER_MAX_PROBES);
    if (cfg->half_open_successes == 0 || cfg->half_open_successes > cfg->half_open_probes)
        return dais_err_set(err, DAIS_EINVAL,
                            "breaker: half_open_successes must be in [1, half_open_probes]");
    if (cfg->probe_timeout_ns == 0)
        return dais_err_set(err, DAIS_EINVAL, "breaker: probe_timeout_ns must be > 0");
    return 0;
}

static uint64_t elapsed(uint64_t now, uint64_t since)
{
    return now > since ? now - since : 0;
}

static uint64_t bucket_width(const dais_breaker *b)
{
    uint64_t w = b->cfg.window_ns / DAIS_BREAKER_BUCKETS;
    return w == 0 ? 1 : w;
}

static uint64_t epoch_of(const dais_breaker *b, uint64_t now_ns)
{
    return now_ns / bucket_width(b) + 1;
}

static void window_clear(dais_breaker *b)
{
    memset(b->window, 0, sizeof(b->window));
}

static void window_add(dais_breaker *b, uint64_t now_ns, bool success)
{
    uint64_t e = epoch_of(b, now_ns);
    dais_breaker_bucket *k = &b->window[(e - 1) % DAIS_BREAKER_BUCKETS];
    if (k->epoch != e) {
        if (k->epoch > e) return; /* a timestamp from the past whose slot is already reused */
        k->epoch = e;
        k->successes = 0;
        k->failures = 0;
    }
    if (success) {
        if (k->successes < UINT32_MAX) k->successes++;
    } else if (k->failures < UINT32_MAX) {
        k->failures++;
    }
}

static void window_sum(const dais_breaker *b, uint64_t now_ns, uint64_t *ok, uint64_t *bad)
{
    uint64_t e = epoch_of(b, now_ns);
    *ok = 0;
    *bad = 0;
    for (int i = 0; i < DAIS_BREAKER_BUCKETS; i++) {
        const dais_breaker_bucket *k = &b->window[i];
        if (k->epoch == 0 || k->epoch > e || e - k->epoch >= DAIS_BREAKER_BUCKETS) continue;
        *ok += k->successes;
        *bad += k->failures;
    }
}

static void set_state(dais_breaker *b, enum dais_breaker_state s, uint64_t now_ns)
{
    b->state = s;
    b->generation++;
    b->changed_at_ns = now_ns;
    b->probes_in_flight = 0;
    b->probe_successes = 0;
    b->probe_used = 0;
}

static void trip(dais_breaker *b, uint64_t now_ns, bool from_half_open)
{
    if (from_half_open) {
        uint64_t c = b->cooldown_ns > UINT64_MAX / 2 ? UINT64_MAX : b->cooldown_ns * 2;
        b->cooldown_ns = c > b->cfg.open_max_ns ? b->cfg.open_max_ns : c;
    } else {
        b->cooldown_ns = b->cfg.open_ns;
    }
    set_state(b, DAIS_BREAKER_OPEN, now_ns);
    b->opened_at_ns = now_ns;
    b->consecutive = 0;
    b->opens_total++;
}

static void close_breaker(dais_breaker *b, uint64_t now_ns)
{
    set_state(b, DAIS_BREAKER_CLOSED, now_ns);
    b->consecutive = 0;
    b->cooldown_ns = b->cfg.open_ns;
    window_clear(b);
}

bool dais_breaker_trip(dais_breaker *b, uint64_t now_ns)
{
    if (b->state != DAIS_BREAKER_CLOSED) return false;
    trip(b, now_ns, false);
    return true;
}

int dais_breaker_init(dais_breaker *b, const dais_breaker_config *cfg, uint64_t now_ns)
{
    int rc = dais_breaker_config_check(cfg, NULL);
    if (rc != 0) return rc;
    memset(b, 0, sizeof(*b));
    b->cfg = *cfg;
    dais_breaker_reset(b, now_ns);
    return 0;
}

void dais_breaker_reset(dais_breaker *b, uint64_t now_ns)
{
    uint32_t gen = b->generation;
    uint64_t opens = b->opens_total;
    dais_breaker_config cfg = b->cfg;
    memset(b, 0, sizeof(*b));
    b->cfg = cfg;
    b->generation = gen + 1; /* outcomes admitted before the reset are stale */
    b->opens_total = opens;
    b->state = DAIS_BREAKER_CLOSED;
    b->cooldown_ns = cfg.open_ns;
    b->changed_at_ns = now_ns;
}

/* HALF_OPEN: a probe that has had no outcome for probe_timeout counts as a failure. */
static bool probe_timed_out(const dais_breaker *b, uint64_t now_ns)
{
    for (uint32_t i = 0; i < b->cfg.half_open_probes; i++) {
        if ((b->probe_used & (1u << i)) != 0 &&
            elapsed(now_ns, b->probe_at_ns[i]) >= b->cfg.probe_timeout_ns)
            return true;
    }
    return false;
}

bool dais_breaker_allow(dais_breaker *b, uint64_t now_ns, uint64_t *ticket)
{
    *ticket = 0;
    if (b->state == DAIS_BREAKER_CLOSED) {
        *ticket = b->generation;
        return true;
    }
    if (b->state == DAIS_BREAKER_OPEN) {
        if (elapsed(now_ns, b->opened_at_ns) < b->cooldown_ns) return false;
        set_state(b, DAIS_BREAKER_HALF_OPEN, now_ns);
    }
    /* HALF_OPEN */
    if (probe_timed_out(b, now_ns)) {
        trip(b, now_ns, true);
        return false;
    }
    if (b->probes_in_flight >= b->cfg.half_open_probes) return false;
    for (uint32_t i = 0; i < b->cfg.half_open_probes; i++) {
        if ((b->probe_used & (1u << i)) == 0) {
            b->probe_used |= 1u << i;
            b->probe_at_ns[i] = now_ns;
            b->probe_seq[i] = b->next_seq++ & TICKET_SEQ_MASK;
            b->probes_in_flight++;
            *ticket = (uint64_t)b->generation | TICKET_PROBE | ((uint64_t)i << TICKET_SLOT_SHIFT) |
                      ((uint64_t)b->probe_seq[i] << TICKET_SEQ_SHIFT);
            return true;
        }
    }
    return false;
}

/* Frees the probe slot of `ticket` if it is a probe of the current HALF_OPEN generation;
 * returns whether it was. */
static bool release_probe(dais_breaker *b, uint64_t ticket)
{
    if (b->state != DAIS_BREAKER_HALF_OPEN || (ticket & TICKET_PROBE) == 0 ||
        (uint32_t)ticket != b->generation)
        return false;
    uint32_t slot = (uint32_t)((ticket >> TICKET_SLOT_SHIFT) & 0x7);
    uint32_t seq = (uint32_t)(ticket >> TICKET_SEQ_SHIFT) & TICKET_SEQ_MASK;
    if ((b->probe_used & (1u << slot)) == 0 || b->probe_seq[slot] != seq) return false;
    b->probe_used &= ~(1u << slot);
    b->probes_in_flight--;
    return true;
}

enum dais_breaker_state dais_breaker_record(dais_breaker *b, uint64_t now_ns, uint64_t ticket,
                                            bool success)
{
    bool current = (uint32_t)ticket == b->generation;
    switch (b->state) {
    case DAIS_BREAKER_CLOSED:
        if (b->cfg.failure_rate > 0.0) window_add(b, now_ns, success);
        if (!current || (ticket & TICKET_PROBE) != 0)
            break; /* admitted before the last state change: counted, but moves nothing */
        if (success) {
            b->consecutive = 0;
            break;
        }
        if (b->consecutive < UINT32_MAX) b->consecutive++;
        if (b->cfg.consecutive_failures != 0 && b->consecutive >= b->cfg.consecutive_failures) {
            trip(b, now_ns, false);
            break;
        }
        if (b->cfg.failure_rate > 0.0) {
            uint64_t ok, bad;
            window_sum(b, now_ns, &ok, &bad);
            uint64_t total = ok + bad;
            if (total >= b->cfg.min_requests && (double)bad >= b->cfg.failure_rate * (double)total)
                trip(b, now_ns, false);
        }
        break;
    case DAIS_BREAKER_HALF_OPEN:
        if (!release_probe(b, ticket)) break;
        if (!success) {
            trip(b, now_ns, true);
            break;
        }
        if (++b->probe_successes >= b->cfg.half_open_successes) close_breaker(b, now_ns);
        break;
    case DAIS_BREAKER_OPEN:
    default:
        break; /* every request in flight now was admitted before it opened */
    }
    return b->state;
}

void dais_breaker_cancel(dais_breaker *b, uint64_t ticket)
{
    release_probe(b, ticket);
}

enum dais_breaker_state dais_breaker_state_at(const dais_breaker *b, uint64_t now_ns)
{
    if (b->state == DAIS_BREAKER_OPEN && elapsed(now_ns, b->opened_at_ns) >= b->cooldown_ns)
        return DAIS_BREAKER_HALF_OPEN;
    return b->state;
}

void dais_breaker_snapshot(const dais_breaker *b, uint64_t now_ns, dais_breaker_info *out)
{
    uint64_t ok = 0, bad = 0;
    if (b->state == DAIS_BREAKER_CLOSED && b->cfg.failure_rate > 0.0)
        window_sum(b, now_ns, &ok, &bad);
    out->state = dais_breaker_state_at(b, now_ns);
    out->consecutive_failures = b->consecutive;
    out->window_successes = ok > UINT32_MAX ? UINT32_MAX : (uint32_t)ok;
    out->window_failures = bad > UINT32_MAX ? UINT32_MAX : (uint32_t)bad;
    out->opens_total = b->opens_total;
    out->retry_at_ns = 0;
    out->since_ns = b->changed_at_ns;
    if (b->state == DAIS_BREAKER_OPEN) {
        uint64_t t = b->opened_at_ns + b->cooldown_ns;
        out->retry_at_ns = t < b->opened_at_ns ? UINT64_MAX : t;
    }
}

const char *dais_breaker_state_name(enum dais_breaker_state s)
{
    switch (s) {
    case DAIS_BREAKER_CLOSED:
        return "closed";
    case DAIS_BREAKER_OPEN:
        return "open";
    case DAIS_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}
