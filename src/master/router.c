/*
 * Requests through the master: the state machine from an accepted POST /api/inference to its
 * reply.
 *
 *   NEW ──pick──▶ DISPATCHED ──final frame──▶ reply (JSON, or the SSE "done" event)
 *    │              │ ERROR busy/draining: back to routing (bounded attempts)
 *    │              │ worker lost: recover_or_fail — routed again (nothing generated yet)
 *    │              │   or continued elsewhere from prompt + tokens so far (failover)
 *    │              │ client gone: CANCEL to the worker
 *    └─all full─▶ QUEUED ──a slot frees──▶ DISPATCHED        deadline: 504 everywhere
 *                   ▲ worker lost with output and no worker left: waits (bounded) for one to
 *                   │ come back, then continues there; the wait's end is a 503 + Retry-After
 *
 * A request keeps what a continuation elsewhere needs: the prompt's token ids (frame 0 of the
 * worker's answer), every output token id received, its attempts and the worker it ran on.
 * Streamed replies start when the first text arrives, so a request that fails before any
 * output still gets a plain HTTP error status.
 */
#include "master/master_impl.h"

#include "common/clock.h"
#include "common/log.h"
#include "proto/messages.h"

#include <event2/buffer.h>
#include <event2/event.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Dispatches a request may take when workers answer busy or vanish before taking it; an
 * attempt that produced output before its worker failed does not count (progress was made). */
#define MAX_ATTEMPTS 3
/* Output a worker may send for one request beyond max_tokens (the stop-completing token). */
#define OUT_TOKENS_SLACK 16
#define OUT_TEXT_MAX     (64u << 20)
/* How long a request that already has output waits in its model's queue for a worker to come
 * back after every worker serving the model is gone: NO_WORKER_WAIT_BEATS heartbeat intervals
 * (a restarted worker registers and answers its first heartbeat within a few), at least
 * NO_WORKER_WAIT_MIN_MS; its deadline may end the wait sooner. */
#define NO_WORKER_WAIT_BEATS  8u
#define NO_WORKER_WAIT_MIN_MS 2000u

static void route(dais_mreq *r);
static void stage_failed(dais_mreq *r, int32_t i, const char *why);

static double ns_to_ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* ---- bookkeeping ------------------------------------------------------------------------- */

static void update_gauges(dais_master *m)
{
    dais_gauge_set(m->mx.in_flight, (double)m->n_inflight);
    dais_gauge_set(m->mx.queued, (double)m->n_queued);
}

static dais_model_queue *queue_get(dais_master *m, const char *model, bool create)
{
    for (dais_model_queue *q = m->queues; q != NULL; q = q->next)
        if (strcmp(q->model, model) == 0) return q;
    if (!create) return NULL;
    dais_model_queue *q = calloc(1, sizeof(*q));
    if (q == NULL) return NULL;
    snprintf(q->model, sizeof(q->model), "%s", model);
    q->next = m->queues;
    m->queues = q;
    return q;
}

uint32_t dais_router_queued(const dais_master *m, const char *model)
{
    for (const dais_model_queue *q = m->queues; q != NULL; q = q->next)
        if (strcmp(q->model, model) == 0) return q->n;
    return 0;
}

static void queue_unlink(dais_mreq *r)
{
    dais_model_queue *q = r->queue;
    if (q == NULL) return;
    if (q->head == r)
        q->head = r->qnext;
    else if (r->qprev != NULL)
        r->qprev->qnext = r->qnext;
    if (r->qnext != NULL)
        r->qnext->qprev = r->qprev;
    else
        q->tail = r->qprev;
    r->qprev = r->qnext = NULL;
    r->queue = NULL;
    if (r->waiting_worker) {
        event_del(&r->wait_ev);
        r->waiting_worker = false;
    }
    q->n--;
    r->m->n_queued--;
    update_gauges(r->m);
}

static void queue_push(dais_model_queue *q, dais_mreq *r, bool front)
{
    r->queue = q;
    r->state = DAIS_MREQ_QUEUED;
    if (front) {
        r->qprev = NULL;
        r->qnext = q->head;
        if (q->head != NULL)
            q->head->qprev = r;
        else
            q->tail = r;
        q->head = r;
    } else {
        r->qnext = NULL;
        r->qprev = q->tail;
        if (q->tail != NULL)
            q->tail->qnext = r;
        else
            q->head = r;
        q->tail = r;
    }
    q->n++;
    r->m->n_queued++;
    update_gauges(r->m);
}

/* How a request's time on a worker ended, for the worker's circuit breaker: a success, a
 * failure the worker is to blame for (lost, timed out, internal error), or neither (the client
 * left, the worker was merely full, the master is shutting down). */
enum outcome { O_SUCCESS = 0, O_FAILURE, O_NEUTRAL };

static void stall_disarm(dais_mreq *r)
{
    if (r->stall_set) event_del(&r->stall_ev);
}

/* (Re)starts the attempt's stall clock: at dispatch and on every frame from its worker. */
static void stall_arm(dais_mreq *r)
{
    if (r->stall_set) evtimer_add(&r->stall_ev, r->m->stall_tv);
}

/* CANCEL for request (or stage sequence) `id` to w. */
static void cancel_on(dais_master *m, dais_worker *w, const char *id, const char *reason)
{
    dais_msg *msg = dais_msg_new(DAIS_MSG_CANCEL, m->cfg.node_id, w->id);
    if (msg == NULL) return;
    dais_msg_cancel c;
    memset(&c, 0, sizeof(c));
    snprintf(c.request_id, sizeof(c.request_id), "%s", id);
    snprintf(c.reason, sizeof(c.reason), "%s", reason);
    if (dais_cancel_encode(&c, msg) == 0) dais_cluster_send(m, w, msg);
    dais_msg_free(msg);
}

static void stage_link(dais_mreq *r, int32_t i, dais_worker *w, uint64_t ticket)
{
    dais_mstage *st = &r->stages[i];
    st->r = r;
    st->w = w;
    st->ticket = ticket;
    st->blamed = false;
    st->prev = NULL;
    st->next = w->stage_seqs;
    if (w->stage_seqs != NULL) w->stage_seqs->prev = st;
    w->stage_seqs = st;
    w->inflight++;
    w->requests_total++;
}

/* The attempt's pipeline is over: each earlier stage is told to close its sequence (CANCEL)
 * and unlinked; its breaker hears a failure if it is to blame, else the attempt's outcome. */
static void stages_end(dais_mreq *r, enum outcome o)
{
    uint64_t now = dais_now_ns();
    for (int32_t i = 0; i < r->n_stages; i++) {
        dais_mstage *st = &r->stages[i];
        dais_worker *w = st->w;
        if (w == NULL) continue;
        if (w->conn != NULL && !st->blamed)
            cancel_on(r->m, w, r->seq_id, o == O_SUCCESS ? "done" : "attempt_ended");
        enum outcome so = st->blamed ? O_FAILURE : o;
        if (so == O_NEUTRAL)
            dais_breaker_cancel(&w->breaker, st->ticket);
        else
            dais_breaker_record(&w->breaker, now, st->ticket, so == O_SUCCESS);
        if (st->prev != NULL)
            st->prev->next = st->next;
        else
            w->stage_seqs = st->next;
        if (st->next != NULL) st->next->prev = st->prev;
        st->prev = st->next = NULL;
        st->w = NULL;
        if (w->inflight > 0) w->inflight--;
    }
    r->n_stages = 0;
}

