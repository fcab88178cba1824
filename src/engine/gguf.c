/*
 * GGUF reader (see gguf.h). One forward pass over the file validates every byte it
 * interprets: a cursor with bounds checks reads the header, the metadata and the tensor
 * infos; every count is bounded by the bytes left before anything is allocated; then the
 * tensor extents are checked against the data section. Failures name the key or tensor and
 * the byte offset. After parsing nothing changes, so readers need no locks.
 */
#include "engine/gguf.h"

#include "engine/dtype.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
/* Smallest encodings, used to bound declared counts by the bytes that remain. */
#define MIN_KV_BYTES 14 /* key length (8) + 1 key byte + type (4) + 1 value byte */
#define MIN_TENSOR_BYTES                                                                           \
    33 /* name length (8) + 1 name byte + n_dims (4) + ne (8) + type (4) + offset (8) */

struct dais_gguf {
    const uint8_t *buf;
    size_t len;
    void *map; /* non-NULL when dais_gguf_open mapped the file */
    size_t map_len;
    uint32_t version;
    uint32_t alignment;
    size_t data_offset;
    uint64_t n_kv;
    dais_gguf_kv *kvs; /* (n_kv) */
    uint64_t *
        *str_index; /* (n_kv); for string arrays, (arr_n) file offsets of each length prefix */
    uint64_t n_tensors;
    dais_gguf_tensor *tensors; /* (n_tensors) */
    /* Indices sorted by key / tensor name, for binary search. Sorting rather than hashing keeps
     * parsing O(n log n) whatever names a crafted file uses (no collision flooding). */
    uint32_t *kv_sorted; /* (n_kv) */
    uint32_t *t_sorted;  /* (n_tensors) */
};

/* ---- little-endian loads ------------------------------------------------------------------ */

static uint16_t ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p)
{
    return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

/* ---- sorted name indices ------------------------------------------------------------------ */

/* Orders byte strings as memcmp does, shorter first on a common prefix. */
static int cmp_bytes(const char *a, size_t na, const char *b, size_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c != 0) return c;
    return na < nb ? -1 : na > nb;
}

/* Ties (duplicates) are ordered by index, so the first occurrence sorts first. */
static int cmp_kv_idx(const void *a, const void *b, void *arg)
{
    const dais_gguf_kv *kvs = arg;
    uint32_t ia = *(const uint32_t *)a, ib = *(const uint32_t *)b;
    int c = cmp_bytes(kvs[ia].key.ptr, (size_t)kvs[ia].key.len, kvs[ib].key.ptr,
                      (size_t)kvs[ib].key.len);
    return c != 0 ? c : (ia < ib ? -1 : ia > ib);
}

static int cmp_tensor_idx(const void *a, const void *b, void *arg)
{
    const dais_gguf_tensor *t = arg;
    uint32_t ia = *(const uint32_t *)a, ib = *(const uint32_t *)b;
    int c = strcmp(t[ia].name, t[ib].name);
    return c != 0 ? c : (ia < ib ? -1 : ia > ib);
}

/* ---- parsing ------------------------------------------------------------------------------- */

typedef struct parser {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    dais_err *err;
    char ctx[112]; /* what is being read, for messages: "key 'general.name'", "tensor #3" … */
} parser;

/* Copies a name from the file into ctx, printable ASCII only, shortened to fit. */
static void set_ctx(parser *p, const char *what, const char *name, uint64_t len)
{
    char clean[72];
    size_t n = len < 64 ? (size_t)len : 64;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        clean[i] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    clean[n] = '\0';
    snprintf(p->ctx, sizeof(p->ctx), "%s '%s%s'", what, clean, len > 64 ? "..." : "");
}

