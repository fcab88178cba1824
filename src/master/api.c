/*
 * The master's HTTP API routes:
 *
 *   POST /api/inference   generate (JSON reply, or Server-Sent Events with "stream": true)
 *   GET  /health          the process is up
 *   GET  /ready           200 when each served model has an active worker, else 503
 *   GET  /api/cluster     workers, states, capabilities, last metrics, in-flight counts
 *
 * Every error is a JSON body {"error": {"code", "message", …}} built by dais_api_error_reply;
 * 404 for an unknown path, 405 with Allow for a known path and a wrong method, 503 and 429
 * with Retry-After. Request validation is api_request.c; routing is router.c.
 */
#include "master/master_impl.h"

#include "common/clock.h"
#include "common/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum route { R_INFERENCE = 0, R_HEALTH, R_READY, R_CLUSTER, R_OTHER, R__COUNT };
static const char *const route_names[R__COUNT] = {"/api/inference", "/health", "/ready",
                                                  "/api/cluster", "other"};

static enum route route_of(const char *path)
{
    for (int i = 0; i < R_OTHER; i++)
        if (strcmp(path, route_names[i]) == 0) return (enum route)i;
    return R_OTHER;
}

const char *dais_api_retry_after(const dais_master *m)
{
    static _Thread_local char line[40];
    uint32_t s = (m->cfg.heartbeat_interval_ms + 999) / 1000;
    snprintf(line, sizeof(line), "Retry-After: %u\r\n", s < 1 ? 1 : s);
    return line;
}

static void reply_json(dais_http_req *req, int status, json_t *o, const char *headers)
{
    char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}\n";
        dais_http_reply(req, 500, "application/json", NULL, oom, sizeof(oom) - 1);
        return;
    }
    size_t n = strlen(s);
    s[n] = '\n';
    dais_http_reply(req, status, "application/json", headers, s, n + 1);
    free(s);
}

void dais_api_error_reply(dais_http_req *req, int status, const char *code, const char *message,
                          const char *headers)
{
    json_t *o = json_pack("{s:{s:s,s:o}}", "error", "code", code, "message",
                          dais_json_text(message, strlen(message)));
    reply_json(req, status, o, headers);
}

/* ---- POST /api/inference --------------------------------------------------------------------- */

static void handle_inference(dais_master *m, dais_http_req *req)
{
    size_t len;
    const char *body = dais_http_req_body(req, &len);
    dais_api_limits lim = {m->cfg.default_max_tokens, m->cfg.max_tokens_limit};
    dais_api_request api;
    dais_api_error e;
    if (dais_api_request_parse(body, len, &lim, &api, &e) != 0) {
        json_t *err = json_pack("{s:s,s:o}", "code", e.code, "message",
                                dais_json_text(e.message, strlen(e.message)));
        if (err != NULL && e.field[0] != '\0')
            json_object_set_new(err, "field", dais_json_text(e.field, strlen(e.field)));
        if (err != NULL && strcmp(e.code, "invalid_json") == 0 && e.line > 0) {
            json_object_set_new(err, "line", json_integer(e.line));
            json_object_set_new(err, "column", json_integer(e.column));
        }
        reply_json(req, e.status, err != NULL ? json_pack("{s:o}", "error", err) : NULL, NULL);
        return;
    }
    dais_router_submit(m, req, &api);
}

/* ---- GET /health, /ready ------------------------------------------------------------------ */

/* The pipeline stages that active shards of `model` hold: [{"layers": [first, last],
 * "workers": [ids]}] in layer order, or NULL when no shard serves it (docs/sharding.md). */
