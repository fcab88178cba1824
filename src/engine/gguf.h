/*
 * GGUF v3 reader and writer.
 *
 * Reader: parses a GGUF file held in memory (memory-mapped by dais_gguf_open, or any buffer
 * via dais_gguf_parse, which the fuzz target uses). Everything is validated before use:
 * magic, version, counts, string and array lengths, key uniqueness, value types, tensor
 * types, dimensions, offsets, alignment, and every tensor's extent against the file size,
 * with overflow-safe arithmetic. Failures return NULL and a dais_err whose message names the
 * problem (the key, the tensor, the byte offset). The parsed object borrows the buffer.
 * Versions 2 and 3 are read (same layout); version 1 (32-bit counts) and big-endian files
 * are rejected with a message saying so. Arrays of arrays, which the format allows but no
 * real file uses, are rejected as unsupported. Tensors must have 1..4 dimensions, each >= 1.
 *
 * The parsed object is immutable: everything (including the per-element index of every
 * string array) is built during parsing, so any number of threads may read one object at
 * once without locking. Key and tensor lookups are binary searches over indices sorted at
 * parse time (O(log n) whatever the names; parsing stays O(n log n) for any input).
 *
 * Writer: builds a GGUF v3 file from metadata and tensors (used by `dais model synth`, tests
 * and benchmarks) and writes it with buffered stdio, tensor by tensor.
 */
#ifndef DAIS_ENGINE_GGUF_H
#define DAIS_ENGINE_GGUF_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* GGUF metadata value types, numbered as the format numbers them. */
enum dais_gguf_vtype {
    DAIS_GGUF_U8 = 0,
    DAIS_GGUF_I8 = 1,
    DAIS_GGUF_U16 = 2,
    DAIS_GGUF_I16 = 3,
    DAIS_GGUF_U32 = 4,
    DAIS_GGUF_I32 = 5,
    DAIS_GGUF_F32 = 6,
    DAIS_GGUF_BOOL = 7,
    DAIS_GGUF_STRING = 8,
    DAIS_GGUF_ARRAY = 9,
    DAIS_GGUF_U64 = 10,
    DAIS_GGUF_I64 = 11,
    DAIS_GGUF_F64 = 12,
};

#define DAIS_GGUF_MAX_DIMS          4
#define DAIS_GGUF_DEFAULT_ALIGNMENT 32
#define DAIS_GGUF_MAX_NAME          95    /* longest tensor name, bytes */
#define DAIS_GGUF_MAX_KEY           65535 /* longest metadata key, bytes (the format's limit) */
#define DAIS_GGUF_MAX_STRING        (64u << 20) /* longest string value or array element, bytes */
#define DAIS_GGUF_MAX_TENSORS       (1u << 20)  /* most tensors a file may declare */
#define DAIS_GGUF_MAX_KV            (1u << 20)  /* most metadata keys a file may declare */

/* A string inside the file: not NUL-terminated. */
typedef struct dais_gguf_str {
    const char *ptr;
    uint64_t len;
} dais_gguf_str;

/* One metadata key/value. Keys are non-empty, contain no NUL byte, and are unique.
 * Arrays point into the file: `arr_data` is the first element (for string arrays, the first
 * length prefix; use dais_gguf_arr_str for O(1) access to element i). */
typedef struct dais_gguf_kv {
    dais_gguf_str key;
    uint32_t type;     /* enum dais_gguf_vtype */
    uint32_t arr_type; /* element type when type == ARRAY */
    uint64_t arr_n;    /* element count when type == ARRAY */
    const uint8_t *arr_data;
    union {
        uint64_t u;
        int64_t i;
        double f;
        bool b;
        dais_gguf_str s;
    } v; /* scalar value, widened: u8..u64 in u, i8..i64 in i (sign-extended), f32/f64 in f,
          * bool in b, string in s; unused for arrays */
} dais_gguf_kv;

typedef struct dais_gguf_tensor {
    char name[96];                   /* NUL-terminated copy of the tensor name */
    uint32_t type;                   /* enum dais_dtype */
    uint32_t n_dims;                 /* 1..4 */
    uint64_t ne[DAIS_GGUF_MAX_DIMS]; /* elements per dimension; ne[0] is contiguous; unused = 1 */
    uint64_t offset;                 /* relative to the data section */
    size_t nbytes;                   /* bytes of data */
    const void *data;                /* into the mapped file */
} dais_gguf_tensor;

