/* The continuous-batching scheduler and its engine thread (sched.h). */
#include "worker/sched.h"
#include "common/clock.h"
#include "common/log.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "worker/textout.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- types ------------------------------------------------------------------------------ */

/* A piece of pipeline input (SHARD_ACTIVATION): n positions from pos, as token ids (first
 * stage) or hidden states (later stages). */
typedef struct schunk {
    struct schunk *next;
    int32_t pos, n;
    int32_t *tokens; /* owned, first stage */
    float *hidden;   /* owned, n x dim, later stages */
} schunk;

typedef struct sreq {
    struct sreq *next;
    dais_msg_infer_req r;                 /* a stage sequence has only r.request_id */
    uint64_t owner, recv_ns, deadline_ns; /* deadline 0 = none */
    bool cancel;                          /* under mu */
    bool stage;                           /* a first/middle stage's sequence */
    schunk *in_head, *in_tail;            /* under mu: input the engine has not taken yet */
    int32_t in_next;                      /* under mu: where the next input must start */
} sreq;

enum phase { SLOT_FREE = 0, SLOT_NEW, SLOT_PREFILL, SLOT_DECODE, SLOT_STAGE, SLOT_DONE };

/* What this worker is, by the layers it holds (sched.h). */
enum smode { MODE_WHOLE = 0, MODE_FIRST, MODE_MIDDLE, MODE_LAST };

typedef struct slot {
    enum phase phase; /* engine only */
    sreq *req;        /* set/cleared under mu; the request's fields are engine-only */
    bool cancel_seen; /* snapshot of req->cancel for this step */
    dais_kv *kv;
    dais_sampler *smp;
    dais_detok detok;
    dais_textout out;
    int32_t *prompt; /* (n_ctx) prompt ids of the current request */
    int32_t n_prompt, n_prefilled, chunk;
    int32_t next_token; /* sampled, fed at the next decode step */
    int32_t n_gen;
    uint32_t index;    /* next frame index */
    int32_t logit_row; /* this step's row in s->logits, -1 when none */
    uint64_t t_start, t_first, t_prefill_done, t_last;
    schunk *in_head, *in_tail; /* engine only: pipeline input taken from the request */
    schunk *run;               /* engine only: the chunk in this step's batch */
    int32_t row;               /* engine only: its first row in the batch */
} slot;

struct dais_sched {
    const dais_model *m;
    const dais_tokenizer *tok;
    dais_sched_config cfg;
    int32_t n_vocab;
    dais_ctx *ctx;
    slot *slots;                    /* (slots) */
    float *logits;                  /* (slots, n_vocab) */
    int32_t *b_tok, *b_pos, *b_seq; /* (batch) */
    bool *b_logits;                 /* (batch) */
    dais_kv **b_kvs;                /* (slots) */
    char *piece;                    /* (piece_cap) detokenizer output of one token */
    size_t piece_cap;
    enum smode mode;
    int32_t layer_first, layer_last, dim;
    float *act_in, *act_out; /* (batch, dim): pipeline hidden states in / out */
    void (*wake)(void *);
    void *wake_arg;

    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* ---- under mu ---- */
    bool stop, closed;
    sreq *pend_head, *pend_tail;
    int32_t n_pend, n_active;
    uint64_t input_gen; /* bumped by every submit, input and cancel: the engine sleeps only when
                           nothing arrived since it last looked */
    dais_sched_event *out_head, *out_tail;
    dais_sched_event *free_evs;
    int32_t n_free_evs;
    dais_sched_stats st;
    /* ---- engine thread only ---- */
    dais_sched_event *local_free;
    dais_sched_event *step_head, *step_tail;
    dais_sched_stats est; /* counters accumulated by the engine, published under mu */
};

#define MAX_CACHED_EVENTS 256

/* ---- events ----------------------------------------------------------------------------- */

static void event_destroy(dais_sched_event *ev)
{
    if (ev == NULL) return;
    free(ev->text);
    free(ev->tokens);
    free(ev->hidden);
    free(ev);
}

/* An event for the engine thread: recycled if one is at hand, else newly allocated. */
static dais_sched_event *event_get(dais_sched *s, enum dais_sched_ev_kind kind, const sreq *q,
                                   uint32_t index)
{
    dais_sched_event *ev = s->local_free;
    if (ev != NULL) {
        s->local_free = ev->next;
    } else {
        ev = calloc(1, sizeof(*ev));
        if (ev == NULL) return NULL;
    }
    char *text = ev->text;
    int32_t *tokens = ev->tokens;
    float *hidden = ev->hidden;
    size_t tcap = ev->text_cap, hcap = ev->hidden_cap;
    int32_t kcap = ev->tok_cap;
    memset(ev, 0, sizeof(*ev));
    ev->text = text;
    ev->tokens = tokens;
    ev->hidden = hidden;
    ev->text_cap = tcap;
    ev->tok_cap = kcap;
    ev->hidden_cap = hcap;
    ev->kind = kind;
    ev->owner = q->owner;
    memcpy(ev->request_id, q->r.request_id, sizeof(ev->request_id));
    ev->index = index;
    return ev;
}

static int event_fill(dais_sched_event *ev, const char *text, size_t text_len,
                      const int32_t *tokens, int32_t n_tokens)
{
    /* A fresh event has no buffers (NULL, capacity 0); the NULL tests say so to the reader
     * and to the analyzer, which cannot follow the capacity invariant. */
    if (ev->text == NULL || text_len + 1 > ev->text_cap) {
        size_t cap = text_len + 64;
        char *t = realloc(ev->text, cap);
        if (t == NULL) return DAIS_ENOMEM;
        ev->text = t;
        ev->text_cap = cap;
    }
    if (n_tokens > 0 && (ev->tokens == NULL || n_tokens > ev->tok_cap)) {
        int32_t *t = realloc(ev->tokens, (size_t)n_tokens * sizeof(int32_t));
        if (t == NULL) return DAIS_ENOMEM;
        ev->tokens = t;
        ev->tok_cap = n_tokens;
    }
    if (text_len > 0) memcpy(ev->text, text, text_len);
    ev->text[text_len] = '\0';
    ev->text_len = text_len;
    if (n_tokens > 0) memcpy(ev->tokens, tokens, (size_t)n_tokens * sizeof(int32_t));
    ev->n_tokens = n_tokens;
    return 0;
}

