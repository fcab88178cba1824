/*
 * The master as a whole (src/master/master.c and the modules it drives), in-process: the
 * master's loop runs on a thread, and this test plays clients and workers over real loopback
 * sockets. The fake workers speak the real cluster protocol through src/proto (discovery with
 * the token proof, sealed heartbeat datagrams, inference frames), so registration, rejection,
 * heartbeats and failure detection, routing, streaming, cancellation and the error paths are
 * all checked without the engine. The system tests (tests/system) repeat the important ones
 * with real `dais worker` processes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/log.h"
#include "master/master.h"
#include "proto/auth.h"
#include "proto/dgram.h"
#include "proto/frame.h"
#include "proto/messages.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TOKEN "unit-test-token"
#define MODEL "tiny"

/* A later attempt of request `id` carries "<id>.<attempt>" on its worker (router.c: frames of
 * an earlier attempt still winding down must not match it). */
static void expect_attempt_id(const char *got, const char *id)
{
    size_t n = strlen(id);
    if (strncmp(got, id, n) != 0 || got[n] != '.' || got[n + 1] < '2' || got[n + 1] > '9')
        fail_msg("request id '%s' is not a later attempt of '%s'", got, id);
}

static dais_master *g_master;
static pthread_t g_thread;
static uint16_t g_http, g_cluster, g_hb;

/* ---- plumbing ----------------------------------------------------------------------------- */

