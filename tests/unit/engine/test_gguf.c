/*
 * GGUF reader and writer tests: the real stories260K file, a writer round trip of every value
 * type, and corrupted inputs (truncation at every byte, random byte flips, crafted bad headers,
 * keys and tensors), each checked for its error code and a message naming the culprit.
 * With DAIS_GGUF_CORPUS_OUT=DIR set, the seed-corpus test also writes the fuzz seeds there
 * (tests/fuzz/corpus/gguf/ holds the committed copy).
 */
#include "engine/dtype.h"
#include "engine/gguf.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------------------------- */

static const char *shared_dir(void)
{
    const char *d = getenv("DAIS_SHARED");
    return d != NULL && d[0] != '\0' ? d : "../shared";
}

/* A growable byte buffer for hand-made (often invalid) GGUF images. */
typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_raw(bb *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (n > 0) memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void bb_u8(bb *b, uint8_t v)
{
    bb_raw(b, &v, 1);
}

static void bb_u32(bb *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bb_raw(b, x, 4);
}

static void bb_u64(bb *b, uint64_t v)
{
    bb_u32(b, (uint32_t)v);
    bb_u32(b, (uint32_t)(v >> 32));
}

static void bb_str(bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_raw(b, s, strlen(s));
}

static void bb_hdr(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    bb_raw(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}

static void bb_kv_u32(bb *b, const char *key, uint32_t v)
{
    bb_str(b, key);
    bb_u32(b, DAIS_GGUF_U32);
    bb_u32(b, v);
}

static void bb_tinfo(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t offset)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        bb_u64(b, ne[i]);
    bb_u32(b, type);
    bb_u64(b, offset);
}

static void bb_pad(bb *b, size_t align)
{
    while (b->n % align != 0)
        bb_u8(b, 0);
}

static void bb_zeros(bb *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bb_u8(b, 0);
}

/* Parses an exact-size heap copy (so ASan sees any over-read) and returns the result. */
static dais_gguf *parse_copy(const uint8_t *p, size_t n, uint8_t **copy, dais_err *err)
{
    *copy = malloc(n > 0 ? n : 1);
    assert_non_null(*copy);
    if (n > 0) memcpy(*copy, p, n);
    return dais_gguf_parse(*copy, n, err);
}

/* Expects parsing to fail with `code` and a message containing every given substring. */
static void expect_fail(bb *b, int code, ...)
{
    uint8_t *copy;
    dais_err err;
    dais_err_clear(&err);
    dais_gguf *g = parse_copy(b->p, b->n, &copy, &err);
    if (g != NULL) fail_msg("parse unexpectedly succeeded");
    if (err.code != code)
        fail_msg("code %d (%s), expected %d; message: %s", err.code, dais_errname(err.code), code,
                 err.msg);
    va_list ap;
    va_start(ap, code);
    const char *sub;
    while ((sub = va_arg(ap, const char *)) != NULL)
        if (strstr(err.msg, sub) == NULL) fail_msg("message \"%s\" lacks \"%s\"", err.msg, sub);
    va_end(ap);
    free(copy);
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* Writes the writer's file into a heap buffer (open_memstream). */
static uint8_t *write_mem(dais_gguf_writer *w, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    assert_non_null(f);
    dais_err err;
    int rc = dais_gguf_writer_write_file(w, f, &err);
    if (rc != 0) fail_msg("write failed: %s", err.msg);
    assert_int_equal(fclose(f), 0);
    *len = n;
    return (uint8_t *)buf;
}

/* Exercises every accessor and the dump; returns the number of keys + tensors seen. */
static uint64_t touch_all(const dais_gguf *g)
{
    uint64_t seen = 0;
    for (uint64_t i = 0; i < dais_gguf_n_kv(g); i++) {
        const dais_gguf_kv *kv = dais_gguf_kv_at(g, i);
        char key[256];
        size_t kl = kv->key.len < sizeof(key) - 1 ? (size_t)kv->key.len : sizeof(key) - 1;
        memcpy(key, kv->key.ptr, kl);
        key[kl] = '\0';
        uint32_t u32;
        uint64_t u64;
        int64_t i64;
        float f;
        bool bl;
        dais_gguf_str s;
        dais_err err;
        (void)dais_gguf_get_u32(g, key, &u32, &err);
        (void)dais_gguf_get_u64(g, key, &u64, &err);
        (void)dais_gguf_get_i64(g, key, &i64, &err);
        (void)dais_gguf_get_f32(g, key, &f, &err);
        (void)dais_gguf_get_bool(g, key, &bl, &err);
        (void)dais_gguf_get_str(g, key, &s, &err);
        if (kv->type == DAIS_GGUF_ARRAY)
            for (uint64_t j = 0; j < kv->arr_n && j < 64; j++) {
                (void)dais_gguf_arr_i64(kv, j, &i64);
                (void)dais_gguf_arr_f32(kv, j, &f);
                if (dais_gguf_arr_str(g, kv, j, &s) == 0 && s.len > 0)
                    seen += (uint8_t)s.ptr[s.len - 1] == 0xff;
            }
        seen++;
    }
    for (uint64_t i = 0; i < dais_gguf_n_tensors(g); i++) {
        const dais_gguf_tensor *t = dais_gguf_tensor_at(g, i);
        assert_ptr_equal(dais_gguf_find_tensor(g, t->name), t);
        const uint8_t *d = t->data;
        seen += d[0] == 0xff && d[t->nbytes - 1] == 0xff;
        seen++;
    }
    FILE *null = fopen("/dev/null", "w");
    assert_non_null(null);
    assert_int_equal(dais_gguf_dump(g, null, 4), 0);
    fclose(null);
    return seen;
}

/* ---- stories260K ----------------------------------------------------------------------------- */

static void test_stories260k(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof(path), "%s/models/stories260K.gguf", shared_dir());
    dais_err err;
    dais_gguf *g = dais_gguf_open(path, &err);
    if (g == NULL) fail_msg("%s", err.msg);
    assert_int_equal(dais_gguf_version(g), 3);
    assert_int_equal(dais_gguf_n_tensors(g), 48);
    assert_int_equal(dais_gguf_n_kv(g), 19);
    assert_int_equal(dais_gguf_alignment(g), 32);
    assert_int_equal(dais_gguf_data_offset(g), 14176);
    assert_int_equal(dais_gguf_file_size(g), 1185376);

    const dais_gguf_kv *kv = dais_gguf_find(g, "llama.embedding_length");
    assert_non_null(kv);
    assert_int_equal(kv->type, DAIS_GGUF_U32);
    uint32_t u = 0;
    assert_int_equal(dais_gguf_get_u32(g, "llama.embedding_length", &u, &err), 0);
    assert_int_equal(u, 64);
    assert_int_equal(dais_gguf_get_u32(g, "llama.block_count", &u, &err), 0);
    assert_int_equal(u, 5);
    float eps = 0;
    assert_int_equal(dais_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &eps, &err), 0);
    assert_float_equal(eps, 1e-5f, 1e-12f);
    dais_gguf_str s;
    assert_int_equal(dais_gguf_get_str(g, "general.architecture", &s, &err), 0);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "llama", 5);
    assert_int_equal(dais_gguf_get_u32(g, "no.such.key", &u, &err), DAIS_ENOTFOUND);
    assert_int_equal(dais_gguf_get_u32(g, "tokenizer.ggml.seperator_token_id", &u, &err), 0);
    assert_int_equal(u, 0xFFFFFFFFu);

    const dais_gguf_kv *tok = dais_gguf_find(g, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->type, DAIS_GGUF_ARRAY);
    assert_int_equal(tok->arr_type, DAIS_GGUF_STRING);
    assert_int_equal(tok->arr_n, 512);
    assert_int_equal(dais_gguf_arr_str(g, tok, 1, &s), 0);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.ptr, "<s>", 3);
    assert_int_equal(dais_gguf_arr_str(g, tok, 2, &s), 0);
    assert_memory_equal(s.ptr, "</s>", 4);
    assert_int_equal(dais_gguf_arr_str(g, tok, 3, &s), 0);
    assert_int_equal(s.len, 6);
    assert_memory_equal(s.ptr, "<0x00>", 6);
    assert_int_equal(dais_gguf_arr_str(g, tok, 512, &s), DAIS_EINVAL);
    const dais_gguf_kv *scores = dais_gguf_find(g, "tokenizer.ggml.scores");
    assert_non_null(scores);
    float sc = 1;
    assert_int_equal(dais_gguf_arr_f32(scores, 259, &sc), 0);
    assert_float_equal(sc, 0.0f, 0.0f); /* merges score 0, -1, -2 … (README) */
    assert_int_equal(dais_gguf_arr_f32(scores, 260, &sc), 0);
    assert_float_equal(sc, -1.0f, 0.0f);
    const dais_gguf_kv *types = dais_gguf_find(g, "tokenizer.ggml.token_type");
    assert_non_null(types);
    int64_t ty = 0;
    assert_int_equal(dais_gguf_arr_i64(types, 1, &ty), 0);
    assert_int_equal(ty, 3); /* control */

    const dais_gguf_tensor *t = dais_gguf_find_tensor(g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, DAIS_F32);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->nbytes, 64 * 512 * 4);
    assert_null(dais_gguf_find_tensor(g, "token_embd"));
    const dais_gguf_tensor *k = dais_gguf_find_tensor(g, "blk.4.attn_k.weight");
    assert_non_null(k);
    assert_int_equal(k->ne[0], 64);
    assert_int_equal(k->ne[1], 32);

    /* The data pointer is right: the embedding is bit-identical to the llama2.c checkpoint's,
     * which follows its 28-byte header (README cross-check). */
    snprintf(path, sizeof(path), "%s/models/stories260K.bin", shared_dir());
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    float ref[64];
    assert_int_equal(fseek(f, 28, SEEK_SET), 0);
    assert_int_equal(fread(ref, sizeof(float), 64, f), 64);
    fclose(f);
    assert_memory_equal(t->data, ref, sizeof(ref));

    char *out = NULL;
    size_t out_len = 0;
    FILE *m = open_memstream(&out, &out_len);
    assert_int_equal(dais_gguf_dump(g, m, 3), 0);
    fclose(m);
    assert_non_null(strstr(out, "GGUF version 3"));
    assert_non_null(strstr(out, "tensor data at offset 14176"));
    assert_non_null(strstr(out, "\"llama.embedding_length\" u32 = 64"));
    assert_non_null(strstr(out, "arr[str,512] = [\"<unk>\", \"<s>\", \"</s>\", ... (512 total)]"));
    assert_non_null(strstr(out, "token_embd.weight"));
    assert_non_null(strstr(out, "[64, 512]"));
    assert_non_null(strstr(out, "f32 x48"));
    free(out);
    dais_gguf_free(g);
}

