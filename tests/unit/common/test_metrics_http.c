/* Tests for src/common/metrics_http.c: a real evhttp server on a random loopback port,
 * queried with raw sockets: GET/HEAD /metrics, 404, 405, malformed and oversized requests,
 * several registries, and collectors running on the loop thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/metrics_http.h"

#include <event2/event.h>
#include <event2/thread.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct server {
    struct event_base *base;
    dais_metrics_http *http;
    pthread_t th;
    pthread_t loop_thread;
} server;

static void *loop_main(void *arg)
{
    server *s = arg;
    event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void server_start(server *s, dais_metrics_registry *const *regs, size_t n)
{
    s->base = event_base_new();
    assert_non_null(s->base);
    dais_err err;
    s->http = dais_metrics_http_start(s->base, "127.0.0.1", 0, regs, n, &err);
    assert_non_null(s->http);
    assert_true(dais_metrics_http_port(s->http) != 0);
    assert_int_equal(pthread_create(&s->th, NULL, loop_main, s), 0);
    s->loop_thread = s->th;
}

static void server_stop(server *s)
{
    event_base_loopbreak(s->base);
    pthread_join(s->th, NULL);
    dais_metrics_http_free(s->http);
    event_base_free(s->base);
}

/* Sends `req` (len bytes) and reads until the server closes; returns the response (owned). */
static char *roundtrip(uint16_t port, const char *req, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fd);
    return buf;
}

static char *get(uint16_t port, const char *method, const char *path)
{
    char req[256];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     method, path);
    return roundtrip(port, req, (size_t)n);
}

static pthread_t g_collect_thread;
static int g_collect_calls;

static void collect(void *arg, dais_metric_sink *sink)
{
    (void)arg;
    g_collect_thread = pthread_self();
    g_collect_calls++;
    dais_metric_sink_emit(sink, NULL, 7);
}

static void test_serves_metrics(void **state)
{
    (void)state;
    dais_metrics_registry *a = dais_metrics_registry_new();
    dais_metrics_registry *b = dais_metrics_registry_new();
    dais_counter_add(dais_counter_new(a, "dais_a_total", "from a"), 5);
    dais_metrics_collector_new(b, DAIS_METRIC_GAUGE, "dais_b", "from b", 0, NULL, collect, NULL);
    dais_metrics_registry *regs[] = {a, b};
    server s;
    server_start(&s, regs, 2);
    uint16_t port = dais_metrics_http_port(s.http);

    char *r = get(port, "GET", "/metrics");
    assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    const char *body = strstr(r, "\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + 4, "# HELP dais_a_total from a\n"
                                  "# TYPE dais_a_total counter\n"
                                  "dais_a_total 5\n"
                                  "# HELP dais_b from b\n"
                                  "# TYPE dais_b gauge\n"
                                  "dais_b 7\n");
    free(r);
    /* the collector ran on the loop thread */
    assert_int_equal(g_collect_calls, 1);
    assert_true(pthread_equal(g_collect_thread, s.loop_thread));

    r = get(port, "GET", "/metrics?name[]=x");
    assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
    free(r);

    r = get(port, "HEAD", "/metrics");
    assert_non_null(strstr(r, "HTTP/1.1 200 OK\r\n"));
    assert_null(strstr(r, "dais_a_total"));
    free(r);

    r = get(port, "GET", "/");
    assert_non_null(strstr(r, "HTTP/1.1 404 "));
    free(r);
    r = get(port, "HEAD", "/nope");
    assert_non_null(strstr(r, "HTTP/1.1 404 "));
    assert_null(strstr(r, "not found"));
    free(r);
    r = get(port, "GET", "/metricsx");
    assert_non_null(strstr(r, "HTTP/1.1 404 "));
    free(r);

    static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        r = get(port, methods[i], "/metrics");
        assert_non_null(strstr(r, "HTTP/1.1 405 "));
        assert_non_null(strstr(r, "Allow: GET, HEAD\r\n"));
        free(r);
    }

    /* malformed and oversized requests get an error or a closed connection, never a crash */
    static const char junk[] = "\x01\x02\x03 garbage \xff\r\n\r\n";
    r = roundtrip(port, junk, sizeof(junk) - 1);
    assert_null(strstr(r, "200 OK"));
    free(r);
    size_t big = 64 * 1024;
    char *huge = malloc(big + 128);
    int n = snprintf(huge, 128, "GET /metrics HTTP/1.1\r\nX-Big: ");
    memset(huge + n, 'a', big);
    memcpy(huge + n + big, "\r\n\r\n", 4);
    r = roundtrip(port, huge, (size_t)n + big + 4);
    assert_null(strstr(r, "200 OK"));
    free(r);
    free(huge);
    r = get(port, "GET", "http://[::1");
    assert_null(strstr(r, "200 OK"));
    free(r);

    /* and it still serves */
    r = get(port, "GET", "/metrics");
    assert_non_null(strstr(r, "dais_a_total 5\n"));
    free(r);

    server_stop(&s);
    dais_metrics_registry_free(a);
    dais_metrics_registry_free(b);
}

