/*
 * GGUF v3 writer (see gguf.h). Metadata values are encoded at set time into the exact bytes
 * that follow the type field in the file, so writing is a straight copy. Tensor data is
 * copied at add time (or borrowed with add_tensor_nocopy) and written with buffered stdio,
 * one tensor at a time, each padded to the alignment: a large file never needs a second
 * in-memory image. The file goes to a temporary name and is renamed into place.
 */
#include "engine/dtype.h"
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WRITE_BUF_BYTES (1u << 20)

typedef struct wkv {
    char *key;
    uint32_t type; /* enum dais_gguf_vtype */
    uint8_t
        *payload; /* encoded value: scalar bytes, or length + bytes, or array header + elements */
    size_t payload_len;
} wkv;

typedef struct wtensor {
    char name[DAIS_GGUF_MAX_NAME + 1];
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[DAIS_GGUF_MAX_DIMS];
    size_t nbytes;
    const void *data;
    void *owned; /* the copy, when the writer made one */
} wtensor;

struct dais_gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_t, cap_t;
    dais_err err; /* first failure of a set/add call; reported by write */
};

/* Records the first failure; returns code. */
static int wfail(dais_gguf_writer *w, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int wfail(dais_gguf_writer *w, int code, const char *fmt, ...)
{
    if (w->err.code == 0) {
        va_list ap;
        va_start(ap, fmt);
        char msg[sizeof(w->err.msg)];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        dais_err_set(&w->err, code, "%s", msg);
    }
    return code;
}

static void st16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void st32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void st64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

dais_gguf_writer *dais_gguf_writer_new(void)
{
    return calloc(1, sizeof(dais_gguf_writer));
}

void dais_gguf_writer_free(dais_gguf_writer *w)
{
    if (w == NULL) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].payload);
    }
    free(w->kvs);
    for (size_t i = 0; i < w->n_t; i++)
        free(w->tensors[i].owned);
    free(w->tensors);
    free(w);
}

/* Stores key = (type, payload), taking ownership of payload (freed on failure). */
static int put_kv(dais_gguf_writer *w, const char *key, uint32_t type, uint8_t *payload,
                  size_t payload_len)
{
    if (w == NULL || key == NULL) {
        free(payload);
        return DAIS_EINVAL;
    }
    size_t klen = strlen(key);
    if (klen == 0 || klen > DAIS_GGUF_MAX_KEY) {
        free(payload);
        return wfail(w, DAIS_EINVAL, "metadata key of %zu bytes (must be 1..%d)", klen,
                     DAIS_GGUF_MAX_KEY);
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].payload);
            w->kvs[i].type = type;
            w->kvs[i].payload = payload;
            w->kvs[i].payload_len = payload_len;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *n = realloc(w->kvs, cap * sizeof(*n));
        if (n == NULL) {
            free(payload);
            return wfail(w, DAIS_ENOMEM, "out of memory adding key '%.64s'", key);
        }
        w->kvs = n;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (k == NULL) {
        free(payload);
        return wfail(w, DAIS_ENOMEM, "out of memory adding key '%.64s'", key);
    }
    w->kvs[w->n_kv++] =
        (wkv){.key = k, .type = type, .payload = payload, .payload_len = payload_len};
    return 0;
}

static int put_scalar(dais_gguf_writer *w, const char *key, uint32_t type, uint64_t bits,
                      size_t size)
{
    if (w == NULL) return DAIS_EINVAL;
    uint8_t *p = malloc(size);
    if (p == NULL) return wfail(w, DAIS_ENOMEM, "out of memory");
    if (size == 1)
        p[0] = (uint8_t)bits;
    else if (size == 2)
        st16(p, (uint16_t)bits);
    else if (size == 4)
        st32(p, (uint32_t)bits);
    else
        st64(p, bits);
    return put_kv(w, key, type, p, size);
}

int dais_gguf_writer_set_u8(dais_gguf_writer *w, const char *key, uint8_t v)
{
    return put_scalar(w, key, DAIS_GGUF_U8, v, 1);
}

