/*
 * Internals shared by the tokenizer files: the tokenizer struct, the piece and pair hash
 * tables, the BPE merge engine and the per-call scratch buffers.
 *   tokenizer.c       construction, validation, special-token split, accessors, decoding
 *   tokenizer_bpe.c   the merge engine, the pre-tokenizer (PCRE2) and the "gpt2" encoder
 *   tokenizer_spm.c   the "llama" encoder
 *   tokenizer_gguf.c  reading dais_tokenizer_params from GGUF metadata
 * Not part of the public API.
 */
#ifndef DAIS_ENGINE_TOKENIZER_IMPL_H
#define DAIS_ENGINE_TOKENIZER_IMPL_H

#include "engine/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One merge rule (left, right) → result with its rank (lower merges first), stored in the
 * row of its left id, rows sorted by right id. */
typedef struct tok_pair {
    int32_t right;
    uint32_t rank;
    int32_t result;
} tok_pair;

/* A control or user-defined token that parse_special may find in text. */
typedef struct tok_special {
    const char *text; /* into dais_tokenizer.text */
    uint32_t len;
    int32_t id;
} tok_special;

struct dais_tokenizer {
    enum dais_tok_kind kind;
    int32_t n_vocab;
    uint8_t *types;      /* (n_vocab) enum dais_tok_type, UNDEFINED normalised to NORMAL */
    float *scores;       /* (n_vocab) */
    char *pieces;        /* all pieces as stored in the vocabulary, back to back */
    uint32_t *piece_off; /* (n_vocab + 1) piece i is pieces[piece_off[i] .. piece_off[i+1]) */
    char *text;          /* decoded bytes of every token (what dais_token_text returns) */
    uint32_t *text_off;  /* (n_vocab + 1) */
    size_t max_text_len;

    /* Piece → id for tokens that can be BPE symbols (normal, unused; user-defined for llama). */
    uint64_t *piece_slots; /* (piece_mask + 1) (hash32 << 32 | id + 1); 0 = empty */
    uint64_t piece_mask;

    /* Merge rules by left id: the rules of left id l are pairs[pair_row[l] .. pair_row[l+1]).
     * Compact (12 bytes a rule) so that the rows the text uses stay in cache. */
    tok_pair *pairs;    /* (n_pairs) */
    uint32_t *pair_row; /* (n_vocab + 1) */
    int64_t n_pairs;

    int32_t byte_tok[256];  /* llama: <0xXX> tokens; gpt2: byte-level symbols; -1 = none */
    int32_t ascii_tok[128]; /* llama: id of the one-character piece, -1 = none */
    int32_t space_tok;      /* llama: id of "▁", -1 = none */
    /* llama: no symbol piece has a ▁ right after another character, so no merge can join a
     * symbol to a following "▁": the text may be merged word by word (see tokenizer_spm.c). */
    bool spm_split;
    /* gpt2: the UTF-8 of the unicode character each byte maps to (1 or 2 bytes). */
    uint8_t bmap[256][2];
    uint8_t bmap_len[256];

    tok_special *specials; /* sorted by first byte, then longest first */
    int32_t n_specials;
    int32_t special_start[257]; /* specials with first byte b: [special_start[b], [b+1]) */

    int32_t bos, eos, unk, pad, eot, eom;
    bool add_bos, add_eos, add_space_prefix;
    bool ignore_merges; /* gpt2: a pre-token that is itself a token is not split (Llama 3) */
    void *re;           /* gpt2: pcre2_code (8-bit) of the pre-tokenizer */
    bool re_jit;
};

/* A BPE symbol: a token id in a doubly linked list over the symbol array. */
typedef struct tok_sym {
    int32_t id; /* -1 once merged into its left neighbour */
    int32_t prev, next;
} tok_sym;

typedef struct tok_cand {
    uint32_t rank;
    int32_t left, right; /* symbol indices */
    int32_t lid, rid;    /* their ids when queued; a changed id means the entry is stale */
} tok_cand;

/* Per-call scratch; grows as needed, freed by tok_scratch_free. */
typedef struct tok_scratch {
    tok_sym *syms;
    size_t syms_cap;
    tok_cand *heap;
    size_t heap_cap;
    char *buf;
    size_t buf_cap;
    void *md; /* pcre2_match_data */
} tok_scratch;

/* Output sink for ids: stores the first `cap`, counts them all. */
typedef struct tok_out {
    int32_t *ids;
    int64_t cap;
    int64_t n;
} tok_out;

static inline void tok_emit(tok_out *o, int32_t id)
{
    if (o->n < o->cap) o->ids[o->n] = id;
    o->n++;
}

uint32_t dais_tok_hash(const char *s, size_t len);
/* Id of the symbol-capable piece `s`, or -1. */
int32_t dais_tok_piece_find(const dais_tokenizer *t, const char *s, size_t len);
/* The merge rule for (left, right), or NULL. */
static inline const tok_pair *dais_tok_pair_find(const dais_tokenizer *t, int32_t left,
                                                 int32_t right)
{
    uint32_t lo = t->pair_row[left], hi = t->pair_row[left + 1];
    while (lo < hi) { /* lower bound of `right` in the row */
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->pairs[mid].right < right)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->pair_row[left + 1] && t->pairs[lo].right == right ? &t->pairs[lo] : NULL;
}

int dais_tok_scratch_syms(tok_scratch *s, size_t n);
int dais_tok_scratch_buf(tok_scratch *s, size_t n);
void dais_tok_scratch_free(tok_scratch *s);

/* Merges the n symbols syms[0..n) (ids set, linked prev/next as a list from 0, indices
 * relative to syms) by rank, leftmost first among equal ranks, and emits the result. Uses
 * s->heap. 0 or DAIS_ENOMEM. */
int dais_tok_bpe_run(const dais_tokenizer *t, tok_scratch *s, tok_sym *syms, int32_t n, tok_out *o);

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if s[0] does not start one. */
int dais_tok_utf8_len(const unsigned char *s, size_t n);

/* gpt2: builds the byte map and compiles the pre-tokenizer for `pre`; fills err. */
int dais_tok_bpe_setup(dais_tokenizer *t, const char *pre, size_t pre_len, dais_err *err);
void dais_tok_bpe_teardown(dais_tokenizer *t);
/* Encodes one fragment of ordinary text. 0 or a negative code. */
int dais_tok_bpe_encode(const dais_tokenizer *t, tok_scratch *s, const char *text, size_t len,
                        tok_out *o);
int dais_tok_spm_encode(const dais_tokenizer *t, tok_scratch *s, const char *text, size_t len,
                        bool add_prefix, tok_out *o);

#endif
