/*
 * The HTTP/1.1 server (see httpd.h for why it exists and how it is used).
 *
 * A connection moves through states: HEAD (waiting for a request head) → BODY (reading a
 * Content-Length or chunked body) → PENDING (the handler owns the request; input is still
 * read so that a close is noticed) → back to HEAD after the response, or CLOSING (flush the
 * output, half-close, drain input briefly, close). Input is parsed in one loop per read
 * callback; a reply given while that loop runs just changes the state, and a reply given
 * later schedules the loop through the connection's `resume` event, so a handler is never
 * re-entered from inside its own call.
 */
#include "master/httpd.h"

#include "common/clock.h"
#include "common/log.h"
#include "master/http_parse.h"
#include "master/sendnow.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define LINGER_MS 2000

enum conn_state { C_HEAD = 0, C_BODY, C_PENDING, C_CLOSING };

typedef struct conn conn;

struct dais_http_req {
    conn *c;
    char *headbuf;       /* owned copy of the head; header values NUL-terminated in it */
    dais_http_head head; /* points into headbuf */
    char *path;          /* owned: path, NUL, query, NUL */
    const char *query;
    char *body; /* owned, NUL-terminated */
    size_t body_len, body_cap;
    dais_http_chunked chunk;
    uint64_t start_ns;
    bool is_head_method;
    bool keep_alive;
    bool streaming;
    bool stream_close_delimited; /* HTTP/1.0 stream: no chunked coding, close at the end */
    bool aborting;
    bool finished;
    int status;
    dais_http_abort_cb abort_cb;
    void *abort_arg;
};

struct conn {
    dais_httpd *srv;
    struct bufferevent *bev;
    struct event *resume; /* runs process() from the loop */
    conn *prev, *next;
    enum conn_state state;
    dais_http_req *req;
    char peer[64];
    bool in_process;
    bool doomed;          /* close at the next resume, aborting a pending request */
    bool reading_stopped; /* input beyond the pipelining bound while pending */
};

struct dais_httpd {
    struct event_base *base;
    dais_httpd_config cfg;
    dais_http_handler handler;
    void *arg;
    dais_http_log_cb log_cb;
    void *log_arg;
    struct evconnlistener *lis;
    struct event *accept_retry;
    uint16_t port;
    uint32_t n_conns;
    bool paused;
    conn *conns;
    time_t date_sec;
    char date[40];
};

void dais_httpd_config_default(dais_httpd_config *c)
{
    c->max_head = (size_t)16 * 1024;
    c->max_body = 1u << 20;
    c->max_conns = 4096;
    c->idle_timeout_ms = 60000;
    c->max_output = 8u << 20;
    c->server_name = "dais";
}

static void conn_free(conn *c);
static void process(conn *c);
static void conn_flush(conn *c);

