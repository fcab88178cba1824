/*
 * The worker's engine thread: a continuous-batching scheduler over dais_forward.
 *
 * A fixed pool of `slots` sequences, each with its KV cache (allocated once), sampler,
 * detokenizer and output text state. Requests are submitted from the event loop thread; they
 * wait in a bounded queue until a slot is free (beyond slots + queue: refused as busy). Every
 * step the engine thread builds ONE batch: one decode token for each sequence that is
 * generating, then prompt tokens of sequences still in prefill (chunked to fill the batch up to
 * `batch` tokens), runs it through dais_forward, samples a token for each sequence that got
 * logits, and turns the results into events. A sequence ends at an end-of-generation token
 * (EOS/EOT, and BOS as llama2.c does), a stop string, max_tokens, a full context, its deadline,
 * or a cancel; its slot is reused at the next step.
 *
 * Cross-thread handoff (the one mechanism): both directions go through `mu`. The loop thread
 * submits/cancels under `mu` and signals the engine's condition variable; the engine appends
 * events to an outbox under `mu` and then calls the `wake` callback (the worker turns that
 * into event_active on its loop; tests use a condition variable). The loop takes the whole
 * outbox with dais_sched_poll and gives events back with dais_sched_event_release, so event
 * memory is recycled. The engine never holds `mu` during a forward pass, and the loop holds
 * it only for list operations.
 */
#ifndef DAIS_WORKER_SCHED_H
#define DAIS_WORKER_SCHED_H

#include "common/error.h"
#include "common/metrics.h"
#include "engine/model.h"
#include "proto/messages.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct dais_sched_config {
    int n_threads;              /* compute threads (>= 1) */
    int32_t slots;              /* sequences decoded together (>= 1) */
    int32_t n_ctx;              /* positions per sequence (1 .. model n_ctx_train) */
    int32_t batch;              /* most tokens per forward pass (raised to slots if lower) */
    int32_t queue;              /* requests that may wait beyond the slots (>= 0) */
    dais_histogram *batch_hist; /* optional: sequences per forward pass are observed here */
    /* The layers this worker holds, [layer_first, layer_last); 0, 0 = the whole model. A
     * worker that holds only part of the model is one stage of a pipeline (docs/sharding.md):
     *   first stage  [0, k):    SHARD_ACTIVATION tokens in, hidden states out
     *   middle stage [j, k):    hidden states in, hidden states out
     *   last stage   [j, n):    pipeline INFERENCE_REQUESTs (prompt, sampling, text) whose
     *                           positions arrive as hidden states; each sampled token goes out
     *                           as a NEXT event for the master to feed the first stage. */
    int32_t layer_first, layer_last;
} dais_sched_config;

enum dais_sched_ev_kind {
    DAIS_SEV_PROMPT = 1, /* the prompt's token ids (INFERENCE_RESPONSE frame 0) */
    DAIS_SEV_PIECE,      /* committed text + its tokens (a partial frame) */
    DAIS_SEV_FINAL,      /* the end: finish reason, usage, timings (+ last text/tokens) */
    DAIS_SEV_REJECT,     /* refused before it started: send ERROR perr/message */
    DAIS_SEV_HIDDEN,     /* a stage's output: hidden states of n_hidden positions from pos */
    DAIS_SEV_NEXT,       /* last stage: tokens[0] is the input at position pos (feed it to the
                            first stage) */
};

typedef struct dais_sched_event {
    struct dais_sched_event *next;
    enum dais_sched_ev_kind kind;
    uint64_t owner; /* the tag given at submit */
    char request_id[DAIS_REQUEST_ID_MAX + 1];
    uint32_t index; /* frame index (PROMPT 0, then 1, 2 …) */
    char *text;     /* (text_cap) */
    size_t text_len, text_cap;
    int32_t *tokens; /* (tok_cap) */
    int32_t n_tokens, tok_cap;
    /* FINAL */
    enum dais_finish finish;
    int32_t prompt_tokens, completion_tokens;
    dais_infer_timings timings;
    /* FINAL with finish == ERROR, and REJECT */
    enum dais_perr perr;
    char message[256];
    /* HIDDEN / NEXT */
    int32_t pos;
    float *hidden; /* (hidden_cap) n_hidden x dim floats */
    int32_t n_hidden, dim;
    size_t hidden_cap;
} dais_sched_event;

