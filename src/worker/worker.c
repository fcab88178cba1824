/* The worker node: registration, heartbeats, inference frames, drain (worker.h). */
#include "worker/worker.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metric_names.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/procstats.h"
#include "common/trace.h"
#include "engine/model.h"
#include "proto/dgram.h"
#include "proto/frame.h"
#include "proto/messages.h"
#include "worker/modelsync.h"
#include "worker/sched.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Worker-node metrics not in the shared catalogue (common/metric_names.h). */
#define M_REGISTRATIONS    "dais_worker_registrations_total"         /* counter {result} */
#define M_MASTER_CONNECTED "dais_worker_master_connected"            /* gauge 0/1 */
#define M_HEARTBEATS       "dais_worker_heartbeats_total"            /* counter {result} */
#define M_PROTO_ERRORS     "dais_worker_protocol_errors_total"       /* counter {reason} */
#define M_TTFT             "dais_worker_time_to_first_token_seconds" /* histogram */
#define M_REQ_SECONDS      "dais_worker_request_duration_seconds"    /* histogram */

/* Output a slow master may leave unread before the connection is given up. */
#define MAX_PENDING_OUTPUT (256u << 20)
#define WATCHDOG_MS        100

enum conn_state { C_IDLE = 0, C_RESOLVING, C_CONNECTING, C_REGISTERING, C_ACTIVE, C_WAITING };

static const char *const state_names[] = {"idle",        "resolving", "connecting",
                                          "registering", "active",    "waiting"};

/* An in-flight request's span (tracing on only). */
typedef struct req_span {
    char request_id[DAIS_REQUEST_ID_MAX + 1];
    uint64_t owner;
    dais_span *span;
} req_span;

typedef struct worker {
    const dais_worker_config *cfg;
    dais_frame_limits limits;
    struct event_base *base;
    struct evdns_base *dns;
    dais_model *model;
    int32_t layer_first, layer_last; /* layers served: --layers, or the file's range */
    dais_model_info minfo;
    dais_sched *sched;
    int32_t n_ctx;
    int exit_code;

    /* cluster connection */
    enum conn_state state;
    uint64_t conn_gen; /* owner tag of requests from this connection */
    struct bufferevent *bev;
    struct evdns_getaddrinfo_request *dns_req;
    struct evutil_addrinfo *addrs, *addr_next;
    char master_port[8];
    dais_backoff backoff;
    struct event *retry_ev, *wake_ev, *watchdog_ev, *sigterm_ev, *sigint_ev;
    uint64_t register_deadline_ns;
    char master_id[DAIS_NODE_ID_MAX + 1];
    uint32_t consecutive_failures;

    /* heartbeat session */
    dais_auth auth; /* our discovery proof (nonce = worker nonce) */
    uint64_t session_id;
    uint8_t key[DAIS_SESSION_KEY_LEN];
    dais_seq_window win;
    uint64_t tx_seq;
    uint32_t hb_interval_ms;
    uint64_t last_hb_ns;
    evutil_socket_t udp_fd;
    uint16_t hb_port;
    struct event *udp_ev;
    dais_cpu_sample cpu_prev;
    double proc_cpu_prev;
    uint64_t ack_prev_ns, ack_prev_tokens;

    /* drain / shutdown */
    bool draining, shutting_down, exiting;
    uint64_t drain_deadline_ns, exit_deadline_ns;
    bool cancelled_all;

    /* observability */
    dais_metrics_registry *reg;
    dais_metrics_http *metrics_http;
    dais_tracer *tracer;
    req_span *spans; /* (n_spans) */
    int32_t n_spans;
    dais_counter *c_reg_accepted, *c_reg_rejected, *c_reg_failed;
    dais_gauge *g_connected;
    dais_metric_family *f_heartbeats, *f_proto;
    dais_counter *c_hb_ok;
    dais_histogram *h_ttft, *h_req, *h_batch;
    dais_metric_family *f_collect[16];
    int n_collect;
} worker;

static void conn_start(worker *w);
static void conn_close(worker *w, const char *why, bool retry);
static void maybe_exit(worker *w);

/* ---- small helpers ---------------------------------------------------------------------- */

static dais_msg *msg_new(worker *w, enum dais_msg_type t)
{
    return dais_msg_new(t, w->cfg->node_id, w->master_id[0] != '\0' ? w->master_id : "master");
}

static void count_proto_error(worker *w, const char *reason)
{
    const char *v[] = {reason};
    dais_counter_inc(dais_counter_child(w->f_proto, v));
}

/* Sends m over the cluster connection (takes m). False when it could not be queued. */
static bool send_msg(worker *w, dais_msg *m)
{
    bool ok = false;
    if (m != NULL && w->bev != NULL) {
        int rc = dais_frame_write(bufferevent_get_output(w->bev), m, &w->limits);
        if (rc != 0)
            DAIS_ERROR("cannot send %s: %s", dais_msg_type_name(m->type), dais_strerror(rc));
        ok = rc == 0;
    }
    dais_msg_free(m);
    return ok;
}

static void send_error(worker *w, enum dais_perr code, const char *request_id,
                       const char *in_reply_to, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void send_error(worker *w, enum dais_perr code, const char *request_id,
                       const char *in_reply_to, const char *fmt, ...)
{
    dais_msg_error e;
    memset(&e, 0, sizeof(e));
    snprintf(e.code, sizeof(e.code), "%s", dais_perr_name(code));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof(e.message), fmt, ap);
    va_end(ap);
    if (request_id != NULL) snprintf(e.request_id, sizeof(e.request_id), "%s", request_id);
    if (in_reply_to != NULL) snprintf(e.in_reply_to, sizeof(e.in_reply_to), "%s", in_reply_to);
    dais_msg *m = msg_new(w, DAIS_MSG_ERROR);
    if (m != NULL && dais_error_encode(&e, m) != 0) {
        dais_msg_free(m);
        return;
    }
    send_msg(w, m);
}

static uint64_t master_timeout_ns(const worker *w)
{
    uint64_t ms = w->cfg->master_timeout_ms;
    if (ms == 0) {
        ms = 8ull * w->hb_interval_ms;
        if (ms < 2000) ms = 2000;
    }
    return ms * 1000000ull;
}

/* ---- spans ------------------------------------------------------------------------------ */

static void span_begin(worker *w, const dais_msg_infer_req *r)
{
    if (!dais_tracer_enabled(w->tracer)) return;
    dais_trace_ctx parent = {0};
    if (r->traceparent[0] != '\0')
        dais_traceparent_parse(r->traceparent, strlen(r->traceparent), &parent);
    for (int32_t i = 0; i < w->n_spans; i++) {
        req_span *rs = &w->spans[i];
        if (rs->span != NULL) continue;
        rs->span = dais_span_start(w->tracer, "worker.inference", DAIS_SPAN_SERVER, &parent, NULL);
        if (rs->span == NULL) return;
        snprintf(rs->request_id, sizeof(rs->request_id), "%s", r->request_id);
        rs->owner = w->conn_gen;
        dais_span_set_str(rs->span, "dais.request_id", r->request_id);
        dais_span_set_str(rs->span, "dais.node", w->cfg->node_id);
        return;
    }
}