static json_t *stages_json(const dais_master *m, const char *model)
{
    json_t *a = NULL;
    for (int32_t first = 0;; first++) {
        /* the smallest first layer >= `first` any active shard starts at */
        int32_t next = INT32_MAX;
        for (size_t i = 0; i < dais_registry_count(m->reg); i++) {
            const dais_worker *w = dais_registry_at(m->reg, i);
            const dais_model_info *mi = &w->caps.model;
            if (w->state != DAIS_WORKER_ACTIVE || strcmp(mi->name, model) != 0 ||
                (mi->layer_first == 0 && mi->layer_last == mi->n_layers))
                continue;
            if (mi->layer_first >= first && mi->layer_first < next) next = mi->layer_first;
        }
        if (next == INT32_MAX) return a;
        first = next;
        /* one entry per distinct range starting there */
        for (size_t i = 0; i < dais_registry_count(m->reg); i++) {
            const dais_worker *w = dais_registry_at(m->reg, i);
            const dais_model_info *mi = &w->caps.model;
            bool whole = mi->layer_first == 0 && mi->layer_last == mi->n_layers;
            if (w->state != DAIS_WORKER_ACTIVE || strcmp(mi->name, model) != 0 || whole ||
                mi->layer_first != first)
                continue;
            if (a == NULL) a = json_array();
            json_t *found = NULL;
            for (size_t k = 0; k < json_array_size(a); k++) {
                json_t *e = json_array_get(a, k), *l = json_object_get(e, "layers");
                if (json_integer_value(json_array_get(l, 0)) == first &&
                    json_integer_value(json_array_get(l, 1)) == mi->layer_last)
                    found = e;
            }
            if (found == NULL) {
                found = json_pack("{s:[I,I],s:[]}", "layers", (json_int_t)first,
                                  (json_int_t)mi->layer_last, "workers");
                if (found == NULL) continue;
                json_array_append_new(a, found);
            }
            json_array_append_new(json_object_get(found, "workers"), json_string(w->id));
        }
    }
}

static json_t *models_json(const dais_master *m, bool *all_ready)
{
    json_t *a = json_array();
    *all_ready = true;
    bool any_ready = false;
    if (m->cfg.n_models == 0) {
        /* Any model: list what the workers bring. */
        for (size_t i = 0; i < dais_registry_count(m->reg); i++) {
            const dais_worker *w = dais_registry_at(m->reg, i);
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++)
                seen =
                    strcmp(dais_registry_at(m->reg, j)->caps.model.name, w->caps.model.name) == 0;
            if (seen) continue;
            size_t active = 0;
            for (size_t j = 0; j < dais_registry_count(m->reg); j++) {
                const dais_worker *o = dais_registry_at(m->reg, j);
                active += o->state == DAIS_WORKER_ACTIVE && !o->draining &&
                          strcmp(o->caps.model.name, w->caps.model.name) == 0;
            }
            bool ready = dais_router_model_ready(m, w->caps.model.name);
            any_ready = any_ready || ready;
            json_t *e = json_pack("{s:o,s:I,s:b,s:I}", "name",
                                  dais_json_text(w->caps.model.name, strlen(w->caps.model.name)),
                                  "active_workers", (json_int_t)active, "ready", ready, "queued",
                                  (json_int_t)dais_router_queued(m, w->caps.model.name));
            json_t *st = stages_json(m, w->caps.model.name);
            if (e != NULL && st != NULL) json_object_set_new(e, "pipeline_stages", st);
            json_array_append_new(a, e);
        }
        *all_ready = any_ready;
        return a;
    }
    for (size_t i = 0; i < m->cfg.n_models; i++) {
        const char *name = m->cfg.models[i].name;
        size_t active = 0;
        for (size_t j = 0; j < dais_registry_count(m->reg); j++) {
            const dais_worker *o = dais_registry_at(m->reg, j);
            active += o->state == DAIS_WORKER_ACTIVE && !o->draining &&
                      strcmp(o->caps.model.name, name) == 0;
        }
        /* an active whole-model worker, or active shards covering every layer */
        bool ready = dais_router_model_ready(m, name);
        if (!ready) *all_ready = false;
        json_t *e = json_pack("{s:o,s:I,s:b,s:I}", "name", dais_json_text(name, strlen(name)),
                              "active_workers", (json_int_t)active, "ready", ready, "queued",
                              (json_int_t)dais_router_queued(m, name));
        json_t *st = stages_json(m, name);
        if (e != NULL && st != NULL) json_object_set_new(e, "pipeline_stages", st);
        json_array_append_new(a, e);
    }
    return a;
}