int dais_gguf_writer_set_i8(dais_gguf_writer *w, const char *key, int8_t v)
{
    return put_scalar(w, key, DAIS_GGUF_I8, (uint8_t)v, 1);
}

int dais_gguf_writer_set_u16(dais_gguf_writer *w, const char *key, uint16_t v)
{
    return put_scalar(w, key, DAIS_GGUF_U16, v, 2);
}

int dais_gguf_writer_set_i16(dais_gguf_writer *w, const char *key, int16_t v)
{
    return put_scalar(w, key, DAIS_GGUF_I16, (uint16_t)v, 2);
}

int dais_gguf_writer_set_u32(dais_gguf_writer *w, const char *key, uint32_t v)
{
    return put_scalar(w, key, DAIS_GGUF_U32, v, 4);
}

int dais_gguf_writer_set_i32(dais_gguf_writer *w, const char *key, int32_t v)
{
    return put_scalar(w, key, DAIS_GGUF_I32, (uint32_t)v, 4);
}

int dais_gguf_writer_set_u64(dais_gguf_writer *w, const char *key, uint64_t v)
{
    return put_scalar(w, key, DAIS_GGUF_U64, v, 8);
}

int dais_gguf_writer_set_i64(dais_gguf_writer *w, const char *key, int64_t v)
{
    return put_scalar(w, key, DAIS_GGUF_I64, (uint64_t)v, 8);
}

int dais_gguf_writer_set_f32(dais_gguf_writer *w, const char *key, float v)
{
    uint32_t b;
    memcpy(&b, &v, sizeof(b));
    return put_scalar(w, key, DAIS_GGUF_F32, b, 4);
}

int dais_gguf_writer_set_f64(dais_gguf_writer *w, const char *key, double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    return put_scalar(w, key, DAIS_GGUF_F64, b, 8);
}

int dais_gguf_writer_set_bool(dais_gguf_writer *w, const char *key, bool v)
{
    return put_scalar(w, key, DAIS_GGUF_BOOL, v ? 1 : 0, 1);
}

int dais_gguf_writer_set_str(dais_gguf_writer *w, const char *key, const char *v)
{
    if (w == NULL) return DAIS_EINVAL;
    if (v == NULL) return wfail(w, DAIS_EINVAL, "key '%.64s': NULL string", key ? key : "(null)");
    size_t n = strlen(v);
    if (n > DAIS_GGUF_MAX_STRING)
        return wfail(w, DAIS_ETOOBIG, "key '%.64s': string of %zu bytes (limit %u)",
                     key ? key : "(null)", n, DAIS_GGUF_MAX_STRING);
    uint8_t *p = malloc(8 + n);
    if (p == NULL) return wfail(w, DAIS_ENOMEM, "out of memory");
    st64(p, n);
    /* A GGUF string is its u64 length and its bytes, without a terminator. */
    memcpy(p + 8, v, n); // NOLINT(bugprone-not-null-terminated-result): length-prefixed
    return put_kv(w, key, DAIS_GGUF_STRING, p, 8 + n);
}

static size_t scalar_bytes(uint32_t t)
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

int dais_gguf_writer_set_arr(dais_gguf_writer *w, const char *key, uint32_t elem_type,
                             const void *data, uint64_t n)
{
    if (w == NULL) return DAIS_EINVAL;
    const char *k = key ? key : "(null)";
    size_t es = scalar_bytes(elem_type);
    if (es == 0)
        return wfail(w, DAIS_EINVAL,
                     "key '%.64s': array element type %" PRIu32 " is not a numeric or bool type", k,
                     elem_type);
    if (n > 0 && data == NULL) return wfail(w, DAIS_EINVAL, "key '%.64s': NULL array data", k);
    if (n > (SIZE_MAX - 12) / es)
        return wfail(w, DAIS_ETOOBIG, "key '%.64s': array of %" PRIu64 " elements is too large", k,
                     n);
    size_t bytes = (size_t)n * es;
    if (elem_type == DAIS_GGUF_BOOL)
        for (size_t i = 0; i < bytes; i++)
            if (((const uint8_t *)data)[i] > 1)
                return wfail(w, DAIS_EINVAL, "key '%.64s': bool element %zu is not 0 or 1", k, i);
    uint8_t *p = malloc(12 + bytes);
    if (p == NULL)
        return wfail(w, DAIS_ENOMEM, "key '%.64s': out of memory for %zu bytes", k, bytes);
    st32(p, elem_type);
    st64(p + 4, n);
    if (bytes > 0) memcpy(p + 12, data, bytes);
    return put_kv(w, key, DAIS_GGUF_ARRAY, p, 12 + bytes);
}