static void worker_unlink(dais_mreq *r, enum outcome o)
{
    dais_worker *w = r->worker;
    if (w == NULL) return;
    stall_disarm(r);
    if (r->n_stages > 0) stages_end(r, o == O_FAILURE ? O_NEUTRAL : o);
    if (o == O_NEUTRAL)
        dais_breaker_cancel(&w->breaker, r->ticket);
    else if (dais_breaker_record(&w->breaker, dais_now_ns(), r->ticket, o == O_SUCCESS) ==
                 DAIS_BREAKER_OPEN &&
             o == O_FAILURE)
        DAIS_DEBUG("worker %s: circuit breaker open", w->id);
    if (r->wprev != NULL)
        r->wprev->wnext = r->wnext;
    else
        w->reqs = r->wnext;
    if (r->wnext != NULL) r->wnext->wprev = r->wprev;
    r->wprev = r->wnext = NULL;
    r->worker = NULL;
    if (w->inflight > 0) w->inflight--;
    r->m->n_inflight--;
    update_gauges(r->m);
}

static void worker_link(dais_mreq *r, dais_worker *w)
{
    r->worker = w;
    r->wprev = NULL;
    r->wnext = w->reqs;
    if (w->reqs != NULL) w->reqs->wprev = r;
    w->reqs = r;
    w->inflight++;
    w->requests_total++;
    r->m->n_inflight++;
    update_gauges(r->m);
}

static void req_free(dais_mreq *r)
{
    dais_master *m = r->m;
    queue_unlink(r);
    worker_unlink(r, O_NEUTRAL);
    if (r->http != NULL) {
        /* Every path replies before freeing; this is the last resort. */
        dais_http_req_on_abort(r->http, NULL, NULL);
        dais_api_error_reply(r->http, 500, "internal", "request ended without a reply", NULL);
        r->http = NULL;
    }
    if (r->deadline_set) event_del(&r->deadline_ev);
    if (r->wait_set) event_del(&r->wait_ev);
    stall_disarm(r);
    if (r->text != NULL) evbuffer_free(r->text);
    free(r->prompt_ids);
    free(r->out_ids);
    dais_span_end(r->span);
    dais_api_request_clear(&r->api);
    m->n_requests--;
    free(r);
}

static void send_cancel(dais_mreq *r, const char *reason)
{
    if (r->worker != NULL) cancel_on(r->m, r->worker, r->wid, reason);
}

/* ---- replies ------------------------------------------------------------------------------ */

static void sse_event(dais_mreq *r, const char *event, json_t *data)
{
    char *s = json_dumps(data, JSON_COMPACT);
    json_decref(data);
    if (s == NULL || r->http == NULL) {
        free(s);
        return;
    }
    size_t n = strlen(s);
    struct evbuffer *b = evbuffer_new();
    if (b != NULL) {
        evbuffer_add_printf(b, "event: %s\ndata: ", event);
        evbuffer_add(b, s, n);
        evbuffer_add(b, "\n\n", 2);
        size_t len = evbuffer_get_length(b);
        const void *p = evbuffer_pullup(b, -1);
        if (p != NULL) dais_http_stream_write(r->http, p, len);
        evbuffer_free(b);
    }
    free(s);
}

/* The headers every reply to an inference request carries: its id and its trace (the W3C
 * traceresponse header, so a client can find the request's spans). */
static void id_headers(const dais_mreq *r, char *out, size_t cap)
{
    char tp[DAIS_TRACEPARENT_LEN + 1] = "";
    char trace_id[33] = "";
    if (r->trace.valid && dais_traceparent_format(&r->trace, tp) == 0) {
        dais_trace_id_hex(r->trace.trace_id, trace_id);
        snprintf(out, cap, "X-Request-Id: %s\r\nX-Trace-Id: %s\r\ntraceresponse: %s\r\n", r->id,
                 trace_id, tp);
    } else {
        snprintf(out, cap, "X-Request-Id: %s\r\n", r->id);
    }
}

static bool start_stream(dais_mreq *r)
{
    if (r->stream_started) return true;
    if (r->http == NULL) return false;
    char ids[256], headers[320];
    id_headers(r, ids, sizeof(ids));
    snprintf(headers, sizeof(headers), "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n%s",
             ids);
    if (dais_http_stream_start(r->http, 200, "text/event-stream", headers) != 0) return false;
    r->stream_started = true;
    return true;
}

/* Ends the request with an error: a JSON error reply, or an SSE error event when output has
 * already been streamed. Frees the request. */
static void fail(dais_mreq *r, int status, const char *code, const char *message,
                 const char *headers)
{
    dais_master *m = r->m;
    if (r->span != NULL) {
        dais_span_set_int(r->span, "http.status_code", status);
        dais_span_set_status(r->span, DAIS_SPAN_ERROR, code);
    }
    if (r->http != NULL) {
        dais_http_req_on_abort(r->http, NULL, NULL);
        if (r->stream_started) {
            json_t *e = json_pack("{s:{s:s,s:o,s:i}}", "error", "code", code, "message",
                                  dais_json_text(message, strlen(message)), "status", status);
            if (e != NULL) sse_event(r, "error", e);
            dais_http_stream_end(r->http);
        } else {
            char ids[256], extra[384];
            id_headers(r, ids, sizeof(ids));
            snprintf(extra, sizeof(extra), "%s%s", ids, headers != NULL ? headers : "");
            dais_api_error_reply(r->http, status, code, message, extra);
        }
        r->http = NULL;
    }
    DAIS_DEBUG("request %s failed: %d %s: %s", r->id, status, code, message);
    (void)m;
    req_free(r);
}

static void observe(dais_mreq *r, uint64_t now)
{
    dais_master *m = r->m;
    dais_histogram_observe(m->mx.request_duration, (double)(now - r->t_start_ns) / 1e9);
    double queue_s = (double)(r->t_dispatch_ns - r->t_start_ns) / 1e9 +
                     (isfinite(r->wt.queue_ms) && r->wt.queue_ms > 0 ? r->wt.queue_ms / 1e3 : 0);
    dais_histogram_observe(m->mx.queue_time, queue_s);
    if (r->t_first_ns != 0) {
        dais_histogram_observe(m->mx.ttft, (double)(r->t_first_ns - r->t_start_ns) / 1e9);
        if (r->completion_tokens > 1)
            dais_histogram_observe(m->mx.tpot, (double)(now - r->t_first_ns) / 1e9 /
                                                   (double)(r->completion_tokens - 1));
    }
    if (r->prompt_tokens > 0) dais_counter_add(m->mx.tokens_in, (uint64_t)r->prompt_tokens);
    if (r->completion_tokens > 0)
        dais_counter_add(m->mx.tokens_out, (uint64_t)r->completion_tokens);
}