/* ---- writer round trip ----------------------------------------------------------------------- */

/* A file with every value type, arrays of every element type and tensors of several types. */
static dais_gguf_writer *make_all_types(void)
{
    dais_gguf_writer *w = dais_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(dais_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(dais_gguf_writer_set_u8(w, "t.u8", 200), 0);
    assert_int_equal(dais_gguf_writer_set_i8(w, "t.i8", -100), 0);
    assert_int_equal(dais_gguf_writer_set_u16(w, "t.u16", 60000), 0);
    assert_int_equal(dais_gguf_writer_set_i16(w, "t.i16", -30000), 0);
    assert_int_equal(dais_gguf_writer_set_u32(w, "t.u32", 4000000000u), 0);
    assert_int_equal(dais_gguf_writer_set_i32(w, "t.i32", -2000000000), 0);
    assert_int_equal(dais_gguf_writer_set_u64(w, "t.u64", 18000000000000000000ull), 0);
    assert_int_equal(dais_gguf_writer_set_i64(w, "t.i64", -9000000000000000000ll), 0);
    assert_int_equal(dais_gguf_writer_set_f32(w, "t.f32", 1.5f), 0);
    assert_int_equal(dais_gguf_writer_set_f64(w, "t.f64", 1e-5), 0);
    assert_int_equal(dais_gguf_writer_set_bool(w, "t.bool", true), 0);
    assert_int_equal(dais_gguf_writer_set_str(w, "t.str", "h\xc3\xa9llo\n\x01"), 0);
    assert_int_equal(dais_gguf_writer_set_str(w, "t.empty", ""), 0);
    assert_int_equal(dais_gguf_writer_set_u64(w, "t.small_u64", 2048), 0);
    assert_int_equal(dais_gguf_writer_set_i32(w, "t.neg", -1), 0);
    assert_int_equal(dais_gguf_writer_set_f64(w, "t.huge_f64", 1e300), 0);

    const uint8_t a_u8[] = {1, 2, 255};
    const int8_t a_i8[] = {-1, 0, 127};
    const uint16_t a_u16[] = {1, 65535};
    const int16_t a_i16[] = {-32768, 7};
    const uint32_t a_u32[] = {0, 4294967295u};
    const int32_t a_i32[] = {1, 2, 3, -4};
    const uint64_t a_u64[] = {1, 18446744073709551615ull};
    const int64_t a_i64[] = {-5, 6};
    const float a_f32[] = {0.5f, -2.0f, 3.25f};
    const double a_f64[] = {0.25, -1e10};
    const uint8_t a_bool[] = {0, 1, 1};
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.u8", DAIS_GGUF_U8, a_u8, 3), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.i8", DAIS_GGUF_I8, a_i8, 3), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.u16", DAIS_GGUF_U16, a_u16, 2), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.i16", DAIS_GGUF_I16, a_i16, 2), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.u32", DAIS_GGUF_U32, a_u32, 2), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.i32", DAIS_GGUF_I32, a_i32, 4), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.u64", DAIS_GGUF_U64, a_u64, 2), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.i64", DAIS_GGUF_I64, a_i64, 2), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.f32", DAIS_GGUF_F32, a_f32, 3), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.f64", DAIS_GGUF_F64, a_f64, 2), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.bool", DAIS_GGUF_BOOL, a_bool, 3), 0);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a.empty", DAIS_GGUF_F32, NULL, 0), 0);
    const char *strs[] = {"<unk>", "", "\xe2\x96\x81the", "a\0b"};
    const uint64_t lens[] = {5, 0, 6, 3};
    assert_int_equal(dais_gguf_writer_set_arr_str(w, "a.str", strs, lens, 4), 0);
    assert_int_equal(dais_gguf_writer_set_arr_str(w, "a.str0", strs, NULL, 3), 0);

    /* Tensors: sizes chosen so that data needs padding between them. */
    float f32[3 * 2];
    for (int i = 0; i < 6; i++)
        f32[i] = (float)i - 2.5f;
    uint64_t ne_f32[] = {3, 2};
    assert_int_equal(dais_gguf_writer_add_tensor(w, "a.weight", DAIS_F32, 2, ne_f32, f32), 0);
    uint8_t q8[34 * 2];
    for (size_t i = 0; i < sizeof(q8); i++)
        q8[i] = (uint8_t)(i * 7 + 1);
    uint64_t ne_q8[] = {64};
    assert_int_equal(dais_gguf_writer_add_tensor(w, "b.q8", DAIS_Q8_0, 1, ne_q8, q8), 0);
    static uint8_t q4k[144 * 2 * 1 * 1];
    for (size_t i = 0; i < sizeof(q4k); i++)
        q4k[i] = (uint8_t)(i ^ 0x5a);
    uint64_t ne_q4k[] = {256, 2, 1, 1};
    assert_int_equal(dais_gguf_writer_add_tensor_nocopy(w, "c.q4k", DAIS_Q4_K, 4, ne_q4k, q4k), 0);
    uint16_t f16[2 * 3 * 5];
    for (size_t i = 0; i < 30; i++)
        f16[i] = (uint16_t)(0x3c00 + i);
    uint64_t ne_f16[] = {2, 3, 5};
    assert_int_equal(dais_gguf_writer_add_tensor(w, "d.f16", DAIS_F16, 3, ne_f16, f16), 0);
    return w;
}