static void *run_master(void *arg)
{
    (void)arg;
    dais_master_run(g_master);
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

static bool recv_exact(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* ---- HTTP client ------------------------------------------------------------------------- */

typedef struct http_resp {
    int status;
    char head[2048];
    char *body;
    size_t body_len;
} http_resp;

static void http_send(int fd, const char *method, const char *path, const char *body)
{
    char req[8192];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, body != NULL ? strlen(body) : 0, body != NULL ? body : "");
    send_all(fd, req, (size_t)n);
}

/* Reads one response (Content-Length or chunked) from fd. */
static void http_read(int fd, http_resp *r)
{
    memset(r, 0, sizeof(*r));
    size_t hl = 0;
    while (hl < sizeof(r->head) - 1) {
        assert_true(recv_exact(fd, r->head + hl, 1));
        hl++;
        if (hl >= 4 && memcmp(r->head + hl - 4, "\r\n\r\n", 4) == 0) break;
    }
    r->head[hl] = '\0';
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
    const char *cl = strcasestr(r->head, "Content-Length: ");
    if (cl != NULL) {
        r->body_len = (size_t)atol(cl + 16);
        r->body = calloc(1, r->body_len + 1);
        assert_true(recv_exact(fd, r->body, r->body_len));
        return;
    }
    assert_non_null(strcasestr(r->head, "Transfer-Encoding: chunked"));
    size_t cap = 1 << 16;
    r->body = calloc(1, cap);
    for (;;) {
        char line[32];
        size_t ll = 0;
        do {
            assert_true(recv_exact(fd, line + ll, 1));
        } while (line[ll++] != '\n' && ll < sizeof(line) - 1);
        line[ll] = '\0';
        size_t n = strtoul(line, NULL, 16);
        if (n == 0) {
            char crlf[2];
            assert_true(recv_exact(fd, crlf, 2));
            return;
        }
        assert_true(r->body_len + n + 1 < cap);
        assert_true(recv_exact(fd, r->body + r->body_len, n));
        r->body_len += n;
        char crlf[2];
        assert_true(recv_exact(fd, crlf, 2));
    }
}

static int http(const char *method, const char *path, const char *body, http_resp *r)
{
    int fd = tcp_connect(g_http);
    http_send(fd, method, path, body);
    http_read(fd, r);
    close(fd);
    return r->status;
}

static void http_free(http_resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* ---- a fake worker that speaks the real protocol -------------------------------------------- */

typedef struct fake_worker {
    char id[64];
    int tcp;
    int udp;
    uint16_t udp_port;
    uint64_t session;
    uint8_t key[DAIS_SESSION_KEY_LEN];
    dais_seq_window rx;
    uint64_t tx;
    char nonce[DAIS_NONCE_HEX_LEN + 1];
    int32_t active; /* reported in acks */
} fake_worker;

static void frame_send(int fd, const dais_msg *m)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(dais_frame_encode(m, NULL, &buf, &len), 0);
    send_all(fd, buf, len);
    free(buf);
}

/* Receives one frame; NULL on EOF or timeout. */
static dais_msg *frame_recv(int fd)
{
    uint8_t hdr[DAIS_FRAME_HEADER_LEN];
    if (!recv_exact(fd, hdr, sizeof(hdr))) return NULL;
    dais_frame_header h;
    dais_err err;
    assert_int_equal(dais_frame_header_parse(hdr, NULL, &h, &err), 0);
    size_t total = DAIS_FRAME_HEADER_LEN + h.json_len + h.bin_len;
    uint8_t *buf = malloc(total);
    memcpy(buf, hdr, sizeof(hdr));
    assert_true(recv_exact(fd, buf + sizeof(hdr), total - sizeof(hdr)));
    dais_msg *m = NULL;
    size_t used;
    assert_int_equal(dais_frame_decode_msg(buf, total, NULL, &m, &used, &err), 0);
    free(buf);
    return m;
}

/* Connects and sends NODE_DISCOVERY; returns the master's answer. */
/* The layer range the next fw_register announces; -1: the whole model. */
static int32_t g_layer_first = -1, g_layer_last = -1;

static dais_msg *fw_register(fake_worker *w, const char *id, const char *token, const char *model)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->id, sizeof(w->id), "%s", id);
    w->udp = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    assert_int_equal(bind(w->udp, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(w->udp, (struct sockaddr *)&a, &al);
    w->udp_port = ntohs(a.sin_port);
    w->tcp = tcp_connect(g_cluster);

    dais_msg_discovery d;
    memset(&d, 0, sizeof(d));
    snprintf(d.node_id, sizeof(d.node_id), "%s", id);
    d.protocol_version = DAIS_PROTO_VERSION;
    snprintf(d.addr, sizeof(d.addr), "127.0.0.1");
    d.heartbeat_port = w->udp_port;
    d.cores = 2;
    d.threads = 1;
    d.memory_total = 1 << 30;
    d.memory_available = 1 << 29;
    snprintf(d.model.name, sizeof(d.model.name), "%s", model);
    memset(d.model.hash, 'a', 64);
    d.model.n_vocab = 512;
    d.model.n_layers = 5;
    d.model.layer_first = g_layer_first >= 0 ? g_layer_first : 0;
    d.model.layer_last = g_layer_last >= 0 ? g_layer_last : 5;
    d.model.n_ctx_train = 512;
    d.n_ctx = 512;
    d.slots = 2;
    d.batch = 64;
    d.queue = 0;
    assert_int_equal(dais_auth_make_discovery(token, strlen(token), id, dais_wall_ms(), &d.auth),
                     0);
    memcpy(w->nonce, d.auth.nonce, sizeof(w->nonce));
    dais_msg *m = dais_msg_new(DAIS_MSG_NODE_DISCOVERY, id, "master");
    assert_int_equal(dais_discovery_encode(&d, m), 0);
    frame_send(w->tcp, m);
    dais_msg_free(m);
    dais_msg *reply = frame_recv(w->tcp);
    assert_non_null(reply);
    if (reply->type == DAIS_MSG_NODE_ACCEPT) {
        dais_msg_accept acc;
        dais_err err;
        assert_int_equal(dais_accept_decode(reply, &acc, &err), 0);
        assert_true(dais_auth_accept_verify(token, strlen(token), id, w->nonce, acc.master_nonce,
                                            acc.hmac));
        w->session = acc.session_id;
        dais_auth_session_key(token, strlen(token), id, acc.master_nonce, w->nonce, w->key);
    }
    return reply;
}

/* Answers heartbeats for `ms` milliseconds. Returns how many it answered. */
static int fw_heartbeats(fake_worker *w, int ms)
{
    int answered = 0;
    uint64_t end = dais_now_ns() + (uint64_t)ms * 1000000ull;
    for (;;) {
        uint64_t now = dais_now_ns();
        if (now >= end) return answered;
        struct pollfd p = {.fd = w->udp, .events = POLLIN};
        if (poll(&p, 1, (int)((end - now) / 1000000ull) + 1) != 1) continue;
        uint8_t buf[DAIS_DGRAM_MAX];
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(w->udp, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n <= 0) continue;
        dais_msg *m = NULL;
        uint64_t seq = 0;
        dais_err err;
        if (dais_dgram_open(buf, (size_t)n, w->key, &w->rx, &m, &seq, &err) != DAIS_DGRAM_OK)
            continue;
        dais_msg_heartbeat hb;
        assert_int_equal(dais_heartbeat_decode(m, &hb, &err), 0);
        dais_msg_free(m);
        dais_msg_heartbeat_ack ack;
        memset(&ack, 0, sizeof(ack));
        ack.echo_seq = seq;
        ack.echo_sent_ms = hb.sent_ms;
        snprintf(ack.health, sizeof(ack.health), "ok");
        ack.sys.cpu_percent = 12.5;
        ack.sys.mem_total = 1 << 30;
        ack.sys.mem_used = 1 << 28;
        ack.sys.load1 = 0.5;
        ack.load.active = w->active;
        ack.load.slots = 2;
        ack.load.tokens_per_s = 42;
        dais_msg *r = dais_msg_new(DAIS_MSG_HEARTBEAT_ACK, w->id, "master");
        assert_int_equal(dais_heartbeat_ack_encode(&ack, r), 0);
        size_t len;
        assert_int_equal(dais_dgram_seal(r, w->session, ++w->tx, w->key, buf, sizeof(buf), &len),
                         0);
        dais_msg_free(r);
        sendto(w->udp, buf, len, 0, (struct sockaddr *)&from, fl);
        answered++;
    }
}

static void fw_close(fake_worker *w)
{
    if (w->tcp >= 0) close(w->tcp);
    if (w->udp >= 0) close(w->udp);
    w->tcp = w->udp = -1;
}

/* Sends one INFERENCE_RESPONSE frame. */
static void fw_respond(fake_worker *w, const char *req_id, uint32_t index, bool final,
                       bool prompt_ids, const char *text, const int32_t *toks, int32_t n,
                       enum dais_finish finish)
{
    dais_msg_infer_resp r;
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "%s", req_id);
    r.index = index;
    r.final = final;
    r.prompt_token_ids = prompt_ids;
    r.text = text;
    r.text_len = strlen(text);
    r.tokens = toks;
    r.n_tokens = n;
    r.finish = final ? finish : DAIS_FINISH_NONE;
    if (final) {
        r.prompt_tokens = 3;
        r.completion_tokens = 2;
        r.timings.queue_ms = 0.5;
        r.timings.total_ms = 3;
    }
    dais_msg *m = dais_msg_new(DAIS_MSG_INFERENCE_RESPONSE, w->id, "master");
    assert_int_equal(dais_infer_resp_encode(&r, m), 0);
    frame_send(w->tcp, m);
    dais_msg_free(m);
}

