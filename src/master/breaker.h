/*
 * Per-worker circuit breaker: a pure state machine driven by explicit timestamps.
 *
 *   CLOSED ──(N consecutive failures, or failure rate >= R over the sliding window with at
 *             least M outcomes)──▶ OPEN
 *   OPEN ──(cool-down elapsed; checked lazily by _allow / _state)──▶ HALF_OPEN
 *   HALF_OPEN: admits at most `half_open_probes` requests at a time;
 *              `half_open_successes` probe successes ──▶ CLOSED (window cleared)
 *              one probe failure (or a probe with no outcome after probe_timeout) ──▶ OPEN,
 *              with the cool-down doubled (up to open_max_ns)
 *
 * Usage by the master (one breaker per worker, owned by the event loop thread):
 *     uint64_t t;
 *     if (!dais_breaker_allow(&w->breaker, now, &t))   → skip this worker
 *     ... send the request ...
 *     dais_breaker_record(&w->breaker, now2, t, ok);   → exactly once per admitted request
 *     (or dais_breaker_cancel(&w->breaker, t) when it ended without a verdict, e.g. the
 *      client went away: neither a success nor a failure of the worker)
 * The ticket ties an outcome to the state it was admitted in: outcomes of requests admitted
 * before the last state change (e.g. a slow request admitted while CLOSED that fails after
 * the breaker already opened) do not move the state machine again; only their window counts
 * are kept when they land in CLOSED.
 *
 * What counts as a failure is the caller's choice; recommended: connection refused/reset,
 * timeouts, worker ERROR replies that blame the worker — not client errors (bad prompt, 4xx).
 *
 * State names ("closed", "open", "half_open") are what /api/cluster and the metrics show.
 * Threads: no locking; a breaker belongs to one thread.
 */
#ifndef DAIS_MASTER_BREAKER_H
#define DAIS_MASTER_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

enum dais_breaker_state {
    DAIS_BREAKER_CLOSED = 0,
    DAIS_BREAKER_OPEN,
    DAIS_BREAKER_HALF_OPEN,
};

/* Buckets of the sliding failure-rate window (each covers window_ns / DAIS_BREAKER_BUCKETS). */
#define DAIS_BREAKER_BUCKETS 10
/* Most probes a HALF_OPEN breaker admits at once. */
#define DAIS_BREAKER_MAX_PROBES 8

typedef struct dais_breaker_config {
    uint32_t consecutive_failures; /* open after this many failures in a row; 0 = rule off */
    double failure_rate;           /* open when failures/outcomes >= this, in (0, 1]; 0 = off */
    uint64_t window_ns;            /* sliding window of the rate rule; > 0 when the rule is on */
    uint32_t min_requests;         /* the rate rule needs at least this many outcomes; >= 1 */
    uint64_t open_ns;              /* first cool-down before HALF_OPEN; > 0 */
    uint64_t open_max_ns;          /* cap of the doubled cool-down; >= open_ns */
    uint32_t half_open_probes;     /* requests admitted at once in HALF_OPEN; 1..MAX_PROBES */
    uint32_t half_open_successes;  /* probe successes that close it; in [1, half_open_probes] */
    uint64_t probe_timeout_ns;     /* a probe without outcome this long counts as failed; > 0 */
} dais_breaker_config;

typedef struct dais_breaker_bucket {
    uint64_t epoch; /* (time / bucket width) + 1 this bucket counts for; 0 = empty */
    uint32_t successes;
    uint32_t failures;
} dais_breaker_bucket;