static void test_roundtrip_all_types(void **state)
{
    (void)state;
    dais_gguf_writer *w = make_all_types();
    char path[] = "/tmp/dais_gguf_rt_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    dais_err err;
    int rc = dais_gguf_writer_write(w, path, &err);
    if (rc != 0) fail_msg("%s", err.msg);
    dais_gguf_writer_free(w);

    dais_gguf *g = dais_gguf_open(path, &err);
    if (g == NULL) fail_msg("%s", err.msg);
    unlink(path);
    assert_int_equal(dais_gguf_version(g), 3);
    assert_int_equal(dais_gguf_alignment(g), 32);
    assert_int_equal(dais_gguf_data_offset(g) % 32, 0);
    assert_int_equal(dais_gguf_n_kv(g), 31);
    assert_int_equal(dais_gguf_file_size(g) % 32, 0);

    /* Scalar values and their stored types. */
    const dais_gguf_kv *kv;
    kv = dais_gguf_find(g, "t.u8");
    assert_int_equal(kv->type, DAIS_GGUF_U8);
    assert_int_equal(kv->v.u, 200);
    kv = dais_gguf_find(g, "t.i8");
    assert_int_equal(kv->type, DAIS_GGUF_I8);
    assert_int_equal(kv->v.i, -100);
    kv = dais_gguf_find(g, "t.u16");
    assert_int_equal(kv->type, DAIS_GGUF_U16);
    assert_int_equal(kv->v.u, 60000);
    kv = dais_gguf_find(g, "t.i16");
    assert_int_equal(kv->type, DAIS_GGUF_I16);
    assert_int_equal(kv->v.i, -30000);
    kv = dais_gguf_find(g, "t.u32");
    assert_int_equal(kv->type, DAIS_GGUF_U32);
    assert_int_equal(kv->v.u, 4000000000u);
    kv = dais_gguf_find(g, "t.i32");
    assert_int_equal(kv->type, DAIS_GGUF_I32);
    assert_int_equal(kv->v.i, -2000000000);
    kv = dais_gguf_find(g, "t.u64");
    assert_int_equal(kv->type, DAIS_GGUF_U64);
    assert_true(kv->v.u == 18000000000000000000ull);
    kv = dais_gguf_find(g, "t.i64");
    assert_int_equal(kv->type, DAIS_GGUF_I64);
    assert_true(kv->v.i == -9000000000000000000ll);
    kv = dais_gguf_find(g, "t.f32");
    assert_int_equal(kv->type, DAIS_GGUF_F32);
    assert_true(kv->v.f == 1.5);
    kv = dais_gguf_find(g, "t.f64");
    assert_int_equal(kv->type, DAIS_GGUF_F64);
    assert_true(kv->v.f == 1e-5);
    kv = dais_gguf_find(g, "t.bool");
    assert_int_equal(kv->type, DAIS_GGUF_BOOL);
    assert_true(kv->v.b);
    kv = dais_gguf_find(g, "t.str");
    assert_int_equal(kv->type, DAIS_GGUF_STRING);
    assert_int_equal(kv->v.s.len, 8);
    assert_memory_equal(kv->v.s.ptr, "h\xc3\xa9llo\n\x01", 8);
    kv = dais_gguf_find(g, "t.empty");
    assert_int_equal(kv->v.s.len, 0);

    /* Typed getters across types: values that fit convert, others fail naming the key. */
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f;
    bool b;
    dais_gguf_str s;
    assert_int_equal(dais_gguf_get_u32(g, "t.u8", &u32, &err), 0);
    assert_int_equal(u32, 200);
    assert_int_equal(dais_gguf_get_u32(g, "t.small_u64", &u32, &err), 0);
    assert_int_equal(u32, 2048);
    assert_int_equal(dais_gguf_get_u32(g, "t.u32", &u32, &err), 0);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(dais_gguf_get_u32(g, "t.neg", &u32, &err), DAIS_EFORMAT);
    assert_non_null(strstr(err.msg, "t.neg"));
    assert_non_null(strstr(err.msg, "-1"));
    assert_int_equal(dais_gguf_get_u32(g, "t.u64", &u32, &err), DAIS_EFORMAT);
    assert_non_null(strstr(err.msg, "t.u64"));
    assert_int_equal(dais_gguf_get_u32(g, "t.f32", &u32, &err), DAIS_EFORMAT);
    assert_non_null(strstr(err.msg, "'t.f32' has type f32"));
    assert_int_equal(dais_gguf_get_u32(g, "t.str", &u32, &err), DAIS_EFORMAT);
    assert_int_equal(dais_gguf_get_u32(g, "a.u32", &u32, &err), DAIS_EFORMAT);
    assert_int_equal(dais_gguf_get_u64(g, "t.u64", &u64, &err), 0);
    assert_true(u64 == 18000000000000000000ull);
    assert_int_equal(dais_gguf_get_u64(g, "t.neg", &u64, &err), DAIS_EFORMAT);
    assert_int_equal(dais_gguf_get_i64(g, "t.i64", &i64, &err), 0);
    assert_true(i64 == -9000000000000000000ll);
    assert_int_equal(dais_gguf_get_i64(g, "t.u32", &i64, &err), 0);
    assert_int_equal(i64, 4000000000ll);
    assert_int_equal(dais_gguf_get_i64(g, "t.i16", &i64, &err), 0);
    assert_int_equal(i64, -30000);
    assert_int_equal(dais_gguf_get_i64(g, "t.u64", &i64, &err), DAIS_EFORMAT);
    assert_non_null(strstr(err.msg, "does not fit in i64"));
    assert_int_equal(dais_gguf_get_f32(g, "t.f64", &f, &err), 0);
    assert_float_equal(f, 1e-5f, 0.0f);
    assert_int_equal(dais_gguf_get_f32(g, "t.u16", &f, &err), 0);
    assert_float_equal(f, 60000.0f, 0.0f);
    assert_int_equal(dais_gguf_get_f32(g, "t.i8", &f, &err), 0);
    assert_float_equal(f, -100.0f, 0.0f);
    assert_int_equal(dais_gguf_get_f32(g, "t.huge_f64", &f, &err), DAIS_EFORMAT);
    assert_int_equal(dais_gguf_get_f32(g, "t.u64", &f, &err), DAIS_EFORMAT); /* not exact */
    assert_int_equal(dais_gguf_get_f32(g, "t.bool", &f, &err), DAIS_EFORMAT);
    assert_int_equal(dais_gguf_get_bool(g, "t.bool", &b, &err), 0);
    assert_true(b);
    assert_int_equal(dais_gguf_get_bool(g, "t.u8", &b, &err), DAIS_EFORMAT);
    assert_int_equal(dais_gguf_get_str(g, "t.str", &s, &err), 0);
    assert_int_equal(dais_gguf_get_str(g, "t.u8", &s, &err), DAIS_EFORMAT);
    assert_non_null(strstr(err.msg, "'t.u8' has type u8, expected str"));
    dais_err_clear(&err);
    assert_int_equal(dais_gguf_get_f32(g, "missing", &f, &err), DAIS_ENOTFOUND);
    assert_int_equal(err.code, 0);

    /* Arrays. */
    kv = dais_gguf_find(g, "a.u8");
    assert_int_equal(kv->arr_type, DAIS_GGUF_U8);
    assert_int_equal(dais_gguf_arr_i64(kv, 2, &i64), 0);
    assert_int_equal(i64, 255);
    assert_int_equal(dais_gguf_arr_i64(kv, 3, &i64), DAIS_EINVAL);
    kv = dais_gguf_find(g, "a.i8");
    assert_int_equal(dais_gguf_arr_i64(kv, 0, &i64), 0);
    assert_int_equal(i64, -1);
    kv = dais_gguf_find(g, "a.u16");
    assert_int_equal(dais_gguf_arr_i64(kv, 1, &i64), 0);
    assert_int_equal(i64, 65535);
    kv = dais_gguf_find(g, "a.i16");
    assert_int_equal(dais_gguf_arr_i64(kv, 0, &i64), 0);
    assert_int_equal(i64, -32768);
    kv = dais_gguf_find(g, "a.u32");
    assert_int_equal(dais_gguf_arr_i64(kv, 1, &i64), 0);
    assert_int_equal(i64, 4294967295ll);
    kv = dais_gguf_find(g, "a.i32");
    assert_int_equal(kv->arr_n, 4);
    assert_int_equal(dais_gguf_arr_i64(kv, 3, &i64), 0);
    assert_int_equal(i64, -4);
    assert_int_equal(dais_gguf_arr_f32(kv, 3, &f), 0);
    assert_float_equal(f, -4.0f, 0.0f);
    kv = dais_gguf_find(g, "a.u64");
    assert_int_equal(dais_gguf_arr_i64(kv, 0, &i64), 0);
    assert_int_equal(dais_gguf_arr_i64(kv, 1, &i64), DAIS_EFORMAT);
    kv = dais_gguf_find(g, "a.i64");
    assert_int_equal(dais_gguf_arr_i64(kv, 0, &i64), 0);
    assert_int_equal(i64, -5);
    kv = dais_gguf_find(g, "a.f32");
    assert_int_equal(dais_gguf_arr_f32(kv, 2, &f), 0);
    assert_float_equal(f, 3.25f, 0.0f);
    assert_int_equal(dais_gguf_arr_i64(kv, 2, &i64), DAIS_EFORMAT);
    kv = dais_gguf_find(g, "a.f64");
    assert_int_equal(dais_gguf_arr_f32(kv, 1, &f), 0);
    assert_float_equal(f, -1e10f, 0.0f);
    kv = dais_gguf_find(g, "a.bool");
    assert_int_equal(kv->arr_type, DAIS_GGUF_BOOL);
    assert_int_equal(dais_gguf_arr_i64(kv, 1, &i64), 0);
    assert_int_equal(i64, 1);
    kv = dais_gguf_find(g, "a.empty");
    assert_int_equal(kv->arr_n, 0);
    assert_int_equal(dais_gguf_arr_f32(kv, 0, &f), DAIS_EINVAL);
    kv = dais_gguf_find(g, "a.str");
    assert_int_equal(kv->arr_n, 4);
    assert_int_equal(dais_gguf_arr_i64(kv, 0, &i64), DAIS_EFORMAT);
    assert_int_equal(dais_gguf_arr_str(g, kv, 0, &s), 0);
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "<unk>", 5);
    assert_int_equal(dais_gguf_arr_str(g, kv, 1, &s), 0);
    assert_int_equal(s.len, 0);
    assert_int_equal(dais_gguf_arr_str(g, kv, 2, &s), 0);
    assert_int_equal(s.len, 6);
    assert_memory_equal(s.ptr, "\xe2\x96\x81the", 6);
    assert_int_equal(dais_gguf_arr_str(g, kv, 3, &s), 0);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.ptr, "a\0b", 3);
    assert_int_equal(dais_gguf_arr_str(g, kv, 4, &s), DAIS_EINVAL);
    assert_int_equal(dais_gguf_arr_str(g, dais_gguf_find(g, "a.u8"), 0, &s), DAIS_EINVAL);
    dais_gguf_kv foreign = *kv; /* same contents, but not one of g's keys */
    assert_int_equal(dais_gguf_arr_str(g, &foreign, 0, &s), DAIS_EINVAL);
    kv = dais_gguf_find(g, "a.str0");
    assert_int_equal(kv->arr_n, 3);
    assert_int_equal(dais_gguf_arr_str(g, kv, 2, &s), 0);
    assert_int_equal(s.len, 6);

    /* Tensors: order, shapes, data and alignment. */
    assert_int_equal(dais_gguf_n_tensors(g), 4);
    const dais_gguf_tensor *t = dais_gguf_tensor_at(g, 0);
    assert_string_equal(t->name, "a.weight");
    assert_int_equal(t->type, DAIS_F32);
    assert_int_equal(t->ne[0], 3);
    assert_int_equal(t->ne[1], 2);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->nbytes, 24);
    assert_int_equal(((const float *)t->data)[5], 2.5f);
    t = dais_gguf_tensor_at(g, 1);
    assert_string_equal(t->name, "b.q8");
    assert_int_equal(t->nbytes, 68);
    assert_int_equal(t->offset, 32);
    assert_int_equal(((const uint8_t *)t->data)[67], (uint8_t)(67 * 7 + 1));
    t = dais_gguf_find_tensor(g, "c.q4k");
    assert_int_equal(t->n_dims, 4);
    assert_int_equal(t->ne[1], 2);
    assert_int_equal(t->nbytes, 288);
    assert_int_equal(t->offset, 128);
    assert_int_equal(((const uint8_t *)t->data)[287], (uint8_t)(287 ^ 0x5a));
    t = dais_gguf_find_tensor(g, "d.f16");
    assert_int_equal(t->n_dims, 3);
    assert_int_equal(t->nbytes, 60);
    assert_int_equal(((const uint16_t *)t->data)[29], 0x3c00 + 29);
    for (uint64_t i = 0; i < 4; i++) {
        t = dais_gguf_tensor_at(g, i);
        assert_int_equal(t->offset % 32, 0);
        assert_int_equal(((uintptr_t)t->data - (uintptr_t)dais_gguf_tensor_at(g, 0)->data) % 32, 0);
    }
    assert_null(dais_gguf_tensor_at(g, 4));
    assert_null(dais_gguf_kv_at(g, 31));

    char *out = NULL;
    size_t out_len = 0;
    FILE *m = open_memstream(&out, &out_len);
    assert_int_equal(dais_gguf_dump(g, m, -1), 0);
    fclose(m);
    assert_non_null(strstr(out, "\"t.str\" str = \"h\xc3\xa9llo\\n\\x01\""));
    assert_non_null(strstr(out, "\"t.i64\" i64 = -9000000000000000000"));
    assert_non_null(strstr(out, "\"t.bool\" bool = true"));
    assert_non_null(strstr(out, "\"t.f64\" f64 = 1.0000000000000001e-05"));
    assert_non_null(strstr(out, "\"a.u64\" arr[u64,2] = [1, 18446744073709551615]"));
    assert_non_null(
        strstr(out, "\"a.str\" arr[str,4] = [\"<unk>\", \"\", \"\xe2\x96\x81the\", \"a\\x00b\"]"));
    assert_non_null(strstr(out, "\"a.bool\" arr[bool,3] = [false, true, true]"));
    assert_non_null(strstr(out, "[256, 2, 1, 1]"));
    free(out);
    dais_gguf_free(g);
}

