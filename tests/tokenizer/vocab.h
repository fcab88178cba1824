/*
 * Test and benchmark helper (header only): writes GGUF files that carry the real Llama 2 and
 * Llama 3 vocabularies in the standard tokenizer.ggml.* keys, plus a tiny Llama model with
 * small random F32 weights (dim 16, one layer), through the project's own GGUF writer, so the
 * tokenizer is loaded exactly as from a downloaded model.
 *
 *   Llama 2: ../shared/models/tokenizer.bin (llama2.c format: int32 max_len, then per token
 *            {f32 score, i32 len, bytes}); spaces become ▁, ids 1/2 are spelled <s>/</s> as in
 *            GGUF files, ids 0..2 are unknown/control, 3..258 byte tokens, the rest normal.
 *   Llama 3: tests/tokenizer/llama3-vocab.txt (one token per line, by id; from
 *            llama3-tokenizer-js 1.2.0). Ids >= 128000 are control tokens. The merges are every
 *            split of a token into two tokens, ordered by (merged id, left id, right id):
 *            gen_expected.mjs checks that this equals the package's 280,147 merges exactly.
 *
 * Paths: tv_data_dir() is tests/tokenizer (DAIS_TOKENIZER_DATA overrides; otherwise derived
 * from this file's location); tv_shared_dir() is DAIS_SHARED or ../shared beside the repo.
 */
#ifndef DAIS_TESTS_TOKENIZER_VOCAB_H
#define DAIS_TESTS_TOKENIZER_VOCAB_H

#include "common/error.h"
#include "engine/dtype.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline const char *tv_data_dir(void)
{
    static char dir[4096];
    const char *env = getenv("DAIS_TOKENIZER_DATA");
    if (env != NULL && env[0] != '\0') return env;
    snprintf(dir, sizeof dir, "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) return "tests/tokenizer";
    *slash = '\0';
    return dir;
}

/* dir + "/" + name into buf; an over-long path is cut short (and then simply not found). */
static inline const char *tv_path(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) buf[cap - 1] = '\0';
    return buf;
}

static inline const char *tv_shared_dir(void)
{
    static char dir[4096];
    const char *env = getenv("DAIS_SHARED");
    if (env != NULL && env[0] != '\0') return env;
    tv_path(dir, sizeof dir, tv_data_dir(), "../../../shared");
    return dir;
}

/* Reads a whole file (NUL-terminated copy); NULL on failure. */
static inline char *tv_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, 65536, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL) *len = n;
    return buf;
}

/* Small deterministic generator for the random weights. */
static inline float tv_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((*s >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
}

/* Adds llama.* hyper-parameters and a one-layer model with random weights (dim 16, 2 heads,
 * 1 KV head, FFN 32, tied output) for a vocabulary of n_vocab tokens. */
static inline void tv_add_tiny_model(dais_gguf_writer *w, int64_t n_vocab, uint64_t seed)
{
    const uint64_t dim = 16, ffn = 32, kv = 8;
    dais_gguf_writer_set_str(w, "general.architecture", "llama");
    dais_gguf_writer_set_u32(w, "llama.context_length", 256);
    dais_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)dim);
    dais_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)ffn);
    dais_gguf_writer_set_u32(w, "llama.block_count", 1);
    dais_gguf_writer_set_u32(w, "llama.attention.head_count", 2);
    dais_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 1);
    dais_gguf_writer_set_u32(w, "llama.rope.dimension_count", 8);
    dais_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    dais_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab);
    struct {
        const char *name;
        uint64_t ne0, ne1;
        bool ones;
    } ts[] = {
        {"token_embd.weight", dim, (uint64_t)n_vocab, false},
        {"output_norm.weight", dim, 1, true},
        {"blk.0.attn_norm.weight", dim, 1, true},
        {"blk.0.ffn_norm.weight", dim, 1, true},
        {"blk.0.attn_q.weight", dim, dim, false},
        {"blk.0.attn_k.weight", dim, kv, false},
        {"blk.0.attn_v.weight", dim, kv, false},
        {"blk.0.attn_output.weight", dim, dim, false},
        {"blk.0.ffn_gate.weight", dim, ffn, false},
        {"blk.0.ffn_up.weight", dim, ffn, false},
        {"blk.0.ffn_down.weight", ffn, dim, false},
    };
    uint64_t s = seed | 1;
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        uint64_t n = ts[i].ne0 * ts[i].ne1;
        float *d = malloc(n * sizeof(float));
        if (d == NULL)
            continue; /* the writer then lacks a tensor; loading the model would say so */
        for (uint64_t k = 0; k < n; k++)
            d[k] = ts[i].ones ? 1.0f : 0.1f * tv_rand(&s);
        uint64_t ne[2] = {ts[i].ne0, ts[i].ne1};
        dais_gguf_writer_add_tensor(w, ts[i].name, DAIS_F32, ts[i].ne1 > 1 ? 2 : 1, ne, d);
        free(d);
    }
}