static void span_end(worker *w, const dais_sched_event *ev)
{
    for (int32_t i = 0; w->spans != NULL && i < w->n_spans; i++) {
        req_span *rs = &w->spans[i];
        if (rs->span == NULL || rs->owner != ev->owner ||
            strcmp(rs->request_id, ev->request_id) != 0)
            continue;
        if (ev->kind == DAIS_SEV_FINAL) {
            dais_span_set_str(rs->span, "dais.finish_reason", dais_finish_name(ev->finish));
            dais_span_set_int(rs->span, "dais.prompt_tokens", ev->prompt_tokens);
            dais_span_set_int(rs->span, "dais.completion_tokens", ev->completion_tokens);
            dais_span_set_int(rs->span, "dais.ttft_us", (int64_t)(ev->timings.ttft_ms * 1000));
        }
        bool bad = ev->kind == DAIS_SEV_REJECT || ev->finish == DAIS_FINISH_ERROR;
        dais_span_set_status(rs->span, bad ? DAIS_SPAN_ERROR : DAIS_SPAN_OK,
                             bad ? ev->message : NULL);
        dais_span_end(rs->span);
        rs->span = NULL;
        return;
    }
}

/* ---- scheduler events → frames (loop thread) -------------------------------------------- */

static void send_event(worker *w, const dais_sched_event *ev)
{
    if (ev->kind == DAIS_SEV_REJECT) {
        send_error(w, ev->perr, ev->request_id, NULL, "%s", ev->message);
        return;
    }
    if (ev->kind == DAIS_SEV_HIDDEN || ev->kind == DAIS_SEV_NEXT) {
        /* pipeline: a stage's hidden states, or the last stage's next input token */
        dais_msg_shard a;
        memset(&a, 0, sizeof(a));
        snprintf(a.request_id, sizeof(a.request_id), "%s", ev->request_id);
        a.pos = ev->pos;
        if (ev->kind == DAIS_SEV_HIDDEN) {
            a.kind = DAIS_SHARD_HIDDEN;
            a.n_tokens = ev->n_hidden;
            a.dim = ev->dim;
            a.hidden = ev->hidden;
        } else {
            a.kind = DAIS_SHARD_TOKENS;
            a.n_tokens = ev->n_tokens;
            a.tokens = ev->tokens;
        }
        dais_msg *m = msg_new(w, DAIS_MSG_SHARD_ACTIVATION);
        if (m == NULL || dais_shard_encode(&a, m) != 0) {
            DAIS_ERROR("sequence %s: cannot encode a SHARD_ACTIVATION", ev->request_id);
            dais_msg_free(m);
            return;
        }
        send_msg(w, m);
        return;
    }
    dais_msg_infer_resp r;
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "%s", ev->request_id);
    r.index = ev->index;
    r.text = ev->text != NULL ? ev->text : "";
    r.text_len = ev->text_len;
    r.tokens = ev->tokens;
    r.n_tokens = ev->n_tokens;
    r.prompt_token_ids = ev->kind == DAIS_SEV_PROMPT;
    if (ev->kind == DAIS_SEV_FINAL) {
        r.final = true;
        r.finish = ev->finish;
        r.prompt_tokens = ev->prompt_tokens;
        r.completion_tokens = ev->completion_tokens;
        r.timings = ev->timings;
        if (ev->finish == DAIS_FINISH_ERROR) {
            snprintf(r.error_code, sizeof(r.error_code), "%s",
                     dais_perr_name(ev->perr != DAIS_PERR_NONE ? ev->perr : DAIS_PERR_INTERNAL));
            snprintf(r.error_message, sizeof(r.error_message), "%s", ev->message);
        }
    }
    dais_msg *m = msg_new(w, DAIS_MSG_INFERENCE_RESPONSE);
    if (m == NULL || dais_infer_resp_encode(&r, m) != 0) {
        DAIS_ERROR("request %s: cannot encode a response frame", ev->request_id);
        dais_msg_free(m);
        return;
    }
    send_msg(w, m);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    for (dais_sched_event *ev = dais_sched_poll(w->sched); ev != NULL;) {
        dais_sched_event *next = ev->next;
        if (ev->kind == DAIS_SEV_FINAL) {
            if (ev->timings.ttft_ms > 0)
                dais_histogram_observe(w->h_ttft, ev->timings.ttft_ms / 1e3);
            dais_histogram_observe(w->h_req, ev->timings.total_ms / 1e3);
        }
        if (ev->kind == DAIS_SEV_FINAL || ev->kind == DAIS_SEV_REJECT) span_end(w, ev);
        /* Results of a connection that is gone have nobody to go to (the master fails them
         * over); they are dropped here. */
        if (ev->owner == w->conn_gen && w->state == C_ACTIVE && w->bev != NULL) send_event(w, ev);
        dais_sched_event_release(w->sched, ev);
        ev = next;
    }
    if (w->bev != NULL && evbuffer_get_length(bufferevent_get_output(w->bev)) > MAX_PENDING_OUTPUT)
        conn_close(w, "the master does not read its responses", true);
    maybe_exit(w);
}

/* Engine thread → loop: the one cross-thread door (event_active on a pthreads-enabled base). */
static void sched_wake(void *arg)
{
    worker *w = arg;
    event_active(w->wake_ev, EV_READ, 0);
}

/* ---- frames from the master ------------------------------------------------------------- */

static void handle_accept(worker *w, const dais_msg *m)
{
    dais_msg_accept a;
    dais_err err;
    if (dais_accept_decode(m, &a, &err) != 0) {
        count_proto_error(w, "payload");
        conn_close(w, err.msg, true);
        return;
    }
    if (strcmp(a.node_id, w->cfg->node_id) != 0 ||
        !dais_auth_accept_verify(w->cfg->token, w->cfg->token_len, w->cfg->node_id, w->auth.nonce,
                                 a.master_nonce, a.hmac)) {
        dais_counter_inc(w->c_reg_failed);
        conn_close(w, "NODE_ACCEPT does not prove the cluster token (wrong master or token)", true);
        return;
    }
    snprintf(w->master_id, sizeof(w->master_id), "%s", m->source);
    dais_auth_session_key(w->cfg->token, w->cfg->token_len, w->cfg->node_id, a.master_nonce,
                          w->auth.nonce, w->key);
    w->session_id = a.session_id;
    memset(&w->win, 0, sizeof(w->win));
    w->tx_seq = 0;
    w->hb_interval_ms = a.heartbeat_interval_ms;
    w->last_hb_ns = dais_now_ns();
    w->state = C_ACTIVE;
    w->consecutive_failures = 0;
    dais_backoff_reset(&w->backoff, dais_now_ns());
    dais_counter_inc(w->c_reg_accepted);
    dais_gauge_set(w->g_connected, 1);
    DAIS_INFO("registered with master %s (session %llu, heartbeat every %u ms)", w->master_id,
              (unsigned long long)w->session_id, w->hb_interval_ms);
}