static int event_fill_hidden(dais_sched_event *ev, const float *rows, int32_t n, int32_t dim)
{
    size_t need = (size_t)n * (size_t)dim;
    if (ev->hidden == NULL || need > ev->hidden_cap) {
        float *h = realloc(ev->hidden, need * sizeof(float));
        if (h == NULL) return DAIS_ENOMEM;
        ev->hidden = h;
        ev->hidden_cap = need;
    }
    memcpy(ev->hidden, rows, need * sizeof(float));
    ev->n_hidden = n;
    ev->dim = dim;
    return 0;
}

static void free_chunks(schunk *c)
{
    while (c != NULL) {
        schunk *n = c->next;
        free(c->tokens);
        free(c->hidden);
        free(c);
        c = n;
    }
}

/* Drops the slot's first input chunk (it has run). */
static void pop_chunk(slot *sl)
{
    schunk *c = sl->in_head;
    if (c == NULL) return;
    sl->in_head = c->next;
    if (sl->in_head == NULL) sl->in_tail = NULL;
    c->next = NULL;
    free_chunks(c);
    if (sl->run == c) sl->run = NULL;
}

static void drop_input(slot *sl)
{
    free_chunks(sl->in_head);
    sl->in_head = sl->in_tail = sl->run = NULL;
}

static void step_push(dais_sched *s, dais_sched_event *ev)
{
    ev->next = NULL;
    if (s->step_tail != NULL)
        s->step_tail->next = ev;
    else
        s->step_head = ev;
    s->step_tail = ev;
}

/* ---- request lifecycle (engine thread) -------------------------------------------------- */

static double ms_between(uint64_t a, uint64_t b)
{
    return b > a ? (double)(b - a) / 1e6 : 0.0;
}

/* A REJECT event (the request never started): ERROR with a code on the wire. */
static void reject(dais_sched *s, const sreq *q, enum dais_perr perr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reject(dais_sched *s, const sreq *q, enum dais_perr perr, const char *fmt, ...)
{
    if (!q->stage) s->est.requests_rejected++; /* a stage sequence's error is counted by its end */
    dais_sched_event *ev = event_get(s, DAIS_SEV_REJECT, q, 0);
    if (ev == NULL) return; /* no memory: the master's deadline covers the silence */
    ev->perr = perr;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->message, sizeof(ev->message), fmt, ap);
    va_end(ap);
    step_push(s, ev);
}

/* Ends the request in slot `sl`: flushes its text, emits FINAL, marks the slot for retiring. */
static void finish(dais_sched *s, slot *sl, enum dais_finish why, enum dais_perr perr,
                   const char *msg, const dais_textout_commit *last)
{
    const sreq *q = sl->req;
    dais_textout_commit c = {0};
    if (last != NULL) {
        c = *last;
    } else {
        char tail[32];
        int n = dais_detok_flush(&sl->detok, tail, sizeof(tail));
        if (dais_textout_finish(&sl->out, tail, n > 0 ? (size_t)n : 0, &c) != 0)
            memset(&c, 0, sizeof(c));
    }
    uint64_t now = dais_now_ns();
    dais_sched_event *ev = event_get(s, DAIS_SEV_FINAL, q, sl->index++);
    if (ev != NULL && event_fill(ev, c.text, c.text_len, c.tokens, c.n_tokens) != 0) {
        ev->text_len = 0;
        ev->n_tokens = 0;
    }
    if (ev != NULL) {
        ev->finish = why;
        ev->perr = perr;
        if (msg != NULL) snprintf(ev->message, sizeof(ev->message), "%s", msg);
        ev->prompt_tokens = sl->n_prompt;
        ev->completion_tokens = sl->n_gen;
        dais_infer_timings *t = &ev->timings;
        t->queue_ms = ms_between(q->recv_ns, sl->t_start);
        t->ttft_ms = sl->t_first != 0 ? ms_between(q->recv_ns, sl->t_first) : 0;
        t->total_ms = ms_between(q->recv_ns, now);
        t->prefill_ms = sl->t_prefill_done != 0 ? ms_between(sl->t_start, sl->t_prefill_done) : 0;
        t->decode_ms =
            sl->t_first != 0 && sl->t_last > sl->t_first ? ms_between(sl->t_first, sl->t_last) : 0;
        t->prefill_tokens_per_s = t->prefill_ms > 0 ? sl->n_prompt / (t->prefill_ms / 1e3) : 0;
        t->decode_tokens_per_s =
            t->decode_ms > 0 && sl->n_gen > 1 ? (sl->n_gen - 1) / (t->decode_ms / 1e3) : 0;
        step_push(s, ev);
    }
    s->est.requests_total++;
    if (why == DAIS_FINISH_CANCELLED)
        s->est.requests_cancelled++;
    else if (why == DAIS_FINISH_ERROR)
        s->est.requests_error++;
    else
        s->est.requests_ok++;
    DAIS_DEBUG("request %s finished: %s, %d prompt + %d generated tokens", q->r.request_id,
               dais_finish_name(why), sl->n_prompt, sl->n_gen);
    dais_sampler_free(sl->smp);
    sl->smp = NULL;
    dais_textout_close(&sl->out);
    drop_input(sl);
    sl->phase = SLOT_DONE;
}

/* Ends a first/middle stage's sequence: silently when the master closed it (CANCEL), with an
 * ERROR for the master otherwise. */
static void stage_end(dais_sched *s, slot *sl, enum dais_perr perr, const char *msg)
{
    if (perr != DAIS_PERR_NONE) {
        reject(s, sl->req, perr, "%s", msg != NULL ? msg : dais_perr_name(perr));
        s->est.requests_error++;
    } else {
        s->est.requests_ok++;
    }
    s->est.requests_total++;
    DAIS_DEBUG("stage sequence %s ended after %d positions%s%s", sl->req->r.request_id,
               dais_kv_len(sl->kv), msg != NULL ? ": " : "", msg != NULL ? msg : "");
    drop_input(sl);
    sl->phase = SLOT_DONE;
}

/* Prepares a newly assigned request: prompt ids, cache, sampler, detokenizer, output text.
 * Returns false when the request was rejected (the slot is then DONE without a FINAL). */