static void test_pipelined_and_hangups(void **state)
{
    (void)state;
    /* a registry big enough that a reply does not fit in the socket buffers (~2 MB) */
    dais_metrics_registry *r = dais_metrics_registry_new();
    static const char *const lbl[] = {"worker"};
    dais_metric_family *f =
        dais_metrics_family_new(r, DAIS_METRIC_HISTOGRAM, "dais_big_seconds", "big", 1, lbl,
                                dais_buckets_latency_n, dais_buckets_latency);
    for (int i = 0; i < 2000; i++) {
        char v[32];
        snprintf(v, sizeof(v), "worker-%d", i);
        dais_histogram_observe(dais_histogram_child(f, (const char *[]){v}), i * 0.01);
    }
    dais_metrics_registry *regs[] = {r};
    server s;
    server_start(&s, regs, 1);
    uint16_t port = dais_metrics_http_port(s.http);

    /* two pipelined requests in one write: two complete answers */
    static const char two[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                              "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    char *resp = roundtrip(port, two, sizeof(two) - 1);
    char *first = strstr(resp, "HTTP/1.1 200 OK\r\n");
    assert_non_null(first);
    assert_non_null(strstr(first, "dais_big_seconds_count{worker=\"worker-1999\"} 1\n"));
    assert_non_null(strstr(first, "HTTP/1.1 404 "));
    free(resp);

    /* scrapers that hang up mid-reply, or keep sending while the reply is pending */
    for (int i = 0; i < 20; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons(port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_int_equal(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(req) - 1);
        if (i % 2 == 1) {
            for (int k = 0; k < 50; k++)
                if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) < 0) break;
        }
        char buf[100];
        ssize_t got = recv(fd, buf, sizeof(buf), 0);
        assert_true(got > 0);
        close(fd);
    }
    resp = get(port, "GET", "/metrics");
    assert_non_null(strstr(resp, "HTTP/1.1 200 OK\r\n"));
    free(resp);
    server_stop(&s);
    dais_metrics_registry_free(r);
}

static void test_default_registry_and_errors(void **state)
{
    (void)state;
    dais_counter_inc(dais_counter_new(dais_metrics_default(), "dais_default_total", "d"));
    server s;
    server_start(&s, NULL, 0);
    char *r = get(dais_metrics_http_port(s.http), "GET", "/metrics");
    assert_non_null(strstr(r, "dais_default_total 1\n"));
    free(r);

    /* the port is taken: a clear error */
    dais_err err;
    dais_err_clear(&err);
    struct event_base *b2 = event_base_new();
    assert_null(
        dais_metrics_http_start(b2, "127.0.0.1", dais_metrics_http_port(s.http), NULL, 0, &err));
    assert_int_equal(err.code, DAIS_EIO);
    assert_non_null(strstr(err.msg, "cannot listen"));
    assert_null(dais_metrics_http_start(NULL, "127.0.0.1", 0, NULL, 0, &err));
    assert_int_equal(err.code, DAIS_EINVAL);
    dais_metrics_registry *nullregs[] = {NULL};
    assert_null(dais_metrics_http_start(b2, "127.0.0.1", 0, nullregs, 1, &err));
    assert_int_equal(err.code, DAIS_EINVAL);
    event_base_free(b2);
    dais_metrics_http_free(NULL);
    server_stop(&s);
}

int main(void)
{
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN); /* as every dais node does */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serves_metrics),
        cmocka_unit_test(test_pipelined_and_hangups),
        cmocka_unit_test(test_default_registry_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
