/*
 * The worker registry: every worker the master knows, with its identity, capabilities,
 * heartbeat session, state, last reported metrics and the master's own in-flight count.
 *
 * States (docs/operations.md describes them for operators):
 *
 *   JOINING ──first HEARTBEAT_ACK──▶ ACTIVE ◀──an answer── SUSPECT
 *      │                               │ a heartbeat probe unanswered (master/detector.h)
 *      │                               ▼
 *      └──── `dead_missed` probes unanswered and no answer for `dead_after` ──▶ DEAD
 *                                                              ──linger──▶ removed (freed)
 *
 * ACTIVE workers take new requests; SUSPECT ones only when no ACTIVE worker of the model is
 * left. A lost cluster connection, a DRAIN from the worker's side removing it from routing,
 * or a newer registration with the same id end a worker at once (DEAD, or replaced).
 * DEAD records stay visible in /api/cluster for a while (the linger time) and then go.
 * Failure detection itself is the loss-tolerant detector of master/detector.h, one per worker.
 *
 * Pure bookkeeping: no I/O, no clock reads (callers pass monotonic now_ns), no locks; the
 * registry belongs to the master's loop thread. The cluster connection, the requests in
 * flight and (later) the circuit breaker hang off a worker through opaque pointers owned by
 * their modules.
 */
#ifndef DAIS_MASTER_REGISTRY_H
#define DAIS_MASTER_REGISTRY_H

#include "master/breaker.h"
#include "master/detector.h"
#include "proto/auth.h"
#include "proto/dgram.h"
#include "proto/messages.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum dais_worker_state {
    DAIS_WORKER_JOINING = 0,
    DAIS_WORKER_ACTIVE,
    DAIS_WORKER_SUSPECT,
    DAIS_WORKER_DEAD,
    DAIS_WORKER__COUNT
};

/* "joining", "active", "suspect", "dead". */
const char *dais_worker_state_name(enum dais_worker_state s);

struct dais_mreq;

typedef struct dais_worker {
    char id[DAIS_NODE_ID_MAX + 1];
    uint64_t session_id; /* heartbeat session, unique among live workers */
    uint8_t session_key[DAIS_SESSION_KEY_LEN];
    dais_seq_window rx_window;     /* anti-replay for the worker's datagrams */
    uint64_t tx_seq;               /* last seq of a HEARTBEAT sent */
    char addr[DAIS_NAME_MAX + 1];  /* heartbeat host (numeric) */
    struct sockaddr_storage hb_sa; /* where HEARTBEATs go */
    socklen_t hb_salen;
    char peer[64];           /* the TCP peer "ip:port" */
    dais_msg_discovery caps; /* capabilities as registered (auth fields kept) */

    enum dais_worker_state state;
    bool draining; /* the worker said DRAIN: no new requests */
    uint64_t registered_ns;
    uint64_t state_since_ns;
    double registered_wall; /* Unix seconds */
    uint64_t last_heard_ns; /* last authentic HEARTBEAT_ACK */

    /* heartbeat accounting: probes are HEARTBEATs, identified by their datagram seq */
    dais_detector det;
    uint64_t hb_sent, hb_acked;

    /* last metrics (valid when have_metrics) */
    bool have_metrics;
    dais_msg_heartbeat_ack metrics;
    uint64_t metrics_ns;
    double rtt_ms;
    uint32_t inflight_at_report; /* our in-flight count when those metrics arrived */

    /* the master's own view of its load */
    uint32_t inflight; /* requests the master has on it now */
    uint64_t requests_total;
    uint64_t failures_total;

    /* circuit breaker: OPEN keeps new requests away (master/breaker.h; the router drives it) */
    dais_breaker breaker;

    /* owned by other modules */
    void *conn;                     /* cluster connection (master.c) */
    struct dais_mreq *reqs;         /* requests in flight on it (router) */
    struct dais_mstage *stage_seqs; /* pipeline sequences open on it as a first or middle stage
                                       (router) */
} dais_worker;