static bool slot_setup(dais_sched *s, slot *sl, uint64_t now)
{
    sreq *q = sl->req;
    dais_msg_infer_req *r = &q->r;
    int32_t cap = s->cfg.n_ctx;
    sl->t_start = now;
    sl->t_first = sl->t_prefill_done = sl->t_last = 0;
    sl->n_gen = 0;
    sl->n_prefilled = 0;
    sl->index = 0;
    sl->logit_row = -1;
    if (q->deadline_ns != 0 && now >= q->deadline_ns) {
        reject(s, q, DAIS_PERR_TIMEOUT, "deadline of %u ms passed while queued", r->deadline_ms);
        return false;
    }
    if (q->stage) {
        sl->n_prompt = 0;
        dais_kv_truncate(sl->kv, 0);
        sl->phase = SLOT_STAGE;
        return true;
    }
    if (r->prompt != NULL) {
        bool bos = r->add_bos && dais_tokenizer_add_bos(s->tok);
        int64_t n = dais_tokenize(s->tok, r->prompt, r->prompt_len, bos, false, sl->prompt, cap);
        if (n < 0) {
            reject(s, q, DAIS_PERR_BAD_REQUEST, "prompt does not tokenize: %s",
                   dais_strerror((int)n));
            return false;
        }
        if (n >= cap) {
            reject(s, q, DAIS_PERR_CTX_FULL,
                   "prompt of %lld tokens does not fit a context of %d "
                   "(one position is needed to generate)",
                   (long long)n, cap);
            return false;
        }
        sl->n_prompt = (int32_t)n;
    } else {
        if (r->n_tokens >= cap) {
            reject(s, q, DAIS_PERR_CTX_FULL,
                   "prompt of %d tokens does not fit a context of %d "
                   "(one position is needed to generate)",
                   r->n_tokens, cap);
            return false;
        }
        for (int32_t i = 0; i < r->n_tokens; i++) {
            if (r->tokens[i] >= s->n_vocab) {
                reject(s, q, DAIS_PERR_BAD_REQUEST, "token id %d at %d is not below n_vocab %d",
                       r->tokens[i], i, s->n_vocab);
                return false;
            }
        }
        memcpy(sl->prompt, r->tokens, (size_t)r->n_tokens * sizeof(int32_t));
        sl->n_prompt = r->n_tokens;
    }
    if (sl->n_prompt == 0) {
        reject(s, q, DAIS_PERR_BAD_REQUEST, "empty prompt (no tokens and no BOS)");
        return false;
    }
    dais_sampler_params sp;
    dais_sampler_params_default(&sp);
    sp.temperature = r->params.temperature;
    sp.top_k = r->params.top_k;
    sp.top_p = r->params.top_p;
    sp.min_p = r->params.min_p;
    sp.repeat_penalty = r->params.repeat_penalty;
    sp.repeat_last_n = r->params.repeat_last_n;
    sp.seed = r->params.seed;
    sl->smp = dais_sampler_new(&sp, s->n_vocab);
    if (sl->smp == NULL) {
        reject(s, q, DAIS_PERR_BAD_REQUEST, "sampling parameters out of range");
        return false;
    }
    if (dais_textout_init(&sl->out, &r->params) != 0) {
        dais_sampler_free(sl->smp);
        sl->smp = NULL;
        reject(s, q, DAIS_PERR_INTERNAL, "out of memory");
        return false;
    }
    for (int32_t i = 0; i < sl->n_prompt; i++)
        dais_sampler_accept(sl->smp, sl->prompt[i]);
    dais_detok_init(&sl->detok, s->tok, true);
    /* SentencePiece strips the space it added before the first word of a text; generated text
     * continues a prompt, so only a stream that starts right after BOS (or nothing) strips. */
    int32_t bos = dais_tokenizer_bos(s->tok);
    bool fresh = sl->n_prompt == 1 && bos >= 0 && sl->prompt[0] == bos;
    sl->detok.at_start = sl->detok.at_start && fresh;
    dais_kv_truncate(sl->kv, 0);
    /* Frame 0: the prompt's ids, so a master can fail over a text prompt (docs/protocol.md). */
    dais_sched_event *ev = event_get(s, DAIS_SEV_PROMPT, q, sl->index++);
    if (ev != NULL) {
        if (event_fill(ev, "", 0, sl->prompt, sl->n_prompt) == 0)
            step_push(s, ev);
        else
            ev->next = s->local_free, s->local_free = ev;
    }
    sl->phase = SLOT_PREFILL;
    return true;
}

/* A token sampled for slot `sl`: text, stop conditions, next step. */
static void on_token(dais_sched *s, slot *sl, int32_t t, uint64_t now)
{
    const dais_msg_infer_req *r = &sl->req->r;
    if (sl->t_first == 0) sl->t_first = now;
    sl->t_last = now;
    int32_t bos = dais_tokenizer_bos(s->tok);
    if (dais_tokenizer_is_eog(s->tok, t) || (bos >= 0 && t == bos)) {
        finish(s, sl, DAIS_FINISH_STOP, DAIS_PERR_NONE, NULL, NULL);
        return;
    }
    sl->n_gen++;
    s->est.decode_tokens_total++;
    dais_sampler_accept(sl->smp, t);
    int n = dais_detok_push(&sl->detok, t, s->piece, s->piece_cap);
    if (n < 0) {
        s->est.engine_errors++;
        finish(s, sl, DAIS_FINISH_ERROR, DAIS_PERR_INTERNAL, "detokenizer failed", NULL);
        return;
    }
    dais_textout_commit c;
    if (dais_textout_push(&sl->out, t, s->piece, (size_t)n, sl->detok.n_pending == 0, &c) != 0) {
        s->est.engine_errors++;
        finish(s, sl, DAIS_FINISH_ERROR, DAIS_PERR_INTERNAL, "out of memory", NULL);
        return;
    }
    if (c.stop) {
        finish(s, sl, DAIS_FINISH_STOP, DAIS_PERR_NONE, NULL, &c);
        return;
    }
    if (c.n_tokens > 0) {
        dais_sched_event *ev = event_get(s, DAIS_SEV_PIECE, sl->req, sl->index);
        if (ev == NULL || event_fill(ev, c.text, c.text_len, c.tokens, c.n_tokens) != 0) {
            /* Losing a piece would corrupt the stream: end it honestly instead. */
            if (ev != NULL) ev->next = s->local_free, s->local_free = ev;
            s->est.engine_errors++;
            finish(s, sl, DAIS_FINISH_ERROR, DAIS_PERR_INTERNAL, "out of memory", NULL);
            return;
        }
        sl->index++;
        step_push(s, ev);
    }
    if (sl->n_gen >= r->params.max_tokens || dais_kv_len(sl->kv) >= dais_kv_n_ctx(sl->kv)) {
        finish(s, sl, DAIS_FINISH_LENGTH, DAIS_PERR_NONE, NULL, NULL);
        return;
    }
    sl->next_token = t;
    sl->phase = SLOT_DECODE;
    if (s->mode == MODE_LAST) {
        /* The token's hidden state comes from the earlier stages: the master feeds it to the
         * first stage at this position and relays the result here. */
        dais_sched_event *ev = event_get(s, DAIS_SEV_NEXT, sl->req, 0);
        if (ev == NULL || event_fill(ev, "", 0, &t, 1) != 0) {
            if (ev != NULL) ev->next = s->local_free, s->local_free = ev;
            s->est.engine_errors++;
            finish(s, sl, DAIS_FINISH_ERROR, DAIS_PERR_INTERNAL, "out of memory", NULL);
            return;
        }
        ev->pos = dais_kv_len(sl->kv);
        step_push(s, ev);
    }
}

