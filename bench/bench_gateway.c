/*
 * The baseline for the master's gateway benchmark (bench/gateway.sh): the same inference work
 * sent to a worker directly, without the master and without HTTP.
 *
 * This program plays a minimal master over the real cluster protocol: it listens on a TCP
 * port, lets one `dais worker` register (verifies its token proof, answers NODE_ACCEPT,
 * derives the heartbeat key and keeps sending sealed HEARTBEATs so the worker stays), then
 * keeps `-c` INFERENCE_REQUESTs outstanding on the worker's connection for `-d` seconds and
 * measures each one from the moment its frame is written to the moment its final
 * INFERENCE_RESPONSE is read. It prints requests/s and the latency percentiles.
 *
 *   bench_gateway -p PORT -c CONNS -d SECONDS [-n MAX_TOKENS] [-w WARMUP_S]
 *   (the cluster token comes from DAIS_CLUSTER_TOKEN; start the worker with --master
 *    127.0.0.1:PORT after this prints "listening")
 */
#include "common/clock.h"
#include "proto/auth.h"
#include "proto/dgram.h"
#include "proto/frame.h"
#include "proto/messages.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_OUT 1024
#define HB_MS   500

typedef struct slot {
    bool busy;
    uint64_t sent_ns;
    char id[32];
} slot;

static uint8_t *inbuf;
static size_t in_len, in_cap;

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_msg(int fd, const dais_msg *m)
{
    uint8_t *buf;
    size_t len;
    if (dais_frame_encode(m, NULL, &buf, &len) != 0) return -1;
    int rc = write_all(fd, buf, len);
    free(buf);
    return rc;
}