typedef struct dais_registry dais_registry;

/* An empty registry. NULL on no memory. */
dais_registry *dais_registry_new(void);
/* Frees the registry and every worker record (not what their opaque pointers point to).
 * Accepts NULL. */
void dais_registry_free(dais_registry *r);

/* Adds a JOINING worker with the given id (copied) and session id at now_ns, watched by a
 * failure detector with `dc` (NULL = the detector's defaults). The caller removes any older
 * record with the same id first. Returns the record (owned by the registry) or NULL on no
 * memory, a duplicate id, a duplicate session id or an invalid detector configuration. */
dais_worker *dais_registry_add(dais_registry *r, const char *id, uint64_t session_id,
                               uint64_t now_ns, const dais_detector_config *dc);

/* Removes and frees one record. The caller has detached its conn and requests. */
void dais_registry_remove(dais_registry *r, dais_worker *w);

dais_worker *dais_registry_find(const dais_registry *r, const char *id);
dais_worker *dais_registry_find_session(const dais_registry *r, uint64_t session_id);

/* Iteration: workers in registration order. The array may change when workers are added or
 * removed, so collect first when the loop body removes. */
size_t dais_registry_count(const dais_registry *r);
dais_worker *dais_registry_at(const dais_registry *r, size_t i);

/* Number of workers in `state` (DAIS_WORKER__COUNT: all). */
size_t dais_registry_count_state(const dais_registry *r, enum dais_worker_state state);

/* True when some worker serving `model` is ACTIVE (and not draining). */
bool dais_registry_model_active(const dais_registry *r, const char *model);

/* Changes a worker's state (no-op when unchanged); records the time. */
void dais_worker_set_state(dais_worker *w, enum dais_worker_state s, uint64_t now_ns);

/* ---- heartbeat accounting ----------------------------------------------------------------
 * The master asks dais_worker_hb_due whether a HEARTBEAT should go now (numbering it, and
 * recording it with dais_worker_hb_sent), hands authentic answers to dais_worker_hb_ack, and
 * calls dais_worker_hb_check at dais_worker_hb_next_ns (or any later time) for the state. */

bool dais_worker_hb_due(const dais_worker *w, uint64_t now_ns);
void dais_worker_hb_sent(dais_worker *w, uint64_t seq, uint64_t now_ns);
/* Records an authentic HEARTBEAT_ACK of `echo_seq` carrying metrics `m` (may be NULL): a sign
 * of life (JOINING/SUSPECT → ACTIVE). When the probe is still remembered its round trip goes
 * to w->rtt_ms and *rtt_ms (may be NULL; else -1). Returns false (nothing changes) for a DEAD
 * worker or a seq never sent. */
bool dais_worker_hb_ack(dais_worker *w, uint64_t echo_seq, const dais_msg_heartbeat_ack *m,
                        uint64_t now_ns, double *rtt_ms);
/* Resolves overdue probes and returns the state after them (DEAD is final). */
enum dais_worker_state dais_worker_hb_check(dais_worker *w, uint64_t now_ns);
/* When the next probe is due or the next answer overdue (UINT64_MAX once DEAD). */
uint64_t dais_worker_hb_next_ns(const dais_worker *w);
/* Probes missed in a row since the last answer. */
uint32_t dais_worker_misses(const dais_worker *w);

/* ---- load ---------------------------------------------------------------------------------- */

/* Sequences the worker can work on at once (slots, >= 1) and its whole capacity (slots plus
 * its wait queue). */
uint32_t dais_worker_slots(const dais_worker *w);
uint32_t dais_worker_capacity(const dais_worker *w);

/* The load estimate the balancer compares (docs/load-balancing.md):
 *   (inflight + external) / slots, where external = max(0, reported queue + active −
 *   inflight_at_report) is the work the worker reported that the master did not send. */
double dais_worker_load(const dais_worker *w);

#endif
