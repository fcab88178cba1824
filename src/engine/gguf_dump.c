/*
 * Human-readable description of a parsed GGUF file (see dais_gguf_dump in gguf.h): header,
 * metadata and tensor table, as printed by `dais model info`. Strings from the file are
 * printed escaped (valid UTF-8 as is, control and invalid bytes as \xNN), so a hostile file
 * cannot put control sequences on the user's terminal.
 */
#include "engine/dtype.h"
#include "engine/gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define ELEM_STR_MAX 64 /* array elements (tokens, merges) longer than this are shortened */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not valid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Prints a quoted, escaped string; at most `max` bytes of it (all when max is 0). */
static void put_str(FILE *out, const char *p, uint64_t len, uint64_t max)
{
    const unsigned char *s = (const unsigned char *)p;
    uint64_t n = (max != 0 && len > max) ? max : len;
    fputc('"', out);
    for (uint64_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t u = utf8_len(s + i, (size_t)(n - i));
        if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", c);
        } else if (c == '\n') {
            fputs("\\n", out);
        } else if (c == '\t') {
            fputs("\\t", out);
        } else if (c == '\r') {
            fputs("\\r", out);
        } else if (c < 0x20 || c == 0x7f || u == 0) {
            fprintf(out, "\\x%02x", c);
        } else {
            fwrite(s + i, 1, u, out);
            i += u;
            continue;
        }
        i++;
    }
    fputc('"', out);
    if (n < len) fprintf(out, "...(%" PRIu64 " bytes)", len);
}

static void put_scalar(FILE *out, const dais_gguf_kv *kv)
{
    switch (kv->type) {
    case DAIS_GGUF_U8:
    case DAIS_GGUF_U16:
    case DAIS_GGUF_U32:
    case DAIS_GGUF_U64:
        fprintf(out, "%" PRIu64, kv->v.u);
        break;
    case DAIS_GGUF_I8:
    case DAIS_GGUF_I16:
    case DAIS_GGUF_I32:
    case DAIS_GGUF_I64:
        fprintf(out, "%" PRId64, kv->v.i);
        break;
    case DAIS_GGUF_F32:
        fprintf(out, "%.9g", kv->v.f);
        break;
    case DAIS_GGUF_F64:
        fprintf(out, "%.17g", kv->v.f);
        break;
    case DAIS_GGUF_BOOL:
        fputs(kv->v.b ? "true" : "false", out);
        break;
    case DAIS_GGUF_STRING:
        put_str(out, kv->v.s.ptr, kv->v.s.len, 0);
        break;
    default:
        fputs("?", out);
        break;
    }
}

static size_t elem_size(uint32_t t)
{
    switch (t) {
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
        return 1;
    }
}

/* Prints one numeric array element, stored little-endian at q, as the type it is. */
static void put_elem(FILE *out, uint32_t t, const uint8_t *q)
{
    dais_gguf_kv e;
    memset(&e, 0, sizeof(e));
    e.type = t;
    size_t n = elem_size(t);
    uint64_t raw = 0;
    for (size_t k = n; k-- > 0;)
        raw = raw << 8 | q[k];
    switch (t) {
    case DAIS_GGUF_I8:
        e.v.i = (int64_t)(int8_t)raw; /* sign-extend: I8 is signed */
        break;
    case DAIS_GGUF_I16:
        e.v.i = (int16_t)raw;
        break;
    case DAIS_GGUF_I32:
        e.v.i = (int32_t)raw;
        break;
    case DAIS_GGUF_I64:
        e.v.i = (int64_t)raw;
        break;
    case DAIS_GGUF_BOOL:
        e.v.b = raw != 0;
        break;
    case DAIS_GGUF_F32: {
        uint32_t b = (uint32_t)raw;
        float f;
        memcpy(&f, &b, sizeof(f));
        e.v.f = f;
        break;
    }
    case DAIS_GGUF_F64:
        memcpy(&e.v.f, &raw, sizeof(e.v.f));
        break;
    default:
        e.v.u = raw;
        break;
    }
    put_scalar(out, &e);
}

