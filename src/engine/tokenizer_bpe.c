/*
 * The BPE merge engine shared by both tokenizer kinds, and the byte-level ("gpt2") encoder.
 *
 * Merge engine: symbols form a linked list; every adjacent pair that has a merge rule sits in
 * a binary heap keyed by (rank, position of its left symbol). Popping the best pair, merging
 * it, and queueing the (at most two) new neighbour pairs costs O(log n), so a word of n
 * symbols takes O(n log n). Stale heap entries are recognised by their recorded ids and
 * skipped.
 *
 * Byte-level encoder: the text is cut into pre-tokens by the regex tokenizer.ggml.pre names,
 * compiled once with PCRE2 (UTF mode, JIT when the library has it, PCRE2_MATCH_INVALID_UTF so
 * invalid UTF-8 never stops the matcher). Bytes the regex does not match (invalid UTF-8) form
 * pre-tokens of their own, so no byte is ever lost. Each pre-token's bytes become byte-level
 * symbols and are merged by rank.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "engine/tokenizer_impl.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

/* ---- heap --------------------------------------------------------------------------------- */

static bool cand_less(const tok_cand *a, const tok_cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

typedef struct cand_heap {
    tok_cand *v;
    size_t n, cap;
} cand_heap;

static int heap_push(cand_heap *h, tok_cand c)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        tok_cand *v = realloc(h->v, cap * sizeof(*v));
        if (v == NULL) return DAIS_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_less(&c, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = c;
    return 0;
}

static tok_cand heap_pop(cand_heap *h)
{
    tok_cand top = h->v[0];
    tok_cand last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= h->n) break;
        size_t m = (l + 1 < h->n && cand_less(&h->v[l + 1], &h->v[l])) ? l + 1 : l;
        if (!cand_less(&h->v[m], &last)) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n > 0) h->v[i] = last;
    return top;
}

/* ---- merge engine ------------------------------------------------------------------------- */

static int queue_pair(const dais_tokenizer *t, cand_heap *h, const tok_sym *syms, int32_t l,
                      int32_t r)
{
    const tok_pair *p = dais_tok_pair_find(t, syms[l].id, syms[r].id);
    if (p == NULL) return 0;
    return heap_push(h, (tok_cand){p->rank, l, r, syms[l].id, syms[r].id});
}

int dais_tok_bpe_run(const dais_tokenizer *t, tok_scratch *s, tok_sym *syms, int32_t n, tok_out *o)
{
    if (n <= 0) return 0;
    cand_heap h = {s->heap, 0, s->heap_cap};
    int rc = 0;
    for (int32_t i = 0; i + 1 < n; i++)
        if ((rc = queue_pair(t, &h, syms, i, i + 1)) != 0) goto out;
    while (h.n > 0) {
        tok_cand c = heap_pop(&h);
        if (syms[c.left].id != c.lid || syms[c.right].id != c.rid || syms[c.left].next != c.right)
            continue;
        const tok_pair *p = dais_tok_pair_find(t, c.lid, c.rid);
        syms[c.left].id = p->result;
        int32_t nx = syms[c.right].next;
        syms[c.left].next = nx;
        if (nx >= 0) syms[nx].prev = c.left;
        syms[c.right].id = -1;
        if (syms[c.left].prev >= 0 &&
            (rc = queue_pair(t, &h, syms, syms[c.left].prev, c.left)) != 0)
            goto out;
        if (nx >= 0 && (rc = queue_pair(t, &h, syms, c.left, nx)) != 0) goto out;
    }
    for (int32_t i = 0; i >= 0; i = syms[i].next)
        tok_emit(o, syms[i].id);
out:
    s->heap = h.v;
    s->heap_cap = h.cap;
    return rc;
}

void dais_tok_scratch_free(tok_scratch *s)
{
    free(s->syms);
    free(s->heap);
    free(s->buf);
    if (s->md != NULL) pcre2_match_data_free(s->md);
    memset(s, 0, sizeof(*s));
}

/* ---- pre-tokenizer ------------------------------------------------------------------------ */

/* Whitespace as the reference encoders (JavaScript's \s) define it: the Unicode space
 * separators, the ASCII controls \t\n\v\f\r, U+2028/U+2029 and U+FEFF. Spelled out because
 * PCRE2's own \s differs (it adds U+0085 and U+180E and lacks U+FEFF). */
#define WS                                                                                         \
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"              \
    "\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}"

/* Llama 3 (tokenizer.ggml.pre "llama-bpe"/"llama3"); the contractions are case-insensitive
 * for ASCII letters only, as in the reference. */
static const char LLAMA3_RE[] = "'(?:[sS]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])"
                                "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+"
                                "|\\p{N}{1,3}"
                                "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*"
                                "|[" WS "]*[\\r\\n]+"
                                "|[" WS "]+(?![^" WS "])"
                                "|[" WS "]+";