typedef struct dais_breaker {
    dais_breaker_config cfg;
    enum dais_breaker_state state;
    uint32_t generation;       /* bumped on every state change; tickets carry it */
    uint32_t consecutive;      /* failures in a row while CLOSED */
    uint64_t opened_at_ns;     /* when it last opened */
    uint64_t cooldown_ns;      /* current cool-down (grows on re-open) */
    uint64_t changed_at_ns;    /* time of the last state change */
    uint32_t probes_in_flight; /* HALF_OPEN */
    uint32_t probe_successes;  /* HALF_OPEN */
    uint32_t probe_used;       /* HALF_OPEN: bit i set = probe slot i is in flight */
    uint64_t probe_at_ns[DAIS_BREAKER_MAX_PROBES]; /* admission time per slot */
    uint32_t probe_seq[DAIS_BREAKER_MAX_PROBES];   /* admission number per slot (in tickets) */
    uint32_t next_seq;
    uint64_t opens_total; /* times it went to OPEN (for metrics) */
    dais_breaker_bucket window[DAIS_BREAKER_BUCKETS];
} dais_breaker;

/* Counts for /api/cluster and metrics (see dais_breaker_snapshot). */
typedef struct dais_breaker_info {
    enum dais_breaker_state state;
    uint32_t consecutive_failures;
    uint32_t window_successes;
    uint32_t window_failures;
    uint64_t opens_total;
    uint64_t retry_at_ns; /* OPEN: when probes will be admitted; otherwise 0 */
    uint64_t since_ns;    /* time of the last state change (init/reset included) */
} dais_breaker_info;

/* Defaults: 5 consecutive failures; or >= 50 % failures over 30 s with at least 10 outcomes;
 * cool-down 5 s doubling up to 60 s; 1 probe, 1 success closes; probe timeout 30 s.
 * At least one of the two opening rules must be on. */
void dais_breaker_config_default(dais_breaker_config *cfg);

/* Returns 0 or DAIS_EINVAL with a message in `err` (may be NULL). */
int dais_breaker_config_check(const dais_breaker_config *cfg, dais_err *err);

/* Initialises a CLOSED breaker (cfg copied). Returns 0 or DAIS_EINVAL. */
int dais_breaker_init(dais_breaker *b, const dais_breaker_config *cfg, uint64_t now_ns);

/* Whether a request may be sent to this worker at `now_ns`. On true, `*ticket` (required)
 * must later go to exactly one of dais_breaker_record / dais_breaker_cancel. Moves OPEN to
 * HALF_OPEN when the cool-down has passed, and HALF_OPEN back to OPEN when a probe has had
 * no outcome for probe_timeout_ns. */
bool dais_breaker_allow(dais_breaker *b, uint64_t now_ns, uint64_t *ticket);

/* Reports the outcome of an admitted request. Returns the state after it. */
enum dais_breaker_state dais_breaker_record(dais_breaker *b, uint64_t now_ns, uint64_t ticket,
                                            bool success);

/* Releases an admitted request that ended without a verdict on the worker. */
void dais_breaker_cancel(dais_breaker *b, uint64_t ticket);

/* The state at `now_ns` without admitting anything: OPEN whose cool-down has passed reads as
 * HALF_OPEN (the transition itself happens on the next _allow). */
enum dais_breaker_state dais_breaker_state_at(const dais_breaker *b, uint64_t now_ns);

/* Fills `out` with the counts at `now_ns` (window counts exclude expired buckets). */
void dais_breaker_snapshot(const dais_breaker *b, uint64_t now_ns, dais_breaker_info *out);

/* Opens a CLOSED breaker at once on evidence from outside the request path (the master calls
 * it when a worker missed as many heartbeats in a row as consecutive_failures: hung, e.g.
 * SIGSTOPped). Admits nothing, so no ticket is involved; tickets of requests admitted before
 * become stale like on any state change. OPEN and HALF_OPEN breakers are left alone (their
 * probes decide). Returns true when it opened the breaker. */
bool dais_breaker_trip(dais_breaker *b, uint64_t now_ns);

/* Back to CLOSED with empty counts and the initial cool-down (e.g. a worker re-registered). */
void dais_breaker_reset(dais_breaker *b, uint64_t now_ns);

/* "closed", "open", "half_open" (static strings; "unknown" for other values). */
const char *dais_breaker_state_name(enum dais_breaker_state s);

#endif
