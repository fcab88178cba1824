/*
 * The master's lifecycle (see master.h): build the loop and every listener, register the
 * metrics, run, and shut down gracefully — on SIGTERM/SIGINT new requests get 503, requests
 * in flight may finish for the grace period, then everything is closed; a second signal ends
 * the wait at once.
 */
#include "master/master_impl.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/metric_names.h"
#include "master/k8s.h"
#include "master/modelstore.h"

#include <event2/buffer.h>
#include <event2/event.h>

#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers shared by the master's modules ----------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

json_t *dais_json_text(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t k = p[i] != 0 ? utf8_seq(p + i, len - i) : 0;
        if (k == 0) break;
        i += k;
    }
    if (i == len) return json_stringn(s, len);
    /* Replace each invalid byte (and NUL) with U+FFFD. */
    if (len > (SIZE_MAX - 1) / 3) return NULL;
    char *buf = malloc(len * 3 + 1);
    if (buf == NULL) return NULL;
    size_t o = 0;
    i = 0;
    while (i < len) {
        size_t k = p[i] != 0 ? utf8_seq(p + i, len - i) : 0;
        if (k == 0) {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        }
    }
    json_t *j = json_stringn(buf, o);
    free(buf);
    return j;
}

void dais_json_put_str(struct evbuffer *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    char buf[256];
    size_t o = 0;
    buf[o++] = '"';
    size_t i = 0;
    while (i < len) {
        if (o > sizeof(buf) - 8) {
            evbuffer_add(b, buf, o);
            o = 0;
        }
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            buf[o++] = (char)c;
            i++;
        } else if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
            i++;
        } else if (c < 0x20) {
            buf[o++] = '\\';
            switch (c) {
            case '\n':
                buf[o++] = 'n';
                break;
            case '\r':
                buf[o++] = 'r';
                break;
            case '\t':
                buf[o++] = 't';
                break;
            default:
                buf[o++] = 'u';
                buf[o++] = '0';
                buf[o++] = '0';
                buf[o++] = hex[c >> 4];
                buf[o++] = hex[c & 15];
            }
            i++;
        } else {
            size_t k = utf8_seq(p + i, len - i);
            if (k == 0) {
                memcpy(buf + o, "\xef\xbf\xbd", 3);
                o += 3;
                i++;
            } else {
                memcpy(buf + o, s + i, k);
                o += k;
                i += k;
            }
        }
    }
    buf[o++] = '"';
    evbuffer_add(b, buf, o);
}