static int perr(parser *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int perr(parser *p, int code, const char *fmt, ...)
{
    char msg[sizeof(p->err->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return dais_err_set(p->err, code, "%s: %s", p->ctx, msg);
}

/* Fails unless n more bytes are present at the cursor. */
static int need(parser *p, uint64_t n, const char *what)
{
    if (n > p->len - p->pos)
        return perr(p, DAIS_EFORMAT,
                    "truncated: %s needs %" PRIu64 " bytes at offset %zu, file size %zu", what, n,
                    p->pos, p->len);
    return 0;
}

static int rd_u32(parser *p, uint32_t *out, const char *what)
{
    int rc = need(p, 4, what);
    if (rc < 0) return rc;
    *out = ld32(p->buf + p->pos);
    p->pos += 4;
    return 0;
}

static int rd_u64(parser *p, uint64_t *out, const char *what)
{
    int rc = need(p, 8, what);
    if (rc < 0) return rc;
    *out = ld64(p->buf + p->pos);
    p->pos += 8;
    return 0;
}

/* Reads a length-prefixed string whose length must be <= max; points into the buffer. */
static int rd_str(parser *p, dais_gguf_str *out, uint64_t max, const char *what)
{
    size_t at = p->pos;
    uint64_t n;
    int rc = rd_u64(p, &n, what);
    if (rc < 0) return rc;
    if (n > max)
        return perr(p, DAIS_EFORMAT, "%s at offset %zu has length %" PRIu64 " (limit %" PRIu64 ")",
                    what, at, n, max);
    if (n > p->len - p->pos)
        return perr(p, DAIS_EFORMAT,
                    "truncated: %s at offset %zu has length %" PRIu64
                    " but only %zu bytes remain (file size %zu)",
                    what, at, n, p->len - p->pos, p->len);
    out->ptr = (const char *)p->buf + p->pos;
    out->len = n;
    p->pos += (size_t)n;
    return 0;
}

/* Fixed size of a scalar value type; 0 for string/array/unknown. */
static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case DAIS_GGUF_U8:
    case DAIS_GGUF_I8:
    case DAIS_GGUF_BOOL:
        return 1;
    case DAIS_GGUF_U16:
    case DAIS_GGUF_I16:
        return 2;
    case DAIS_GGUF_U32:
    case DAIS_GGUF_I32:
    case DAIS_GGUF_F32:
        return 4;
    case DAIS_GGUF_U64:
    case DAIS_GGUF_I64:
    case DAIS_GGUF_F64:
        return 8;
    default:
        return 0;
    }
}

const char *dais_gguf_vtype_name(uint32_t type)
{
    static const char *const names[] = {"u8",   "i8",  "u16", "i16", "u32", "i32", "f32",
                                        "bool", "str", "arr", "u64", "i64", "f64"};
    return type < sizeof(names) / sizeof(names[0]) ? names[type] : "unknown";
}

/* Decodes a fixed-size scalar at `q` into the kv's widened value. */
static void decode_scalar(uint32_t t, const uint8_t *q, dais_gguf_kv *kv)
{
    float f;
    double d;
    switch (t) {
    case DAIS_GGUF_U8:
        kv->v.u = q[0];
        break;
    case DAIS_GGUF_I8:
        kv->v.i = (int64_t)(int8_t)q[0]; /* sign-extend: I8 is signed */
        break;
    case DAIS_GGUF_U16:
        kv->v.u = ld16(q);
        break;
    case DAIS_GGUF_I16:
        kv->v.i = (int16_t)ld16(q);
        break;
    case DAIS_GGUF_U32:
        kv->v.u = ld32(q);
        break;
    case DAIS_GGUF_I32:
        kv->v.i = (int32_t)ld32(q);
        break;
    case DAIS_GGUF_U64:
        kv->v.u = ld64(q);
        break;
    case DAIS_GGUF_I64:
        kv->v.i = (int64_t)ld64(q);
        break;
    case DAIS_GGUF_BOOL:
        kv->v.b = q[0] != 0;
        break;
    case DAIS_GGUF_F32: {
        uint32_t b = ld32(q);
        memcpy(&f, &b, sizeof(f));
        kv->v.f = f;
        break;
    }
    case DAIS_GGUF_F64: {
        uint64_t b = ld64(q);
        memcpy(&d, &b, sizeof(d));
        kv->v.f = d;
        break;
    }
    default:
        break;
    }
}

static int parse_array(parser *p, dais_gguf_kv *kv, uint64_t **index_out)
{
    size_t at = p->pos;
    int rc = rd_u32(p, &kv->arr_type, "array element type");
    if (rc < 0) return rc;
    if (kv->arr_type == DAIS_GGUF_ARRAY)
        return perr(p, DAIS_EUNSUPPORTED, "arrays of arrays are not supported (offset %zu)", at);
    if (kv->arr_type > DAIS_GGUF_F64)
        return perr(p, DAIS_EFORMAT, "unknown array element type %" PRIu32 " at offset %zu",
                    kv->arr_type, at);
    size_t count_at = p->pos;
    rc = rd_u64(p, &kv->arr_n, "array length");
    if (rc < 0) return rc;
    kv->arr_data = p->buf + p->pos;
    size_t remain = p->len - p->pos;

    if (kv->arr_type != DAIS_GGUF_STRING) {
        size_t es = scalar_size(kv->arr_type);
        if (kv->arr_n > remain / es)
            return perr(p, DAIS_EFORMAT,
                        "truncated: array of %" PRIu64 " %s at offset %zu needs more than the %zu "
                        "bytes left (file size %zu)",
                        kv->arr_n, dais_gguf_vtype_name(kv->arr_type), count_at, remain, p->len);
        size_t bytes = (size_t)kv->arr_n * es;
        if (kv->arr_type == DAIS_GGUF_BOOL) {
            for (size_t i = 0; i < bytes; i++)
                if (p->buf[p->pos + i] > 1)
                    return perr(p, DAIS_EFORMAT, "bool element %zu is %u, not 0 or 1 (offset %zu)",
                                i, p->buf[p->pos + i], p->pos + i);
        }
        p->pos += bytes;
        return 0;
    }

    /* Each string takes at least its 8-byte length, which bounds the index allocation. */
    if (kv->arr_n > remain / 8)
        return perr(p, DAIS_EFORMAT,
                    "truncated: array of %" PRIu64 " strings at offset %zu cannot fit in the %zu "
                    "bytes left (file size %zu)",
                    kv->arr_n, count_at, remain, p->len);
    uint64_t *index = malloc(kv->arr_n > 0 ? (size_t)kv->arr_n * sizeof(uint64_t) : 1);
    if (index == NULL)
        return perr(p, DAIS_ENOMEM, "no memory for a %" PRIu64 "-string index", kv->arr_n);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        index[i] = p->pos;
        dais_gguf_str s;
        rc = rd_str(p, &s, DAIS_GGUF_MAX_STRING, "string element");
        if (rc < 0) {
            /* Add the element number: the cursor message says where, this says which. */
            char msg[sizeof(p->err->msg)];
            snprintf(msg, sizeof(msg), "%s", p->err != NULL ? p->err->msg : "");
            if (p->err != NULL) dais_err_set(p->err, rc, "%s [element %" PRIu64 "]", msg, i);
            free(index);
            return rc;
        }
    }
    *index_out = index;
    return 0;
}

