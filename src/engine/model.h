/*
 * The Llama-family model and its forward pass.
 *
 * dais_model: the hyper-parameters read from GGUF metadata, the weight tensors (borrowed
 * from the memory-mapped file), and the tokenizer. Immutable once loaded; shared by threads.
 *
 * dais_kv: one sequence's KV cache for a layer range.
 *
 * dais_ctx: the buffers of one forward pass (activations for up to max_batch tokens, scratch
 * for the kernels, the thread pool). Sized once; the token loop never allocates.
 * One thread drives a ctx at a time.
 *
 * dais_forward runs a batch of tokens that may belong to several sequences (a prefill is one
 * sequence's prompt in one batch; a decode step is one token of each of several sequences)
 * through layers [layer_first, layer_last). When layer_first == 0 the input is the tokens'
 * embeddings, else `act_in`; when layer_last == n_layers it ends with the output norm and the
 * output matrix and writes logits for the tokens that asked for them, else it writes the
 * hidden state to `act_out`. That is how a model is split across workers (pipeline shards).
 */
#ifndef DAIS_ENGINE_MODEL_H
#define DAIS_ENGINE_MODEL_H

#include "common/error.h"
#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/threadpool.h"
#include "engine/tokenizer.h"

#include <stdbool.h>
#include <stdint.h>

/* Limits on hyper-parameters read from a file (anything larger is rejected as malformed). */
#define DAIS_MODEL_MAX_DIM      65536
#define DAIS_MODEL_MAX_LAYERS   1024
#define DAIS_MODEL_MAX_HEADS    1024
#define DAIS_MODEL_MAX_HEAD_DIM 1024
#define DAIS_MODEL_MAX_FFN      (1 << 20)
#define DAIS_MODEL_MAX_CTX      (1 << 24)

enum dais_rope_scaling {
    DAIS_ROPE_SCALING_NONE = 0,
    DAIS_ROPE_SCALING_LINEAR = 1, /* positions divided by rope_scale_factor */
    DAIS_ROPE_SCALING_LLAMA3 = 2, /* per-frequency factors (Llama 3.1 "llama3" rope_type) */
};

typedef struct dais_hparams {
    char arch[32];  /* general.architecture ("llama") */
    char name[128]; /* general.name, may be empty */
    int32_t n_vocab;
    int32_t dim;         /* embedding_length */
    int32_t n_layers;    /* block_count */
    int32_t n_heads;     /* attention.head_count */
    int32_t n_kv_heads;  /* attention.head_count_kv (defaults to n_heads) */
    int32_t head_dim;    /* dim / n_heads (or attention.key_length) */
    int32_t ffn_dim;     /* feed_forward_length */
    int32_t n_ctx_train; /* context_length */
    int32_t rope_dim;    /* rope.dimension_count (defaults to head_dim) */
    float rms_eps;       /* attention.layer_norm_rms_epsilon, default 1e-5 */
    float rope_base;     /* rope.freq_base, default 10000 */
    /* rope.scaling.type: "none" / "linear" / "llama3"; for llama3 also rope.scaling.factor,
     * .low_freq_factor (default 1), .high_freq_factor (default 4), .original_context_length */
    int32_t rope_scaling; /* enum dais_rope_scaling */
    float rope_scale_factor, rope_low_freq_factor, rope_high_freq_factor;
    int32_t rope_orig_ctx;
    bool rope_freqs_tensor; /* rope_freqs.weight present: its factors divide the frequencies */
    bool tied_output;       /* output.weight absent: the embedding is reused (known only when
                             * the file holds the last layer) */
} dais_hparams;

typedef struct dais_model dais_model;

/* Opens and validates a GGUF model: architecture, hyper-parameters, every tensor's presence,
 * shape and type, and the tokenizer. Returns an owned model (free with dais_model_free) or
 * NULL with `err` naming the problem (the key, or the tensor with expected and found shape).
 * Any thread. */
dais_model *dais_model_load(const char *path, dais_err *err);
/* As dais_model_load, but also accepts a shard file (engine/shard.h): then only the tensors its
 * layer range needs are looked for and validated (the embedding when it starts at layer 0; the
 * output norm and matrix when it ends at the last layer), dais_kv_new refuses caches and
 * dais_forward refuses batches outside the range. dais_model_load refuses a shard file with a
 * message naming its range. Any thread. */
dais_model *dais_model_load_any(const char *path, dais_err *err);
void dais_model_free(dais_model *m); /* accepts NULL */

/* The layers the file holds, [*first, *last) (either pointer may be NULL): [0, n_layers) for a
 * whole model file. Returns true when `m` was loaded from a shard file. */
bool dais_model_layer_range(const dais_model *m, int32_t *first, int32_t *last);
/* The SHA-256 (hex) of the model the file comes from: a shard file's dais.shard.source_sha256,
 * or dais_model_hash(m) for a whole file. This is what identifies the model across pipeline
 * stages. Same threads and NULL return as dais_model_hash. */
