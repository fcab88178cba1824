/*
 * Fuzz target for the master's HTTP/1.x request parsers (src/master/http_parse.c). The first
 * byte picks the limit sizes; the rest is parsed as a request head, then whatever follows the
 * head as a chunked body, fed in two pieces to exercise resumption. Invariants: borrowed
 * pointers stay inside the input, decoded bodies never exceed the limit.
 */
#include "master/http_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t max_head = 64 + (size_t)(data[0] & 0x3f) * 64;
    uint64_t limit = (uint64_t)(data[0] >> 6) * 100 + 1;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    dais_http_head h;
    int status = 0;
    dais_err err;
    int rc = dais_http_parse_head(buf, len, max_head, &h, &status, &err);
    size_t body_at = 0;
    if (rc == 0) {
        if (h.head_len > len || h.target < buf || h.target + h.target_len > buf + len) abort();
        for (size_t i = 0; i < h.n_headers; i++) {
            const dais_http_header *x = &h.headers[i];
            if (x->name < buf || x->value < buf || x->value + x->value_len > buf + len) abort();
        }
        body_at = h.head_len;
    } else if (rc < 0) {
        if (status < 400 || status > 505) abort();
    }

    /* The rest as a chunked body, in two pieces. */
    const char *b = buf + body_at;
    size_t blen = len - body_at;
    char *out = malloc(blen + 1);
    if (out == NULL) return 0;
    dais_http_chunked c;
    dais_http_chunked_init(&c, limit);
    size_t out_len = 0, used = 0, half = blen / 2;
    rc = dais_http_chunked_decode(&c, b, half, &used, out, &out_len, &err);
    if (rc == DAIS_HTTP_NEED_MORE) {
        if (used != half) abort();
        rc = dais_http_chunked_decode(&c, b + half, blen - half, &used, out, &out_len, &err);
    }
    if (out_len > limit || out_len > blen) abort();
    free(out);
    return 0;
}
