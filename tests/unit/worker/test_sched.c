/*
 * Scheduler tests on the real stories260K model (exact greedy reference from
 * ../shared/models/README.md): one request, several decoded together in one batch (each must
 * equal the single-request reference), more requests than slots (queue), busy and duplicate
 * refusals, failover continuation from tokens (must continue the reference exactly), stop
 * strings, cancel, deadline, context limits, bad token ids, and chunked prefill with a batch
 * smaller than the prompt. Events are collected through the real wake callback.
 */
#include "common/clock.h"
#include "engine/model.h"
#include "worker/sched.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* README: -n 64 greedy ids after the prompt [1, 403, 407, 261, 378]. */
static const int32_t ref_ids[60] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338,
                                    401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
                                    295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
                                    266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432,
                                    398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438, 310};
static const char ref_text[] =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, "
    "she saw a big, red ball. She wanted to play with it, but it was too high.\nLily";
static const int32_t ref_prompt[5] = {1, 403, 407, 261, 378};

static dais_model *g_model;

/* ---- an event collector woken by the scheduler ------------------------------------------ */

typedef struct result {
    char id[65];
    char text[8192];
    size_t text_len;
    int32_t tokens[1024];
    int n_tokens;
    int32_t prompt[1024];
    int n_prompt;
    uint32_t next_index;
    bool done, rejected;
    enum dais_finish finish;
    enum dais_perr perr;
    int32_t prompt_tokens, completion_tokens;
    dais_infer_timings timings;
    int pieces;
} result;

typedef struct collector {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wakes;
    dais_sched *s;
    result res[16];
    int n_res;
} collector;

