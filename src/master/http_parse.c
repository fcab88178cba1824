/*
 * HTTP/1.x request head and chunked-body parsers (see http_parse.h). RFC 9110/9112 grammar,
 * restricted to what a JSON API needs.
 */
#include "master/http_parse.h"

#include <string.h>
#include <strings.h>

#define REQUEST_LINE_MAX 8192
#define CHUNK_LINE_MAX   4096
#define TRAILERS_MAX     8192

/* tchar: "!#$%&'*+-.^_`|~" / DIGIT / ALPHA */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int fail(int *status, int code, dais_err *err, const char *msg)
{
    *status = code;
    dais_err_set(err, DAIS_EFORMAT, "%s", msg);
    return DAIS_EFORMAT;
}

/* Finds the end of the line starting at p (limit e): returns the LF position or NULL; *end is
 * the position before an optional CR. */
static const char *line_end(const char *p, const char *e, const char **content_end)
{
    const char *lf = memchr(p, '\n', (size_t)(e - p));
    if (lf == NULL) return NULL;
    *content_end = (lf > p && lf[-1] == '\r') ? lf - 1 : lf;
    return lf;
}

static bool token_list_has(const char *v, size_t len, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0) return true;
    }
    return false;
}

static bool eq_ci(const char *a, size_t alen, const char *b)
{
    return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

int dais_http_parse_head(const char *buf, size_t len, size_t max_head, dais_http_head *out,
                         int *status, dais_err *err)
{
    *status = 0;
    const char *p = buf;
    const char *e = buf + (len < max_head ? len : max_head);

    /* Ignore empty lines before the request line (RFC 9112 2.2). */
    while (p < e && (*p == '\r' || *p == '\n')) {
        if (*p == '\r' && (p + 1 >= e || p[1] != '\n')) break;
        p += (*p == '\r') ? 2 : 1;
    }

    const char *cend;
    const char *lf = line_end(p, e, &cend);
    if (lf == NULL) {
        if ((size_t)(e - p) > REQUEST_LINE_MAX)
            return fail(status, 414, err, "request line too long");
        if (len >= max_head) return fail(status, 431, err, "request head too large");
        return DAIS_HTTP_NEED_MORE;
    }
    if ((size_t)(cend - p) > REQUEST_LINE_MAX)
        return fail(status, 414, err, "request line too long");

    memset(out, 0, sizeof(*out));
    /* method */
    const char *q = p;
    while (q < cend && is_tchar((unsigned char)*q))
        q++;
    if (q == p || q >= cend || *q != ' ') return fail(status, 400, err, "malformed request line");
    if ((size_t)(q - p) > DAIS_HTTP_MAX_METHOD) return fail(status, 501, err, "unknown method");
    memcpy(out->method, p, (size_t)(q - p));
    out->method[q - p] = '\0';
    /* target */
    const char *t = ++q;
    while (q < cend && (unsigned char)*q > 0x20 && (unsigned char)*q < 0x7f)
        q++;
    if (q == t || q >= cend || *q != ' ') return fail(status, 400, err, "malformed request target");
    out->target = t;
    out->target_len = (size_t)(q - t);
    /* version */
    q++;
    if (cend - q != 8 || memcmp(q, "HTTP/", 5) != 0 || q[6] != '.' || q[5] < '0' || q[5] > '9' ||
        q[7] < '0' || q[7] > '9')
        return fail(status, 400, err, "malformed HTTP version");
    if (q[5] != '1') return fail(status, 505, err, "HTTP version not supported");
    out->minor = q[7] == '0' ? 0 : 1;

    /* header fields */
    bool conn_close = false, conn_keep = false, have_te = false, have_host = false;
    p = lf + 1;
    for (;;) {
        lf = line_end(p, e, &cend);
        if (lf == NULL) {
            if (len >= max_head) return fail(status, 431, err, "request head too large");
            return DAIS_HTTP_NEED_MORE;
        }
        if (cend == p) break; /* the empty line */
        if (*p == ' ' || *p == '\t') return fail(status, 400, err, "obsolete line folding");
        const char *n = p;
        while (n < cend && is_tchar((unsigned char)*n))
            n++;
        if (n == p || n >= cend || *n != ':')
            return fail(status, 400, err, "malformed header field");
        const char *v = n + 1;
        while (v < cend && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = cend;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *c = v; c < ve; c++) {
            unsigned char ch = (unsigned char)*c;
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return fail(status, 400, err, "control character in a header value");
        }
        if (out->n_headers >= DAIS_HTTP_MAX_HEADERS)
            return fail(status, 431, err, "too many header fields");
        dais_http_header *h = &out->headers[out->n_headers++];
        h->name = p;
        h->name_len = (size_t)(n - p);
        h->value = v;
        h->value_len = (size_t)(ve - v);

        if (eq_ci(h->name, h->name_len, "content-length")) {
            if (h->value_len == 0 || h->value_len > 18)
                return fail(status, 400, err, "invalid Content-Length");
            uint64_t cl = 0;
            for (size_t i = 0; i < h->value_len; i++) {
                if (h->value[i] < '0' || h->value[i] > '9')
                    return fail(status, 400, err, "invalid Content-Length");
                cl = cl * 10 + (uint64_t)(h->value[i] - '0');
            }
            if (out->has_length && cl != out->content_length)
                return fail(status, 400, err, "conflicting Content-Length fields");
            out->has_length = true;
            out->content_length = cl;
        } else if (eq_ci(h->name, h->name_len, "transfer-encoding")) {
            if (have_te) return fail(status, 501, err, "unsupported transfer coding");
            have_te = true;
            if (!eq_ci(h->value, h->value_len, "chunked"))
                return fail(status, 501, err, "unsupported transfer coding");
            out->chunked = true;
        } else if (eq_ci(h->name, h->name_len, "connection")) {
            if (token_list_has(h->value, h->value_len, "close")) conn_close = true;
            if (token_list_has(h->value, h->value_len, "keep-alive")) conn_keep = true;
        } else if (eq_ci(h->name, h->name_len, "expect")) {
            if (eq_ci(h->value, h->value_len, "100-continue")) out->expect_continue = true;
        } else if (eq_ci(h->name, h->name_len, "host")) {
            if (have_host) return fail(status, 400, err, "more than one Host field");
            have_host = true;
        }
        p = lf + 1;
    }
    if (out->chunked && out->has_length)
        return fail(status, 400, err, "both Content-Length and Transfer-Encoding");
    if (out->minor == 1 && !have_host) return fail(status, 400, err, "missing Host field");
    out->keep_alive = out->minor == 1 ? !conn_close : (conn_keep && !conn_close);
    out->head_len = (size_t)(lf + 1 - buf);
    return 0;
}

const dais_http_header *dais_http_find_header(const dais_http_head *h, const char *name)
{
    for (size_t i = 0; i < h->n_headers; i++)
        if (eq_ci(h->headers[i].name, h->headers[i].name_len, name)) return &h->headers[i];
    return NULL;
}

/* ---- chunked ------------------------------------------------------------------------------ */

enum {
    S_SIZE = 0,
    S_EXT,
    S_SIZE_LF,
    S_DATA,
    S_DATA_CR,
    S_DATA_LF,
    S_TRAILER_START,
    S_TRAILER,
    S_FINAL_LF,
    S_DONE,
};

void dais_http_chunked_init(dais_http_chunked *c, uint64_t limit)
{
    memset(c, 0, sizeof(*c));
    c->limit = limit;
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int dais_http_chunked_decode(dais_http_chunked *c, const char *in, size_t len, size_t *consumed,
                             char *out, size_t *out_len, dais_err *err)
{
    size_t i = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case S_SIZE: {
            int h = hexval(ch);
            if (h >= 0) {
                if (++c->size_digits > 15) {
                    *consumed = i;
                    return dais_err_set(err, DAIS_ETOOBIG, "chunk size too large");
                }
                c->remaining = c->remaining * 16 + (uint64_t)h;
                i++;
                break;
            }
            if (c->size_digits == 0) {
                *consumed = i;
                return dais_err_set(err, DAIS_EFORMAT, "malformed chunk size");
            }
            if (ch == ';' || ch == ' ' || ch == '\t') {
                c->state = S_EXT;
                c->line_len = 0;
                i++;
                break;
            }
            if (ch == '\r') {
                c->state = S_SIZE_LF;
                i++;
                break;
            }
            if (ch != '\n') {
                *consumed = i;
                return dais_err_set(err, DAIS_EFORMAT, "malformed chunk size");
            }
            c->state = S_SIZE_LF; /* a bare LF: handled as the LF below */
            break;
        }
        case S_EXT:
            if (ch == '\r') {
                c->state = S_SIZE_LF;
                i++;
            } else if (ch == '\n') {
                c->state = S_SIZE_LF;
            } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f || ++c->line_len > CHUNK_LINE_MAX) {
                *consumed = i;
                return dais_err_set(err, DAIS_EFORMAT, "malformed chunk extension");
            } else {
                i++;
            }
            break;
        case S_SIZE_LF:
            if (ch != '\n') {
                *consumed = i;
                return dais_err_set(err, DAIS_EFORMAT, "malformed chunk size line");
            }
            i++;
            c->size_digits = 0;
            if (c->remaining == 0) {
                c->state = S_TRAILER_START;
                c->line_len = 0;
            } else if (c->remaining > c->limit || c->total > c->limit - c->remaining) {
                *consumed = i;
                return dais_err_set(err, DAIS_ETOOBIG, "body larger than %llu bytes",
                                    (unsigned long long)c->limit);
            } else {
                c->state = S_DATA;
            }
            break;
        case S_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > c->remaining) n = (size_t)c->remaining;
            memcpy(out + *out_len, in + i, n);
            *out_len += n;
            c->total += n;
            c->remaining -= n;
            i += n;
            if (c->remaining == 0) c->state = S_DATA_CR;
            break;
        }
        case S_DATA_CR:
            if (ch == '\r') {
                c->state = S_DATA_LF;
                i++;
            } else if (ch == '\n') {
                c->state = S_SIZE;
                i++;
            } else {
                *consumed = i;
                return dais_err_set(err, DAIS_EFORMAT, "chunk data not followed by CRLF");
            }
            break;
        case S_DATA_LF:
            if (ch != '\n') {
                *consumed = i;
                return dais_err_set(err, DAIS_EFORMAT, "chunk data not followed by CRLF");
            }
            c->state = S_SIZE;
            i++;
            break;
        case S_TRAILER_START:
            if (ch == '\r') {
                c->state = S_FINAL_LF;
                i++;
            } else if (ch == '\n') {
                *consumed = i + 1;
                c->state = S_DONE;
                return 0;
            } else {
                c->state = S_TRAILER;
            }
            break;
        case S_TRAILER:
            if (++c->line_len > TRAILERS_MAX) {
                *consumed = i;
                return dais_err_set(err, DAIS_EFORMAT, "trailer section too large");
            }
            if (ch == '\n')
                c->state = S_TRAILER_START;
            else if ((ch < 0x20 && ch != '\t' && ch != '\r') || ch == 0x7f) {
                *consumed = i;
                return dais_err_set(err, DAIS_EFORMAT, "control character in a trailer");
            }
            i++;
            break;
        case S_FINAL_LF:
            if (ch != '\n') {
                *consumed = i;
                return dais_err_set(err, DAIS_EFORMAT, "malformed end of chunked body");
            }
            *consumed = i + 1;
            c->state = S_DONE;
            return 0;
        default:
            *consumed = i;
            return 0;
        }
    }
    *consumed = i;
    return c->state == S_DONE ? 0 : DAIS_HTTP_NEED_MORE;
}

const char *dais_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
