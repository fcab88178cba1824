/*
 * Tokenizer core: builds a dais_tokenizer from validated parameters (the tokenizer.ggml.*
 * keys), owns the piece hash table and the merge-rule rows, splits text around special tokens, and
 * decodes ids back to text through a streaming UTF-8-safe decoder.
 *
 * Encoding itself lives in tokenizer_spm.c ("llama") and tokenizer_bpe.c ("gpt2"); both
 * reduce to the merge engine in tokenizer_bpe.c over a table of (left, right) → result pairs
 * with ranks. For "gpt2" the table comes from tokenizer.ggml.merges; for "llama" it is derived
 * here from the pieces and scores (see build_llama_pairs).
 */
#include "engine/tokenizer_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------------------------ */

uint32_t dais_tok_hash(const char *s, size_t len)
{
    /* FNV-1a, folded to 32 bits; pieces are short, so this is cheap and well spread. */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

int dais_tok_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if ((size_t)need >= n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int k = 2; k <= need; k++)
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return need + 1;
}

static uint64_t pow2_at_least(uint64_t n)
{
    uint64_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

static const char *piece_ptr(const dais_tokenizer *t, int32_t id, size_t *len)
{
    *len = t->piece_off[id + 1] - t->piece_off[id];
    return t->pieces + t->piece_off[id];
}

/* ---- piece table -------------------------------------------------------------------------- */

int32_t dais_tok_piece_find(const dais_tokenizer *t, const char *s, size_t len)
{
    uint32_t h = dais_tok_hash(s, len);
    uint64_t i = h & t->piece_mask;
    for (;;) {
        uint64_t v = t->piece_slots[i];
        if (v == 0) return -1;
        if ((uint32_t)(v >> 32) == h) {
            int32_t id = (int32_t)(uint32_t)v - 1;
            size_t plen;
            const char *p = piece_ptr(t, id, &plen);
            if (plen == len && memcmp(p, s, len) == 0) return id;
        }
        i = (i + 1) & t->piece_mask;
    }
}

static bool is_symbol_type(uint8_t type)
{
    return type == DAIS_TOKT_NORMAL || type == DAIS_TOKT_USER_DEFINED || type == DAIS_TOKT_UNUSED;
}

static int build_piece_table(dais_tokenizer *t)
{
    t->piece_mask = pow2_at_least((uint64_t)t->n_vocab * 2) - 1;
    t->piece_slots = calloc(t->piece_mask + 1, sizeof(uint64_t));
    if (t->piece_slots == NULL) return DAIS_ENOMEM;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        /* gpt2 user-defined tokens are stored as plain text, not in byte-level symbols: only
         * parse_special finds them. */
        if (!is_symbol_type(t->types[id]) ||
            (t->kind == DAIS_TOK_GPT2 && t->types[id] == DAIS_TOKT_USER_DEFINED))
            continue;
        size_t len;
        const char *p = piece_ptr(t, id, &len);
        uint32_t h = dais_tok_hash(p, len);
        uint64_t i = h & t->piece_mask;
        for (;;) {
            uint64_t v = t->piece_slots[i];
            if (v == 0) break;
            if ((uint32_t)(v >> 32) == h) {
                size_t olen;
                const char *o = piece_ptr(t, (int32_t)(uint32_t)v - 1, &olen);
                if (olen == len && memcmp(o, p, len) == 0)
                    break; /* duplicate piece: the later id wins, as in llama.cpp */
            }
            i = (i + 1) & t->piece_mask;
        }
        t->piece_slots[i] = (uint64_t)h << 32 | (uint32_t)(id + 1);
    }
    return 0;
}

/* ---- pair table --------------------------------------------------------------------------- */

typedef struct tok_rule {
    int32_t left, right;
    uint32_t rank;
    int32_t result;
} tok_rule;

static int rule_cmp(const void *a, const void *b)
{
    const tok_rule *x = a, *y = b;
    if (x->left != y->left) return x->left < y->left ? -1 : 1;
    if (x->right != y->right) return x->right < y->right ? -1 : 1;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

/* Builds the per-left rows from n rules (sorted here); a repeated (left, right) keeps its
 * lowest rank. Takes nothing; `rules` is reordered. */
static int build_rows(dais_tokenizer *t, tok_rule *rules, size_t n)
{
    qsort(rules, n, sizeof(*rules), rule_cmp);
    t->pairs = malloc((n ? n : 1) * sizeof(tok_pair));
    t->pair_row = calloc((size_t)t->n_vocab + 1, sizeof(uint32_t));
    if (t->pairs == NULL || t->pair_row == NULL) return DAIS_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && rules[i].left == rules[i - 1].left && rules[i].right == rules[i - 1].right)
            continue;
        t->pairs[m++] = (tok_pair){rules[i].right, rules[i].rank, rules[i].result};
        t->pair_row[rules[i].left + 1]++;
    }
    for (int32_t l = 0; l < t->n_vocab; l++)
        t->pair_row[l + 1] += t->pair_row[l];
    t->n_pairs = (int64_t)m;
    return 0;
}