int dais_gguf_writer_set_arr_str(dais_gguf_writer *w, const char *key, const char *const *strs,
                                 const uint64_t *lens, uint64_t n)
{
    if (w == NULL) return DAIS_EINVAL;
    const char *k = key ? key : "(null)";
    if (n > 0 && strs == NULL) return wfail(w, DAIS_EINVAL, "key '%.64s': NULL string array", k);
    if (n > (SIZE_MAX - 12) / 8)
        return wfail(w, DAIS_ETOOBIG, "key '%.64s': array of %" PRIu64 " strings is too large", k,
                     n);
    size_t total = 12 + (size_t)n * 8;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = lens != NULL ? lens[i] : (strs[i] != NULL ? strlen(strs[i]) : 0);
        if (strs[i] == NULL && len > 0)
            return wfail(w, DAIS_EINVAL, "key '%.64s': string %" PRIu64 " is NULL", k, i);
        if (len > DAIS_GGUF_MAX_STRING || len > SIZE_MAX - total)
            return wfail(w, DAIS_ETOOBIG,
                         "key '%.64s': string %" PRIu64 " of %" PRIu64
                         " bytes is too large (limit %u)",
                         k, i, len, DAIS_GGUF_MAX_STRING);
        total += (size_t)len;
    }
    uint8_t *p = malloc(total);
    if (p == NULL)
        return wfail(w, DAIS_ENOMEM, "key '%.64s': out of memory for %zu bytes", k, total);
    st32(p, DAIS_GGUF_STRING);
    st64(p + 4, n);
    size_t off = 12;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = lens != NULL ? (size_t)lens[i] : (strs[i] != NULL ? strlen(strs[i]) : 0);
        st64(p + off, len);
        if (len > 0) memcpy(p + off + 8, strs[i], len);
        off += 8 + len;
    }
    return put_kv(w, key, DAIS_GGUF_ARRAY, p, total);
}