static void put_array(FILE *out, const dais_gguf *g, const dais_gguf_kv *kv, int max_items)
{
    uint64_t show = kv->arr_n;
    if (max_items >= 0 && show > (uint64_t)max_items) show = (uint64_t)max_items;
    fputc('[', out);
    for (uint64_t i = 0; i < show; i++) {
        if (i > 0) fputs(", ", out);
        if (kv->arr_type == DAIS_GGUF_STRING) {
            dais_gguf_str s;
            if (dais_gguf_arr_str(g, kv, i, &s) == 0) put_str(out, s.ptr, s.len, ELEM_STR_MAX);
            continue;
        }
        put_elem(out, kv->arr_type, kv->arr_data + i * elem_size(kv->arr_type));
    }
    if (show < kv->arr_n)
        fprintf(out, "%s... (%" PRIu64 " total)", show > 0 ? ", " : "", kv->arr_n);
    fputc(']', out);
}

int dais_gguf_dump(const dais_gguf *g, FILE *out, int max_array_items)
{
    fprintf(out,
            "GGUF version %" PRIu32 ", %zu bytes, alignment %" PRIu32
            ", tensor data at offset %zu\n",
            dais_gguf_version(g), dais_gguf_file_size(g), dais_gguf_alignment(g),
            dais_gguf_data_offset(g));

    uint64_t n_kv = dais_gguf_n_kv(g);
    fprintf(out, "\nmetadata: %" PRIu64 " keys\n", n_kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        const dais_gguf_kv *kv = dais_gguf_kv_at(g, i);
        fputs("  ", out);
        put_str(out, kv->key.ptr, kv->key.len, 0);
        if (kv->type == DAIS_GGUF_ARRAY) {
            fprintf(out, " arr[%s,%" PRIu64 "] = ", dais_gguf_vtype_name(kv->arr_type), kv->arr_n);
            put_array(out, g, kv, max_array_items);
        } else {
            fprintf(out, " %s = ", dais_gguf_vtype_name(kv->type));
            put_scalar(out, kv);
        }
        fputc('\n', out);
    }

    uint64_t n_t = dais_gguf_n_tensors(g);
    fprintf(out, "\ntensors: %" PRIu64 "\n", n_t);
    if (n_t > 0)
        fprintf(out, "  %5s  %-40s %-8s %-28s %14s %14s\n", "#", "name", "type", "shape", "offset",
                "bytes");
    uint64_t total_bytes = 0, total_elems = 0;
    uint64_t per_type[DAIS_DTYPE_MAX] = {0};
    for (uint64_t i = 0; i < n_t; i++) {
        const dais_gguf_tensor *t = dais_gguf_tensor_at(g, i);
        char shape[96];
        size_t k = 0;
        uint64_t elems = 1;
        shape[k++] = '[';
        for (uint32_t d = 0; d < t->n_dims; d++) {
            int w = snprintf(shape + k, sizeof(shape) - k, "%s%" PRIu64, d ? ", " : "", t->ne[d]);
            if (w > 0 && (size_t)w < sizeof(shape) - k) k += (size_t)w;
            elems *= t->ne[d]; /* the parser bounded the product by INT64_MAX */
        }
        if (k < sizeof(shape) - 1) shape[k++] = ']';
        shape[k] = '\0';
        fprintf(out, "  %5" PRIu64 "  %-40s %-8s %-28s %14" PRIu64 " %14zu\n", i, t->name,
                dais_dtype_name(t->type), shape, t->offset, t->nbytes);
        total_bytes += t->nbytes;
        total_elems += elems;
        if (t->type < DAIS_DTYPE_MAX) per_type[t->type]++;
    }
    if (n_t > 0) {
        fprintf(out,
                "  total: %" PRIu64 " elements, %" PRIu64 " bytes (%.2f MiB); types:", total_elems,
                total_bytes, (double)total_bytes / (1024.0 * 1024.0));
        for (uint32_t ty = 0; ty < DAIS_DTYPE_MAX; ty++)
            if (per_type[ty] > 0) fprintf(out, " %s x%" PRIu64, dais_dtype_name(ty), per_type[ty]);
        fputc('\n', out);
    }
    if (fflush(out) != 0 || ferror(out)) return DAIS_EIO;
    return 0;
}
