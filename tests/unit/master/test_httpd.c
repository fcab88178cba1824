/*
 * Unit tests for src/master/httpd.c: the HTTP/1.1 server on a real loopback socket, its loop
 * on a thread, a test handler with a few behaviours (answer now, later, stream, never), and
 * raw-socket clients: keep-alive and pipelining, chunked and 100-continue bodies, JSON errors
 * for bad heads and big bodies, HTTP/1.0, the abort callback when a client leaves, idle
 * timeouts and the connection cap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "master/httpd.h"

#include <event2/event.h>
#include <event2/thread.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct event_base *g_base;
static dais_httpd *g_srv;
static pthread_t g_thread;
static uint16_t g_port;
static atomic_int g_aborts, g_handled;
static struct event *g_stop;

typedef struct later {
    dais_http_req *req;
    struct event *ev;
    int step;
} later;

static void later_free(later *l)
{
    event_free(l->ev);
    free(l);
}

static void on_abort(dais_http_req *req, void *arg)
{
    (void)req;
    later *l = arg;
    atomic_fetch_add(&g_aborts, 1);
    if (l != NULL) later_free(l);
}

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    later *l = arg;
    const char *path = dais_http_req_path(l->req);
    if (strcmp(path, "/later") == 0) {
        dais_http_reply(l->req, 200, "text/plain", NULL, "later", 5);
        later_free(l);
        return;
    }
    /* /stream: three chunks 20 ms apart */
    if (l->step < 3) {
        char chunk[16];
        int n = snprintf(chunk, sizeof(chunk), "part%d;", l->step);
        if (l->step == 0) dais_http_stream_start(l->req, 200, "text/plain", "X-Test: 1\r\n");
        dais_http_stream_write(l->req, chunk, (size_t)n);
        l->step++;
        struct timeval tv = {0, 20000};
        evtimer_add(l->ev, &tv);
        return;
    }
    dais_http_stream_end(l->req);
    later_free(l);
}

static void handler(dais_http_req *req, void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_handled, 1);
    const char *path = dais_http_req_path(req);
    if (strcmp(path, "/echo") == 0) {
        size_t len;
        const char *body = dais_http_req_body(req, &len);
        char hdr[128];
        const char *x = dais_http_req_header(req, "x-name");
        snprintf(hdr, sizeof(hdr), "X-Query: %s\r\nX-Name: %s\r\n", dais_http_req_query(req),
                 x != NULL ? x : "-");
        dais_http_reply(req, 200, "application/octet-stream", hdr, body, len);
        return;
    }
    if (strcmp(path, "/later") == 0 || strcmp(path, "/stream") == 0 || strcmp(path, "/hang") == 0) {
        later *l = calloc(1, sizeof(*l));
        l->req = req;
        l->ev = evtimer_new(g_base, later_cb, l);
        dais_http_req_on_abort(req, on_abort, l);
        if (strcmp(path, "/hang") != 0) {
            struct timeval tv = {0, 30000};
            evtimer_add(l->ev, &tv);
        }
        return;
    }
    dais_http_reply(req, 404, "application/json", NULL, "{}", 2);
}

static void *loop(void *arg)
{
    (void)arg;
    event_base_dispatch(g_base);
    return NULL;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    event_base_loopbreak(g_base);
}