int dais_gguf_writer_copy_kv(dais_gguf_writer *w, const dais_gguf *g, const dais_gguf_kv *kv)
{
    if (w == NULL) return DAIS_EINVAL;
    if (g == NULL || kv == NULL) return wfail(w, DAIS_EINVAL, "NULL file or metadata entry");
    if (kv->key.len == 0 || kv->key.len > DAIS_GGUF_MAX_KEY)
        return wfail(w, DAIS_EINVAL, "metadata key of %" PRIu64 " bytes", kv->key.len);
    char *key = malloc((size_t)kv->key.len + 1); /* parsed keys hold no NUL byte */
    if (key == NULL) return wfail(w, DAIS_ENOMEM, "out of memory");
    memcpy(key, kv->key.ptr, (size_t)kv->key.len);
    key[kv->key.len] = '\0';
    int rc;
    size_t es = scalar_bytes(kv->type);
    if (es > 0) {
        uint64_t bits = kv->v.u; /* i8..i64 sign-extended: the low bytes are the value */
        if (kv->type == DAIS_GGUF_F32) {
            float f = (float)kv->v.f; /* widened from f32 exactly, so this is exact */
            uint32_t b;
            memcpy(&b, &f, sizeof(b));
            bits = b;
        } else if (kv->type == DAIS_GGUF_F64) {
            memcpy(&bits, &kv->v.f, sizeof(bits));
        } else if (kv->type == DAIS_GGUF_BOOL) {
            bits = kv->v.b ? 1 : 0;
        } else if (kv->type == DAIS_GGUF_I8 || kv->type == DAIS_GGUF_I16 ||
                   kv->type == DAIS_GGUF_I32 || kv->type == DAIS_GGUF_I64) {
            bits = (uint64_t)kv->v.i;
        }
        rc = put_scalar(w, key, kv->type, bits, es);
    } else if (kv->type == DAIS_GGUF_STRING) {
        uint64_t n = kv->v.s.len;
        uint8_t *p = malloc(8 + (size_t)n);
        if (p == NULL) {
            rc = wfail(w, DAIS_ENOMEM, "out of memory");
        } else {
            st64(p, n);
            if (n > 0) memcpy(p + 8, kv->v.s.ptr, (size_t)n);
            rc = put_kv(w, key, DAIS_GGUF_STRING, p, 8 + (size_t)n);
        }
    } else if (kv->type == DAIS_GGUF_ARRAY && kv->arr_type == DAIS_GGUF_STRING) {
        const char **strs = kv->arr_n > 0 ? calloc((size_t)kv->arr_n, sizeof(*strs)) : NULL;
        uint64_t *lens = kv->arr_n > 0 ? calloc((size_t)kv->arr_n, sizeof(*lens)) : NULL;
        if (kv->arr_n > 0 && (strs == NULL || lens == NULL)) {
            rc = wfail(w, DAIS_ENOMEM, "key '%.64s': out of memory", key);
        } else {
            rc = 0;
            for (uint64_t i = 0; i < kv->arr_n && rc == 0; i++) {
                dais_gguf_str s;
                rc = dais_gguf_arr_str(g, kv, i, &s);
                if (rc != 0) {
                    rc = wfail(w, rc, "key '%.64s': string element %" PRIu64 " is unreadable", key,
                               i);
                } else {
                    strs[i] = s.ptr;
                    lens[i] = s.len;
                }
            }
            if (rc == 0) rc = dais_gguf_writer_set_arr_str(w, key, strs, lens, kv->arr_n);
        }
        free(strs);
        free(lens);
    } else if (kv->type == DAIS_GGUF_ARRAY) {
        /* Numeric arrays lie in the file as packed little-endian elements. */
        rc = dais_gguf_writer_set_arr(w, key, kv->arr_type, kv->arr_data, kv->arr_n);
    } else {
        rc = wfail(w, DAIS_EINVAL, "key '%.64s': value type %" PRIu32 " cannot be copied", key,
                   kv->type);
    }
    free(key);
    return rc;
}