typedef struct llama_cand {
    float score; /* of the merged piece */
    int32_t left, right, result;
} llama_cand;

static int llama_cand_cmp(const void *a, const void *b)
{
    const llama_cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->left != y->left) return x->left < y->left ? -1 : 1;
    if (x->right != y->right) return x->right < y->right ? -1 : 1;
    return 0;
}

/* "llama" vocabularies carry scores, not merges. Every way of writing a symbol piece as two
 * symbol pieces is a merge; they are ranked by the merged piece's score (higher first), then
 * by left id, then right id. That is how the Hugging Face converter turns a SentencePiece
 * model into a merges list (the Llama 2 tokenizer.json, llama-tokenizer-js), and it agrees
 * with SentencePiece's own score-then-leftmost order wherever scores are distinct. */
static int build_llama_pairs(dais_tokenizer *t)
{
    size_t cap = 1024, n = 0;
    llama_cand *c = malloc(cap * sizeof(*c));
    if (c == NULL) return DAIS_ENOMEM;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!is_symbol_type(t->types[id])) continue;
        size_t len;
        const char *p = piece_ptr(t, id, &len);
        for (size_t k = 1; k < len; k++) {
            if (((unsigned char)p[k] & 0xC0) == 0x80) continue; /* split only between characters */
            int32_t l = dais_tok_piece_find(t, p, k);
            if (l < 0) continue;
            int32_t r = dais_tok_piece_find(t, p + k, len - k);
            if (r < 0) continue;
            if (n == cap) {
                llama_cand *nc = realloc(c, cap * 2 * sizeof(*c));
                if (nc == NULL) {
                    free(c);
                    return DAIS_ENOMEM;
                }
                c = nc;
                cap *= 2;
            }
            c[n++] = (llama_cand){t->scores[id], l, r, id};
        }
    }
    qsort(c, n, sizeof(*c), llama_cand_cmp);
    tok_rule *r = malloc((n ? n : 1) * sizeof(*r));
    int rc = DAIS_ENOMEM;
    if (r != NULL) {
        for (size_t i = 0; i < n; i++)
            r[i] = (tok_rule){c[i].left, c[i].right, (uint32_t)i, c[i].result};
        rc = build_rows(t, r, n);
    }
    free(r);
    free(c);
    return rc;
}

static int build_gpt2_pairs(dais_tokenizer *t, const dais_tokenizer_params *p, dais_err *err)
{
    if (p->n_merges <= 0 || p->merges == NULL)
        return dais_err_set(err, DAIS_EFORMAT,
                            "tokenizer.ggml.merges: missing (a gpt2 vocabulary needs merges)");
    if (p->n_merges > DAIS_TOK_MAX_MERGES)
        return dais_err_set(err, DAIS_ETOOBIG, "tokenizer.ggml.merges: %lld merges (limit %d)",
                            (long long)p->n_merges, DAIS_TOK_MAX_MERGES);
    int rc;
    char *cat = malloc(2 * DAIS_TOK_MAX_PIECE + 2);
    tok_rule *rules = malloc((size_t)p->n_merges * sizeof(tok_rule));
    if (cat == NULL || rules == NULL) {
        rc = dais_err_set(err, DAIS_ENOMEM, "tokenizer: out of memory for %lld merges",
                          (long long)p->n_merges);
        goto out;
    }
    for (int64_t i = 0; i < p->n_merges; i++) {
        const char *m = p->merges[i];
        size_t len = p->merge_lens != NULL ? p->merge_lens[i] : (m != NULL ? strlen(m) : 0);
        if (m == NULL || len > 2 * DAIS_TOK_MAX_PIECE + 1) {
            rc = dais_err_set(err, DAIS_EFORMAT, "tokenizer.ggml.merges[%lld]: malformed",
                              (long long)i);
            goto out;
        }
        const char *sp = len > 1 ? memchr(m + 1, ' ', len - 1) : NULL;
        if (sp == NULL || sp + 1 == m + len) {
            rc = dais_err_set(err, DAIS_EFORMAT,
                              "tokenizer.ggml.merges[%lld]: '%.*s' is not two pieces "
                              "separated by a space",
                              (long long)i, (int)(len > 64 ? 64 : len), m);
            goto out;
        }
        size_t ll = (size_t)(sp - m), rl = len - ll - 1;
        int32_t l = dais_tok_piece_find(t, m, ll);
        int32_t r = dais_tok_piece_find(t, sp + 1, rl);
        memcpy(cat, m, ll);
        memcpy(cat + ll, sp + 1, rl);
        int32_t res = (l >= 0 && r >= 0) ? dais_tok_piece_find(t, cat, ll + rl) : -1;
        if (res < 0) {
            rc = dais_err_set(err, DAIS_EFORMAT,
                              "tokenizer.ggml.merges[%lld]: '%.*s': %s is not a token of the "
                              "vocabulary",
                              (long long)i, (int)(len > 64 ? 64 : len), m,
                              l < 0   ? "the left piece"
                              : r < 0 ? "the right piece"
                                      : "the merge");
            goto out;
        }
        rules[i] = (tok_rule){l, r, (uint32_t)i, res}; /* a repeat keeps its first rank */
    }
    rc = build_rows(t, rules, (size_t)p->n_merges);
    if (rc != 0)
        dais_err_set(err, rc, "tokenizer: out of memory for %lld merges", (long long)p->n_merges);
out:
    free(rules);
    free(cat);
    return rc;
}

