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
 *
 * Merge order (tests/tokenizer/README.md has the details): both kinds merge the adjacent
 * pair with the best rank first, the leftmost pair among equal ranks. For "gpt2" the rank is
 * the position in tokenizer.ggml.merges. For "llama" the rank orders pairs by the score of
 * the merged piece (higher first), then by the ids of the left and right pieces: the order of
 * the Hugging Face merges list for SentencePiece vocabularies, which matches SentencePiece
 * except where several pieces share a score (Llama 2's runs of spaces).
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

/* tokenizer.ggml.token_type values (as llama.cpp writes them). */
enum dais_tok_type {
    DAIS_TOKT_UNDEFINED = 0, /* treated as normal */
    DAIS_TOKT_NORMAL = 1,
    DAIS_TOKT_UNKNOWN = 2,
    DAIS_TOKT_CONTROL = 3,
    DAIS_TOKT_USER_DEFINED = 4,
    DAIS_TOKT_UNUSED = 5,
    DAIS_TOKT_BYTE = 6,
};

/* Limits on what a vocabulary or an input may hold; larger is rejected with a clear error. */
#define DAIS_TOK_MAX_VOCAB  (1 << 22)    /* tokens */
#define DAIS_TOK_MAX_MERGES (1 << 24)    /* merges */
#define DAIS_TOK_MAX_PIECE  65535        /* bytes in one token string */
#define DAIS_TOK_MAX_TEXT   (256u << 20) /* bytes of text one dais_tokenize call accepts */

/* Everything a tokenizer is built from, as the tokenizer.ggml.* keys hold it. The tokenizer
 * copies what it needs; the caller keeps ownership of every array. */
typedef struct dais_tokenizer_params {
    const char *model; /* tokenizer.ggml.model: "llama" or "gpt2" */
    size_t model_len;
    const char *pre; /* tokenizer.ggml.pre, or NULL ("default") */
    size_t pre_len;
    int64_t n_vocab;
    const char *const *tokens;  /* (n_vocab) pieces as GGUF stores them (▁ for spaces …) */
    const size_t *token_lens;   /* (n_vocab) byte lengths, or NULL for NUL-terminated pieces */
    const float *scores;        /* (n_vocab) or NULL; required for "llama" */
    const int32_t *token_types; /* (n_vocab) enum dais_tok_type, or NULL (all normal, with
                                 * "<0xXX>" pieces taken as byte tokens for "llama") */
    int64_t n_merges;
    const char *const *merges; /* (n_merges) "left right" strings; required for "gpt2" */
    const size_t *merge_lens;  /* (n_merges) or NULL for NUL-terminated */
    /* Special ids; -1 (or any negative value, or 0xFFFFFFFF) means none. */
    int64_t bos_id, eos_id, unk_id, pad_id, eot_id, eom_id;
    /* Flags: -1 = default for the kind (add_bos: llama yes, gpt2 no; add_eos: no;
     * add_space_prefix: llama yes, gpt2 no). */
    int add_bos, add_eos, add_space_prefix;
} dais_tokenizer_params;

/* Initialises `p` to an empty parameter set (no vocabulary, every id -1, every flag -1). */
void dais_tokenizer_params_init(dais_tokenizer_params *p);

/* Builds a tokenizer from explicit parameters, validating all of them (array lengths, ids in
 * range, types, byte tokens, merges). Returns an owned tokenizer, or NULL with `err` naming
 * the problem. Any thread. */
dais_tokenizer *dais_tokenizer_new(const dais_tokenizer_params *p, dais_err *err);

/* Builds a tokenizer from the metadata of `g` (copies what it needs; `g` may be freed after).
 * Integer ids and flags may use any integer type. NULL with `err` naming the missing or
 * malformed key. */
dais_tokenizer *dais_tokenizer_from_gguf(const dais_gguf *g, dais_err *err);
void dais_tokenizer_free(dais_tokenizer *t); /* accepts NULL */

enum dais_tok_kind dais_tokenizer_kind(const dais_tokenizer *t);
int32_t dais_tokenizer_n_vocab(const dais_tokenizer *t);
int32_t dais_tokenizer_bos(const dais_tokenizer *t); /* -1 when the vocabulary has none */
int32_t dais_tokenizer_eos(const dais_tokenizer *t);
int32_t dais_tokenizer_unk(const dais_tokenizer *t);
int32_t dais_tokenizer_pad(const dais_tokenizer *t);
bool dais_tokenizer_is_eog(const dais_tokenizer *t, int32_t id); /* EOS, EOT, <|eot_id|> … */
bool dais_tokenizer_add_bos(
    const dais_tokenizer *t); /* tokenizer.ggml.add_bos_token, default per kind */
bool dais_tokenizer_add_eos(const dais_tokenizer *t); /* tokenizer.ggml.add_eos_token, default no */
/* enum dais_tok_type of `id` (normalised: UNDEFINED reads as NORMAL); -1 when out of range. */
int dais_tokenizer_token_type(const dais_tokenizer *t, int32_t id);
/* Longest dais_token_text of any token, in bytes. */
size_t dais_tokenizer_max_token_len(const dais_tokenizer *t);

/* Encodes `len` bytes of `text` (need not be valid UTF-8: invalid bytes go through byte
 * fallback / byte-level tokens and are never dropped). Prepends BOS when `add_bos` and the
 * vocabulary has one (an empty text then gives just BOS). EOS is never appended here (see
 * dais_tokenizer_add_eos). `parse_special`: text matching the spelling of a control or
 * user-defined token becomes that token (longest spelling first at each position); otherwise
 * such text is tokenized as ordinary text. For "llama" with add_space_prefix, each stretch of
 * ordinary text gets the leading ▁ (the whole text, or with parse_special each stretch after
 * a special token too, as llama.cpp does); an empty text gets none.
 * Writes at most `cap` ids to `out` (may be NULL when cap is 0); returns the number of ids the
 * full encoding has (which may exceed cap — call again with a larger buffer), or a negative
 * code: DAIS_ETOOBIG past DAIS_TOK_MAX_TEXT, DAIS_ENOMEM. Any thread. */
int64_t dais_tokenize(const dais_tokenizer *t, const char *text, size_t len, bool add_bos,
                      bool parse_special, int32_t *out, int64_t cap);

/* Raw bytes of a token as it appears in text (▁ → space, byte tokens → that byte, gpt2
 * byte-level symbols → their bytes; control tokens → their spelling). *len gets the length.
 * Returns NULL for an id out of range. The bytes live as long as the tokenizer. */
const char *dais_token_text(const dais_tokenizer *t, int32_t id, size_t *len);

/* Streaming decoder: feed ids one by one, get back only complete UTF-8. Caller-allocated;
 * one stream per struct, one thread at a time. */
typedef struct dais_detok {
    const dais_tokenizer *tok;
    unsigned char pending[8]; /* bytes of an unfinished UTF-8 sequence */
    int n_pending;
    bool at_start;     /* strip the leading space SentencePiece adds to the first piece */
    bool skip_special; /* control and unknown tokens (BOS/EOS …) produce no text */
} dais_detok;

void dais_detok_init(dais_detok *d, const dais_tokenizer *t, bool skip_special);
/* Appends the text of `id` to out (cap bytes); returns bytes written (complete UTF-8 only;
 * each maximal invalid subsequence is emitted as U+FFFD, as WHATWG TextDecoder does), or
 * DAIS_ERANGE for an id out of range, or DAIS_ETOOBIG if cap is too small, in which case the
 * decoder's state is unchanged. cap >= 3 * dais_tokenizer_max_token_len(t) + 16 always
 * suffices. */
int dais_detok_push(dais_detok *d, int32_t id, char *out, size_t cap);
/* Flushes held-back bytes at the end of a stream (as U+FFFD for the incomplete sequence);
 * returns bytes written (0..3) or DAIS_ETOOBIG (cap >= 3 suffices). The decoder is then
 * ready for a new stream. */
int dais_detok_flush(dais_detok *d, char *out, size_t cap);

/* Whole-sequence decode through a dais_detok (flushed at the end): writes at most `cap` bytes
 * to `out` and returns the full length (may exceed cap, like snprintf, without a NUL), or a
 * negative code (DAIS_ERANGE for an id out of range). */
int64_t dais_detokenize(const dais_tokenizer *t, const int32_t *ids, size_t n_ids,
                        bool skip_special, char *out, size_t cap);

#endif