/* One engine step outside the lock: set up new requests, apply cancels and deadlines, run one
 * batched forward pass, sample. Returns false when there was nothing to do (every sequence is
 * waiting for pipeline input). */
static bool engine_step(dais_sched *s)
{
    uint64_t now = dais_now_ns();
    int32_t ns = s->cfg.slots, nb = s->cfg.batch, dim = s->dim;
    bool acted = false;
    bool up = s->layer_first > 0; /* rows arrive as hidden states */
    for (int32_t i = 0; i < ns; i++) {
        slot *sl = &s->slots[i];
        if (sl->phase != SLOT_NEW) continue;
        acted = true;
        if (!slot_setup(s, sl, now)) sl->phase = SLOT_DONE;
    }
    for (int32_t i = 0; i < ns; i++) {
        slot *sl = &s->slots[i];
        bool stage = sl->phase == SLOT_STAGE;
        if (sl->phase != SLOT_PREFILL && sl->phase != SLOT_DECODE && !stage) continue;
        bool late = sl->req->deadline_ns != 0 && now >= sl->req->deadline_ns;
        if (!sl->cancel_seen && !late) continue;
        acted = true;
        if (stage)
            stage_end(s, sl, sl->cancel_seen ? DAIS_PERR_NONE : DAIS_PERR_TIMEOUT,
                      sl->cancel_seen ? NULL : "deadline passed");
        else if (sl->cancel_seen)
            finish(s, sl, DAIS_FINISH_CANCELLED, DAIS_PERR_NONE, "cancelled", NULL);
        else
            finish(s, sl, DAIS_FINISH_CANCELLED, DAIS_PERR_TIMEOUT, "deadline passed", NULL);
    }
    /* Build one batch: a decode token per generating sequence, then prompt chunks, then the
     * input of pipeline stage sequences. */
    int32_t n = 0, n_seq = 0, rows = 0, n_dec = 0, n_pre = 0;
    for (int32_t i = 0; i < ns; i++) {
        slot *sl = &s->slots[i];
        sl->logit_row = -1;
        sl->chunk = 0;
        sl->run = NULL;
        if (sl->phase != SLOT_DECODE) continue;
        int32_t pos = dais_kv_len(sl->kv);
        if (up) {
            schunk *c = sl->in_head;
            if (c == NULL) continue; /* its hidden state has not arrived yet */
            if (c->pos != pos || c->n != 1) {
                acted = true;
                finish(s, sl, DAIS_FINISH_ERROR, DAIS_PERR_BAD_REQUEST,
                       "pipeline input does not continue the sequence", NULL);
                continue;
            }
            memcpy(s->act_in + (size_t)n * (size_t)dim, c->hidden, (size_t)dim * sizeof(float));
            sl->run = c;
        }
        s->b_kvs[n_seq] = sl->kv;
        s->b_tok[n] = sl->next_token;
        s->b_pos[n] = pos;
        s->b_seq[n] = n_seq;
        s->b_logits[n] = true;
        sl->logit_row = rows++;
        n++;
        n_seq++;
        n_dec++;
    }
    for (int32_t i = 0; i < ns && n < nb; i++) {
        slot *sl = &s->slots[i];
        if (sl->phase != SLOT_PREFILL) continue;
        int32_t left = sl->n_prompt - sl->n_prefilled;
        int32_t chunk = left < nb - n ? left : nb - n;
        if (up) {
            schunk *c = sl->in_head;
            if (c == NULL) continue;
            if (c->pos != sl->n_prefilled || c->n > left) {
                acted = true;
                finish(s, sl, DAIS_FINISH_ERROR, DAIS_PERR_BAD_REQUEST,
                       "pipeline input does not match the prompt", NULL);
                continue;
            }
            if (c->n > nb - n) continue; /* whole chunks only: next step */
            chunk = c->n;
            memcpy(s->act_in + (size_t)n * (size_t)dim, c->hidden,
                   (size_t)chunk * (size_t)dim * sizeof(float));
            sl->run = c;
        }
        s->b_kvs[n_seq] = sl->kv;
        for (int32_t k = 0; k < chunk; k++) {
            s->b_tok[n + k] = sl->prompt[sl->n_prefilled + k];
            s->b_pos[n + k] = sl->n_prefilled + k;
            s->b_seq[n + k] = n_seq;
            s->b_logits[n + k] = false;
        }
        if (chunk == left) {
            s->b_logits[n + chunk - 1] = true;
            sl->logit_row = rows++;
        }
        sl->chunk = chunk;
        n += chunk;
        n_pre += chunk;
        n_seq++;
    }
    for (int32_t i = 0; i < ns && n < nb; i++) {
        slot *sl = &s->slots[i];
        if (sl->phase != SLOT_STAGE || sl->in_head == NULL) continue;
        schunk *c = sl->in_head;
        int32_t pos = dais_kv_len(sl->kv);
        if (c->pos != pos) {
            acted = true;
            stage_end(s, sl, DAIS_PERR_BAD_REQUEST, "input does not continue the sequence");
            continue;
        }
        if (c->n > nb - n) continue;
        s->b_kvs[n_seq] = sl->kv;
        for (int32_t k = 0; k < c->n; k++) {
            s->b_tok[n + k] = up ? 0 : c->tokens[k];
            s->b_pos[n + k] = pos + k;
            s->b_seq[n + k] = n_seq;
            s->b_logits[n + k] = false;
        }
        if (up)
            memcpy(s->act_in + (size_t)n * (size_t)dim, c->hidden,
                   (size_t)c->n * (size_t)dim * sizeof(float));
        sl->run = c;
        sl->row = n;
        sl->chunk = c->n;
        n += c->n;
        n_pre += c->n;
        n_seq++;
    }
    if (n == 0) return acted;
    bool to_logits = s->layer_last == dais_model_hparams(s->m)->n_layers;
    dais_batch b = {
        .n_tokens = n,
        .token = s->b_tok,
        .pos = s->b_pos,
        .seq = s->b_seq,
        .logits = s->b_logits,
        .layer_first = s->layer_first,
        .layer_last = s->layer_last,
        .act_in = up ? s->act_in : NULL,
        .act_out = to_logits ? NULL : s->act_out,
    };
    uint64_t t0 = dais_now_ns();
    int rc = dais_forward(s->ctx, &b, s->b_kvs, n_seq, s->logits);
    uint64_t t1 = dais_now_ns();
    s->est.steps_total++;
    s->est.last_batch_seqs = n_seq;
    dais_histogram_observe(s->cfg.batch_hist, (double)n_seq);
    if (rc != 0) {
        s->est.engine_errors++;
        DAIS_ERROR("forward pass of %d tokens failed: %s", n, dais_strerror(rc));
        for (int32_t i = 0; i < ns; i++) {
            slot *sl = &s->slots[i];
            if (sl->phase == SLOT_STAGE && sl->run != NULL)
                stage_end(s, sl, DAIS_PERR_INTERNAL, dais_strerror(rc));
            else if ((sl->phase == SLOT_DECODE && (!up || sl->run != NULL)) ||
                     (sl->phase == SLOT_PREFILL && sl->chunk > 0))
                finish(s, sl, DAIS_FINISH_ERROR, DAIS_PERR_INTERNAL, dais_strerror(rc), NULL);
        }
        return true;
    }
    double secs = (double)(t1 - t0) / 1e9;
    if (secs > 0 && n_pre > 0) s->est.last_prefill_tps = n_pre / secs;
    if (secs > 0 && n_dec > 0) s->est.last_decode_tps = n_dec / secs;
    s->est.prefill_tokens_total += (uint64_t)n_pre;
    for (int32_t i = 0; i < ns; i++) {
        slot *sl = &s->slots[i];
        if (sl->phase == SLOT_STAGE && sl->run != NULL) {
            /* The sequence's output for the next stage. */
            schunk *c = sl->run;
            dais_sched_event *ev = event_get(s, DAIS_SEV_HIDDEN, sl->req, 0);
            if (ev == NULL ||
                event_fill_hidden(ev, s->act_out + (size_t)sl->row * (size_t)dim, c->n, dim) != 0) {
                if (ev != NULL) ev->next = s->local_free, s->local_free = ev;
                s->est.engine_errors++;
                stage_end(s, sl, DAIS_PERR_INTERNAL, "out of memory");
                continue;
            }
            ev->pos = c->pos;
            step_push(s, ev);
            pop_chunk(sl);
            continue;
        }
        if (sl->phase == SLOT_PREFILL && sl->chunk > 0) {
            sl->n_prefilled += sl->chunk;
            if (sl->n_prefilled == sl->n_prompt) sl->t_prefill_done = t1;
        }
        if (sl->run != NULL) pop_chunk(sl);
        if (sl->logit_row < 0) continue;
        float *row = s->logits + (size_t)sl->logit_row * (size_t)s->n_vocab;
        int32_t t = dais_sampler_sample(sl->smp, row);
        on_token(s, sl, t, t1);
    }
    return true;
}

