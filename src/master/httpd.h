/*
 * A small HTTP/1.1 server on libevent bufferevents, for the master's API (and anything else
 * that needs the same guarantees). Why not evhttp: libevent 2.1's evhttp answers a body over
 * the limit and a malformed head with a fixed HTML page (we owe clients a JSON error body),
 * stops reading a connection while a reply is pending (so a client that hangs up during a
 * long generation goes unnoticed and its work is never cancelled), has no connection limit,
 * and aborts the process (event_errx) if data arrives on a connection in its "writing"
 * state. This server keeps reading while a reply is pending to notice the close, answers
 * every error itself, and bounds everything: head size, body size, connections, idle time,
 * output queued for a slow reader.
 *
 * Model: one request at a time per connection (pipelined requests wait their turn). The
 * handler gets a dais_http_req and answers now or later, with one reply or with a chunked
 * stream. If the client goes away first, the request's abort callback runs and the request
 * is freed: the handler must forget it. Everything runs on the loop thread of the base
 * given to dais_httpd_new; no function here may be called from another thread.
 */
#ifndef DAIS_MASTER_HTTPD_H
#define DAIS_MASTER_HTTPD_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;

typedef struct dais_httpd dais_httpd;
typedef struct dais_http_req dais_http_req;

/* Called once per complete request, on the loop thread. The handler owns the duty to answer
 * (dais_http_reply… or dais_http_stream_…), now or later. */
typedef void (*dais_http_handler)(dais_http_req *req, void *arg);

/* Called when the client disconnects (or the server closes the connection) before the
 * response is complete. After it returns, `req` is freed. */
typedef void (*dais_http_abort_cb)(dais_http_req *req, void *arg);

/* Called once for every response the server writes, for access metrics: status, bytes of
 * body, and the request's start time (dais_now_ns at head arrival). */
typedef void (*dais_http_log_cb)(const dais_http_req *req, int status, void *arg);

typedef struct dais_httpd_config {
    size_t max_head;          /* bytes of request line + header fields (431 past it) */
    size_t max_body;          /* bytes of body (413 past it) */
    uint32_t max_conns;       /* open connections; the listener pauses at the cap */
    uint32_t idle_timeout_ms; /* keep-alive idle, and the time to receive a whole request */
    size_t max_output;        /* bytes queued for a client that does not read; then it is cut */
    const char *server_name;  /* Server: header value */
} dais_httpd_config;

/* Fills the defaults: 16 KiB head, 1 MiB body, 4096 connections, 60 s, 8 MiB output. */
void dais_httpd_config_default(dais_httpd_config *c);

/* A server on `base` (borrowed). `cfg` is copied (server_name must outlive the server).
 * Returns owned, or NULL on no memory. */
dais_httpd *dais_httpd_new(struct event_base *base, const dais_httpd_config *cfg,
                           dais_http_handler handler, void *arg);

/* Sets a callback run after each response is queued (may be NULL). */
void dais_httpd_set_log_cb(dais_httpd *s, dais_http_log_cb cb, void *arg);

/* Listens on addr:port (numeric or host name; port 0 = any free port). 0 or a negative code
 * with err naming the address and the reason. One listening socket per server. */
int dais_httpd_listen(dais_httpd *s, const char *addr, uint16_t port, dais_err *err);

/* The bound port (after dais_httpd_listen), 0 before. */
uint16_t dais_httpd_port(const dais_httpd *s);

/* Connections open now. */
uint32_t dais_httpd_n_conns(const dais_httpd *s);

/* Stops accepting, closes every connection (running abort callbacks of pending requests)
 * and frees the server. Accepts NULL. */
void dais_httpd_free(dais_httpd *s);

/* ---- the request ------------------------------------------------------------------------- */

const char *dais_http_req_method(const dais_http_req *r);
/* The path part of the request-target (before '?'), NUL-terminated, not decoded. */
const char *dais_http_req_path(const dais_http_req *r);
/* The query part (after '?'), "" when absent. */
const char *dais_http_req_query(const dais_http_req *r);
/* Value of the first header named `name` (case-insensitive), NUL-terminated copy held by
 * the request; NULL when absent. */
const char *dais_http_req_header(const dais_http_req *r, const char *name);
/* The body (NUL-terminated for convenience; may hold NUL bytes), borrowed from the request. */
const char *dais_http_req_body(const dais_http_req *r, size_t *len);
/* "ip:port" of the client. */
const char *dais_http_req_peer(const dais_http_req *r);
/* dais_now_ns() when the request head was complete. */
uint64_t dais_http_req_start_ns(const dais_http_req *r);
/* True after dais_http_stream_start. */
bool dais_http_req_streaming(const dais_http_req *r);

/* Sets the callback for a client that leaves before the response is complete. */
void dais_http_req_on_abort(dais_http_req *r, dais_http_abort_cb cb, void *arg);

/* ---- responses ---------------------------------------------------------------------------- */

/* Sends a complete response and finishes the request (r is invalid afterwards).
 * `headers` holds extra header lines, each ending in "\r\n" (may be NULL); Content-Length,
 * Connection, Date and Server are added here. For HEAD the body is not sent. */
void dais_http_reply(dais_http_req *r, int status, const char *content_type, const char *headers,
                     const void *body, size_t len);

/* As dais_http_reply, with the body taken (moved, not copied) from `body`, left empty. */
void dais_http_reply_buffer(dais_http_req *r, int status, const char *content_type,
                            const char *headers, struct evbuffer *body);

/* Starts a chunked response (HTTP/1.0 clients: close-delimited). Returns 0 or DAIS_ECLOSED
 * when the output is over its bound (the connection is then being closed and the abort
 * callback will run). */
int dais_http_stream_start(dais_http_req *r, int status, const char *content_type,
                           const char *headers);
/* Queues one chunk (written out as soon as the socket takes it). 0 or DAIS_ECLOSED as above. */
int dais_http_stream_write(dais_http_req *r, const void *data, size_t len);
/* As dais_http_stream_write, with the chunk moved out of `data` (left empty). */
int dais_http_stream_write_buffer(dais_http_req *r, struct evbuffer *data);
/* Ends the stream and finishes the request (r is invalid afterwards). */
void dais_http_stream_end(dais_http_req *r);

#endif