const char *dais_model_source_hash(const dais_model *m);

const dais_hparams *dais_model_hparams(const dais_model *m);
const dais_tokenizer *dais_model_tokenizer(const dais_model *m);
const dais_gguf *dais_model_gguf(const dais_model *m);
/* Hex SHA-256 of the file's bytes (64 hex digits + NUL; a shard file's own bytes). Computed on the
 * first call, by streaming the mapped file through OpenSSL (about 0.6 s per GB here), then cached;
 * any thread (a mutex serialises the first computation). Returns NULL only if OpenSSL fails. */
const char *dais_model_hash(const dais_model *m);
/* The hash cache behind dais_model_hash (docs/engine.md), for a file by path: lookup fills hex
 * (64 lowercase hex digits + NUL) from a valid entry and returns true; store records hex as the
 * hash of the file as it is now (for a caller that has just verified it). Best effort. */
bool dais_model_hash_cache_lookup(const char *path, char hex[65]);
void dais_model_hash_cache_store(const char *path, const char hex[65]);
/* Bytes of weights one forward pass over all layers the file holds reads for one token (every
 * layer matrix and norm, the output norm and matrix, one embedding row — the last two only when
 * held), for bandwidth figures. */
uint64_t dais_model_weight_bytes(const dais_model *m);

/* ---- KV cache ---------------------------------------------------------------------------- */

typedef struct dais_kv dais_kv;

/* A cache for one sequence of up to n_ctx positions over layers [layer_first, layer_last).
 * K and V are stored as f32: (n_layers_in_range, n_ctx, n_kv_heads * head_dim) each.
 * 1 <= n_ctx <= DAIS_MODEL_MAX_CTX; 0 <= layer_first < layer_last <= n_layers. Returns an
 * owned cache (free with dais_kv_free) or NULL on bad arguments or out of memory. */
dais_kv *dais_kv_new(const dais_model *m, int32_t n_ctx, int32_t layer_first, int32_t layer_last);
void dais_kv_free(dais_kv *kv); /* accepts NULL */
int32_t dais_kv_n_ctx(const dais_kv *kv);
int32_t dais_kv_len(const dais_kv *kv); /* positions filled so far */
/* Forgets positions >= len (no-op if len >= the current length). */
void dais_kv_truncate(dais_kv *kv, int32_t len);
uint64_t dais_kv_bytes(const dais_kv *kv); /* memory the cache holds */

/* ---- forward ----------------------------------------------------------------------------- */

typedef struct dais_ctx dais_ctx;

/* n_threads >= 1; max_batch >= 1 = most tokens one dais_forward call may carry. Borrows `m`,
 * which must outlive the ctx. Returns an owned ctx or NULL with `err` filled. */
dais_ctx *dais_ctx_new(const dais_model *m, int n_threads, int32_t max_batch, dais_err *err);
void dais_ctx_free(dais_ctx *c); /* accepts NULL */
dais_pool *dais_ctx_pool(dais_ctx *c);
int32_t dais_ctx_max_batch(const dais_ctx *c);
const dais_model *dais_ctx_model(const dais_ctx *c);

typedef struct dais_batch {
    int32_t n_tokens;
    const int32_t *token; /* (n_tokens) ids; used only when layer_first == 0 */
    const int32_t *pos;   /* (n_tokens) position of each token in its sequence */
    const int32_t *seq;   /* (n_tokens) index into the kv array passed to dais_forward */
    const bool *logits;   /* (n_tokens) which tokens want logits; NULL = only the last */
    int32_t layer_first;  /* run layers [layer_first, layer_last) */
    int32_t layer_last;
    const float *act_in; /* (n_tokens, dim) when layer_first > 0 */
    float *act_out;      /* (n_tokens, dim) when layer_last < n_layers */
} dais_batch;

/* Runs the batch. `kvs` holds n_kv caches; b->seq[i] indexes it. Positions of one sequence
 * must be consecutive and start at that sequence's current dais_kv_len (a sequence's tokens
 * appear in order); each cache used must cover exactly the batch's layer range, and no cache
 * may appear under two sequence indices. When layer_last == n_layers, `logits` receives
 * (number of tokens that asked, n_vocab) floats in batch order; otherwise it is unused.
 * On success each used cache's length grows by its number of tokens.
 * Returns 0, DAIS_ECTXFULL when a position is at or past a cache's n_ctx, DAIS_EINVAL for a
 * bad batch (size 0 or over max_batch, token id out of range, positions out of order, bad
 * sequence index, wrong layer range, missing buffer), DAIS_ERANGE when the model is a shard
 * file and the batch's layers are not all inside its range. On error no cache is changed.
 * The thread that owns `c`. */
int dais_forward(dais_ctx *c, const dais_batch *b, dais_kv *const *kvs, int32_t n_kv,
                 float *logits);

#endif
