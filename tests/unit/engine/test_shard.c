/*
 * Shard files (src/engine/shard.c) on stories260K (5 layers) and a tied synthetic model:
 *   - `dais_shard_write` of [0, 2) and [2, 5): deterministic bytes, only the needed tensors,
 *     the source's metadata plus the dais.shard.* keys;
 *   - the forward of each shard's range gives bit-identical hidden states and logits to the
 *     whole file's forward of that range (same weights, same kernels, same order);
 *   - a shard file is refused by dais_model_load (naming its range), its range is enforced by
 *     dais_kv_new and dais_forward (DAIS_ERANGE), its hash is its own and the source hash is
 *     reported separately;
 *   - malformed shard metadata (range beyond block_count, empty range, a missing key, a source
 *     hash that is not 64 lowercase hex digits, a missing tensor) gives a clear error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/shard.h"
#include "engine/synth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[64];
static char src_path[4096];

static const char *tmp_path(const char *name)
{
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    return p;
}

static int setup(void **state)
{
    (void)state;
    const char *env = getenv("DAIS_SHARED");
    const char *cands[] = {env, "../shared", "../../shared", "../../../shared"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (cands[i] == NULL) continue;
        snprintf(src_path, sizeof src_path, "%s/models/stories260K.gguf", cands[i]);
        if (access(src_path, R_OK) == 0) break;
        src_path[0] = '\0';
    }
    if (src_path[0] == '\0') {
        fprintf(stderr, "stories260K.gguf not found: set DAIS_SHARED to the shared directory\n");
        return -1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dais_test_shard_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_shard(const char *in, int32_t first, int32_t last, const char *out)
{
    dais_err err;
    dais_shard_info si;
    int rc = dais_shard_write(in, first, last, out, &si, &err);
    if (rc != 0) fprintf(stderr, "shard %s: %s\n", out, err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(si.layer_first, first);
    assert_int_equal(si.layer_last, last);
    assert_int_equal(strlen(si.source_sha256), 64);
}

static dais_model *load_any(const char *path)
{
    dais_err err;
    dais_model *m = dais_model_load_any(path, &err);
    if (m == NULL) fprintf(stderr, "load %s: %s\n", path, err.msg);
    assert_non_null(m);
    return m;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    char *b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* ---- the file ---------------------------------------------------------------------------- */

static void test_write_contents(void **state)
{
    (void)state;
    const char *a = tmp_path("a.gguf"), *a2 = tmp_path("a2.gguf"), *b = tmp_path("b.gguf");
    write_shard(src_path, 0, 2, a);
    write_shard(src_path, 0, 2, a2);
    write_shard(src_path, 2, 5, b);
    size_t la, la2;
    char *ba = slurp(a, &la), *ba2 = slurp(a2, &la2);
    assert_int_equal(la, la2);
    assert_memory_equal(ba, ba2, la); /* deterministic */
    free(ba);
    free(ba2);

    dais_err err;
    dais_gguf *src = dais_gguf_open(src_path, &err);
    dais_gguf *ga = dais_gguf_open(a, &err), *gb = dais_gguf_open(b, &err);
    assert_non_null(src);
    assert_non_null(ga);
    assert_non_null(gb);
    /* Metadata: every source key with the same type, plus the three shard keys. */
    assert_int_equal(dais_gguf_n_kv(ga), dais_gguf_n_kv(src) + 3);
    for (uint64_t i = 0; i < dais_gguf_n_kv(src); i++) {
        const dais_gguf_kv *s = dais_gguf_kv_at(src, i), *t = dais_gguf_kv_at(ga, i);
        assert_int_equal(s->key.len, t->key.len);
        assert_memory_equal(s->key.ptr, t->key.ptr, (size_t)s->key.len);
        assert_int_equal(s->type, t->type);
        assert_int_equal(s->arr_n, t->arr_n);
    }
    uint32_t u;
    assert_int_equal(dais_gguf_get_u32(gb, "llama.block_count", &u, NULL), 0);
    assert_int_equal(u, 5);
    assert_int_equal(dais_gguf_get_u32(gb, DAIS_SHARD_KEY_FIRST, &u, NULL), 0);
    assert_int_equal(u, 2);
    assert_int_equal(dais_gguf_get_u32(gb, DAIS_SHARD_KEY_LAST, &u, NULL), 0);
    assert_int_equal(u, 5);
    /* Tensors: exactly the needed ones, same type, shape and bytes. */
    uint64_t na = 0, nb = 0;
    for (uint64_t i = 0; i < dais_gguf_n_tensors(src); i++) {
        const dais_gguf_tensor *t = dais_gguf_tensor_at(src, i);
        int blk = -1;
        if (strncmp(t->name, "blk.", 4) == 0) blk = atoi(t->name + 4);
        bool in_a = (blk >= 0 && blk < 2) || strcmp(t->name, "token_embd.weight") == 0;
        bool in_b = blk >= 2 || strcmp(t->name, "output.weight") == 0 ||
                    strcmp(t->name, "output_norm.weight") == 0;
        const dais_gguf_tensor *ta = dais_gguf_find_tensor(ga, t->name);
        const dais_gguf_tensor *tb = dais_gguf_find_tensor(gb, t->name);
        assert_int_equal(ta != NULL, in_a);
        assert_int_equal(tb != NULL, in_b);
        const dais_gguf_tensor *c = ta != NULL ? ta : tb;
        assert_non_null(c);
        assert_int_equal(c->type, t->type);
        assert_int_equal(c->n_dims, t->n_dims);
        assert_memory_equal(c->ne, t->ne, sizeof t->ne);
        assert_int_equal(c->nbytes, t->nbytes);
        assert_memory_equal(c->data, t->data, t->nbytes);
        na += in_a;
        nb += in_b;
    }
    assert_int_equal(dais_gguf_n_tensors(ga), na);
    assert_int_equal(dais_gguf_n_tensors(gb), nb);
    assert_true(dais_gguf_file_size(ga) + dais_gguf_file_size(gb) <
                dais_gguf_file_size(src) + (64u << 10));
    dais_gguf_free(src);
    dais_gguf_free(ga);
    dais_gguf_free(gb);
}