static void test_writer_rules(void **state)
{
    (void)state;
    dais_gguf_writer *w = dais_gguf_writer_new();
    dais_err err;
    /* Replacing a key keeps one copy with the new value and type. */
    assert_int_equal(dais_gguf_writer_set_u32(w, "general.alignment", 64), 0);
    assert_int_equal(dais_gguf_writer_set_u32(w, "k", 1), 0);
    assert_int_equal(dais_gguf_writer_set_str(w, "k", "two"), 0);
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint64_t ne1[] = {8};
    uint64_t ne2[] = {1};
    assert_int_equal(dais_gguf_writer_add_tensor(w, "x", DAIS_F32, 1, ne1, x), 0);
    assert_int_equal(dais_gguf_writer_add_tensor(w, "y", DAIS_F32, 1, ne2, x), 0);
    size_t len;
    uint8_t *buf = write_mem(w, &len);
    dais_gguf *g = dais_gguf_parse(buf, len, &err);
    if (g == NULL) fail_msg("%s", err.msg);
    assert_int_equal(dais_gguf_n_kv(g), 2);
    assert_int_equal(dais_gguf_find(g, "k")->type, DAIS_GGUF_STRING);
    assert_int_equal(dais_gguf_alignment(g), 64);
    assert_int_equal(dais_gguf_data_offset(g) % 64, 0);
    assert_int_equal(dais_gguf_find_tensor(g, "y")->offset, 64);
    dais_gguf_free(g);
    free(buf);

    /* Errors are sticky: the first bad call is reported again by write. */
    assert_int_equal(dais_gguf_writer_add_tensor(w, "x", DAIS_F32, 1, ne1, x), DAIS_EINVAL);
    assert_int_equal(dais_gguf_writer_set_u32(w, "later", 1), 0);
    assert_int_equal(dais_gguf_writer_write(w, "/tmp/dais_gguf_never", &err), DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "tensor 'x': added twice"));
    assert_int_equal(access("/tmp/dais_gguf_never", F_OK), -1);
    dais_gguf_writer_free(w);

    w = dais_gguf_writer_new();
    uint64_t bad_q4[] = {33};
    assert_int_equal(dais_gguf_writer_add_tensor(w, "q", DAIS_Q4_0, 1, bad_q4, x), DAIS_EINVAL);
    uint64_t zero[] = {8, 0};
    assert_int_equal(dais_gguf_writer_add_tensor(w, "z", DAIS_F32, 2, zero, x), DAIS_EINVAL);
    assert_int_equal(dais_gguf_writer_add_tensor(w, "t", 99, 1, ne1, x), DAIS_EINVAL);
    assert_int_equal(dais_gguf_writer_add_tensor(w, "", DAIS_F32, 1, ne1, x), DAIS_EINVAL);
    char longname[100];
    memset(longname, 'n', 96);
    longname[96] = '\0';
    assert_int_equal(dais_gguf_writer_add_tensor(w, longname, DAIS_F32, 1, ne1, x), DAIS_EINVAL);
    longname[95] = '\0';
    assert_int_equal(dais_gguf_writer_add_tensor(w, longname, DAIS_F32, 1, ne1, x), 0);
    assert_int_equal(dais_gguf_writer_add_tensor(w, "d5", DAIS_F32, 5, ne1, x), DAIS_EINVAL);
    uint64_t big[] = {1ull << 62, 1ull << 62};
    assert_int_equal(dais_gguf_writer_add_tensor(w, "big", DAIS_F32, 2, big, x), DAIS_ETOOBIG);
    assert_int_equal(dais_gguf_writer_set_arr(w, "a", DAIS_GGUF_STRING, x, 1), DAIS_EINVAL);
    uint8_t bad_bool[] = {0, 2};
    assert_int_equal(dais_gguf_writer_set_arr(w, "b", DAIS_GGUF_BOOL, bad_bool, 2), DAIS_EINVAL);
    assert_int_equal(dais_gguf_writer_set_u32(w, "", 1), DAIS_EINVAL);
    assert_int_equal(dais_gguf_writer_write(w, "/tmp/dais_gguf_never", &err), DAIS_EINVAL);
    assert_non_null(
        strstr(err.msg, "tensor 'q': row length 33 is not a multiple of the q4_0 block size 32"));
    dais_gguf_writer_free(w);

    w = dais_gguf_writer_new();
    assert_int_equal(dais_gguf_writer_set_u32(w, "general.alignment", 48), 0);
    assert_int_equal(dais_gguf_writer_write(w, "/tmp/dais_gguf_never", &err), DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "general.alignment 48"));
    assert_int_equal(dais_gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err), DAIS_EINVAL);
    dais_gguf_writer_free(w);

    w = dais_gguf_writer_new();
    assert_int_equal(dais_gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err), DAIS_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent-dir/x.gguf"));
    /* An empty writer makes a valid file with no keys and no tensors. */
    buf = write_mem(w, &len);
    assert_int_equal(len, 24);
    g = dais_gguf_parse(buf, len, &err);
    assert_non_null(g);
    assert_int_equal(dais_gguf_n_kv(g), 0);
    assert_int_equal(dais_gguf_n_tensors(g), 0);
    assert_null(dais_gguf_find(g, "x"));
    assert_null(dais_gguf_find_tensor(g, "x"));
    dais_gguf_free(g);
    free(buf);
    dais_gguf_writer_free(w);
    dais_gguf_writer_free(NULL);
    dais_gguf_free(NULL);
}

