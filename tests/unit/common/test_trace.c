/* Tests for src/common/trace.c: traceparent/tracestate parsing, id generation, span
 * recording, the OTLP/JSON document, and export to a real local HTTP receiver, to a dead
 * endpoint and to a collector that never answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/trace.h"

#include <jansson.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#define TP_OK "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int parse(const char *s, dais_trace_ctx *c)
{
    return dais_traceparent_parse(s, strlen(s), c);
}

static void test_traceparent_valid(void **state)
{
    (void)state;
    dais_trace_ctx c;
    assert_int_equal(parse(TP_OK, &c), 0);
    assert_true(c.valid);
    assert_int_equal(c.flags, 1);
    assert_int_equal(c.trace_id[0], 0x4b);
    assert_int_equal(c.trace_id[15], 0x36);
    assert_int_equal(c.span_id[0], 0x00);
    assert_int_equal(c.span_id[7], 0xb7);
    char out[DAIS_TRACEPARENT_LEN + 1];
    assert_int_equal(dais_traceparent_format(&c, out), 0);
    assert_string_equal(out, TP_OK);

    char hex[33];
    dais_trace_id_hex(c.trace_id, hex);
    assert_string_equal(hex, "4bf92f3577b34da6a3ce929d0e0e4736");
    char shex[17];
    dais_span_id_hex(c.span_id, shex);
    assert_string_equal(shex, "00f067aa0ba902b7");

    /* not sampled; unknown flag bits are not propagated */
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &c), 0);
    assert_int_equal(c.flags, 0);
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &c), 0);
    assert_int_equal(c.flags, 1);
    dais_traceparent_format(&c, out);
    assert_string_equal(out + 53, "01");

    /* a later version may carry more fields after a dash */
    assert_int_equal(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &c), 0);
    assert_int_equal(
        parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future", &c), 0);
    /* not NUL-terminated input: only `len` bytes are read */
    char buf[64];
    memcpy(buf, TP_OK, DAIS_TRACEPARENT_LEN);
    memset(buf + DAIS_TRACEPARENT_LEN, 'x', sizeof(buf) - DAIS_TRACEPARENT_LEN);
    assert_int_equal(dais_traceparent_parse(buf, DAIS_TRACEPARENT_LEN, &c), 0);
}

static void test_traceparent_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "00",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",   /* short */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", /* v00 + extra */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ", /* trailing space */
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* leading space */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* version ff */
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  /* bad version */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  /* upper case */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero parent id */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* separators */
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  /* misplaced dash */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",  /* non-hex */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", /* future, no dash */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dais_trace_ctx c;
        memset(&c, 0xab, sizeof(c));
        if (parse(bad[i], &c) != DAIS_EFORMAT) fail_msg("accepted: \"%s\"", bad[i]);
        assert_false(c.valid);
    }
    /* embedded NUL inside the counted length */
    char buf[DAIS_TRACEPARENT_LEN];
    memcpy(buf, TP_OK, sizeof(buf));
    buf[10] = '\0';
    dais_trace_ctx c;
    assert_int_equal(dais_traceparent_parse(buf, sizeof(buf), &c), DAIS_EFORMAT);
    assert_int_equal(dais_traceparent_parse(NULL, 0, &c), DAIS_EFORMAT);
    /* formatting an invalid context */
    char out[DAIS_TRACEPARENT_LEN + 1] = "junk";
    assert_int_equal(dais_traceparent_format(&c, out), DAIS_EINVAL);
    assert_string_equal(out, "");
}

static bool ts(const char *s)
{
    return dais_tracestate_valid(s, strlen(s));
}