static void handle_reject(worker *w, const dais_msg *m)
{
    dais_msg_reject r;
    dais_err err;
    if (dais_reject_decode(m, &r, &err) != 0) {
        count_proto_error(w, "payload");
        conn_close(w, err.msg, true);
        return;
    }
    dais_counter_inc(w->c_reg_rejected);
    bool transient = r.retry || dais_reject_reason_transient(r.reason);
    DAIS_WARN("master %s rejected this worker: %s (%s)%s", m->source, r.reason_name, r.message,
              transient ? "; will retry" : "; not retrying");
    if (!transient) {
        conn_close(w, "rejected", false);
        w->exit_code = 1;
        event_base_loopexit(w->base, NULL);
        return;
    }
    /* Honour the master's lower bound on the next attempt. */
    conn_close(w, "rejected (transient)", false);
    uint64_t delay = 0;
    if (dais_backoff_next(&w->backoff, dais_now_ns(), &delay) != 0)
        delay = (uint64_t)w->cfg->retry_max_ms * 1000000ull;
    if (delay < (uint64_t)r.retry_after_ms * 1000000ull)
        delay = (uint64_t)r.retry_after_ms * 1000000ull;
    struct timeval tv = {(time_t)(delay / 1000000000ull),
                         (suseconds_t)(delay % 1000000000ull / 1000)};
    w->state = C_WAITING;
    evtimer_add(w->retry_ev, &tv);
}