/* ---- the engine thread ------------------------------------------------------------------ */

static void splice_outbox(dais_sched *s)
{
    if (s->step_head == NULL) return;
    if (s->out_tail != NULL)
        s->out_tail->next = s->step_head;
    else
        s->out_head = s->step_head;
    s->out_tail = s->step_tail;
    s->step_head = s->step_tail = NULL;
}

static void free_sreq(sreq *q)
{
    if (q == NULL) return;
    dais_infer_req_clear(&q->r);
    free_chunks(q->in_head);
    free(q);
}

static void publish_stats(dais_sched *s)
{
    dais_sched_stats *st = &s->st;
    uint64_t per_pos = st->kv_bytes_per_pos;
    *st = s->est;
    st->kv_bytes_per_pos = per_pos;
    st->queue_depth = s->n_pend;
    st->active = s->n_active;
    st->slots = s->cfg.slots;
    st->kv_total = (int64_t)s->cfg.slots * s->cfg.n_ctx;
    st->kv_used = 0;
    for (int32_t i = 0; i < s->cfg.slots; i++)
        if (s->slots[i].req != NULL) st->kv_used += dais_kv_len(s->slots[i].kv);
}

static void *engine_main(void *arg)
{
    dais_sched *s = arg;
    sreq *retired = NULL;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        /* Retire finished slots and expired queue entries. */
        for (int32_t i = 0; i < s->cfg.slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->phase == SLOT_DONE) {
                sl->req->next = retired;
                retired = sl->req;
                sl->req = NULL;
                sl->phase = SLOT_FREE;
                s->n_active--;
            }
        }
        uint64_t now = dais_now_ns();
        for (sreq **pp = &s->pend_head; *pp != NULL;) {
            sreq *q = *pp;
            bool expired = q->deadline_ns != 0 && now >= q->deadline_ns;
            if (!q->cancel && !expired) {
                pp = &q->next;
                continue;
            }
            *pp = q->next;
            if (s->pend_tail == q) {
                s->pend_tail = NULL;
                for (sreq *t = s->pend_head; t != NULL; t = t->next)
                    s->pend_tail = t;
            }
            s->n_pend--;
            if (q->cancel && q->stage) {
                s->est.requests_total++; /* closed before it started: nothing to say */
                s->est.requests_ok++;
            } else if (q->cancel) {
                dais_sched_event *ev = event_get(s, DAIS_SEV_FINAL, q, 0);
                if (ev != NULL) {
                    ev->finish = DAIS_FINISH_CANCELLED;
                    ev->text_len = 0;
                    ev->n_tokens = 0;
                    step_push(s, ev);
                }
                s->est.requests_total++;
                s->est.requests_cancelled++;
            } else {
                reject(s, q, DAIS_PERR_TIMEOUT, "deadline of %u ms passed while queued",
                       q->r.deadline_ms);
            }
            q->next = retired;
            retired = q;
        }
        /* Admit queued requests into free slots. */
        for (int32_t i = 0; i < s->cfg.slots && s->pend_head != NULL; i++) {
            slot *sl = &s->slots[i];
            if (sl->phase != SLOT_FREE) continue;
            sreq *q = s->pend_head;
            s->pend_head = q->next;
            if (s->pend_head == NULL) s->pend_tail = NULL;
            q->next = NULL;
            s->n_pend--;
            s->n_active++;
            sl->req = q;
            sl->phase = SLOT_NEW;
        }
        for (int32_t i = 0; i < s->cfg.slots; i++) {
            slot *sl = &s->slots[i];
            sreq *q = sl->req;
            sl->cancel_seen = q != NULL && q->cancel;
            /* Pipeline input moves to the engine's side of the slot. */
            if (q != NULL && q->in_head != NULL && sl->phase != SLOT_DONE) {
                if (sl->in_tail != NULL)
                    sl->in_tail->next = q->in_head;
                else
                    sl->in_head = q->in_head;
                sl->in_tail = q->in_tail;
                q->in_head = q->in_tail = NULL;
            }
        }
        uint64_t gen = s->input_gen;
        /* Recycle events the loop gave back. */
        if (s->local_free == NULL) {
            s->local_free = s->free_evs;
            s->free_evs = NULL;
            s->n_free_evs = 0;
        }
        bool had_events = s->step_head != NULL;
        splice_outbox(s);
        publish_stats(s);
        if (had_events || retired != NULL) {
            pthread_mutex_unlock(&s->mu);
            while (retired != NULL) {
                sreq *q = retired;
                retired = q->next;
                free_sreq(q);
            }
            if (had_events) s->wake(s->wake_arg);
            pthread_mutex_lock(&s->mu);
            continue; /* state may have changed while unlocked */
        }
        if (s->stop) break;
        if (s->n_active == 0) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        bool worked = engine_step(s);
        pthread_mutex_lock(&s->mu);
        if (!worked && s->step_head == NULL && s->input_gen == gen && !s->stop) {
            /* Every sequence waits for pipeline input: sleep until some arrives (or a while,
             * so deadlines are still noticed). */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- public API ------------------------------------------------------------------------- */

dais_sched *dais_sched_new(const dais_model *m, const dais_sched_config *cfg, void (*wake)(void *),
                           void *wake_arg, dais_err *err)
{
    const dais_hparams *hp = dais_model_hparams(m);
    if (cfg->n_threads < 1 || cfg->n_threads > 1024 || cfg->slots < 1 || cfg->slots > 4096 ||
        cfg->n_ctx < 2 || cfg->n_ctx > hp->n_ctx_train || cfg->batch < 1 ||
        cfg->batch > (1 << 20) || cfg->queue < 0 || cfg->queue > (1 << 20) || wake == NULL) {
        dais_err_set(err, DAIS_EINVAL,
                     "scheduler: need threads 1..1024, slots 1..4096, ctx "
                     "2..%d (the model's context), batch 1..1048576, queue 0..1048576",
                     hp->n_ctx_train);
        return NULL;
    }
    dais_sched *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "out of memory");
        return NULL;
    }
    s->m = m;
    s->tok = dais_model_tokenizer(m);
    s->cfg = *cfg;
    if (s->cfg.batch < s->cfg.slots) s->cfg.batch = s->cfg.slots;
    s->n_vocab = hp->n_vocab;
    s->wake = wake;
    s->wake_arg = wake_arg;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int32_t ns = s->cfg.slots, nb = s->cfg.batch;
    s->layer_first = cfg->layer_first;
    s->layer_last = cfg->layer_last;
    if (s->layer_first == 0 && s->layer_last == 0) s->layer_last = hp->n_layers;
    if (s->layer_first < 0 || s->layer_first >= s->layer_last || s->layer_last > hp->n_layers) {
        dais_err_set(err, DAIS_EINVAL, "layers [%d, %d) are not a range of the model's %d layers",
                     cfg->layer_first, cfg->layer_last, hp->n_layers);
        goto fail;
    }
    bool whole_top = s->layer_last == hp->n_layers;
    s->mode = s->layer_first == 0 ? (whole_top ? MODE_WHOLE : MODE_FIRST)
                                  : (whole_top ? MODE_LAST : MODE_MIDDLE);
    s->dim = hp->dim;
    if (s->mode != MODE_WHOLE) {
        s->act_in = malloc((size_t)nb * (size_t)s->dim * sizeof(float));
        s->act_out = malloc((size_t)nb * (size_t)s->dim * sizeof(float));
        if (s->act_in == NULL || s->act_out == NULL) {
            dais_err_set(err, DAIS_ENOMEM, "out of memory for pipeline buffers");
            goto fail;
        }
    }
    s->ctx = dais_ctx_new(m, cfg->n_threads, nb, err);
    if (s->ctx == NULL) goto fail;
    s->slots = calloc((size_t)ns, sizeof(*s->slots));
    s->logits = malloc((size_t)ns * (size_t)(whole_top ? s->n_vocab : 1) * sizeof(float));
    s->b_tok = malloc((size_t)nb * sizeof(int32_t));
    s->b_pos = malloc((size_t)nb * sizeof(int32_t));
    s->b_seq = malloc((size_t)nb * sizeof(int32_t));
    s->b_logits = malloc((size_t)nb * sizeof(bool));
    s->b_kvs = calloc((size_t)ns, sizeof(*s->b_kvs));
    s->piece_cap = 3 * (size_t)dais_tokenizer_max_token_len(s->tok) + 32;
    s->piece = malloc(s->piece_cap);
    if (s->slots == NULL || s->logits == NULL || s->b_tok == NULL || s->b_pos == NULL ||
        s->b_seq == NULL || s->b_logits == NULL || s->b_kvs == NULL || s->piece == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "out of memory for %d slots", ns);
        goto fail;
    }
    for (int32_t i = 0; i < ns; i++) {
        slot *sl = &s->slots[i];
        sl->kv = dais_kv_new(m, s->cfg.n_ctx, s->layer_first, s->layer_last);
        sl->prompt = malloc((size_t)s->cfg.n_ctx * sizeof(int32_t));
        if (sl->kv == NULL || sl->prompt == NULL) {
            dais_err_set(err, DAIS_ENOMEM,
                         "out of memory for the KV cache of slot %d "
                         "(%d positions)",
                         i, s->cfg.n_ctx);
            goto fail;
        }
    }
    s->st.kv_bytes_per_pos = (uint64_t)(s->layer_last - s->layer_first) * 2u *
                             (uint64_t)hp->n_kv_heads * (uint64_t)hp->head_dim * sizeof(float);
    if (pthread_create(&s->thread, NULL, engine_main, s) != 0) {
        dais_err_set(err, DAIS_EINTERNAL, "cannot start the engine thread");
        goto fail;
    }
    s->started = true;
    return s;