/* ---- corrupted inputs ------------------------------------------------------------------------ */

/* A small valid file: a few keys (string, array of strings, numbers) and three tensors. */
static uint8_t *small_file(size_t *len)
{
    dais_gguf_writer *w = dais_gguf_writer_new();
    dais_gguf_writer_set_str(w, "general.architecture", "llama");
    dais_gguf_writer_set_u32(w, "llama.block_count", 1);
    dais_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    dais_gguf_writer_set_bool(w, "flag", false);
    const char *toks[] = {"<unk>", "<s>", "</s>", "a", "b"};
    dais_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 5);
    const int32_t types[] = {2, 3, 3, 1, 1};
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", DAIS_GGUF_I32, types, 5);
    float f[16];
    for (int i = 0; i < 16; i++)
        f[i] = (float)i;
    uint64_t ne_a[] = {4, 2};
    uint64_t ne_b[] = {3};
    uint64_t ne_c[] = {32};
    uint8_t q8[34] = {1, 2, 3};
    dais_gguf_writer_add_tensor(w, "t.a", DAIS_F32, 2, ne_a, f);
    dais_gguf_writer_add_tensor(w, "t.b", DAIS_F32, 1, ne_b, f);
    dais_gguf_writer_add_tensor(w, "t.c", DAIS_Q8_0, 1, ne_c, q8);
    uint8_t *buf = write_mem(w, len);
    dais_gguf_writer_free(w);
    return buf;
}

static void test_truncation_every_offset(void **state)
{
    (void)state;
    size_t len;
    uint8_t *full = small_file(&len);
    dais_err err;
    dais_gguf *g = dais_gguf_parse(full, len, &err);
    assert_non_null(g);
    /* The writer pads after the last tensor; the file is complete once the last byte of data is. */
    size_t need = 0;
    for (uint64_t i = 0; i < dais_gguf_n_tensors(g); i++) {
        const dais_gguf_tensor *t = dais_gguf_tensor_at(g, i);
        size_t end = dais_gguf_data_offset(g) + (size_t)t->offset + t->nbytes;
        need = end > need ? end : need;
    }
    dais_gguf_free(g);
    assert_true(need < len);
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy;
        dais_err_clear(&err);
        g = parse_copy(full, n, &copy, &err);
        if (n < need) {
            if (g != NULL) fail_msg("prefix of %zu bytes (of %zu) parsed", n, len);
            assert_true(err.code == DAIS_EFORMAT);
            assert_true(strlen(err.msg) > 10);
            /* Every truncation message says what was cut or what extends past the end. */
            if (strstr(err.msg, "truncated") == NULL && strstr(err.msg, "past end of file") == NULL)
                fail_msg("prefix %zu: unclear message: %s", n, err.msg);
        } else {
            assert_non_null(g);
            touch_all(g);
            dais_gguf_free(g);
        }
        free(copy);
    }
    free(full);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void test_random_flips(void **state)
{
    (void)state;
    size_t len;
    uint8_t *full = small_file(&len);
    dais_err err;
    dais_gguf *g0 = dais_gguf_parse(full, len, &err);
    size_t header = dais_gguf_data_offset(g0);
    dais_gguf_free(g0);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int ok = 0, bad = 0;
    static const uint8_t interesting[] = {0x00, 0x01, 0x02, 0x09, 0x0c, 0x7f, 0x80, 0xff};
    for (int it = 0; it < 4000; it++) {
        uint8_t *copy = malloc(len);
        memcpy(copy, full, len);
        int flips = 1 + (int)(xorshift(&seed) % 4);
        for (int k = 0; k < flips; k++) {
            /* Mostly in the header/metadata, where bytes are interpreted. */
            size_t pos = (size_t)(xorshift(&seed) % (xorshift(&seed) % 8 ? header : len));
            uint64_t r = xorshift(&seed);
            copy[pos] = (r & 1) ? (uint8_t)(copy[pos] ^ (1u << (r >> 1) % 8))
                                : interesting[(r >> 8) % sizeof(interesting)];
        }
        size_t n = (xorshift(&seed) % 16 == 0) ? (size_t)(xorshift(&seed) % len) : len;
        dais_err_clear(&err);
        dais_gguf *g = dais_gguf_parse(copy, n, &err);
        if (g != NULL) {
            touch_all(g);
            dais_gguf_free(g);
            ok++;
        } else {
            assert_true(err.code < 0);
            assert_true(err.msg[0] != '\0');
            bad++;
        }
        free(copy);
    }
    /* Both outcomes must occur, or the mutations are not reaching the parser's checks. */
    assert_true(ok > 50);
    assert_true(bad > 500);
    free(full);
}