/* ---- the engine ---------------------------------------------------------------------------- */

static void test_load_and_hashes(void **state)
{
    (void)state;
    const char *a = tmp_path("a.gguf");
    write_shard(src_path, 0, 2, a);
    dais_err err;
    assert_null(dais_model_load(a, &err));
    assert_non_null(strstr(err.msg, "shard file"));
    assert_non_null(strstr(err.msg, "[0, 2)"));

    dais_model *whole = load_any(src_path), *m = load_any(a);
    int32_t f, l;
    assert_false(dais_model_layer_range(whole, &f, &l));
    assert_int_equal(f, 0);
    assert_int_equal(l, 5);
    assert_true(dais_model_layer_range(m, &f, &l));
    assert_int_equal(f, 0);
    assert_int_equal(l, 2);
    assert_string_equal(dais_model_source_hash(m), dais_model_hash(whole));
    assert_string_equal(dais_model_source_hash(whole), dais_model_hash(whole));
    assert_string_not_equal(dais_model_hash(m), dais_model_hash(whole)); /* its own bytes */
    /* Caches and forwards outside the range are refused. */
    assert_null(dais_kv_new(m, 16, 0, 3));
    assert_null(dais_kv_new(m, 16, 2, 5));
    dais_kv *kv = dais_kv_new(m, 16, 0, 2);
    assert_non_null(kv);
    dais_ctx *c = dais_ctx_new(m, 1, 4, &err);
    assert_non_null(c);
    dais_kv *kw = dais_kv_new(whole, 16, 0, 5); /* a cache shape the shard cannot use */
    int32_t tok = 1, pos = 0, seq = 0;
    float act[64], logits[512];
    dais_batch bt = {
        .n_tokens = 1, .token = &tok, .pos = &pos, .seq = &seq, .layer_first = 0, .layer_last = 5};
    assert_int_equal(dais_forward(c, &bt, &kw, 1, logits), DAIS_ERANGE);
    bt.layer_last = 2;
    bt.act_out = act;
    assert_int_equal(dais_forward(c, &bt, &kv, 1, NULL), 0);
    assert_int_equal(dais_kv_len(kv), 1);
    dais_kv_free(kw);
    dais_kv_free(kv);
    dais_ctx_free(c);
    dais_model_free(m);
    dais_model_free(whole);
}

/* Runs `n` prompt tokens through [first, last) of `m` in one batch (act_in/act_out (n, dim)),
 * then one more token; writes act_out or the logits of every token. */