static int setup(void **state)
{
    (void)state;
    evthread_use_pthreads();
    g_base = event_base_new();
    dais_httpd_config cfg;
    dais_httpd_config_default(&cfg);
    cfg.max_body = 1000;
    cfg.max_conns = 4;
    cfg.idle_timeout_ms = 400;
    g_srv = dais_httpd_new(g_base, &cfg, handler, NULL);
    dais_err err;
    assert_int_equal(dais_httpd_listen(g_srv, "127.0.0.1", 0, &err), 0);
    g_port = dais_httpd_port(g_srv);
    assert_true(g_port != 0);
    g_stop = event_new(g_base, -1, 0, stop_cb, NULL);
    assert_int_equal(pthread_create(&g_thread, NULL, loop, NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    event_active(g_stop, EV_TIMEOUT, 0);
    pthread_join(g_thread, NULL);
    dais_httpd_free(g_srv);
    event_free(g_stop);
    event_base_free(g_base);
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int connect_srv(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads until `needle` has been seen (or EOF/timeout); returns the bytes read (static). */
static const char *read_until(int fd, const char *needle)
{
    static char buf[65536];
    size_t n = 0;
    buf[0] = '\0';
    while (n < sizeof(buf) - 1 && strstr(buf, needle) == NULL) {
        ssize_t r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        buf[n] = '\0';
    }
    return buf;
}

static bool closed_by_peer(int fd)
{
    char c;
    for (int i = 0; i < 50; i++) {
        ssize_t r = recv(fd, &c, 1, 0);
        if (r == 0) return true;
        if (r < 0) return true;
    }
    return false;
}

static void test_keepalive_and_pipelining(void **state)
{
    (void)state;
    int fd = connect_srv();
    send_str(fd,
             "POST /echo?a=1 HTTP/1.1\r\nHost: x\r\nX-Name: n1\r\nContent-Length: 5\r\n\r\nhello"
             "GET /echo?b=2 HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    const char *r = read_until(fd, "X-Query: \r\n");
    const char *a = strstr(r, "X-Query: a=1\r\nX-Name: n1\r\n");
    const char *b = strstr(r, "X-Query: b=2\r\n");
    const char *l = strstr(r, "\r\n\r\nlater");
    const char *d = strstr(r, "X-Query: \r\n");
    if (!(a != NULL && b > a && l > b && d > l)) fprintf(stderr, "got: %s\n", r);
    assert_true(a != NULL && b > a && l > b && d > l); /* answered in order */
    assert_non_null(strstr(r, "\r\n\r\nhello"));
    assert_null(strstr(r, "Connection: close"));
    close(fd);
}

static void test_chunked_body_and_continue(void **state)
{
    (void)state;
    int fd = connect_srv();
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 "Expect: 100-continue\r\n\r\n");
    const char *r = read_until(fd, "100 Continue\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.1 100 Continue"));
    send_str(fd, "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n");
    r = read_until(fd, "abcde");
    assert_non_null(strstr(r, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(r, "Content-Length: 5"));
    close(fd);
}

static void test_errors_are_json_and_close(void **state)
{
    (void)state;
    int fd = connect_srv();
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    const char *r = read_until(fd, "}}");
    assert_non_null(strstr(r, "HTTP/1.1 413"));
    assert_non_null(strstr(r, "Content-Type: application/json"));
    assert_non_null(strstr(r, "\"code\":\"body_too_large\""));
    assert_non_null(strstr(r, "Connection: close"));
    assert_true(closed_by_peer(fd));
    close(fd);

    fd = connect_srv();
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "400\r\n");
    char big[1100];
    memset(big, 'z', sizeof(big));
    send(fd, big, sizeof(big), MSG_NOSIGNAL);
    r = read_until(fd, "}}");
    assert_non_null(strstr(r, "HTTP/1.1 413"));
    close(fd);

    fd = connect_srv();
    send_str(fd, "GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n");
    r = read_until(fd, "}}");
    assert_non_null(strstr(r, "HTTP/1.1 400"));
    assert_non_null(strstr(r, "\"code\":\"bad_request\""));
    close(fd);

    fd = connect_srv();
    send_str(fd, "GET / HTTP/3.0\r\nHost: x\r\n\r\n");
    r = read_until(fd, "}}");
    assert_non_null(strstr(r, "HTTP/1.1 505"));
    close(fd);
}

static void test_http10_and_head(void **state)
{
    (void)state;
    int fd = connect_srv();
    send_str(fd, "GET /echo HTTP/1.0\r\n\r\n");
    const char *r = read_until(fd, "\r\n\r\n");
    assert_non_null(strstr(r, "HTTP/1.0 200 OK"));
    assert_non_null(strstr(r, "Connection: close"));
    assert_true(closed_by_peer(fd));
    close(fd);
    fd = connect_srv();
    send_str(fd, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    r = read_until(fd, "part2;");
    assert_null(strstr(r, "Transfer-Encoding")); /* close-delimited for 1.0 */
    assert_non_null(strstr(r, "part0;part1;part2;"));
    assert_true(closed_by_peer(fd));
    close(fd);
    fd = connect_srv();
    send_str(fd, "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?z HTTP/1.1\r\nHost: x\r\n\r\n");
    r = read_until(fd, "X-Query: z");
    assert_non_null(strstr(r, "Content-Length: 0\r\n"));
    close(fd);
}

static void test_stream_chunks(void **state)
{
    (void)state;
    int fd = connect_srv();
    send_str(fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    const char *r = read_until(fd, "0\r\n\r\n");
    assert_non_null(strstr(r, "Transfer-Encoding: chunked"));
    assert_non_null(strstr(r, "X-Test: 1"));
    assert_non_null(strstr(r, "6\r\npart0;\r\n6\r\npart1;\r\n6\r\npart2;\r\n0\r\n\r\n"));
    /* the connection stays usable */
    send_str(fd, "GET /echo?again HTTP/1.1\r\nHost: x\r\n\r\n");
    r = read_until(fd, "X-Query: again");
    assert_non_null(strstr(r, "X-Query: again"));
    close(fd);
}

static void test_client_leaving_aborts(void **state)
{
    (void)state;
    int before = atomic_load(&g_aborts);
    int fd = connect_srv();
    send_str(fd, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < 100 && atomic_load(&g_handled) == 0; i++)
        sleep_ms(10);
    sleep_ms(50);
    close(fd);
    for (int i = 0; i < 100 && atomic_load(&g_aborts) == before; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&g_aborts), before + 1);
}

static void test_idle_timeout_and_conn_cap(void **state)
{
    (void)state;
    /* four connections (the cap) held open: a fifth is not served until one closes */
    int fds[4];
    for (int i = 0; i < 4; i++) {
        fds[i] = connect_srv();
        send_str(fds[i], "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
        read_until(fds[i], "X-Query");
    }
    int extra = connect_srv(); /* accepted by the kernel backlog, not by the server */
    send_str(extra, "GET /echo?fifth HTTP/1.1\r\nHost: x\r\n\r\n");
    struct pollfd p = {.fd = extra, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 150), 0);
    close(fds[0]);
    const char *r = read_until(extra, "X-Query: fifth");
    assert_non_null(strstr(r, "X-Query: fifth"));
    /* idle keep-alive connections are closed after the idle timeout (400 ms) */
    sleep_ms(600);
    for (int i = 1; i < 4; i++) {
        assert_true(closed_by_peer(fds[i]));
        close(fds[i]);
    }
    assert_true(closed_by_peer(extra));
    close(extra);
    /* a head that never completes gets 408 */
    int slow = connect_srv();
    send_str(slow, "GET /echo HTTP/1.1\r\nHo");
    r = read_until(slow, "}}");
    assert_non_null(strstr(r, "HTTP/1.1 408"));
    close(slow);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive_and_pipelining),
        cmocka_unit_test(test_chunked_body_and_continue),
        cmocka_unit_test(test_errors_are_json_and_close),
        cmocka_unit_test(test_http10_and_head),
        cmocka_unit_test(test_stream_chunks),
        cmocka_unit_test(test_client_leaving_aborts),
        cmocka_unit_test(test_idle_timeout_and_conn_cap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