static void test_bad_header(void **state)
{
    (void)state;
    bb b = {0};
    expect_fail(&b, DAIS_EFORMAT, "truncated", "magic", NULL);
    bb_raw(&b, "GGML", 4);
    bb_zeros(&b, 20);
    expect_fail(&b, DAIS_EFORMAT, "bad magic", "not a GGUF file", NULL);
    bb_hdr(&b, 1, 0, 0);
    expect_fail(&b, DAIS_EUNSUPPORTED, "version 1 is not supported", NULL);
    bb_hdr(&b, 4, 0, 0);
    expect_fail(&b, DAIS_EUNSUPPORTED, "unsupported GGUF version 4", NULL);
    bb_hdr(&b, 0x03000000, 0, 0);
    expect_fail(&b, DAIS_EUNSUPPORTED, "big-endian", NULL);
    bb_hdr(&b, 3, 0, 0);
    b.n -= 1;
    expect_fail(&b, DAIS_EFORMAT, "key count", "truncated", NULL);
    /* Huge counts are refused before anything is allocated. */
    bb_hdr(&b, 3, 0, UINT64_MAX);
    expect_fail(&b, DAIS_EFORMAT, "key count 18446744073709551615", NULL);
    bb_hdr(&b, 3, 1ull << 40, 0);
    expect_fail(&b, DAIS_EFORMAT, "tensor count 1099511627776", NULL);
    bb_hdr(&b, 3, 0, 3);
    bb_zeros(&b, 3 * 14 - 1);
    expect_fail(&b, DAIS_EFORMAT, "key count 3", NULL);
    /* Version 2 has the same layout and is accepted. */
    bb_hdr(&b, 2, 0, 1);
    bb_kv_u32(&b, "a", 7);
    uint8_t *copy;
    dais_err err;
    dais_gguf *g = parse_copy(b.p, b.n, &copy, &err);
    assert_non_null(g);
    assert_int_equal(dais_gguf_version(g), 2);
    dais_gguf_free(g);
    free(copy);
    free(b.p);
}

static void test_bad_keys(void **state)
{
    (void)state;
    bb b = {0};
    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 1ull << 62);
    bb_zeros(&b, 20);
    expect_fail(&b, DAIS_EFORMAT, "key #0", "offset 24", "length 4611686018427387904", NULL);
    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 100);
    bb_raw(&b, "abc", 3);
    bb_zeros(&b, 20);
    expect_fail(&b, DAIS_EFORMAT, "key #0", "truncated", "length 100", NULL);
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "");
    bb_u32(&b, DAIS_GGUF_U8);
    bb_zeros(&b, 8);
    expect_fail(&b, DAIS_EFORMAT, "empty key at offset 24", NULL);
    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 3);
    bb_raw(&b, "a\0b", 3);
    bb_u32(&b, DAIS_GGUF_U8);
    bb_zeros(&b, 8);
    expect_fail(&b, DAIS_EFORMAT, "NUL byte", NULL);
    /* Bad value type ids: unknown, and unknown/nested array element types. */
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "my.key");
    bb_u32(&b, 13);
    bb_zeros(&b, 8);
    expect_fail(&b, DAIS_EFORMAT, "key 'my.key'", "unknown value type 13 at offset 38", NULL);
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, DAIS_GGUF_ARRAY);
    bb_u32(&b, 99);
    bb_u64(&b, 1);
    bb_zeros(&b, 8);
    expect_fail(&b, DAIS_EFORMAT, "key 'arr'", "unknown array element type 99", NULL);
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "nested");
    bb_u32(&b, DAIS_GGUF_ARRAY);
    bb_u32(&b, DAIS_GGUF_ARRAY);
    bb_u64(&b, 1);
    bb_u32(&b, DAIS_GGUF_U8);
    bb_u64(&b, 1);
    bb_u8(&b, 0);
    expect_fail(&b, DAIS_EUNSUPPORTED, "key 'nested'", "arrays of arrays", NULL);
    /* Huge array counts. */
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "big");
    bb_u32(&b, DAIS_GGUF_ARRAY);
    bb_u32(&b, DAIS_GGUF_U32);
    bb_u64(&b, UINT64_MAX / 2);
    bb_zeros(&b, 16);
    expect_fail(&b, DAIS_EFORMAT, "key 'big'", "array of 9223372036854775807 u32", NULL);
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "toks");
    bb_u32(&b, DAIS_GGUF_ARRAY);
    bb_u32(&b, DAIS_GGUF_STRING);
    bb_u64(&b, 1ull << 50);
    bb_zeros(&b, 16);
    expect_fail(&b, DAIS_EFORMAT, "key 'toks'", "strings", NULL);
    /* A string element whose length runs past the end: names the element. */
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "toks");
    bb_u32(&b, DAIS_GGUF_ARRAY);
    bb_u32(&b, DAIS_GGUF_STRING);
    bb_u64(&b, 3);
    bb_str(&b, "a");
    bb_str(&b, "b");
    bb_u64(&b, 1000);
    bb_zeros(&b, 10);
    expect_fail(&b, DAIS_EFORMAT, "key 'toks'", "element 2", "length 1000", NULL);
    /* Huge string value. */
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "s");
    bb_u32(&b, DAIS_GGUF_STRING);
    bb_u64(&b, UINT64_MAX);
    expect_fail(&b, DAIS_EFORMAT, "key 's'", "length 18446744073709551615", NULL);
    /* Bools must be 0 or 1, scalar and in arrays. */
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "b");
    bb_u32(&b, DAIS_GGUF_BOOL);
    bb_u8(&b, 2);
    bb_zeros(&b, 16);
    expect_fail(&b, DAIS_EFORMAT, "key 'b'", "bool value is 2", NULL);
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "bs");
    bb_u32(&b, DAIS_GGUF_ARRAY);
    bb_u32(&b, DAIS_GGUF_BOOL);
    bb_u64(&b, 3);
    bb_u8(&b, 1);
    bb_u8(&b, 0);
    bb_u8(&b, 5);
    bb_zeros(&b, 16);
    expect_fail(&b, DAIS_EFORMAT, "key 'bs'", "bool element 2 is 5", NULL);
    /* Duplicate keys. */
    bb_hdr(&b, 3, 0, 3);
    bb_kv_u32(&b, "x", 1);
    bb_kv_u32(&b, "general.name", 2);
    bb_kv_u32(&b, "general.name", 3);
    expect_fail(&b, DAIS_EFORMAT, "key 'general.name'",
                "duplicate key at offset 69 (key #2; first defined as key #1 at offset 41)", NULL);
    /* general.alignment: type and value. */
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 0);
    expect_fail(&b, DAIS_EFORMAT, "general.alignment", "value 0", NULL);
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 48);
    expect_fail(&b, DAIS_EFORMAT, "general.alignment", "value 48", NULL);
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, DAIS_GGUF_F32);
    bb_u32(&b, 0x42000000);
    expect_fail(&b, DAIS_EFORMAT, "general.alignment", "type f32", NULL);
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, DAIS_GGUF_U64);
    bb_u64(&b, 1ull << 33);
    expect_fail(&b, DAIS_EFORMAT, "general.alignment", "value 8589934592", NULL);
    /* Control characters in a key do not reach the message. */
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k\x1b[2J");
    bb_u32(&b, 77);
    bb_zeros(&b, 8);
    expect_fail(&b, DAIS_EFORMAT, "key 'k?[2J'", NULL);
}

/* Header with one key (general.alignment = align) and n tensor infos to follow. */
static void tensor_file(bb *b, uint64_t n_tensors, uint32_t align)
{
    bb_hdr(b, 3, n_tensors, 1);
    bb_kv_u32(b, "general.alignment", align);
}

