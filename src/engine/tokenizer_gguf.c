/*
 * Reads the tokenizer.ggml.* keys of a GGUF file into dais_tokenizer_params and builds the
 * tokenizer. Kept apart from tokenizer.c so that code which builds tokenizers from explicit
 * parameters does not pull in the GGUF reader. Every key is checked for its type and its
 * array length; the error names the key.
 */
#include "engine/tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#define KEY(name) "tokenizer.ggml." name

static int get_str_array(const dais_gguf *g, const char *key, bool required, int64_t *n,
                         const char ***strs, size_t **lens, dais_err *err)
{
    const dais_gguf_kv *kv = dais_gguf_find(g, key);
    *n = 0;
    *strs = NULL;
    *lens = NULL;
    if (kv == NULL) return required ? dais_err_set(err, DAIS_EFORMAT, "%s: missing", key) : 0;
    if (kv->type != DAIS_GGUF_ARRAY || kv->arr_type != DAIS_GGUF_STRING)
        return dais_err_set(err, DAIS_EFORMAT, "%s: must be an array of strings", key);
    if (kv->arr_n > (uint64_t)DAIS_TOK_MAX_MERGES)
        return dais_err_set(err, DAIS_ETOOBIG, "%s: %llu elements (limit %d)", key,
                            (unsigned long long)kv->arr_n, DAIS_TOK_MAX_MERGES);
    size_t cnt = (size_t)kv->arr_n;
    *strs = malloc((cnt ? cnt : 1) * sizeof(char *));
    *lens = malloc((cnt ? cnt : 1) * sizeof(size_t));
    if (*strs == NULL || *lens == NULL)
        return dais_err_set(err, DAIS_ENOMEM, "%s: out of memory", key);
    for (size_t i = 0; i < cnt; i++) {
        dais_gguf_str s;
        if (dais_gguf_arr_str(g, kv, i, &s) != 0)
            return dais_err_set(err, DAIS_EFORMAT, "%s[%zu]: unreadable string", key, i);
        if (s.len > SIZE_MAX / 2)
            return dais_err_set(err, DAIS_EFORMAT, "%s[%zu]: too long", key, i);
        (*strs)[i] = s.ptr;
        (*lens)[i] = (size_t)s.len;
    }
    *n = (int64_t)cnt;
    return 0;
}

static int get_id(const dais_gguf *g, const char *key, int64_t *out, dais_err *err)
{
    int rc = dais_gguf_get_i64(g, key, out, err);
    if (rc == DAIS_ENOTFOUND) {
        *out = -1;
        return 0;
    }
    return rc;
}

static int get_flag(const dais_gguf *g, const char *key, int *out, dais_err *err)
{
    bool b;
    int rc = dais_gguf_get_bool(g, key, &b, err);
    if (rc == DAIS_ENOTFOUND) {
        *out = -1;
        return 0;
    }
    if (rc == 0) *out = b ? 1 : 0;
    return rc;
}

dais_tokenizer *dais_tokenizer_from_gguf(const dais_gguf *g, dais_err *err)
{
    dais_tokenizer_params p;
    dais_tokenizer_params_init(&p);
    const char **tokens = NULL, **merges = NULL;
    size_t *token_lens = NULL, *merge_lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    dais_tokenizer *t = NULL;

    dais_gguf_str model, pre;
    int rc = dais_gguf_get_str(g, KEY("model"), &model, err);
    if (rc == DAIS_ENOTFOUND) {
        dais_err_set(err, DAIS_EFORMAT, KEY("model") ": missing (the file has no tokenizer)");
        goto out;
    }
    if (rc != 0) goto out;
    p.model = model.ptr;
    p.model_len = (size_t)model.len;
    rc = dais_gguf_get_str(g, KEY("pre"), &pre, err);
    if (rc == 0) {
        p.pre = pre.ptr;
        p.pre_len = (size_t)pre.len;
    } else if (rc != DAIS_ENOTFOUND) {
        goto out;
    }

    if (get_str_array(g, KEY("tokens"), true, &p.n_vocab, &tokens, &token_lens, err) != 0) goto out;
    if (p.n_vocab < 1 || p.n_vocab > DAIS_TOK_MAX_VOCAB) {
        dais_err_set(err, DAIS_EFORMAT, KEY("tokens") ": %lld tokens (need 1..%d)",
                     (long long)p.n_vocab, DAIS_TOK_MAX_VOCAB);
        goto out;
    }
    p.tokens = tokens;
    p.token_lens = token_lens;
    size_t nv = (size_t)p.n_vocab;

    const dais_gguf_kv *kv = dais_gguf_find(g, KEY("scores"));
    if (kv != NULL) {
        if (kv->type != DAIS_GGUF_ARRAY || kv->arr_n != nv) {
            dais_err_set(err, DAIS_EFORMAT,
                         KEY("scores") ": must be an array of %zu numbers (one per token)", nv);
            goto out;
        }
        scores = malloc(nv * sizeof(float));
        if (scores == NULL) {
            dais_err_set(err, DAIS_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        for (size_t i = 0; i < nv; i++) {
            if (dais_gguf_arr_f32(kv, i, &scores[i]) != 0) {
                dais_err_set(err, DAIS_EFORMAT, KEY("scores") "[%zu]: not a number", i);
                goto out;
            }
        }
        p.scores = scores;
    }
    kv = dais_gguf_find(g, KEY("token_type"));
    if (kv != NULL) {
        if (kv->type != DAIS_GGUF_ARRAY || kv->arr_n != nv) {
            dais_err_set(err, DAIS_EFORMAT,
                         KEY("token_type") ": must be an array of %zu integers (one per token)",
                         nv);
            goto out;
        }
        types = malloc(nv * sizeof(int32_t));
        if (types == NULL) {
            dais_err_set(err, DAIS_ENOMEM, "tokenizer: out of memory");
            goto out;
        }
        for (size_t i = 0; i < nv; i++) {
            int64_t v;
            if (dais_gguf_arr_i64(kv, i, &v) != 0 || v < 0 || v > DAIS_TOKT_BYTE) {
                dais_err_set(err, DAIS_EFORMAT, KEY("token_type") "[%zu]: not a token type (0..6)",
                             i);
                goto out;
            }
            types[i] = (int32_t)v;
        }
        p.token_types = types;
    }
    if (get_str_array(g, KEY("merges"), false, &p.n_merges, &merges, &merge_lens, err) != 0)
        goto out;
    p.merges = merges;
    p.merge_lens = merge_lens;

    if (get_id(g, KEY("bos_token_id"), &p.bos_id, err) ||
        get_id(g, KEY("eos_token_id"), &p.eos_id, err) ||
        get_id(g, KEY("unknown_token_id"), &p.unk_id, err) ||
        get_id(g, KEY("padding_token_id"), &p.pad_id, err) ||
        get_id(g, KEY("eot_token_id"), &p.eot_id, err) ||
        get_id(g, KEY("eom_token_id"), &p.eom_id, err) ||
        get_flag(g, KEY("add_bos_token"), &p.add_bos, err) ||
        get_flag(g, KEY("add_eos_token"), &p.add_eos, err) ||
        get_flag(g, KEY("add_space_prefix"), &p.add_space_prefix, err))
        goto out;

    t = dais_tokenizer_new(&p, err);
out:
    free(tokens);
    free(token_lens);
    free(merges);
    free(merge_lens);
    free(scores);
    free(types);
    return t;
}