/* ---- byte maps ---------------------------------------------------------------------------- */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * map in order to U+0100 + k. */
static void build_bmap(dais_tokenizer *t, int16_t inv[0x144])
{
    for (int i = 0; i < 0x144; i++)
        inv[i] = -1;
    int k = 0;
    for (int b = 0; b < 256; b++) {
        bool self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int cp = self ? b : 0x100 + k++;
        inv[cp] = (int16_t)b;
        if (cp < 0x80) {
            t->bmap[b][0] = (uint8_t)cp;
            t->bmap_len[b] = 1;
        } else {
            t->bmap[b][0] = (uint8_t)(0xC0 | (cp >> 6));
            t->bmap[b][1] = (uint8_t)(0x80 | (cp & 0x3F));
            t->bmap_len[b] = 2;
        }
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xXX>" piece, or -1. */
static int byte_piece_value(const char *p, size_t len)
{
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int hi = hexval(p[3]), lo = hexval(p[4]);
    return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

/* Writes the decoded bytes of token `id` to dst (capacity >= piece length); returns length. */
static size_t decode_piece(const dais_tokenizer *t, int32_t id, const int16_t *inv, char *dst)
{
    size_t len;
    const char *p = piece_ptr(t, id, &len);
    uint8_t type = t->types[id];
    if (type == DAIS_TOKT_BYTE) {
        int v = byte_piece_value(p, len);
        if (v >= 0) {
            dst[0] = (char)v;
            return 1;
        }
    }
    if (type == DAIS_TOKT_CONTROL || type == DAIS_TOKT_UNKNOWN ||
        (t->kind == DAIS_TOK_GPT2 && type == DAIS_TOKT_USER_DEFINED)) {
        memcpy(dst, p, len);
        return len;
    }
    size_t n = 0;
    if (t->kind == DAIS_TOK_LLAMA) {
        for (size_t i = 0; i < len;) {
            if (i + 3 <= len && memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
                dst[n++] = ' ';
                i += 3;
            } else {
                dst[n++] = p[i++];
            }
        }
        return n;
    }
    for (size_t i = 0; i < len;) {
        int cl = dais_tok_utf8_len((const unsigned char *)p + i, len - i);
        if (cl == 2 || cl == 1) {
            unsigned cp =
                cl == 1 ? (unsigned char)p[i] : ((unsigned)(p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
            if (cp < 0x144 && inv[cp] >= 0) {
                dst[n++] = (char)inv[cp];
                i += (size_t)cl;
                continue;
            }
        }
        /* Not a byte-level symbol: keep the character (or stray byte) as it is. */
        size_t k = cl > 0 ? (size_t)cl : 1;
        memcpy(dst + n, p + i, k);
        n += k;
        i += k;
    }
    return n;
}

/* ---- special tokens ----------------------------------------------------------------------- */

static int special_cmp(const void *a, const void *b)
{
    const tok_special *x = a, *y = b;
    unsigned char fx = (unsigned char)x->text[0], fy = (unsigned char)y->text[0];
    if (fx != fy) return fx < fy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

static int build_specials(dais_tokenizer *t)
{
    int32_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if ((t->types[id] == DAIS_TOKT_CONTROL || t->types[id] == DAIS_TOKT_USER_DEFINED) &&
            t->text_off[id + 1] > t->text_off[id])
            n++;
    t->specials = calloc(n > 0 ? (size_t)n : 1, sizeof(tok_special));
    if (t->specials == NULL) return DAIS_ENOMEM;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint32_t len = t->text_off[id + 1] - t->text_off[id];
        if ((t->types[id] == DAIS_TOKT_CONTROL || t->types[id] == DAIS_TOKT_USER_DEFINED) &&
            len > 0)
            t->specials[t->n_specials++] = (tok_special){t->text + t->text_off[id], len, id};
    }
    qsort(t->specials, (size_t)t->n_specials, sizeof(tok_special), special_cmp);
    int32_t j = 0;
    for (int b = 0; b < 256; b++) {
        t->special_start[b] = j;
        while (j < t->n_specials && (unsigned char)t->specials[j].text[0] == b)
            j++;
    }
    t->special_start[256] = j;
    return 0;
}

/* True when some symbol piece has a ▁ right after a character other than ▁ ("a▁b"): then a
 * merge may join a word to the space after it, and the text must be merged as a whole. */
static bool marker_after_char(const dais_tokenizer *t)
{
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!is_symbol_type(t->types[id])) continue;
        size_t len;
        const char *p = piece_ptr(t, id, &len);
        bool prev_marker = true; /* at the start of the piece */
        for (size_t i = 0; i < len;) {
            bool marker = i + 3 <= len && memcmp(p + i, "\xE2\x96\x81", 3) == 0;
            if (marker && !prev_marker) return true;
            prev_marker = marker;
            i += marker ? 3 : 1;
        }
    }
    return false;
}

/* ---- construction ------------------------------------------------------------------------- */

void dais_tokenizer_params_init(dais_tokenizer_params *p)
{
    memset(p, 0, sizeof(*p));
    p->bos_id = p->eos_id = p->unk_id = p->pad_id = p->eot_id = p->eom_id = -1;
    p->add_bos = p->add_eos = p->add_space_prefix = -1;
}

static bool str_is(const char *s, size_t len, const char *lit)
{
    return s != NULL && len == strlen(lit) && memcmp(s, lit, len) == 0;
}

static int take_id(int64_t v, int32_t n_vocab, const char *key, int32_t *out, dais_err *err)
{
    if (v < 0 || v == 0xFFFFFFFFll) {
        *out = -1;
        return 0;
    }
    if (v >= n_vocab)
        return dais_err_set(err, DAIS_EFORMAT,
                            "tokenizer.ggml.%s = %lld is out of range (the vocabulary has %d "
                            "tokens)",
                            key, (long long)v, (int)n_vocab);
    *out = (int32_t)v;
    return 0;
}

static int copy_vocab(dais_tokenizer *t, const dais_tokenizer_params *p, dais_err *err)
{
    int32_t n = t->n_vocab;
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *s = p->tokens[i];
        size_t len = p->token_lens != NULL ? p->token_lens[i] : (s != NULL ? strlen(s) : 0);
        if (s == NULL && len > 0)
            return dais_err_set(err, DAIS_EFORMAT, "tokenizer.ggml.tokens[%d]: missing", i);
        if (len > DAIS_TOK_MAX_PIECE)
            return dais_err_set(err, DAIS_EFORMAT,
                                "tokenizer.ggml.tokens[%d]: %zu bytes (limit %d)", i, len,
                                DAIS_TOK_MAX_PIECE);
        total += len;
    }
    if (total > UINT32_MAX / 2)
        return dais_err_set(err, DAIS_ETOOBIG, "tokenizer.ggml.tokens: %zu bytes in all", total);
    t->pieces = malloc(total + 1);
    t->piece_off = malloc(((size_t)n + 1) * sizeof(uint32_t));
    t->types = malloc((size_t)n);
    t->scores = malloc((size_t)n * sizeof(float));
    if (!t->pieces || !t->piece_off || !t->types || !t->scores)
        return dais_err_set(err, DAIS_ENOMEM, "tokenizer: out of memory for %d tokens", n);
    uint32_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len = p->token_lens != NULL ? p->token_lens[i]
                                           : (p->tokens[i] != NULL ? strlen(p->tokens[i]) : 0);
        t->piece_off[i] = off;
        if (len > 0) memcpy(t->pieces + off, p->tokens[i], len);
        off += (uint32_t)len;

        int32_t type = DAIS_TOKT_NORMAL;
        if (p->token_types != NULL) {
            type = p->token_types[i];
            if (type < DAIS_TOKT_UNDEFINED || type > DAIS_TOKT_BYTE)
                return dais_err_set(err, DAIS_EFORMAT,
                                    "tokenizer.ggml.token_type[%d] = %d is not a token type "
                                    "(0..6)",
                                    i, (int)type);
            if (type == DAIS_TOKT_UNDEFINED) type = DAIS_TOKT_NORMAL;
        } else if (t->kind == DAIS_TOK_LLAMA && byte_piece_value(p->tokens[i], len) >= 0) {
            type = DAIS_TOKT_BYTE;
        }
        if (type == DAIS_TOKT_BYTE && byte_piece_value(p->tokens[i], len) < 0)
            return dais_err_set(err, DAIS_EFORMAT,
                                "tokenizer.ggml.tokens[%d]: a byte token must be spelled <0xXX>, "
                                "not '%.*s'",
                                i, (int)(len > 32 ? 32 : len), p->tokens[i]);
        t->types[i] = (uint8_t)type;

        float sc = 0.0f;
        if (p->scores != NULL) {
            sc = p->scores[i];
            if (!isfinite(sc))
                return dais_err_set(err, DAIS_EFORMAT,
                                    "tokenizer.ggml.scores[%d] is not a finite number", i);
        }
        t->scores[i] = sc;
    }
    t->piece_off[n] = off;
    return 0;
}

static int build_text(dais_tokenizer *t, const int16_t *inv, dais_err *err)
{
    int32_t n = t->n_vocab;
    /* Decoded text is never longer than the piece. */
    t->text = malloc((size_t)t->piece_off[n] + 1);
    t->text_off = malloc(((size_t)n + 1) * sizeof(uint32_t));
    if (t->text == NULL || t->text_off == NULL)
        return dais_err_set(err, DAIS_ENOMEM, "tokenizer: out of memory");
    uint32_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        t->text_off[i] = off;
        size_t len = decode_piece(t, i, inv, t->text + off);
        off += (uint32_t)len;
        if (len > t->max_text_len) t->max_text_len = len;
    }
    t->text_off[n] = off;
    return 0;
}