static struct timeval ms_tv(uint32_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static const char *http_date(dais_httpd *s)
{
    time_t now = time(NULL);
    if (now != s->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        s->date_sec = now;
    }
    return s->date;
}

/* ---- requests ---------------------------------------------------------------------------- */

static void req_free(dais_http_req *r)
{
    if (r == NULL) return;
    free(r->headbuf);
    free(r->path);
    free(r->body);
    free(r);
}

const char *dais_http_req_method(const dais_http_req *r)
{
    return r->head.method;
}
const char *dais_http_req_path(const dais_http_req *r)
{
    return r->path;
}
const char *dais_http_req_query(const dais_http_req *r)
{
    return r->query;
}
const char *dais_http_req_peer(const dais_http_req *r)
{
    return r->c->peer;
}
uint64_t dais_http_req_start_ns(const dais_http_req *r)
{
    return r->start_ns;
}
bool dais_http_req_streaming(const dais_http_req *r)
{
    return r->streaming;
}

const char *dais_http_req_header(const dais_http_req *r, const char *name)
{
    const dais_http_header *h = dais_http_find_header(&r->head, name);
    return h != NULL ? h->value : NULL;
}

const char *dais_http_req_body(const dais_http_req *r, size_t *len)
{
    if (len != NULL) *len = r->body_len;
    return r->body != NULL ? r->body : "";
}

void dais_http_req_on_abort(dais_http_req *r, dais_http_abort_cb cb, void *arg)
{
    r->abort_cb = cb;
    r->abort_arg = arg;
}

/* ---- connection lifecycle --------------------------------------------------------------- */

static void listener_update(dais_httpd *s)
{
    if (s->lis == NULL) return;
    if (!s->paused && s->n_conns >= s->cfg.max_conns) {
        evconnlistener_disable(s->lis);
        s->paused = true;
    } else if (s->paused && s->n_conns < s->cfg.max_conns) {
        evconnlistener_enable(s->lis);
        s->paused = false;
    }
}

static void conn_free(conn *c)
{
    dais_httpd *s = c->srv;
    dais_http_req *r = c->req;
    c->req = NULL;
    if (r != NULL && !r->finished && r->abort_cb != NULL) {
        r->aborting = true;
        r->abort_cb(r, r->abort_arg);
    }
    req_free(r);
    if (c->bev != NULL) bufferevent_free(c->bev);
    if (c->resume != NULL) event_free(c->resume);
    if (s->conns == c)
        s->conns = c->next;
    else if (c->prev != NULL)
        c->prev->next = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    free(c);
    s->n_conns--;
    listener_update(s);
}

/* Marks the connection for closing from the loop (never from inside a caller's call). */
static void conn_doom(conn *c)
{
    if (c->doomed) return;
    c->doomed = true;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    event_active(c->resume, EV_TIMEOUT, 0);
}

static void set_read_timeout(conn *c, uint32_t ms)
{
    struct timeval rt = ms_tv(ms), wt = ms_tv(c->srv->cfg.idle_timeout_ms);
    bufferevent_set_timeouts(c->bev, ms != 0 ? &rt : NULL, &wt);
}

/* After the last response byte: half-close and discard input until EOF or LINGER_MS, so that
 * a client still sending a body reads our answer instead of a reset. */
static void start_closing(conn *c)
{
    c->state = C_CLOSING;
    conn_flush(c);
    if (c->doomed) return;
    /* Anything the socket did not take is written by the loop; write_cb comes back here. */
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        shutdown(bufferevent_getfd(c->bev), SHUT_WR);
        evbuffer_drain(bufferevent_get_input(c->bev),
                       evbuffer_get_length(bufferevent_get_input(c->bev)));
        set_read_timeout(c, LINGER_MS);
        bufferevent_enable(c->bev, EV_READ);
    }
}

/* ---- writing responses ------------------------------------------------------------------ */

/* Sends queued output at once, from the caller's stack, instead of enabling EV_WRITE and
 * waiting a loop turn for writability (an epoll_ctl to add the event, an epoll_wait, a writev
 * and an epoll_ctl to remove it, per response). EV_WRITE is enabled only while output is left
 * over (the client reads slower than we write), and write_cb disables it when the buffer has
 * drained. While it is enabled the loop owns the writing and this does nothing. A socket
 * error dooms the connection (closed from the loop, as a failed libevent write would). */
static void conn_flush(conn *c)
{
    if (c->doomed) return;
    struct bufferevent *bev = c->bev;
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(bev) & EV_WRITE)) return;
    if (!dais_send_now(out, bufferevent_getfd(bev))) {
        conn_doom(c);
        return;
    }
    if (evbuffer_get_length(out) > 0) bufferevent_enable(bev, EV_WRITE);
}

static bool output_over(conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev)) > c->srv->cfg.max_output;
}

static void write_head(dais_http_req *r, int status, const char *content_type, const char *headers,
                       bool has_length, size_t len)
{
    conn *c = r->c;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    const char *connection = "";
    if (!r->keep_alive)
        connection = "Connection: close\r\n";
    else if (r->head.minor == 0)
        connection = "Connection: keep-alive\r\n";
    char length[64] = "";
    if (has_length)
        snprintf(length, sizeof(length), "Content-Length: %zu\r\n", len);
    else if (!r->stream_close_delimited)
        snprintf(length, sizeof(length), "Transfer-Encoding: chunked\r\n");
    evbuffer_add_printf(
        out, "HTTP/1.%d %d %s\r\nServer: %s\r\nDate: %s\r\n%s%s%s%s%s%s",
        r->head.minor == 0 ? 0 : 1, status, dais_http_reason(status), c->srv->cfg.server_name,
        http_date(c->srv), content_type != NULL ? "Content-Type: " : "",
        content_type != NULL ? content_type : "", content_type != NULL ? "\r\n" : "", length,
        connection, headers != NULL ? headers : "");
    evbuffer_add(out, "\r\n", 2);
    r->status = status;
}