static void handle_request(worker *w, dais_msg *m)
{
    dais_msg_infer_req r;
    dais_err err;
    if (dais_infer_req_decode(m, &r, &err) != 0) {
        count_proto_error(w, "payload");
        send_error(w, DAIS_PERR_PROTO, NULL, m->id, "INFERENCE_REQUEST: %s", err.msg);
        conn_close(w, err.msg, true);
        return;
    }
    if (r.model[0] != '\0' && strcmp(r.model, w->minfo.name) != 0 &&
        strcmp(r.model, w->minfo.hash) != 0) {
        send_error(w, DAIS_PERR_UNKNOWN_MODEL, r.request_id, m->id,
                   "this worker serves '%s' (sha256 %s), not '%s'", w->minfo.name, w->minfo.hash,
                   r.model);
        dais_infer_req_clear(&r);
        return;
    }
    if (w->draining || w->shutting_down) {
        send_error(w, DAIS_PERR_DRAINING, r.request_id, m->id, "worker is draining");
        dais_infer_req_clear(&r);
        return;
    }
    char id[DAIS_REQUEST_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s", r.request_id);
    enum dais_perr perr;
    char msg[256];
    span_begin(w, &r);
    if (dais_sched_submit(w->sched, &r, w->conn_gen, dais_now_ns(), &perr, msg, sizeof(msg)) != 0) {
        send_error(w, perr, id, m->id, "%s", msg);
        dais_sched_event ev = {.kind = DAIS_SEV_REJECT, .owner = w->conn_gen, .perr = perr};
        snprintf(ev.request_id, sizeof(ev.request_id), "%s", id);
        snprintf(ev.message, sizeof(ev.message), "%s", msg);
        span_end(w, &ev);
        return;
    }
    DAIS_DEBUG("request %s queued", id);
}

/* Pipeline input from the master: the first stage's tokens, or hidden states relayed from the
 * stage before this one. A refusal is an ERROR naming the sequence (the master ends the
 * request's attempt on every stage). */
static void handle_shard(worker *w, dais_msg *m)
{
    dais_msg_shard a;
    dais_err err;
    if (dais_shard_decode(m, &a, &err) != 0) {
        count_proto_error(w, "payload");
        send_error(w, DAIS_PERR_PROTO, NULL, m->id, "SHARD_ACTIVATION: %s", err.msg);
        conn_close(w, err.msg, true);
        return;
    }
    char id[DAIS_REQUEST_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s", a.request_id);
    enum dais_perr perr;
    char msg[256];
    if (dais_sched_shard_input(w->sched, &a, w->conn_gen, dais_now_ns(), &perr, msg, sizeof(msg)) !=
        0)
        send_error(w, perr, id, m->id, "%s", msg);
}

static void handle_drain(worker *w, const dais_msg *m)
{
    dais_msg_drain d;
    dais_err err;
    if (dais_drain_decode(m, &d, &err) != 0) {
        count_proto_error(w, "payload");
        conn_close(w, err.msg, true);
        return;
    }
    DAIS_INFO("master asks this worker to drain (%s, deadline %u ms)", d.reason, d.deadline_ms);
    w->draining = true;
    dais_sched_close_admission(w->sched);
    if (d.deadline_ms > 0) {
        uint64_t dl = dais_now_ns() + (uint64_t)d.deadline_ms * 1000000ull;
        if (w->drain_deadline_ns == 0 || dl < w->drain_deadline_ns) w->drain_deadline_ns = dl;
    }
}

/* Dispatches one message; returns false when the connection was closed. */
static bool dispatch(worker *w, dais_msg *m)
{
    uint64_t gen = w->conn_gen;
    if (strcmp(m->target, w->cfg->node_id) != 0) {
        count_proto_error(w, "target");
        conn_close(w, "a frame addressed to another node", true);
        return false;
    }
    if (w->state == C_REGISTERING) {
        switch (m->type) {
        case DAIS_MSG_NODE_ACCEPT:
            handle_accept(w, m);
            break;
        case DAIS_MSG_NODE_REJECT:
            handle_reject(w, m);
            break;
        case DAIS_MSG_ERROR: {
            dais_msg_error e;
            dais_err err;
            if (dais_error_decode(m, &e, &err) == 0)
                DAIS_WARN("master error during registration: %s: %s", e.code, e.message);
            conn_close(w, "error during registration", true);
            break;
        }
        default:
            count_proto_error(w, "unexpected");
            conn_close(w, "a frame other than NODE_ACCEPT/NODE_REJECT before registration", true);
            break;
        }
        return w->conn_gen == gen && w->bev != NULL;
    }
    switch (m->type) {
    case DAIS_MSG_INFERENCE_REQUEST:
        handle_request(w, m);
        break;
    case DAIS_MSG_SHARD_ACTIVATION:
        handle_shard(w, m);
        break;
    case DAIS_MSG_CANCEL: {
        dais_msg_cancel c;
        dais_err err;
        if (dais_cancel_decode(m, &c, &err) != 0) {
            count_proto_error(w, "payload");
            conn_close(w, err.msg, true);
            break;
        }
        bool found = dais_sched_cancel(w->sched, w->conn_gen, c.request_id);
        DAIS_DEBUG("cancel %s (%s)%s", c.request_id, c.reason, found ? "" : ": not in flight");
        break;
    }
    case DAIS_MSG_DRAIN:
        handle_drain(w, m);
        break;
    case DAIS_MSG_ERROR: {
        dais_msg_error e;
        dais_err err;
        if (dais_error_decode(m, &e, &err) != 0) {
            count_proto_error(w, "payload");
            conn_close(w, err.msg, true);
            break;
        }
        DAIS_WARN("master reports an error: %s: %s%s%s", e.code, e.message,
                  e.request_id[0] ? " request " : "", e.request_id);
        break;
    }
    case DAIS_MSG_NODE_DISCOVERY:
    case DAIS_MSG_NODE_ACCEPT:
    case DAIS_MSG_NODE_REJECT:
    case DAIS_MSG_INFERENCE_RESPONSE:
        count_proto_error(w, "unexpected");
        send_error(w, DAIS_PERR_PROTO, NULL, m->id, "%s is not expected by a worker",
                   dais_msg_type_name(m->type));
        conn_close(w, "unexpected message type", true);
        break;
    default:
        send_error(w, DAIS_PERR_UNSUPPORTED, NULL, m->id, "%s is not implemented by this worker",
                   dais_msg_type_name(m->type));
        break;
    }
    return w->conn_gen == gen && w->bev != NULL;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    worker *w = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        dais_msg *m = NULL;
        dais_err err;
        dais_err_clear(&err);
        int rc = dais_frame_read(in, &w->limits, &m, &err);
        if (rc == DAIS_FRAME_NEED_MORE) return;
        if (rc != 0) {
            unsigned char sample[16];
            ev_ssize_t n = evbuffer_copyout(in, sample, sizeof(sample));
            char hex[40] = "";
            for (ev_ssize_t i = 0; i < n && i < 16; i++)
                snprintf(hex + 2 * i, 3, "%02x", sample[i]);
            count_proto_error(w, rc == DAIS_EPROTO || rc == DAIS_ETOOBIG ? "frame" : "envelope");
            char why[400];
            snprintf(why, sizeof(why), "malformed frame: %s (first bytes %s)", err.msg, hex);
            conn_close(w, why, true);
            return;
        }
        bool alive = dispatch(w, m);
        dais_msg_free(m);
        if (!alive) return;
    }
}

/* ---- connection lifecycle --------------------------------------------------------------- */

static void schedule_retry(worker *w)
{
    if (w->shutting_down) {
        w->state = C_IDLE;
        maybe_exit(w);
        return;
    }
    uint64_t delay = 0;
    if (dais_backoff_next(&w->backoff, dais_now_ns(), &delay) != 0)
        delay = (uint64_t)w->cfg->retry_max_ms * 1000000ull;
    struct timeval tv = {(time_t)(delay / 1000000000ull),
                         (suseconds_t)(delay % 1000000000ull / 1000)};
    w->state = C_WAITING;
    evtimer_add(w->retry_ev, &tv);
    DAIS_DEBUG("next attempt to reach the master in %.0f ms", (double)delay / 1e6);
}

/* Drops the connection and everything that came over it; retry = reconnect with backoff. */
static void conn_close(worker *w, const char *why, bool retry)
{
    bool was_active = w->state == C_ACTIVE;
    DAIS_DEBUG("closing the cluster connection while %s", state_names[w->state]);
    if (w->bev != NULL) {
        /* One non-blocking write of what is queued (an ERROR explaining the close, final
         * frames), then the socket goes; a peer that does not read loses the rest. */
        struct evbuffer *out = bufferevent_get_output(w->bev);
        evutil_socket_t fd = bufferevent_getfd(w->bev);
        if (fd >= 0 && evbuffer_get_length(out) > 0 && w->state >= C_REGISTERING)
            evbuffer_write(out, fd);
        bufferevent_free(w->bev);
        w->bev = NULL;
    }
    if (w->dns_req != NULL) {
        evdns_getaddrinfo_cancel(w->dns_req);
        w->dns_req = NULL;
    }
    if (w->addrs != NULL) {
        evutil_freeaddrinfo(w->addrs);
        w->addrs = w->addr_next = NULL;
    }
    int n = dais_sched_cancel_owner(w->sched, w->conn_gen);
    w->conn_gen++; /* late results of the old connection are dropped */
    w->session_id = 0;
    w->master_id[0] = '\0';
    dais_gauge_set(w->g_connected, 0);
    if (was_active)
        DAIS_WARN("lost the master: %s%s", why,
                  n > 0 ? "; cancelled the requests it had sent" : "");
    else if (why != NULL) {
        /* A long outage should not flood the log: the first attempts, then every 20th. */
        uint32_t k = w->consecutive_failures;
        dais_log(k < 3 || k % 20 == 0 ? DAIS_LOG_INFO : DAIS_LOG_DEBUG,
                 "cannot register with the master at %s:%u: %s (attempt %u)", w->cfg->master_host,
                 w->cfg->master_port, why, k + 1);
    }
    if (!was_active) w->consecutive_failures++;
    w->state = C_IDLE;
    if (retry) schedule_retry(w);
}

static void send_discovery(worker *w)
{
    dais_msg_discovery d;
    memset(&d, 0, sizeof(d));
    snprintf(d.node_id, sizeof(d.node_id), "%s", w->cfg->node_id);
    d.protocol_version = DAIS_PROTO_VERSION;
    snprintf(d.addr, sizeof(d.addr), "%s", w->cfg->advertise);
    d.heartbeat_port = w->hb_port;
    d.metrics_port = w->metrics_http != NULL ? dais_metrics_http_port(w->metrics_http) : 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    d.cores = ncpu >= 1 && ncpu <= 65536 ? (int32_t)ncpu : 1;
    d.threads = w->cfg->threads;
    dais_sys_stats ss;
    dais_cpu_sample tmp = w->cpu_prev;
    if (dais_sysstats_read(&tmp, &ss) == 0) {
        d.memory_total = ss.mem_total_bytes;
        d.memory_available = ss.mem_available_bytes;
    }
    d.simd = dais_simd_detect();
    d.model = w->minfo;
    d.n_ctx = w->n_ctx;
    d.slots = w->cfg->slots;
    d.batch = w->cfg->batch < w->cfg->slots ? w->cfg->slots : w->cfg->batch;
    d.queue = w->cfg->queue;
    if (dais_auth_make_discovery(w->cfg->token, w->cfg->token_len, w->cfg->node_id, dais_wall_ms(),
                                 &w->auth) != 0) {
        conn_close(w, "no randomness for the nonce", true);
        return;
    }
    d.auth = w->auth;
    dais_msg *m = msg_new(w, DAIS_MSG_NODE_DISCOVERY);
    if (m == NULL || dais_discovery_encode(&d, m) != 0) {
        dais_msg_free(m);
        conn_close(w, "cannot encode NODE_DISCOVERY", true);
        return;
    }
    if (!send_msg(w, m)) {
        conn_close(w, "cannot send NODE_DISCOVERY", true);
        return;
    }
    w->state = C_REGISTERING;
    w->register_deadline_ns = dais_now_ns() + (uint64_t)w->cfg->register_timeout_ms * 1000000ull;
}

static void try_next_addr(worker *w);

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    worker *w = arg;
    if (what & BEV_EVENT_CONNECTED) {
        evutil_socket_t fd = bufferevent_getfd(w->bev);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        int idle = 10, intvl = 5, cnt = 3;
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        if (w->addrs != NULL) {
            evutil_freeaddrinfo(w->addrs);
            w->addrs = w->addr_next = NULL;
        }
        bufferevent_enable(w->bev, EV_READ | EV_WRITE);
        send_discovery(w);
        return;
    }
    if (w->state == C_CONNECTING && (what & BEV_EVENT_ERROR)) {
        int e = EVUTIL_SOCKET_ERROR();
        DAIS_DEBUG("connect to the master failed: %s", evutil_socket_error_to_string(e));
        bufferevent_free(w->bev);
        w->bev = NULL;
        try_next_addr(w);
        return;
    }
    char why[160];
    if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof(why), "the master closed the connection");
    else
        snprintf(why, sizeof(why), "connection error: %s",
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    conn_close(w, why, true);
}