static void wake(void *arg)
{
    collector *c = arg;
    pthread_mutex_lock(&c->mu);
    c->wakes++;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* The result of request `id` still streaming, or a new one (an id may be reused once its
 * request ended). */
static result *find(collector *c, const char *id)
{
    for (int i = 0; i < c->n_res; i++)
        if (strcmp(c->res[i].id, id) == 0 && !c->res[i].done) return &c->res[i];
    for (int i = c->n_res - 1; i >= 0; i--)
        if (strcmp(c->res[i].id, id) == 0) return &c->res[i];
    assert_true(c->n_res < 16);
    result *r = &c->res[c->n_res++];
    memset(r, 0, sizeof(r[0]));
    snprintf(r->id, sizeof(r->id), "%s", id);
    return r;
}

static int count_done(collector *c, const char *id)
{
    int n = 0;
    for (int i = 0; i < c->n_res; i++)
        n += strcmp(c->res[i].id, id) == 0 && c->res[i].done;
    return n;
}

static void absorb(collector *c)
{
    for (dais_sched_event *ev = dais_sched_poll(c->s); ev != NULL;) {
        dais_sched_event *next = ev->next;
        result *r = find(c, ev->request_id);
        if (r->done) { /* the id is reused by a new request */
            assert_true(c->n_res < 16);
            r = &c->res[c->n_res++];
            memset(r, 0, sizeof(r[0]));
            snprintf(r->id, sizeof(r->id), "%s", ev->request_id);
        }
        if (ev->kind != DAIS_SEV_REJECT) {
            if (ev->index != r->next_index)
                fail_msg("%s: frame index %u, expected %u", r->id, ev->index, r->next_index);
            r->next_index++;
        }
        switch (ev->kind) {
        case DAIS_SEV_PROMPT:
            assert_int_equal(ev->index, 0);
            memcpy(r->prompt, ev->tokens, (size_t)ev->n_tokens * sizeof(int32_t));
            r->n_prompt = ev->n_tokens;
            assert_int_equal(ev->text_len, 0);
            break;
        case DAIS_SEV_PIECE:
        case DAIS_SEV_FINAL:
            assert_true(r->text_len + ev->text_len < sizeof(r->text));
            if (ev->text_len > 0) memcpy(r->text + r->text_len, ev->text, ev->text_len);
            r->text_len += ev->text_len;
            if (ev->n_tokens > 0)
                memcpy(r->tokens + r->n_tokens, ev->tokens, (size_t)ev->n_tokens * 4);
            r->n_tokens += ev->n_tokens;
            if (ev->kind == DAIS_SEV_PIECE) {
                r->pieces++;
                assert_true(ev->n_tokens > 0);
                break;
            }
            r->done = true;
            r->finish = ev->finish;
            r->perr = ev->perr;
            r->prompt_tokens = ev->prompt_tokens;
            r->completion_tokens = ev->completion_tokens;
            r->timings = ev->timings;
            break;
        case DAIS_SEV_REJECT:
            r->done = r->rejected = true;
            r->perr = ev->perr;
            break;
        case DAIS_SEV_HIDDEN:
        case DAIS_SEV_NEXT:
            fail_msg("%s: a pipeline event from a whole-model scheduler", r->id);
            break;
        }
        dais_sched_event_release(c->s, ev);
        ev = next;
    }
}

/* Waits (at most 60 s) until every id in ids[] is done. */
static void wait_done(collector *c, const char *const *ids, int n)
{
    uint64_t until = dais_now_ns() + 60ull * 1000000000ull;
    for (;;) {
        absorb(c);
        bool all = true;
        for (int i = 0; i < n; i++)
            all = all && find(c, ids[i])->done;
        if (all) return;
        if (dais_now_ns() > until) fail_msg("timed out waiting for requests");
        pthread_mutex_lock(&c->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        pthread_mutex_unlock(&c->mu);
    }
}

static collector *start(int32_t slots, int32_t n_ctx, int32_t batch, int32_t queue)
{
    collector *c = calloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    dais_sched_config cfg = {
        .n_threads = 2, .slots = slots, .n_ctx = n_ctx, .batch = batch, .queue = queue};
    dais_err err;
    c->s = dais_sched_new(g_model, &cfg, wake, c, &err);
    if (c->s == NULL) fail_msg("dais_sched_new: %s", err.msg);
    return c;
}

static void stop(collector *c)
{
    dais_sched_free(c->s);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static int submit_text(collector *c, const char *id, const char *prompt, int max_tokens,
                       enum dais_perr *perr)
{
    dais_msg_infer_req r;
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "%s", id);
    r.prompt = strdup(prompt);
    r.prompt_len = strlen(prompt);
    r.add_bos = true;
    dais_infer_params_default(&r.params);
    r.params.temperature = 0;
    r.params.max_tokens = max_tokens;
    char msg[256];
    enum dais_perr pe;
    int rc =
        dais_sched_submit(c->s, &r, 7, dais_now_ns(), perr != NULL ? perr : &pe, msg, sizeof(msg));
    assert_null(r.prompt); /* taken either way */
    return rc;
}

static void expect_reference(const result *r, int n)
{
    assert_true(r->done);
    assert_false(r->rejected);
    assert_int_equal(r->n_prompt, 5);
    assert_memory_equal(r->prompt, ref_prompt, sizeof(ref_prompt));
    if (r->n_tokens != n || memcmp(r->tokens, ref_ids, (size_t)n * sizeof(int32_t)) != 0)
        fail_msg("%s: %d tokens, differs from the reference", r->id, r->n_tokens);
    if (n == 60 && (r->text_len != strlen(ref_text) || memcmp(r->text, ref_text, r->text_len)))
        fail_msg("%s: text '%.*s'", r->id, (int)r->text_len, r->text);
    assert_int_equal(r->completion_tokens, n);
    assert_int_equal(r->prompt_tokens, 5);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_single_reference(void **state)
{
    (void)state;
    collector *c = start(1, 512, 64, 0);
    assert_int_equal(submit_text(c, "a", "Once upon a time", 60, NULL), 0);
    const char *ids[] = {"a"};
    wait_done(c, ids, 1);
    result *r = find(c, "a");
    expect_reference(r, 60);
    assert_int_equal(r->finish, DAIS_FINISH_LENGTH);
    assert_true(r->pieces >= 50); /* streamed, not one lump */
    assert_true(r->timings.ttft_ms > 0 && r->timings.total_ms >= r->timings.ttft_ms);
    assert_true(r->timings.decode_tokens_per_s > 0);
    dais_sched_stats st;
    dais_sched_get_stats(c->s, &st);
    assert_int_equal(st.requests_ok, 1);
    assert_int_equal(st.decode_tokens_total, 60);
    assert_int_equal(st.prefill_tokens_total, 5);
    assert_int_equal(st.active, 0);
    stop(c);
}

static void test_batched_equals_single(void **state)
{
    (void)state;
    /* 6 requests, 4 slots, 2 queue places: all decode together and each equals the reference
     * (batched decoding must not change any sequence's numbers). A 7th is refused as busy. */
    collector *c = start(4, 256, 64, 2);
    const char *ids[] = {"b0", "b1", "b2", "b3", "b4", "b5"};
    int lens[] = {60, 13, 60, 1, 37, 60};
    for (int i = 0; i < 6; i++)
        assert_int_equal(submit_text(c, ids[i], "Once upon a time", lens[i], NULL), 0);
    enum dais_perr pe;
    assert_int_equal(submit_text(c, "b6", "Once upon a time", 5, &pe), DAIS_EBUSY);
    assert_int_equal(pe, DAIS_PERR_BUSY);
    wait_done(c, ids, 6);
    for (int i = 0; i < 6; i++)
        expect_reference(find(c, ids[i]), lens[i]);
    dais_sched_stats st;
    dais_sched_get_stats(c->s, &st);
    assert_int_equal(st.requests_ok, 6);
    assert_int_equal(st.queue_depth, 0);
    assert_int_equal(st.kv_used, 0);
    assert_int_equal(st.kv_total, 4 * 256);
    stop(c);
}

static void test_duplicate_and_drain(void **state)
{
    (void)state;
    collector *c = start(1, 128, 16, 4);
    assert_int_equal(submit_text(c, "d", "Once upon a time", 50, NULL), 0);
    enum dais_perr pe;
    assert_int_equal(submit_text(c, "d", "Once upon a time", 5, &pe), DAIS_EINVAL);
    assert_int_equal(pe, DAIS_PERR_DUPLICATE);
    dais_sched_close_admission(c->s);
    assert_int_equal(submit_text(c, "e", "Once upon a time", 5, &pe), DAIS_EBUSY);
    assert_int_equal(pe, DAIS_PERR_DRAINING);
    const char *ids[] = {"d"};
    wait_done(c, ids, 1);
    expect_reference(find(c, "d"), 50);
    stop(c);
}

static void test_same_id_after_reconnect(void **state)
{
    (void)state;
    /* A connection closes (owner 7 cancelled); the master reconnects (owner 8) and resends
     * the same request id at once: accepted, and it runs to the reference. */
    collector *c = start(1, 128, 16, 4);
    assert_int_equal(submit_text(c, "same", "Once upon a time", 100, NULL), 0);
    assert_int_equal(dais_sched_cancel_owner(c->s, 7), 1);
    dais_msg_infer_req r;
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "same");
    r.prompt = strdup("Once upon a time");
    r.prompt_len = strlen(r.prompt);
    r.add_bos = true;
    dais_infer_params_default(&r.params);
    r.params.temperature = 0;
    r.params.max_tokens = 10;
    enum dais_perr pe;
    char msg[128];
    assert_int_equal(dais_sched_submit(c->s, &r, 8, dais_now_ns(), &pe, msg, sizeof(msg)), 0);
    uint64_t until = dais_now_ns() + 60ull * 1000000000ull;
    while (count_done(c, "same") < 2 && dais_now_ns() < until) {
        absorb(c);
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(count_done(c, "same"), 2);
    assert_int_equal(c->res[0].finish, DAIS_FINISH_CANCELLED);
    expect_reference(find(c, "same"), 10);
    stop(c);
}

static void test_failover_continuation(void **state)
{
    (void)state;
    /* A second worker continues from prompt + 23 generated tokens: the rest must be exactly
     * the reference's ids 23..59, and the texts must join without a gap. */
    collector *c = start(2, 512, 8, 0);
    int k = 23;
    dais_msg_infer_req r;
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "f");
    r.n_tokens = 5 + k;
    r.tokens = malloc((size_t)r.n_tokens * sizeof(int32_t));
    memcpy(r.tokens, ref_prompt, sizeof(ref_prompt));
    memcpy(r.tokens + 5, ref_ids, (size_t)k * sizeof(int32_t));
    r.n_generated = k;
    dais_infer_params_default(&r.params);
    r.params.temperature = 0;
    r.params.max_tokens = 60 - k;
    enum dais_perr pe;
    char msg[128];
    assert_int_equal(dais_sched_submit(c->s, &r, 1, dais_now_ns(), &pe, msg, sizeof(msg)), 0);
    assert_int_equal(submit_text(c, "g", "Once upon a time", 60, NULL), 0);
    const char *ids[] = {"f", "g"};
    wait_done(c, ids, 2);
    result *f = find(c, "f"), *g = find(c, "g");
    expect_reference(g, 60);
    assert_int_equal(f->n_prompt, 5 + k);
    assert_int_equal(f->n_tokens, 60 - k);
    assert_memory_equal(f->tokens, ref_ids + k, (size_t)(60 - k) * sizeof(int32_t));
    /* The first k tokens' text (from the undisturbed run's frames) + f's text = reference. */
    size_t head = strlen(ref_text) - f->text_len;
    assert_memory_equal(ref_text + head, f->text, f->text_len);
    assert_true(head > 0);
    stop(c);
}

static void test_stop_string_and_eos_limits(void **state)
{
    (void)state;
    collector *c = start(2, 16, 4, 0);
    /* Context of 16: prompt 5 + 11 fed tokens; the 12th sampled one ends it (as run.c -n 16). */
    assert_int_equal(submit_text(c, "ctx", "Once upon a time", 100, NULL), 0);
    dais_msg_infer_req r;
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "stop");
    r.prompt = strdup("Once upon a time");
    r.prompt_len = strlen(r.prompt);
    r.add_bos = true;
    dais_infer_params_default(&r.params);
    r.params.temperature = 0;
    r.params.max_tokens = 50;
    r.params.n_stop = 2;
    snprintf(r.params.stop[0], sizeof(r.params.stop[0]), "named Li");
    snprintf(r.params.stop[1], sizeof(r.params.stop[1]), "zzz");
    enum dais_perr pe;
    char msg[128];
    assert_int_equal(dais_sched_submit(c->s, &r, 1, dais_now_ns(), &pe, msg, sizeof(msg)), 0);
    const char *ids[] = {"ctx", "stop"};
    wait_done(c, ids, 2);
    result *x = find(c, "ctx");
    assert_int_equal(x->finish, DAIS_FINISH_LENGTH);
    assert_int_equal(x->n_tokens, 12);
    assert_memory_equal(x->tokens, ref_ids, 12 * sizeof(int32_t));
    result *s = find(c, "stop");
    assert_int_equal(s->finish, DAIS_FINISH_STOP);
    assert_int_equal(s->text_len, strlen(", there was a little girl "));
    assert_memory_equal(s->text, ", there was a little girl ", s->text_len);
    /* The token that completed the stop string is reported; nothing after it. */
    if (s->n_tokens < 7 || s->n_tokens > 12)
        fail_msg("stop: %d tokens, text %.*s", s->n_tokens, (int)s->text_len, s->text);
    assert_memory_equal(s->tokens, ref_ids, (size_t)s->n_tokens * sizeof(int32_t));
    stop(c);
}

static void test_cancel_deadline_reject(void **state)
{
    (void)state;
    collector *c = start(1, 512, 32, 2);
    assert_int_equal(submit_text(c, "long", "Once upon a time", 500, NULL), 0);
    assert_int_equal(submit_text(c, "queued", "Once upon a time", 5, NULL), 0);
    assert_false(dais_sched_cancel(c->s, 8, "queued")); /* another owner's request */
    assert_true(dais_sched_cancel(c->s, 7, "queued"));
    assert_false(dais_sched_cancel(c->s, 7, "nope"));
    const char *q[] = {"queued"};
    wait_done(c, q, 1);
    result *rq = find(c, "queued");
    assert_int_equal(rq->finish, DAIS_FINISH_CANCELLED);
    assert_int_equal(rq->n_tokens, 0);
    assert_int_equal(dais_sched_cancel_owner(c->s, 7), 1);
    const char *l[] = {"long"};
    wait_done(c, l, 1);
    result *rl = find(c, "long");
    assert_int_equal(rl->finish, DAIS_FINISH_CANCELLED);
    assert_true(rl->n_tokens < 500);
    assert_memory_equal(rl->tokens, ref_ids, (size_t)(rl->n_tokens < 60 ? rl->n_tokens : 60) * 4);

    /* Deadline: 1 ms cannot hold 500 tokens. */
    dais_msg_infer_req r;
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "dl");
    r.prompt = strdup("Once upon a time");
    r.prompt_len = strlen(r.prompt);
    dais_infer_params_default(&r.params);
    r.params.max_tokens = 500;
    r.deadline_ms = 1;
    enum dais_perr pe;
    char msg[128];
    assert_int_equal(dais_sched_submit(c->s, &r, 1, dais_now_ns(), &pe, msg, sizeof(msg)), 0);
    /* A bad token id and a prompt longer than the context are refused before starting. */
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "badtok");
    r.n_tokens = 2;
    r.tokens = malloc(8);
    r.tokens[0] = 1;
    r.tokens[1] = 512;
    dais_infer_params_default(&r.params);
    assert_int_equal(dais_sched_submit(c->s, &r, 1, dais_now_ns(), &pe, msg, sizeof(msg)), 0);
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "huge");
    r.n_tokens = 600;
    r.tokens = calloc(600, sizeof(int32_t));
    dais_infer_params_default(&r.params);
    assert_int_equal(dais_sched_submit(c->s, &r, 1, dais_now_ns(), &pe, msg, sizeof(msg)), 0);
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "topk");
    r.prompt = strdup("x");
    r.prompt_len = 1;
    dais_infer_params_default(&r.params);
    r.params.top_k = 513;
    assert_int_equal(dais_sched_submit(c->s, &r, 1, dais_now_ns(), &pe, msg, sizeof(msg)),
                     DAIS_EINVAL);
    assert_int_equal(pe, DAIS_PERR_BAD_REQUEST);
    const char *ids[] = {"dl", "badtok", "huge"};
    wait_done(c, ids, 3);
    result *d = find(c, "dl");
    assert_true((d->rejected && d->perr == DAIS_PERR_TIMEOUT) ||
                (d->finish == DAIS_FINISH_CANCELLED && d->perr == DAIS_PERR_TIMEOUT));
    assert_true(find(c, "badtok")->rejected);
    assert_int_equal(find(c, "badtok")->perr, DAIS_PERR_BAD_REQUEST);
    assert_true(find(c, "huge")->rejected);
    assert_int_equal(find(c, "huge")->perr, DAIS_PERR_CTX_FULL);
    /* The slot is free again: a normal request still gives the reference. */
    assert_int_equal(submit_text(c, "after", "Once upon a time", 20, NULL), 0);
    const char *a[] = {"after"};
    wait_done(c, a, 1);
    expect_reference(find(c, "after"), 20);
    stop(c);
}

