/*
 * Fuzz target for the GGUF reader: parses the input as a GGUF image and, when it parses,
 * exercises every accessor on the result (typed getters on every key, every element of every
 * array, every tensor through both lookups and a read of its first and last data byte, and the
 * dump, and the shard-file keys of engine/shard.h), so that anything the parser accepted is
 * proven safe to use. Seeds: corpus/gguf/ (shard_last is a `dais model shard` file).
 */
#include "engine/gguf.h"
#include "engine/shard.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

static void use_kv(const dais_gguf *g, const dais_gguf_kv *kv, volatile uint64_t *sink)
{
    /* Keys may hold any byte but NUL; the getters take a C string. */
    char key[512];
    if (kv->key.len >= sizeof(key)) return;
    memcpy(key, kv->key.ptr, (size_t)kv->key.len);
    key[kv->key.len] = '\0';
    if (dais_gguf_find(g, key) != kv)
        abort(); /* keys are unique, so lookup must find this very entry */
    dais_err err;
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f;
    bool b;
    dais_gguf_str s;
    if (dais_gguf_get_u32(g, key, &u32, &err) == 0) *sink += u32;
    if (dais_gguf_get_u64(g, key, &u64, &err) == 0) *sink += u64;
    if (dais_gguf_get_i64(g, key, &i64, &err) == 0) *sink += (uint64_t)i64;
    if (dais_gguf_get_f32(g, key, &f, &err) == 0) *sink += (uint64_t)(f == f);
    if (dais_gguf_get_bool(g, key, &b, &err) == 0) *sink += b;
    if (dais_gguf_get_str(g, key, &s, &err) == 0 && s.len > 0)
        *sink += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
    if (kv->type != DAIS_GGUF_ARRAY) return;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        if (dais_gguf_arr_i64(kv, i, &i64) == 0) *sink += (uint64_t)i64;
        if (dais_gguf_arr_f32(kv, i, &f) == 0) *sink += (uint64_t)(f == f);
        if (dais_gguf_arr_str(g, kv, i, &s) == 0 && s.len > 0)
            *sink += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
    }
    /* One past the end must be refused, not read. */
    if (dais_gguf_arr_i64(kv, kv->arr_n, &i64) == 0 || dais_gguf_arr_str(g, kv, kv->arr_n, &s) == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (devnull == NULL) devnull = fopen("/dev/null", "w");
    dais_err err;
    dais_gguf *g = dais_gguf_parse(data, size, &err);
    if (g == NULL) {
        if (err.code >= 0 || err.msg[0] == '\0')
            abort(); /* a failure must come with a code and a message */
        return 0;
    }
    volatile uint64_t sink = 0;
    sink += dais_gguf_version(g) + dais_gguf_alignment(g) + dais_gguf_data_offset(g) +
            dais_gguf_file_size(g);
    for (uint64_t i = 0; i < dais_gguf_n_kv(g); i++)
        use_kv(g, dais_gguf_kv_at(g, i), &sink);
    if (dais_gguf_kv_at(g, dais_gguf_n_kv(g)) != NULL) abort();
    for (uint64_t i = 0; i < dais_gguf_n_tensors(g); i++) {
        const dais_gguf_tensor *t = dais_gguf_tensor_at(g, i);
        if (dais_gguf_find_tensor(g, t->name) != t) abort();
        const uint8_t *p = t->data;
        if (p < data || t->nbytes == 0 || (size_t)(p - data) + t->nbytes > size) abort();
        sink += p[0] + p[t->nbytes - 1] + t->ne[0] + t->type;
    }
    if (dais_gguf_tensor_at(g, dais_gguf_n_tensors(g)) != NULL) abort();
    dais_shard_info si;
    int src = dais_shard_read(g, 1024, &si, &err);
    if (src == 0 && (si.layer_first < 0 || si.layer_first >= si.layer_last ||
                     si.layer_last > 1024 || strlen(si.source_sha256) != 64))
        abort(); /* an accepted range and hash must be valid */
    if (src != 0 && src != DAIS_ENOTFOUND && err.msg[0] == '\0') abort();
    if (devnull != NULL) {
        dais_gguf_dump(g, devnull, 8);
        dais_gguf_dump(g, devnull, -1);
    }
    dais_gguf_free(g);
    return 0;
}