static int parse_kvs(parser *p, dais_gguf *g)
{
    for (uint64_t i = 0; i < g->n_kv; i++) {
        dais_gguf_kv *kv = &g->kvs[i];
        size_t at = p->pos;
        snprintf(p->ctx, sizeof(p->ctx), "key #%" PRIu64, i);
        int rc = rd_str(p, &kv->key, DAIS_GGUF_MAX_KEY, "key");
        if (rc < 0) return rc;
        if (kv->key.len == 0) return perr(p, DAIS_EFORMAT, "empty key at offset %zu", at);
        if (memchr(kv->key.ptr, '\0', (size_t)kv->key.len) != NULL) {
            set_ctx(p, "key", kv->key.ptr, kv->key.len);
            return perr(p, DAIS_EFORMAT, "key at offset %zu contains a NUL byte", at);
        }
        set_ctx(p, "key", kv->key.ptr, kv->key.len);
        size_t type_at = p->pos;
        rc = rd_u32(p, &kv->type, "value type");
        if (rc < 0) return rc;
        if (kv->type == DAIS_GGUF_STRING) {
            rc = rd_str(p, &kv->v.s, DAIS_GGUF_MAX_STRING, "string value");
        } else if (kv->type == DAIS_GGUF_ARRAY) {
            rc = parse_array(p, kv, &g->str_index[i]);
        } else if (kv->type <= DAIS_GGUF_F64) {
            size_t n = scalar_size(kv->type);
            rc = need(p, n, dais_gguf_vtype_name(kv->type));
            if (rc == 0 && kv->type == DAIS_GGUF_BOOL && p->buf[p->pos] > 1)
                rc = perr(p, DAIS_EFORMAT, "bool value is %u, not 0 or 1 (offset %zu)",
                          p->buf[p->pos], p->pos);
            if (rc == 0) {
                decode_scalar(kv->type, p->buf + p->pos, kv);
                p->pos += n;
            }
        } else {
            rc = perr(p, DAIS_EFORMAT, "unknown value type %" PRIu32 " at offset %zu", kv->type,
                      type_at);
        }
        if (rc < 0) return rc;
    }
    return 0;
}

/* Sorts the key index and rejects duplicate keys, naming the key and both occurrences. */
static int index_kvs(parser *p, dais_gguf *g)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        g->kv_sorted[i] = (uint32_t)i;
    qsort_r(g->kv_sorted, (size_t)g->n_kv, sizeof(uint32_t), cmp_kv_idx, g->kvs);
    for (uint64_t i = 1; i < g->n_kv; i++) {
        const dais_gguf_kv *a = &g->kvs[g->kv_sorted[i - 1]], *b = &g->kvs[g->kv_sorted[i]];
        if (cmp_bytes(a->key.ptr, (size_t)a->key.len, b->key.ptr, (size_t)b->key.len) == 0) {
            set_ctx(p, "key", b->key.ptr, b->key.len);
            return perr(p, DAIS_EFORMAT,
                        "duplicate key at offset %zu (key #%" PRIu32
                        "; first defined as key #%" PRIu32 " at offset %zu)",
                        (size_t)((const uint8_t *)b->key.ptr - p->buf) - 8, g->kv_sorted[i],
                        g->kv_sorted[i - 1], (size_t)((const uint8_t *)a->key.ptr - p->buf) - 8);
        }
    }
    return 0;
}

/* Sorts the tensor index and rejects duplicate names. */
static int index_tensors(parser *p, dais_gguf *g)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        g->t_sorted[i] = (uint32_t)i;
    qsort_r(g->t_sorted, (size_t)g->n_tensors, sizeof(uint32_t), cmp_tensor_idx, g->tensors);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const dais_gguf_tensor *a = &g->tensors[g->t_sorted[i - 1]];
        const dais_gguf_tensor *b = &g->tensors[g->t_sorted[i]];
        if (strcmp(a->name, b->name) == 0) {
            set_ctx(p, "tensor", b->name, strlen(b->name));
            return perr(p, DAIS_EFORMAT,
                        "duplicate tensor name (tensor #%" PRIu32 "; first is tensor #%" PRIu32 ")",
                        g->t_sorted[i], g->t_sorted[i - 1]);
        }
    }
    return 0;
}