static void test_tracestate(void **state)
{
    (void)state;
    assert_true(ts(""));
    assert_true(ts("congo=t61rcWkgMzE"));
    assert_true(ts("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    assert_true(ts("rojo=00f067aa0ba902b7 ,\tcongo=t61rcWkgMzE"));
    assert_true(ts("b=c,,d=e"));
    assert_true(ts(" , "));
    assert_true(ts("tenant@system=value"));
    assert_true(ts("1tenant@sys=v"));
    assert_true(ts("k=v with spaces inside"));
    assert_true(ts("k_-*/=a!\"#$%&'()*+-./09:;<>?@AZ[\\]^_`az{|}~"));
    assert_false(ts("noequals"));
    assert_false(ts("Upper=v"));
    assert_false(ts("1digitfirst=v"));
    assert_false(ts("k="));
    assert_false(ts("=v"));
    assert_false(ts("k=v=w"));
    assert_false(ts("k=v\x01"));
    assert_false(ts("k=caf\xc3\xa9"));
    assert_false(ts("t@=v"));
    assert_false(ts("@s=v"));
    assert_false(ts("t@S=v"));
    assert_false(ts("t@systemtoolong12=v"));
    assert_true(ts("t@systemtoolong1=v"));
    char buf[1024];
    /* 32 members pass, 33 fail */
    size_t n = 0;
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%sk%d=v", i ? "," : "", i);
    assert_false(dais_tracestate_valid(buf, n));
    assert_true(dais_tracestate_valid(buf, (size_t)(strrchr(buf, ',') - buf)));
    /* length cap */
    memset(buf, 'a', sizeof(buf));
    buf[0] = 'k';
    buf[1] = '=';
    assert_false(dais_tracestate_valid(buf, DAIS_TRACESTATE_MAX + 1));
    assert_false(dais_tracestate_valid(buf, 300)); /* value over 256 chars */
    assert_true(dais_tracestate_valid(buf, 200));
    assert_false(dais_tracestate_valid(NULL, 0));
}

static void test_ids(void **state)
{
    (void)state;
    dais_trace_ctx root, child, again;
    dais_trace_ctx_child(NULL, &root);
    assert_true(root.valid);
    assert_int_equal(root.flags, DAIS_TRACE_FLAG_SAMPLED);
    dais_trace_ctx_child(&root, &child);
    assert_memory_equal(root.trace_id, child.trace_id, 16);
    assert_memory_not_equal(root.span_id, child.span_id, 8);
    dais_trace_ctx_child(NULL, &again);
    assert_memory_not_equal(root.trace_id, again.trace_id, 16);
    /* an invalid parent starts a new trace */
    dais_trace_ctx invalid;
    memset(&invalid, 0, sizeof(invalid));
    dais_trace_ctx_child(&invalid, &child);
    assert_memory_not_equal(child.trace_id, root.trace_id, 16);
    /* many ids: all distinct in a small sample, none zero; the formatted form reparses */
    enum { N = 2000 };
    static uint64_t seen[N];
    for (int i = 0; i < N; i++) {
        dais_trace_ctx c;
        dais_trace_ctx_child(NULL, &c);
        memcpy(&seen[i], c.span_id, 8);
        assert_true(seen[i] != 0);
        char tp[DAIS_TRACEPARENT_LEN + 1];
        dais_trace_ctx back;
        assert_int_equal(dais_traceparent_format(&c, tp), 0);
        assert_int_equal(parse(tp, &back), 0);
        assert_memory_equal(&back, &c, sizeof(c));
        for (int k = 0; k < i; k += 37)
            assert_true(seen[k] != seen[i]);
    }
}

static void test_log_bind(void **state)
{
    (void)state;
    /* capture stderr in a file while logging */
    char path[] = "/tmp/dais_test_trace_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    dais_trace_ctx c;
    assert_int_equal(parse(TP_OK, &c), 0);
    dais_log_init("node-7", DAIS_LOG_INFO, DAIS_LOG_TEXT);
    dais_trace_log_bind(&c);
    dais_log(DAIS_LOG_INFO, "with trace");
    dais_trace_log_bind(NULL);
    dais_log(DAIS_LOG_INFO, "without trace");
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[1024] = {0};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    char *l1 = strstr(buf, "with trace");
    char *l2 = strstr(buf, "without trace");
    assert_non_null(l1);
    assert_non_null(l2);
    char *tr = strstr(buf, "trace=4bf92f3577b34da6a3ce929d0e0e4736");
    assert_non_null(tr);
    assert_true(tr < l1);
    assert_null(strstr(l1, "trace="));
}

static void test_disabled(void **state)
{
    (void)state;
    dais_err err;
    dais_tracer *t = dais_tracer_new(&(dais_tracer_config){.service_name = "x"}, &err);
    assert_non_null(t);
    assert_false(dais_tracer_enabled(t));
    dais_trace_ctx parent, ctx;
    assert_int_equal(parse(TP_OK, &parent), 0);
    dais_span *s = dais_span_start(t, "op", DAIS_SPAN_SERVER, &parent, &ctx);
    assert_null(s);
    /* the context is still made: same trace, new span id */
    assert_true(ctx.valid);
    assert_memory_equal(ctx.trace_id, parent.trace_id, 16);
    assert_memory_not_equal(ctx.span_id, parent.span_id, 8);
    /* NULL spans are no-ops */
    dais_span_set_str(s, "k", "v");
    dais_span_set_int(s, "k", 1);
    dais_span_set_status(s, DAIS_SPAN_ERROR, "e");
    dais_trace_ctx sc;
    dais_span_ctx(s, &sc);
    assert_false(sc.valid);
    dais_span_end(s);
    assert_int_equal(dais_tracer_flush(t, 10), 0);
    assert_null(dais_span_start(NULL, "op", DAIS_SPAN_SERVER, NULL, &ctx));
    assert_true(ctx.valid);
    assert_false(dais_tracer_enabled(NULL));
    dais_tracer_free(t);
    dais_tracer_free(NULL);

    /* bad endpoints are refused with a message */
    assert_null(dais_tracer_new(&(dais_tracer_config){.endpoint = "ftp://x"}, &err));
    assert_int_equal(err.code, DAIS_EINVAL);
    assert_null(dais_tracer_new(&(dais_tracer_config){.endpoint = "http://a b"}, &err));
}

/* ---- a local OTLP receiver --------------------------------------------------------------- */

typedef struct receiver {
    int lfd;
    uint16_t port;
    pthread_t th;
    atomic_bool stop;
    int status; /* HTTP status to answer */
    pthread_mutex_t mu;
    char *bodies[64];
    char paths[64][64];
    int n;
} receiver;

static void *receiver_main(void *arg)
{
    receiver *r = arg;
    while (!atomic_load(&r->stop)) {
        struct pollfd p = {.fd = r->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(r->lfd, NULL, NULL);
        if (fd < 0) continue;
        char *buf = malloc(1 << 20);
        size_t n = 0;
        long want = -1;
        size_t hdr_end = 0;
        for (;;) {
            ssize_t k = recv(fd, buf + n, (1 << 20) - 1 - n, 0);
            if (k <= 0) break;
            n += (size_t)k;
            buf[n] = '\0';
            if (hdr_end == 0) {
                char *e = strstr(buf, "\r\n\r\n");
                if (e == NULL) continue;
                hdr_end = (size_t)(e - buf) + 4;
                char *cl = strcasestr(buf, "Content-Length:");
                want = cl != NULL ? strtol(cl + 15, NULL, 10) : 0;
            }
            if (n - hdr_end >= (size_t)want) break;
        }
        /* record before answering: once the exporter has its answer, the test may look */
        pthread_mutex_lock(&r->mu);
        if (hdr_end > 0 && r->n < 64) {
            sscanf(buf, "POST %63s", r->paths[r->n]);
            r->bodies[r->n++] = strdup(buf + hdr_end);
        }
        pthread_mutex_unlock(&r->mu);
        char reply[128];
        int rl = snprintf(reply, sizeof(reply),
                          "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                          r->status);
        ssize_t w = send(fd, reply, (size_t)rl, MSG_NOSIGNAL);
        (void)w;
        close(fd);
        free(buf);
    }
    return NULL;
}

static int listen_local(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t sl = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &sl);
    *port = ntohs(a.sin_port);
    return fd;
}

static void receiver_start(receiver *r, int status)
{
    memset(r, 0, sizeof(*r));
    r->status = status;
    pthread_mutex_init(&r->mu, NULL);
    r->lfd = listen_local(&r->port);
    assert_int_equal(pthread_create(&r->th, NULL, receiver_main, r), 0);
}

static void receiver_stop(receiver *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->th, NULL);
    close(r->lfd);
    for (int i = 0; i < r->n; i++)
        free(r->bodies[i]);
    pthread_mutex_destroy(&r->mu);
}

static const char *attr_value(json_t *attrs, const char *key, const char *type)
{
    size_t i;
    json_t *a;
    json_array_foreach(attrs, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0)
            return json_string_value(json_object_get(json_object_get(a, "value"), type));
    }
    return NULL;
}

static void test_export_to_receiver(void **state)
{
    (void)state;
    receiver rcv;
    receiver_start(&rcv, 200);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%u/", (unsigned)rcv.port);
    dais_metrics_registry *reg = dais_metrics_registry_new();
    dais_err err;
    dais_tracer *t = dais_tracer_new(&(dais_tracer_config){.endpoint = ep,
                                                           .service_name = "dais-master",
                                                           .instance_id = "master-1",
                                                           .flush_ms = 50,
                                                           .metrics = reg},
                                     &err);
    assert_non_null(t);
    assert_true(dais_tracer_enabled(t));

    dais_trace_ctx incoming, root_ctx, child_ctx;
    assert_int_equal(parse(TP_OK, &incoming), 0);
    uint64_t t0 = dais_now_ns();
    dais_span *root =
        dais_span_start(t, "POST /api/inference", DAIS_SPAN_SERVER, &incoming, &root_ctx);
    assert_non_null(root);
    dais_trace_ctx got;
    dais_span_ctx(root, &got);
    assert_memory_equal(&got, &root_ctx, sizeof(got));
    dais_span *child =
        dais_span_start(t, "select_worker", DAIS_SPAN_INTERNAL, &root_ctx, &child_ctx);
    dais_span_set_str(child, "worker.id", "w1");
    dais_span_set_int(child, "attempt", 2);
    dais_span_set_int(child, "attempt", 3); /* first value wins */
    dais_span_set_str(child, "bad.utf8",
                      "ok\xff\xc3(\x01"
                      "end");
    usleep(2000);
    dais_span_end(child);
    dais_span_set_int(root, "http.status_code", 503);
    dais_span_set_status(root, DAIS_SPAN_ERROR, "no worker");
    dais_span_end(root);
    uint64_t elapsed = dais_now_ns() - t0;

    assert_int_equal(dais_tracer_flush(t, 5000), 0);
    dais_tracer_stats st;
    dais_tracer_get_stats(t, &st);
    assert_int_equal(st.started, 2);
    assert_int_equal(st.exported, 2);
    assert_int_equal(st.dropped_queue + st.dropped_export, 0);

    pthread_mutex_lock(&rcv.mu);
    assert_int_equal(rcv.n, 1);
    assert_string_equal(rcv.paths[0], "/v1/traces");
    json_error_t je;
    json_t *doc = json_loads(rcv.bodies[0], 0, &je);
    pthread_mutex_unlock(&rcv.mu);
    assert_non_null(doc);
    json_t *rs = json_array_get(json_object_get(doc, "resourceSpans"), 0);
    json_t *rattrs = json_object_get(json_object_get(rs, "resource"), "attributes");
    assert_string_equal(attr_value(rattrs, "service.name", "stringValue"), "dais-master");
    assert_string_equal(attr_value(rattrs, "service.instance.id", "stringValue"), "master-1");
    json_t *ss = json_array_get(json_object_get(rs, "scopeSpans"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ss, "scope"), "name")),
                        "dais");
    json_t *spans = json_object_get(ss, "spans");
    assert_int_equal(json_array_size(spans), 2);
    /* ended in order child, root */
    json_t *c = json_array_get(spans, 0), *p = json_array_get(spans, 1);
    char tid[33], psid[17], csid[17], in_sid[17];
    dais_trace_id_hex(incoming.trace_id, tid);
    dais_span_id_hex(root_ctx.span_id, psid);
    dais_span_id_hex(child_ctx.span_id, csid);
    dais_span_id_hex(incoming.span_id, in_sid);
    assert_string_equal(json_string_value(json_object_get(p, "traceId")), tid);
    assert_string_equal(json_string_value(json_object_get(c, "traceId")), tid);
    assert_string_equal(json_string_value(json_object_get(p, "spanId")), psid);
    assert_string_equal(json_string_value(json_object_get(p, "parentSpanId")), in_sid);
    assert_string_equal(json_string_value(json_object_get(c, "spanId")), csid);
    assert_string_equal(json_string_value(json_object_get(c, "parentSpanId")), psid);
    assert_string_equal(json_string_value(json_object_get(p, "name")), "POST /api/inference");
    assert_int_equal(json_integer_value(json_object_get(p, "kind")), DAIS_SPAN_SERVER);
    assert_int_equal(json_integer_value(json_object_get(c, "kind")), DAIS_SPAN_INTERNAL);
    json_t *status = json_object_get(p, "status");
    assert_int_equal(json_integer_value(json_object_get(status, "code")), 2);
    assert_string_equal(json_string_value(json_object_get(status, "message")), "no worker");
    json_t *cattrs = json_object_get(c, "attributes");
    assert_string_equal(attr_value(cattrs, "worker.id", "stringValue"), "w1");
    assert_string_equal(attr_value(cattrs, "attempt", "intValue"), "2");
    assert_string_equal(attr_value(cattrs, "bad.utf8", "stringValue"), "ok?"
                                                                       "?(?end");
    assert_string_equal(
        attr_value(json_object_get(p, "attributes"), "http.status_code", "intValue"), "503");
    /* times are decimal strings of unix nanoseconds; durations are sensible */
    unsigned long long ps =
        strtoull(json_string_value(json_object_get(p, "startTimeUnixNano")), NULL, 10);
    unsigned long long pe =
        strtoull(json_string_value(json_object_get(p, "endTimeUnixNano")), NULL, 10);
    unsigned long long cs =
        strtoull(json_string_value(json_object_get(c, "startTimeUnixNano")), NULL, 10);
    unsigned long long ce =
        strtoull(json_string_value(json_object_get(c, "endTimeUnixNano")), NULL, 10);
    assert_true(ps > 1600000000ull * 1000000000ull);
    assert_true(ps <= cs && ce <= pe);
    assert_true(ce - cs >= 2000000ull);
    assert_true(pe - ps <= elapsed);
    json_decref(doc);

    char *m = dais_metrics_render_string(reg, 0, NULL, NULL);
    assert_non_null(strstr(m, "dais_trace_spans_exported_total 2\n"));
    assert_non_null(strstr(m, "dais_trace_export_batches_total{result=\"ok\"} 1\n"));
    free(m);
    dais_tracer_free(t);
    dais_metrics_registry_free(reg);
    receiver_stop(&rcv);
}

