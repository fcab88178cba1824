/* The worker registry (see registry.h): a growable array of worker records. */
#include "master/registry.h"

#include <stdlib.h>
#include <string.h>

struct dais_registry {
    dais_worker **w;
    size_t n, cap;
};

static const char *const state_names[DAIS_WORKER__COUNT] = {"joining", "active", "suspect", "dead"};

const char *dais_worker_state_name(enum dais_worker_state s)
{
    return (unsigned)s < DAIS_WORKER__COUNT ? state_names[s] : "unknown";
}

dais_registry *dais_registry_new(void)
{
    return calloc(1, sizeof(dais_registry));
}

void dais_registry_free(dais_registry *r)
{
    if (r == NULL) return;
    for (size_t i = 0; i < r->n; i++)
        free(r->w[i]);
    free(r->w);
    free(r);
}

dais_worker *dais_registry_add(dais_registry *r, const char *id, uint64_t session_id,
                               uint64_t now_ns, const dais_detector_config *dc)
{
    dais_detector_config def;
    if (dc == NULL) {
        dais_detector_config_default(&def);
        dc = &def;
    }
    if (dais_detector_config_check(dc, NULL) != 0) return NULL;
    size_t len = strlen(id);
    if (len == 0 || len > DAIS_NODE_ID_MAX || session_id == 0) return NULL;
    if (dais_registry_find(r, id) != NULL || dais_registry_find_session(r, session_id) != NULL)
        return NULL;
    if (r->n == r->cap) {
        size_t cap = r->cap != 0 ? r->cap * 2 : 16;
        dais_worker **nw = realloc(r->w, cap * sizeof(*nw));
        if (nw == NULL) return NULL;
        r->w = nw;
        r->cap = cap;
    }
    dais_worker *w = calloc(1, sizeof(*w));
    if (w == NULL) return NULL;
    memcpy(w->id, id, len + 1);
    w->session_id = session_id;
    w->state = DAIS_WORKER_JOINING;
    w->registered_ns = now_ns;
    w->state_since_ns = now_ns;
    w->last_heard_ns = now_ns;
    dais_detector_init(&w->det, dc, now_ns);
    r->w[r->n++] = w;
    return w;
}

void dais_registry_remove(dais_registry *r, dais_worker *w)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->w[i] == w) {
            memmove(&r->w[i], &r->w[i + 1], (r->n - i - 1) * sizeof(r->w[0]));
            r->n--;
            free(w);
            return;
        }
    }
}

dais_worker *dais_registry_find(const dais_registry *r, const char *id)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->w[i]->id, id) == 0) return r->w[i];
    return NULL;
}

dais_worker *dais_registry_find_session(const dais_registry *r, uint64_t session_id)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->w[i]->session_id == session_id) return r->w[i];
    return NULL;
}

size_t dais_registry_count(const dais_registry *r)
{
    return r->n;
}

dais_worker *dais_registry_at(const dais_registry *r, size_t i)
{
    return i < r->n ? r->w[i] : NULL;
}

size_t dais_registry_count_state(const dais_registry *r, enum dais_worker_state state)
{
    if (state == DAIS_WORKER__COUNT) return r->n;
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        n += r->w[i]->state == state;
    return n;
}

bool dais_registry_model_active(const dais_registry *r, const char *model)
{
    for (size_t i = 0; i < r->n; i++) {
        const dais_worker *w = r->w[i];
        if (w->state == DAIS_WORKER_ACTIVE && !w->draining &&
            strcmp(w->caps.model.name, model) == 0)
            return true;
    }
    return false;
}

void dais_worker_set_state(dais_worker *w, enum dais_worker_state s, uint64_t now_ns)
{
    if (w->state == s) return;
    w->state = s;
    w->state_since_ns = now_ns;
}

bool dais_worker_hb_due(const dais_worker *w, uint64_t now_ns)
{
    return w->state != DAIS_WORKER_DEAD && dais_detector_due(&w->det, now_ns);
}

void dais_worker_hb_sent(dais_worker *w, uint64_t seq, uint64_t now_ns)
{
    dais_detector_sent(&w->det, now_ns, seq);
    w->hb_sent++;
}

bool dais_worker_hb_ack(dais_worker *w, uint64_t echo_seq, const dais_msg_heartbeat_ack *m,
                        uint64_t now_ns, double *rtt_ms)
{
    if (rtt_ms != NULL) *rtt_ms = -1;
    if (w->state == DAIS_WORKER_DEAD || echo_seq == 0 || echo_seq > w->tx_seq) return false;
    uint64_t rtt_ns = 0;
    if (dais_detector_ack(&w->det, now_ns, echo_seq, &rtt_ns) == 0) {
        w->rtt_ms = (double)rtt_ns / 1e6;
        if (rtt_ms != NULL) *rtt_ms = w->rtt_ms;
    } else
        dais_detector_heard(&w->det, now_ns); /* authentic, only too old to match a probe */
    w->hb_acked++;
    w->last_heard_ns = now_ns;
    if (m != NULL) {
        w->metrics = *m;
        w->have_metrics = true;
        w->metrics_ns = now_ns;
        w->inflight_at_report = w->inflight;
    }
    if (w->state == DAIS_WORKER_JOINING || w->state == DAIS_WORKER_SUSPECT)
        dais_worker_set_state(w, DAIS_WORKER_ACTIVE, now_ns);
    return true;
}

enum dais_worker_state dais_worker_hb_check(dais_worker *w, uint64_t now_ns)
{
    if (w->state == DAIS_WORKER_DEAD) return w->state;
    switch (dais_detector_check(&w->det, now_ns)) {
    case DAIS_DETECTOR_DEAD:
        dais_worker_set_state(w, DAIS_WORKER_DEAD, now_ns);
        break;
    case DAIS_DETECTOR_SUSPECT:
        if (w->state == DAIS_WORKER_ACTIVE) dais_worker_set_state(w, DAIS_WORKER_SUSPECT, now_ns);
        break;
    case DAIS_DETECTOR_ALIVE:
        if (w->state == DAIS_WORKER_SUSPECT) dais_worker_set_state(w, DAIS_WORKER_ACTIVE, now_ns);
        break;
    }
    return w->state;
}

uint64_t dais_worker_hb_next_ns(const dais_worker *w)
{
    return w->state == DAIS_WORKER_DEAD ? UINT64_MAX : dais_detector_next_event_ns(&w->det);
}

uint32_t dais_worker_misses(const dais_worker *w)
{
    return w->det.missed;
}

uint32_t dais_worker_slots(const dais_worker *w)
{
    return w->caps.slots > 0 ? (uint32_t)w->caps.slots : 1;
}

uint32_t dais_worker_capacity(const dais_worker *w)
{
    uint64_t c = (uint64_t)dais_worker_slots(w) + (uint64_t)(w->caps.queue > 0 ? w->caps.queue : 0);
    return c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
}

double dais_worker_load(const dais_worker *w)
{
    double external = 0;
    if (w->have_metrics) {
        double reported =
            (double)(w->metrics.load.queue_depth > 0 ? w->metrics.load.queue_depth : 0) +
            (double)(w->metrics.load.active > 0 ? w->metrics.load.active : 0);
        external = reported - (double)w->inflight_at_report;
        if (external < 0) external = 0;
    }
    return ((double)w->inflight + external) / (double)dais_worker_slots(w);
}