/* Sets g->alignment from general.alignment, if present. */
static int apply_alignment(parser *p, dais_gguf *g)
{
    g->alignment = DAIS_GGUF_DEFAULT_ALIGNMENT;
    const dais_gguf_kv *kv = dais_gguf_find(g, "general.alignment");
    if (kv == NULL) return 0;
    snprintf(p->ctx, sizeof(p->ctx), "key 'general.alignment'");
    /* The format says u32; other unsigned widths would be a harmless tool quirk, accept them. */
    if (kv->type != DAIS_GGUF_U32 && kv->type != DAIS_GGUF_U16 && kv->type != DAIS_GGUF_U8 &&
        kv->type != DAIS_GGUF_U64)
        return perr(p, DAIS_EFORMAT, "has type %s, expected u32", dais_gguf_vtype_name(kv->type));
    if (kv->v.u == 0 || kv->v.u > UINT32_MAX || (kv->v.u & (kv->v.u - 1)) != 0)
        return perr(p, DAIS_EFORMAT, "value %" PRIu64 " is not a nonzero 32-bit power of two",
                    kv->v.u);
    g->alignment = (uint32_t)kv->v.u;
    return 0;
}

static int parse_tensor_infos(parser *p, dais_gguf *g)
{
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        dais_gguf_tensor *t = &g->tensors[i];
        size_t at = p->pos;
        snprintf(p->ctx, sizeof(p->ctx), "tensor #%" PRIu64, i);
        dais_gguf_str name = {NULL, 0};
        int rc = rd_str(p, &name, UINT64_MAX, "name");
        if (rc < 0) return rc;
        if (name.len == 0) return perr(p, DAIS_EFORMAT, "empty name at offset %zu", at);
        set_ctx(p, "tensor", name.ptr, name.len);
        if (name.len > DAIS_GGUF_MAX_NAME)
            return perr(p, DAIS_EFORMAT, "name at offset %zu is %" PRIu64 " bytes (limit %d)", at,
                        name.len, DAIS_GGUF_MAX_NAME);
        if (memchr(name.ptr, '\0', (size_t)name.len) != NULL)
            return perr(p, DAIS_EFORMAT, "name at offset %zu contains a NUL byte", at);
        memcpy(t->name, name.ptr, (size_t)name.len);
        t->name[name.len] = '\0';
        size_t dims_at = p->pos;
        rc = rd_u32(p, &t->n_dims, "n_dims");
        if (rc < 0) return rc;
        if (t->n_dims < 1 || t->n_dims > DAIS_GGUF_MAX_DIMS)
            return perr(p, DAIS_EFORMAT, "n_dims %" PRIu32 " at offset %zu is not in 1..%d",
                        t->n_dims, dims_at, DAIS_GGUF_MAX_DIMS);
        uint64_t nelem = 1;
        for (uint32_t d = 0; d < DAIS_GGUF_MAX_DIMS; d++)
            t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            size_t ne_at = p->pos;
            rc = rd_u64(p, &t->ne[d], "dimension");
            if (rc < 0) return rc;
            /* An empty tensor holds no weights and has no data address: reject it. */
            if (t->ne[d] == 0)
                return perr(p, DAIS_EFORMAT, "dimension %" PRIu32 " is 0 (offset %zu)", d, ne_at);
            if (t->ne[d] > (uint64_t)INT64_MAX / nelem)
                return perr(p, DAIS_EFORMAT,
                            "dimension %" PRIu32 " = %" PRIu64
                            " makes the element count overflow (offset %zu)",
                            d, t->ne[d], ne_at);
            nelem *= t->ne[d];
        }
        size_t type_at = p->pos;
        rc = rd_u32(p, &t->type, "type");
        if (rc < 0) return rc;
        const dais_dtype_info *ti = dais_dtype_get(t->type);
        if (ti == NULL)
            return perr(p, DAIS_EFORMAT, "unknown tensor type %" PRIu32 " at offset %zu", t->type,
                        type_at);
        if (t->ne[0] % ti->block != 0)
            return perr(p, DAIS_EFORMAT,
                        "row length %" PRIu64 " is not a multiple of the %s block size %" PRIu32,
                        t->ne[0], ti->name, ti->block);
        bool ovf = false;
        uint64_t bytes = dais_dtype_row_bytes(t->type, t->ne[0], &ovf);
        for (uint32_t d = 1; d < t->n_dims && !ovf; d++) {
            if (t->ne[d] > SIZE_MAX / bytes)
                ovf = true;
            else
                bytes *= t->ne[d];
        }
        if (ovf)
            return perr(p, DAIS_EFORMAT, "size of %" PRIu64 " %s elements overflows", nelem,
                        ti->name);
        t->nbytes = (size_t)bytes;
        rc = rd_u64(p, &t->offset, "data offset");
        if (rc < 0) return rc;
    }
    return 0;
}

