/*
 * HTTP/1.x request parsing for the master's API server (master/httpd.c): the request head
 * (request line and header fields) and the chunked transfer coding of a request body.
 *
 * Both parsers work on bytes that have arrived so far and say "need more", "done" or "error,
 * answer with this status". They are strict where leniency invites request smuggling
 * (Content-Length together with Transfer-Encoding, conflicting or malformed lengths, obsolete
 * line folding, whitespace before a colon are all 400) and lenient where clients differ
 * harmlessly (a bare LF ends a line). Every count and length is bounded and overflow-checked.
 * Pure functions over caller buffers: any thread; tests/fuzz/fuzz_http_parse.c drives them.
 */
#ifndef DAIS_MASTER_HTTP_PARSE_H
#define DAIS_MASTER_HTTP_PARSE_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DAIS_HTTP_NEED_MORE   1
#define DAIS_HTTP_MAX_HEADERS 64
#define DAIS_HTTP_MAX_METHOD  15

/* A header field: both parts point into the parsed buffer (borrowed); the value has its
 * surrounding whitespace removed. */
typedef struct dais_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} dais_http_header;

typedef struct dais_http_head {
    char method[DAIS_HTTP_MAX_METHOD + 1];
    const char *target; /* request-target as sent (borrowed) */
    size_t target_len;
    int minor; /* HTTP/1.<minor>: 0 or 1 */
    size_t n_headers;
    dais_http_header headers[DAIS_HTTP_MAX_HEADERS];
    /* derived from the fields */
    bool keep_alive; /* 1.1 unless "Connection: close"; 1.0 only with keep-alive */
    bool chunked;    /* Transfer-Encoding: chunked */
    bool has_length; /* Content-Length present */
    uint64_t content_length;
    bool expect_continue; /* Expect: 100-continue */
    size_t head_len;      /* bytes of the head, final empty line included */
} dais_http_head;

/* Parses the head at the start of buf[0..len). Heads longer than max_head bytes are refused.
 * Returns DAIS_HTTP_NEED_MORE, 0 (head complete, *out filled, pointing into buf), or a
 * negative code with *status the HTTP status to answer (400 malformed, 414 request line too
 * long, 431 header section too large or too many fields, 501 unsupported transfer coding,
 * 505 version) and err the reason. */
int dais_http_parse_head(const char *buf, size_t len, size_t max_head, dais_http_head *out,
                         int *status, dais_err *err);

/* Case-insensitive field lookup: the first field named `name`, or NULL. */
const dais_http_header *dais_http_find_header(const dais_http_head *h, const char *name);

/* ---- chunked request bodies ------------------------------------------------------------- */

typedef struct dais_http_chunked {
    int state;
    uint64_t remaining; /* bytes left in the current chunk */
    uint64_t total;     /* body bytes decoded so far */
    uint64_t limit;     /* largest body accepted */
    size_t line_len;    /* bytes of the current size/trailer line seen (bounded) */
    int size_digits;
} dais_http_chunked;

/* Starts a decoder for a body of at most `limit` bytes. */
void dais_http_chunked_init(dais_http_chunked *c, uint64_t limit);

/* Decodes in[0..len): body bytes are appended to out (which has room for len more bytes;
 * *out_len is advanced), *consumed says how many input bytes were used. Returns
 * DAIS_HTTP_NEED_MORE (all input used, body not finished), 0 (body and trailers finished;
 * bytes after *consumed belong to the next request), DAIS_ETOOBIG (body over the limit: 413)
 * or DAIS_EFORMAT (malformed: 400; err says why). */
int dais_http_chunked_decode(dais_http_chunked *c, const char *in, size_t len, size_t *consumed,
                             char *out, size_t *out_len, dais_err *err);

/* The reason phrase for a status code ("OK", "Not Found" …; "Unknown" otherwise). */
const char *dais_http_reason(int status);

#endif