typedef struct dais_gguf dais_gguf;

/* Maps (read-only, MAP_PRIVATE) and parses `path`. Returns an owned object (free with
 * dais_gguf_free) or NULL with `err` filled (the message starts with the path when it fits).
 * Any thread. The file must not be truncated by another process while it is mapped: reading
 * a page past the new end raises SIGBUS, which no parser can guard against. */
dais_gguf *dais_gguf_open(const char *path, dais_err *err);

/* Parses a GGUF image in memory; borrows `buf`, which must outlive the result. */
dais_gguf *dais_gguf_parse(const uint8_t *buf, size_t len, dais_err *err);

/* Accepts NULL. Unmaps the file if dais_gguf_open mapped it. */
void dais_gguf_free(dais_gguf *g);

/* Name of a value type for printing ("u32", "str", "arr" …); "unknown" for other ids. */
const char *dais_gguf_vtype_name(uint32_t type);

uint32_t dais_gguf_version(const dais_gguf *g);
uint32_t dais_gguf_alignment(const dais_gguf *g);
size_t dais_gguf_data_offset(const dais_gguf *g); /* file offset of the tensor data section */
size_t dais_gguf_file_size(const dais_gguf *g);

/* Metadata. Lookups return NULL when the key is absent. */
uint64_t dais_gguf_n_kv(const dais_gguf *g);
const dais_gguf_kv *dais_gguf_kv_at(const dais_gguf *g, uint64_t i);
const dais_gguf_kv *dais_gguf_find(const dais_gguf *g, const char *key);

/* Typed getters. Integer getters accept any integer type (u8…u64, i8…i64) and bool when the
 * value fits the requested type exactly. get_f32 accepts f32, f64 (rounded to the nearest
 * float; must be within float range) and integers that a float represents exactly. get_bool
 * accepts bool and the integers 0 and 1. Return 0 on success, DAIS_ENOTFOUND if the key is
 * absent (*out untouched, err untouched), DAIS_EFORMAT with `err` naming the key if its type or
 * value does not fit. Any thread; `err` may be NULL. */
int dais_gguf_get_u32(const dais_gguf *g, const char *key, uint32_t *out, dais_err *err);
int dais_gguf_get_i64(const dais_gguf *g, const char *key, int64_t *out, dais_err *err);
int dais_gguf_get_u64(const dais_gguf *g, const char *key, uint64_t *out, dais_err *err);
int dais_gguf_get_f32(const dais_gguf *g, const char *key, float *out, dais_err *err);
int dais_gguf_get_bool(const dais_gguf *g, const char *key, bool *out, dais_err *err);
/* String value (not NUL-terminated). */
int dais_gguf_get_str(const dais_gguf *g, const char *key, dais_gguf_str *out, dais_err *err);

/* Array access: element i of a numeric array, converted with the getters' rules above.
 * Returns 0, DAIS_EINVAL if kv is not an array or i >= kv->arr_n, or DAIS_EFORMAT if the
 * element type does not convert exactly (e.g. u64 above INT64_MAX, or a string array). */
int dais_gguf_arr_i64(const dais_gguf_kv *kv, uint64_t i, int64_t *out);
int dais_gguf_arr_f32(const dais_gguf_kv *kv, uint64_t i, float *out);
/* String arrays: element i in O(1), from the per-element index the parser built (every element
 * was validated then). `kv` must come from `g`. Returns 0 or DAIS_EINVAL (kv not a string
 * array of g, or i out of range). Any thread. */
int dais_gguf_arr_str(const dais_gguf *g, const dais_gguf_kv *kv, uint64_t i, dais_gguf_str *out);

/* Tensors, in file order. tensor_at returns NULL when i is out of range, find_tensor when no
 * tensor has that name. Every tensor's data lies inside the file, aligned, without overlap. */
uint64_t dais_gguf_n_tensors(const dais_gguf *g);
const dais_gguf_tensor *dais_gguf_tensor_at(const dais_gguf *g, uint64_t i);
const dais_gguf_tensor *dais_gguf_find_tensor(const dais_gguf *g, const char *name);

/* Prints a human-readable description of `g` to `out`: the header (version, size, alignment,
 * data offset), every metadata key with its type and value (strings escaped; arrays show their
 * element type and count, and their first `max_array_items` elements, all of them when
 * negative), and a tensor table (name, type, shape, offset in the data section, bytes) with
 * totals. Used by `dais model info`. Returns 0 or DAIS_EIO if writing failed. */