static void test_bad_tensors(void **state)
{
    (void)state;
    bb b = {0};
    uint64_t ne[4] = {8, 2, 1, 1};
    /* Name rules. */
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "", 1, ne, DAIS_F32, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor #0", "empty name", NULL);
    char longname[97];
    memset(longname, 'x', 96);
    longname[96] = '\0';
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, longname, 1, ne, DAIS_F32, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "is 96 bytes (limit 95)", NULL);
    tensor_file(&b, 2, 32);
    bb_tinfo(&b, "w", 1, ne, DAIS_F32, 0);
    bb_tinfo(&b, "w", 1, ne, DAIS_F32, 32);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'", "duplicate tensor name", "tensor #0", NULL);
    /* Dimensions. */
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "w", 0, ne, DAIS_F32, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'", "n_dims 0", NULL);
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "w", 5, (const uint64_t[]){1, 1, 1, 1, 1}, DAIS_F32, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'", "n_dims 5", NULL);
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "w", 2, (const uint64_t[]){8, 0}, DAIS_F32, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'", "dimension 1 is 0", NULL);
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "blk.0.ffn_up.weight", 3, (const uint64_t[]){1ull << 31, 1ull << 31, 1ull << 2},
             DAIS_F32, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'blk.0.ffn_up.weight'", "element count overflow", NULL);
    /* Element count fits in int64 but the byte size does not fit in size_t. */
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "w", 2, (const uint64_t[]){1ull << 31, 1ull << 31}, DAIS_F64, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'", "overflows", NULL);
    /* Types: undefined ids, and rows that are not whole blocks. */
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "w", 1, ne, 4, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'", "unknown tensor type 4", NULL);
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "w", 1, ne, 0xffffffffu, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'", "unknown tensor type 4294967295", NULL);
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "w", 2, (const uint64_t[]){33, 1}, DAIS_Q4_0, 0);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'", "row length 33", "q4_0 block size 32", NULL);
    /* Offsets: misaligned, past the end, overlapping. */
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "w", 1, ne, DAIS_F32, 4);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'",
                "data offset 4 is not a multiple of the alignment 32", NULL);
    tensor_file(&b, 1, 64);
    bb_tinfo(&b, "w", 1, ne, DAIS_F32, 32);
    bb_pad(&b, 64);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'", "alignment 64", NULL);
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "blk.3.attn_q.weight", 2, ne, DAIS_F32, 32);
    bb_pad(&b, 32);
    size_t data_at = b.n;
    bb_zeros(&b, 64);
    char want[160];
    snprintf(want, sizeof(want),
             "tensor 'blk.3.attn_q.weight': data [offset 32, 64 bytes] in the data section at %zu "
             "extends past end of file (size %zu)",
             data_at, b.n);
    expect_fail(&b, DAIS_EFORMAT, want, NULL);
    tensor_file(&b, 1, 32);
    bb_tinfo(&b, "w", 1, ne, DAIS_F32, UINT64_MAX - 31);
    bb_pad(&b, 32);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'w'", "past end of file", NULL);
    tensor_file(&b, 2, 32);
    bb_tinfo(&b, "first", 2, ne, DAIS_F32, 0);
    bb_tinfo(&b, "second", 1, ne, DAIS_F32, 32);
    bb_pad(&b, 32);
    bb_zeros(&b, 128);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'second'", "overlaps tensor 'first'", NULL);
    /* Tensor infos end, but the padded data section start lies past the end of the file. */
    tensor_file(&b, 1, 4096);
    bb_tinfo(&b, "w", 1, ne, DAIS_F32, 0);
    bb_zeros(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "data section", "past end of file", NULL);
    /* Truncated inside a tensor info: names the tensor and the field. */
    tensor_file(&b, 1, 32);
    bb_str(&b, "token_embd.weight");
    bb_u32(&b, 2);
    bb_u64(&b, 64);
    expect_fail(&b, DAIS_EFORMAT, "tensor 'token_embd.weight'", "truncated: dimension", NULL);

    /* The same file, correct, parses: the failures above are each down to one defect. */
    tensor_file(&b, 2, 32);
    bb_tinfo(&b, "first", 2, ne, DAIS_F32, 0);
    bb_tinfo(&b, "second", 1, ne, DAIS_F32, 64);
    bb_pad(&b, 32);
    bb_zeros(&b, 96);
    uint8_t *copy;
    dais_err err;
    dais_gguf *g = parse_copy(b.p, b.n, &copy, &err);
    if (g == NULL) fail_msg("%s", err.msg);
    assert_int_equal(dais_gguf_find_tensor(g, "second")->nbytes, 32);
    dais_gguf_free(g);
    free(copy);
    free(b.p);
}