/* Writes the Llama 2 vocabulary from a llama2.c tokenizer.bin as a GGUF model file. */
static inline int tv_write_llama2_gguf(const char *tokenizer_bin, const char *out, dais_err *err)
{
    size_t len;
    char *buf = tv_read_file(tokenizer_bin, &len);
    if (buf == NULL) return dais_err_set(err, DAIS_EIO, "%s: cannot read", tokenizer_bin);
    enum { N = 32000 };
    char **pieces = calloc(N, sizeof(char *));
    uint64_t *lens = calloc(N, sizeof(uint64_t));
    float *scores = calloc(N, sizeof(float));
    int32_t *types = calloc(N, sizeof(int32_t));
    int rc = DAIS_ENOMEM;
    dais_gguf_writer *w = NULL;
    if (!pieces || !lens || !scores || !types) goto out;
    size_t off = 4;
    for (int i = 0; i < N; i++) {
        int32_t l;
        if (off + 8 > len) {
            rc = dais_err_set(err, DAIS_EFORMAT, "%s: truncated at token %d", tokenizer_bin, i);
            goto out;
        }
        memcpy(&scores[i], buf + off, 4);
        memcpy(&l, buf + off + 4, 4);
        off += 8;
        if (l < 0 || (size_t)l > len - off) {
            rc = dais_err_set(err, DAIS_EFORMAT, "%s: bad length at token %d", tokenizer_bin, i);
            goto out;
        }
        /* Spaces become ▁ (3 bytes): at most 3x the length. */
        pieces[i] = malloc(3 * (size_t)l + 1);
        if (pieces[i] == NULL) goto out;
        size_t m = 0;
        for (int32_t k = 0; k < l; k++) {
            if (buf[off + (size_t)k] == ' ') {
                memcpy(pieces[i] + m, "\xE2\x96\x81", 3);
                m += 3;
            } else {
                pieces[i][m++] = buf[off + (size_t)k];
            }
        }
        lens[i] = m;
        off += (size_t)l;
        types[i] = i == 0     ? DAIS_TOKT_UNKNOWN
                   : i <= 2   ? DAIS_TOKT_CONTROL
                   : i <= 258 ? DAIS_TOKT_BYTE
                              : DAIS_TOKT_NORMAL;
    }
    strcpy(pieces[1], "<s>");
    lens[1] = 3;
    strcpy(pieces[2], "</s>");
    lens[2] = 4;

    w = dais_gguf_writer_new();
    if (w == NULL) goto out;
    dais_gguf_writer_set_str(w, "general.name", "llama2-vocab-test");
    tv_add_tiny_model(w, N, 2);
    dais_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    dais_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)pieces, lens, N);
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.scores", DAIS_GGUF_F32, scores, N);
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", DAIS_GGUF_I32, types, N);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
    dais_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    dais_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    rc = dais_gguf_writer_write(w, out, err);
out:
    dais_gguf_writer_free(w);
    if (pieces != NULL)
        for (int i = 0; i < N; i++)
            free(pieces[i]);
    free(pieces);
    free(lens);
    free(scores);
    free(types);
    free(buf);
    if (rc == DAIS_ENOMEM) dais_err_set(err, rc, "out of memory");
    return rc;
}

/* ---- Llama 3 ----------------------------------------------------------------------------- */

typedef struct tv_merge {
    int32_t result, left, right;
} tv_merge;

static inline int tv_merge_cmp(const void *a, const void *b)
{
    const tv_merge *x = a, *y = b;
    if (x->result != y->result) return x->result < y->result ? -1 : 1;
    if (x->left != y->left) return x->left < y->left ? -1 : 1;
    return (x->right > y->right) - (x->right < y->right);
}