/* Appends the answer object (without the text for streams) to b. */
static void answer_json(dais_mreq *r, uint64_t now, struct evbuffer *b)
{
    double total = ns_to_ms(now - r->t_start_ns);
    double queue = ns_to_ms(r->t_dispatch_ns - r->t_start_ns) +
                   (isfinite(r->wt.queue_ms) && r->wt.queue_ms > 0 ? r->wt.queue_ms : 0);
    double ttft = r->t_first_ns != 0 ? ns_to_ms(r->t_first_ns - r->t_start_ns) : total;
    evbuffer_add_printf(b, "{\"id\":\"%s\",\"model\":", r->id);
    dais_json_put_str(b, r->model, strlen(r->model));
    if (!r->api.stream) {
        size_t n = evbuffer_get_length(r->text);
        const char *t = n > 0 ? (const char *)evbuffer_pullup(r->text, -1) : "";
        evbuffer_add(b, ",\"text\":", 8);
        dais_json_put_str(b, t != NULL ? t : "", t != NULL ? n : 0);
    }
    evbuffer_add_printf(
        b,
        ",\"finish_reason\":\"%s\",\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,"
        "\"total_tokens\":%d},\"worker\":\"%s\",\"attempts\":%u,\"seed\":%llu,\"timings\":{"
        "\"queue_ms\":%.3f,\"ttft_ms\":%.3f,\"total_ms\":%.3f,\"prefill_ms\":%.3f,"
        "\"decode_ms\":%.3f,\"decode_tokens_per_s\":%.1f}",
        dais_finish_name(r->finish), r->prompt_tokens, r->completion_tokens,
        r->prompt_tokens + r->completion_tokens, r->worker_id, r->attempts,
        (unsigned long long)r->api.params.seed, queue, ttft, total,
        isfinite(r->wt.prefill_ms) ? r->wt.prefill_ms : 0.0,
        isfinite(r->wt.decode_ms) ? r->wt.decode_ms : 0.0,
        isfinite(r->wt.decode_tokens_per_s) ? r->wt.decode_tokens_per_s : 0.0);
    if (r->stage_ids[0] != '\0') /* a pipeline: every stage, in layer order */
        evbuffer_add_printf(b, ",\"stages\":[%s,\"%s\"]", r->stage_ids, r->worker_id);
    evbuffer_add_printf(b, "%s}", r->api.stream ? ",\"done\":true" : "");
}

/* The request finished on its worker: the JSON reply or the SSE "done" event. */
static void succeed(dais_mreq *r)
{
    uint64_t now = dais_now_ns();
    observe(r, now);
    if (r->span != NULL) {
        dais_span_set_str(r->span, "dais.worker", r->worker_id);
        if (r->stage_ids[0] != '\0') dais_span_set_str(r->span, "dais.pipeline", r->stage_ids);
        dais_span_set_int(r->span, "dais.completion_tokens", r->completion_tokens);
        dais_span_set_int(r->span, "http.status_code", 200);
        dais_span_set_status(r->span, DAIS_SPAN_OK, NULL);
    }
    if (r->http != NULL) {
        dais_http_req_on_abort(r->http, NULL, NULL);
        struct evbuffer *b = evbuffer_new();
        if (b == NULL) {
            fail(r, 500, "internal", "out of memory", NULL);
            return;
        }
        if (r->api.stream) {
            if (start_stream(r)) {
                evbuffer_add(b, "event: done\ndata: ", 18);
                answer_json(r, now, b);
                evbuffer_add(b, "\n\n", 2);
                dais_http_stream_write_buffer(r->http, b);
                dais_http_stream_end(r->http);
            }
        } else {
            char headers[256];
            id_headers(r, headers, sizeof(headers));
            answer_json(r, now, b);
            evbuffer_add(b, "\n", 1);
            dais_http_reply_buffer(r->http, 200, "application/json", headers, b);
        }
        evbuffer_free(b);
        r->http = NULL;
    }
    req_free(r);
}

/* ---- routing ------------------------------------------------------------------------------- */

/* A request whose worker failed. With nothing generated yet it is simply routed again.
 * Once output exists it fails over: another worker continues from the prompt's token ids
 * plus every token received (docs/protocol.md, "Failover"), so the client still gets one
 * complete answer — with greedy decoding the same one an undisturbed run gives. With no
 * worker left to continue on, it waits in the model's queue for one to come back (route()).
 * Without the prompt's ids (the worker died before sending them) or attempts left, it fails
 * (503 with Retry-After, or an SSE error event once streaming). */
static void recover_or_fail(dais_mreq *r, const char *why)
{
    char msg[320];
    snprintf(msg, sizeof(msg), "worker %s failed: %s", r->worker_id, why);
    if (r->n_out > r->n_out_at_dispatch) r->productive++; /* it made progress: not a bounce */
    bool can_retry =
        r->attempts < MAX_ATTEMPTS + r->productive && r->http != NULL && !r->m->stopping;
    if (can_retry && r->n_out == 0 && !r->stream_started) {
        DAIS_INFO("request %s: %s; routing it again (nothing generated yet)", r->id, msg);
        dais_counter_inc(r->m->mx.retries);
        route(r);
        return;
    }
    if (can_retry && r->prompt_ids != NULL) {
        if (r->n_out >= r->api.params.max_tokens) {
            /* Every token asked for had arrived: only the final frame was lost. */
            r->finish = DAIS_FINISH_LENGTH;
            r->completion_tokens = r->n_out;
            r->prompt_tokens = r->n_prompt_ids;
            succeed(r);
            return;
        }
        DAIS_INFO("request %s: %s; continuing on another worker after %d tokens", r->id, msg,
                  r->n_out);
        dais_counter_inc(r->m->mx.failovers);
        route(r);
        return;
    }
    /* Workers kept failing under it (each lost before or while serving it): the cluster cannot
     * serve it now, which is a 503 with Retry-After like every other unavailability, not a
     * 502 (no worker answered wrongly). */
    fail(r, 503, "worker_failed", msg, dais_api_retry_after(r->m));
}

/* Sends r to w — a whole-model worker, or the last stage of a pipeline whose earlier stages
 * are stages[0 .. n_stages) (they open their sequences when the prompt's ids reach them). */
static int dispatch(dais_mreq *r, dais_worker *w, dais_worker *const *stages, int32_t n_stages)
{
    dais_master *m = r->m;
    dais_msg *msg = dais_msg_new(DAIS_MSG_INFERENCE_REQUEST, m->cfg.node_id, w->id);
    if (msg == NULL) return DAIS_ENOMEM;
    dais_msg_infer_req q;
    memset(&q, 0, sizeof(q));
    if (r->attempts == 0)
        snprintf(r->wid, sizeof(r->wid), "%s", r->id);
    else
        snprintf(r->wid, sizeof(r->wid), "%s.%u", r->id, r->attempts + 1);
    snprintf(q.request_id, sizeof(q.request_id), "%s", r->wid);
    snprintf(q.model, sizeof(q.model), "%s", r->model);
    q.add_bos = true;
    q.params = r->api.params;
    int32_t *ids = NULL;
    if (r->n_out > 0 && r->prompt_ids != NULL) {
        /* failover: the prompt's ids and the output so far, which the worker continues */
        size_t n = (size_t)r->n_prompt_ids + (size_t)r->n_out;
        ids = malloc(n * sizeof(int32_t));
        if (ids == NULL) {
            dais_msg_free(msg);
            return DAIS_ENOMEM;
        }
        memcpy(ids, r->prompt_ids, (size_t)r->n_prompt_ids * sizeof(int32_t));
        memcpy(ids + r->n_prompt_ids, r->out_ids, (size_t)r->n_out * sizeof(int32_t));
        q.tokens = ids;
        q.n_tokens = (int32_t)n;
        q.n_generated = r->n_out;
        q.params.max_tokens = r->api.params.max_tokens - r->n_out;
    } else {
        q.prompt = r->api.prompt; /* borrowed for the encode */
        q.prompt_len = r->api.prompt_len;
    }
    uint64_t now = dais_now_ns();
    if (m->cfg.request_timeout_ms > 0) {
        uint64_t end = r->t_start_ns + (uint64_t)m->cfg.request_timeout_ms * 1000000ull;
        q.deadline_ms = end > now ? (uint32_t)((end - now + 999999) / 1000000) : 1;
    }
    if (r->trace.valid) dais_traceparent_format(&r->trace, q.traceparent);
    q.pipeline = n_stages > 0;
    int rc = dais_infer_req_encode(&q, msg);
    free(ids);
    if (rc != 0) {
        dais_msg_free(msg);
        return rc == DAIS_ENOMEM ? DAIS_ENOMEM : DAIS_EINVAL; /* the request, not the worker */
    }
    uint64_t tickets[DAIS_MAX_STAGES];
    int32_t allowed = 0;
    while (allowed < n_stages &&
           dais_breaker_allow(&stages[allowed]->breaker, now, &tickets[allowed]))
        allowed++;
    if (allowed < n_stages || !dais_breaker_allow(&w->breaker, now, &r->ticket)) {
        while (allowed > 0) {
            allowed--;
            dais_breaker_cancel(&stages[allowed]->breaker, tickets[allowed]);
        }
        dais_msg_free(msg);
        return DAIS_EAGAIN; /* a half-open breaker with its probes taken */
    }
    rc = dais_cluster_send(m, w, msg);
    dais_msg_free(msg);
    if (rc != 0) {
        dais_breaker_record(&w->breaker, now, r->ticket, false);
        for (int32_t i = 0; i < n_stages; i++)
            dais_breaker_cancel(&stages[i]->breaker, tickets[i]);
        return rc == DAIS_EINVAL ? DAIS_EIO : rc;
    }
    worker_link(r, w);
    if (n_stages > 0) dais_counter_inc(m->mx.pipeline_attempts);
    r->n_stages = n_stages;
    r->waiting_stage = -1;
    r->chunk = w->caps.batch > 0 ? w->caps.batch : 1;
    snprintf(r->seq_id, sizeof(r->seq_id), "%s.%u", r->id, r->attempts + 1);
    size_t used = 0;
    r->stage_ids[0] = '\0';
    for (int32_t i = 0; i < n_stages; i++) {
        stage_link(r, i, stages[i], tickets[i]);
        if (stages[i]->caps.batch > 0 && stages[i]->caps.batch < r->chunk)
            r->chunk = stages[i]->caps.batch;
        int k = snprintf(r->stage_ids + used, sizeof(r->stage_ids) - used, "%s\"%s\"",
                         i > 0 ? "," : "", stages[i]->id);
        if (k > 0 && (size_t)k < sizeof(r->stage_ids) - used) used += (size_t)k;
    }
    r->state = DAIS_MREQ_DISPATCHED;
    r->attempts++;
    r->t_dispatch_ns = now;
    r->next_index = 0;
    r->n_out_at_dispatch = r->n_out;
    snprintf(r->worker_id, sizeof(r->worker_id), "%s", w->id);
    stall_arm(r);
    return 0;
}