static void set_flag(bool *dst, int v, bool dflt)
{
    *dst = v < 0 ? dflt : v != 0;
}

dais_tokenizer *dais_tokenizer_new(const dais_tokenizer_params *p, dais_err *err)
{
    int rc;
    dais_tokenizer *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "tokenizer: out of memory");
        return NULL;
    }
    if (str_is(p->model, p->model_len, "llama")) {
        t->kind = DAIS_TOK_LLAMA;
    } else if (str_is(p->model, p->model_len, "gpt2")) {
        t->kind = DAIS_TOK_GPT2;
    } else {
        dais_err_set(err, DAIS_EUNSUPPORTED,
                     "tokenizer.ggml.model = '%.*s' is not supported (supported: llama, gpt2)",
                     (int)(p->model_len > 64 ? 64 : p->model_len),
                     p->model != NULL ? p->model : "");
        goto fail;
    }
    if (p->n_vocab < 1 || p->n_vocab > DAIS_TOK_MAX_VOCAB || p->tokens == NULL) {
        dais_err_set(err, DAIS_EFORMAT, "tokenizer.ggml.tokens: %lld tokens (need 1..%d)",
                     (long long)p->n_vocab, DAIS_TOK_MAX_VOCAB);
        goto fail;
    }
    t->n_vocab = (int32_t)p->n_vocab;
    if (t->kind == DAIS_TOK_LLAMA && p->scores == NULL) {
        dais_err_set(err, DAIS_EFORMAT,
                     "tokenizer.ggml.scores: missing (a llama vocabulary needs scores)");
        goto fail;
    }
    if (copy_vocab(t, p, err) != 0) goto fail;
    if (take_id(p->bos_id, t->n_vocab, "bos_token_id", &t->bos, err) ||
        take_id(p->eos_id, t->n_vocab, "eos_token_id", &t->eos, err) ||
        take_id(p->unk_id, t->n_vocab, "unknown_token_id", &t->unk, err) ||
        take_id(p->pad_id, t->n_vocab, "padding_token_id", &t->pad, err) ||
        take_id(p->eot_id, t->n_vocab, "eot_token_id", &t->eot, err) ||
        take_id(p->eom_id, t->n_vocab, "eom_token_id", &t->eom, err))
        goto fail;
    bool llama = t->kind == DAIS_TOK_LLAMA;
    set_flag(&t->add_bos, p->add_bos, llama);
    set_flag(&t->add_eos, p->add_eos, false);
    set_flag(&t->add_space_prefix, p->add_space_prefix, llama);
    if (!llama) t->add_space_prefix = false;

    int16_t inv[0x144];
    build_bmap(t, inv);
    if (build_text(t, inv, err) != 0) goto fail;
    if ((rc = build_piece_table(t)) != 0 || (rc = build_specials(t)) != 0) {
        dais_err_set(err, rc, "tokenizer: out of memory");
        goto fail;
    }

    for (int b = 0; b < 256; b++)
        t->byte_tok[b] = -1;
    for (int c = 0; c < 128; c++)
        t->ascii_tok[c] = -1;
    t->space_tok = -1;
    if (llama) {
        for (int32_t id = 0; id < t->n_vocab; id++) {
            if (t->types[id] != DAIS_TOKT_BYTE) continue;
            size_t len;
            const char *pc = piece_ptr(t, id, &len);
            int v = byte_piece_value(pc, len);
            if (t->byte_tok[v] < 0) t->byte_tok[v] = id;
        }
        for (int c = 0; c < 128; c++) {
            char ch = (char)c;
            t->ascii_tok[c] = dais_tok_piece_find(t, &ch, 1);
        }
        t->space_tok = dais_tok_piece_find(t, "\xE2\x96\x81", 3);
        t->spm_split = t->space_tok >= 0 && !marker_after_char(t);
        if (t->unk < 0) {
            for (int b = 0; b < 256; b++) {
                if (t->byte_tok[b] < 0) {
                    dais_err_set(err, DAIS_EFORMAT,
                                 "tokenizer: the llama vocabulary has no byte token <0x%02X> "
                                 "and no unknown token, so it cannot encode every text",
                                 b);
                    goto fail;
                }
            }
        }
        if ((rc = build_llama_pairs(t)) != 0) {
            dais_err_set(err, rc, "tokenizer: out of memory for merges");
            goto fail;
        }
    } else {
        for (int b = 0; b < 256; b++) {
            t->byte_tok[b] = dais_tok_piece_find(t, (const char *)t->bmap[b], t->bmap_len[b]);
            if (t->byte_tok[b] < 0) {
                dais_err_set(err, DAIS_EFORMAT,
                             "tokenizer.ggml.tokens: the gpt2 vocabulary lacks the byte-level "
                             "symbol for byte 0x%02X ('%.*s')",
                             b, (int)t->bmap_len[b], (const char *)t->bmap[b]);
                goto fail;
            }
        }
        if (build_gpt2_pairs(t, p, err) != 0) goto fail;
        if (dais_tok_bpe_setup(t, p->pre, p->pre != NULL ? p->pre_len : 0, err) != 0) goto fail;
    }
    return t;
