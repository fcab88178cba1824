/*
 * GGUF v3 reader and writer.
 *
 * Reader: parses a GGUF file held in memory (memory-mapped by dais_gguf_open, or any buffer
 * via dais_gguf_parse, which the fuzz target uses). Everything is validated before use:
 * magic, version, counts, string and array lengths, key uniqueness, value types, tensor
 * types, dimensions, offsets, alignment, and every tensor's extent against the file size,
 * with overflow-safe arithmetic. Failures return NULL and a dais_err whose message names the
 * problem (the key, the tensor, the byte offset). The parsed object borrows the buffer.
 *
 * Writer: builds a GGUF file from metadata and tensors (used by `dais model synth`, tests
 * and benchmarks).
 */
#ifndef DAIS_ENGINE_GGUF_H
#define DAIS_ENGINE_GGUF_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

#define DAIS_GGUF_MAX_DIMS 4
#define DAIS_GGUF_DEFAULT_ALIGNMENT 32

/* A string inside the file: not NUL-terminated. */
typedef struct dais_gguf_str {
    const char *ptr;
    uint64_t len;
} dais_gguf_str;

/* One metadata key/value. Arrays point into the file: `arr_data` is the first element
 * (for string arrays, the first length prefix; use dais_gguf_arr_str to walk them). */
typedef struct dais_gguf_kv {
    dais_gguf_str key;
    uint32_t type;      /* enum dais_gguf_vtype */
    uint32_t arr_type;  /* element type when type == ARRAY */
    uint64_t arr_n;     /* element count when type == ARRAY */
    const uint8_t *arr_data;
    union {
        uint64_t u;
        int64_t i;
        double f;
        bool b;
        dais_gguf_str s;
    } v; /* scalar value, widened: integer types in u/i, floats in f */
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

/* Maps and parses `path`. Returns an owned object (free with dais_gguf_free) or NULL with
 * `err` filled. Any thread. */
dais_gguf *dais_gguf_open(const char *path, dais_err *err);

/* Parses a GGUF image in memory; borrows `buf`, which must outlive the result. */
dais_gguf *dais_gguf_parse(const uint8_t *buf, size_t len, dais_err *err);

/* Accepts NULL. Unmaps the file if dais_gguf_open mapped it. */
void dais_gguf_free(dais_gguf *g);

uint32_t dais_gguf_version(const dais_gguf *g);
uint32_t dais_gguf_alignment(const dais_gguf *g);
size_t dais_gguf_data_offset(const dais_gguf *g); /* file offset of the tensor data section */
size_t dais_gguf_file_size(const dais_gguf *g);

/* Metadata. Lookups return NULL when the key is absent. */
uint64_t dais_gguf_n_kv(const dais_gguf *g);
const dais_gguf_kv *dais_gguf_kv_at(const dais_gguf *g, uint64_t i);
const dais_gguf_kv *dais_gguf_find(const dais_gguf *g, const char *key);

/* Typed getters that accept any numeric GGUF type that represents the value exactly
 * (u8…u64, i8…i64, bool for integers; f32/f64 and integers for floats). Return 0 on success,
 * DAIS_ENOTFOUND if the key is absent (*out untouched), DAIS_EFORMAT with `err` naming the key
 * if its type or value does not fit. */
int dais_gguf_get_u32(const dais_gguf *g, const char *key, uint32_t *out, dais_err *err);
int dais_gguf_get_i64(const dais_gguf *g, const char *key, int64_t *out, dais_err *err);
int dais_gguf_get_f32(const dais_gguf *g, const char *key, float *out, dais_err *err);
int dais_gguf_get_bool(const dais_gguf *g, const char *key, bool *out, dais_err *err);
/* String value (not NUL-terminated). */
int dais_gguf_get_str(const dais_gguf *g, const char *key, dais_gguf_str *out, dais_err *err);

/* Array access; element i of a numeric array converted to the requested type (the getter
 * fails with DAIS_EFORMAT if the element type does not convert exactly). i < kv->arr_n. */
int dais_gguf_arr_i64(const dais_gguf_kv *kv, uint64_t i, int64_t *out);
int dais_gguf_arr_f32(const dais_gguf_kv *kv, uint64_t i, float *out);
/* String arrays: the parser has already validated every element; this builds an index on
 * first use (O(n) once), so random access is O(1). Returns 0 or DAIS_EINVAL. */
int dais_gguf_arr_str(const dais_gguf *g, const dais_gguf_kv *kv, uint64_t i, dais_gguf_str *out);

/* Tensors. */
uint64_t dais_gguf_n_tensors(const dais_gguf *g);
const dais_gguf_tensor *dais_gguf_tensor_at(const dais_gguf *g, uint64_t i);
const dais_gguf_tensor *dais_gguf_find_tensor(const dais_gguf *g, const char *name);

/* ---- writer ---------------------------------------------------------------------------- */

typedef struct dais_gguf_writer dais_gguf_writer;

/* A writer collects metadata and tensors in memory-light form and writes the file at
 * dais_gguf_writer_write. Tensor data is copied at add time. */
dais_gguf_writer *dais_gguf_writer_new(void);
void dais_gguf_writer_free(dais_gguf_writer *w);

int dais_gguf_writer_set_u32(dais_gguf_writer *w, const char *key, uint32_t v);
int dais_gguf_writer_set_i32(dais_gguf_writer *w, const char *key, int32_t v);
int dais_gguf_writer_set_f32(dais_gguf_writer *w, const char *key, float v);
int dais_gguf_writer_set_bool(dais_gguf_writer *w, const char *key, bool v);
int dais_gguf_writer_set_str(dais_gguf_writer *w, const char *key, const char *v);
/* Numeric arrays: `elem_type` is a scalar enum dais_gguf_vtype; `data` holds n packed
 * little-endian elements of that type (copied). */
int dais_gguf_writer_set_arr(dais_gguf_writer *w, const char *key, uint32_t elem_type,
                             const void *data, uint64_t n);
/* String array: n strings (NUL-terminated, copied), or with explicit lengths when lens != NULL. */
int dais_gguf_writer_set_arr_str(dais_gguf_writer *w, const char *key, const char *const *strs,
                                 const uint64_t *lens, uint64_t n);
/* Adds a tensor; `data` holds dais_dtype_row_bytes(type, ne[0]) * ne[1] * … bytes (copied). */
int dais_gguf_writer_add_tensor(dais_gguf_writer *w, const char *name, uint32_t type,
                                uint32_t n_dims, const uint64_t *ne, const void *data);
/* Writes the file (version 3, alignment 32). Returns 0 or a negative code with err filled. */
int dais_gguf_writer_write(dais_gguf_writer *w, const char *path, dais_err *err);

#endif