static int add_tensor(dais_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                      const uint64_t *ne, const void *data, bool copy)
{
    if (w == NULL) return DAIS_EINVAL;
    if (name == NULL) return wfail(w, DAIS_EINVAL, "tensor with NULL name");
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > DAIS_GGUF_MAX_NAME)
        return wfail(w, DAIS_EINVAL, "tensor '%.64s': name of %zu bytes (must be 1..%d)", name,
                     nlen, DAIS_GGUF_MAX_NAME);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return wfail(w, DAIS_EINVAL, "tensor '%s': added twice", name);
    const dais_dtype_info *ti = dais_dtype_get(type);
    if (ti == NULL) return wfail(w, DAIS_EINVAL, "tensor '%s': unknown type %" PRIu32, name, type);
    if (n_dims < 1 || n_dims > DAIS_GGUF_MAX_DIMS || ne == NULL)
        return wfail(w, DAIS_EINVAL, "tensor '%s': n_dims %" PRIu32 " is not in 1..%d", name,
                     n_dims, DAIS_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < n_dims; d++)
        if (ne[d] == 0)
            return wfail(w, DAIS_EINVAL, "tensor '%s': dimension %" PRIu32 " is 0", name, d);
    if (ne[0] % ti->block != 0)
        return wfail(w, DAIS_EINVAL,
                     "tensor '%s': row length %" PRIu64
                     " is not a multiple of the %s block size %" PRIu32,
                     name, ne[0], ti->name, ti->block);
    bool ovf = false;
    size_t bytes = dais_dtype_row_bytes(type, ne[0], &ovf);
    uint64_t nelem = ne[0];
    for (uint32_t d = 1; d < n_dims && !ovf; d++) {
        if (ne[d] > SIZE_MAX / bytes || ne[d] > (uint64_t)INT64_MAX / nelem)
            ovf = true;
        else {
            bytes *= ne[d];
            nelem *= ne[d];
        }
    }
    if (ovf) return wfail(w, DAIS_ETOOBIG, "tensor '%s': size overflows", name);
    if (data == NULL) return wfail(w, DAIS_EINVAL, "tensor '%s': NULL data", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->tensors, cap * sizeof(*nt));
        if (nt == NULL) return wfail(w, DAIS_ENOMEM, "tensor '%s': out of memory", name);
        w->tensors = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->tensors[w->n_t];
    memset(t, 0, sizeof(*t));
    memcpy(t->name, name, nlen + 1);
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < DAIS_GGUF_MAX_DIMS; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = bytes;
    if (copy) {
        t->owned = malloc(bytes);
        if (t->owned == NULL)
            return wfail(w, DAIS_ENOMEM, "tensor '%s': out of memory for %zu bytes", name, bytes);
        memcpy(t->owned, data, bytes);
        t->data = t->owned;
    } else {
        t->data = data;
    }
    w->n_t++;
    return 0;
}

int dais_gguf_writer_add_tensor(dais_gguf_writer *w, const char *name, uint32_t type,
                                uint32_t n_dims, const uint64_t *ne, const void *data)
{
    return add_tensor(w, name, type, n_dims, ne, data, true);
}

int dais_gguf_writer_add_tensor_nocopy(dais_gguf_writer *w, const char *name, uint32_t type,
                                       uint32_t n_dims, const uint64_t *ne, const void *data)
{
    return add_tensor(w, name, type, n_dims, ne, data, false);
}

/* ---- output -------------------------------------------------------------------------------- */

/* The alignment the file will use: a u32 general.alignment if set (validated), else 32. */
static int writer_alignment(const dais_gguf_writer *w, uint32_t *out, dais_err *err)
{
    *out = DAIS_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0) continue;
        if (w->kvs[i].type != DAIS_GGUF_U32)
            return dais_err_set(err, DAIS_EINVAL, "general.alignment must be a u32");
        uint32_t a = (uint32_t)w->kvs[i].payload[0] | (uint32_t)w->kvs[i].payload[1] << 8 |
                     (uint32_t)w->kvs[i].payload[2] << 16 | (uint32_t)w->kvs[i].payload[3] << 24;
        if (a == 0 || (a & (a - 1)) != 0)
            return dais_err_set(err, DAIS_EINVAL,
                                "general.alignment %" PRIu32 " is not a nonzero power of two", a);
        *out = a;
    }
    return 0;
}

static size_t pad_to(uint64_t pos, uint32_t align)
{
    return (size_t)((align - pos % align) % align);
}

static int put(FILE *f, const void *p, size_t n, uint64_t *pos)
{
    if (n > 0 && fwrite(p, 1, n, f) != n) return DAIS_EIO;
    *pos += n;
    return 0;
}

static int put_zeros(FILE *f, size_t n, uint64_t *pos)
{
    static const uint8_t zeros[64];
    while (n > 0) {
        size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
        if (put(f, zeros, k, pos) < 0) return DAIS_EIO;
        n -= k;
    }
    return 0;
}