static inline uint64_t tv_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Writes the Llama 3 vocabulary (token per line) as a GGUF model file with derived merges. */
static inline int tv_write_llama3_gguf(const char *vocab_txt, const char *out, dais_err *err)
{
    enum { N = 128256, N_TEXT = 128000 };
    size_t len;
    char *buf = tv_read_file(vocab_txt, &len);
    if (buf == NULL) return dais_err_set(err, DAIS_EIO, "%s: cannot read", vocab_txt);
    const char **tok = calloc(N, sizeof(char *));
    uint64_t *tlen = calloc(N, sizeof(uint64_t));
    int32_t *types = calloc(N, sizeof(int32_t));
    uint64_t hmask = (1u << 19) - 1;
    int32_t *slots = malloc((hmask + 1) * sizeof(int32_t));
    size_t mcap = 1 << 19, nm = 0;
    tv_merge *m = malloc(mcap * sizeof(tv_merge));
    char **mstr = NULL;
    int rc = DAIS_ENOMEM;
    dais_gguf_writer *w = NULL;
    if (!tok || !tlen || !types || !slots || !m) goto out;
    int n = 0;
    for (char *p = buf; p < buf + len && n < N;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        size_t l = nl != NULL ? (size_t)(nl - p) : (size_t)(buf + len - p);
        tok[n] = p;
        tlen[n] = l;
        types[n] = n < N_TEXT ? DAIS_TOKT_NORMAL : DAIS_TOKT_CONTROL;
        n++;
        p += l + 1;
    }
    if (n != N) {
        rc = dais_err_set(err, DAIS_EFORMAT, "%s: %d tokens, expected %d", vocab_txt, n, N);
        goto out;
    }
    for (uint64_t i = 0; i <= hmask; i++)
        slots[i] = -1;
    for (int i = 0; i < N_TEXT; i++) {
        uint64_t h = tv_hash(tok[i], tlen[i]) & hmask;
        while (slots[h] >= 0)
            h = (h + 1) & hmask;
        slots[h] = i;
    }
#define TV_FIND(s, l, out_id)                                                                      \
    do {                                                                                           \
        uint64_t h_ = tv_hash((s), (l)) & hmask;                                                   \
        (out_id) = -1;                                                                             \
        while (slots[h_] >= 0) {                                                                   \
            int32_t c_ = slots[h_];                                                                \
            if (tlen[c_] == (l) && memcmp(tok[c_], (s), (l)) == 0) {                               \
                (out_id) = c_;                                                                     \
                break;                                                                             \
            }                                                                                      \
            h_ = (h_ + 1) & hmask;                                                                 \
        }                                                                                          \
    } while (0)
    for (int i = 0; i < N_TEXT; i++) {
        for (size_t k = 1; k < tlen[i]; k++) {
            if (((unsigned char)tok[i][k] & 0xC0) == 0x80) continue;
            int32_t l, r;
            TV_FIND(tok[i], k, l);
            if (l < 0) continue;
            TV_FIND(tok[i] + k, tlen[i] - k, r);
            if (r < 0) continue;
            if (nm == mcap) {
                tv_merge *nmv = realloc(m, 2 * mcap * sizeof(tv_merge));
                if (nmv == NULL) goto out;
                m = nmv;
                mcap *= 2;
            }
            m[nm++] = (tv_merge){i, l, r};
        }
    }
#undef TV_FIND
    qsort(m, nm, sizeof(tv_merge), tv_merge_cmp);
    mstr = calloc(nm, sizeof(char *));
    if (mstr == NULL) goto out;
    for (size_t i = 0; i < nm; i++) {
        size_t a = tlen[m[i].left], b = tlen[m[i].right];
        mstr[i] = malloc(a + b + 2);
        if (mstr[i] == NULL) goto out;
        memcpy(mstr[i], tok[m[i].left], a);
        mstr[i][a] = ' ';
        memcpy(mstr[i] + a + 1, tok[m[i].right], b);
        mstr[i][a + b + 1] = '\0';
    }

    w = dais_gguf_writer_new();
    if (w == NULL) goto out;
    dais_gguf_writer_set_str(w, "general.name", "llama3-vocab-test");
    tv_add_tiny_model(w, N, 3);
    dais_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    dais_gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe");
    dais_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", tok, tlen, N);
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", DAIS_GGUF_I32, types, N);
    dais_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)mstr, NULL, nm);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 128000);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 128001);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", 128009);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.eom_token_id", 128008);
    dais_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    rc = dais_gguf_writer_write(w, out, err);
out:
    dais_gguf_writer_free(w);
    if (mstr != NULL)
        for (size_t i = 0; i < nm; i++)
            free(mstr[i]);
    free(mstr);
    free(m);
    free(slots);
    free(types);
    free(tlen);
    free(tok);
    free(buf);
    if (rc == DAIS_ENOMEM) dais_err_set(err, rc, "out of memory");
    return rc;
}

/* Writes `which` ("llama2" or "llama3") to a temporary GGUF, loads its tokenizer through
 * dais_gguf_open + dais_tokenizer_from_gguf, and removes the file. NULL with err on failure.
 * With keep_path != NULL the file is kept and its path copied there (cap bytes). */
static inline dais_tokenizer *tv_load_real(const char *which, char *keep_path, size_t cap,
                                           dais_err *err)
{
    char src[4096], path[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/dais-tok-%s-XXXXXX.gguf", tmp && tmp[0] ? tmp : "/tmp", which);
    int fd = mkstemps(path, 5);
    if (fd < 0) {
        dais_err_set(err, DAIS_EIO, "cannot create a temporary file in %s", path);
        return NULL;
    }
    close(fd);
    int rc;
    if (strcmp(which, "llama2") == 0) {
        tv_path(src, sizeof src, tv_shared_dir(), "models/tokenizer.bin");
        rc = tv_write_llama2_gguf(src, path, err);
    } else {
        tv_path(src, sizeof src, tv_data_dir(), "llama3-vocab.txt");
        rc = tv_write_llama3_gguf(src, path, err);
    }
    dais_tokenizer *t = NULL;
    if (rc == 0) {
        dais_gguf *g = dais_gguf_open(path, err);
        if (g != NULL) t = dais_tokenizer_from_gguf(g, err);
        dais_gguf_free(g);
    }
    if (keep_path != NULL && t != NULL)
        snprintf(keep_path, cap, "%s", path);
    else
        unlink(path);
    return t;
}

#endif
