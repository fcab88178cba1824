/*
 * Dead-node detection that tolerates packet loss: a pure, timestamp-driven detector per
 * worker, fed by the master's heartbeat path.
 *
 * The master probes a worker (HEARTBEAT over UDP 8889) every `interval_ns` while it answers,
 * and every `suspect_interval_ns` once a probe went unanswered for `ack_timeout_ns`. Verdicts:
 *   ALIVE    every probe that timed out since the last answer: none;
 *   SUSPECT  at least one probe missed since the last answer (routing may prefer others;
 *            the worker stays in the pool);
 *   DEAD     `dead_missed` consecutive probes missed AND no answer for `dead_after_ns`:
 *            remove the worker and re-route its work. DEAD is final for this detector; a
 *            worker that comes back registers again (NODE_DISCOVERY) and gets a new one.
 * Any sign of life (an ACK of any recent probe, even one already counted missed, or other
 * authenticated traffic from the worker via dais_detector_heard) resets the miss count.
 *
 * Why both conditions: counting probes makes the verdict depend on evidence actually sent,
 * so a master that stalled (and sent nothing) cannot declare everyone dead; the time floor
 * means a loss burst or link flap shorter than dead_after_ns - interval_ns (10 s) never kills
 * a worker, however fast the probes go. With independent loss q per probe round trip, a healthy
 * worker is declared dead only after `dead_missed` misses in a row: probability q^k per run of
 * misses. Defaults (5 s / 0.5 s / 1 s / k = 20 / 15 s): q = 0.3 → 3.5e-11 per run; even 30 % loss
 * in both directions (q = 0.51) → 1.4e-6 per run, about 1e-3 false removals per worker-hour; a
 * really-gone worker is DEAD within dais_detector_bound_ns() = 16 s of its last answer. The
 * derivation is in docs/reliability.md ("Dead-node detection").
 *
 * Driving it (loop thread; see dais_detector_next_event_ns for timer scheduling):
 *     if (dais_detector_due(d, now))  → send HEARTBEAT id, then dais_detector_sent(d, now, id)
 *     on HEARTBEAT_ACK id             → dais_detector_ack(d, now, id, &rtt)
 *     on a timer / each tick          → if dais_detector_check(d, now) == DAIS_DETECTOR_DEAD,
 *                                       remove the worker
 * A master that probes on a fixed 5 s cadence instead (ignoring _due) still gets correct
 * verdicts, only slower: the bound becomes about dead_missed * interval.
 *
 * Threads: no locking; a detector belongs to one thread. No allocation, no clock reads.
 */
#ifndef DAIS_MASTER_DETECTOR_H
#define DAIS_MASTER_DETECTOR_H

#include <stdbool.h>
#include <stdint.h>

#include "common/error.h"

enum dais_detector_verdict {
    DAIS_DETECTOR_ALIVE = 0,
    DAIS_DETECTOR_SUSPECT,
    DAIS_DETECTOR_DEAD,
};

/* Probes remembered for matching ACKs (and the most that may be in flight at once). */
#define DAIS_DETECTOR_RING 64

typedef struct dais_detector_config {
    uint64_t interval_ns;         /* probe period while ALIVE (5 s) */
    uint64_t suspect_interval_ns; /* probe period while SUSPECT (0.5 s); <= interval_ns */
    uint64_t ack_timeout_ns;      /* a probe unanswered this long is missed (1 s) */
    uint32_t dead_missed;         /* k: consecutive missed probes for DEAD (20); >= 1 */
    uint64_t dead_after_ns;       /* and at least this long without an answer (15 s) */
} dais_detector_config;

typedef struct dais_detector_probe {
    uint64_t id;
    uint64_t sent_ns;
    uint8_t state; /* 0 empty, 1 pending, 2 answered, 3 missed */
} dais_detector_probe;

typedef struct dais_detector {
    dais_detector_config cfg;
    enum dais_detector_verdict verdict;
    uint64_t last_heard_ns; /* last answer (init counts as one: the worker just registered) */
    uint64_t last_sent_ns;  /* last probe sent (the registration time before the first) */
    uint32_t missed;        /* consecutive missed probes since last_heard_ns */
    uint32_t head;          /* next ring slot */
    dais_detector_probe ring[DAIS_DETECTOR_RING];
    uint64_t history;   /* last 64 resolved probes, bit set = missed (newest = bit 0) */
    uint32_t history_n; /* valid bits in history (<= 64) */
    uint64_t srtt_ns;   /* smoothed round-trip time (0 before the first ACK) */
    uint64_t probes_sent;
    uint64_t probes_missed;
    uint64_t dead_at_ns; /* when it was declared DEAD */
} dais_detector;

/* The defaults above. */
void dais_detector_config_default(dais_detector_config *cfg);

/* Returns 0 or DAIS_EINVAL with a message in `err` (may be NULL): intervals > 0,
 * suspect_interval <= interval, dead_missed >= 1, and no more than DAIS_DETECTOR_RING probes
 * can be pending at once (ack_timeout / suspect_interval < DAIS_DETECTOR_RING). */
int dais_detector_config_check(const dais_detector_config *cfg, dais_err *err);

/* Upper bound on the time from a worker's last answer to DEAD when the master sends probes
 * as dais_detector_due says and calls dais_detector_check at least at the times
 * dais_detector_next_event_ns returns: max(dead_after, interval + 2 * ack_timeout
 * + (dead_missed - 2) * suspect_interval) for dead_missed >= 2 (for 1: interval + ack_timeout,
 * floored by dead_after). */
uint64_t dais_detector_bound_ns(const dais_detector_config *cfg);

/* Starts watching a worker that registered (or answered) at `now_ns`. Returns 0 or
 * DAIS_EINVAL. */
int dais_detector_init(dais_detector *d, const dais_detector_config *cfg, uint64_t now_ns);

/* Whether a probe should be sent at `now_ns` (never once DEAD). */
bool dais_detector_due(const dais_detector *d, uint64_t now_ns);

/* Records a probe sent at `now_ns` with the caller's id (a sequence number, or a hash of the
 * HEARTBEAT's message_id); ids should not repeat within DAIS_DETECTOR_RING probes. If the
 * ring is full of pending probes, the oldest is resolved as missed first. */
void dais_detector_sent(dais_detector *d, uint64_t now_ns, uint64_t id);

/* Records the ACK of probe `id` at `now_ns`. Returns 0 and the round trip in `*rtt_ns` (may
 * be NULL), or DAIS_ENOTFOUND when `id` is not a remembered probe or was answered already
 * (duplicate, forged or too old; ignored). Counts as a sign of life unless DEAD. */
int dais_detector_ack(dais_detector *d, uint64_t now_ns, uint64_t id, uint64_t *rtt_ns);

/* Any other authenticated traffic from the worker at `now_ns` (a response, a NODE_DISCOVERY
 * refresh): a sign of life. Ignored once DEAD. */
void dais_detector_heard(dais_detector *d, uint64_t now_ns);

/* Resolves probes whose ack timeout has passed and returns the verdict at `now_ns`. */
enum dais_detector_verdict dais_detector_check(dais_detector *d, uint64_t now_ns);

/* The next time something can change: the next probe due or the next ack deadline
 * (UINT64_MAX once DEAD). Arm a timer for it, then call _check and _due. */
uint64_t dais_detector_next_event_ns(const dais_detector *d);

/* Fraction of the last (up to 64) resolved probes that were missed; 0 when none resolved. */
double dais_detector_loss(const dais_detector *d);

/* "alive", "suspect", "dead" (static; "unknown" for other values). */
const char *dais_detector_verdict_name(enum dais_detector_verdict v);

#endif