/* Balancer filter: the worker holds what is asked for — the whole model (first < 0), or a
 * pipeline shard of the file `hash` starting at layer `first` — and its breaker would admit a
 * request now (not OPEN, and a HALF_OPEN one still has a probe free). */
struct pick_ctx {
    uint64_t now;
    const dais_worker *avoid; /* a worker that just stalled on this request, or NULL */
    int32_t first;            /* -1: a whole-model worker; else a shard starting here */
    const char *hash;         /* shards: the model file's hash */
};

static bool is_whole(const dais_worker *w)
{
    const dais_model_info *mi = &w->caps.model;
    return mi->layer_first == 0 && mi->layer_last == mi->n_layers;
}

static bool breaker_admits(dais_worker *w, void *arg)
{
    const struct pick_ctx *c = arg;
    uint64_t now = c->now;
    if (w == c->avoid) return false;
    if (c->first < 0 ? !is_whole(w)
                     : is_whole(w) || w->caps.model.layer_first != c->first ||
                           strcmp(w->caps.model.hash, c->hash) != 0)
        return false;
    enum dais_breaker_state st = dais_breaker_state_at(&w->breaker, now);
    if (st == DAIS_BREAKER_OPEN) return false;
    return !(w->breaker.state == DAIS_BREAKER_HALF_OPEN &&
             w->breaker.probes_in_flight >= w->breaker.cfg.half_open_probes);
}

/* The wait of a request for a returning worker ended without one: 503 with Retry-After (an
 * SSE error event once streaming). */
static void fail_no_worker(dais_mreq *r, const char *why)
{
    char msg[400];
    snprintf(msg, sizeof(msg),
             "worker %s failed after %d tokens and no worker for model '%s' came back %s",
             r->worker_id, r->n_out, r->model, why);
    fail(r, 503, "no_worker", msg, dais_api_retry_after(r->m));
}

static void wait_cb(evutil_socket_t fd, short what, void *arg)
{
    dais_mreq *r = arg;
    (void)fd;
    (void)what;
    r->waiting_worker = false; /* the timer has fired: nothing to delete */
    fail_no_worker(r, "in time");
}

/* r (QUEUED, with output) waits for a worker of its model to come back: worker_ready serves
 * it from the queue like any queued request; the wait bound (or its deadline) ends it. */
static void wait_for_worker(dais_mreq *r)
{
    if (r->waiting_worker) return;
    if (!r->wait_set) {
        evtimer_assign(&r->wait_ev, r->m->base, wait_cb, r);
        r->wait_set = true;
    }
    uint64_t ms = (uint64_t)r->m->cfg.heartbeat_interval_ms * NO_WORKER_WAIT_BEATS;
    if (ms < NO_WORKER_WAIT_MIN_MS) ms = NO_WORKER_WAIT_MIN_MS;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&r->wait_ev, &tv);
    r->waiting_worker = true;
    DAIS_INFO("request %s: no worker serves model '%s'; waiting up to %llu ms for one to "
              "continue after %d tokens",
              r->id, r->model, (unsigned long long)ms, r->n_out);
}

/* A pipeline for `model`: shards of one model file whose layer ranges chain from 0 to the
 * last layer, each picked by the balancer among the shards that start where the previous one
 * ends. Returns the number of stages (the last is the pipeline's last stage), or 0 with *why
 * (FULL when shards cover the model but one stage is at capacity). */
static int32_t pick_pipeline(dais_master *m, const char *model, const dais_worker *avoid,
                             dais_worker **out, enum dais_pick_result *why)
{
    *why = DAIS_PICK_NONE;
    /* the model files that have shards here (in practice one) */
    const char *hashes[4];
    int n_hashes = 0;
    for (size_t i = 0; i < dais_registry_count(m->reg) && n_hashes < 4; i++) {
        const dais_worker *w = dais_registry_at(m->reg, i);
        if (w->state == DAIS_WORKER_DEAD || is_whole(w) || strcmp(w->caps.model.name, model) != 0)
            continue;
        bool seen = false;
        for (int k = 0; k < n_hashes; k++)
            seen = seen || strcmp(hashes[k], w->caps.model.hash) == 0;
        if (!seen) hashes[n_hashes++] = w->caps.model.hash;
    }
    for (int k = 0; k < n_hashes; k++) {
        int32_t n = 0, layer = 0, n_layers = -1;
        enum dais_pick_result res = DAIS_PICK_OK;
        while (n < DAIS_MAX_STAGES) {
            struct pick_ctx pc = {dais_now_ns(), avoid, layer, hashes[k]};
            dais_worker *w = dais_balancer_pick(&m->bal, m->reg, model, breaker_admits, &pc, &res);
            if (w == NULL) break;
            out[n++] = w;
            layer = w->caps.model.layer_last;
            n_layers = w->caps.model.n_layers;
            if (layer >= n_layers) {
                *why = DAIS_PICK_OK;
                return n;
            }
        }
        if (res == DAIS_PICK_FULL) *why = DAIS_PICK_FULL;
    }
    return 0;
}

/* Where r can go now: a whole-model worker (preferred: no relaying), else a pipeline. Returns
 * the number of workers in *out (1 = whole model; the last is the pipeline's last stage), or 0
 * with *why. */