static void run_range(dais_model *m, int32_t first, int32_t last, const float *act_in,
                      float *act_out, float *logits, int32_t n)
{
    dais_err err;
    dais_ctx *c = dais_ctx_new(m, 2, n, &err);
    assert_non_null(c);
    dais_kv *kv = dais_kv_new(m, 64, first, last);
    assert_non_null(kv);
    int32_t tok[16], pos[16], seq[16];
    bool want[16];
    for (int32_t i = 0; i < n; i++) {
        tok[i] = 1 + 37 * i % 500;
        pos[i] = i;
        seq[i] = 0;
        want[i] = true;
    }
    dais_batch b = {.n_tokens = n - 1,
                    .token = tok,
                    .pos = pos,
                    .seq = seq,
                    .logits = want,
                    .layer_first = first,
                    .layer_last = last,
                    .act_in = act_in,
                    .act_out = act_out};
    assert_int_equal(dais_forward(c, &b, &kv, 1, logits), 0);
    /* The last token alone: a decode step against the cache. */
    int32_t dim = dais_model_hparams(m)->dim, nv = dais_model_hparams(m)->n_vocab;
    b.n_tokens = 1;
    b.token = tok + n - 1;
    b.pos = pos + n - 1;
    b.logits = want + n - 1;
    b.act_in = act_in ? act_in + (size_t)(n - 1) * (size_t)dim : NULL;
    b.act_out = act_out ? act_out + (size_t)(n - 1) * (size_t)dim : NULL;
    assert_int_equal(dais_forward(c, &b, &kv, 1, logits ? logits + (size_t)(n - 1) * nv : NULL), 0);
    dais_kv_free(kv);
    dais_ctx_free(c);
}

static void test_forward_bit_identical(void **state)
{
    (void)state;
    const char *a = tmp_path("a.gguf"), *b = tmp_path("b.gguf");
    write_shard(src_path, 0, 2, a);
    write_shard(src_path, 2, 5, b);
    dais_model *whole = load_any(src_path), *ma = load_any(a), *mb = load_any(b);
    const int32_t n = 9, dim = dais_model_hparams(whole)->dim;
    const int32_t nv = dais_model_hparams(whole)->n_vocab;
    float *h_whole = calloc((size_t)n * dim, sizeof(float));
    float *h_shard = calloc((size_t)n * dim, sizeof(float));
    float *lg_whole = calloc((size_t)n * nv, sizeof(float));
    float *lg_shard = calloc((size_t)n * nv, sizeof(float));
    float *lg_full = calloc((size_t)n * nv, sizeof(float));
    assert_true(h_whole && h_shard && lg_whole && lg_shard && lg_full);

    run_range(whole, 0, 2, NULL, h_whole, NULL, n);
    run_range(ma, 0, 2, NULL, h_shard, NULL, n);
    assert_memory_equal(h_whole, h_shard, (size_t)n * dim * sizeof(float));
    run_range(whole, 2, 5, h_whole, NULL, lg_whole, n);
    run_range(mb, 2, 5, h_shard, NULL, lg_shard, n);
    assert_memory_equal(lg_whole, lg_shard, (size_t)n * nv * sizeof(float));
    /* And the two shards chained equal the whole model in one pass, bit for bit. */
    run_range(whole, 0, 5, NULL, NULL, lg_full, n);
    assert_memory_equal(lg_full, lg_shard, (size_t)n * nv * sizeof(float));

    free(h_whole);
    free(h_shard);
    free(lg_whole);
    free(lg_shard);
    free(lg_full);
    dais_model_free(whole);
    dais_model_free(ma);
    dais_model_free(mb);
}