static int cmp_by_offset(const void *a, const void *b, void *arg)
{
    const dais_gguf_tensor *t = arg;
    uint64_t oa = t[*(const uint32_t *)a].offset, ob = t[*(const uint32_t *)b].offset;
    return oa < ob ? -1 : oa > ob;
}

/* Checks every tensor's extent against the data section, alignment and the other tensors. */
static int check_extents(parser *p, dais_gguf *g)
{
    if (g->n_tensors == 0) return 0;
    size_t data_len = g->data_offset <= p->len ? p->len - g->data_offset : 0;
    if (g->data_offset > p->len) {
        snprintf(p->ctx, sizeof(p->ctx), "data section");
        return perr(p, DAIS_EFORMAT,
                    "truncated: starts at offset %zu (after padding to %" PRIu32
                    ") past end of file (size %zu)",
                    g->data_offset, g->alignment, p->len);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        dais_gguf_tensor *t = &g->tensors[i];
        set_ctx(p, "tensor", t->name, strlen(t->name));
        if (t->offset % g->alignment != 0)
            return perr(p, DAIS_EFORMAT,
                        "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu32,
                        t->offset, g->alignment);
        if (t->offset > data_len || t->nbytes > data_len - t->offset)
            return perr(p, DAIS_EFORMAT,
                        "data [offset %" PRIu64 ", %zu bytes] in the data section at %zu extends "
                        "past end of file (size %zu)",
                        t->offset, t->nbytes, g->data_offset, p->len);
        t->data = g->buf + g->data_offset + t->offset;
    }
    /* Overlapping tensors cannot come from a correct writer: a sign of corruption. */
    uint32_t *order = malloc((size_t)g->n_tensors * sizeof(uint32_t));
    if (order == NULL)
        return perr(p, DAIS_ENOMEM, "no memory to sort %" PRIu64 " tensors", g->n_tensors);
    for (uint64_t i = 0; i < g->n_tensors; i++)
        order[i] = (uint32_t)i;
    qsort_r(order, (size_t)g->n_tensors, sizeof(uint32_t), cmp_by_offset, g->tensors);
    int rc = 0;
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const dais_gguf_tensor *a = &g->tensors[order[i - 1]], *b = &g->tensors[order[i]];
        if (a->offset + a->nbytes > b->offset) {
            set_ctx(p, "tensor", b->name, strlen(b->name));
            rc = perr(p, DAIS_EFORMAT,
                      "data at offset %" PRIu64 " overlaps tensor '%.64s' [offset %" PRIu64
                      ", %zu bytes]",
                      b->offset, a->name, a->offset, a->nbytes);
            break;
        }
    }
    free(order);
    return rc;
}

dais_gguf *dais_gguf_parse(const uint8_t *buf, size_t len, dais_err *err)
{
    parser p = {.buf = buf, .len = len, .pos = 0, .err = err};
    snprintf(p.ctx, sizeof(p.ctx), "header");
    dais_gguf *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "out of memory");
        return NULL;
    }
    g->buf = buf;
    g->len = len;
    if (buf == NULL && len > 0) {
        dais_err_set(err, DAIS_EINVAL, "NULL buffer");
        goto fail;
    }
    if (need(&p, 4, "magic") < 0) goto fail;
    if (memcmp(buf, GGUF_MAGIC, 4) != 0) {
        perr(&p, DAIS_EFORMAT, "bad magic %02x %02x %02x %02x (expected \"GGUF\"): not a GGUF file",
             buf[0], buf[1], buf[2], buf[3]);
        goto fail;
    }
    p.pos = 4;
    if (rd_u32(&p, &g->version, "version") < 0) goto fail;
    if (g->version == 1) {
        perr(&p, DAIS_EUNSUPPORTED,
             "GGUF version 1 is not supported (32-bit counts); convert the file with a newer tool");
        goto fail;
    }
    if (g->version != 2 && g->version != 3) {
        /* A byte-swapped small version means a big-endian file (allowed since v3). */
        uint32_t sw = __builtin_bswap32(g->version);
        if (sw >= 1 && sw <= 3)
            perr(&p, DAIS_EUNSUPPORTED, "big-endian GGUF (version %" PRIu32 ") is not supported",
                 sw);
        else
            perr(&p, DAIS_EUNSUPPORTED, "unsupported GGUF version %" PRIu32 " (supported: 2, 3)",
                 g->version);
        goto fail;
    }
    if (rd_u64(&p, &g->n_tensors, "tensor count") < 0 || rd_u64(&p, &g->n_kv, "key count") < 0)
        goto fail;
    /* Bound both counts by the bytes present before allocating anything. */
    size_t remain = len - p.pos;
    if (g->n_kv > DAIS_GGUF_MAX_KV || g->n_kv > remain / MIN_KV_BYTES) {
        perr(&p, DAIS_EFORMAT,
             "key count %" PRIu64 " at offset 16 cannot fit in the %zu bytes left (limit %u): "
             "truncated or corrupt",
             g->n_kv, remain, DAIS_GGUF_MAX_KV);
        goto fail;
    }
    if (g->n_tensors > DAIS_GGUF_MAX_TENSORS ||
        g->n_tensors > (remain - (size_t)g->n_kv * MIN_KV_BYTES) / MIN_TENSOR_BYTES) {
        perr(&p, DAIS_EFORMAT,
             "tensor count %" PRIu64 " at offset 8 cannot fit in the %zu bytes left (limit %u): "
             "truncated or corrupt",
             g->n_tensors, remain, DAIS_GGUF_MAX_TENSORS);
        goto fail;
    }
    g->kvs = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof(*g->kvs));
    g->str_index = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof(*g->str_index));
    g->kv_sorted = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof(*g->kv_sorted));
    g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof(*g->tensors));
    g->t_sorted = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof(*g->t_sorted));
    if (g->kvs == NULL || g->str_index == NULL || g->kv_sorted == NULL || g->tensors == NULL ||
        g->t_sorted == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "out of memory for %" PRIu64 " keys and %" PRIu64 " tensors",
                     g->n_kv, g->n_tensors);
        goto fail;
    }
    if (parse_kvs(&p, g) < 0 || index_kvs(&p, g) < 0 || apply_alignment(&p, g) < 0 ||
        parse_tensor_infos(&p, g) < 0 || index_tensors(&p, g) < 0)
        goto fail;
    size_t pad = (g->alignment - p.pos % g->alignment) % g->alignment;
    if (pad > SIZE_MAX - p.pos) {
        snprintf(p.ctx, sizeof(p.ctx), "data section");
        perr(&p, DAIS_EFORMAT, "offset overflows");
        goto fail;
    }
    g->data_offset = p.pos + pad;
    if (check_extents(&p, g) < 0) goto fail;
    return g;
