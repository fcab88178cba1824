/*
 * Single-sequence text generation: prompt → tokens → prefill → sample/decode loop → a stream of
 * UTF-8 text pieces through a callback, stopping at EOS, at a stop string, at the token limit
 * or when the context is full, with timings. `dais generate` is a thin CLI over
 * dais_generate; the worker reuses the pieces (dais_prefill, dais_stopper) in its scheduler.
 */
#ifndef DAIS_ENGINE_GENERATE_H
#define DAIS_ENGINE_GENERATE_H

#include "common/error.h"
#include "engine/model.h"
#include "engine/sampler.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- prefill ------------------------------------------------------------------------------ */

/* Runs tokens[0..n) of one sequence through every layer at positions dais_kv_len(kv) onward,
 * in batches of up to dais_ctx_max_batch(c) tokens, and writes the last token's logits
 * (n_vocab floats) to `logits`. kv must cover all layers. Allocates the batch arrays once per
 * call. Returns 0, DAIS_ECTXFULL if the tokens do not fit in the cache (nothing is run then),
 * DAIS_EINVAL, or DAIS_ENOMEM. The thread that owns `c`. */
int dais_prefill(dais_ctx *c, dais_kv *kv, const int32_t *tokens, int32_t n, float *logits);

/* Tokenizes a prompt into a newly allocated array (*out, owned by the caller, free()) of *n
 * ids. Returns 0 or a negative code with `err` filled. */
int dais_tokenize_alloc(const dais_tokenizer *t, const char *text, size_t len, bool add_bos,
                        bool parse_special, int32_t **out, int32_t *n, dais_err *err);

/* ---- stop strings ------------------------------------------------------------------------- */

/* Emits a text stream while watching for stop strings: text that could be the start of a stop
 * string is held back until it is known not to be, and the stream ends just before the first
 * stop string found (which is not emitted). Buffers are sized at init; pushes never allocate. */
typedef int (*dais_text_fn)(void *user, const char *text, size_t len); /* non-zero = cancel */

#define DAIS_STOP_MAX     16  /* stop strings */
#define DAIS_STOP_MAX_LEN 256 /* bytes in one stop string */

typedef struct dais_stopper {
    const char *stop[DAIS_STOP_MAX]; /* borrowed */
    size_t stop_len[DAIS_STOP_MAX];
    int n_stop;
    size_t max_len; /* longest stop string */
    char *buf;      /* held-back text, cap bytes */
    size_t n_buf, cap;
    bool hit; /* a stop string was found; further pushes emit nothing */
} dais_stopper;

/* Borrows the n_stop strings (must outlive the stopper). Empty strings are ignored. Returns 0,
 * DAIS_EINVAL (too many or too long), or DAIS_ENOMEM. */
int dais_stopper_init(dais_stopper *s, const char *const *stop, int n_stop);
void dais_stopper_free(dais_stopper *s);
/* Adds text; calls emit for what is safe to show. Returns 0, 1 when a stop string was found
 * (emit has received the text before it), or the callback's non-zero value. */
int dais_stopper_push(dais_stopper *s, const char *text, size_t len, dais_text_fn emit, void *user);
/* End of stream: emits whatever is held back (unless a stop string was found). */
int dais_stopper_finish(dais_stopper *s, dais_text_fn emit, void *user);

/* ---- the generation loop ------------------------------------------------------------------ */

enum dais_gen_stop {
    DAIS_GEN_STOP_LIMIT = 0, /* n_predict tokens generated */
    DAIS_GEN_STOP_EOS,       /* the model produced an end-of-generation token (or BOS) */
    DAIS_GEN_STOP_STRING,    /* a stop string appeared */
    DAIS_GEN_STOP_CTX,       /* the context (KV cache) is full */
    DAIS_GEN_STOP_CANCELLED, /* a callback returned non-zero */
};
const char *dais_gen_stop_name(int stop); /* "limit", "eos", "stop", "context", "cancelled" */

typedef struct dais_gen_params {
    int32_t n_predict; /* most new tokens (default 128); <= 0: until EOS or context */
    dais_sampler_params sampling;
    const char *const *stop; /* n_stop stop strings (borrowed), at most DAIS_STOP_MAX */
    int n_stop;
    int add_bos;        /* -1 = the tokenizer's default (default), 0 no, 1 yes */
    bool parse_special; /* control-token spellings in the prompt become tokens (false) */
    bool echo_prompt;   /* pass the prompt's decoded text to on_text first (false) */
    bool ignore_eos;    /* keep going past EOS (false) */
} dais_gen_params;

void dais_gen_params_default(dais_gen_params *p);

typedef struct dais_gen_callbacks {
    dais_text_fn on_text;                       /* decoded text as it is produced */
    int (*on_token)(void *user, int32_t token); /* each generated id; non-zero = cancel */
    void *user;
} dais_gen_callbacks;

typedef struct dais_gen_stats {
    int32_t n_prompt; /* prompt tokens, BOS included */
    int32_t n_gen;    /* generated tokens (the EOS that ended generation is not counted) */
    int32_t n_decode; /* single-token forward passes after the prefill */
    double prefill_s; /* the prompt's forward passes */
    double decode_s;  /* from the end of the prefill to the end (forward + sampling) */
    double total_s;   /* the whole call */
    int stop;         /* enum dais_gen_stop */
} dais_gen_stats;

/* Generates from `prompt` (len bytes, any bytes) with the model of `c` into `kv` (which must
 * cover all layers; it is emptied first). Callbacks may be NULL. On return `st` (may be NULL)
 * holds the counts and timings, also after a cancel. Returns 0, or a negative code with `err`
 * filled: DAIS_ECTXFULL when the prompt does not fit in the cache (one free position is
 * needed), DAIS_EINVAL for bad parameters or an empty prompt without BOS, DAIS_ENOMEM.
 * Allocates its buffers once per call, never per token. The thread that owns `c`. */
int dais_generate(dais_ctx *c, dais_kv *kv, const char *prompt, size_t len,
                  const dais_gen_params *p, const dais_gen_callbacks *cb, dais_gen_stats *st,
                  dais_err *err);

#endif