/* A tied model's last stage carries token_embd.weight for the output; a middle stage neither. */
static void test_tied_and_middle(void **state)
{
    (void)state;
    dais_synth_params p;
    dais_synth_params_default(&p);
    p.n_layers = 3;
    p.tied_output = true;
    const char *src = tmp_path("tied.gguf"), *top = tmp_path("tied_top.gguf");
    const char *mid = tmp_path("tied_mid.gguf");
    dais_err err;
    assert_int_equal(dais_synth_write(&p, src, &err), 0);
    write_shard(src, 2, 3, top);
    write_shard(src, 1, 2, mid);
    dais_gguf *g = dais_gguf_open(top, &err);
    assert_non_null(g);
    assert_non_null(dais_gguf_find_tensor(g, "token_embd.weight"));
    assert_non_null(dais_gguf_find_tensor(g, "output_norm.weight"));
    assert_null(dais_gguf_find_tensor(g, "output.weight"));
    assert_null(dais_gguf_find_tensor(g, "blk.1.attn_q.weight"));
    dais_gguf_free(g);
    g = dais_gguf_open(mid, &err);
    assert_non_null(g);
    assert_null(dais_gguf_find_tensor(g, "token_embd.weight"));
    assert_null(dais_gguf_find_tensor(g, "output_norm.weight"));
    assert_non_null(dais_gguf_find_tensor(g, "blk.1.ffn_down.weight"));
    assert_int_equal(dais_gguf_n_tensors(g), 9);
    dais_gguf_free(g);

    dais_model *whole = load_any(src), *mt = load_any(top), *mm = load_any(mid);
    assert_true(dais_model_hparams(mt)->tied_output);
    const int32_t n = 5, dim = dais_model_hparams(whole)->dim;
    const int32_t nv = dais_model_hparams(whole)->n_vocab;
    float *h0 = calloc((size_t)n * dim, sizeof(float)),
          *h1 = calloc((size_t)n * dim, sizeof(float));
    float *h1s = calloc((size_t)n * dim, sizeof(float));
    float *l1 = calloc((size_t)n * nv, sizeof(float)), *l2 = calloc((size_t)n * nv, sizeof(float));
    assert_true(h0 && h1 && h1s && l1 && l2);
    run_range(whole, 0, 1, NULL, h0, NULL, n);
    run_range(whole, 1, 2, h0, h1, NULL, n);
    run_range(mm, 1, 2, h0, h1s, NULL, n);
    assert_memory_equal(h1, h1s, (size_t)n * dim * sizeof(float));
    run_range(whole, 2, 3, h1, NULL, l1, n);
    run_range(mt, 2, 3, h1s, NULL, l2, n);
    assert_memory_equal(l1, l2, (size_t)n * nv * sizeof(float));
    free(h0);
    free(h1);
    free(h1s);
    free(l1);
    free(l2);
    dais_model_free(whole);
    dais_model_free(mt);
    dais_model_free(mm);
}

/* ---- malformed shard files ----------------------------------------------------------------- */

/* Rewrites `in` to `out` with every key copied, then `mut` applied, and tensor `drop` left out. */
typedef void (*mutate_fn)(dais_gguf_writer *w);

static void rewrite(const char *in, const char *out, mutate_fn mut, const char *drop,
                    const char *drop_key)
{
    dais_err err;
    dais_gguf *g = dais_gguf_open(in, &err);
    assert_non_null(g);
    dais_gguf_writer *w = dais_gguf_writer_new();
    assert_non_null(w);
    for (uint64_t i = 0; i < dais_gguf_n_kv(g); i++) {
        const dais_gguf_kv *kv = dais_gguf_kv_at(g, i);
        if (drop_key != NULL && kv->key.len == strlen(drop_key) &&
            memcmp(kv->key.ptr, drop_key, kv->key.len) == 0)
            continue;
        assert_int_equal(dais_gguf_writer_copy_kv(w, g, kv), 0);
    }
    if (mut != NULL) mut(w);
    for (uint64_t i = 0; i < dais_gguf_n_tensors(g); i++) {
        const dais_gguf_tensor *t = dais_gguf_tensor_at(g, i);
        if (drop != NULL && strcmp(t->name, drop) == 0) continue;
        dais_gguf_writer_add_tensor_nocopy(w, t->name, t->type, t->n_dims, t->ne, t->data);
    }
    int rc = dais_gguf_writer_write(w, out, &err);
    if (rc != 0) fprintf(stderr, "rewrite: %s\n", err.msg);
    assert_int_equal(rc, 0);
    dais_gguf_writer_free(w);
    dais_gguf_free(g);
}

static void beyond(dais_gguf_writer *w)
{
    dais_gguf_writer_set_u32(w, DAIS_SHARD_KEY_LAST, 6);
}
static void empty(dais_gguf_writer *w)
{
    dais_gguf_writer_set_u32(w, DAIS_SHARD_KEY_FIRST, 2);
    dais_gguf_writer_set_u32(w, DAIS_SHARD_KEY_LAST, 2);
}
static void short_hash(dais_gguf_writer *w)
{
    dais_gguf_writer_set_str(w, DAIS_SHARD_KEY_SOURCE, "270cba1bd5109f42");
}
static void upper_hash(dais_gguf_writer *w)
{
    dais_gguf_writer_set_str(w, DAIS_SHARD_KEY_SOURCE,
                             "270CBA1BD5109F42D03350F60406024560464DB173C0E387D91F0426D3BD256D");
}
static void int_hash(dais_gguf_writer *w)
{
    dais_gguf_writer_set_u32(w, DAIS_SHARD_KEY_SOURCE, 7);
}
static void str_first(dais_gguf_writer *w)
{
    dais_gguf_writer_set_str(w, DAIS_SHARD_KEY_FIRST, "two");
}