fail:
    dais_tokenizer_free(t);
    return NULL;
}

void dais_tokenizer_free(dais_tokenizer *t)
{
    if (t == NULL) return;
    dais_tok_bpe_teardown(t);
    free(t->types);
    free(t->scores);
    free(t->pieces);
    free(t->piece_off);
    free(t->text);
    free(t->text_off);
    free(t->piece_slots);
    free(t->pairs);
    free(t->pair_row);
    free(t->specials);
    free(t);
}

/* ---- accessors ---------------------------------------------------------------------------- */

enum dais_tok_kind dais_tokenizer_kind(const dais_tokenizer *t)
{
    return t->kind;
}

int32_t dais_tokenizer_n_vocab(const dais_tokenizer *t)
{
    return t->n_vocab;
}

int32_t dais_tokenizer_bos(const dais_tokenizer *t)
{
    return t->bos;
}

int32_t dais_tokenizer_eos(const dais_tokenizer *t)
{
    return t->eos;
}

int32_t dais_tokenizer_unk(const dais_tokenizer *t)
{
    return t->unk;
}

int32_t dais_tokenizer_pad(const dais_tokenizer *t)
{
    return t->pad;
}

bool dais_tokenizer_add_bos(const dais_tokenizer *t)
{
    return t->add_bos;
}