static void test_open_errors(void **state)
{
    (void)state;
    dais_err err;
    assert_null(dais_gguf_open("/nonexistent/model.gguf", &err));
    assert_int_equal(err.code, DAIS_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/model.gguf"));
    assert_null(dais_gguf_open("/tmp", &err));
    assert_int_equal(err.code, DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    char path[] = "/tmp/dais_gguf_open_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_null(dais_gguf_open(path, &err));
    assert_int_equal(err.code, DAIS_EFORMAT);
    assert_non_null(strstr(err.msg, "too small"));
    assert_int_equal(write(fd, "GGUF\x03\0\0\0garbage-garbage-garbage", 30), 30);
    close(fd);
    assert_null(dais_gguf_open(path, &err));
    assert_int_equal(err.code, DAIS_EFORMAT);
    assert_non_null(strstr(err.msg, path));
    unlink(path);
}

static void test_dump_escapes_and_limits(void **state)
{
    (void)state;
    dais_gguf_writer *w = dais_gguf_writer_new();
    const char *toks[] = {"\x1b[31m", "\xff\xfe", "ok"};
    dais_gguf_writer_set_arr_str(w, "toks", toks, NULL, 3);
    int32_t ids[] = {5, -6, 7};
    dais_gguf_writer_set_arr(w, "ids", DAIS_GGUF_I32, ids, 3);
    size_t len;
    uint8_t *buf = write_mem(w, &len);
    dais_gguf_writer_free(w);
    dais_err err;
    dais_gguf *g = dais_gguf_parse(buf, len, &err);
    assert_non_null(g);
    char *out = NULL;
    size_t out_len = 0;
    FILE *m = open_memstream(&out, &out_len);
    assert_int_equal(dais_gguf_dump(g, m, 2), 0);
    fclose(m);
    assert_non_null(
        strstr(out, "\"toks\" arr[str,3] = [\"\\x1b[31m\", \"\\xff\\xfe\", ... (3 total)]"));
    assert_non_null(strstr(out, "\"ids\" arr[i32,3] = [5, -6, ... (3 total)]"));
    assert_null(strchr(out, '\x1b'));
    assert_non_null(strstr(out, "tensors: 0"));
    free(out);
    m = open_memstream(&out, &out_len);
    assert_int_equal(dais_gguf_dump(g, m, 0), 0);
    fclose(m);
    assert_non_null(strstr(out, "\"ids\" arr[i32,3] = [... (3 total)]"));
    free(out);
    dais_gguf_free(g);
    free(buf);
}

/* A 128k-token vocabulary with 280k merges parses quickly (the string index is built once). */
static void test_large_vocab(void **state)
{
    (void)state;
    enum { N_TOK = 128256, N_MERGES = 280000 };
    char *pool = malloc((size_t)N_MERGES * 24);
    const char **strs = malloc(sizeof(char *) * N_MERGES);
    assert_non_null(pool);
    assert_non_null(strs);
    dais_gguf_writer *w = dais_gguf_writer_new();
    for (int i = 0; i < N_TOK; i++) {
        char *s = pool + (size_t)i * 24;
        snprintf(s, 24, "\xc4\xa0tok%d", i);
        strs[i] = s;
    }
    assert_int_equal(dais_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, NULL, N_TOK),
                     0);
    for (int i = 0; i < N_MERGES; i++) {
        char *s = pool + (size_t)i * 24;
        snprintf(s, 24, "m%d x%d", i % 5000, i);
        strs[i] = s;
    }
    assert_int_equal(dais_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", strs, NULL, N_MERGES),
                     0);
    int32_t *types = malloc(sizeof(int32_t) * N_TOK);
    for (int i = 0; i < N_TOK; i++)
        types[i] = 1;
    assert_int_equal(
        dais_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", DAIS_GGUF_I32, types, N_TOK), 0);
    size_t len;
    uint8_t *buf = write_mem(w, &len);
    dais_gguf_writer_free(w);

    double best = 1e9;
    dais_err err;
    for (int rep = 0; rep < 3; rep++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        dais_gguf *g = dais_gguf_parse(buf, len, &err);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_non_null(g);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        best = ms < best ? ms : best;
        const dais_gguf_kv *tok = dais_gguf_find(g, "tokenizer.ggml.tokens");
        const dais_gguf_kv *mer = dais_gguf_find(g, "tokenizer.ggml.merges");
        assert_int_equal(tok->arr_n, N_TOK);
        assert_int_equal(mer->arr_n, N_MERGES);
        dais_gguf_str s;
        assert_int_equal(dais_gguf_arr_str(g, tok, N_TOK - 1, &s), 0);
        assert_int_equal(s.len, strlen("\xc4\xa0tok128255"));
        assert_memory_equal(s.ptr, "\xc4\xa0tok128255", s.len);
        assert_int_equal(dais_gguf_arr_str(g, mer, 123457, &s), 0);
        assert_memory_equal(s.ptr, "m3457 x123457", s.len);
        dais_gguf_free(g);
    }
    printf(
        "large vocab: %zu-byte file (128256 tokens, 280000 merges) parsed in %.2f ms (best of 3)\n",
        len, best);
    /* Generous bound (sanitizer builds are slow): a quadratic walk would take far longer. */
    assert_true(best < 2000.0);
    free(types);
    free(buf);
    free(strs);
    free(pool);
}

/* Many keys and tensors, added in a scrambled order: every one is found, absent ones are not,
 * and a duplicate far from its first occurrence is caught. */
static void test_many_names(void **state)
{
    (void)state;
    enum { NK = 5000, NT = 1500 };
    dais_gguf_writer *w = dais_gguf_writer_new();
    char name[64];
    for (int i = 0; i < NK; i++) {
        int k = (i * 7919) % NK; /* 7919 is prime: a permutation */
        snprintf(name, sizeof(name), "key.%d", k);
        assert_int_equal(dais_gguf_writer_set_i32(w, name, -k), 0);
    }
    float x = 1;
    uint64_t ne[] = {1};
    for (int i = 0; i < NT; i++) {
        snprintf(name, sizeof(name), "blk.%d.w", (i * 977) % NT);
        assert_int_equal(dais_gguf_writer_add_tensor(w, name, DAIS_F32, 1, ne, &x), 0);
    }
    size_t len;
    uint8_t *buf = write_mem(w, &len);
    dais_gguf_writer_free(w);
    dais_err err;
    dais_gguf *g = dais_gguf_parse(buf, len, &err);
    if (g == NULL) fail_msg("%s", err.msg);
    for (int k = 0; k < NK; k++) {
        snprintf(name, sizeof(name), "key.%d", k);
        int64_t v = 1;
        assert_int_equal(dais_gguf_get_i64(g, name, &v, &err), 0);
        assert_int_equal(v, -k);
    }
    for (int i = 0; i < NT; i++) {
        snprintf(name, sizeof(name), "blk.%d.w", i);
        const dais_gguf_tensor *t = dais_gguf_find_tensor(g, name);
        assert_non_null(t);
        assert_string_equal(t->name, name);
    }
    assert_null(dais_gguf_find(g, "key."));
    assert_null(dais_gguf_find(g, "key.5000"));
    assert_null(dais_gguf_find(g, ""));
    assert_null(dais_gguf_find_tensor(g, "blk.1500.w"));
    assert_null(dais_gguf_find_tensor(g, "blk.0.w2"));
    dais_gguf_free(g);

    /* Rename key #4999 in place to the name of key #0 ("key.0", 5 bytes both). */
    const char *last = "key.2081"; /* (4999 * 7919) % 5000 */
    uint8_t *at = memmem(buf, len, last, strlen(last));
    assert_non_null(at);
    memcpy(at, "key.0", 5);
    uint8_t *len_at = at - 8;
    len_at[0] = 5; /* shorten the key and shift the rest of the file left by 3 bytes */
    memmove(at + 5, at + 8, len - (size_t)(at + 8 - buf));
    len -= 3;
    /* Tensor infos are now misplaced too, but duplicate keys are reported before they are read. */
    bb b = {.p = buf, .n = len, .cap = len + 3};
    expect_fail(&b, DAIS_EFORMAT, "key 'key.0'", "duplicate key", "key #4999",
                "first defined as key #0", NULL);
}

/* ---- fuzz seed corpus ------------------------------------------------------------------------ */

static void write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* Builds the seeds; each must parse. Written out when DAIS_GGUF_CORPUS_OUT names a directory. */
static void test_seed_corpus(void **state)
{
    (void)state;
    const char *dir = getenv("DAIS_GGUF_CORPUS_OUT");
    struct {
        const char *name;
        uint8_t *p;
        size_t n;
    } seeds[5];
    seeds[0].name = "small_llama";
    seeds[0].p = small_file(&seeds[0].n);
    dais_gguf_writer *w = make_all_types();
    seeds[1].name = "all_types";
    seeds[1].p = write_mem(w, &seeds[1].n);
    dais_gguf_writer_free(w);
    w = dais_gguf_writer_new();
    dais_gguf_writer_set_str(w, "general.name", "empty");
    seeds[2].name = "no_tensors";
    seeds[2].p = write_mem(w, &seeds[2].n);
    dais_gguf_writer_free(w);
    w = dais_gguf_writer_new();
    dais_gguf_writer_set_u32(w, "general.alignment", 64);
    uint8_t q6k[210] = {7};
    uint64_t ne[] = {256, 1};
    dais_gguf_writer_add_tensor(w, "w.q6k", DAIS_Q6_K, 2, ne, q6k);
    uint16_t bf[4] = {0x3f80, 0, 0, 0};
    uint64_t ne2[] = {4};
    dais_gguf_writer_add_tensor(w, "w.bf16", DAIS_BF16, 1, ne2, bf);
    seeds[3].name = "align64";
    seeds[3].p = write_mem(w, &seeds[3].n);
    dais_gguf_writer_free(w);
    /* Version 2 (same layout), written by hand: one key, one tensor. */
    bb b = {0};
    bb_hdr(&b, 2, 1, 1);
    bb_kv_u32(&b, "general.alignment", 16);
    bb_tinfo(&b, "v", 1, (const uint64_t[]){4}, DAIS_F32, 0);
    bb_pad(&b, 16);
    bb_raw(&b, (const float[]){1, 2, 3, 4}, 16);
    seeds[4].name = "v2_align16";
    seeds[4].p = b.p;
    seeds[4].n = b.n;
    for (int i = 0; i < 5; i++) {
        dais_err err;
        dais_gguf *g = dais_gguf_parse(seeds[i].p, seeds[i].n, &err);
        if (g == NULL) fail_msg("seed %s: %s", seeds[i].name, err.msg);
        assert_true(touch_all(g) > 0 || dais_gguf_n_kv(g) == 0);
        dais_gguf_free(g);
        assert_true(seeds[i].n < 4096);
        if (dir != NULL) write_seed(dir, seeds[i].name, seeds[i].p, seeds[i].n);
        free(seeds[i].p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k),  cmocka_unit_test(test_roundtrip_all_types),
        cmocka_unit_test(test_writer_rules), cmocka_unit_test(test_truncation_every_offset),
        cmocka_unit_test(test_random_flips), cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_keys),     cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_open_errors),  cmocka_unit_test(test_dump_escapes_and_limits),
        cmocka_unit_test(test_large_vocab),  cmocka_unit_test(test_many_names),
        cmocka_unit_test(test_seed_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