int dais_gguf_dump(const dais_gguf *g, FILE *out, int max_array_items);

/* ---- writer ---------------------------------------------------------------------------- */

typedef struct dais_gguf_writer dais_gguf_writer;

/* A writer collects metadata and tensors in memory and writes the file at
 * dais_gguf_writer_write. Metadata and (with add_tensor) tensor data are copied at add time.
 * Errors are sticky: each set/add call returns 0 or a negative code, and the first failure is
 * also remembered and reported (with its message) by dais_gguf_writer_write, so a caller may
 * add everything and check once. Setting a key that is already set replaces its value. Keys
 * are written in the order first set, tensors in the order added. One thread at a time. */
dais_gguf_writer *dais_gguf_writer_new(void);
void dais_gguf_writer_free(dais_gguf_writer *w); /* accepts NULL */

int dais_gguf_writer_set_u8(dais_gguf_writer *w, const char *key, uint8_t v);
int dais_gguf_writer_set_i8(dais_gguf_writer *w, const char *key, int8_t v);
int dais_gguf_writer_set_u16(dais_gguf_writer *w, const char *key, uint16_t v);
int dais_gguf_writer_set_i16(dais_gguf_writer *w, const char *key, int16_t v);
int dais_gguf_writer_set_u32(dais_gguf_writer *w, const char *key, uint32_t v);
int dais_gguf_writer_set_i32(dais_gguf_writer *w, const char *key, int32_t v);
int dais_gguf_writer_set_u64(dais_gguf_writer *w, const char *key, uint64_t v);
int dais_gguf_writer_set_i64(dais_gguf_writer *w, const char *key, int64_t v);
int dais_gguf_writer_set_f32(dais_gguf_writer *w, const char *key, float v);
int dais_gguf_writer_set_f64(dais_gguf_writer *w, const char *key, double v);
int dais_gguf_writer_set_bool(dais_gguf_writer *w, const char *key, bool v);
int dais_gguf_writer_set_str(dais_gguf_writer *w, const char *key, const char *v);
/* Numeric (or bool) arrays: `elem_type` is a scalar enum dais_gguf_vtype other than STRING;
 * `data` holds n packed little-endian elements of that type (copied). */
int dais_gguf_writer_set_arr(dais_gguf_writer *w, const char *key, uint32_t elem_type,
                             const void *data, uint64_t n);
/* String array: n strings (NUL-terminated, copied), or with explicit lengths when lens != NULL. */
int dais_gguf_writer_set_arr_str(dais_gguf_writer *w, const char *key, const char *const *strs,
                                 const uint64_t *lens, uint64_t n);
/* Copies one metadata entry of a parsed file (`kv` from `g`, any type, arrays included) under
 * the same key, value type and value bytes: how `dais model shard` carries a source file's
 * metadata over unchanged. Returns 0 or a negative code (sticky, as the setters). */
int dais_gguf_writer_copy_kv(dais_gguf_writer *w, const dais_gguf *g, const dais_gguf_kv *kv);
/* Adds a tensor. `ne` has n_dims (1..4) entries, each >= 1, ne[0] a multiple of the type's block
 * size; `data` holds dais_dtype_row_bytes(type, ne[0]) * ne[1] * … bytes (copied). Names are
 * 1..95 bytes and unique. */
int dais_gguf_writer_add_tensor(dais_gguf_writer *w, const char *name, uint32_t type,
                                uint32_t n_dims, const uint64_t *ne, const void *data);
/* As add_tensor, but borrows `data`: the caller keeps it alive and unchanged until
 * dais_gguf_writer_write returns (or the writer is freed). Lets a large file be written with
 * its weights in memory once. */
int dais_gguf_writer_add_tensor_nocopy(dais_gguf_writer *w, const char *name, uint32_t type,
                                       uint32_t n_dims, const uint64_t *ne, const void *data);
/* Writes the file: version 3, alignment from a u32 `general.alignment` if set, else 32. The file
 * is written to a temporary name beside `path` and renamed into place, so readers never see a
 * half-written model. Returns 0 or a negative code with err filled. */
int dais_gguf_writer_write(dais_gguf_writer *w, const char *path, dais_err *err);
/* Writes the same bytes to an open stream (not closed; flushed). */
int dais_gguf_writer_write_file(dais_gguf_writer *w, FILE *f, dais_err *err);

#endif