bool dais_tokenizer_add_eos(const dais_tokenizer *t)
{
    return t->add_eos;
}

int dais_tokenizer_token_type(const dais_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab) return -1;
    return t->types[id];
}

size_t dais_tokenizer_max_token_len(const dais_tokenizer *t)
{
    return t->max_text_len;
}

bool dais_tokenizer_is_eog(const dais_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab) return false;
    if (id == t->eos || id == t->eot || id == t->eom) return true;
    if (t->types[id] != DAIS_TOKT_CONTROL) return false;
    /* Chat vocabularies end a turn with these even where the metadata names only one EOS. */
    static const char *const ends[] = {"<|eot_id|>",    "<|eom_id|>", "<|end_of_text|>",
                                       "<|endoftext|>", "<|im_end|>", "<end_of_turn>",
                                       "</s>",          "<|end|>"};
    size_t len;
    const char *p = piece_ptr(t, id, &len);
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
        if (str_is(p, len, ends[i])) return true;
    return false;
}

const char *dais_token_text(const dais_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        if (len != NULL) *len = 0;
        return NULL;
    }
    if (len != NULL) *len = t->text_off[id + 1] - t->text_off[id];
    return t->text + t->text_off[id];
}

/* ---- encoding ----------------------------------------------------------------------------- */