/* Reads the next INFERENCE_REQUEST (answering heartbeats is not needed within a test step). */
static void fw_expect_request(fake_worker *w, dais_msg_infer_req *q)
{
    dais_msg *m = frame_recv(w->tcp);
    assert_non_null(m);
    assert_int_equal(m->type, DAIS_MSG_INFERENCE_REQUEST);
    dais_err err;
    assert_int_equal(dais_infer_req_decode(m, q, &err), 0);
    dais_msg_free(m);
}

/* Answers a request with "Once" + " upon" and finish stop. */
static void fw_serve(fake_worker *w, const dais_msg_infer_req *q)
{
    static const int32_t prompt[3] = {1, 403, 407};
    static const int32_t t1[1] = {261}, t2[1] = {378};
    fw_respond(w, q->request_id, 0, false, true, "", prompt, 3, DAIS_FINISH_NONE);
    fw_respond(w, q->request_id, 1, false, false, "Once", t1, 1, DAIS_FINISH_NONE);
    fw_respond(w, q->request_id, 2, true, false, " upon", t2, 1, DAIS_FINISH_STOP);
}

static bool wait_state(const char *id, const char *state, int ms)
{
    char needle[160];
    snprintf(needle, sizeof(needle), "\"id\":\"%s\",\"state\":\"%s\"", id, state);
    for (int t = 0; t < ms; t += 20) {
        http_resp r;
        http("GET", "/api/cluster", NULL, &r);
        bool found = r.body != NULL && strstr(r.body, needle) != NULL;
        http_free(&r);
        if (found) return true;
        sleep_ms(20);
    }
    return false;
}

/* ---- setup --------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    dais_log_init("test", DAIS_LOG_WARN, DAIS_LOG_TEXT);
    dais_master_config cfg;
    dais_master_config_default(&cfg);
    snprintf(cfg.http_addr, sizeof(cfg.http_addr), "127.0.0.1");
    snprintf(cfg.cluster_addr, sizeof(cfg.cluster_addr), "127.0.0.1");
    snprintf(cfg.heartbeat_addr, sizeof(cfg.heartbeat_addr), "127.0.0.1");
    cfg.http_port = cfg.cluster_port = cfg.heartbeat_port = 0;
    cfg.metrics_enabled = false;
    snprintf(cfg.token, sizeof(cfg.token), TOKEN);
    cfg.token_len = strlen(TOKEN);
    snprintf(cfg.models[0].name, sizeof(cfg.models[0].name), MODEL);
    cfg.n_models = 1;
    cfg.heartbeat_interval_ms = 100;
    cfg.heartbeat_misses = 3;
    cfg.body_limit = 4096;
    cfg.shutdown_grace_ms = 200;
    cfg.stall_timeout_ms = 300; /* test_stalled_worker_failover */
    dais_err err;
    g_master = dais_master_new(&cfg, &err);
    assert_non_null(g_master);
    g_http = dais_master_http_port(g_master);
    g_cluster = dais_master_cluster_port(g_master);
    g_hb = dais_master_heartbeat_port(g_master);
    assert_true(g_http != 0 && g_cluster != 0 && g_hb != 0);
    assert_int_equal(pthread_create(&g_thread, NULL, run_master, NULL), 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kill(getpid(), SIGTERM); /* the master's loop handles it: graceful stop */
    pthread_join(g_thread, NULL);
    dais_master_free(g_master);
    return 0;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_no_worker(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http("GET", "/health", NULL, &r), 200);
    http_free(&r);
    assert_int_equal(http("GET", "/ready", NULL, &r), 503);
    assert_non_null(strcasestr(r.head, "Retry-After: 1"));
    http_free(&r);
    assert_int_equal(http("POST", "/api/inference", "{\"prompt\":\"x\"}", &r), 503);
    assert_non_null(strcasestr(r.head, "Retry-After:"));
    assert_non_null(strstr(r.body, "\"code\":\"no_worker\""));
    http_free(&r);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    http_resp r;
    assert_int_equal(http("POST", "/api/inference", "{\"prompt\": \"a\",\n \"x\": }", &r), 400);
    assert_non_null(strstr(r.body, "\"line\":2"));
    http_free(&r);
    assert_int_equal(http("POST", "/api/inference", "{\"prompt\":\"a\",\"top_p\":7}", &r), 400);
    assert_non_null(strstr(r.body, "\"field\":\"top_p\""));
    http_free(&r);
    assert_int_equal(http("POST", "/api/inference", "{\"model\":\"other\",\"prompt\":\"a\"}", &r),
                     404);
    assert_non_null(strstr(r.body, "model_not_found"));
    http_free(&r);
    char big[6000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(http("POST", "/api/inference", big, &r), 413);
    assert_non_null(strstr(r.body, "body_too_large"));
    http_free(&r);
    assert_int_equal(http("GET", "/api/inference", NULL, &r), 405);
    assert_non_null(strcasestr(r.head, "Allow: POST"));
    http_free(&r);
    assert_int_equal(http("DELETE", "/ready", NULL, &r), 405);
    http_free(&r);
    assert_int_equal(http("GET", "/what", NULL, &r), 404);
    http_free(&r);
    /* a malformed head gets a JSON 400 too */
    int fd = tcp_connect(g_http);
    send_all(fd, "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 28);
    http_read(fd, &r);
    close(fd);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\"error\""));
    http_free(&r);
}