static void req_finish(dais_http_req *r)
{
    conn *c = r->c;
    dais_httpd *s = c->srv;
    r->finished = true;
    if (s->log_cb != NULL) s->log_cb(r, r->status, s->log_arg);
    bool keep = r->keep_alive && !r->stream_close_delimited;
    c->req = NULL;
    req_free(r);
    if (c->doomed) return;
    if (!keep) {
        start_closing(c);
        return;
    }
    c->state = C_HEAD;
    set_read_timeout(c, s->cfg.idle_timeout_ms);
    c->reading_stopped = false;
    bufferevent_enable(c->bev, EV_READ);
    if (!c->in_process && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        event_active(c->resume, EV_TIMEOUT, 0);
}

void dais_http_reply(dais_http_req *r, int status, const char *content_type, const char *headers,
                     const void *body, size_t len)
{
    if (r == NULL || r->aborting || r->finished || r->streaming) return;
    conn *c = r->c;
    if (!c->doomed) {
        write_head(r, status, content_type, headers, true, len);
        if (!r->is_head_method && len > 0) evbuffer_add(bufferevent_get_output(c->bev), body, len);
        if (output_over(c))
            conn_doom(c);
        else
            conn_flush(c);
    }
    req_finish(r);
}

void dais_http_reply_buffer(dais_http_req *r, int status, const char *content_type,
                            const char *headers, struct evbuffer *body)
{
    if (r == NULL || r->aborting || r->finished || r->streaming) return;
    conn *c = r->c;
    size_t len = evbuffer_get_length(body);
    if (!c->doomed) {
        write_head(r, status, content_type, headers, true, len);
        if (!r->is_head_method) evbuffer_add_buffer(bufferevent_get_output(c->bev), body);
        if (output_over(c))
            conn_doom(c);
        else
            conn_flush(c);
    }
    evbuffer_drain(body, evbuffer_get_length(body));
    req_finish(r);
}

int dais_http_stream_start(dais_http_req *r, int status, const char *content_type,
                           const char *headers)
{
    if (r == NULL || r->aborting || r->finished || r->streaming) return DAIS_EINVAL;
    conn *c = r->c;
    if (c->doomed) return DAIS_ECLOSED;
    r->streaming = true;
    if (r->head.minor == 0) {
        r->stream_close_delimited = true;
        r->keep_alive = false;
    }
    write_head(r, status, content_type, headers, false, 0);
    if (output_over(c)) {
        conn_doom(c);
        return DAIS_ECLOSED;
    }
    conn_flush(c);
    return c->doomed ? DAIS_ECLOSED : 0;
}

int dais_http_stream_write(dais_http_req *r, const void *data, size_t len)
{
    if (r == NULL || r->aborting || r->finished || !r->streaming) return DAIS_EINVAL;
    conn *c = r->c;
    if (c->doomed) return DAIS_ECLOSED;
    if (len == 0 || r->is_head_method) return 0;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (r->stream_close_delimited) {
        evbuffer_add(out, data, len);
    } else {
        evbuffer_add_printf(out, "%zx\r\n", len);
        evbuffer_add(out, data, len);
        evbuffer_add(out, "\r\n", 2);
    }
    if (output_over(c)) {
        conn_doom(c);
        return DAIS_ECLOSED;
    }
    conn_flush(c);
    return c->doomed ? DAIS_ECLOSED : 0;
}

int dais_http_stream_write_buffer(dais_http_req *r, struct evbuffer *data)
{
    if (r == NULL || r->aborting || r->finished || !r->streaming) return DAIS_EINVAL;
    conn *c = r->c;
    size_t len = evbuffer_get_length(data);
    if (c->doomed) {
        evbuffer_drain(data, len);
        return DAIS_ECLOSED;
    }
    if (len == 0 || r->is_head_method) {
        evbuffer_drain(data, len);
        return 0;
    }
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (!r->stream_close_delimited) evbuffer_add_printf(out, "%zx\r\n", len);
    evbuffer_add_buffer(out, data);
    if (!r->stream_close_delimited) evbuffer_add(out, "\r\n", 2);
    if (output_over(c)) {
        conn_doom(c);
        return DAIS_ECLOSED;
    }
    conn_flush(c);
    return c->doomed ? DAIS_ECLOSED : 0;
}

void dais_http_stream_end(dais_http_req *r)
{
    if (r == NULL || r->aborting || r->finished || !r->streaming) return;
    conn *c = r->c;
    if (!c->doomed && !r->stream_close_delimited && !r->is_head_method)
        evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
    conn_flush(c);
    req_finish(r);
}

/* An error the server answers itself (bad head, body too large …); always closes. */
static void reply_error(conn *c, dais_http_req *r, int status, const char *code, const char *msg)
{
    char body[512];
    int n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    for (const char *p = msg; *p != '\0' && n < (int)sizeof(body) - 8; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') body[n++] = '\\';
        body[n++] = (ch < 0x20) ? ' ' : (char)ch;
    }
    n += snprintf(body + n, sizeof(body) - (size_t)n, "\"}}\n");
    if (r == NULL) {
        /* No parsed request: answer as HTTP/1.1 with a minimal head. */
        struct evbuffer *out = bufferevent_get_output(c->bev);
        evbuffer_add_printf(out,
                            "HTTP/1.1 %d %s\r\nServer: %s\r\nDate: %s\r\n"
                            "Content-Type: application/json\r\nContent-Length: %d\r\n"
                            "Connection: close\r\n\r\n%s",
                            status, dais_http_reason(status), c->srv->cfg.server_name,
                            http_date(c->srv), n, body);
        if (c->srv->log_cb != NULL) {
            dais_http_req tmp;
            memset(&tmp, 0, sizeof(tmp));
            tmp.c = c;
            tmp.path = (char *)"";
            tmp.query = "";
            tmp.start_ns = dais_now_ns();
            c->srv->log_cb(&tmp, status, c->srv->log_arg);
        }
        start_closing(c);
        return;
    }
    r->keep_alive = false;
    c->req = r;
    c->state = C_PENDING;
    dais_http_reply(r, status, "application/json", NULL, body, (size_t)n);
}

/* ---- reading requests ------------------------------------------------------------------ */

/* Splits the target into path and query; absolute-form targets lose scheme and authority. */
static int split_target(dais_http_req *r)
{
    const char *t = r->head.target;
    size_t n = r->head.target_len;
    size_t skip = 0;
    if (n >= 7 && strncasecmp(t, "http://", 7) == 0)
        skip = 7;
    else if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
        skip = 8;
    if (skip > 0) {
        const char *slash = memchr(t + skip, '/', n - skip);
        if (slash == NULL) {
            t = "/";
            n = 1;
        } else {
            n -= (size_t)(slash - t);
            t = slash;
        }
    }
    r->path = malloc(n + 2);
    if (r->path == NULL) return DAIS_ENOMEM;
    memcpy(r->path, t, n);
    r->path[n] = '\0';
    r->path[n + 1] = '\0';
    char *q = strchr(r->path, '?');
    if (q != NULL) {
        *q = '\0';
        r->query = q + 1;
    } else {
        r->query = r->path + n + 1;
    }
    return 0;
}

static bool body_reserve(dais_http_req *r, size_t need)
{
    if (need <= r->body_cap) return true;
    size_t cap = r->body_cap != 0 ? r->body_cap : 1024;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *b = realloc(r->body, cap);
    if (b == NULL) return false;
    r->body = b;
    r->body_cap = cap;
    return true;
}

static void dispatch(conn *c)
{
    dais_http_req *r = c->req;
    c->state = C_PENDING;
    /* Keep reading to notice a close, but without a read timeout. */
    set_read_timeout(c, 0);
    c->srv->handler(r, c->srv->arg);
}

/* Tries to parse a head from the input. Returns true when progress was made. */
static bool parse_head(conn *c)
{
    dais_httpd *s = c->srv;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    if (avail == 0) return false;
    size_t look = avail < s->cfg.max_head ? avail : s->cfg.max_head;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    if (buf == NULL) {
        conn_doom(c);
        return false;
    }
    dais_http_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        conn_doom(c);
        return false;
    }
    r->c = c;
    int status = 0;
    dais_err err;
    dais_err_clear(&err);
    int rc = dais_http_parse_head(buf, look, s->cfg.max_head, &r->head, &status, &err);
    if (rc == DAIS_HTTP_NEED_MORE) {
        free(r);
        return false;
    }
    if (rc != 0) {
        free(r);
        DAIS_DEBUG("http %s: %s", c->peer, err.msg);
        reply_error(c, NULL, status,
                    status == 431   ? "header_too_large"
                    : status == 414 ? "uri_too_long"
                    : status == 505 ? "http_version"
                    : status == 501 ? "not_implemented"
                                    : "bad_request",
                    err.msg);
        return false;
    }
    r->start_ns = dais_now_ns();
    /* Copy the head so its pointers survive draining the input. */
    size_t hl = r->head.head_len;
    r->headbuf = malloc(hl + 1);
    if (r->headbuf == NULL) {
        free(r);
        conn_doom(c);
        return false;
    }
    memcpy(r->headbuf, buf, hl);
    r->headbuf[hl] = '\0';
    ptrdiff_t shift = r->headbuf - buf;
    r->head.target += shift;
    for (size_t i = 0; i < r->head.n_headers; i++) {
        dais_http_header *h = &r->head.headers[i];
        h->name += shift;
        h->value += shift;
        /* The byte after a value is CR, LF, SP or HTAB of this copy: terminate it there. */
        ((char *)h->value)[h->value_len] = '\0';
    }
    evbuffer_drain(in, hl);
    r->keep_alive = r->head.keep_alive;
    r->is_head_method = strcmp(r->head.method, "HEAD") == 0;
    if (split_target(r) != 0) {
        req_free(r);
        conn_doom(c);
        return false;
    }
    c->req = r;

    if (r->head.chunked) {
        dais_http_chunked_init(&r->chunk, s->cfg.max_body);
    } else if (r->head.has_length) {
        if (r->head.content_length > s->cfg.max_body) {
            c->req = NULL;
            char msg[128];
            snprintf(msg, sizeof(msg), "request body larger than the limit of %zu bytes",
                     s->cfg.max_body);
            reply_error(c, r, 413, "body_too_large", msg);
            return true;
        }
    }
    bool has_body = r->head.chunked || (r->head.has_length && r->head.content_length > 0);
    if (!has_body) {
        dispatch(c);
        return true;
    }
    if (r->head.expect_continue && evbuffer_get_length(in) == 0 && r->head.minor == 1) {
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        conn_flush(c);
    }
    c->state = C_BODY;
    return true;
}