typedef struct dais_sched_stats {
    int32_t queue_depth, active, slots;
    int64_t kv_used, kv_total; /* positions */
    uint64_t kv_bytes_per_pos; /* bytes of one position over all layers */
    uint64_t requests_total;   /* finished (any reason) */
    uint64_t requests_ok, requests_cancelled, requests_error, requests_rejected;
    uint64_t prefill_tokens_total, decode_tokens_total;
    uint64_t steps_total, engine_errors;
    double last_prefill_tps, last_decode_tps; /* of the last step that did each */
    int32_t last_batch_seqs;                  /* sequences in the last forward pass */
} dais_sched_stats;

typedef struct dais_sched dais_sched;

/* Allocates every slot (KV caches, samplers' scratch, logits) and starts the engine thread.
 * `m` is borrowed and must outlive the scheduler. `wake(wake_arg)` is called from the engine
 * thread, without any lock held, whenever new events are in the outbox. NULL with err on a bad
 * configuration or no memory. Call from the loop thread. */
dais_sched *dais_sched_new(const dais_model *m, const dais_sched_config *cfg, void (*wake)(void *),
                           void *wake_arg, dais_err *err);

/* Stops the engine thread (after its current step) and frees everything, including events
 * not yet polled and requests not finished (no events are produced for them). Accepts NULL. */
void dais_sched_free(dais_sched *s);

/* Submits a decoded request; takes ownership of its prompt/tokens (req is left cleared) on
 * success AND on failure. `owner` tags every event of the request (the worker uses its
 * connection generation); `recv_ns` is the dais_now_ns() of receipt (timings and deadline).
 * Returns 0 (queued) or a negative code with *perr set: BUSY (slots and queue full),
 * DUPLICATE (request_id in flight), BAD_REQUEST (a parameter the model cannot honour, e.g.
 * top_k > n_vocab), DRAINING (after dais_sched_close_admission). Loop thread. */
int dais_sched_submit(dais_sched *s, dais_msg_infer_req *req, uint64_t owner, uint64_t recv_ns,
                      enum dais_perr *perr, char *msg, size_t msg_cap);

/* Input for a pipeline sequence (a SHARD_ACTIVATION from the master); takes ownership of
 * a->tokens / a->hidden (a is left cleared) on success AND on failure. On the first and middle
 * stage, position 0 of an unknown request id opens a sequence (it takes a slot like a request;
 * CANCEL or the connection's end frees it); on the last stage the id must be a pipeline request
 * submitted before. Input must continue exactly where the sequence's input ended, carry at
 * most `batch` positions, match the stage (tokens for the first stage, hidden states of the
 * model's dim otherwise) and fit the context. Returns 0 or a negative code with *perr and msg
 * set (BAD_REQUEST, CTX_FULL, BUSY, DRAINING, UNSUPPORTED on a whole-model worker). Loop
 * thread. */
int dais_sched_shard_input(dais_sched *s, dais_msg_shard *a, uint64_t owner, uint64_t recv_ns,
                           enum dais_perr *perr, char *msg, size_t msg_cap);

/* Asks request `request_id` of `owner` to stop: at its next step (FINAL cancelled), or at once
 * if still queued. Returns true if it was in flight. Any thread. */
bool dais_sched_cancel(dais_sched *s, uint64_t owner, const char *request_id);
/* Cancels every request of `owner` (a closed connection). Returns how many. Any thread. */
int dais_sched_cancel_owner(dais_sched *s, uint64_t owner);
/* Cancels everything in flight. Any thread. */
int dais_sched_cancel_all(dais_sched *s);
/* From now on submit answers DRAINING. Any thread. */
void dais_sched_close_admission(dais_sched *s);

/* Takes every event produced so far, oldest first (a list through ->next), or NULL. */
dais_sched_event *dais_sched_poll(dais_sched *s);
/* Gives one event back for reuse (accepts NULL). Its `next` is ignored. */
void dais_sched_event_release(dais_sched *s, dais_sched_event *ev);

/* A consistent snapshot of the counters and gauges. Any thread. */
void dais_sched_get_stats(dais_sched *s, dais_sched_stats *out);
/* Requests queued or in slots. Any thread. */
int32_t dais_sched_in_flight(dais_sched *s);

#endif