fail:
    dais_sched_free(s);
    return NULL;
}

void dais_sched_free(dais_sched *s)
{
    if (s == NULL) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    for (int32_t i = 0; s->slots != NULL && i < s->cfg.slots; i++) {
        slot *sl = &s->slots[i];
        free_sreq(sl->req);
        dais_kv_free(sl->kv);
        dais_sampler_free(sl->smp);
        dais_textout_close(&sl->out);
        free(sl->prompt);
        drop_input(sl);
    }
    for (sreq *q = s->pend_head; q != NULL;) {
        sreq *n = q->next;
        free_sreq(q);
        q = n;
    }
    dais_sched_event *lists[] = {s->out_head, s->free_evs, s->local_free, s->step_head};
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        for (dais_sched_event *ev = lists[k]; ev != NULL;) {
            dais_sched_event *n = ev->next;
            event_destroy(ev);
            ev = n;
        }
    }
    dais_ctx_free(s->ctx);
    free(s->slots);
    free(s->logits);
    free(s->b_tok);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_logits);
    free(s->b_kvs);
    free(s->piece);
    free(s->act_in);
    free(s->act_out);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Requests queued or in slots that are not cancelled. A cancelled one is about to free its
 * place (at the engine's next step), so admission does not count it: a master that ends a
 * request and sends the next one at once is not told busy. */
static int32_t live_locked(dais_sched *s)
{
    int32_t n = 0;
    for (sreq *q = s->pend_head; q != NULL; q = q->next)
        n += !q->cancel;
    for (int32_t i = 0; i < s->cfg.slots; i++)
        n += s->slots[i].req != NULL && !s->slots[i].req->cancel;
    return n;
}

/* A request id is a duplicate when a live (not cancelled) request of the same owner has it;
 * requests of a closed connection that are still winding down do not count, so a master that
 * reconnects may resend the same id at once. */
static bool in_flight_locked(dais_sched *s, const char *id, uint64_t owner)
{
    for (sreq *q = s->pend_head; q != NULL; q = q->next)
        if (!q->cancel && q->owner == owner && strcmp(q->r.request_id, id) == 0) return true;
    for (int32_t i = 0; i < s->cfg.slots; i++) {
        const sreq *q = s->slots[i].req;
        if (q != NULL && !q->cancel && q->owner == owner && strcmp(q->r.request_id, id) == 0)
            return true;
    }
    return false;
}

int dais_sched_submit(dais_sched *s, dais_msg_infer_req *req, uint64_t owner, uint64_t recv_ns,
                      enum dais_perr *perr, char *msg, size_t msg_cap)
{
    *perr = DAIS_PERR_NONE;
    const char *why = NULL;
    if (s->mode == MODE_FIRST || s->mode == MODE_MIDDLE)
        why = "this worker is a pipeline stage: it takes SHARD_ACTIVATION input, not requests";
    else if (s->mode == MODE_LAST && !req->pipeline)
        why = "this worker holds only the last layers: its requests come through the pipeline";
    else if (s->mode == MODE_WHOLE && req->pipeline)
        why = "this worker holds the whole model: a pipeline request needs a last stage";
    if (why != NULL) {
        *perr = DAIS_PERR_BAD_REQUEST;
        snprintf(msg, msg_cap, "%s (layers [%d, %d))", why, s->layer_first, s->layer_last);
        dais_infer_req_clear(req);
        return DAIS_EINVAL;
    }
    if (req->params.top_k > s->n_vocab) {
        *perr = DAIS_PERR_BAD_REQUEST;
        snprintf(msg, msg_cap, "params.top_k %d is above n_vocab %d", req->params.top_k,
                 s->n_vocab);
        dais_infer_req_clear(req);
        return DAIS_EINVAL;
    }
    sreq *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        *perr = DAIS_PERR_INTERNAL;
        snprintf(msg, msg_cap, "out of memory");
        dais_infer_req_clear(req);
        return DAIS_ENOMEM;
    }
    q->r = *req;
    memset(req, 0, sizeof(*req));
    q->owner = owner;
    q->recv_ns = recv_ns;
    q->deadline_ns = q->r.deadline_ms > 0 ? recv_ns + (uint64_t)q->r.deadline_ms * 1000000u : 0;
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    if (s->closed) {
        *perr = DAIS_PERR_DRAINING;
        snprintf(msg, msg_cap, "worker is draining");
        rc = DAIS_EBUSY;
    } else if (live_locked(s) >= s->cfg.slots + s->cfg.queue) {
        *perr = DAIS_PERR_BUSY;
        snprintf(msg, msg_cap, "all %d slots and %d queue places are taken", s->cfg.slots,
                 s->cfg.queue);
        rc = DAIS_EBUSY;
    } else if (in_flight_locked(s, q->r.request_id, owner)) {
        *perr = DAIS_PERR_DUPLICATE;
        snprintf(msg, msg_cap, "request_id '%s' is already in flight", q->r.request_id);
        rc = DAIS_EINVAL;
    } else {
        if (s->pend_tail != NULL)
            s->pend_tail->next = q;
        else
            s->pend_head = q;
        s->pend_tail = q;
        s->n_pend++;
        s->st.queue_depth = s->n_pend;
        s->input_gen++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc != 0) free_sreq(q);
    return rc;
}

