/* Power-of-two-choices worker selection (see balancer.h). */
#include "master/balancer.h"

#include <string.h>

void dais_balancer_init(dais_balancer *b, uint64_t seed)
{
    b->rng = seed != 0 ? seed : 0x9e3779b97f4a7c15ull;
}

static uint64_t next(dais_balancer *b)
{
    uint64_t x = b->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    b->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

uint32_t dais_balancer_rand(dais_balancer *b, uint32_t n)
{
    if (n <= 1) return 0;
    /* Multiply-shift: bias below 2^-32 for the small n used here. */
    return (uint32_t)(((next(b) >> 32) * (uint64_t)n) >> 32);
}

static bool eligible(dais_worker *w, enum dais_worker_state state, const char *model,
                     dais_balancer_filter filter, void *arg, bool *serves)
{
    if (w->state != state || w->draining) return false;
    if (model[0] != '\0' && strcmp(w->caps.model.name, model) != 0) return false;
    if (filter != NULL && !filter(w, arg)) return false;
    *serves = true;
    return w->inflight < dais_worker_capacity(w);
}

dais_worker *dais_balancer_pick(dais_balancer *b, const dais_registry *r, const char *model,
                                dais_balancer_filter filter, void *arg, enum dais_pick_result *why)
{
    bool serves = false;
    static const enum dais_worker_state order[2] = {DAIS_WORKER_ACTIVE, DAIS_WORKER_SUSPECT};
    for (int pass = 0; pass < 2; pass++) {
        /* Reservoir sampling of two distinct candidates in one pass. */
        dais_worker *pick[2] = {NULL, NULL};
        uint32_t seen = 0;
        size_t n = dais_registry_count(r);
        for (size_t i = 0; i < n; i++) {
            dais_worker *w = dais_registry_at(r, i);
            if (!eligible(w, order[pass], model, filter, arg, &serves)) continue;
            if (seen < 2) {
                pick[seen] = w;
            } else {
                uint32_t j = dais_balancer_rand(b, seen + 1);
                if (j < 2) pick[j] = w;
            }
            seen++;
        }
        if (seen == 0) continue;
        dais_worker *best = pick[0];
        if (seen >= 2) {
            double l0 = dais_worker_load(pick[0]), l1 = dais_worker_load(pick[1]);
            if (l1 < l0 || (l1 == l0 && dais_balancer_rand(b, 2) == 1)) best = pick[1];
        }
        *why = DAIS_PICK_OK;
        return best;
    }
    *why = serves ? DAIS_PICK_FULL : DAIS_PICK_NONE;
    return NULL;
}