/* Reads body bytes. Returns true when the state changed (body complete or error). */
static bool read_body(conn *c)
{
    dais_http_req *r = c->req;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    if (!r->head.chunked) {
        size_t need = (size_t)r->head.content_length;
        if (avail < need) return false;
        if (!body_reserve(r, need + 1)) {
            conn_doom(c);
            return false;
        }
        evbuffer_remove(in, r->body, need);
        r->body_len = need;
        r->body[need] = '\0';
        dispatch(c);
        return true;
    }
    if (avail == 0) return false;
    const char *buf = (const char *)evbuffer_pullup(in, -1);
    size_t room = (size_t)(r->chunk.limit - r->chunk.total);
    size_t grow = avail < room ? avail : room;
    if (buf == NULL || !body_reserve(r, r->body_len + grow + 1)) {
        conn_doom(c);
        return false;
    }
    size_t used = 0;
    dais_err err;
    dais_err_clear(&err);
    int rc = dais_http_chunked_decode(&r->chunk, buf, avail, &used, r->body, &r->body_len, &err);
    evbuffer_drain(in, used);
    if (rc == DAIS_HTTP_NEED_MORE) return false;
    if (rc == 0) {
        r->body[r->body_len] = '\0';
        dispatch(c);
        return true;
    }
    c->req = NULL;
    if (rc == DAIS_ETOOBIG) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request body larger than the limit of %zu bytes",
                 c->srv->cfg.max_body);
        reply_error(c, r, 413, "body_too_large", msg);
    } else {
        reply_error(c, r, 400, "bad_request", err.msg);
    }
    return true;
}