uint64_t dais_master_rand64(dais_master *m)
{
    uint64_t x = m->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    m->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

void dais_master_models_text(const dais_master *m, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    if (m->cfg.n_models == 0) {
        for (size_t i = 0; i < dais_registry_count(m->reg) && n + 4 < cap; i++) {
            const char *name = dais_registry_at(m->reg, i)->caps.model.name;
            bool seen = false;
            for (size_t j = 0; j < i && !seen; j++)
                seen = strcmp(dais_registry_at(m->reg, j)->caps.model.name, name) == 0;
            if (!seen) n += (size_t)snprintf(buf + n, cap - n, "%s'%s'", n > 0 ? ", " : "", name);
        }
        if (n == 0) snprintf(buf, cap, "any model; no worker has joined");
        return;
    }
    for (size_t i = 0; i < m->cfg.n_models && n + 4 < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s'%s'", i > 0 ? ", " : "", m->cfg.models[i].name);
}

/* ---- metrics ----------------------------------------------------------------------------------
 */

static void collect_workers(void *arg, dais_metric_sink *sink)
{
    dais_master *m = arg;
    for (int s = 0; s < DAIS_WORKER__COUNT; s++) {
        const char *v[1] = {dais_worker_state_name((enum dais_worker_state)s)};
        dais_metric_sink_emit(sink, v,
                              (double)dais_registry_count_state(m->reg, (enum dais_worker_state)s));
    }
}

static void collect_breakers(void *arg, dais_metric_sink *sink)
{
    dais_master *m = arg;
    uint64_t now = dais_now_ns();
    static const enum dais_breaker_state states[3] = {DAIS_BREAKER_CLOSED, DAIS_BREAKER_OPEN,
                                                      DAIS_BREAKER_HALF_OPEN};
    for (size_t i = 0; i < dais_registry_count(m->reg); i++) {
        const dais_worker *w = dais_registry_at(m->reg, i);
        if (w->state == DAIS_WORKER_DEAD) continue;
        enum dais_breaker_state cur = dais_breaker_state_at(&w->breaker, now);
        for (int k = 0; k < 3; k++) {
            const char *v[2] = {w->id, dais_breaker_state_name(states[k])};
            dais_metric_sink_emit(sink, v, cur == states[k] ? 1.0 : 0.0);
        }
    }
}

static int metrics_init(dais_master *m, dais_err *err)
{
    dais_master_metrics *x = &m->mx;
    x->reg = dais_metrics_registry_new();
    if (x->reg == NULL) return dais_err_set(err, DAIS_ENOMEM, "no memory for metrics");
    dais_metrics_register_standard(x->reg, NULL);
    static const char *const route_code[2] = {"route", "code"};
    static const char *const result[1] = {"result"};
    static const char *const state[1] = {"state"};
    x->http_requests = dais_metrics_family_new(x->reg, DAIS_METRIC_COUNTER, DAIS_M_HTTP_REQUESTS,
                                               "HTTP requests answered, by route and status code",
                                               2, route_code, 0, NULL);
    x->request_duration = dais_histogram_new(x->reg, DAIS_M_REQUEST_DURATION,
                                             "Inference request time, arrival to last byte",
                                             dais_buckets_latency_n, dais_buckets_latency);
    x->queue_time = dais_histogram_new(x->reg, DAIS_M_REQUEST_QUEUE_TIME,
                                       "Time a request waited before a worker started it",
                                       dais_buckets_latency_n, dais_buckets_latency);
    x->ttft = dais_histogram_new(x->reg, DAIS_M_TTFT, "Arrival to the first generated token",
                                 dais_buckets_latency_n, dais_buckets_latency);
    x->tpot = dais_histogram_new(x->reg, DAIS_M_TPOT,
                                 "Mean time per output token after the first, per request",
                                 dais_buckets_fast_n, dais_buckets_fast);
    x->tokens_in = dais_counter_new(x->reg, DAIS_M_TOKENS_IN, "Prompt tokens of finished requests");
    x->tokens_out = dais_counter_new(x->reg, DAIS_M_TOKENS_OUT, "Tokens generated for clients");
    x->in_flight =
        dais_gauge_new(x->reg, DAIS_M_REQUESTS_IN_FLIGHT, "Requests being served by workers");
    x->queued = dais_gauge_new(x->reg, DAIS_M_REQUESTS_QUEUED,
                               "Requests waiting at the master for a worker slot");
    x->registrations = dais_metrics_family_new(x->reg, DAIS_METRIC_COUNTER, DAIS_M_REGISTRATIONS,
                                               "NODE_DISCOVERY outcomes: accepted or the reason", 1,
                                               result, 0, NULL);
    x->hb_sent = dais_counter_new(x->reg, DAIS_M_HEARTBEATS_SENT, "HEARTBEAT datagrams sent");
    x->hb_answered = dais_counter_new(x->reg, DAIS_M_HEARTBEATS_ANSWERED,
                                      "Authentic HEARTBEAT_ACK datagrams received");
    x->hb_lost = dais_counter_new(x->reg, DAIS_M_HEARTBEATS_LOST,
                                  "Heartbeat intervals that ended without an answer");
    x->hb_forged = dais_counter_new(x->reg, DAIS_M_HEARTBEATS_FORGED,
                                    "Datagrams dropped: bad MAC, replay or unknown session");
    x->hb_rtt = dais_histogram_new(x->reg, DAIS_M_HEARTBEAT_RTT, "Heartbeat round-trip time",
                                   dais_buckets_fast_n, dais_buckets_fast);
    x->retries = dais_counter_new(x->reg, DAIS_M_RETRIES,
                                  "Requests routed again: the worker was busy or failed before "
                                  "producing output");
    x->failovers = dais_counter_new(x->reg, DAIS_M_FAILOVERS,
                                    "Generations continued on another worker after output");
    x->pipeline_attempts = dais_counter_new(x->reg, DAIS_M_PIPELINE_ATTEMPTS,
                                            "Request attempts sent through a pipeline of shards");
    x->shard_relays = dais_counter_new(x->reg, DAIS_M_SHARD_RELAYS,
                                       "SHARD_ACTIVATION frames relayed between pipeline stages");
    dais_metrics_collector_new(x->reg, DAIS_METRIC_GAUGE, DAIS_M_WORKERS, "Workers by state", 1,
                               state, collect_workers, m);
    static const char *const worker_state[2] = {"worker", "state"};
    dais_metrics_collector_new(x->reg, DAIS_METRIC_GAUGE, DAIS_M_BREAKER_STATE,
                               "Circuit breaker per worker: 1 for its current state", 2,
                               worker_state, collect_breakers, m);
    return 0;
}

/* ---- Kubernetes discovery ---------------------------------------------------------------------
 * Workers register themselves with NODE_DISCOVERY; the pod list decides who may stay: after
 * each successful list, a registered worker whose TCP peer address is not the podIP of a
 * candidate pod (Running, with an IP, not being deleted) is drained and removed at once — the
 * same path as a dead worker, so its requests fail over. A failed list changes nothing.
 */

/* The address a worker's pod must have: its TCP peer's IP (the heartbeat address when the
 * connection is already gone). */
static const char *worker_ip(const dais_worker *w)
{
    const dais_mconn *c = w->conn;
    if (c != NULL && c->peer_ip[0] != '\0') return c->peer_ip;
    return w->addr;
}

static void k8s_result_cb(void *arg, dais_k8s_result *res)
{
    dais_master *m = arg;
    uint64_t now = dais_now_ns();
    if (res->code != 0 || res->pods == NULL) {
        m->k8s_lists_failed++;
        m->k8s_last_error_wall_s = (uint64_t)time(NULL);
        snprintf(m->k8s_last_error, sizeof(m->k8s_last_error), "%s: %s",
                 dais_k8s_reason_name(res->reason), res->message);
        DAIS_WARN("k8s discovery: pod list failed (%s, %u in a row), pool unchanged; retry in "
                  "%.1f s: %s",
                  dais_k8s_reason_name(res->reason), res->consecutive_failures,
                  (double)res->retry_in_ns / 1e9, res->message);
        return;
    }
    dais_k8s_podlist *l = res->pods;
    res->pods = NULL;
    m->k8s_lists_ok++;
    m->k8s_last_success_wall_s = (uint64_t)time(NULL);
    m->k8s_last_error[0] = '\0';
    m->k8s_pods_seen = (uint32_t)l->n;
    uint32_t cand = 0;
    for (size_t i = 0; i < l->n; i++)
        if (dais_k8s_pod_is_candidate(&l->pods[i], false)) cand++;
    m->k8s_candidates = cand;

    /* Collect first: removing a worker may reorder the registry. A worker that registered
     * after the previous list arrived may be newer than this list: it is kept until the next. */
    size_t n = dais_registry_count(m->reg);
    char(*gone)[DAIS_NODE_ID_MAX + 1] = n > 0 ? calloc(n, sizeof(*gone)) : NULL;
    size_t n_gone = 0;
    for (size_t i = 0; gone != NULL && i < n; i++) {
        const dais_worker *w = dais_registry_at(m->reg, i);
        if (m->k8s_prev_ok_ns != 0 && w->registered_ns > m->k8s_prev_ok_ns) continue;
        if (m->k8s_prev_ok_ns == 0 && w->registered_ns + 1000000000ull > now) continue;
        if (dais_k8s_podlist_find_ip(l, worker_ip(w), false) != NULL) continue;
        snprintf(gone[n_gone++], DAIS_NODE_ID_MAX + 1, "%s", w->id);
    }
    for (size_t i = 0; i < n_gone; i++) {
        dais_worker *w = dais_registry_find(m->reg, gone[i]);
        if (w == NULL) continue;
        DAIS_WARN("k8s discovery: worker %s (%s) is not a Running pod of the list any more: "
                  "removing it (%u requests in flight)",
                  w->id, worker_ip(w), w->inflight);
        if (w->conn != NULL || w->reqs != NULL)
            dais_cluster_worker_lost(m, w, "its pod is gone or no longer Running");
        dais_cluster_worker_remove(m, w);
        m->k8s_workers_removed++;
    }
    free(gone);
    DAIS_DEBUG("k8s discovery: %zu pods listed, %u candidates, %zu workers removed", l->n, cand,
               n_gone);
    m->k8s_prev_ok_ns = now;
    dais_k8s_podlist_free(m->k8s_pods); /* kept for --k8s-admit */
    m->k8s_pods = l;
}

static int k8s_start(dais_master *m, dais_err *err)
{
    const dais_master_config *c = &m->cfg;
    dais_k8s_config kc;
    dais_k8s_config_default(&kc);
    if (c->k8s_api_server[0] != '\0') kc.api_url = c->k8s_api_server;
    if (c->k8s_token_file[0] != '\0') kc.token_path = c->k8s_token_file;
    if (c->k8s_ca_file[0] != '\0') kc.ca_path = c->k8s_ca_file;
    if (c->k8s_namespace[0] != '\0') kc.ns = c->k8s_namespace;
    kc.label_selector = c->k8s_selector;
    kc.poll_interval_ns = (uint64_t)c->k8s_interval_ms * 1000000ull;
    kc.metrics = m->mx.reg;
    dais_k8s_client *cl = dais_k8s_client_new(&kc, err);
    if (cl == NULL) return err != NULL && err->code != 0 ? err->code : DAIS_EINVAL;
    DAIS_INFO("k8s discovery: listing %s every %u ms", dais_k8s_client_url(cl), c->k8s_interval_ms);
    m->k8s = dais_k8s_discovery_start(cl, m->base, k8s_result_cb, m, err);
    if (m->k8s == NULL) return err != NULL && err->code != 0 ? err->code : DAIS_EINTERNAL;
    return 0;
}

json_t *dais_master_k8s_json(const dais_master *m)
{
    if (m->k8s == NULL)
        return json_pack("{s:b,s:b,s:o}", "enabled", m->cfg.k8s_discovery, "active", 0,
                         "last_error",
                         m->k8s_last_error[0] != '\0'
                             ? dais_json_text(m->k8s_last_error, strlen(m->k8s_last_error))
                             : json_null());
    dais_k8s_stats st;
    dais_k8s_discovery_stats(m->k8s, &st);
    json_t *fails = json_object();
    for (int r = 1; r < DAIS_K8S_R_COUNT; r++)
        if (st.failures[r] > 0)
            json_object_set_new(fails, dais_k8s_reason_name((enum dais_k8s_reason)r),
                                json_integer((json_int_t)st.failures[r]));
    json_t *o = json_pack("{s:b,s:b,s:s,s:I,s:I,s:I,s:o,s:I,s:I,s:I,s:I}", "enabled", 1, "active",
                          1, "selector", m->cfg.k8s_selector, "interval_ms",
                          (json_int_t)m->cfg.k8s_interval_ms, "polls", (json_int_t)st.polls,
                          "successes", (json_int_t)m->k8s_lists_ok, "failures_by_reason", fails,
                          "failures", (json_int_t)m->k8s_lists_failed, "pods_seen",
                          (json_int_t)m->k8s_pods_seen, "candidates", (json_int_t)m->k8s_candidates,
                          "workers_removed", (json_int_t)m->k8s_workers_removed);
    if (o == NULL) return NULL;
    json_object_set_new(o, "last_success_unix",
                        m->k8s_last_success_wall_s != 0
                            ? json_integer((json_int_t)m->k8s_last_success_wall_s)
                            : json_null());
    json_object_set_new(o, "last_error",
                        m->k8s_last_error[0] != '\0'
                            ? dais_json_text(m->k8s_last_error, strlen(m->k8s_last_error))
                            : json_null());
    json_object_set_new(o, "last_error_unix",
                        m->k8s_last_error_wall_s != 0
                            ? json_integer((json_int_t)m->k8s_last_error_wall_s)
                            : json_null());
    return o;
}

/* ---- model store (port 8890, master/modelstore.h): its own threads, never this loop -------- */

static int store_start(dais_master *m, dais_err *err)
{
    const dais_master_config *c = &m->cfg;
    dais_modelstore_config sc;
    dais_modelstore_config_default(&sc);
    sc.dir = c->model_dir;
    sc.addr = c->sync_addr;
    sc.port = c->sync_port;
    sc.node_id = c->node_id;
    sc.token = c->token;
    sc.token_len = c->token_len;
    sc.auth_window_ms = (int64_t)c->auth_window_ms;
    sc.max_transfers = c->sync_transfers;
    sc.chunk_size = (uint32_t)c->sync_chunk;
    sc.io_timeout_ms = c->sync_timeout_ms;
    sc.rate_limit = c->sync_rate_limit;
    sc.metrics = m->mx.reg;
    m->store = dais_modelstore_start(&sc, err);
    return m->store != NULL ? 0 : DAIS_EIO;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void finish_stop(dais_master *m)
{
    dais_router_shutdown(m);
    /* A moment for the answers just queued (503s, stream ends) to reach their clients. */
    struct timeval flush = {0, 100000};
    event_base_loopexit(m->base, &flush);
}

/* While stopping: checks every 50 ms whether the requests in flight are done. */
static void grace_poll_cb(evutil_socket_t fd, short what, void *arg)
{
    dais_master *m = arg;
    (void)fd;
    (void)what;
    if (m->n_requests == 0) {
        finish_stop(m);
        return;
    }
    struct timeval tv = {0, 50000};
    evtimer_add(m->grace_poll, &tv);
}

static void grace_over_cb(evutil_socket_t fd, short what, void *arg)
{
    dais_master *m = arg;
    (void)fd;
    (void)what;
    if (m->n_requests > 0)
        DAIS_WARN("shutdown: %u requests still running after the grace period; ending them",
                  m->n_requests);
    finish_stop(m);
}

void dais_master_stop(dais_master *m)
{
    if (m->stopping) {
        DAIS_INFO("second stop request: ending now");
        finish_stop(m);
        return;
    }
    m->stopping = true;
    DAIS_INFO("shutting down: %u requests in flight may finish within %u ms", m->n_requests,
              m->cfg.shutdown_grace_ms);
    dais_router_fail_queued(m);
    if (m->n_requests == 0) {
        finish_stop(m);
        return;
    }
    struct timeval poll = {0, 50000};
    struct timeval grace = {m->cfg.shutdown_grace_ms / 1000,
                            (suseconds_t)(m->cfg.shutdown_grace_ms % 1000) * 1000};
    evtimer_add(m->grace_poll, &poll);
    evtimer_add(m->grace_over, &grace);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    DAIS_INFO("signal %d received", (int)sig);
    dais_master_stop(arg);
}

dais_master *dais_master_new(const dais_master_config *cfg, dais_err *err)
{
    dais_master *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "no memory for the master");
        return NULL;
    }
    m->cfg = *cfg;
    m->udp_fd = -1;
    signal(SIGPIPE, SIG_IGN);
    uint64_t seed = 0;
    if (RAND_bytes((unsigned char *)&seed, sizeof(seed)) != 1) seed = dais_now_ns();
    dais_balancer_init(&m->bal, seed);
    m->rng = (seed ^ 0x9e3779b97f4a7c15ull) | 1;
    dais_breaker_config_default(&m->breaker_cfg);
    dais_master_detector_config(cfg, &m->det_cfg);
    if (dais_detector_config_check(&m->det_cfg, err) != 0) goto fail;
    m->base = event_base_new();
    m->reg = dais_registry_new();
    m->replay = dais_replay_cache_new(65536, (int64_t)cfg->auth_window_ms);
    if (m->base == NULL || m->reg == NULL || m->replay == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "no memory for the master");
        goto fail;
    }
    if (cfg->request_timeout_ms > 0) {
        struct timeval tv = {cfg->request_timeout_ms / 1000,
                             (suseconds_t)(cfg->request_timeout_ms % 1000) * 1000};
        m->deadline_tv = event_base_init_common_timeout(m->base, &tv);
        if (m->deadline_tv == NULL) {
            dais_err_set(err, DAIS_ENOMEM, "no memory for the request timer");
            goto fail;
        }
    }
    if (cfg->stall_timeout_ms > 0) {
        struct timeval tv = {cfg->stall_timeout_ms / 1000,
                             (suseconds_t)(cfg->stall_timeout_ms % 1000) * 1000};
        m->stall_tv = event_base_init_common_timeout(m->base, &tv);
        if (m->stall_tv == NULL) {
            dais_err_set(err, DAIS_ENOMEM, "no memory for the stall timer");
            goto fail;
        }
    }
    m->grace_poll = evtimer_new(m->base, grace_poll_cb, m);
    m->grace_over = evtimer_new(m->base, grace_over_cb, m);
    m->sig_int = evsignal_new(m->base, SIGINT, signal_cb, m);
    m->sig_term = evsignal_new(m->base, SIGTERM, signal_cb, m);
    if (m->grace_poll == NULL || m->grace_over == NULL || m->sig_int == NULL ||
        m->sig_term == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "no memory for the master's events");
        goto fail;
    }
    if (metrics_init(m, err) != 0) goto fail;
    if (cfg->trace_endpoint[0] != '\0') {
        dais_tracer_config tc;
        memset(&tc, 0, sizeof(tc));
        tc.endpoint = cfg->trace_endpoint;
        tc.service_name = "dais-master";
        tc.instance_id = cfg->node_id;
        tc.metrics = m->mx.reg;
        m->tracer = dais_tracer_new(&tc, err);
        if (m->tracer == NULL) goto fail;
    }

    dais_httpd_config hc;
    dais_httpd_config_default(&hc);
    hc.max_body = cfg->body_limit;
    hc.max_conns = cfg->max_connections;
    hc.idle_timeout_ms = cfg->idle_timeout_ms;
    m->api = dais_httpd_new(m->base, &hc, dais_api_handle, m);
    if (m->api == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "no memory for the HTTP server");
        goto fail;
    }
    dais_httpd_set_log_cb(m->api, dais_api_log, m);
    if (dais_httpd_listen(m->api, cfg->http_addr, cfg->http_port, err) != 0) goto fail;
    if (dais_cluster_listen(m, err) != 0) goto fail;
    if (dais_heartbeat_open(m, err) != 0) goto fail;
    if (cfg->metrics_enabled) {
        m->metrics_http = dais_metrics_http_start(m->base, cfg->metrics_addr, cfg->metrics_port,
                                                  &m->mx.reg, 1, err);
        if (m->metrics_http == NULL) goto fail;
    }
    if (cfg->model_dir[0] != '\0' && store_start(m, err) != 0) goto fail;
    if (cfg->k8s_discovery) {
        /* Discovery that cannot start (not in a cluster, unreadable service-account files)
         * does not keep the front door down: the master serves, says why in the log and in
         * /api/cluster, and keeps every worker (as after a failed list). */
        dais_err kerr = {0};
        if (k8s_start(m, &kerr) != 0) {
            DAIS_ERROR("k8s discovery disabled: %s", kerr.msg);
            snprintf(m->k8s_last_error, sizeof(m->k8s_last_error), "config: %s", kerr.msg);
            m->k8s_last_error_wall_s = (uint64_t)time(NULL);
        }
    }
    event_add(m->sig_int, NULL);
    event_add(m->sig_term, NULL);
    DAIS_INFO("master %s: HTTP API on %s:%u, cluster on %s:%u, heartbeats on %s:%u (every %u ms, "
              "dead after %u misses and %.1f s of silence), metrics %s%s:%u",
              cfg->node_id, cfg->http_addr, (unsigned)dais_httpd_port(m->api), cfg->cluster_addr,
              (unsigned)m->cluster_port, cfg->heartbeat_addr, (unsigned)m->hb_port,
              cfg->heartbeat_interval_ms, cfg->heartbeat_misses,
              (double)m->det_cfg.dead_after_ns / 1e9, cfg->metrics_enabled ? "on " : "off",
              cfg->metrics_enabled ? cfg->metrics_addr : "", (unsigned)dais_master_metrics_port(m));
    return m;