static void test_unsampled_and_encode(void **state)
{
    (void)state;
    receiver rcv;
    receiver_start(&rcv, 200);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", (unsigned)rcv.port);
    dais_metrics_registry *reg = dais_metrics_registry_new();
    dais_tracer *t = dais_tracer_new(&(dais_tracer_config){.endpoint = ep, .metrics = reg}, NULL);
    assert_non_null(t);
    dais_trace_ctx unsampled, ctx;
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &unsampled),
                     0);
    assert_null(dais_span_start(t, "x", DAIS_SPAN_SERVER, &unsampled, &ctx));
    assert_true(ctx.valid);
    assert_int_equal(ctx.flags, 0);

    /* the encoder on spans still open: a root span has no parentSpanId; long names cut */
    char longname[200];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    dais_span *s = dais_span_start(t, longname, (enum dais_span_kind)42, NULL, NULL);
    char longval[2000];
    memset(longval, 'v', sizeof(longval) - 1);
    longval[sizeof(longval) - 1] = '\0';
    for (int i = 0; i < DAIS_SPAN_MAX_ATTRS + 3; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        dais_span_set_str(s, k, longval);
    }
    char *js = dais_trace_encode_otlp(t, &s, 1);
    assert_non_null(js);
    json_t *doc = json_loads(js, 0, NULL);
    assert_non_null(doc);
    json_t *sp = json_array_get(
        json_object_get(
            json_array_get(json_object_get(json_array_get(json_object_get(doc, "resourceSpans"), 0),
                                           "scopeSpans"),
                           0),
            "spans"),
        0);
    assert_null(json_object_get(sp, "parentSpanId"));
    assert_int_equal(strlen(json_string_value(json_object_get(sp, "name"))), 63);
    assert_int_equal(json_integer_value(json_object_get(sp, "kind")), DAIS_SPAN_INTERNAL);
    /* the first value fills the span's fixed attribute space; later ones do not fit */
    json_t *attrs = json_object_get(sp, "attributes");
    assert_int_equal(json_array_size(attrs), 1);
    const char *v = attr_value(attrs, "k0", "stringValue");
    assert_non_null(v);
    assert_true(strlen(v) > 500 && strlen(v) < sizeof(longval) - 1);
    json_decref(doc);
    free(js);
    dais_span_end(s);
    assert_int_equal(dais_tracer_flush(t, 5000), 0);
    dais_tracer_free(t);
    dais_metrics_registry_free(reg);
    receiver_stop(&rcv);
}