static void process(conn *c)
{
    if (c->in_process || c->doomed) return;
    c->in_process = true;
    for (;;) {
        bool progress = false;
        if (c->doomed) break;
        if (c->state == C_HEAD)
            progress = parse_head(c);
        else if (c->state == C_BODY)
            progress = read_body(c);
        if (!progress) break;
    }
    c->in_process = false;
    if (c->state == C_PENDING && !c->doomed &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) > c->srv->cfg.max_head) {
        /* Pipelined input beyond one head while a reply is pending: stop reading. */
        bufferevent_disable(c->bev, EV_READ);
        c->reading_stopped = true;
    }
}

/* ---- libevent callbacks ---------------------------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    if (c->state == C_CLOSING) {
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
        return;
    }
    process(c);
}

/* The loop wrote the last of what conn_flush left over. */
static void write_cb(struct bufferevent *bev, void *arg)
{
    conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) != 0) return;
    bufferevent_disable(bev, EV_WRITE);
    if (c->state == C_CLOSING) start_closing(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    conn *c = arg;
    (void)bev;
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && c->state == C_HEAD &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 && !c->doomed) {
        reply_error(c, NULL, 408, "request_timeout", "request not received in time");
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && c->state == C_BODY &&
        !c->doomed) {
        dais_http_req *r = c->req;
        c->req = NULL;
        reply_error(c, r, 408, "request_timeout", "request body not received in time");
        return;
    }
    /* EOF, error, write timeout, idle timeout, end of lingering: close. */
    conn_free(c);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    (void)fd;
    (void)what;
    if (c->doomed) {
        conn_free(c);
        return;
    }
    process(c);
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    dais_httpd *s = arg;
    (void)lis;
    conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        evutil_closesocket(fd);
        return;
    }
    c->srv = s;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char host[INET6_ADDRSTRLEN] = "?", serv[8] = "?";
    getnameinfo(sa, (socklen_t)salen, host, sizeof(host), serv, sizeof(serv),
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(c->peer, sizeof(c->peer), "%s:%s", host, serv);
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->resume = event_new(s->base, -1, 0, resume_cb, c);
    if (c->bev == NULL || c->resume == NULL) {
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        else
            evutil_closesocket(fd);
        if (c->resume != NULL) event_free(c->resume);
        free(c);
        return;
    }
    c->next = s->conns;
    if (s->conns != NULL) s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    listener_update(s);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    set_read_timeout(c, s->cfg.idle_timeout_ms);
    /* EV_WRITE only while output waits for the socket (conn_flush). */
    bufferevent_enable(c->bev, EV_READ);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    dais_httpd *s = arg;
    (void)fd;
    (void)what;
    if (s->lis != NULL && !s->paused) evconnlistener_enable(s->lis);
}