/* Reads whatever is available (blocking when `block`); returns -1 on EOF/error. */
static int fill(int fd, bool block)
{
    if (in_cap - in_len < 65536) {
        in_cap = in_cap * 2 + 65536;
        inbuf = realloc(inbuf, in_cap);
        if (inbuf == NULL) return -1;
    }
    ssize_t r = recv(fd, inbuf + in_len, in_cap - in_len, block ? 0 : MSG_DONTWAIT);
    if (r == 0) return -1;
    if (r < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    in_len += (size_t)r;
    return 0;
}

/* The next whole frame from the buffer, or NULL. */
static dais_msg *take_frame(void)
{
    dais_msg *m = NULL;
    size_t used = 0;
    dais_err err;
    int rc = dais_frame_decode_msg(inbuf, in_len, NULL, &m, &used, &err);
    if (rc != 0) {
        if (rc < 0) {
            fprintf(stderr, "bench_gateway: bad frame: %s\n", err.msg);
            exit(1);
        }
        return NULL;
    }
    memmove(inbuf, inbuf + used, in_len - used);
    in_len -= used;
    return m;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_gateway -p PORT -c CONNS -d SECONDS [-n MAX_TOKENS] "
                    "[-w WARMUP_S]\n  (token in DAIS_CLUSTER_TOKEN)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int port = 0, conc = 1, max_tokens = 1;
    double dur = 10, warm = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-p") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-c") == 0)
            conc = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-d") == 0)
            dur = atof(argv[i + 1]);
        else if (strcmp(argv[i], "-n") == 0)
            max_tokens = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-w") == 0)
            warm = atof(argv[i + 1]);
        else
            usage();
    }
    const char *token = getenv("DAIS_CLUSTER_TOKEN");
    if (port <= 0 || port > 65535 || conc < 1 || conc > MAX_OUT || dur <= 0 || max_tokens < 1 ||
        token == NULL || token[0] == '\0')
        usage();
    size_t tlen = strlen(token);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 4) != 0) {
        perror("bench_gateway: listen");
        return 1;
    }
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
        perror("bench_gateway: accept");
        return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    /* Registration. */
    dais_msg *m = NULL;
    while ((m = take_frame()) == NULL)
        if (fill(fd, true) != 0) {
            fprintf(stderr, "bench_gateway: the worker left before registering\n");
            return 1;
        }
    dais_msg_discovery d;
    dais_err err;
    if (m->type != DAIS_MSG_NODE_DISCOVERY || dais_discovery_decode(m, &d, &err) != 0 ||
        dais_auth_verify_discovery(token, tlen, d.node_id, &d.auth, dais_wall_ms(), 60000, NULL) !=
            DAIS_AUTH_OK) {
        fprintf(stderr, "bench_gateway: bad registration\n");
        return 1;
    }
    dais_msg_free(m);
    dais_msg_accept acc;
    memset(&acc, 0, sizeof(acc));
    snprintf(acc.node_id, sizeof(acc.node_id), "%s", d.node_id);
    acc.session_id = 1;
    acc.heartbeat_interval_ms = HB_MS;
    dais_nonce_new(acc.master_nonce);
    dais_auth_accept_mac(token, tlen, d.node_id, d.auth.nonce, acc.master_nonce, acc.hmac);
    uint8_t key[DAIS_SESSION_KEY_LEN];
    dais_auth_session_key(token, tlen, d.node_id, acc.master_nonce, d.auth.nonce, key);
    m = dais_msg_new(DAIS_MSG_NODE_ACCEPT, "master", d.node_id);
    dais_accept_encode(&acc, m);
    send_msg(fd, m);
    dais_msg_free(m);

    int ufd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in wa = {.sin_family = AF_INET, .sin_port = htons(d.heartbeat_port)};
    wa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    uint64_t hb_seq = 0, next_hb = 0;

    slot *slots = calloc((size_t)conc, sizeof(slot));
    size_t lat_cap = 1 << 20, n_lat = 0;
    uint64_t *lat = malloc(lat_cap * sizeof(uint64_t));
    uint64_t serial = 0, t0 = dais_now_ns();
    uint64_t t_measure = t0 + (uint64_t)(warm * 1e9), t_end = t_measure + (uint64_t)(dur * 1e9);
    uint64_t done_measured = 0;
    int errors = 0;
    bool stopping = false;
    for (;;) {
        uint64_t now = dais_now_ns();
        if (now >= next_hb) {
            /* keep the worker's session alive */
            dais_msg *h = dais_msg_new(DAIS_MSG_HEARTBEAT, "master", d.node_id);
            dais_msg_heartbeat hb = {.interval_ms = HB_MS, .sent_ms = dais_wall_ms()};
            snprintf(hb.cluster_state, sizeof(hb.cluster_state), "ok");
            uint8_t dg[DAIS_DGRAM_MAX];
            size_t dl;
            if (dais_heartbeat_encode(&hb, h) == 0 &&
                dais_dgram_seal(h, 1, ++hb_seq, key, dg, sizeof(dg), &dl) == 0)
                sendto(ufd, dg, dl, 0, (struct sockaddr *)&wa, sizeof(wa));
            dais_msg_free(h);
            next_hb = now + HB_MS * 1000000ull;
        }
        if (now >= t_end) stopping = true;
        int busy = 0;
        for (int i = 0; i < conc; i++) {
            if (!slots[i].busy && !stopping) {
                dais_msg_infer_req q;
                memset(&q, 0, sizeof(q));
                snprintf(slots[i].id, sizeof(slots[i].id), "b-%llu", (unsigned long long)++serial);
                snprintf(q.request_id, sizeof(q.request_id), "%s", slots[i].id);
                q.prompt = (char *)"Once upon a time";
                q.prompt_len = strlen(q.prompt);
                q.add_bos = true;
                dais_infer_params_default(&q.params);
                q.params.temperature = 0;
                q.params.max_tokens = max_tokens;
                dais_msg *r = dais_msg_new(DAIS_MSG_INFERENCE_REQUEST, "master", d.node_id);
                dais_infer_req_encode(&q, r);
                slots[i].sent_ns = dais_now_ns();
                slots[i].busy = true;
                if (send_msg(fd, r) != 0) {
                    fprintf(stderr, "bench_gateway: the worker closed the connection\n");
                    return 1;
                }
                dais_msg_free(r);
            }
            busy += slots[i].busy;
        }
        if (stopping && busy == 0) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, 50);
        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && fill(fd, false) != 0) {
            fprintf(stderr, "bench_gateway: the worker closed the connection\n");
            return 1;
        }
        while ((m = take_frame()) != NULL) {
            dais_msg_infer_resp r;
            memset(&r, 0, sizeof(r));
            const char *rid = NULL;
            bool final = false, decoded = false;
            if (m->type == DAIS_MSG_INFERENCE_RESPONSE &&
                dais_infer_resp_decode(m, &r, &err) == 0) {
                decoded = true;
                final = r.final;
                if (final && r.finish == DAIS_FINISH_ERROR) errors++;
                rid = r.request_id;
            } else if (m->type == DAIS_MSG_ERROR) {
                dais_msg_error e;
                if (dais_error_decode(m, &e, &err) == 0) {
                    errors++;
                    final = true;
                    snprintf(r.request_id, sizeof(r.request_id), "%s", e.request_id);
                    rid = r.request_id;
                }
            }
            if (final && rid != NULL) {
                uint64_t t = dais_now_ns();
                for (int i = 0; i < conc; i++) {
                    if (slots[i].busy && strcmp(slots[i].id, rid) == 0) {
                        slots[i].busy = false;
                        if (slots[i].sent_ns >= t_measure && t <= t_end) {
                            if (n_lat < lat_cap) lat[n_lat++] = t - slots[i].sent_ns;
                            done_measured++;
                        }
                    }
                }
            }
            if (decoded) dais_infer_resp_clear(&r);
            dais_msg_free(m);
        }
    }
    qsort(lat, n_lat, sizeof(uint64_t), cmp_u64);
    double span = (double)(t_end - t_measure) / 1e9;
    double p50 = n_lat ? (double)lat[n_lat / 2] / 1e3 : 0;
    double p99 = n_lat ? (double)lat[(size_t)((double)n_lat * 0.99)] / 1e3 : 0;
    printf("direct c=%d: %llu requests in %.1f s = %.0f req/s, p50 %.0f us, p99 %.0f us, "
           "errors %d\n",
           conc, (unsigned long long)done_measured, span, (double)done_measured / span, p50, p99,
           errors);
    close(fd);
    close(lfd);
    close(ufd);
    free(slots);
    free(lat);
    free(inbuf);
    return 0;
}