static int32_t pick_route(dais_master *m, const char *model, const dais_worker *avoid,
                          dais_worker **out, enum dais_pick_result *why)
{
    struct pick_ctx pc = {dais_now_ns(), avoid, -1, NULL};
    out[0] = dais_balancer_pick(&m->bal, m->reg, model, breaker_admits, &pc, why);
    if (out[0] != NULL) return 1;
    enum dais_pick_result why2;
    int32_t n = pick_pipeline(m, model, avoid, out, &why2);
    if (n > 0 || why2 == DAIS_PICK_FULL) *why = why2;
    return n;
}

bool dais_router_model_ready(const dais_master *m, const char *model)
{
    for (size_t i = 0; i < dais_registry_count(m->reg); i++) {
        const dais_worker *w = dais_registry_at(m->reg, i);
        if (w->state == DAIS_WORKER_ACTIVE && is_whole(w) &&
            (model[0] == '\0' || strcmp(w->caps.model.name, model) == 0))
            return true;
    }
    /* a complete chain of active shards: layers reachable from 0 */
    for (size_t i = 0; i < dais_registry_count(m->reg); i++) {
        const dais_worker *s = dais_registry_at(m->reg, i);
        if (s->state != DAIS_WORKER_ACTIVE || is_whole(s) || s->caps.model.layer_first != 0 ||
            (model[0] != '\0' && strcmp(s->caps.model.name, model) != 0))
            continue;
        int32_t reach = s->caps.model.layer_last, n_layers = s->caps.model.n_layers;
        for (bool grew = true; grew && reach < n_layers;) {
            grew = false;
            for (size_t j = 0; j < dais_registry_count(m->reg); j++) {
                const dais_worker *w = dais_registry_at(m->reg, j);
                if (w->state == DAIS_WORKER_ACTIVE && !is_whole(w) &&
                    strcmp(w->caps.model.hash, s->caps.model.hash) == 0 &&
                    w->caps.model.layer_first <= reach && w->caps.model.layer_last > reach) {
                    reach = w->caps.model.layer_last;
                    grew = true;
                }
            }
        }
        if (reach >= n_layers) return true;
    }
    return false;
}

static void route(dais_mreq *r)
{
    dais_master *m = r->m;
    for (;;) {
        if (m->stopping) {
            fail(r, 503, "shutting_down", "the master is shutting down", dais_api_retry_after(m));
            return;
        }
        if (r->attempts >= MAX_ATTEMPTS + r->productive) {
            fail(r, 503, "overloaded", "no worker could take the request", dais_api_retry_after(m));
            return;
        }
        enum dais_pick_result why;
        dais_worker *picked[DAIS_MAX_STAGES];
        int32_t n_picked = pick_route(m, r->model, r->avoid, picked, &why);
        dais_worker *w = n_picked > 0 ? picked[n_picked - 1] : NULL;
        if (w == NULL && r->avoid != NULL && why != DAIS_PICK_FULL) {
            /* nobody else serves it: the silent worker is the only chance (it may resume) */
            r->avoid = NULL;
            continue;
        }
        r->avoid = NULL;
        if (w != NULL) {
            int rc = dispatch(r, w, picked, n_picked - 1);
            if (rc == 0) return;
            if (rc == DAIS_EINVAL || rc == DAIS_ENOMEM) {
                fail(r, 500, "internal", "the request could not be encoded for a worker", NULL);
                return;
            }
            if (rc == DAIS_EAGAIN) {
                r->attempts++;
                continue;
            }
            /* Its connection is gone or stuck: the worker is lost; try another. */
            r->attempts++;
            dais_cluster_worker_lost(
                m, w, rc == DAIS_EBUSY ? "not reading its connection" : "cannot send to it");
            continue;
        }
        if (why == DAIS_PICK_FULL) {
            dais_model_queue *q = queue_get(m, r->model, true);
            if (q == NULL) {
                fail(r, 500, "internal", "out of memory", NULL);
                return;
            }
            if (q->n >= m->cfg.queue_limit) {
                char msg[256];
                snprintf(msg, sizeof(msg),
                         "every worker for model '%s' is busy and %u requests are waiting",
                         r->model, q->n);
                fail(r, 429, "overloaded", msg, dais_api_retry_after(m));
                return;
            }
            queue_push(q, r, r->attempts > 0);
            return;
        }
        char msg[400];
        if (r->n_out > 0) {
            /* A failover with nowhere to go (yet): it waits at the front of the model's bounded
             * queue for a worker to come back and continues there from prompt + tokens so far;
             * a full queue or the end of the wait is a 503 with Retry-After, never a 502. */
            dais_model_queue *q = queue_get(m, r->model, true);
            if (q == NULL) {
                fail(r, 500, "internal", "out of memory", NULL);
                return;
            }
            if (q->n >= m->cfg.queue_limit) {
                snprintf(msg, sizeof(msg),
                         "worker %s failed after %d tokens, no other worker serves model '%s' "
                         "and %u requests are waiting",
                         r->worker_id, r->n_out, r->model, q->n);
                fail(r, 503, "no_worker", msg, dais_api_retry_after(m));
                return;
            }
            queue_push(q, r, true);
            wait_for_worker(r);
            return;
        }
        snprintf(msg, sizeof(msg), "no active worker serves model '%s'", r->model);
        fail(r, 503, "no_worker", msg, dais_api_retry_after(m));
        return;
    }
}

/* ---- events from the HTTP side -------------------------------------------------------------- */

static void on_abort(dais_http_req *http, void *arg)
{
    dais_mreq *r = arg;
    (void)http;
    dais_master *m = r->m;
    r->http = NULL;
    DAIS_DEBUG("request %s: the client went away", r->id);
    dais_worker *w = r->worker;
    if (w != NULL) {
        send_cancel(r, "client_gone");
        worker_unlink(r, O_NEUTRAL);
    }
    if (r->span != NULL) dais_span_set_status(r->span, DAIS_SPAN_ERROR, "client_gone");
    req_free(r);
    if (w != NULL) dais_router_worker_ready(m, w);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    dais_mreq *r = arg;
    (void)fd;
    (void)what;
    dais_worker *w = r->worker;
    if (r->waiting_worker) {
        /* its deadline came while no worker was there to continue it: unavailable, not slow */
        fail_no_worker(r, "before its deadline");
        return;
    }
    if (w != NULL) {
        send_cancel(r, "deadline");
        worker_unlink(r, O_FAILURE);
    }
    char msg[128];
    snprintf(msg, sizeof(msg), "the request did not finish within %u ms",
             r->m->cfg.request_timeout_ms);
    dais_master *m = r->m;
    fail(r, 504, "timeout", msg, NULL);
    if (w != NULL) dais_router_worker_ready(m, w);
}

/* The attempt's worker sent nothing for the stall timeout: hung (SIGSTOP, a wedged process)
 * or cut off without its connection closing. The worker is blamed (a breaker failure), told to
 * drop the request (CANCEL; if it resumes, its late frames match nothing and are ignored), and
 * the request goes on elsewhere exactly as after a worker loss: routed again when nothing was
 * generated, otherwise continued from prompt + tokens so far (recover_or_fail). */
static void stall_cb(evutil_socket_t fd, short what, void *arg)
{
    dais_mreq *r = arg;
    (void)fd;
    (void)what;
    dais_worker *w = r->worker;
    if (w == NULL) return;
    dais_master *m = r->m;
    char why[128];
    snprintf(why, sizeof(why), "no frame for %u ms (stalled)", m->cfg.stall_timeout_ms);
    if (r->n_stages > 0 && r->waiting_stage >= 0 && r->waiting_stage < r->n_stages) {
        /* a pipeline waits on the stage it fed last */
        r->avoid = r->stages[r->waiting_stage].w;
        stage_failed(r, r->waiting_stage, why);
        return;
    }
    DAIS_WARN("request %s: worker %s sent nothing for %u ms; giving up on it", r->id, w->id,
              m->cfg.stall_timeout_ms);
    send_cancel(r, "stalled");
    worker_unlink(r, O_FAILURE);
    w->failures_total++;
    r->avoid = w;
    recover_or_fail(r, why);
}