int dais_gguf_writer_write_file(dais_gguf_writer *w, FILE *f, dais_err *err)
{
    if (w == NULL || f == NULL) return dais_err_set(err, DAIS_EINVAL, "NULL writer or stream");
    if (w->err.code != 0) return dais_err_set(err, w->err.code, "%s", w->err.msg);
    uint32_t align;
    int rc = writer_alignment(w, &align, err);
    if (rc < 0) return rc;

    uint64_t pos = 0;
    uint8_t hdr[24];
    hdr[0] = 'G'; /* the magic is four bytes, no terminator */
    hdr[1] = 'G';
    hdr[2] = 'U';
    hdr[3] = 'F';
    st32(hdr + 4, 3);
    st64(hdr + 8, w->n_t);
    st64(hdr + 16, w->n_kv);
    rc = put(f, hdr, sizeof(hdr), &pos);
    for (size_t i = 0; i < w->n_kv && rc == 0; i++) {
        const wkv *kv = &w->kvs[i];
        uint8_t b[8];
        size_t klen = strlen(kv->key);
        st64(b, klen);
        rc = put(f, b, 8, &pos);
        if (rc == 0) rc = put(f, kv->key, klen, &pos);
        st32(b, kv->type);
        if (rc == 0) rc = put(f, b, 4, &pos);
        if (rc == 0) rc = put(f, kv->payload, kv->payload_len, &pos);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t && rc == 0; i++) {
        const wtensor *t = &w->tensors[i];
        uint8_t b[8];
        size_t nlen = strlen(t->name);
        st64(b, nlen);
        rc = put(f, b, 8, &pos);
        if (rc == 0) rc = put(f, t->name, nlen, &pos);
        st32(b, t->n_dims);
        if (rc == 0) rc = put(f, b, 4, &pos);
        for (uint32_t d = 0; d < t->n_dims && rc == 0; d++) {
            st64(b, t->ne[d]);
            rc = put(f, b, 8, &pos);
        }
        st32(b, t->type);
        if (rc == 0) rc = put(f, b, 4, &pos);
        st64(b, off);
        if (rc == 0) rc = put(f, b, 8, &pos);
        off += t->nbytes;
        off += pad_to(off, align);
    }
    if (rc == 0 && w->n_t > 0) rc = put_zeros(f, pad_to(pos, align), &pos);
    for (size_t i = 0; i < w->n_t && rc == 0; i++) {
        const wtensor *t = &w->tensors[i];
        rc = put(f, t->data, t->nbytes, &pos);
        if (rc == 0) rc = put_zeros(f, pad_to(pos, align), &pos);
    }
    if (rc == 0 && fflush(f) != 0) rc = DAIS_EIO;
    if (rc < 0)
        return dais_err_set(err, DAIS_EIO, "writing GGUF failed at byte %" PRIu64 ": %s", pos,
                            strerror(errno));
    return 0;
}

int dais_gguf_writer_write(dais_gguf_writer *w, const char *path, dais_err *err)
{
    if (w == NULL || path == NULL) return dais_err_set(err, DAIS_EINVAL, "NULL writer or path");
    if (w->err.code != 0) return dais_err_set(err, w->err.code, "%s", w->err.msg);
    uint32_t align;
    int arc = writer_alignment(w, &align, err); /* before creating anything */
    if (arc < 0) return arc;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 64);
    if (tmp == NULL) return dais_err_set(err, DAIS_ENOMEM, "out of memory");
    /* Unique per process and writer; O_EXCL never clobbers another writer's file. */
    snprintf(tmp, plen + 64, "%s.%ld.%" PRIxPTR ".tmp", path, (long)getpid(), (uintptr_t)w);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        int rc = dais_err_set(err, DAIS_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    FILE *f = fdopen(fd, "wb");
    if (f == NULL) {
        int rc = dais_err_set(err, DAIS_EIO, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return rc;
    }
    setvbuf(f, NULL, _IOFBF, WRITE_BUF_BYTES);
    int rc = dais_gguf_writer_write_file(w, f, err);
    if (fclose(f) != 0 && rc == 0)
        rc = dais_err_set(err, DAIS_EIO, "%s: close failed: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = dais_err_set(err, DAIS_EIO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (rc < 0) unlink(tmp);
    free(tmp);
    return rc;
}