/* GPT-2 ("default", "gpt2"). */
static const char GPT2_RE[] = "'s|'t|'re|'ve|'m|'ll|'d"
                              "| ?\\p{L}+| ?\\p{N}+"
                              "| ?[^" WS "\\p{L}\\p{N}]+"
                              "|[" WS "]+(?![^" WS "])"
                              "|[" WS "]+";

int dais_tok_bpe_setup(dais_tokenizer *t, const char *pre, size_t pre_len, dais_err *err)
{
    const char *pat;
    if (pre == NULL || (pre_len == 7 && memcmp(pre, "default", 7) == 0) ||
        (pre_len == 4 && memcmp(pre, "gpt2", 4) == 0)) {
        pat = GPT2_RE;
        t->ignore_merges = false;
    } else if ((pre_len == 9 && memcmp(pre, "llama-bpe", 9) == 0) ||
               (pre_len == 6 && memcmp(pre, "llama3", 6) == 0)) {
        pat = LLAMA3_RE;
        t->ignore_merges = true;
    } else {
        return dais_err_set(err, DAIS_EUNSUPPORTED,
                            "tokenizer.ggml.pre = '%.*s' is not supported (supported: default, "
                            "gpt2, llama-bpe, llama3)",
                            (int)(pre_len > 64 ? 64 : pre_len), pre);
    }
    int ec;
    PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &ec, &eoff, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(ec, msg, sizeof(msg));
        return dais_err_set(err, DAIS_EINTERNAL, "tokenizer: pre-tokenizer regex: %s at %zu",
                            (const char *)msg, (size_t)eoff);
    }
    uint32_t has_jit = 0;
    pcre2_config(PCRE2_CONFIG_JIT, &has_jit);
    t->re_jit = has_jit && pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    t->re = re;
    return 0;
}

void dais_tok_bpe_teardown(dais_tokenizer *t)
{
    if (t->re != NULL) pcre2_code_free(t->re);
    t->re = NULL;
}

/* ---- byte-level encoder ------------------------------------------------------------------- */

static int encode_word(const dais_tokenizer *t, tok_scratch *s, const unsigned char *w, size_t n,
                       tok_out *o)
{
    if (n == 1) {
        tok_emit(o, t->byte_tok[w[0]]);
        return 0;
    }
    int rc;
    if (t->ignore_merges) {
        if ((rc = dais_tok_scratch_buf(s, 2 * n)) != 0) return rc;
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(s->buf + m, t->bmap[w[i]], t->bmap_len[w[i]]);
            m += t->bmap_len[w[i]];
        }
        int32_t id = dais_tok_piece_find(t, s->buf, m);
        if (id >= 0) {
            tok_emit(o, id);
            return 0;
        }
    }
    if ((rc = dais_tok_scratch_syms(s, n)) != 0) return rc;
    for (size_t i = 0; i < n; i++)
        s->syms[i] = (tok_sym){t->byte_tok[w[i]], (int32_t)i - 1, (int32_t)i + 1};
    s->syms[n - 1].next = -1;
    return dais_tok_bpe_run(t, s, s->syms, (int32_t)n, o);
}

int dais_tok_bpe_encode(const dais_tokenizer *t, tok_scratch *s, const char *text, size_t len,
                        tok_out *o)
{
    const unsigned char *u = (const unsigned char *)text;
    if (s->md == NULL) {
        s->md = pcre2_match_data_create(1, NULL);
        if (s->md == NULL) return DAIS_ENOMEM;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
    size_t off = 0;
    int rc;
    while (off < len) {
        int m = pcre2_match(t->re, u, len, off, 0, s->md, NULL);
        if (m == PCRE2_ERROR_JIT_STACKLIMIT)
            m = pcre2_match(t->re, u, len, off, PCRE2_NO_JIT, s->md, NULL);
        size_t start, end;
        if (m == PCRE2_ERROR_NOMATCH) {
            start = end = len;
        } else if (m < 0 || ov[1] <= ov[0] || ov[0] < off) {
            /* The matcher gave up (a resource limit) or matched nothing: take one character
             * as its own pre-token so that progress and every byte are kept. */
            int cl = dais_tok_utf8_len(u + off, len - off);
            start = off;
            end = off + (cl > 0 ? (size_t)cl : 1);
        } else {
            start = ov[0];
            end = ov[1];
        }
        if (start > off && (rc = encode_word(t, s, u + off, start - off, o)) != 0) return rc;
        if (end > start && (rc = encode_word(t, s, u + start, end - start, o)) != 0) return rc;
        off = end;
    }
    return 0;
}