/* Picks the model of a request without one; returns false after replying with an error. */
static bool resolve_model(dais_master *m, dais_http_req *http, const dais_api_request *api,
                          char *out, size_t cap)
{
    if (api->model[0] != '\0') {
        if (!dais_master_config_serves(&m->cfg, api->model, NULL)) {
            char served[512], msg[768];
            dais_master_models_text(m, served, sizeof(served));
            snprintf(msg, sizeof(msg), "model '%s' is not served (served: %s)", api->model, served);
            dais_api_error_reply(http, 404, "model_not_found", msg, NULL);
            return false;
        }
        snprintf(out, cap, "%s", api->model);
        return true;
    }
    if (m->cfg.n_models == 1) {
        snprintf(out, cap, "%s", m->cfg.models[0].name);
        return true;
    }
    if (m->cfg.n_models == 0) {
        /* Any model: the one the live workers serve, if they agree. */
        const char *found = NULL;
        bool several = false;
        for (size_t i = 0; i < dais_registry_count(m->reg); i++) {
            const dais_worker *w = dais_registry_at(m->reg, i);
            if (w->state == DAIS_WORKER_DEAD) continue;
            if (found == NULL)
                found = w->caps.model.name;
            else if (strcmp(found, w->caps.model.name) != 0)
                several = true;
        }
        if (found == NULL) {
            dais_api_error_reply(http, 503, "no_worker", "no worker has joined the cluster",
                                 dais_api_retry_after(m));
            return false;
        }
        if (!several) {
            snprintf(out, cap, "%s", found);
            return true;
        }
    }
    char served[512], msg[768];
    dais_master_models_text(m, served, sizeof(served));
    snprintf(msg, sizeof(msg), "model is required: this cluster serves %s", served);
    dais_api_error_reply(http, 400, "missing_field", msg, NULL);
    return false;
}

void dais_router_submit(dais_master *m, dais_http_req *http, dais_api_request *api)
{
    if (m->stopping) {
        dais_api_request_clear(api);
        dais_api_error_reply(http, 503, "shutting_down", "the master is shutting down",
                             dais_api_retry_after(m));
        return;
    }
    char model[DAIS_MODEL_NAME_MAX + 1];
    if (!resolve_model(m, http, api, model, sizeof(model))) {
        dais_api_request_clear(api);
        return;
    }
    dais_mreq *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        dais_api_request_clear(api);
        dais_api_error_reply(http, 500, "internal", "out of memory", NULL);
        return;
    }
    /* uuid4-shaped, from the master's generator: unique and cheap; nothing is secret in it */
    uint64_t hi = dais_master_rand64(m), lo = dais_master_rand64(m);
    snprintf(r->id, sizeof(r->id), "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(hi >> 32),
             (unsigned)(hi >> 16) & 0xffff, (unsigned)hi & 0xfff,
             (unsigned)(0x8000 | ((lo >> 48) & 0x3fff)),
             (unsigned long long)(lo & 0xffffffffffffull));
    r->m = m;
    m->n_requests++;
    m->requests_total++;
    r->api = *api;
    memset(api, 0, sizeof(*api));
    snprintf(r->model, sizeof(r->model), "%s", model);
    r->http = http;
    r->t_start_ns = dais_http_req_start_ns(http);
    if (!r->api.seed_set)
        r->api.params.seed = dais_master_rand64(m) & ((1ull << 53) - 1); /* wire: 0..2^53 */
    if (!r->api.stream) r->text = evbuffer_new();
    dais_http_req_on_abort(http, on_abort, r);

    /* Tracing: continue the client's trace when it sent one. */
    dais_trace_ctx parent = {0};
    const char *tp = dais_http_req_header(http, "traceparent");
    if (tp != NULL) dais_traceparent_parse(tp, strlen(tp), &parent);
    r->span =
        dais_span_start(m->tracer, "POST /api/inference", DAIS_SPAN_SERVER, &parent, &r->trace);
    dais_span_set_str(r->span, "dais.model", r->model);
    dais_span_set_str(r->span, "dais.request_id", r->id);

    if (m->deadline_tv != NULL) {
        evtimer_assign(&r->deadline_ev, m->base, deadline_cb, r);
        evtimer_add(&r->deadline_ev, m->deadline_tv);
        r->deadline_set = true;
    }
    if (m->stall_tv != NULL) {
        evtimer_assign(&r->stall_ev, m->base, stall_cb, r);
        r->stall_set = true;
    }
    if (!r->api.stream && r->text == NULL) {
        fail(r, 500, "internal", "out of memory", NULL);
        return;
    }
    route(r);
}

/* ---- events from workers -------------------------------------------------------------------- */

static dais_mreq *find_on_worker(dais_worker *w, const char *id)
{
    for (dais_mreq *r = w->reqs; r != NULL; r = r->wnext)
        if (strcmp(r->wid, id) == 0) return r;
    return NULL;
}

static int append_ids(int32_t **arr, int32_t *n, int32_t *cap, const int32_t *ids, int32_t k)
{
    if (k <= 0) return 0;
    if (*n > INT32_MAX - k) return DAIS_ERANGE;
    if (*arr == NULL || *n + k > *cap) {
        int32_t nc = *cap > 0 ? *cap : 64;
        while (nc < *n + k)
            nc = nc > INT32_MAX / 2 ? *n + k : nc * 2;
        int32_t *na = realloc(*arr, (size_t)nc * sizeof(int32_t));
        if (na == NULL) return DAIS_ENOMEM;
        *arr = na;
        *cap = nc;
    }
    memcpy(*arr + *n, ids, (size_t)k * sizeof(int32_t));
    *n += k;
    return 0;
}

static void emit_text(dais_mreq *r, const char *text, size_t len)
{
    if (len == 0) return;
    if (!r->api.stream) {
        evbuffer_add(r->text, text, len);
        return;
    }
    if (!start_stream(r)) return;
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) return;
    evbuffer_add(b, "event: token\ndata: {\"text\":", 27);
    dais_json_put_str(b, text, len);
    evbuffer_add(b, "}\n\n", 3);
    dais_http_stream_write_buffer(r->http, b);
    evbuffer_free(b);
}

/* Whether a worker's error code counts against the worker (its breaker) or is about the
 * request (a prompt too long for the context is not the worker's fault). */
static enum outcome worker_blamed(const char *code)
{
    enum dais_perr e = dais_perr_from_name(code);
    return e == DAIS_PERR_BAD_REQUEST || e == DAIS_PERR_CTX_FULL ? O_SUCCESS : O_FAILURE;
}

/* Maps a worker's error code to the client's status and code. */
static void fail_from_worker(dais_mreq *r, const char *code, const char *message)
{
    char msg[DAIS_TEXT_MAX + 128];
    snprintf(msg, sizeof(msg), "worker %s: %s", r->worker_id, message[0] != '\0' ? message : code);
    enum dais_perr e = dais_perr_from_name(code);
    switch (e) {
    case DAIS_PERR_BAD_REQUEST:
        fail(r, 400, "bad_request", msg, NULL);
        break;
    case DAIS_PERR_CTX_FULL:
        fail(r, 400, "context_length_exceeded", msg, NULL);
        break;
    case DAIS_PERR_TIMEOUT:
        fail(r, 504, "timeout", msg, NULL);
        break;
    default:
        fail(r, 502, "worker_error", msg, NULL);
        break;
    }
}

