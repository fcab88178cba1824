/*
 * The "llama" (SentencePiece-style) encoder. The text becomes one symbol per character:
 * a space (and a literal ▁) becomes the "▁" piece, a leading "▁" is added when
 * add_space_prefix is on (SentencePiece's add_dummy_prefix), every other character becomes
 * its one-character piece. A character without a piece, or a byte that is not valid UTF-8,
 * becomes its <0xXX> byte tokens (byte fallback; the unknown token when the vocabulary lacks
 * them); those never merge. The symbols are then merged by the rank table tokenizer.c built
 * from the scores, through the shared O(n log n) merge engine, one word at a time when the
 * vocabulary allows it (see spm_split in tokenizer_impl.h).
 */
#include "engine/tokenizer_impl.h"

static int32_t fallback(const dais_tokenizer *t, unsigned char b)
{
    return t->byte_tok[b] >= 0 ? t->byte_tok[b] : t->unk;
}

int dais_tok_spm_encode(const dais_tokenizer *t, tok_scratch *s, const char *text, size_t len,
                        bool add_prefix, tok_out *o)
{
    static const unsigned char marker[3] = {0xE2, 0x96, 0x81}; /* ▁ */
    const unsigned char *u = (const unsigned char *)text;
    int rc = dais_tok_scratch_syms(s, len + 3);
    if (rc != 0) return rc;
    tok_sym *syms = s->syms;
    int32_t n = 0;
#define PUSH(tokid) (syms[n].id = (tokid), syms[n].prev = n - 1, syms[n].next = n + 1, n++)
    if (add_prefix) {
        if (t->space_tok >= 0) {
            PUSH(t->space_tok);
        } else {
            for (int k = 0; k < 3; k++)
                PUSH(fallback(t, marker[k]));
        }
    }
    for (size_t i = 0; i < len;) {
        unsigned char b = u[i];
        if (b == ' ') {
            if (t->space_tok >= 0) {
                PUSH(t->space_tok);
            } else {
                /* No "▁" piece: the escaped space falls back to its three bytes, which the
                 * reserve of 3 symbols covers only once, so grow for each one. */
                if ((rc = dais_tok_scratch_syms(s, (size_t)n + 3 + (len - i))) != 0) return rc;
                syms = s->syms;
                for (int k = 0; k < 3; k++)
                    PUSH(fallback(t, marker[k]));
            }
            i++;
            continue;
        }
        if (b < 0x80) {
            PUSH(t->ascii_tok[b] >= 0 ? t->ascii_tok[b] : fallback(t, b));
            i++;
            continue;
        }
        int cl = dais_tok_utf8_len(u + i, len - i);
        if (cl == 0) {
            PUSH(fallback(t, b));
            i++;
            continue;
        }
        int32_t id = dais_tok_piece_find(t, text + i, (size_t)cl);
        if (id >= 0) {
            PUSH(id);
        } else {
            for (int k = 0; k < cl; k++)
                PUSH(fallback(t, u[i + (size_t)k]));
        }
        i += (size_t)cl;
    }
#undef PUSH
    if (n == 0) return 0;
    if (!t->spm_split) {
        syms[n - 1].next = -1;
        return dais_tok_bpe_run(t, s, syms, n, o);
    }
    /* Merge word by word: a word starts at a "▁" that follows any other symbol. No merge
     * crosses that boundary (spm_split), and merges inside one word are ordered among
     * themselves exactly as in the whole text, so the result is the same; but each run's
     * heap stays small and in cache, where one heap over a long text does not. */
    int32_t start = 0;
    for (int32_t i = 1; i <= n; i++) {
        if (i < n && !(syms[i].id == t->space_tok && syms[i - 1].id != t->space_tok)) continue;
        tok_sym *w = syms + start;
        int32_t len_w = i - start;
        for (int32_t k = 0; k < len_w; k++) {
            w[k].prev = k - 1;
            w[k].next = k + 1;
        }
        w[len_w - 1].next = -1;
        if ((rc = dais_tok_bpe_run(t, s, w, len_w, o)) != 0) return rc;
        start = i;
    }
    return 0;
}