static void handle_ready(dais_master *m, dais_http_req *req)
{
    bool ready;
    json_t *models = models_json(m, &ready);
    if (m->stopping) ready = false;
    json_t *o = json_pack("{s:b,s:o}", "ready", ready, "models", models);
    if (ready) {
        reply_json(req, 200, o, NULL);
        return;
    }
    json_object_set_new(o, "error",
                        json_pack("{s:s,s:s}", "code", m->stopping ? "shutting_down" : "not_ready",
                                  "message",
                                  m->stopping ? "the master is shutting down"
                                              : "not every served model has an active worker"));
    reply_json(req, 503, o, dais_api_retry_after(m));
}

/* ---- GET /api/cluster ------------------------------------------------------------------------ */

static json_t *simd_json(uint32_t simd)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } names[] = {{DAIS_SIMD_SSE42, "sse4.2"}, {DAIS_SIMD_AVX, "avx"},
                 {DAIS_SIMD_AVX2, "avx2"},    {DAIS_SIMD_FMA, "fma"},
                 {DAIS_SIMD_F16C, "f16c"},    {DAIS_SIMD_AVX512F, "avx512f"},
                 {DAIS_SIMD_NEON, "neon"}};
    json_t *a = json_array();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (simd & names[i].bit) json_array_append_new(a, json_string(names[i].name));
    return a;
}