/* Connects to the next resolved address; when none is left, backs off. */
static void try_next_addr(worker *w)
{
    while (w->addr_next != NULL) {
        struct evutil_addrinfo *ai = w->addr_next;
        w->addr_next = ai->ai_next;
        w->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (w->bev == NULL) break;
        bufferevent_setcb(w->bev, on_read, NULL, on_event, w);
        w->state = C_CONNECTING;
        if (bufferevent_socket_connect(w->bev, ai->ai_addr, (int)ai->ai_addrlen) == 0) return;
        bufferevent_free(w->bev);
        w->bev = NULL;
    }
    conn_close(w, "no address of the master accepts connections", true);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    worker *w = arg;
    if (result == EVUTIL_EAI_CANCEL) return; /* conn_close cancelled it; w may be shutting down */
    w->dns_req = NULL;
    if (result != 0) {
        if (res != NULL) evutil_freeaddrinfo(res);
        char why[300];
        snprintf(why, sizeof(why), "cannot resolve '%s': %s", w->cfg->master_host,
                 evutil_gai_strerror(result));
        conn_close(w, why, true);
        return;
    }
    w->addrs = w->addr_next = res;
    try_next_addr(w);
}

static void conn_start(worker *w)
{
    if (w->shutting_down || w->state != C_IDLE) return;
    w->conn_gen++;
    w->state = C_RESOLVING;
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
    /* May call on_resolved before returning (numeric addresses, /etc/hosts). */
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(w->dns, w->cfg->master_host, w->master_port, &hints, on_resolved, w);
    if (w->state == C_RESOLVING) w->dns_req = req;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    if (w->state == C_WAITING) w->state = C_IDLE;
    conn_start(w);
}

/* ---- heartbeats (UDP) ------------------------------------------------------------------- */

static void count_hb(worker *w, const char *result)
{
    const char *v[] = {result};
    dais_counter_inc(dais_counter_child(w->f_heartbeats, v));
}

static void fill_ack(worker *w, dais_msg_heartbeat_ack *a)
{
    uint64_t now = dais_now_ns();
    dais_sys_stats ss;
    if (dais_sysstats_read(&w->cpu_prev, &ss) == 0) {
        a->sys.cpu_percent = ss.cpu_percent < 0 ? 0 : ss.cpu_percent > 100 ? 100 : ss.cpu_percent;
        a->sys.mem_total = ss.mem_total_bytes;
        a->sys.mem_used = ss.mem_used_bytes;
        a->sys.load1 = ss.load1 < 0 ? 0 : ss.load1;
        a->sys.load5 = ss.load5 < 0 ? 0 : ss.load5;
        a->sys.load15 = ss.load15 < 0 ? 0 : ss.load15;
    }
    dais_proc_stats ps;
    if (dais_procstats_self(&ps) == 0) {
        a->sys.process_rss = ps.rss_bytes;
        if (w->ack_prev_ns != 0 && now > w->ack_prev_ns && ps.cpu_seconds >= w->proc_cpu_prev) {
            double wall = (double)(now - w->ack_prev_ns) / 1e9;
            a->sys.process_cpu_percent = 100.0 * (ps.cpu_seconds - w->proc_cpu_prev) / wall;
        }
        w->proc_cpu_prev = ps.cpu_seconds;
    }
    dais_sched_stats st;
    dais_sched_get_stats(w->sched, &st);
    a->load.queue_depth = st.queue_depth;
    a->load.active = st.active;
    a->load.slots = st.slots;
    a->load.kv_used = st.kv_used;
    a->load.kv_total = st.kv_total;
    a->load.requests_total = st.requests_total;
    a->load.tokens_total = st.decode_tokens_total;
    if (w->ack_prev_ns != 0 && now > w->ack_prev_ns && st.decode_tokens_total >= w->ack_prev_tokens)
        a->load.tokens_per_s = (double)(st.decode_tokens_total - w->ack_prev_tokens) /
                               ((double)(now - w->ack_prev_ns) / 1e9);
    w->ack_prev_tokens = st.decode_tokens_total;
    w->ack_prev_ns = now;
    snprintf(a->health, sizeof(a->health), "%s",
             w->draining || w->shutting_down ? "draining" : "ok");
}

static void handle_datagram(worker *w, const uint8_t *buf, size_t len, const struct sockaddr *from,
                            socklen_t from_len)
{
    uint64_t sid, seq;
    enum dais_dgram_verdict v = dais_dgram_peek(buf, len, &sid, &seq);
    if (v != DAIS_DGRAM_OK) {
        count_hb(w, dais_dgram_verdict_name(v));
        return;
    }
    if (w->state != C_ACTIVE || sid != w->session_id) {
        count_hb(w, dais_dgram_verdict_name(DAIS_DGRAM_UNKNOWN_SESSION));
        return;
    }
    dais_msg *m = NULL;
    dais_err err;
    v = dais_dgram_open(buf, len, w->key, &w->win, &m, &seq, &err);
    if (v != DAIS_DGRAM_OK) {
        count_hb(w, dais_dgram_verdict_name(v));
        DAIS_DEBUG("heartbeat datagram dropped: %s", err.msg);
        return;
    }
    dais_msg_heartbeat hb;
    if (m->type != DAIS_MSG_HEARTBEAT || strcmp(m->target, w->cfg->node_id) != 0 ||
        dais_heartbeat_decode(m, &hb, &err) != 0) {
        count_hb(w, dais_dgram_verdict_name(DAIS_DGRAM_BAD_ENVELOPE));
        dais_msg_free(m);
        return;
    }
    dais_msg_free(m);
    count_hb(w, "ok");
    w->last_hb_ns = dais_now_ns();
    w->hb_interval_ms = hb.interval_ms;
    dais_msg_heartbeat_ack a;
    memset(&a, 0, sizeof(a));
    a.echo_seq = seq;
    a.echo_sent_ms = hb.sent_ms;
    fill_ack(w, &a);
    dais_msg *ack = msg_new(w, DAIS_MSG_HEARTBEAT_ACK);
    uint8_t out[DAIS_DGRAM_MAX];
    size_t n = 0;
    if (ack == NULL || dais_heartbeat_ack_encode(&a, ack) != 0 ||
        dais_dgram_seal(ack, w->session_id, ++w->tx_seq, w->key, out, sizeof(out), &n) != 0) {
        DAIS_ERROR("cannot build a HEARTBEAT_ACK");
        dais_msg_free(ack);
        return;
    }
    dais_msg_free(ack);
    if (sendto(w->udp_fd, out, n, MSG_DONTWAIT, from, from_len) < 0)
        DAIS_DEBUG("HEARTBEAT_ACK not sent: %s", strerror(errno));
}

static void on_udp(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    /* A bounded number per wake-up so a flood cannot starve the rest of the loop. */
    for (int i = 0; i < 64; i++) {
        uint8_t buf[DAIS_DGRAM_MAX + 1];
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n =
            recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC, (struct sockaddr *)&from, &fl);
        if (n < 0) return;
        size_t len = (size_t)n > sizeof(buf) ? DAIS_DGRAM_MAX + 1 : (size_t)n; /* truncated */
        handle_datagram(w, buf, len, (struct sockaddr *)&from, fl);
    }
}