fail:
    dais_gguf_free(g);
    return NULL;
}

dais_gguf *dais_gguf_open(const char *path, dais_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dais_err_set(err, errno == ENOENT ? DAIS_ENOTFOUND : DAIS_EIO, "%s: cannot open: %s", path,
                     strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        dais_err_set(err, DAIS_EIO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        dais_err_set(err, DAIS_EINVAL, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size < 24) {
        dais_err_set(err, DAIS_EFORMAT, "%s: %lld bytes is too small for a GGUF header (24 bytes)",
                     path, (long long)st.st_size);
        close(fd);
        return NULL;
    }
    if ((unsigned long long)st.st_size > SIZE_MAX) {
        dais_err_set(err, DAIS_ETOOBIG, "%s: too large to map", path);
        close(fd);
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        dais_err_set(err, DAIS_EIO, "%s: cannot map %zu bytes: %s", path, len, strerror(map_errno));
        return NULL;
    }
    dais_err perr_local;
    dais_gguf *g = dais_gguf_parse(map, len, &perr_local);
    if (g == NULL) {
        munmap(map, len);
        /* Prefix the path when it fits; the problem itself matters more than the path. */
        if (strlen(path) + 2 + strlen(perr_local.msg) < sizeof(perr_local.msg))
            dais_err_set(err, perr_local.code, "%s: %s", path, perr_local.msg);
        else
            dais_err_set(err, perr_local.code, "%s", perr_local.msg);
        return NULL;
    }
    g->map = map;
    g->map_len = len;
    return g;
}

void dais_gguf_free(dais_gguf *g)
{
    if (g == NULL) return;
    if (g->str_index != NULL)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->str_index[i]);
    free(g->str_index);
    free(g->kvs);
    free(g->kv_sorted);
    free(g->tensors);
    free(g->t_sorted);
    if (g->map != NULL) munmap(g->map, g->map_len);
    free(g);
}

/* ---- accessors ----------------------------------------------------------------------------- */

uint32_t dais_gguf_version(const dais_gguf *g)
{
    return g->version;
}

uint32_t dais_gguf_alignment(const dais_gguf *g)
{
    return g->alignment;
}

size_t dais_gguf_data_offset(const dais_gguf *g)
{
    return g->data_offset;
}

size_t dais_gguf_file_size(const dais_gguf *g)
{
    return g->len;
}

uint64_t dais_gguf_n_kv(const dais_gguf *g)
{
    return g->n_kv;
}

const dais_gguf_kv *dais_gguf_kv_at(const dais_gguf *g, uint64_t i)
{
    return i < g->n_kv ? &g->kvs[i] : NULL;
}

const dais_gguf_kv *dais_gguf_find(const dais_gguf *g, const char *key)
{
    size_t n = strlen(key);
    size_t lo = 0, hi = (size_t)g->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const dais_gguf_kv *kv = &g->kvs[g->kv_sorted[mid]];
        int c = cmp_bytes(kv->key.ptr, (size_t)kv->key.len, key, n);
        if (c == 0) return kv;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

uint64_t dais_gguf_n_tensors(const dais_gguf *g)
{
    return g->n_tensors;
}

const dais_gguf_tensor *dais_gguf_tensor_at(const dais_gguf *g, uint64_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const dais_gguf_tensor *dais_gguf_find_tensor(const dais_gguf *g, const char *name)
{
    size_t lo = 0, hi = (size_t)g->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const dais_gguf_tensor *t = &g->tensors[g->t_sorted[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- value conversion ---------------------------------------------------------------------- */

/* A numeric value in a form every conversion can start from. */
typedef struct num {
    enum { NUM_UNSIGNED, NUM_SIGNED, NUM_FLOAT } kind;
    uint64_t u;
    int64_t i;
    double f;
} num;

/* Loads a scalar of type t at q; returns false for string/array/unknown types. */
static bool load_num(uint32_t t, const uint8_t *q, num *out)
{
    dais_gguf_kv tmp;
    memset(&tmp, 0, sizeof(tmp));
    switch (t) {
    case DAIS_GGUF_U8:
    case DAIS_GGUF_U16:
    case DAIS_GGUF_U32:
    case DAIS_GGUF_U64:
        decode_scalar(t, q, &tmp);
        out->kind = NUM_UNSIGNED;
        out->u = tmp.v.u;
        return true;
    case DAIS_GGUF_BOOL:
        out->kind = NUM_UNSIGNED;
        out->u = q[0] != 0;
        return true;
    case DAIS_GGUF_I8:
    case DAIS_GGUF_I16:
    case DAIS_GGUF_I32:
    case DAIS_GGUF_I64:
        decode_scalar(t, q, &tmp);
        out->kind = NUM_SIGNED;
        out->i = tmp.v.i;
        return true;
    case DAIS_GGUF_F32:
    case DAIS_GGUF_F64:
        decode_scalar(t, q, &tmp);
        out->kind = NUM_FLOAT;
        out->f = tmp.v.f;
        return true;
    default:
        return false;
    }
}

static bool kv_num(const dais_gguf_kv *kv, num *out)
{
    switch (kv->type) {
    case DAIS_GGUF_U8:
    case DAIS_GGUF_U16:
    case DAIS_GGUF_U32:
    case DAIS_GGUF_U64:
        out->kind = NUM_UNSIGNED;
        out->u = kv->v.u;
        return true;
    case DAIS_GGUF_BOOL:
        out->kind = NUM_UNSIGNED;
        out->u = kv->v.b;
        return true;
    case DAIS_GGUF_I8:
    case DAIS_GGUF_I16:
    case DAIS_GGUF_I32:
    case DAIS_GGUF_I64:
        out->kind = NUM_SIGNED;
        out->i = kv->v.i;
        return true;
    case DAIS_GGUF_F32:
    case DAIS_GGUF_F64:
        out->kind = NUM_FLOAT;
        out->f = kv->v.f;
        return true;
    default:
        return false;
    }
}

/* Integer conversions: exact or refused. Floats never convert to integers. */
static bool num_to_i64(const num *n, int64_t *out)
{
    if (n->kind == NUM_SIGNED) {
        *out = n->i;
        return true;
    }
    if (n->kind == NUM_UNSIGNED && n->u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)n->u;
        return true;
    }
    return false;
}

static bool num_to_u64(const num *n, uint64_t *out)
{
    if (n->kind == NUM_UNSIGNED) {
        *out = n->u;
        return true;
    }
    if (n->kind == NUM_SIGNED && n->i >= 0) {
        *out = (uint64_t)n->i;
        return true;
    }
    return false;
}

static bool num_to_f32(const num *n, float *out)
{
    if (n->kind == NUM_FLOAT) {
        if (isfinite(n->f) && fabs(n->f) > (double)FLT_MAX) return false;
        *out = (float)n->f;
        return true;
    }
    /* Integers: only when the float holds the value exactly. 2^64 is exact as a float, so the
     * round trip check must exclude values that round up to it. */
    if (n->kind == NUM_SIGNED) {
        float f = (float)n->i;
        if (f >= 9223372036854775808.0f || f < -9223372036854775808.0f || (int64_t)f != n->i)
            return false;
        *out = f;
        return true;
    }
    float f = (float)n->u;
    if (f >= 18446744073709551616.0f || (uint64_t)f != n->u) return false;
    *out = f;
    return true;
}

static void num_fmt(const num *n, char *buf, size_t cap)
{
    if (n->kind == NUM_UNSIGNED)
        snprintf(buf, cap, "%" PRIu64, n->u);
    else if (n->kind == NUM_SIGNED)
        snprintf(buf, cap, "%" PRId64, n->i);
    else
        snprintf(buf, cap, "%g", n->f);
}

static int bad_value(const dais_gguf_kv *kv, const num *n, const char *want, dais_err *err)
{
    char v[48];
    num_fmt(n, v, sizeof(v));
    return dais_err_set(err, DAIS_EFORMAT, "key '%.*s': value %s (%s) does not fit in %s",
                        (int)(kv->key.len < 96 ? kv->key.len : 96), kv->key.ptr, v,
                        dais_gguf_vtype_name(kv->type), want);
}

static int bad_type(const dais_gguf_kv *kv, const char *want, dais_err *err)
{
    return dais_err_set(err, DAIS_EFORMAT, "key '%.*s' has type %s, expected %s",
                        (int)(kv->key.len < 96 ? kv->key.len : 96), kv->key.ptr,
                        dais_gguf_vtype_name(kv->type), want);
}

int dais_gguf_get_u32(const dais_gguf *g, const char *key, uint32_t *out, dais_err *err)
{
    const dais_gguf_kv *kv = dais_gguf_find(g, key);
    if (kv == NULL) return DAIS_ENOTFOUND;
    num n;
    uint64_t u;
    if (!kv_num(kv, &n) || n.kind == NUM_FLOAT) return bad_type(kv, "an integer", err);
    if (!num_to_u64(&n, &u) || u > UINT32_MAX) return bad_value(kv, &n, "u32", err);
    *out = (uint32_t)u;
    return 0;
}

int dais_gguf_get_u64(const dais_gguf *g, const char *key, uint64_t *out, dais_err *err)
{
    const dais_gguf_kv *kv = dais_gguf_find(g, key);
    if (kv == NULL) return DAIS_ENOTFOUND;
    num n;
    if (!kv_num(kv, &n) || n.kind == NUM_FLOAT) return bad_type(kv, "an integer", err);
    if (!num_to_u64(&n, out)) return bad_value(kv, &n, "u64", err);
    return 0;
}

int dais_gguf_get_i64(const dais_gguf *g, const char *key, int64_t *out, dais_err *err)
{
    const dais_gguf_kv *kv = dais_gguf_find(g, key);
    if (kv == NULL) return DAIS_ENOTFOUND;
    num n;
    if (!kv_num(kv, &n) || n.kind == NUM_FLOAT) return bad_type(kv, "an integer", err);
    if (!num_to_i64(&n, out)) return bad_value(kv, &n, "i64", err);
    return 0;
}

int dais_gguf_get_f32(const dais_gguf *g, const char *key, float *out, dais_err *err)
{
    const dais_gguf_kv *kv = dais_gguf_find(g, key);
    if (kv == NULL) return DAIS_ENOTFOUND;
    num n;
    if (!kv_num(kv, &n) || kv->type == DAIS_GGUF_BOOL) return bad_type(kv, "a number", err);
    if (!num_to_f32(&n, out)) return bad_value(kv, &n, "f32", err);
    return 0;
}

int dais_gguf_get_bool(const dais_gguf *g, const char *key, bool *out, dais_err *err)
{
    const dais_gguf_kv *kv = dais_gguf_find(g, key);
    if (kv == NULL) return DAIS_ENOTFOUND;
    num n;
    uint64_t u;
    if (!kv_num(kv, &n) || n.kind == NUM_FLOAT) return bad_type(kv, "bool", err);
    if (!num_to_u64(&n, &u) || u > 1) return bad_value(kv, &n, "bool", err);
    *out = u != 0;
    return 0;
}

int dais_gguf_get_str(const dais_gguf *g, const char *key, dais_gguf_str *out, dais_err *err)
{
    const dais_gguf_kv *kv = dais_gguf_find(g, key);
    if (kv == NULL) return DAIS_ENOTFOUND;
    if (kv->type != DAIS_GGUF_STRING) return bad_type(kv, "str", err);
    *out = kv->v.s;
    return 0;
}

static int arr_elem(const dais_gguf_kv *kv, uint64_t i, num *n)
{
    if (kv == NULL || kv->type != DAIS_GGUF_ARRAY || i >= kv->arr_n) return DAIS_EINVAL;
    size_t es = scalar_size(kv->arr_type);
    if (es == 0 || !load_num(kv->arr_type, kv->arr_data + (size_t)i * es, n)) return DAIS_EFORMAT;
    return 0;
}

int dais_gguf_arr_i64(const dais_gguf_kv *kv, uint64_t i, int64_t *out)
{
    num n;
    int rc = arr_elem(kv, i, &n);
    if (rc < 0) return rc;
    return num_to_i64(&n, out) ? 0 : DAIS_EFORMAT;
}

int dais_gguf_arr_f32(const dais_gguf_kv *kv, uint64_t i, float *out)
{
    num n;
    int rc = arr_elem(kv, i, &n);
    if (rc < 0) return rc;
    if (kv->arr_type == DAIS_GGUF_BOOL) return DAIS_EFORMAT;
    return num_to_f32(&n, out) ? 0 : DAIS_EFORMAT;
}

int dais_gguf_arr_str(const dais_gguf *g, const dais_gguf_kv *kv, uint64_t i, dais_gguf_str *out)
{
    if (g == NULL || kv == NULL || kv < g->kvs || kv >= g->kvs + g->n_kv) return DAIS_EINVAL;
    const uint64_t *index = g->str_index[kv - g->kvs];
    if (kv->type != DAIS_GGUF_ARRAY || kv->arr_type != DAIS_GGUF_STRING || index == NULL ||
        i >= kv->arr_n)
        return DAIS_EINVAL;
    const uint8_t *q = g->buf + index[i];
    out->len = ld64(q);
    out->ptr = (const char *)q + 8;
    return 0;
}
