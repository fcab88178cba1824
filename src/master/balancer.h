/*
 * Worker selection: power of two choices (docs/load-balancing.md).
 *
 * Among the workers that may take a request for a model — ACTIVE, not draining, serving the
 * model, below their capacity (slots + wait queue), and allowed by an optional filter (the
 * circuit breaker's hook) — two are drawn uniformly at random and the one with the lower load
 * estimate (dais_worker_load: the master's own in-flight count plus load the worker reported
 * that the master did not send, relative to its slots) wins; ties are broken at random.
 * SUSPECT workers are used only when no ACTIVE one qualifies. Two random choices keep the
 * maximum load close to the best possible while never herding every request onto the one
 * worker that looked idlest in a stale report.
 *
 * Pure: the caller passes the registry; the generator state lives in the balancer. Loop thread.
 */
#ifndef DAIS_MASTER_BALANCER_H
#define DAIS_MASTER_BALANCER_H

#include "master/registry.h"

#include <stdbool.h>
#include <stdint.h>

/* Extra eligibility test (e.g. circuit breaker closed); NULL = none. */
typedef bool (*dais_balancer_filter)(dais_worker *w, void *arg);

typedef struct dais_balancer {
    uint64_t rng; /* xorshift64* state, never 0 */
} dais_balancer;

enum dais_pick_result {
    DAIS_PICK_OK = 0,
    DAIS_PICK_NONE, /* no ACTIVE or SUSPECT worker serves the model (or the filter refused all) */
    DAIS_PICK_FULL, /* workers serve it, but each is at capacity: wait or refuse */
};

void dais_balancer_init(dais_balancer *b, uint64_t seed);

/* A uniformly random number in [0, n), n >= 1. */
uint32_t dais_balancer_rand(dais_balancer *b, uint32_t n);

/* Picks a worker for `model` ("" = any model). Returns the worker and DAIS_PICK_OK in *why, or
 * NULL with the reason in *why. */
dais_worker *dais_balancer_pick(dais_balancer *b, const dais_registry *r, const char *model,
                                dais_balancer_filter filter, void *arg, enum dais_pick_result *why);

#endif