fail:
    dais_master_free(m);
    return NULL;
}

int dais_master_run(dais_master *m)
{
    return event_base_dispatch(m->base) < 0 ? DAIS_EINTERNAL : 0;
}

uint16_t dais_master_http_port(const dais_master *m)
{
    return m->api != NULL ? dais_httpd_port(m->api) : 0;
}

uint16_t dais_master_cluster_port(const dais_master *m)
{
    return m->cluster_port;
}

uint16_t dais_master_heartbeat_port(const dais_master *m)
{
    return m->hb_port;
}

uint16_t dais_master_metrics_port(const dais_master *m)
{
    return m->metrics_http != NULL ? dais_metrics_http_port(m->metrics_http) : 0;
}

void dais_master_free(dais_master *m)
{
    if (m == NULL) return;
    m->stopping = true;
    dais_modelstore_stop(m->store); /* joins its threads: transfers in progress are cut */
    m->store = NULL;
    dais_k8s_discovery_stop(m->k8s);
    m->k8s = NULL;
    dais_k8s_podlist_free(m->k8s_pods);
    m->k8s_pods = NULL;
    if (m->reg != NULL) dais_router_shutdown(m);
    dais_httpd_free(m->api);
    if (m->reg != NULL) dais_cluster_close_all(m);
    dais_heartbeat_close(m);
    dais_metrics_http_free(m->metrics_http);
    dais_tracer_free(m->tracer);
    if (m->sig_int != NULL) event_free(m->sig_int);
    if (m->sig_term != NULL) event_free(m->sig_term);
    if (m->grace_poll != NULL) event_free(m->grace_poll);
    if (m->grace_over != NULL) event_free(m->grace_over);
    while (m->reg != NULL && dais_registry_count(m->reg) > 0)
        dais_registry_remove(m->reg, dais_registry_at(m->reg, 0));
    dais_registry_free(m->reg);
    dais_replay_cache_free(m->replay);
    dais_metrics_registry_free(m->mx.reg);
    if (m->base != NULL) event_base_free(m->base);
    free(m);
}