static json_t *worker_json(const dais_master *m, const dais_worker *w, uint64_t now)
{
    const dais_msg_discovery *c = &w->caps;
    json_t *caps = json_pack(
        "{s:I,s:I,s:I,s:I,s:o,s:{s:o,s:s,s:I,s:I,s:I,s:I,s:I},s:I,s:I,s:I,s:I}", "cores",
        (json_int_t)c->cores, "threads", (json_int_t)c->threads, "memory_total",
        (json_int_t)c->memory_total, "memory_available", (json_int_t)c->memory_available, "simd",
        simd_json(c->simd), "model", "name", dais_json_text(c->model.name, strlen(c->model.name)),
        "hash", c->model.hash, "n_vocab", (json_int_t)c->model.n_vocab, "n_layers",
        (json_int_t)c->model.n_layers, "layer_first", (json_int_t)c->model.layer_first,
        "layer_last", (json_int_t)c->model.layer_last, "n_ctx_train",
        (json_int_t)c->model.n_ctx_train, "n_ctx", (json_int_t)c->n_ctx, "slots",
        (json_int_t)c->slots, "batch", (json_int_t)c->batch, "queue", (json_int_t)c->queue);
    json_t *metrics = json_null();
    if (w->have_metrics) {
        const dais_msg_heartbeat_ack *a = &w->metrics;
        metrics = json_pack(
            "{s:s,s:f,s:{s:f,s:f,s:I,s:I,s:I,s:f,s:f,s:f},s:{s:I,s:I,s:I,s:f,s:I,s:I,s:I,s:I}}",
            "health", a->health, "age_ms", (double)(now - w->metrics_ns) / 1e6, "system",
            "cpu_percent", a->sys.cpu_percent, "process_cpu_percent", a->sys.process_cpu_percent,
            "mem_total", (json_int_t)a->sys.mem_total, "mem_used", (json_int_t)a->sys.mem_used,
            "process_rss", (json_int_t)a->sys.process_rss, "load1", a->sys.load1, "load5",
            a->sys.load5, "load15", a->sys.load15, "load", "queue_depth",
            (json_int_t)a->load.queue_depth, "active", (json_int_t)a->load.active, "slots",
            (json_int_t)a->load.slots, "tokens_per_s", a->load.tokens_per_s, "kv_used",
            (json_int_t)a->load.kv_used, "kv_total", (json_int_t)a->load.kv_total, "requests_total",
            (json_int_t)a->load.requests_total, "tokens_total", (json_int_t)a->load.tokens_total);
        if (metrics == NULL) metrics = json_null();
    }
    char hb[DAIS_NAME_MAX + 16];
    snprintf(hb, sizeof(hb), "%s:%u", w->addr, (unsigned)w->caps.heartbeat_port);
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:b,s:f,s:f,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:o,s:o}", "id", w->id,
        "state", dais_worker_state_name(w->state), "address", w->peer, "heartbeat_address", hb,
        "draining", w->draining, "registered_at", w->registered_wall, "state_age_s",
        (double)(now - w->state_since_ns) / 1e9, "last_heard_ms_ago",
        (double)(now - w->last_heard_ns) / 1e6, "inflight", (json_int_t)w->inflight,
        "requests_total", (json_int_t)w->requests_total, "failures_total",
        (json_int_t)w->failures_total, "heartbeat_misses", (json_int_t)dais_worker_misses(w),
        "heartbeats_sent", (json_int_t)w->hb_sent, "heartbeats_answered", (json_int_t)w->hb_acked,
        "rtt_ms", w->rtt_ms, "capabilities", caps != NULL ? caps : json_null(), "metrics", metrics);
    if (o != NULL) {
        json_object_set_new(o, "load_score", json_real(dais_worker_load(w)));
        dais_breaker_info bi;
        dais_breaker_snapshot(&w->breaker, now, &bi);
        json_t *b = json_pack(
            "{s:s,s:I,s:I,s:I,s:I,s:f}", "state", dais_breaker_state_name(bi.state),
            "consecutive_failures", (json_int_t)bi.consecutive_failures, "window_successes",
            (json_int_t)bi.window_successes, "window_failures", (json_int_t)bi.window_failures,
            "opens_total", (json_int_t)bi.opens_total, "retry_in_ms",
            bi.retry_at_ns > now ? (double)(bi.retry_at_ns - now) / 1e6 : 0.0);
        json_object_set_new(o, "breaker", b != NULL ? b : json_null());
        json_object_set_new(o, "heartbeat_loss", json_real(dais_detector_loss(&w->det)));
        /* where Prometheus scrapes this worker (workers before protocol change 5 send none) */
        if (w->caps.metrics_port != 0) {
            char ma[DAIS_NAME_MAX + 16];
            snprintf(ma, sizeof(ma), "%s:%u", w->addr, (unsigned)w->caps.metrics_port);
            json_object_set_new(o, "metrics_address", json_string(ma));
        } else {
            json_object_set_new(o, "metrics_address", json_null());
        }
    }
    (void)m;
    return o;
}

