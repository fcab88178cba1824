/*
 * Synthetic Llama models: writes a valid GGUF file with random weights of any shape and any
 * compute type, plus a real `llama`-kind (SentencePiece-style) vocabulary, so tests and
 * benchmarks can run models of real shapes without downloading weights. Weights are uniform
 * random, scaled by 1/sqrt(fan-in) (and the residual projections further by 1/sqrt(2·layers))
 * so activations stay of order one through any depth; each row is generated from its own
 * seed, so a file is identical for a given seed whatever the thread count.
 *
 * Vocabulary: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then pieces in decreasing
 * score: ▁, single characters, ▁-prefixed common English words with all their prefixes (so
 * BPE merges can reach them), letter pairs, then longer letter strings until n_vocab.
 */
#ifndef DAIS_ENGINE_SYNTH_H
#define DAIS_ENGINE_SYNTH_H

#include "common/error.h"
#include "engine/model.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct dais_synth_params {
    int32_t dim, n_layers, n_heads, n_kv_heads, ffn_dim, n_vocab, n_ctx;
    uint32_t type; /* enum dais_dtype of every weight matrix and the embedding */
    uint64_t seed;
    float rope_base;  /* written as llama.rope.freq_base */
    bool tied_output; /* omit output.weight (the embedding is reused) */
    /* Optional rope scaling metadata (DAIS_ROPE_SCALING_NONE = none written). */
    int32_t rope_scaling; /* enum dais_rope_scaling */
    float rope_scale_factor, rope_low_freq_factor, rope_high_freq_factor;
    int32_t rope_orig_ctx;
    bool rope_freqs_tensor; /* also write rope_freqs.weight (head_dim/2 factors in [1, 8]) */
    int n_threads;          /* threads for generating and quantizing (>= 1) */
} dais_synth_params;

/* A small default model (dim 64, 2 layers, 4 heads, 2 KV heads, ffn 160, vocab 320, ctx 256,
 * f32, seed 1, rope base 10000, 1 thread). */
void dais_synth_params_default(dais_synth_params *p);

/* Writes the model to `path`. Checks the shape (every matrix row a whole number of blocks of
 * `type`, heads dividing dim, n_vocab >= 262 …) and returns 0, or a negative code with `err`
 * saying why. Memory: the GGUF writer keeps every tensor until the file is written, so peak
 * memory is about the file size. Any thread. */
int dais_synth_write(const dais_synth_params *p, const char *path, dais_err *err);

#endif
