/*
 * Tokenizers loaded from GGUF metadata (tokenizer.ggml.*):
 *   - "llama": SentencePiece-style BPE over scored pieces, with byte fallback (<0xXX>) and the
 *     ▁ (U+2581) space marker; a leading space is added as SentencePiece does.
 *   - "gpt2": byte-level BPE with ranked merges and a pre-tokenizer regex chosen from
 *     tokenizer.ggml.pre (llama-bpe / Llama 3 and the GPT-2 default), run with PCRE2.
 * Special/control tokens (<s>, <|begin_of_text|> …) are recognised in text only when asked.
 * Decoding goes through dais_detok, which holds back incomplete UTF-8 sequences so a
 * stream of pieces never emits broken UTF-8.
 * A tokenizer is immutable after loading and may be shared by any number of threads.
 */
#ifndef DAIS_ENGINE_TOKENIZER_H
#define DAIS_ENGINE_TOKENIZER_H

#include "common/error.h"
#include "engine/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dais_tokenizer dais_tokenizer;

enum dais_tok_kind { DAIS_TOK_LLAMA = 1, DAIS_TOK_GPT2 = 2 };

/* Builds a tokenizer from the metadata of `g` (copies what it needs; `g` may be freed after).
 * NULL with `err` naming the missing or malformed key. */
dais_tokenizer *dais_tokenizer_from_gguf(const dais_gguf *g, dais_err *err);
void dais_tokenizer_free(dais_tokenizer *t);

enum dais_tok_kind dais_tokenizer_kind(const dais_tokenizer *t);
int32_t dais_tokenizer_n_vocab(const dais_tokenizer *t);
int32_t dais_tokenizer_bos(const dais_tokenizer *t); /* -1 when the vocabulary has none */
int32_t dais_tokenizer_eos(const dais_tokenizer *t);
bool dais_tokenizer_is_eog(const dais_tokenizer *t, int32_t id); /* EOS, EOT, <|eot_id|> … */
bool dais_tokenizer_add_bos(const dais_tokenizer *t); /* tokenizer.ggml.add_bos_token, default per kind */

/* Encodes `len` bytes of `text` (need not be valid UTF-8: invalid bytes go through byte
 * fallback / byte-level tokens and are never dropped). Prepends BOS when `add_bos`.
 * `parse_special`: text matching a special token's spelling becomes that token.
 * Writes at most `cap` ids to `out`; returns the number of ids the full encoding has
 * (which may exceed cap — call again with a larger buffer), or a negative code. */
int64_t dais_tokenize(const dais_tokenizer *t, const char *text, size_t len, bool add_bos,
                      bool parse_special, int32_t *out, int64_t cap);

/* Raw bytes of a token as it appears in text (▁ → space, byte tokens → that byte, gpt2
 * byte-level symbols → their bytes; control tokens → their spelling). *len gets the length.
 * Returns NULL for an id out of range. */
const char *dais_token_text(const dais_tokenizer *t, int32_t id, size_t *len);

/* Streaming decoder: feed ids one by one, get back only complete UTF-8. */
typedef struct dais_detok {
    const dais_tokenizer *tok;
    unsigned char pending[8]; /* bytes of an unfinished UTF-8 sequence */
    int n_pending;
    bool at_start;      /* strip the leading space SentencePiece adds to the first piece */
    bool skip_special;  /* control tokens (BOS/EOS …) produce no text */
} dais_detok;

void dais_detok_init(dais_detok *d, const dais_tokenizer *t, bool skip_special);
/* Appends the text of `id` to out (cap bytes); returns bytes written (complete UTF-8 only;
 * a sequence that turns out invalid is emitted as U+FFFD), or DAIS_ETOOBIG if cap is too small
 * (cap >= token length + 16 always suffices). */
int dais_detok_push(dais_detok *d, int32_t id, char *out, size_t cap);
/* Flushes held-back bytes at the end of a stream (as U+FFFD for each incomplete sequence). */
int dais_detok_flush(dais_detok *d, char *out, size_t cap);

#endif