/* Ends `n` spans and returns the longest time one dais_span_end call took (ns). */
static uint64_t end_spans(dais_tracer *t, int n)
{
    uint64_t worst = 0;
    for (int i = 0; i < n; i++) {
        dais_span *s = dais_span_start(t, "op", DAIS_SPAN_INTERNAL, NULL, NULL);
        assert_non_null(s);
        uint64_t a = dais_now_ns();
        dais_span_end(s);
        uint64_t d = dais_now_ns() - a;
        if (d > worst) worst = d;
    }
    return worst;
}

static void test_export_unreachable(void **state)
{
    (void)state;
    /* a port nobody listens on: connection refused */
    uint16_t port;
    int fd = listen_local(&port);
    close(fd);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", (unsigned)port);
    dais_metrics_registry *reg = dais_metrics_registry_new();
    dais_tracer *t = dais_tracer_new(
        &(dais_tracer_config){.endpoint = ep, .flush_ms = 20, .batch_max = 16, .metrics = reg},
        NULL);
    assert_non_null(t);
    uint64_t worst = end_spans(t, 100);
    assert_true(worst < 50000000ull); /* never waits for the collector */
    assert_int_equal(dais_tracer_flush(t, 5000), 0);
    dais_tracer_stats st;
    dais_tracer_get_stats(t, &st);
    assert_int_equal(st.exported, 0);
    assert_int_equal(st.dropped_export + st.dropped_queue, 100);
    assert_true(st.batches_failed >= 100 / 16);
    char *m = dais_metrics_render_string(reg, 0, NULL, NULL);
    char want[128];
    snprintf(want, sizeof(want), "dais_trace_spans_dropped_total{reason=\"export_failed\"} %llu\n",
             (unsigned long long)st.dropped_export);
    assert_non_null(strstr(m, want));
    free(m);
    dais_tracer_free(t);
    dais_metrics_registry_free(reg);
}