/* The live (not cancelled) request or sequence `id` of `owner`, queued or in a slot. */
static sreq *find_live_locked(dais_sched *s, uint64_t owner, const char *id)
{
    for (sreq *q = s->pend_head; q != NULL; q = q->next)
        if (!q->cancel && q->owner == owner && strcmp(q->r.request_id, id) == 0) return q;
    for (int32_t i = 0; i < s->cfg.slots; i++) {
        sreq *q = s->slots[i].req;
        if (q != NULL && !q->cancel && q->owner == owner && strcmp(q->r.request_id, id) == 0 &&
            s->slots[i].phase != SLOT_DONE)
            return q;
    }
    return NULL;
}

int dais_sched_shard_input(dais_sched *s, dais_msg_shard *a, uint64_t owner, uint64_t recv_ns,
                           enum dais_perr *perr, char *msg, size_t msg_cap)
{
    *perr = DAIS_PERR_NONE;
    bool want_tokens = s->mode == MODE_FIRST;
    schunk *c = NULL;
    sreq *fresh = NULL;
    bool locked = false;
    int rc = DAIS_EINVAL;
#define SHARD_FAIL(code, ...)                                                                      \
    do {                                                                                           \
        *perr = (code);                                                                            \
        snprintf(msg, msg_cap, __VA_ARGS__);                                                       \
        goto out;                                                                                  \
    } while (0)
    if (s->mode == MODE_WHOLE)
        SHARD_FAIL(DAIS_PERR_UNSUPPORTED, "this worker holds the whole model: it takes "
                                          "INFERENCE_REQUEST, not pipeline input");
    if (want_tokens != (a->kind == DAIS_SHARD_TOKENS))
        SHARD_FAIL(DAIS_PERR_BAD_REQUEST, "this worker holds layers [%d, %d): its input is %s",
                   s->layer_first, s->layer_last, want_tokens ? "token ids" : "hidden states");
    if (!want_tokens && a->dim != s->dim)
        SHARD_FAIL(DAIS_PERR_BAD_REQUEST, "hidden states of dim %d; the model's is %d", a->dim,
                   s->dim);
    if (a->n_tokens > s->cfg.batch)
        SHARD_FAIL(DAIS_PERR_BAD_REQUEST, "%d positions in one input; this worker's batch is %d",
                   a->n_tokens, s->cfg.batch);
    if ((int64_t)a->pos + a->n_tokens > s->cfg.n_ctx)
        SHARD_FAIL(DAIS_PERR_CTX_FULL, "positions %d..%d do not fit a context of %d", a->pos,
                   a->pos + a->n_tokens - 1, s->cfg.n_ctx);
    for (int32_t i = 0; want_tokens && i < a->n_tokens; i++)
        if (a->tokens[i] >= s->n_vocab)
            SHARD_FAIL(DAIS_PERR_BAD_REQUEST, "token id %d at %d is not below n_vocab %d",
                       a->tokens[i], i, s->n_vocab);
    c = calloc(1, sizeof(*c));
    fresh = s->mode != MODE_LAST && a->pos == 0 ? calloc(1, sizeof(*fresh)) : NULL;
    if (c == NULL || (s->mode != MODE_LAST && a->pos == 0 && fresh == NULL))
        SHARD_FAIL(DAIS_PERR_INTERNAL, "out of memory");
    c->pos = a->pos;
    c->n = a->n_tokens;
    c->tokens = a->tokens;
    c->hidden = a->hidden;
    a->tokens = NULL;
    a->hidden = NULL;
    pthread_mutex_lock(&s->mu);
    locked = true;
    sreq *q = find_live_locked(s, owner, a->request_id);
    if (q == NULL) {
        if (s->mode == MODE_LAST)
            SHARD_FAIL(DAIS_PERR_BAD_REQUEST, "no pipeline request '%s' is in flight",
                       a->request_id);
        if (fresh == NULL)
            SHARD_FAIL(DAIS_PERR_BAD_REQUEST,
                       "no sequence '%s' is open (input at position %d; a sequence opens at 0)",
                       a->request_id, a->pos);
        if (s->closed) SHARD_FAIL(DAIS_PERR_DRAINING, "worker is draining");
        if (live_locked(s) >= s->cfg.slots + s->cfg.queue)
            SHARD_FAIL(DAIS_PERR_BUSY, "all %d slots and %d queue places are taken", s->cfg.slots,
                       s->cfg.queue);
        q = fresh;
        fresh = NULL;
        q->stage = true;
        snprintf(q->r.request_id, sizeof(q->r.request_id), "%s", a->request_id);
        q->owner = owner;
        q->recv_ns = recv_ns;
        q->deadline_ns = a->deadline_ms > 0 ? recv_ns + (uint64_t)a->deadline_ms * 1000000u : 0;
        if (s->pend_tail != NULL)
            s->pend_tail->next = q;
        else
            s->pend_head = q;
        s->pend_tail = q;
        s->n_pend++;
    } else if (!q->stage && !q->r.pipeline) {
        SHARD_FAIL(DAIS_PERR_BAD_REQUEST, "'%s' is not a pipeline request", a->request_id);
    }
    if (a->pos != q->in_next)
        SHARD_FAIL(DAIS_PERR_BAD_REQUEST, "input at position %d; sequence '%s' continues at %d",
                   a->pos, a->request_id, q->in_next);
    if (q->in_tail != NULL)
        q->in_tail->next = c;
    else
        q->in_head = c;
    q->in_tail = c;
    q->in_next += c->n;
    c = NULL;
    s->input_gen++;
    pthread_cond_signal(&s->cv);
    rc = 0;
#undef SHARD_FAIL
out:
    if (locked) pthread_mutex_unlock(&s->mu);
    free(fresh);
    free_chunks(c);
    dais_shard_clear(a);
    return rc;
}