static void test_reject_bad_token_and_model(void **state)
{
    (void)state;
    fake_worker w;
    dais_msg *m = fw_register(&w, "intruder", "wrong-token", MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_REJECT);
    dais_msg_reject rj;
    dais_err err;
    assert_int_equal(dais_reject_decode(m, &rj, &err), 0);
    assert_int_equal(rj.reason, DAIS_REJECT_BAD_TOKEN);
    assert_false(rj.retry);
    dais_msg_free(m);
    char c;
    assert_true(recv(w.tcp, &c, 1, 0) <= 0); /* the master closed it */
    fw_close(&w);

    m = fw_register(&w, "other-model", TOKEN, "llama-70b");
    assert_int_equal(m->type, DAIS_MSG_NODE_REJECT);
    assert_int_equal(dais_reject_decode(m, &rj, &err), 0);
    assert_int_equal(rj.reason, DAIS_REJECT_UNKNOWN_MODEL);
    dais_msg_free(m);
    fw_close(&w);

    http_resp r;
    http("GET", "/api/cluster", NULL, &r);
    assert_non_null(strstr(r.body, "\"bad_token\":1"));
    assert_non_null(strstr(r.body, "\"unknown_model\":1"));
    assert_null(strstr(r.body, "intruder"));
    http_free(&r);
}

static void test_register_heartbeat_infer(void **state)
{
    (void)state;
    fake_worker w;
    dais_msg *m = fw_register(&w, "w1", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    /* joining until the first heartbeat is answered */
    assert_true(fw_heartbeats(&w, 150) >= 1);
    assert_true(wait_state("w1", "active", 1000));
    http_resp r;
    assert_int_equal(http("GET", "/ready", NULL, &r), 200);
    http_free(&r);
    fw_heartbeats(&w, 150);
    http("GET", "/api/cluster", NULL, &r);
    assert_non_null(strstr(r.body, "\"cpu_percent\":12.5"));
    assert_non_null(strstr(r.body, "\"tokens_per_s\":42"));
    assert_non_null(strstr(r.body, "\"slots\":2"));
    http_free(&r);

    /* a non-streamed request */
    int fd = tcp_connect(g_http);
    http_send(fd, "POST", "/api/inference",
              "{\"prompt\":\"Once upon\",\"max_tokens\":5,\"temperature\":0,\"stop\":[\"x\"],"
              "\"seed\":9}");
    dais_msg_infer_req q;
    fw_expect_request(&w, &q);
    assert_string_equal(q.prompt, "Once upon");
    assert_string_equal(q.model, MODEL);
    assert_int_equal(q.params.max_tokens, 5);
    assert_true(q.params.temperature == 0.0f);
    assert_int_equal(q.params.seed, 9);
    assert_int_equal(q.params.n_stop, 1);
    assert_true(q.deadline_ms > 0);
    fw_serve(&w, &q);
    http_read(fd, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"text\":\"Once upon\""));
    assert_non_null(strstr(r.body, "\"finish_reason\":\"stop\""));
    assert_non_null(strstr(r.body, "\"worker\":\"w1\""));
    assert_non_null(strstr(r.body, "\"completion_tokens\":2"));
    assert_non_null(strstr(r.body, "\"ttft_ms\""));
    http_free(&r);
    dais_infer_req_clear(&q);

    /* keep-alive: a streamed one on the same connection */
    http_send(fd, "POST", "/api/inference", "{\"prompt\":\"Once\",\"stream\":true}");
    fw_expect_request(&w, &q);
    fw_serve(&w, &q);
    http_read(fd, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "Content-Type: text/event-stream"));
    const char *e1 = strstr(r.body, "event: token\ndata: {\"text\":\"Once\"}\n\n");
    const char *e2 = strstr(r.body, "event: token\ndata: {\"text\":\" upon\"}\n\n");
    const char *e3 = strstr(r.body, "event: done\ndata: {");
    assert_true(e1 != NULL && e2 > e1 && e3 > e2);
    http_free(&r);
    dais_infer_req_clear(&q);

    /* the client hangs up: the worker gets CANCEL */
    http_send(fd, "POST", "/api/inference", "{\"prompt\":\"long\",\"max_tokens\":100}");
    fw_expect_request(&w, &q);
    close(fd);
    m = frame_recv(w.tcp);
    assert_non_null(m);
    assert_int_equal(m->type, DAIS_MSG_CANCEL);
    dais_msg_cancel c;
    dais_err err;
    assert_int_equal(dais_cancel_decode(m, &c, &err), 0);
    assert_string_equal(c.request_id, q.request_id);
    dais_msg_free(m);
    /* its late final frame is ignored */
    fw_respond(&w, q.request_id, 0, true, false, "", NULL, 0, DAIS_FINISH_CANCELLED);
    dais_infer_req_clear(&q);

    /* worker errors map to statuses */
    fd = tcp_connect(g_http);
    http_send(fd, "POST", "/api/inference", "{\"prompt\":\"too long\"}");
    fw_expect_request(&w, &q);
    dais_msg *e = dais_msg_new(DAIS_MSG_ERROR, "w1", "master");
    dais_msg_error me;
    memset(&me, 0, sizeof(me));
    snprintf(me.code, sizeof(me.code), "ctx_full");
    snprintf(me.message, sizeof(me.message), "prompt of 900 tokens does not fit 512");
    snprintf(me.request_id, sizeof(me.request_id), "%s", q.request_id);
    assert_int_equal(dais_error_encode(&me, e), 0);
    frame_send(w.tcp, e);
    dais_msg_free(e);
    http_read(fd, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "context_length_exceeded"));
    http_free(&r);
    dais_infer_req_clear(&q);

    /* the only worker's connection drops mid-request, after output: the request waits in the
     * model's queue (no 502) while new requests get 503 + Retry-After at once; when a worker
     * comes back it continues there from the prompt's ids plus the token so far */
    http_send(fd, "POST", "/api/inference", "{\"prompt\":\"x\",\"max_tokens\":4}");
    fw_expect_request(&w, &q);
    static const int32_t p1[1] = {1}, t1[1] = {5}, t2[1] = {6};
    fw_respond(&w, q.request_id, 0, false, true, "", p1, 1, DAIS_FINISH_NONE);
    fw_respond(&w, q.request_id, 1, false, false, "Hi", t1, 1, DAIS_FINISH_NONE);
    char id[DAIS_REQUEST_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s", q.request_id);
    dais_infer_req_clear(&q);
    sleep_ms(50);
    fw_close(&w);
    assert_true(wait_state("w1", "dead", 1000));
    assert_int_equal(http("GET", "/ready", NULL, &r), 503);
    http_free(&r);
    assert_int_equal(http("POST", "/api/inference", "{\"prompt\":\"y\"}", &r), 503);
    assert_non_null(strcasestr(r.head, "Retry-After:"));
    assert_non_null(strstr(r.body, "\"code\":\"no_worker\""));
    http_free(&r);
    struct pollfd pw = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pw, 1, 100), 0); /* the waiting request got no answer yet */
    m = fw_register(&w, "w1", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    fw_heartbeats(&w, 150);
    fw_expect_request(&w, &q);
    expect_attempt_id(q.request_id, id);
    assert_null(q.prompt);
    assert_int_equal(q.n_tokens, 2);
    assert_int_equal(q.tokens[1], 5);
    assert_int_equal(q.n_generated, 1);
    assert_int_equal(q.params.max_tokens, 3);
    static const int32_t cont[2] = {1, 5};
    fw_respond(&w, q.request_id, 0, false, true, "", cont, 2, DAIS_FINISH_NONE);
    fw_respond(&w, q.request_id, 1, true, false, " there", t2, 1, DAIS_FINISH_STOP);
    dais_infer_req_clear(&q);
    http_read(fd, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"text\":\"Hi there\""));
    assert_non_null(strstr(r.body, "\"attempts\":2"));
    http_free(&r);
    close(fd);
    fw_close(&w);
    assert_true(wait_state("w1", "dead", 1000));
    assert_int_equal(http("GET", "/ready", NULL, &r), 503);
    http_free(&r);
}