static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
    dais_httpd *s = arg;
    int e = EVUTIL_SOCKET_ERROR();
    DAIS_WARN("http accept: %s; pausing 100 ms", evutil_socket_error_to_string(e));
    /* Out of descriptors and the like: pause instead of spinning on the error. */
    evconnlistener_disable(lis);
    struct timeval tv = {0, 100000};
    event_add(s->accept_retry, &tv);
}

/* ---- server ----------------------------------------------------------------------------- */

dais_httpd *dais_httpd_new(struct event_base *base, const dais_httpd_config *cfg,
                           dais_http_handler handler, void *arg)
{
    dais_httpd *s = calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->base = base;
    s->cfg = *cfg;
    if (s->cfg.server_name == NULL) s->cfg.server_name = "dais";
    if (s->cfg.max_conns == 0) s->cfg.max_conns = 1;
    if (s->cfg.max_head < 256) s->cfg.max_head = 256;
    s->handler = handler;
    s->arg = arg;
    s->accept_retry = evtimer_new(base, accept_retry_cb, s);
    if (s->accept_retry == NULL) {
        free(s);
        return NULL;
    }
    return s;
}

void dais_httpd_set_log_cb(dais_httpd *s, dais_http_log_cb cb, void *arg)
{
    s->log_cb = cb;
    s->log_arg = arg;
}

int dais_httpd_listen(dais_httpd *s, const char *addr, uint16_t port, dais_err *err)
{
    if (s->lis != NULL) return dais_err_set(err, DAIS_EINVAL, "already listening");
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ports[8];
    snprintf(ports, sizeof(ports), "%u", port);
    int g = getaddrinfo(addr, ports, &hints, &ai);
    if (g != 0) return dais_err_set(err, DAIS_EINVAL, "http address %s: %s", addr, gai_strerror(g));
    s->lis = evconnlistener_new_bind(
        s->base, accept_cb, s, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        1024, ai->ai_addr, (int)ai->ai_addrlen);
    int e = errno;
    freeaddrinfo(ai);
    if (s->lis == NULL)
        return dais_err_set(err, DAIS_EIO, "http listen on %s:%u: %s", addr, port, strerror(e));
    evconnlistener_set_error_cb(s->lis, accept_error_cb);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl = sizeof(ss);
    if (getsockname(evconnlistener_get_fd(s->lis), (struct sockaddr *)&ss, &sl) == 0)
        s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

uint16_t dais_httpd_port(const dais_httpd *s)
{
    return s->port;
}
uint32_t dais_httpd_n_conns(const dais_httpd *s)
{
    return s->n_conns;
}

void dais_httpd_free(dais_httpd *s)
{
    if (s == NULL) return;
    if (s->lis != NULL) evconnlistener_free(s->lis);
    s->lis = NULL;
    while (s->conns != NULL)
        conn_free(s->conns);
    event_free(s->accept_retry);
    free(s);
}