static int udp_open(worker *w, dais_err *err)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", w->cfg->heartbeat_port);
    int rc = getaddrinfo(w->cfg->addr, port, &hints, &res);
    if (rc != 0)
        return dais_err_set(err, DAIS_EINVAL, "--addr '%s' is not a numeric address: %s",
                            w->cfg->addr, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        freeaddrinfo(res);
        return dais_err_set(err, DAIS_EIO, "cannot bind the heartbeat port %s:%u: %s", w->cfg->addr,
                            w->cfg->heartbeat_port, strerror(e));
    }
    freeaddrinfo(res);
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        int e = errno;
        close(fd);
        return dais_err_set(err, DAIS_EIO, "cannot read the heartbeat socket's address: %s",
                            strerror(e));
    }
    w->hb_port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                : ((struct sockaddr_in *)&sa)->sin_port);
    w->udp_fd = fd;
    w->udp_ev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_udp, w);
    if (w->udp_ev == NULL || event_add(w->udp_ev, NULL) != 0)
        return dais_err_set(err, DAIS_ENOMEM, "cannot watch the heartbeat socket");
    return 0;
}

/* ---- timers, signals, shutdown ---------------------------------------------------------- */

static void maybe_exit(worker *w)
{
    if (!w->shutting_down) return;
    uint64_t now = dais_now_ns();
    if (!w->exiting) {
        if (dais_sched_in_flight(w->sched) > 0 && now < w->drain_deadline_ns) return;
        if (dais_sched_in_flight(w->sched) > 0 && !w->cancelled_all) {
            DAIS_WARN("drain deadline passed: cancelling %d requests",
                      dais_sched_in_flight(w->sched));
            dais_sched_cancel_all(w->sched);
            w->cancelled_all = true;
            w->drain_deadline_ns = now + 2000000000ull; /* time for their final frames */
            return;
        }
        w->exiting = true;
        w->exit_deadline_ns = now + 2000000000ull;
    }
    /* Let the final frames reach the master, but never wait long for a stuck peer. */
    bool flushed = w->bev == NULL || evbuffer_get_length(bufferevent_get_output(w->bev)) == 0;
    if (flushed || now >= w->exit_deadline_ns) {
        DAIS_INFO("drained; exiting");
        event_base_loopexit(w->base, NULL);
    }
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    uint64_t now = dais_now_ns();
    if (w->state == C_REGISTERING && now >= w->register_deadline_ns) {
        char why[64];
        snprintf(why, sizeof(why), "no NODE_ACCEPT within %u ms", w->cfg->register_timeout_ms);
        conn_close(w, why, true);
    } else if (w->state == C_ACTIVE && now - w->last_hb_ns > master_timeout_ns(w)) {
        char why[96];
        snprintf(why, sizeof(why), "no heartbeat for %.1f s", (double)(now - w->last_hb_ns) / 1e9);
        conn_close(w, why, true);
    }
    if (w->draining && !w->cancelled_all && w->drain_deadline_ns != 0 &&
        now >= w->drain_deadline_ns && !w->shutting_down) {
        int n = dais_sched_cancel_all(w->sched);
        if (n > 0) DAIS_WARN("drain deadline passed: cancelled %d requests", n);
        w->cancelled_all = true;
    }
    maybe_exit(w);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    if (w->shutting_down) {
        DAIS_WARN("second signal: exiting now");
        event_base_loopexit(w->base, NULL);
        return;
    }
    DAIS_INFO("%s: draining (up to %u ms), then exiting", sig == SIGTERM ? "SIGTERM" : "SIGINT",
              w->cfg->drain_timeout_ms);
    w->shutting_down = true;
    w->draining = true;
    dais_sched_close_admission(w->sched);
    w->drain_deadline_ns = dais_now_ns() + (uint64_t)w->cfg->drain_timeout_ms * 1000000ull;
    if (w->state == C_ACTIVE) {
        dais_msg_drain d = {.deadline_ms = w->cfg->drain_timeout_ms};
        snprintf(d.reason, sizeof(d.reason), "shutdown");
        dais_msg *m = msg_new(w, DAIS_MSG_DRAIN);
        if (m != NULL && dais_drain_encode(&d, m) == 0)
            send_msg(w, m);
        else
            dais_msg_free(m);
    } else {
        /* Not registered: nothing to drain for; stop trying. */
        evtimer_del(w->retry_ev);
        if (w->state != C_ACTIVE && w->state != C_IDLE) conn_close(w, NULL, false);
    }
    maybe_exit(w);
}

/* ---- metrics ---------------------------------------------------------------------------- */

static void collect_requests(void *arg, dais_metric_sink *sink)
{
    worker *w = arg;
    dais_sched_stats st;
    dais_sched_get_stats(w->sched, &st);
    const char *ok[] = {"ok"}, *er[] = {"error"}, *ca[] = {"cancelled"}, *rj[] = {"rejected"};
    dais_metric_sink_emit(sink, ok, (double)st.requests_ok);
    dais_metric_sink_emit(sink, er, (double)st.requests_error);
    dais_metric_sink_emit(sink, ca, (double)st.requests_cancelled);
    dais_metric_sink_emit(sink, rj, (double)st.requests_rejected);
}

#define SCALAR_COLLECTOR(fn, expr)                                                                 \
    static void fn(void *arg, dais_metric_sink *sink)                                              \
    {                                                                                              \
        worker *w = arg;                                                                           \
        dais_sched_stats st;                                                                       \
        dais_sched_get_stats(w->sched, &st);                                                       \
        dais_metric_sink_emit(sink, NULL, (double)(expr));                                         \
    }
SCALAR_COLLECTOR(collect_prefill, st.prefill_tokens_total)
SCALAR_COLLECTOR(collect_decode, st.decode_tokens_total)
SCALAR_COLLECTOR(collect_prefill_tps, st.last_prefill_tps)
SCALAR_COLLECTOR(collect_decode_tps, st.last_decode_tps)
SCALAR_COLLECTOR(collect_active, st.active)
SCALAR_COLLECTOR(collect_queue, st.queue_depth)
SCALAR_COLLECTOR(collect_kv_ratio, st.kv_total > 0 ? (double)st.kv_used / (double)st.kv_total : 0)
SCALAR_COLLECTOR(collect_kv_bytes, (double)st.kv_used *(double)st.kv_bytes_per_pos)
SCALAR_COLLECTOR(collect_engine_errors, st.engine_errors)

static void add_collector(worker *w, enum dais_metric_type t, const char *name, const char *help,
                          size_t n_labels, const char *const *labels, dais_metric_collect_fn fn)
{
    dais_metric_family *f =
        dais_metrics_collector_new(w->reg, t, name, help, n_labels, labels, fn, w);
    if (f != NULL && w->n_collect < (int)(sizeof(w->f_collect) / sizeof(w->f_collect[0])))
        w->f_collect[w->n_collect++] = f;
}