static void handle_cluster(dais_master *m, dais_http_req *req)
{
    uint64_t now = dais_now_ns();
    json_t *workers = json_array();
    for (size_t i = 0; i < dais_registry_count(m->reg); i++) {
        json_t *w = worker_json(m, dais_registry_at(m->reg, i), now);
        if (w != NULL) json_array_append_new(workers, w);
    }
    json_t *counts = json_object();
    for (int s = 0; s < DAIS_WORKER__COUNT; s++)
        json_object_set_new(
            counts, dais_worker_state_name((enum dais_worker_state)s),
            json_integer((json_int_t)dais_registry_count_state(m->reg, (enum dais_worker_state)s)));
    json_t *drops = json_object();
    for (int v = 1; v < DAIS_DGRAM__COUNT; v++)
        json_object_set_new(drops, dais_dgram_verdict_name((enum dais_dgram_verdict)v),
                            json_integer((json_int_t)m->dgram_drops[v]));
    json_t *regs = json_object();
    for (int r = 0; r < DAIS_REJECT__COUNT; r++)
        json_object_set_new(
            regs, r == 0 ? "accepted" : dais_reject_reason_name((enum dais_reject_reason)r),
            json_integer((json_int_t)m->registrations[r]));
    bool ready;
    json_t *models = models_json(m, &ready);
    json_t *o =
        json_pack("{s:s,s:s,s:b,s:o,s:o,s:o,s:{s:I,s:I,s:I},s:o,s:o,s:I}", "node", m->cfg.node_id,
                  "cluster_state", dais_master_cluster_state(m), "ready", ready, "models", models,
                  "workers", workers, "worker_states", counts, "requests", "in_flight",
                  (json_int_t)m->n_inflight, "queued", (json_int_t)m->n_queued, "total",
                  (json_int_t)m->requests_total, "registrations", regs, "heartbeat_drops", drops,
                  "heartbeat_interval_ms", (json_int_t)m->cfg.heartbeat_interval_ms);
    if (o != NULL) {
        json_t *k = dais_master_k8s_json(m);
        if (k != NULL) json_object_set_new(o, "k8s_discovery", k);
    }
    reply_json(req, 200, o, NULL);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

void dais_api_handle(dais_http_req *req, void *arg)
{
    dais_master *m = arg;
    const char *method = dais_http_req_method(req);
    const char *path = dais_http_req_path(req);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    enum route r = route_of(path);
    switch (r) {
    case R_INFERENCE:
        if (strcmp(method, "POST") != 0) {
            dais_api_error_reply(req, 405, "method_not_allowed", "/api/inference accepts POST only",
                                 "Allow: POST\r\n");
            return;
        }
        handle_inference(m, req);
        return;
    case R_HEALTH:
    case R_READY:
    case R_CLUSTER:
        if (!get) {
            char msg[96];
            snprintf(msg, sizeof(msg), "%s accepts GET and HEAD only", route_names[r]);
            dais_api_error_reply(req, 405, "method_not_allowed", msg, "Allow: GET, HEAD\r\n");
            return;
        }
        if (r == R_HEALTH)
            reply_json(req, 200, json_pack("{s:s,s:s}", "status", "ok", "node", m->cfg.node_id),
                       NULL);
        else if (r == R_READY)
            handle_ready(m, req);
        else
            handle_cluster(m, req);
        return;
    default: {
        char msg[128];
        snprintf(msg, sizeof(msg), "no such endpoint: %.80s", path);
        dais_api_error_reply(req, 404, "not_found", msg, NULL);
        return;
    }
    }
}

void dais_api_log(const dais_http_req *req, int status, void *arg)
{
    dais_master *m = arg;
    const char *path = dais_http_req_path(req);
    enum route rt = route_of(path != NULL ? path : "");
    /* Child handles are cached per (route, status): the lookup takes the registry's lock. */
    dais_counter *c = NULL;
    int slot = -1;
    for (int i = 0; i < 16; i++) {
        if (m->http_codes[rt][i] != NULL && m->http_code_of[rt][i] == status) {
            c = m->http_codes[rt][i];
            break;
        }
        if (m->http_codes[rt][i] == NULL && slot < 0) slot = i;
    }
    if (c == NULL) {
        char code[8];
        snprintf(code, sizeof(code), "%d", status);
        const char *values[2] = {route_names[rt], code};
        c = dais_counter_child(m->mx.http_requests, values);
        if (c != NULL && slot >= 0) {
            m->http_codes[rt][slot] = c;
            m->http_code_of[rt][slot] = status;
        }
    }
    dais_counter_inc(c);
    DAIS_DEBUG("%s %s %s %d %.3f ms", dais_http_req_peer(req), dais_http_req_method(req),
               path != NULL ? path : "", status,
               (double)(dais_now_ns() - dais_http_req_start_ns(req)) / 1e6);
}