/* ---- pipelines (docs/sharding.md) ---------------------------------------------------------- */

/* Sends one SHARD_ACTIVATION to `to`: token ids, or hidden states exactly as a stage sent them
 * (`raw`, raw_len bytes of little-endian f32, passed through unconverted). */
static int send_shard(dais_mreq *r, dais_worker *to, const char *id, enum dais_shard_kind kind,
                      int32_t pos, int32_t n, const int32_t *tokens, const uint8_t *raw,
                      uint32_t raw_len, int32_t dim)
{
    dais_msg *msg = dais_msg_new(DAIS_MSG_SHARD_ACTIVATION, r->m->cfg.node_id, to->id);
    if (msg == NULL) return DAIS_ENOMEM;
    dais_msg_shard a;
    memset(&a, 0, sizeof(a));
    snprintf(a.request_id, sizeof(a.request_id), "%s", id);
    a.kind = kind;
    a.pos = pos;
    a.n_tokens = n;
    a.dim = dim;
    a.tokens = (int32_t *)tokens; /* borrowed for the encode */
    if (pos == 0 && r->m->cfg.request_timeout_ms > 0) {
        uint64_t now = dais_now_ns();
        uint64_t end = r->t_start_ns + (uint64_t)r->m->cfg.request_timeout_ms * 1000000ull;
        a.deadline_ms = end > now ? (uint32_t)((end - now + 999999) / 1000000) : 1;
    }
    int rc =
        kind == DAIS_SHARD_TOKENS ? dais_shard_encode(&a, msg) : dais_shard_encode_meta(&a, msg);
    if (rc == 0 && kind == DAIS_SHARD_HIDDEN) rc = dais_msg_set_bin(msg, raw, raw_len);
    if (rc == 0) rc = dais_cluster_send(r->m, to, msg);
    dais_msg_free(msg);
    if (rc == 0) dais_counter_inc(r->m->mx.shard_relays);
    return rc;
}

/* Token ids at positions pos.. go to the first stage, in chunks every stage's batch takes. */
static int feed_first_stage(dais_mreq *r, const int32_t *ids, int32_t n, int32_t pos)
{
    for (int32_t done = 0; done < n;) {
        int32_t k = n - done < r->chunk ? n - done : r->chunk;
        int rc = send_shard(r, r->stages[0].w, r->seq_id, DAIS_SHARD_TOKENS, pos + done, k,
                            ids + done, NULL, 0, 0);
        if (rc != 0) return rc;
        done += k;
    }
    r->waiting_stage = 0;
    return 0;
}

/* Stage i of r's pipeline failed (it refused, vanished or stalled): the attempt ends on every
 * stage (CANCEL), the stage's breaker hears a failure, and the request goes on like after any
 * worker failure — routed again, or continued from its tokens (recover_or_fail). */