static void test_export_non_2xx(void **state)
{
    (void)state;
    receiver rcv;
    receiver_start(&rcv, 500);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", (unsigned)rcv.port);
    dais_metrics_registry *reg = dais_metrics_registry_new();
    dais_tracer *t = dais_tracer_new(
        &(dais_tracer_config){.endpoint = ep, .flush_ms = 20, .metrics = reg}, NULL);
    end_spans(t, 5);
    assert_int_equal(dais_tracer_flush(t, 5000), 0);
    dais_tracer_stats st;
    dais_tracer_get_stats(t, &st);
    assert_int_equal(st.exported, 0);
    assert_int_equal(st.dropped_export, 5);
    dais_tracer_free(t);
    dais_metrics_registry_free(reg);
    receiver_stop(&rcv);
}

static void test_export_slow_collector(void **state)
{
    (void)state;
    /* a listening socket that never accepts: the POST hangs until the export timeout, while
     * the queue (8 spans) fills and the rest are dropped at once */
    uint16_t port;
    int lfd = listen_local(&port);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", (unsigned)port);
    dais_metrics_registry *reg = dais_metrics_registry_new();
    dais_tracer *t = dais_tracer_new(&(dais_tracer_config){.endpoint = ep,
                                                           .queue_max = 8,
                                                           .batch_max = 4,
                                                           .flush_ms = 10,
                                                           .timeout_ms = 300,
                                                           .metrics = reg},
                                     NULL);
    assert_non_null(t);
    end_spans(t, 4); /* one full batch: the export thread is now stuck in the POST */
    usleep(50000);
    uint64_t worst = end_spans(t, 200);
    assert_true(worst < 50000000ull);
    dais_tracer_stats st;
    dais_tracer_get_stats(t, &st);
    assert_true(st.dropped_queue >= 200 - 8);
    /* shutting down with a dead collector takes about one timeout, not one per batch */
    uint64_t a = dais_now_ns();
    dais_tracer_free(t);
    uint64_t took = dais_now_ns() - a;
    assert_true(took < 1500000000ull);
    char *m = dais_metrics_render_string(reg, 0, NULL, NULL);
    assert_non_null(strstr(m, "dais_trace_spans_dropped_total{reason=\"queue_full\"} "));
    free(m);
    dais_metrics_registry_free(reg);
    close(lfd);
}

