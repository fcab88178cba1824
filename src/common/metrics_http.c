/* The /metrics HTTP endpoint (see metrics_http.h). */
#include "common/metrics_http.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A scrape request has no body and few headers; anything bigger is not a scraper. */
#define MAX_HEADERS_SIZE 8192
#define MAX_BODY_SIZE    1024
#define CONN_TIMEOUT_S   30

struct dais_metrics_http {
    struct evhttp *http;
    uint16_t port;
    size_t n_regs;
    dais_metrics_registry *regs[DAIS_METRICS_HTTP_MAX_REGS];
};

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *body = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    if (body != NULL && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        evbuffer_add(body, text, strlen(text));
    evhttp_send_reply(req, code, reason, body);
    if (body != NULL) evbuffer_free(body);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    dais_metrics_http *h = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    if (path == NULL || strcmp(path, "/metrics") != 0) {
        reply_text(req, HTTP_NOTFOUND, "Not Found", "not found; metrics are at /metrics\n");
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_text(req, 405, "Method Not Allowed", "method not allowed\n");
        return;
    }
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        reply_text(req, HTTP_INTERNAL, "Internal Server Error", "out of memory\n");
        return;
    }
    size_t left = DAIS_METRICS_RENDER_MAX;
    int rc = 0;
    for (size_t i = 0; i < h->n_regs && rc == 0; i++) {
        size_t before = evbuffer_get_length(body);
        rc = dais_metrics_render_evbuffer(h->regs[i], body, left);
        left -= evbuffer_get_length(body) - before;
    }
    if (rc != 0) {
        evbuffer_free(body);
        reply_text(req, HTTP_INTERNAL, "Internal Server Error", dais_strerror(rc));
        return;
    }
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", DAIS_METRICS_CONTENT_TYPE);
    if (cmd == EVHTTP_REQ_HEAD) {
        /* evhttp would send the body even for HEAD: announce its length, send none */
        char len[24];
        snprintf(len, sizeof(len), "%zu", evbuffer_get_length(body));
        evhttp_add_header(out, "Content-Length", len);
        evbuffer_drain(body, evbuffer_get_length(body));
    }
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

dais_metrics_http *dais_metrics_http_start(struct event_base *base, const char *addr, uint16_t port,
                                           dais_metrics_registry *const *regs, size_t n_regs,
                                           dais_err *err)
{
    if (base == NULL || addr == NULL || n_regs > DAIS_METRICS_HTTP_MAX_REGS ||
        (n_regs > 0 && regs == NULL)) {
        dais_err_set(err, DAIS_EINVAL, "metrics server: bad arguments");
        return NULL;
    }
    dais_metrics_http *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "metrics server: out of memory");
        return NULL;
    }
    if (n_regs == 0) {
        h->regs[0] = dais_metrics_default();
        h->n_regs = 1;
    } else {
        for (size_t i = 0; i < n_regs; i++) {
            if (regs[i] == NULL) {
                dais_err_set(err, DAIS_EINVAL, "metrics server: NULL registry");
                goto fail;
            }
            h->regs[i] = regs[i];
        }
        h->n_regs = n_regs;
    }
    h->http = evhttp_new(base);
    if (h->http == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "metrics server: out of memory");
        goto fail;
    }
    evhttp_set_max_headers_size(h->http, MAX_HEADERS_SIZE);
    evhttp_set_max_body_size(h->http, MAX_BODY_SIZE);
    evhttp_set_timeout(h->http, CONN_TIMEOUT_S);
    /* Let every common method reach on_request, which answers 405 itself (with Allow). */
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(h->http, on_request, h);
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(h->http, addr, port);
    if (sock == NULL) {
        dais_err_set(err, DAIS_EIO, "metrics server: cannot listen on %s:%u", addr, (unsigned)port);
        goto fail;
    }
    struct sockaddr_storage ss = {0};
    socklen_t sl = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) != 0) {
        dais_err_set(err, DAIS_EIO, "metrics server: getsockname failed");
        goto fail;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 a6;
        memcpy(&a6, &ss, sizeof(a6));
        h->port = ntohs(a6.sin6_port);
    } else {
        struct sockaddr_in a4;
        memcpy(&a4, &ss, sizeof(a4));
        h->port = ntohs(a4.sin_port);
    }
    return h;
fail:
    if (h->http != NULL) evhttp_free(h->http);
    free(h);
    return NULL;
}

uint16_t dais_metrics_http_port(const dais_metrics_http *h)
{
    return h != NULL ? h->port : 0;
}

void dais_metrics_http_free(dais_metrics_http *h)
{
    if (h == NULL) return;
    evhttp_free(h->http);
    free(h);
}