static void test_chunked_prefill(void **state)
{
    (void)state;
    /* batch 2 < prompt 5: the prompt is fed in chunks while another sequence decodes. */
    collector *c = start(2, 128, 2, 0);
    assert_int_equal(submit_text(c, "c1", "Once upon a time", 30, NULL), 0);
    assert_int_equal(submit_text(c, "c2", "Once upon a time", 30, NULL), 0);
    const char *ids[] = {"c1", "c2"};
    wait_done(c, ids, 2);
    expect_reference(find(c, "c1"), 30);
    expect_reference(find(c, "c2"), 30);
    stop(c);
}

/* ---- pipeline shards -------------------------------------------------------------------- */

static collector *start_range(int32_t slots, int32_t batch, int32_t first, int32_t last)
{
    collector *c = calloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    dais_sched_config cfg = {.n_threads = 1,
                             .slots = slots,
                             .n_ctx = 512,
                             .batch = batch,
                             .queue = 4,
                             .layer_first = first,
                             .layer_last = last};
    dais_err err;
    c->s = dais_sched_new(g_model, &cfg, wake, c, &err);
    if (c->s == NULL) fail_msg("dais_sched_new: %s", err.msg);
    return c;
}

static int feed(collector *to, const char *id, enum dais_shard_kind kind, int32_t pos, int32_t n,
                const int32_t *tokens, const float *hidden, int32_t dim)
{
    dais_msg_shard a;
    memset(&a, 0, sizeof(a));
    snprintf(a.request_id, sizeof(a.request_id), "%s", id);
    a.kind = kind;
    a.pos = pos;
    a.n_tokens = n;
    a.dim = dim;
    if (tokens != NULL) {
        a.tokens = malloc((size_t)n * sizeof(int32_t));
        memcpy(a.tokens, tokens, (size_t)n * sizeof(int32_t));
    }
    if (hidden != NULL) {
        a.hidden = malloc((size_t)n * (size_t)dim * sizeof(float));
        memcpy(a.hidden, hidden, (size_t)n * (size_t)dim * sizeof(float));
    }
    enum dais_perr perr;
    char msg[256];
    int rc = dais_sched_shard_input(to->s, &a, 7, dais_now_ns(), &perr, msg, sizeof(msg));
    assert_null(a.tokens);
    assert_null(a.hidden);
    return rc == 0 ? 0 : (int)perr;
}