static void metrics_setup(worker *w, double load_seconds)
{
    w->reg = dais_metrics_registry_new();
    if (w->reg == NULL) return;
    char simd[128] = "";
    uint32_t f = dais_simd_detect();
    const char *names[] = {"sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "neon"};
    for (int i = 0; i < 7; i++)
        if (f & (1u << i))
            snprintf(simd + strlen(simd), sizeof(simd) - strlen(simd), "%s%s", simd[0] ? "," : "",
                     names[i]);
    dais_metrics_register_standard(w->reg, simd);
    const char *result[] = {"result"}, *reason[] = {"reason"};
    dais_metric_family *reg = dais_metrics_family_new(
        w->reg, DAIS_METRIC_COUNTER, M_REGISTRATIONS,
        "Registration attempts with the master by result", 1, result, 0, NULL);
    const char *acc[] = {"accepted"}, *rej[] = {"rejected"}, *fail[] = {"failed"};
    w->c_reg_accepted = dais_counter_child(reg, acc);
    w->c_reg_rejected = dais_counter_child(reg, rej);
    w->c_reg_failed = dais_counter_child(reg, fail);
    w->g_connected =
        dais_gauge_new(w->reg, M_MASTER_CONNECTED, "1 while registered with a master, else 0");
    w->f_heartbeats = dais_metrics_family_new(
        w->reg, DAIS_METRIC_COUNTER, M_HEARTBEATS,
        "Heartbeat datagrams received: ok, or the reason they were dropped", 1, result, 0, NULL);
    w->f_proto = dais_metrics_family_new(w->reg, DAIS_METRIC_COUNTER, M_PROTO_ERRORS,
                                         "Malformed or unexpected frames from the master", 1,
                                         reason, 0, NULL);
    w->h_ttft = dais_histogram_new(w->reg, M_TTFT, "Receipt to first generated token",
                                   dais_buckets_latency_n, dais_buckets_latency);
    w->h_req = dais_histogram_new(w->reg, M_REQ_SECONDS, "Receipt to final frame, per request",
                                  dais_buckets_latency_n, dais_buckets_latency);
    static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    w->h_batch = dais_histogram_new(w->reg, DAIS_M_WORKER_BATCH_SIZE,
                                    "Sequences per batched forward pass", 9, batch_bounds);
    dais_gauge_set(
        dais_gauge_new(w->reg, DAIS_M_WORKER_MODEL_LOAD, "Seconds the last model load took"),
        load_seconds);
    add_collector(w, DAIS_METRIC_COUNTER, DAIS_M_WORKER_REQUESTS,
                  "Inference requests finished by result", 1, result, collect_requests);
    add_collector(w, DAIS_METRIC_COUNTER, DAIS_M_WORKER_PREFILL_TOKENS, "Prompt tokens processed",
                  0, NULL, collect_prefill);
    add_collector(w, DAIS_METRIC_COUNTER, DAIS_M_WORKER_DECODE_TOKENS, "Tokens generated", 0, NULL,
                  collect_decode);
    add_collector(w, DAIS_METRIC_GAUGE, DAIS_M_WORKER_PREFILL_TPS,
                  "Prompt tokens per second of the last step with prefill", 0, NULL,
                  collect_prefill_tps);
    add_collector(w, DAIS_METRIC_GAUGE, DAIS_M_WORKER_DECODE_TPS,
                  "Generated tokens per second of the last decode step", 0, NULL,
                  collect_decode_tps);
    add_collector(w, DAIS_METRIC_GAUGE, DAIS_M_WORKER_ACTIVE_SEQS, "Sequences in slots", 0, NULL,
                  collect_active);
    add_collector(w, DAIS_METRIC_GAUGE, DAIS_M_WORKER_QUEUE_DEPTH, "Requests waiting for a slot", 0,
                  NULL, collect_queue);
    add_collector(w, DAIS_METRIC_GAUGE, DAIS_M_WORKER_KV_USED_RATIO,
                  "KV-cache positions in use / capacity", 0, NULL, collect_kv_ratio);
    add_collector(w, DAIS_METRIC_GAUGE, DAIS_M_WORKER_KV_USED_BYTES,
                  "KV-cache bytes holding live positions", 0, NULL, collect_kv_bytes);
    add_collector(w, DAIS_METRIC_COUNTER, DAIS_M_WORKER_ENGINE_ERRORS,
                  "Engine errors (forward pass, detokenizer, allocation)", 0, NULL,
                  collect_engine_errors);
}

/* ---- run -------------------------------------------------------------------------------- */

static void model_info(worker *w, const char *path)
{
    const dais_hparams *hp = dais_model_hparams(w->model);
    dais_model_info *mi = &w->minfo;
    memset(mi, 0, sizeof(*mi));
    if (hp->name[0] != '\0') {
        snprintf(mi->name, sizeof(mi->name), "%s", hp->name);
    } else {
        const char *b = strrchr(path, '/');
        snprintf(mi->name, sizeof(mi->name), "%.128s", b != NULL ? b + 1 : path);
        char *dot = strrchr(mi->name, '.');
        if (dot != NULL && strcmp(dot, ".gguf") == 0) *dot = '\0';
    }
    /* The SOURCE model's hash for a shard file: stages are chained by the model they come
     * from, whether they hold the whole file or a shard file of it. */
    const char *h = dais_model_source_hash(w->model);
    snprintf(mi->hash, sizeof(mi->hash), "%s", h != NULL ? h : "");
    mi->n_vocab = hp->n_vocab;
    mi->n_layers = hp->n_layers;
    mi->layer_first = w->layer_first;
    mi->layer_last = w->layer_last;
    mi->n_ctx_train = hp->n_ctx_train;
}

int dais_worker_run(const dais_worker_config *cfg)
{
    worker wk;
    worker *w = &wk;
    memset(w, 0, sizeof(*w));
    w->cfg = cfg;
    w->udp_fd = -1;
    w->exit_code = 1;
    w->limits.max_json = cfg->max_frame_json;
    w->limits.max_bin = cfg->max_frame_bin;
    w->hb_interval_ms = 5000;
    snprintf(w->master_port, sizeof(w->master_port), "%u", cfg->master_port);
    dais_log_init(cfg->node_id, cfg->log_level, cfg->log_format);
    signal(SIGPIPE, SIG_IGN);
    dais_err err;
    dais_err_clear(&err);

    /* --pull-model: the file comes from the master's sync port first (worker/modelsync.h). */
    char pulled[sizeof(cfg->model)];
    const char *model_path = cfg->model;
    if (cfg->pull_model[0] != '\0') {
        if (dais_modelsync_pull(cfg, pulled, sizeof(pulled), &err) != 0) {
            DAIS_ERROR("cannot get the model '%s' from the master: %s", cfg->pull_model, err.msg);
            return 1;
        }
        model_path = pulled;
    }

    uint64_t t0 = dais_now_ns();
    w->model = dais_model_load_any(model_path, &err);
    if (w->model == NULL) {
        DAIS_ERROR("cannot load the model %s: %s", model_path, err.msg);
        return 1;
    }
    double load_s = (double)(dais_now_ns() - t0) / 1e9;
    const dais_hparams *hp = dais_model_hparams(w->model);
    /* The layers served: --layers, else the whole model; a shard file serves its own range,
     * and --layers, when given, must name exactly that range. */
    int32_t file_first, file_last;
    bool shard_file = dais_model_layer_range(w->model, &file_first, &file_last);
    w->layer_first = cfg->layer_last > 0 ? cfg->layer_first : file_first;
    w->layer_last = cfg->layer_last > 0 ? cfg->layer_last : file_last;
    if (shard_file && (w->layer_first != file_first || w->layer_last != file_last)) {
        DAIS_ERROR("--layers %d:%d: %s is a shard file holding only layers %d:%d of %d; serve "
                   "that range (omit --layers) or use the whole model file",
                   cfg->layer_first, cfg->layer_last, model_path, file_first, file_last,
                   hp->n_layers);
        dais_model_free(w->model);
        return 1;
    }
    model_info(w, model_path);
    w->n_ctx = cfg->ctx > 0 ? cfg->ctx : (hp->n_ctx_train < 2048 ? hp->n_ctx_train : 2048);
    if (w->n_ctx > hp->n_ctx_train) {
        DAIS_ERROR("--ctx %d is larger than the model's context %d", w->n_ctx, hp->n_ctx_train);
        dais_model_free(w->model);
        return 1;
    }
    if (cfg->layer_last > hp->n_layers) {
        DAIS_ERROR("--layers %d:%d: the model has %d layers", cfg->layer_first, cfg->layer_last,
                   hp->n_layers);
        dais_model_free(w->model);
        return 1;
    }
    DAIS_INFO("loaded %s (%s, sha256 %.12s…, %d layers, vocab %d) in %.2f s", model_path,
              w->minfo.name, w->minfo.hash, hp->n_layers, hp->n_vocab, load_s);
    if (shard_file)
        DAIS_INFO("shard file: holds layers [%d, %d) of the model with sha256 %.12s…", file_first,
                  file_last, w->minfo.hash);
    if (w->minfo.layer_first != 0 || w->minfo.layer_last != hp->n_layers)
        DAIS_INFO("pipeline shard: layers [%d, %d) of %d (%s stage)", w->minfo.layer_first,
                  w->minfo.layer_last, hp->n_layers,
                  w->minfo.layer_first == 0             ? "first"
                  : w->minfo.layer_last == hp->n_layers ? "last"
                                                        : "middle");

    if (evthread_use_pthreads() != 0) {
        DAIS_ERROR("libevent has no pthreads support");
        dais_model_free(w->model);
        return 1;
    }
    w->base = event_base_new();
    w->dns = w->base != NULL ? evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                                           EVDNS_BASE_NAMESERVERS_NO_DEFAULT)
                             : NULL;
    if (w->dns == NULL && w->base != NULL) { /* no resolv.conf: names from /etc/hosts only */
        w->dns = evdns_base_new(w->base, 0);
        if (w->dns != NULL) evdns_base_load_hosts(w->dns, NULL);
    }
    if (w->base == NULL || w->dns == NULL) {
        DAIS_ERROR("cannot create the event loop");
        goto done;
    }
    evdns_base_set_option(w->dns, "timeout:", "2");
    evdns_base_set_option(w->dns, "attempts:", "2");
    metrics_setup(w, load_s);
    w->wake_ev = event_new(w->base, -1, 0, on_wake, w);
    w->retry_ev = evtimer_new(w->base, on_retry, w);
    w->watchdog_ev = event_new(w->base, -1, EV_PERSIST, on_watchdog, w);
    w->sigterm_ev = evsignal_new(w->base, SIGTERM, on_signal, w);
    w->sigint_ev = evsignal_new(w->base, SIGINT, on_signal, w);
    if (w->wake_ev == NULL || w->retry_ev == NULL || w->watchdog_ev == NULL ||
        w->sigterm_ev == NULL || w->sigint_ev == NULL) {
        DAIS_ERROR("cannot create loop events");
        goto done;
    }
    struct timeval wd = {0, WATCHDOG_MS * 1000};
    event_add(w->watchdog_ev, &wd);
    event_add(w->sigterm_ev, NULL);
    event_add(w->sigint_ev, NULL);
    if (udp_open(w, &err) != 0) {
        DAIS_ERROR("%s", err.msg);
        goto done;
    }
    if (cfg->metrics_enabled && w->reg != NULL) {
        w->metrics_http = dais_metrics_http_start(w->base, cfg->metrics_addr, cfg->metrics_port,
                                                  &w->reg, 1, &err);
        if (w->metrics_http == NULL) {
            DAIS_ERROR("cannot serve metrics on %s:%u: %s", cfg->metrics_addr, cfg->metrics_port,
                       err.msg);
            goto done;
        }
    }
    if (cfg->trace_endpoint[0] != '\0') {
        dais_tracer_config tc = {.endpoint = cfg->trace_endpoint,
                                 .service_name = "dais-worker",
                                 .instance_id = cfg->node_id,
                                 .metrics = w->reg};
        w->tracer = dais_tracer_new(&tc, &err);
        if (w->tracer == NULL) DAIS_WARN("tracing off: %s", err.msg);
        w->n_spans = cfg->slots + cfg->queue;
        w->spans = calloc((size_t)w->n_spans, sizeof(*w->spans));
        if (w->spans == NULL) w->n_spans = 0;
    }
    dais_sched_config sc = {.n_threads = cfg->threads,
                            .slots = cfg->slots,
                            .n_ctx = w->n_ctx,
                            .batch = cfg->batch,
                            .queue = cfg->queue,
                            .batch_hist = w->h_batch,
                            .layer_first = w->layer_first,
                            .layer_last = w->layer_last};
    w->sched = dais_sched_new(w->model, &sc, sched_wake, w, &err);
    if (w->sched == NULL) {
        DAIS_ERROR("cannot start the engine: %s", err.msg);
        goto done;
    }
    dais_backoff_config bc;
    dais_backoff_config_default(&bc);
    bc.base_ns = (uint64_t)cfg->retry_base_ms * 1000000ull;
    bc.max_ns = (uint64_t)cfg->retry_max_ms * 1000000ull;
    bc.max_attempts = 0;
    bc.deadline_ns = 0;
    bc.jitter = DAIS_BACKOFF_FULL;
    if (dais_backoff_init(&w->backoff, &bc, dais_now_ns(), 0) != 0) {
        DAIS_ERROR("bad retry settings");
        goto done;
    }
    DAIS_INFO("worker %s: heartbeats on udp %s:%u, metrics %s%s%u, %d slots x %d positions, "
              "batch %d, %d threads; master %s:%u",
              cfg->node_id, cfg->addr, w->hb_port, cfg->metrics_enabled ? cfg->metrics_addr : "off",
              cfg->metrics_enabled ? ":" : "",
              w->metrics_http ? dais_metrics_http_port(w->metrics_http) : 0, cfg->slots, w->n_ctx,
              cfg->batch < cfg->slots ? cfg->slots : cfg->batch, cfg->threads, cfg->master_host,
              cfg->master_port);
    w->exit_code = 0;
    conn_start(w);
    event_base_dispatch(w->base);

done:
    if (w->bev != NULL) bufferevent_free(w->bev);
    if (w->dns_req != NULL) evdns_getaddrinfo_cancel(w->dns_req);
    if (w->addrs != NULL) evutil_freeaddrinfo(w->addrs);
    dais_sched_free(w->sched); /* joins the engine thread before the events it wakes go away */
    for (int32_t i = 0; w->spans != NULL && i < w->n_spans; i++)
        dais_span_end(w->spans[i].span);
    free(w->spans);
    dais_tracer_free(w->tracer);
    dais_metrics_http_free(w->metrics_http);
    struct event *evs[] = {w->wake_ev,    w->retry_ev,  w->watchdog_ev,
                           w->sigterm_ev, w->sigint_ev, w->udp_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i] != NULL) event_free(evs[i]);
    if (w->udp_fd >= 0) close(w->udp_fd);
    for (int i = 0; i < w->n_collect; i++)
        dais_metrics_collector_remove(w->reg, w->f_collect[i]);
    dais_metrics_registry_free(w->reg);
    if (w->dns != NULL) evdns_base_free(w->dns, 1);
    if (w->base != NULL) event_base_free(w->base);
    dais_model_free(w->model);
    return w->exit_code;
}