static void expect_error(const char *path, const char *want1, const char *want2)
{
    dais_err err;
    dais_model *m = dais_model_load_any(path, &err);
    if (m != NULL || strstr(err.msg, want1) == NULL ||
        (want2 != NULL && strstr(err.msg, want2) == NULL))
        fprintf(stderr, "%s: got '%s', want '%s' and '%s'\n", path, m ? "(loaded)" : err.msg, want1,
                want2 ? want2 : "");
    assert_null(m);
    assert_non_null(strstr(err.msg, want1));
    if (want2 != NULL) assert_non_null(strstr(err.msg, want2));
}

static void test_malformed(void **state)
{
    (void)state;
    const char *b = tmp_path("b.gguf"), *bad = tmp_path("bad.gguf");
    write_shard(src_path, 2, 5, b);
    rewrite(b, bad, NULL, NULL, NULL); /* the copy itself is a good shard */
    dais_model *ok = load_any(bad);
    dais_model_free(ok);

    rewrite(b, bad, beyond, NULL, NULL);
    expect_error(bad, "dais.shard.layer_last = 6 is out of range", "block_count is 5");
    rewrite(b, bad, empty, NULL, NULL);
    expect_error(bad, "empty layer range [2, 2)", NULL);
    rewrite(b, bad, NULL, NULL, DAIS_SHARD_KEY_LAST);
    expect_error(bad, "missing metadata key dais.shard.layer_last", NULL);
    rewrite(b, bad, NULL, NULL, DAIS_SHARD_KEY_SOURCE);
    expect_error(bad, "missing metadata key dais.shard.source_sha256", NULL);
    rewrite(b, bad, short_hash, NULL, NULL);
    expect_error(bad, "dais.shard.source_sha256 is not a SHA-256", "16 bytes");
    rewrite(b, bad, upper_hash, NULL, NULL);
    expect_error(bad, "dais.shard.source_sha256 is not a SHA-256", "lowercase");
    rewrite(b, bad, int_hash, NULL, NULL);
    expect_error(bad, "dais.shard.source_sha256 is not a string", NULL);
    rewrite(b, bad, str_first, NULL, NULL);
    expect_error(bad, "shard file", "dais.shard.layer_first");
    rewrite(b, bad, NULL, "blk.3.ffn_up.weight", NULL);
    expect_error(bad, "missing tensor blk.3.ffn_up.weight", NULL);
    rewrite(b, bad, NULL, "output_norm.weight", NULL);
    expect_error(bad, "missing tensor output_norm.weight", NULL);

    /* The writer's own refusals. */
    dais_err err;
    assert_int_not_equal(dais_shard_write(src_path, 3, 7, bad, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "5 layers"));
    assert_int_not_equal(dais_shard_write(src_path, 0, 5, bad, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "whole model"));
    assert_int_not_equal(dais_shard_write(b, 2, 3, bad, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "shard file"));
}

static void test_needs_tensor(void **state)
{
    (void)state;
    assert_true(dais_shard_needs_tensor("blk.3.attn_q.weight", 2, 5, 5, false));
    assert_false(dais_shard_needs_tensor("blk.1.attn_q.weight", 2, 5, 5, false));
    assert_false(dais_shard_needs_tensor("blk.12.attn_q.weight", 2, 5, 5, false));
    assert_false(dais_shard_needs_tensor("blk.x.attn_q.weight", 0, 5, 5, false));
    assert_true(dais_shard_needs_tensor("token_embd.weight", 0, 2, 5, false));
    assert_false(dais_shard_needs_tensor("token_embd.weight", 2, 5, 5, false));
    assert_true(dais_shard_needs_tensor("token_embd.weight", 2, 5, 5, true));
    assert_false(dais_shard_needs_tensor("output.weight", 0, 2, 5, false));
    assert_true(dais_shard_needs_tensor("output_norm.weight", 3, 5, 5, false));
    assert_true(dais_shard_needs_tensor("rope_freqs.weight", 1, 2, 5, false));
    assert_false(dais_shard_needs_tensor("something.else", 0, 2, 5, false));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_contents),
        cmocka_unit_test(test_load_and_hashes),
        cmocka_unit_test(test_forward_bit_identical),
        cmocka_unit_test(test_tied_and_middle),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_needs_tensor),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
