/*
 * Shard files: a GGUF file holding only the tensors one pipeline stage needs.
 *
 * A shard file of layers [first, last) of a source model carries the source's metadata
 * unchanged (llama.block_count stays the whole model's count, the tokenizer is complete) plus
 * three keys:
 *   dais.shard.layer_first    u32  first layer held
 *   dais.shard.layer_last     u32  one past the last layer held (<= block_count)
 *   dais.shard.source_sha256  str  SHA-256 of the source file, 64 lowercase hex digits
 * and, in the source's order and with the same names, types, shapes and bytes: every blk.N.*
 * for N in [first, last); token_embd.weight when first == 0; output_norm.weight and
 * output.weight (token_embd.weight when the output is tied to the embedding) when last ==
 * block_count; rope_freqs.weight when the source has it. The same source and range always
 * give the same bytes. docs/sharding.md ("Shard files") describes how workers use them.
 */
#ifndef DAIS_ENGINE_SHARD_H
#define DAIS_ENGINE_SHARD_H

#include "common/error.h"
#include "engine/gguf.h"

#include <stdbool.h>
#include <stdint.h>

#define DAIS_SHARD_KEY_FIRST  "dais.shard.layer_first"
#define DAIS_SHARD_KEY_LAST   "dais.shard.layer_last"
#define DAIS_SHARD_KEY_SOURCE "dais.shard.source_sha256"

typedef struct dais_shard_info {
    int32_t layer_first, layer_last; /* [first, last) */
    char source_sha256[65];          /* 64 lowercase hex digits + NUL */
} dais_shard_info;

/* Reads and validates a file's shard keys against `n_layers` (its llama.block_count).
 * Returns 0 with *out filled when the file is a shard file, DAIS_ENOTFOUND (err untouched)
 * when it has none of the keys (an ordinary model file), or DAIS_EFORMAT with `err` naming
 * the key when a key is missing, mistyped or out of range (first < last <= n_layers), or the
 * source hash is not 64 lowercase hex digits. Any thread. */
int dais_shard_read(const dais_gguf *g, int32_t n_layers, dais_shard_info *out, dais_err *err);

/* Whether the shard file of [first, last) of an n_layers model needs tensor `name`;
 * `tied` = the model has no output.weight (the output reuses token_embd.weight). */
bool dais_shard_needs_tensor(const char *name, int32_t first, int32_t last, int32_t n_layers,
                             bool tied);

/* Writes the shard file of layers [first, last) of the model file `in` to `out`. `in` must be
 * a whole model the engine can load (it is validated and hashed first); 0 <= first < last <=
 * n_layers and the range must not be the whole model. Tensor data is written from the mapped
 * source, tensor by tensor (never copied into memory as a whole); the file appears at `out`
 * only when complete (written beside it and renamed). When `info` is not NULL it receives the
 * range and source hash written. Returns 0 or a negative code with `err` filled. */
int dais_shard_write(const char *in, int32_t first, int32_t last, const char *out,
                     dais_shard_info *info, dais_err *err);

#endif