static atomic_int g_ended;

static void *span_thread(void *arg)
{
    dais_tracer *t = arg;
    for (int i = 0; i < 500; i++) {
        dais_trace_ctx ctx;
        dais_span *s = dais_span_start(t, "worker.decode", DAIS_SPAN_INTERNAL, NULL, &ctx);
        dais_span_set_int(s, "i", i);
        dais_span_end(s);
        atomic_fetch_add(&g_ended, 1);
    }
    return NULL;
}

static void test_concurrent_spans(void **state)
{
    (void)state;
    receiver rcv;
    receiver_start(&rcv, 200);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", (unsigned)rcv.port);
    dais_metrics_registry *reg = dais_metrics_registry_new();
    dais_tracer *t = dais_tracer_new(
        &(dais_tracer_config){
            .endpoint = ep, .queue_max = 4096, .batch_max = 256, .flush_ms = 20, .metrics = reg},
        NULL);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, span_thread, t);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(dais_tracer_flush(t, 10000), 0);
    dais_tracer_stats st;
    dais_tracer_get_stats(t, &st);
    assert_int_equal(st.started, 2000);
    assert_int_equal(st.exported + st.dropped_queue + st.dropped_export, 2000);
    assert_int_equal(st.exported, 2000);
    /* every span arrived exactly once */
    size_t total = 0;
    pthread_mutex_lock(&rcv.mu);
    for (int i = 0; i < rcv.n; i++) {
        json_t *doc = json_loads(rcv.bodies[i], 0, NULL);
        assert_non_null(doc);
        json_t *spans = json_object_get(
            json_array_get(json_object_get(json_array_get(json_object_get(doc, "resourceSpans"), 0),
                                           "scopeSpans"),
                           0),
            "spans");
        total += json_array_size(spans);
        assert_true(json_array_size(spans) <= 256);
        json_decref(doc);
    }
    pthread_mutex_unlock(&rcv.mu);
    assert_int_equal(total, 2000);
    dais_tracer_free(t);
    dais_metrics_registry_free(reg);
    receiver_stop(&rcv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_valid),
        cmocka_unit_test(test_traceparent_invalid),
        cmocka_unit_test(test_tracestate),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_log_bind),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_export_to_receiver),
        cmocka_unit_test(test_unsampled_and_encode),
        cmocka_unit_test(test_export_unreachable),
        cmocka_unit_test(test_export_non_2xx),
        cmocka_unit_test(test_export_slow_collector),
        cmocka_unit_test(test_concurrent_spans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