static void test_silent_worker_suspect_then_dead(void **state)
{
    (void)state;
    fake_worker w;
    dais_msg *m = fw_register(&w, "w2", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    fw_heartbeats(&w, 250);
    assert_true(wait_state("w2", "active", 1000));
    /* stop answering (like SIGSTOP): suspect, then dead within 3 misses + a tick */
    uint64_t t0 = dais_now_ns();
    assert_true(wait_state("w2", "suspect", 1000));
    assert_true(wait_state("w2", "dead", 1000));
    double took_ms = (double)(dais_now_ns() - t0) / 1e6;
    assert_true(took_ms < 600);
    /* the master closed its connection, so the worker can register again */
    char c;
    assert_true(recv(w.tcp, &c, 1, 0) <= 0);
    fw_close(&w);
    m = fw_register(&w, "w2", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    fw_heartbeats(&w, 150);
    assert_true(wait_state("w2", "active", 1000));

    /* a second registration with the same id replaces the first session */
    fake_worker w2;
    m = fw_register(&w2, "w2", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    assert_true(recv(w.tcp, &c, 1, 0) <= 0);
    fw_close(&w);
    fw_heartbeats(&w2, 150);
    assert_true(wait_state("w2", "active", 1000));
    http_resp r;
    http("GET", "/api/cluster", NULL, &r);
    const char *first = strstr(r.body, "\"id\":\"w2\"");
    assert_non_null(first);
    assert_null(strstr(first + 1, "\"id\":\"w2\""));
    http_free(&r);
    fw_close(&w2);
}

static void test_breaker_opens_after_failures(void **state)
{
    (void)state;
    fake_worker w;
    dais_msg *m = fw_register(&w, "flaky", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    fw_heartbeats(&w, 150);
    assert_true(wait_state("flaky", "active", 1000));
    /* five internal errors in a row (the default streak) open its breaker */
    int fd = tcp_connect(g_http);
    http_resp r;
    for (int i = 0; i < 5; i++) {
        http_send(fd, "POST", "/api/inference", "{\"prompt\":\"x\"}");
        dais_msg_infer_req q;
        fw_expect_request(&w, &q);
        dais_msg *e = dais_msg_new(DAIS_MSG_ERROR, "flaky", "master");
        dais_msg_error me;
        memset(&me, 0, sizeof(me));
        snprintf(me.code, sizeof(me.code), "internal");
        snprintf(me.message, sizeof(me.message), "out of memory");
        snprintf(me.request_id, sizeof(me.request_id), "%s", q.request_id);
        assert_int_equal(dais_error_encode(&me, e), 0);
        frame_send(w.tcp, e);
        dais_msg_free(e);
        http_read(fd, &r);
        assert_int_equal(r.status, 502);
        assert_non_null(strstr(r.body, "worker_error"));
        http_free(&r);
        dais_infer_req_clear(&q);
    }
    fw_heartbeats(&w, 120);
    http("GET", "/api/cluster", NULL, &r);
    assert_non_null(strstr(r.body, "\"breaker\":{\"state\":\"open\""));
    http_free(&r);
    /* nothing goes to it while open: no worker takes the request */
    http_send(fd, "POST", "/api/inference", "{\"prompt\":\"x\"}");
    http_read(fd, &r);
    assert_int_equal(r.status, 503);
    http_free(&r);
    struct pollfd p = {.fd = w.tcp, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 100), 0); /* no INFERENCE_REQUEST arrived */
    close(fd);
    fw_close(&w);
}

/* Which of two fake workers has a frame waiting (the balancer picks at random). */
static fake_worker *which_has_frame(fake_worker *a, fake_worker *b)
{
    struct pollfd p[2] = {{.fd = a->tcp, .events = POLLIN}, {.fd = b->tcp, .events = POLLIN}};
    assert_int_equal(poll(p, 2, 3000) > 0, 1);
    return (p[0].revents & POLLIN) ? a : b;
}

static void test_failover_mid_stream(void **state)
{
    (void)state;
    fake_worker wa, wb;
    dais_msg *m = fw_register(&wa, "fa", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    m = fw_register(&wb, "fb", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    fw_heartbeats(&wa, 120);
    fw_heartbeats(&wb, 120);
    assert_true(wait_state("fa", "active", 1000) && wait_state("fb", "active", 1000));

    int fd = tcp_connect(g_http);
    http_send(fd, "POST", "/api/inference",
              "{\"prompt\":\"Once upon\",\"max_tokens\":5,\"temperature\":0,\"stream\":true}");
    fake_worker *first = which_has_frame(&wa, &wb), *second = first == &wa ? &wb : &wa;
    dais_msg_infer_req q;
    fw_expect_request(first, &q);
    static const int32_t prompt[3] = {1, 403, 407}, t1[1] = {261}, t2[1] = {378};
    fw_respond(first, q.request_id, 0, false, true, "", prompt, 3, DAIS_FINISH_NONE);
    fw_respond(first, q.request_id, 1, false, false, "Once", t1, 1, DAIS_FINISH_NONE);
    char id[DAIS_REQUEST_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s", q.request_id);
    dais_infer_req_clear(&q);
    sleep_ms(30);
    close(first->tcp); /* dies mid-generation */
    first->tcp = -1;

    /* the other worker continues from the prompt's ids plus the token already streamed */
    fw_expect_request(second, &q);
    expect_attempt_id(q.request_id, id);
    assert_null(q.prompt);
    assert_int_equal(q.n_tokens, 4);
    assert_int_equal(q.tokens[0], 1);
    assert_int_equal(q.tokens[2], 407);
    assert_int_equal(q.tokens[3], 261);
    assert_int_equal(q.n_generated, 1);
    assert_int_equal(q.params.max_tokens, 4);
    static const int32_t cont[4] = {1, 403, 407, 261};
    fw_respond(second, q.request_id, 0, false, true, "", cont, 4, DAIS_FINISH_NONE);
    fw_respond(second, q.request_id, 1, true, false, " upon", t2, 1, DAIS_FINISH_STOP);
    dais_infer_req_clear(&q);

    http_resp r;
    http_read(fd, &r);
    assert_int_equal(r.status, 200);
    const char *e1 = strstr(r.body, "data: {\"text\":\"Once\"}");
    const char *e2 = strstr(r.body, "data: {\"text\":\" upon\"}");
    const char *done = strstr(r.body, "event: done");
    assert_true(e1 != NULL && e2 > e1 && done > e2);
    assert_null(strstr(r.body, "event: error"));
    assert_non_null(strstr(done, "\"completion_tokens\":2"));
    assert_non_null(strstr(done, "\"prompt_tokens\":3"));
    assert_non_null(strstr(done, "\"attempts\":2"));
    http_free(&r);
    close(fd);
    fw_close(&wa);
    fw_close(&wb);
}

/* A worker that keeps its connection and answers heartbeats but stops sending frames for a
 * request (a wedged generation; SIGSTOP looks the same on the TCP side): after the stall
 * timeout the master CANCELs it there and continues on the other worker from the prompt's ids
 * plus the token already streamed; the client gets one complete answer. */
static void test_stalled_worker_failover(void **state)
{
    (void)state;
    fake_worker wa, wb;
    dais_msg *m = fw_register(&wa, "sa", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    m = fw_register(&wb, "sb", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    fw_heartbeats(&wa, 120);
    fw_heartbeats(&wb, 120);
    assert_true(wait_state("sa", "active", 1000) && wait_state("sb", "active", 1000));

    int fd = tcp_connect(g_http);
    http_send(fd, "POST", "/api/inference",
              "{\"prompt\":\"Once upon\",\"max_tokens\":5,\"temperature\":0,\"stream\":true}");
    fake_worker *first = which_has_frame(&wa, &wb), *second = first == &wa ? &wb : &wa;
    dais_msg_infer_req q;
    fw_expect_request(first, &q);
    static const int32_t prompt[3] = {1, 403, 407}, t1[1] = {261}, t2[1] = {378};
    fw_respond(first, q.request_id, 0, false, true, "", prompt, 3, DAIS_FINISH_NONE);
    fw_respond(first, q.request_id, 1, false, false, "Once", t1, 1, DAIS_FINISH_NONE);
    char id[DAIS_REQUEST_ID_MAX + 1];
    snprintf(id, sizeof(id), "%s", q.request_id);
    dais_infer_req_clear(&q);
    /* both stay alive for the detector; `first` never sends another frame */
    for (int i = 0; i < 25; i++) {
        fw_heartbeats(first, 20);
        fw_heartbeats(second, 20);
        struct pollfd p = {.fd = first->tcp, .events = POLLIN};
        if (poll(&p, 1, 0) == 1) break;
    }

    /* the silent worker was told to drop the request */
    m = frame_recv(first->tcp);
    assert_non_null(m);
    assert_int_equal(m->type, DAIS_MSG_CANCEL);
    dais_msg_free(m);

    fw_expect_request(second, &q);
    expect_attempt_id(q.request_id, id);
    assert_null(q.prompt);
    assert_int_equal(q.n_tokens, 4);
    assert_int_equal(q.tokens[3], 261);
    assert_int_equal(q.n_generated, 1);
    assert_int_equal(q.params.max_tokens, 4);
    static const int32_t cont[4] = {1, 403, 407, 261};
    fw_respond(second, q.request_id, 0, false, true, "", cont, 4, DAIS_FINISH_NONE);
    fw_respond(second, q.request_id, 1, true, false, " upon", t2, 1, DAIS_FINISH_STOP);
    dais_infer_req_clear(&q);
    /* a late frame from the stalled attempt matches nothing and is ignored */
    fw_respond(first, id, 2, false, false, " late", t2, 1, DAIS_FINISH_NONE);

    http_resp r;
    http_read(fd, &r);
    assert_int_equal(r.status, 200);
    const char *e1 = strstr(r.body, "data: {\"text\":\"Once\"}");
    const char *e2 = strstr(r.body, "data: {\"text\":\" upon\"}");
    const char *done = strstr(r.body, "event: done");
    assert_true(e1 != NULL && e2 > e1 && done > e2);
    assert_null(strstr(r.body, "event: error"));
    assert_null(strstr(r.body, "late"));
    assert_non_null(strstr(done, "\"completion_tokens\":2"));
    assert_non_null(strstr(done, "\"attempts\":2"));
    http_free(&r);
    close(fd);
    fw_close(&wa);
    fw_close(&wb);
}

static void test_forged_datagrams_dropped(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(g_hb)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint8_t junk[64];
    memset(junk, 0x41, sizeof(junk));
    sendto(fd, junk, sizeof(junk), 0, (struct sockaddr *)&a, sizeof(a));
    /* a well-formed datagram for a session that does not exist */
    dais_msg *m = dais_msg_new(DAIS_MSG_HEARTBEAT_ACK, "ghost", "master");
    uint8_t key[DAIS_SESSION_KEY_LEN] = {0};
    uint8_t buf[DAIS_DGRAM_MAX];
    size_t len;
    assert_int_equal(dais_dgram_seal(m, 12345, 1, key, buf, sizeof(buf), &len), 0);
    dais_msg_free(m);
    sendto(fd, buf, len, 0, (struct sockaddr *)&a, sizeof(a));
    close(fd);
    sleep_ms(50);
    http_resp r;
    http("GET", "/api/cluster", NULL, &r);
    assert_non_null(strstr(r.body, "\"malformed\":1"));
    assert_non_null(strstr(r.body, "\"unknown_session\":1"));
    http_free(&r);
    assert_int_equal(http("GET", "/health", NULL, &r), 200);
    http_free(&r);
}

static void test_garbage_on_cluster_port(void **state)
{
    (void)state;
    int fd = tcp_connect(g_cluster);
    send_all(fd, "GET / HTTP/1.1\r\n\r\n", 18);
    char c;
    assert_true(recv(fd, &c, 1, 0) <= 0);
    close(fd);
    http_resp r;
    assert_int_equal(http("GET", "/health", NULL, &r), 200);
    http_free(&r);
}

/* Reads frames from w until one of `type` arrives (CANCELs for earlier attempts may come
 * first). */
static dais_msg *fw_expect_type(fake_worker *w, enum dais_msg_type type)
{
    for (int i = 0; i < 16; i++) {
        dais_msg *m = frame_recv(w->tcp);
        assert_non_null(m);
        if (m->type == type) return m;
        dais_msg_free(m);
    }
    fail_msg("no %s arrived", dais_msg_type_name(type));
    return NULL;
}

static void fw_shard(fake_worker *w, const char *id, enum dais_shard_kind kind, int32_t pos,
                     int32_t n, const int32_t *tokens, const float *hidden, int32_t dim)
{
    dais_msg_shard a = {.kind = kind, .pos = pos, .n_tokens = n, .dim = dim};
    snprintf(a.request_id, sizeof(a.request_id), "%s", id);
    a.tokens = (int32_t *)tokens;
    a.hidden = (float *)hidden;
    dais_msg *m = dais_msg_new(DAIS_MSG_SHARD_ACTIVATION, w->id, "master");
    assert_int_equal(dais_shard_encode(&a, m), 0);
    frame_send(w->tcp, m);
    dais_msg_free(m);
}

/* Two fake stages, [0,2) and [2,5): the master sends the request to the last stage with
 * pipeline set, relays the prompt ids, the hidden states and the next token, closes the first
 * stage's sequence when the request ends; a first stage that keeps failing ends the request
 * with 503 after its attempts (and the master survives freeing it mid-failure). */
static void test_pipeline_relay_and_stage_failure(void **state)
{
    (void)state;
    fake_worker head, tail;
    g_layer_first = 0, g_layer_last = 2;
    dais_msg *m = fw_register(&head, "head", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    g_layer_first = 2, g_layer_last = 5;
    m = fw_register(&tail, "tail", TOKEN, MODEL);
    assert_int_equal(m->type, DAIS_MSG_NODE_ACCEPT);
    dais_msg_free(m);
    g_layer_first = g_layer_last = -1;
    fw_heartbeats(&head, 120);
    fw_heartbeats(&tail, 120);
    assert_true(wait_state("head", "active", 1000) && wait_state("tail", "active", 1000));

    int fd = tcp_connect(g_http);
    http_send(fd, "POST", "/api/inference",
              "{\"prompt\":\"x\",\"max_tokens\":2,\"temperature\":0}");
    dais_msg_infer_req q;
    fw_expect_request(&tail, &q);
    assert_true(q.pipeline);
    char rid[DAIS_REQUEST_ID_MAX + 1];
    snprintf(rid, sizeof(rid), "%s", q.request_id);
    dais_infer_req_clear(&q);
    static const int32_t prompt[3] = {1, 403, 407}, t1[1] = {261};
    fw_respond(&tail, rid, 0, false, true, "", prompt, 3, DAIS_FINISH_NONE);
    /* the prompt's ids reach the first stage under the attempt's sequence id */
    m = fw_expect_type(&head, DAIS_MSG_SHARD_ACTIVATION);
    dais_msg_shard a;
    dais_err err;
    assert_int_equal(dais_shard_decode(m, &a, &err), 0);
    dais_msg_free(m);
    assert_int_equal(a.kind, DAIS_SHARD_TOKENS);
    assert_int_equal(a.pos, 0);
    assert_int_equal(a.n_tokens, 3);
    assert_memory_equal(a.tokens, prompt, sizeof(prompt));
    char sid[DAIS_REQUEST_ID_MAX + 1];
    snprintf(sid, sizeof(sid), "%s", a.request_id);
    assert_true(strncmp(sid, rid, strlen(rid)) == 0 && sid[strlen(rid)] == '.');
    dais_shard_clear(&a);
    /* its hidden states go on to the last stage, under the request's id, bytes unchanged */
    float h[3 * 4];
    for (int i = 0; i < 12; i++)
        h[i] = (float)i * 0.5f - 1.0f;
    fw_shard(&head, sid, DAIS_SHARD_HIDDEN, 0, 3, NULL, h, 4);
    m = fw_expect_type(&tail, DAIS_MSG_SHARD_ACTIVATION);
    assert_int_equal(dais_shard_decode(m, &a, &err), 0);
    dais_msg_free(m);
    assert_string_equal(a.request_id, rid);
    assert_int_equal(a.kind, DAIS_SHARD_HIDDEN);
    assert_int_equal(a.dim, 4);
    assert_memory_equal(a.hidden, h, sizeof(h));
    dais_shard_clear(&a);
    /* the last stage's next token goes round to the first stage at its position */
    fw_shard(&tail, rid, DAIS_SHARD_TOKENS, 3, 1, t1, NULL, 0);
    m = fw_expect_type(&head, DAIS_MSG_SHARD_ACTIVATION);
    assert_int_equal(dais_shard_decode(m, &a, &err), 0);
    dais_msg_free(m);
    assert_string_equal(a.request_id, sid);
    assert_int_equal(a.pos, 3);
    assert_int_equal(a.tokens[0], 261);
    dais_shard_clear(&a);
    /* the answer ends; the first stage is told to close its sequence */
    fw_respond(&tail, rid, 1, true, false, "Once", t1, 1, DAIS_FINISH_LENGTH);
    http_resp r;
    http_read(fd, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"stages\":[\"head\",\"tail\"]"));
    http_free(&r);
    m = fw_expect_type(&head, DAIS_MSG_CANCEL);
    dais_msg_cancel c;
    assert_int_equal(dais_cancel_decode(m, &c, &err), 0);
    dais_msg_free(m);
    assert_string_equal(c.request_id, sid);
    assert_string_equal(c.reason, "done");

    /* a first stage that fails every attempt: each ends on both stages, then 503 */
    http_send(fd, "POST", "/api/inference", "{\"prompt\":\"x\",\"max_tokens\":2}");
    for (int attempt = 0; attempt < 3; attempt++) {
        fw_expect_request(&tail, &q);
        snprintf(rid, sizeof(rid), "%s", q.request_id);
        dais_infer_req_clear(&q);
        fw_respond(&tail, rid, 0, false, true, "", prompt, 3, DAIS_FINISH_NONE);
        m = fw_expect_type(&head, DAIS_MSG_SHARD_ACTIVATION);
        assert_int_equal(dais_shard_decode(m, &a, &err), 0);
        dais_msg_free(m);
        dais_msg *e = dais_msg_new(DAIS_MSG_ERROR, "head", "master");
        dais_msg_error me;
        memset(&me, 0, sizeof(me));
        snprintf(me.code, sizeof(me.code), "internal");
        snprintf(me.message, sizeof(me.message), "stage broke");
        snprintf(me.request_id, sizeof(me.request_id), "%s", a.request_id);
        dais_shard_clear(&a);
        assert_int_equal(dais_error_encode(&me, e), 0);
        frame_send(head.tcp, e);
        dais_msg_free(e);
        m = fw_expect_type(&tail, DAIS_MSG_CANCEL); /* the last stage drops its attempt */
        assert_int_equal(dais_cancel_decode(m, &c, &err), 0);
        dais_msg_free(m);
        assert_string_equal(c.request_id, rid);
    }
    http_read(fd, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "worker_failed"));
    assert_non_null(strstr(r.body, "stage broke"));
    http_free(&r);
    close(fd);
    fw_close(&head);
    fw_close(&tail);
    assert_true(wait_state("tail", "dead", 2000) || !wait_state("tail", "active", 100));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_worker),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_reject_bad_token_and_model),
        cmocka_unit_test(test_register_heartbeat_infer),
        cmocka_unit_test(test_silent_worker_suspect_then_dead),
        cmocka_unit_test(test_breaker_opens_after_failures),
        cmocka_unit_test(test_failover_mid_stream),
        cmocka_unit_test(test_stalled_worker_failover),
        cmocka_unit_test(test_forged_datagrams_dropped),
        cmocka_unit_test(test_garbage_on_cluster_port),
        cmocka_unit_test(test_pipeline_relay_and_stage_failure),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