static void stage_failed(dais_mreq *r, int32_t i, const char *why)
{
    dais_worker *sw = r->stages[i].w;
    char id[DAIS_NODE_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s", sw != NULL ? sw->id : "?");
    DAIS_WARN("request %s: pipeline stage %d (%s) failed: %s", r->id, i, id, why);
    r->stages[i].blamed = true;
    if (sw != NULL) sw->failures_total++;
    dais_master *m = r->m;
    dais_worker *last = r->worker;
    send_cancel(r, "stage_failed");
    worker_unlink(r, O_NEUTRAL);
    snprintf(r->worker_id, sizeof(r->worker_id), "%s", id);
    recover_or_fail(r, why); /* may free r */
    if (last != NULL) dais_router_worker_ready(m, last);
}

static dais_mstage *find_stage(dais_worker *w, const char *seq_id)
{
    for (dais_mstage *st = w->stage_seqs; st != NULL; st = st->next)
        if (strcmp(st->r->seq_id, seq_id) == 0) return st;
    return NULL;
}

int dais_router_on_shard(dais_master *m, dais_worker *w, const dais_msg *msg)
{
    (void)m;
    dais_msg_shard a;
    dais_err err;
    /* The fields and the payload's length only: hidden states pass through as they came (the
     * next stage checks every value), token ids are read below. */
    if (dais_shard_decode_meta(msg, &a, &err) != 0) {
        DAIS_WARN("worker %s: bad SHARD_ACTIVATION: %s", w->id, err.msg);
        return DAIS_EPROTO;
    }
    int rc = 0;
    dais_mstage *st = find_stage(w, a.request_id);
    if (st != NULL) {
        /* a first or middle stage's output: on to the next stage */
        dais_mreq *r = st->r;
        int32_t i = (int32_t)(st - r->stages);
        if (a.kind != DAIS_SHARD_HIDDEN) {
            DAIS_WARN("worker %s: a stage sent token ids", w->id);
            rc = DAIS_EPROTO;
            goto out;
        }
        stall_arm(r);
        bool to_last = i + 1 >= r->n_stages;
        dais_worker *next = to_last ? r->worker : r->stages[i + 1].w;
        r->waiting_stage = to_last ? -1 : i + 1;
        if (send_shard(r, next, to_last ? r->wid : r->seq_id, DAIS_SHARD_HIDDEN, a.pos, a.n_tokens,
                       NULL, msg->bin, msg->bin_len, a.dim) != 0) {
            if (to_last) {
                dais_worker *last = r->worker;
                send_cancel(r, "stage_failed");
                worker_unlink(r, O_FAILURE);
                last->failures_total++;
                recover_or_fail(r, "cannot relay to the last stage");
                dais_router_worker_ready(m, last);
            } else {
                stage_failed(r, i + 1, "cannot relay hidden states to it");
            }
        }
        goto out;
    }
    /* the last stage's next input token: round to the first stage */
    dais_mreq *r = find_on_worker(w, a.request_id);
    if (r == NULL) goto out; /* cancelled or ended here already */
    if (r->n_stages == 0 || a.kind != DAIS_SHARD_TOKENS || a.n_tokens != 1 ||
        dais_shard_decode(msg, &a, &err) != 0) {
        DAIS_WARN("worker %s: request %s: unexpected SHARD_ACTIVATION", w->id, r->id);
        rc = DAIS_EPROTO;
        goto out;
    }
    stall_arm(r);
    if (feed_first_stage(r, a.tokens, 1, a.pos) != 0)
        stage_failed(r, 0, "cannot send the next token to the first stage");
out:
    dais_shard_clear(&a);
    return rc;
}

int dais_router_on_response(dais_master *m, dais_worker *w, const dais_msg *msg)
{
    dais_msg_infer_resp resp;
    dais_err err;
    if (dais_infer_resp_decode(msg, &resp, &err) != 0) {
        DAIS_WARN("worker %s: bad INFERENCE_RESPONSE: %s", w->id, err.msg);
        return DAIS_EPROTO;
    }
    int rc = 0;
    dais_mreq *r = find_on_worker(w, resp.request_id);
    if (r == NULL) goto out; /* cancelled or timed out here already */
    if (resp.index != r->next_index) {
        DAIS_WARN("worker %s: request %s frame %u arrived, %u expected", w->id, r->id, resp.index,
                  r->next_index);
        rc = DAIS_EPROTO;
        goto out;
    }
    r->next_index++;
    stall_arm(r); /* a sign of progress: the stall clock starts again */
    if (resp.prompt_token_ids) {
        if (resp.index != 0 || resp.final) {
            rc = DAIS_EPROTO;
            goto out;
        }
        if (r->n_stages > 0 && feed_first_stage(r, resp.tokens, resp.n_tokens, 0) != 0) {
            stage_failed(r, 0, "cannot send the prompt to the first stage");
            goto out;
        }
        if (r->prompt_ids != NULL)
            goto out; /* a continuation: its "prompt" is ours plus the output so far */
        int32_t cap = 0;
        if (append_ids(&r->prompt_ids, &r->n_prompt_ids, &cap, resp.tokens, resp.n_tokens) != 0)
            rc = DAIS_ENOMEM;
        goto out;
    }
    if (resp.n_tokens > 0) {
        if (r->t_first_ns == 0) r->t_first_ns = dais_now_ns();
        if ((int64_t)r->n_out + resp.n_tokens >
                (int64_t)r->api.params.max_tokens + OUT_TOKENS_SLACK ||
            append_ids(&r->out_ids, &r->n_out, &r->cap_out, resp.tokens, resp.n_tokens) != 0) {
            DAIS_WARN("worker %s: request %s: more output than max_tokens", w->id, r->id);
            rc = DAIS_EPROTO;
            goto out;
        }
    }
    if (r->text != NULL && evbuffer_get_length(r->text) + resp.text_len > OUT_TEXT_MAX) {
        rc = DAIS_EPROTO;
        goto out;
    }
    emit_text(r, resp.text, resp.text_len);
    if (!resp.final) goto out;

    r->finish = resp.finish;
    r->prompt_tokens = resp.prompt_tokens;
    r->completion_tokens = resp.completion_tokens;
    if (r->attempts > 1 && r->prompt_ids != NULL) {
        /* continued elsewhere: count the whole answer, not the last worker's share */
        r->prompt_tokens = r->n_prompt_ids;
        r->completion_tokens = r->n_out;
    }
    r->wt = resp.timings;
    worker_unlink(r, resp.finish == DAIS_FINISH_CANCELLED ? O_NEUTRAL
                     : resp.finish == DAIS_FINISH_ERROR   ? worker_blamed(resp.error_code)
                                                          : O_SUCCESS);
    if (resp.finish == DAIS_FINISH_ERROR)
        fail_from_worker(r, resp.error_code, resp.error_message);
    else if (resp.finish == DAIS_FINISH_CANCELLED && r->http != NULL)
        fail(r, 503, "cancelled", "the worker cancelled the request (it may be shutting down)",
             dais_api_retry_after(m));
    else
        succeed(r);
    dais_router_worker_ready(m, w);
out:
    dais_infer_resp_clear(&resp);
    return rc;
}

void dais_router_on_error(dais_master *m, dais_worker *w, const dais_msg_error *e)
{
    dais_mstage *st = find_stage(w, e->request_id);
    if (st != NULL) {
        dais_mreq *r = st->r;
        int32_t i = (int32_t)(st - r->stages);
        enum dais_perr code = dais_perr_from_name(e->code);
        char why[DAIS_TEXT_MAX + 64];
        snprintf(why, sizeof(why), "%s: %s", e->code, e->message);
        if (code == DAIS_PERR_BAD_REQUEST || code == DAIS_PERR_CTX_FULL) {
            /* about the request, not the stage: no retry elsewhere would do better */
            dais_worker *last = r->worker;
            send_cancel(r, "stage_refused");
            snprintf(r->worker_id, sizeof(r->worker_id), "%s", w->id);
            worker_unlink(r, O_NEUTRAL);
            fail_from_worker(r, e->code, e->message);
            if (last != NULL) dais_router_worker_ready(m, last);
            return;
        }
        if (code == DAIS_PERR_DRAINING) w->draining = true;
        if (code == DAIS_PERR_BUSY || code == DAIS_PERR_DRAINING) {
            /* full or leaving, not broken: the attempt ends without blame, routed again */
            dais_worker *last = r->worker;
            DAIS_DEBUG("request %s: stage %s answered %s; routing again", r->id, w->id, e->code);
            send_cancel(r, "stage_busy");
            worker_unlink(r, O_NEUTRAL);
            dais_counter_inc(m->mx.retries);
            recover_or_fail(r, why);
            if (last != NULL) dais_router_worker_ready(m, last);
            return;
        }
        stage_failed(r, i, why);
        return;
    }
    dais_mreq *r = find_on_worker(w, e->request_id);
    if (r == NULL) return;
    enum dais_perr code = dais_perr_from_name(e->code);
    bool again = code == DAIS_PERR_BUSY || code == DAIS_PERR_DRAINING;
    worker_unlink(r, again ? O_NEUTRAL : worker_blamed(e->code));
    if (code == DAIS_PERR_DRAINING) w->draining = true;
    if (again) {
        /* Not started: safe to route again (the worker that refused is full or leaving). */
        DAIS_DEBUG("request %s: worker %s answered %s; routing again", r->id, w->id, e->code);
        dais_counter_inc(m->mx.retries);
        route(r);
    } else {
        fail_from_worker(r, e->code, e->message);
    }
    dais_router_worker_ready(m, w);
}

void dais_router_worker_failed(dais_master *m, dais_worker *w, const char *reason)
{
    while (w->stage_seqs != NULL) {
        dais_mstage *st = w->stage_seqs;
        stage_failed(st->r, (int32_t)(st - st->r->stages), reason);
    }
    while (w->reqs != NULL) {
        dais_mreq *r = w->reqs;
        worker_unlink(r, O_FAILURE);
        w->failures_total++;
        recover_or_fail(r, reason);
    }
    /* Queued requests for a model nobody serves any more would wait for nothing — except those
     * that already have output: they wait (bounded) for a worker to come back and continue. */
    const char *model = w->caps.model.name;
    dais_model_queue *q = queue_get(m, model, false);
    if (q == NULL || q->head == NULL) return;
    for (size_t i = 0; i < dais_registry_count(m->reg); i++) {
        const dais_worker *o = dais_registry_at(m->reg, i);
        if (o != w && o->state != DAIS_WORKER_DEAD && !o->draining &&
            strcmp(o->caps.model.name, model) == 0)
            return;
    }
    for (dais_mreq *r = q->head, *next; r != NULL; r = next) {
        next = r->qnext;
        if (r->n_out > 0 && r->prompt_ids != NULL && r->http != NULL) {
            wait_for_worker(r);
            continue;
        }
        char msg[256];
        snprintf(msg, sizeof(msg), "no active worker serves model '%s' any more", r->model);
        fail(r, 503, "no_worker", msg, dais_api_retry_after(m));
    }
}

void dais_router_worker_ready(dais_master *m, dais_worker *w)
{
    if (m == NULL || w == NULL || m->stopping) return;
    dais_model_queue *q = queue_get(m, w->caps.model.name, false);
    while (q != NULL && q->head != NULL) {
        enum dais_pick_result why;
        dais_worker *picked[DAIS_MAX_STAGES];
        if (pick_route(m, q->model, NULL, picked, &why) == 0) return;
        dais_mreq *r = q->head;
        queue_unlink(r);
        route(r);
    }
}

void dais_router_fail_queued(dais_master *m)
{
    for (dais_model_queue *q = m->queues; q != NULL; q = q->next)
        while (q->head != NULL)
            fail(q->head, 503, "shutting_down", "the master is shutting down",
                 dais_api_retry_after(m));
}

void dais_router_shutdown(dais_master *m)
{
    dais_router_fail_queued(m);
    for (size_t i = 0; i < dais_registry_count(m->reg); i++) {
        dais_worker *w = dais_registry_at(m->reg, i);
        while (w->reqs != NULL) {
            dais_mreq *r = w->reqs;
            send_cancel(r, "master_shutdown");
            worker_unlink(r, O_NEUTRAL);
            fail(r, 503, "shutting_down", "the master is shutting down", dais_api_retry_after(m));
        }
    }
    while (m->queues != NULL) {
        dais_model_queue *q = m->queues;
        m->queues = q->next;
        free(q);
    }
}