int dais_tok_scratch_syms(tok_scratch *s, size_t n)
{
    if (n <= s->syms_cap) return 0;
    size_t cap = s->syms_cap ? s->syms_cap : 64;
    while (cap < n)
        cap *= 2;
    tok_sym *p = realloc(s->syms, cap * sizeof(*p));
    if (p == NULL) return DAIS_ENOMEM;
    s->syms = p;
    s->syms_cap = cap;
    return 0;
}

int dais_tok_scratch_buf(tok_scratch *s, size_t n)
{
    if (n <= s->buf_cap) return 0;
    size_t cap = s->buf_cap ? s->buf_cap : 256;
    while (cap < n)
        cap *= 2;
    char *p = realloc(s->buf, cap);
    if (p == NULL) return DAIS_ENOMEM;
    s->buf = p;
    s->buf_cap = cap;
    return 0;
}

static int encode_fragment(const dais_tokenizer *t, tok_scratch *s, const char *text, size_t len,
                           tok_out *o)
{
    if (len == 0) return 0;
    if (t->kind == DAIS_TOK_LLAMA)
        return dais_tok_spm_encode(t, s, text, len, t->add_space_prefix, o);
    return dais_tok_bpe_encode(t, s, text, len, o);
}

/* Longest special token spelled at text[i..len), or NULL. */
static const tok_special *match_special(const dais_tokenizer *t, const char *text, size_t len,
                                        size_t i)
{
    unsigned char b = (unsigned char)text[i];
    for (int32_t k = t->special_start[b]; k < t->special_start[b + 1]; k++) {
        const tok_special *sp = &t->specials[k];
        if (sp->len <= len - i && memcmp(text + i, sp->text, sp->len) == 0) return sp;
    }
    return NULL;
}

int64_t dais_tokenize(const dais_tokenizer *t, const char *text, size_t len, bool add_bos,
                      bool parse_special, int32_t *out, int64_t cap)
{
    if (len > DAIS_TOK_MAX_TEXT) return DAIS_ETOOBIG;
    if (text == NULL && len > 0) return DAIS_EINVAL;
    tok_out o = {out, out != NULL && cap > 0 ? cap : 0, 0};
    tok_scratch s = {0};
    int rc = 0;
    if (add_bos && t->bos >= 0) tok_emit(&o, t->bos);
    if (parse_special && t->n_specials > 0) {
        size_t start = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned char b = (unsigned char)text[i];
            if (t->special_start[b] == t->special_start[b + 1]) continue;
            const tok_special *sp = match_special(t, text, len, i);
            if (sp == NULL) continue;
            if ((rc = encode_fragment(t, &s, text + start, i - start, &o)) != 0) goto out;
            tok_emit(&o, sp->id);
            i += sp->len - 1;
            start = i + 1;
        }
        rc = encode_fragment(t, &s, text + start, len - start, &o);
    } else {
        rc = encode_fragment(t, &s, text, len, &o);
    }
out:
    dais_tok_scratch_free(&s);
    return rc != 0 ? rc : o.n;
}

/* ---- decoding ----------------------------------------------------------------------------- */

void dais_detok_init(dais_detok *d, const dais_tokenizer *t, bool skip_special)
{
    memset(d, 0, sizeof(*d));
    d->tok = t;
    d->skip_special = skip_special;
    d->at_start = t->kind == DAIS_TOK_LLAMA && t->add_space_prefix;
}

typedef struct utf8_sink {
    char *out;
    size_t cap, n;
    bool overflow;
} utf8_sink;

static void sink_put(utf8_sink *k, const unsigned char *p, size_t n)
{
    if (k->n + n > k->cap) {
        k->overflow = true;
        return;
    }
    memcpy(k->out + k->n, p, n);
    k->n += n;
}

static const unsigned char REPLACEMENT[3] = {0xEF, 0xBF, 0xBD};

/* Runs the WHATWG UTF-8 decoder over pending ++ bytes: complete characters are copied, each
 * maximal invalid subpart becomes U+FFFD, and an incomplete tail goes to *tail (or becomes
 * U+FFFD when `final`). */