/* Three stages [0,2) [2,3) [3,5) and a relay doing the master's part: the last stage's prompt
 * ids (in chunks of 2) and each NEXT token go to the first stage, hidden states go on to the
 * next stage. Two requests at once; each must equal the whole-model greedy reference. */
static void test_pipeline_equals_whole(void **state)
{
    (void)state;
    collector *st[3] = {start_range(2, 4, 0, 2), start_range(2, 4, 2, 3), start_range(2, 4, 3, 5)};
    collector *last = st[2];
    int32_t dim = dais_model_hparams(g_model)->dim;
    const char *ids[] = {"p1", "p2"};
    for (int k = 0; k < 2; k++) {
        dais_msg_infer_req r;
        memset(&r, 0, sizeof(r));
        snprintf(r.request_id, sizeof(r.request_id), "%s", ids[k]);
        r.prompt = strdup("Once upon a time");
        r.prompt_len = strlen(r.prompt);
        r.add_bos = true;
        r.pipeline = true;
        dais_infer_params_default(&r.params);
        r.params.temperature = 0;
        r.params.max_tokens = 60;
        enum dais_perr perr;
        char msg[256];
        assert_int_equal(dais_sched_submit(last->s, &r, 7, dais_now_ns(), &perr, msg, sizeof(msg)),
                         0);
    }
    int done = 0, nexts = 0;
    uint64_t until = dais_now_ns() + 60ull * 1000000000ull;
    while (done < 2) {
        if (dais_now_ns() > until) fail_msg("pipeline timed out");
        bool any = false;
        for (int k = 0; k < 2; k++) {
            for (dais_sched_event *ev = dais_sched_poll(st[k]->s); ev != NULL;) {
                dais_sched_event *next = ev->next;
                any = true;
                if (ev->kind != DAIS_SEV_HIDDEN)
                    fail_msg("stage %d: event %d for %s: %s", k, ev->kind, ev->request_id,
                             ev->message);
                assert_int_equal(ev->dim, dim);
                int rc = feed(st[k + 1], ev->request_id, DAIS_SHARD_HIDDEN, ev->pos, ev->n_hidden,
                              NULL, ev->hidden, dim);
                assert_int_equal(rc, 0);
                dais_sched_event_release(st[k]->s, ev);
                ev = next;
            }
        }
        for (dais_sched_event *ev = dais_sched_poll(last->s); ev != NULL;) {
            dais_sched_event *next = ev->next;
            any = true;
            result *r = find(last, ev->request_id);
            switch (ev->kind) {
            case DAIS_SEV_PROMPT:
                memcpy(r->prompt, ev->tokens, (size_t)ev->n_tokens * sizeof(int32_t));
                r->n_prompt = ev->n_tokens;
                for (int32_t p = 0; p < ev->n_tokens; p += 2) {
                    int32_t n = ev->n_tokens - p < 2 ? ev->n_tokens - p : 2;
                    assert_int_equal(feed(st[0], ev->request_id, DAIS_SHARD_TOKENS, p, n,
                                          ev->tokens + p, NULL, 0),
                                     0);
                }
                break;
            case DAIS_SEV_NEXT:
                nexts++;
                assert_int_equal(ev->n_tokens, 1);
                assert_int_equal(
                    feed(st[0], ev->request_id, DAIS_SHARD_TOKENS, ev->pos, 1, ev->tokens, NULL, 0),
                    0);
                break;
            case DAIS_SEV_PIECE:
            case DAIS_SEV_FINAL:
                memcpy(r->text + r->text_len, ev->text, ev->text_len);
                r->text_len += ev->text_len;
                memcpy(r->tokens + r->n_tokens, ev->tokens, (size_t)ev->n_tokens * 4);
                r->n_tokens += ev->n_tokens;
                if (ev->kind == DAIS_SEV_FINAL) {
                    r->done = true;
                    r->finish = ev->finish;
                    r->prompt_tokens = ev->prompt_tokens;
                    r->completion_tokens = ev->completion_tokens;
                    done++;
                    /* the master closes the earlier stages' sequences */
                    assert_true(dais_sched_cancel(st[0]->s, 7, ev->request_id));
                    assert_true(dais_sched_cancel(st[1]->s, 7, ev->request_id));
                }
                break;
            default:
                fail_msg("last stage: event %d for %s: %s", ev->kind, ev->request_id, ev->message);
            }
            dais_sched_event_release(last->s, ev);
            ev = next;
        }
        if (!any) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    for (int k = 0; k < 2; k++) {
        result *r = find(last, ids[k]);
        expect_reference(r, 60);
        assert_int_equal(r->finish, DAIS_FINISH_LENGTH);
    }
    assert_int_equal(nexts, 2 * 59); /* every sampled token but the last goes round */
    /* the stages free their slots once closed */
    for (int k = 0; k < 2; k++) {
        uint64_t t = dais_now_ns() + 5000000000ull;
        while (dais_sched_in_flight(st[k]->s) != 0 && dais_now_ns() < t) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        assert_int_equal(dais_sched_in_flight(st[k]->s), 0);
    }
    for (int k = 0; k < 3; k++)
        stop(st[k]);
}

/* Pipeline input that does not fit the stage is refused with a reason, and nothing runs. */
static void test_pipeline_refusals(void **state)
{
    (void)state;
    int32_t dim = dais_model_hparams(g_model)->dim;
    collector *whole = start(1, 64, 8, 0);
    collector *first = start_range(1, 4, 0, 2), *mid = start_range(1, 4, 2, 3);
    collector *last = start_range(1, 4, 3, 5);
    int32_t toks[8] = {1, 403, 407, 261, 378, 1, 1, 1};
    float *h = calloc(8 * (size_t)dim, sizeof(float));
    assert_int_equal(feed(whole, "a", DAIS_SHARD_TOKENS, 0, 1, toks, NULL, 0),
                     DAIS_PERR_UNSUPPORTED);
    assert_int_equal(feed(first, "a", DAIS_SHARD_HIDDEN, 0, 1, NULL, h, dim),
                     DAIS_PERR_BAD_REQUEST); /* wrong kind */
    assert_int_equal(feed(mid, "a", DAIS_SHARD_HIDDEN, 0, 1, NULL, h, dim + 1),
                     DAIS_PERR_BAD_REQUEST); /* wrong dim */
    assert_int_equal(feed(first, "a", DAIS_SHARD_TOKENS, 0, 5, toks, NULL, 0),
                     DAIS_PERR_BAD_REQUEST); /* over the batch of 4 */
    assert_int_equal(feed(first, "a", DAIS_SHARD_TOKENS, 3, 1, toks, NULL, 0),
                     DAIS_PERR_BAD_REQUEST); /* no open sequence */
    int32_t bad = 100000;
    assert_int_equal(feed(first, "a", DAIS_SHARD_TOKENS, 0, 1, &bad, NULL, 0),
                     DAIS_PERR_BAD_REQUEST); /* id >= n_vocab */
    assert_int_equal(feed(first, "a", DAIS_SHARD_TOKENS, 0, 2, toks, NULL, 0), 0);
    assert_int_equal(feed(first, "a", DAIS_SHARD_TOKENS, 1, 1, toks, NULL, 0),
                     DAIS_PERR_BAD_REQUEST); /* does not continue at 2 */
    assert_int_equal(feed(first, "b", DAIS_SHARD_TOKENS, 0, 1, toks, NULL, 0), 0); /* queued */
    assert_int_equal(feed(first, "c", DAIS_SHARD_TOKENS, 0, 1, toks, NULL, 0), 0);
    assert_int_equal(feed(last, "z", DAIS_SHARD_HIDDEN, 0, 1, NULL, h, dim),
                     DAIS_PERR_BAD_REQUEST); /* no such pipeline request */
    /* requests: a stage takes none; a last stage only pipeline ones; a whole model no pipeline */
    enum dais_perr perr = DAIS_PERR_NONE;
    assert_int_not_equal(submit_text(first, "r", "Once", 4, &perr), 0);
    assert_int_equal(perr, DAIS_PERR_BAD_REQUEST);
    assert_int_not_equal(submit_text(last, "r", "Once", 4, &perr), 0);
    assert_int_equal(perr, DAIS_PERR_BAD_REQUEST);
    free(h);
    stop(whole);
    stop(first);
    stop(mid);
    stop(last);
}

static void test_bad_config(void **state)
{
    (void)state;
    dais_sched_config cfg = {.n_threads = 1, .slots = 0, .n_ctx = 64, .batch = 8, .queue = 0};
    dais_err err;
    collector c0;
    assert_null(dais_sched_new(g_model, &cfg, wake, &c0, &err));
    cfg.slots = 1;
    cfg.n_ctx = 4096; /* above the model's 2048 */
    assert_null(dais_sched_new(g_model, &cfg, wake, &c0, &err));
    cfg.n_ctx = 64;
    assert_null(dais_sched_new(g_model, &cfg, NULL, &c0, &err));
}

static int setup(void **state)
{
    (void)state;
    const char *d = getenv("DAIS_SHARED");
    char path[4096];
    snprintf(path, sizeof(path), "%s/models/stories260K.gguf", d != NULL && d[0] ? d : "../shared");
    dais_err err;
    g_model = dais_model_load(path, &err);
    if (g_model == NULL) {
        fprintf(stderr, "cannot load %s: %s\n", path, err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dais_model_free(g_model);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_reference),
        cmocka_unit_test(test_batched_equals_single),
        cmocka_unit_test(test_duplicate_and_drain),
        cmocka_unit_test(test_same_id_after_reconnect),
        cmocka_unit_test(test_failover_continuation),
        cmocka_unit_test(test_stop_string_and_eos_limits),
        cmocka_unit_test(test_cancel_deadline_reject),
        cmocka_unit_test(test_chunked_prefill),
        cmocka_unit_test(test_pipeline_equals_whole),
        cmocka_unit_test(test_pipeline_refusals),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