/* Marks requests cancelled: every one (`all`), or those of `owner` with request id `id`
 * (every one of `owner` when id is NULL). Returns how many were newly marked. */
static bool matches(const sreq *q, bool all, uint64_t owner, const char *id)
{
    return all || (q->owner == owner && (id == NULL || strcmp(q->r.request_id, id) == 0));
}

static int cancel_where(dais_sched *s, bool all, uint64_t owner, const char *id)
{
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (sreq *q = s->pend_head; q != NULL; q = q->next) {
        if (matches(q, all, owner, id)) {
            n += !q->cancel;
            q->cancel = true;
        }
    }
    for (int32_t i = 0; i < s->cfg.slots; i++) {
        sreq *q = s->slots[i].req;
        if (q != NULL && matches(q, all, owner, id)) {
            n += !q->cancel;
            q->cancel = true;
        }
    }
    if (n > 0) {
        s->input_gen++;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

bool dais_sched_cancel(dais_sched *s, uint64_t owner, const char *request_id)
{
    return cancel_where(s, false, owner, request_id) > 0;
}

int dais_sched_cancel_owner(dais_sched *s, uint64_t owner)
{
    return cancel_where(s, false, owner, NULL);
}

int dais_sched_cancel_all(dais_sched *s)
{
    return cancel_where(s, true, 0, NULL);
}

void dais_sched_close_admission(dais_sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_mutex_unlock(&s->mu);
}

dais_sched_event *dais_sched_poll(dais_sched *s)
{
    pthread_mutex_lock(&s->mu);
    dais_sched_event *ev = s->out_head;
    s->out_head = s->out_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    return ev;
}

void dais_sched_event_release(dais_sched *s, dais_sched_event *ev)
{
    if (ev == NULL) return;
    pthread_mutex_lock(&s->mu);
    if (s->n_free_evs < MAX_CACHED_EVENTS) {
        ev->next = s->free_evs;
        s->free_evs = ev;
        s->n_free_evs++;
        ev = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    event_destroy(ev);
}

void dais_sched_get_stats(dais_sched *s, dais_sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->queue_depth = s->n_pend;
    out->active = s->n_active;
    pthread_mutex_unlock(&s->mu);
}

int32_t dais_sched_in_flight(dais_sched *s)
{
    pthread_mutex_lock(&s->mu);
    int32_t n = s->n_pend + s->n_active;
    pthread_mutex_unlock(&s->mu);
    return n;
}