static void utf8_feed(const unsigned char *pend, int np, const unsigned char *bytes, size_t n,
                      bool final, utf8_sink *k, unsigned char *tail, int *ntail)
{
    size_t total = (size_t)np + n;
#define AT(j) ((j) < (size_t)np ? pend[(j)] : bytes[(j) - (size_t)np])
    size_t i = 0;
    *ntail = 0;
    while (i < total && !k->overflow) {
        unsigned char b = AT(i);
        if (b < 0x80) {
            /* Copy a run of ASCII at once when it lies in `bytes`. */
            if (i >= (size_t)np) {
                size_t j = i;
                while (j < total && bytes[j - (size_t)np] < 0x80)
                    j++;
                sink_put(k, bytes + (i - (size_t)np), j - i);
                i = j;
            } else {
                sink_put(k, &b, 1);
                i++;
            }
            continue;
        }
        int need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            lo = b == 0xE0 ? 0xA0 : 0x80;
            hi = b == 0xED ? 0x9F : 0xBF;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            lo = b == 0xF0 ? 0x90 : 0x80;
            hi = b == 0xF4 ? 0x8F : 0xBF;
        } else {
            sink_put(k, REPLACEMENT, 3);
            i++;
            continue;
        }
        size_t j = i + 1;
        bool bad = false;
        for (int q = 0; q < need; q++, j++) {
            if (j >= total) {
                if (final) {
                    sink_put(k, REPLACEMENT, 3);
                } else {
                    for (size_t m = i; m < total; m++)
                        tail[(*ntail)++] = AT(m);
                }
                return;
            }
            unsigned char c = AT(j);
            if (c < (q == 0 ? lo : 0x80) || c > (q == 0 ? hi : 0xBF)) {
                bad = true;
                break;
            }
        }
        if (bad) {
            sink_put(k, REPLACEMENT, 3);
            i = j; /* the offending byte starts the next attempt */
            continue;
        }
        unsigned char ch[4];
        for (size_t m = i; m < j; m++)
            ch[m - i] = AT(m);
        sink_put(k, ch, j - i);
        i = j;
    }
#undef AT
}

int dais_detok_push(dais_detok *d, int32_t id, char *out, size_t cap)
{
    const dais_tokenizer *t = d->tok;
    if (id < 0 || id >= t->n_vocab) return DAIS_ERANGE;
    uint8_t type = t->types[id];
    if (d->skip_special && (type == DAIS_TOKT_CONTROL || type == DAIS_TOKT_UNKNOWN)) return 0;
    size_t len;
    const unsigned char *p = (const unsigned char *)dais_token_text(t, id, &len);
    if (len == 0) return 0;
    utf8_sink k = {out, cap, 0, false};
    unsigned char tail[8];
    int ntail = 0;
    bool strip = d->at_start && d->n_pending == 0 && p[0] == ' ';
    if (strip) {
        p++;
        len--;
    }
    utf8_feed(d->pending, d->n_pending, p, len, false, &k, tail, &ntail);
    if (k.overflow) return DAIS_ETOOBIG;
    memcpy(d->pending, tail, (size_t)ntail);
    d->n_pending = ntail;
    if (strip || k.n > 0) d->at_start = false;
    return (int)k.n;
}

int dais_detok_flush(dais_detok *d, char *out, size_t cap)
{
    if (d->n_pending == 0) return 0;
    if (cap < 3) return DAIS_ETOOBIG;
    utf8_sink k = {out, cap, 0, false};
    unsigned char tail[8];
    int ntail = 0;
    utf8_feed(d->pending, d->n_pending, NULL, 0, true, &k, tail, &ntail);
    d->n_pending = 0;
    d->at_start = false;
    return (int)k.n;
}

int64_t dais_detokenize(const dais_tokenizer *t, const int32_t *ids, size_t n_ids,
                        bool skip_special, char *out, size_t cap)
{
    size_t bufcap = 3 * t->max_text_len + 16;
    char *buf = malloc(bufcap);
    if (buf == NULL) return DAIS_ENOMEM;
    dais_detok d;
    dais_detok_init(&d, t, skip_special);
    int64_t total = 0;
    for (size_t i = 0; i <= n_ids; i++) {
        int n = i < n_ids ? dais_detok_push(&d, ids[i], buf, bufcap)
                          : dais_detok_flush(&d, buf, bufcap);
        if (n < 0) {
            free(buf);
            return n;
        }
        if (out != NULL && (size_t)total < cap) {
            size_t room = cap - (size_t)total;
            memcpy(out + total, buf, (size_t)n < room ? (size_t)n : room);
        }
        total += n;
    }
    free(buf);
    return total;
}
