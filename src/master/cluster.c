/*
 * The master's cluster port (TCP 8888): worker connections, registration and the frames that
 * follow it. One bufferevent per worker; frames are decoded with proto/frame.h as they
 * arrive. Registration checks, in order: the payload, the protocol version, the token proof
 * (MAC, clock window, replay cache), shutdown, the served model, the heartbeat address; any
 * failure is answered with NODE_REJECT (logged and counted by reason) and the connection is
 * closed. A newer registration with the same node id replaces the older session. A protocol
 * violation on a registered connection, or the connection's loss, ends that worker at once.
 */
#include "master/master_impl.h"
#include "master/sendnow.h"
#include "master/k8s.h"

#include "common/clock.h"
#include "common/log.h"
#include "proto/messages.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define HELLO_TIMEOUT_MS   10000
#define CLOSING_TIMEOUT_MS 2000
/* A worker that does not read what we send it (requests, cancels) is stuck past this. */
#define WORKER_OUTPUT_MAX (32u << 20)
/* Frames from a worker: responses carry a few token ids; discovery a few hundred bytes, so a
 * connection that has not registered yet gets much tighter limits. */
#define WORKER_MAX_JSON (1u << 20)
#define WORKER_MAX_BIN  (4u << 20)
#define HELLO_MAX_JSON  (64u << 10)
#define HELLO_MAX_BIN   0u
/* Connections not yet registered, at most (each is bounded by HELLO_TIMEOUT_MS too). */
#define HELLO_MAX_CONNS 1024

static void conn_free(dais_mconn *c);

static void conn_unlink(dais_master *m, dais_mconn *c)
{
    if (m->conns == c)
        m->conns = c->next;
    else if (c->prev != NULL)
        c->prev->next = c->next;
    if (c->next != NULL) c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Every dais_mconn is allocated here as the first member of this, so cluster.c can keep its
 * write batching state without widening the shared struct. */
typedef struct mconn_full {
    dais_mconn c;
    struct event *flush; /* flush_cb, made active by send_msg */
} mconn_full;

static struct event *conn_flush_event(dais_mconn *c)
{
    return ((mconn_full *)c)->flush;
}

/* Sends the queued frames now instead of enabling EV_WRITE and waiting for writability (an
 * epoll_ctl to add the event, an epoll_wait, a writev and an epoll_ctl to remove it). It runs
 * from flush_cb, activated by send_msg: the loop runs active events before it polls again, so
 * every frame queued in one iteration (requests dispatched for many HTTP clients at once)
 * leaves in one sendmsg, and none waits for a poll. EV_WRITE is enabled only while output is
 * left over, and write_cb disables it when the buffer drains; while it is enabled the loop
 * owns the writing. After a socket error the data stays queued with EV_WRITE enabled, so
 * libevent's own write fails the same way and event_cb closes the connection, as before. */
static void conn_flush(dais_mconn *c)
{
    struct bufferevent *bev = c->bev;
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(bev) & EV_WRITE)) return;
    dais_send_now(out, bufferevent_getfd(bev));
    if (evbuffer_get_length(out) > 0) bufferevent_enable(bev, EV_WRITE);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) bufferevent_disable(bev, EV_WRITE);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_flush(arg);
}

static void conn_free(dais_mconn *c)
{
    dais_master *m = c->m;
    conn_unlink(m, c);
    if (c->w != NULL && c->w->conn == c) c->w->conn = NULL;
    if (c->timer != NULL) event_free(c->timer);
    if (conn_flush_event(c) != NULL) event_free(conn_flush_event(c));
    if (c->bev != NULL) bufferevent_free(c->bev);
    free(c);
}

/* Closes a connection; a registered worker on it is lost. */
static void conn_close(dais_mconn *c, const char *reason)
{
    dais_worker *w = c->w;
    if (w != NULL) {
        c->w = NULL;
        w->conn = NULL;
        dais_cluster_worker_lost(c->m, w, reason);
    }
    conn_free(c);
}

static void closing_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_free(arg);
}

static void closing_write_cb(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) conn_free(arg);
}

static void closing_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    conn_free(arg);
}

/* Flushes what is queued (a reject, an error), then closes. Not for registered workers. */
static void conn_close_after_flush(dais_mconn *c)
{
    c->state = DAIS_MCONN_CLOSING;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setcb(c->bev, NULL, closing_write_cb, closing_event_cb, c);
    conn_flush(c);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_free(c);
        return;
    }
    bufferevent_enable(c->bev, EV_WRITE);
    if (c->timer != NULL) event_free(c->timer);
    c->timer = evtimer_new(c->m->base, closing_timeout_cb, c);
    if (c->timer != NULL) {
        struct timeval tv = {CLOSING_TIMEOUT_MS / 1000, 0};
        evtimer_add(c->timer, &tv);
    }
}

/* Queues a frame. It goes out with the others queued in the same loop iteration when
 * flush_cb runs (see conn_flush). */
static int send_msg(dais_mconn *c, const dais_msg *msg)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) > WORKER_OUTPUT_MAX) return DAIS_EBUSY;
    int rc = dais_frame_write(out, msg, &c->m->limits);
    if (rc == 0) event_active(conn_flush_event(c), EV_TIMEOUT, 0);
    return rc;
}

int dais_cluster_send(dais_master *m, dais_worker *w, const dais_msg *msg)
{
    (void)m;
    dais_mconn *c = w->conn;
    if (c == NULL || c->state != DAIS_MCONN_READY) return DAIS_ECLOSED;
    return send_msg(c, msg);
}

static void count_registration(dais_master *m, enum dais_reject_reason r)
{
    if ((unsigned)r < DAIS_REJECT__COUNT) m->registrations[r]++;
    const char *result = r == DAIS_REJECT_NONE ? "accepted" : dais_reject_reason_name(r);
    const char *values[1] = {result};
    dais_counter_inc(dais_counter_child(m->mx.registrations, values));
}

static void send_proto_error(dais_mconn *c, const char *code, const char *message)
{
    dais_msg *msg =
        dais_msg_new(DAIS_MSG_ERROR, c->m->cfg.node_id, c->w != NULL ? c->w->id : "unknown");
    if (msg == NULL) return;
    dais_msg_error e;
    memset(&e, 0, sizeof(e));
    snprintf(e.code, sizeof(e.code), "%s", code);
    snprintf(e.message, sizeof(e.message), "%s", message);
    if (dais_error_encode(&e, msg) == 0) send_msg(c, msg);
    dais_msg_free(msg);
}

static void reject(dais_mconn *c, const char *node_id, enum dais_reject_reason reason,
                   const char *message)
{
    dais_master *m = c->m;
    count_registration(m, reason);
    DAIS_WARN("registration from %s (node '%s') rejected: %s (%s)", c->peer,
              node_id[0] != '\0' ? node_id : "?", dais_reject_reason_name(reason), message);
    const char *target =
        dais_ident_valid(node_id, strlen(node_id), DAIS_NODE_ID_MAX) ? node_id : "unknown";
    dais_msg *msg = dais_msg_new(DAIS_MSG_NODE_REJECT, m->cfg.node_id, target);
    if (msg != NULL) {
        dais_msg_reject r;
        memset(&r, 0, sizeof(r));
        r.reason = reason;
        snprintf(r.reason_name, sizeof(r.reason_name), "%s", dais_reject_reason_name(reason));
        snprintf(r.message, sizeof(r.message), "%s", message);
        r.retry = dais_reject_reason_transient(reason);
        r.retry_after_ms = r.retry ? 1000 : 0;
        if (dais_reject_encode(&r, msg) == 0) send_msg(c, msg);
        dais_msg_free(msg);
    }
    conn_close_after_flush(c);
}

/* A fresh session id in 1..2^53, unused by live workers. */
static uint64_t new_session_id(dais_master *m)
{
    for (;;) {
        uint64_t v = 0;
        if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
            v = dais_now_ns() ^ ((uint64_t)(uintptr_t)m << 16);
        v &= (1ull << 53) - 1;
        if (v != 0 && dais_registry_find_session(m->reg, v) == NULL) return v;
    }
}

/* Fills w's heartbeat address from the discovery's addr (numeric) or the TCP peer's. */
static int heartbeat_addr(dais_mconn *c, const dais_msg_discovery *d, dais_worker *w)
{
    const char *host = d->addr[0] != '\0' ? d->addr : c->peer_ip;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)d->heartbeat_port);
    if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) return DAIS_EINVAL;
    if (ai->ai_addrlen > sizeof(w->hb_sa)) {
        freeaddrinfo(ai);
        return DAIS_EINVAL;
    }
    memcpy(&w->hb_sa, ai->ai_addr, ai->ai_addrlen);
    w->hb_salen = (socklen_t)ai->ai_addrlen;
    freeaddrinfo(ai);
    snprintf(w->addr, sizeof(w->addr), "%s", host);
    return 0;
}

static void on_discovery(dais_mconn *c, const dais_msg *msg)
{
    dais_master *m = c->m;
    dais_msg_discovery d;
    dais_err err;
    dais_err_clear(&err);
    if (dais_discovery_decode(msg, &d, &err) != 0) {
        reject(c, msg->source, DAIS_REJECT_MALFORMED, err.msg);
        return;
    }
    if (strcmp(d.node_id, msg->source) != 0) {
        reject(c, msg->source, DAIS_REJECT_MALFORMED, "node_id differs from source_node");
        return;
    }
    if (d.protocol_version != DAIS_PROTO_VERSION) {
        char text[96];
        snprintf(text, sizeof(text), "protocol version %u is not served (this master: %d)",
                 d.protocol_version, DAIS_PROTO_VERSION);
        reject(c, d.node_id, DAIS_REJECT_UNSUPPORTED_VERSION, text);
        return;
    }
    enum dais_auth_verdict v =
        dais_auth_verify_discovery(m->cfg.token, m->cfg.token_len, d.node_id, &d.auth,
                                   dais_wall_ms(), (int64_t)m->cfg.auth_window_ms, m->replay);
    if (v != DAIS_AUTH_OK) {
        reject(c, d.node_id, dais_reject_from_auth(v),
               v == DAIS_AUTH_BAD_MAC ? "the token proof does not verify (wrong cluster token?)"
                                      : dais_auth_verdict_name(v));
        return;
    }
    if (m->stopping) {
        reject(c, d.node_id, DAIS_REJECT_DRAINING, "the master is shutting down");
        return;
    }
    if (m->cfg.k8s_admit && m->k8s != NULL &&
        (m->k8s_pods == NULL || dais_k8s_podlist_find_ip(m->k8s_pods, c->peer_ip, false) == NULL)) {
        /* --k8s-admit: only Running pods of the selector may join. A pod that started after
         * the last list is listed again at once, so its retry (transient reason) gets in. */
        char text[160];
        snprintf(text, sizeof(text), "%s is not a Running pod of the last pod list%s", c->peer_ip,
                 m->k8s_pods == NULL ? " (no list yet)" : "");
        dais_k8s_discovery_poll_now(m->k8s);
        reject(c, d.node_id, DAIS_REJECT_NOT_A_POD, text);
        return;
    }
    if (!dais_master_config_serves(&m->cfg, d.model.name, d.model.hash)) {
        char served[512], text[768];
        dais_master_models_text(m, served, sizeof(served));
        snprintf(text, sizeof(text), "model '%s' (sha256 %.16s…) is not served here (served: %s)",
                 d.model.name, d.model.hash, served);
        reject(c, d.node_id, DAIS_REJECT_UNKNOWN_MODEL, text);
        return;
    }
    uint64_t now = dais_now_ns();
    dais_worker *old = dais_registry_find(m->reg, d.node_id);
    if (old != NULL) {
        DAIS_INFO("worker %s registers again from %s: replacing its previous session", old->id,
                  c->peer);
        if (old->state != DAIS_WORKER_DEAD)
            dais_cluster_worker_lost(m, old, "replaced by a new registration");
        dais_cluster_worker_remove(m, old);
    }
    dais_worker *w = dais_registry_add(m->reg, d.node_id, new_session_id(m), now, &m->det_cfg);
    if (w == NULL) {
        reject(c, d.node_id, DAIS_REJECT_OVERLOADED, "out of memory");
        return;
    }
    w->caps = d;
    dais_breaker_init(&w->breaker, &m->breaker_cfg, now);
    if (heartbeat_addr(c, &d, w) != 0) {
        dais_registry_remove(m->reg, w);
        reject(c, d.node_id, DAIS_REJECT_MALFORMED, "addr must be a numeric IP address or empty");
        return;
    }
    snprintf(w->peer, sizeof(w->peer), "%s", c->peer);
    w->registered_wall = dais_wall_time();

    dais_msg_accept a;
    memset(&a, 0, sizeof(a));
    snprintf(a.node_id, sizeof(a.node_id), "%s", d.node_id);
    a.session_id = w->session_id;
    a.heartbeat_interval_ms = m->cfg.heartbeat_interval_ms;
    a.heartbeat_port = m->hb_port;
    dais_msg *reply = dais_msg_new(DAIS_MSG_NODE_ACCEPT, m->cfg.node_id, d.node_id);
    int rc = dais_nonce_new(a.master_nonce);
    if (rc == 0 && reply != NULL) {
        dais_auth_accept_mac(m->cfg.token, m->cfg.token_len, d.node_id, d.auth.nonce,
                             a.master_nonce, a.hmac);
        dais_auth_session_key(m->cfg.token, m->cfg.token_len, d.node_id, a.master_nonce,
                              d.auth.nonce, w->session_key);
        rc = dais_accept_encode(&a, reply);
        if (rc == 0) rc = send_msg(c, reply);
    }
    dais_msg_free(reply);
    if (rc != 0 || reply == NULL) {
        dais_registry_remove(m->reg, w);
        reject(c, d.node_id, DAIS_REJECT_OVERLOADED, "could not build NODE_ACCEPT");
        return;
    }
    if (c->timer != NULL) {
        event_free(c->timer);
        c->timer = NULL;
    }
    c->w = w;
    w->conn = c;
    c->state = DAIS_MCONN_READY;
    count_registration(m, DAIS_REJECT_NONE);
    DAIS_INFO("worker %s registered from %s: model '%s' (%d layers, ctx %d), %d slots + %d "
              "queue, %d threads, heartbeats to %s:%u",
              w->id, c->peer, d.model.name, d.model.n_layers, d.n_ctx, d.slots, d.queue, d.threads,
              w->addr, (unsigned)d.heartbeat_port);
    /* Prove the UDP path at once: the first answer makes the worker ACTIVE. */
    dais_heartbeat_send(m, w);
}

/* Handles one frame; returns false when the connection was closed. */
static bool on_frame(dais_mconn *c, const dais_msg *msg)
{
    dais_master *m = c->m;
    if (c->state == DAIS_MCONN_HELLO) {
        if (msg->type != DAIS_MSG_NODE_DISCOVERY) {
            DAIS_WARN("cluster connection from %s: %s before NODE_DISCOVERY; closing", c->peer,
                      dais_msg_type_name(msg->type));
            count_registration(m, DAIS_REJECT_MALFORMED);
            conn_close(c, "protocol violation");
            return false;
        }
        on_discovery(c, msg);
        return c->state == DAIS_MCONN_READY;
    }
    dais_worker *w = c->w;
    switch (msg->type) {
    case DAIS_MSG_INFERENCE_RESPONSE:
        if (dais_router_on_response(m, w, msg) != 0) {
            send_proto_error(c, "proto", "malformed INFERENCE_RESPONSE");
            conn_close(c, "malformed INFERENCE_RESPONSE");
            return false;
        }
        return true;
    case DAIS_MSG_ERROR: {
        dais_msg_error e;
        dais_err err;
        if (dais_error_decode(msg, &e, &err) != 0) {
            DAIS_WARN("worker %s: malformed ERROR (%s); closing", w->id, err.msg);
            conn_close(c, "malformed ERROR");
            return false;
        }
        if (e.request_id[0] != '\0') {
            dais_router_on_error(m, w, &e);
        } else {
            DAIS_WARN("worker %s reports an error: %s: %s", w->id, e.code, e.message);
            if (strcmp(e.code, "proto") == 0) {
                conn_close(c, "the worker reported a protocol error");
                return false;
            }
        }
        return true;
    }
    case DAIS_MSG_DRAIN: {
        dais_msg_drain d;
        dais_err err;
        if (dais_drain_decode(msg, &d, &err) != 0) {
            conn_close(c, "malformed DRAIN");
            return false;
        }
        if (!w->draining)
            DAIS_INFO("worker %s drains (%s): no new requests go to it", w->id,
                      d.reason[0] != '\0' ? d.reason : "no reason given");
        w->draining = true;
        return true;
    }
    case DAIS_MSG_SHARD_ACTIVATION:
        if (dais_router_on_shard(m, w, msg) != 0) {
            send_proto_error(c, "proto", "malformed SHARD_ACTIVATION");
            conn_close(c, "malformed SHARD_ACTIVATION");
            return false;
        }
        return true;
    case DAIS_MSG_MODEL_UPDATE:
    case DAIS_MSG_MODEL_SYNC_REQUEST:
    case DAIS_MSG_MODEL_SYNC_CHUNK: {
        /* model sync has its own port (8890); MODEL_UPDATE is reserved (docs/protocol.md) */
        char text[96];
        snprintf(text, sizeof(text), "%s is not served on the cluster port%s",
                 dais_msg_type_name(msg->type),
                 msg->type == DAIS_MSG_MODEL_UPDATE ? "" : " (model sync is on --sync-port)");
        send_proto_error(c, "unsupported", text);
        return true;
    }
    default:
        DAIS_WARN("worker %s sent %s, which a worker may not send; closing", w->id,
                  dais_msg_type_name(msg->type));
        send_proto_error(c, "proto", "unexpected message type");
        conn_close(c, "protocol violation");
        return false;
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    dais_mconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (int n = 0; n < 256; n++) {
        dais_msg *msg = NULL;
        dais_err err;
        dais_err_clear(&err);
        static const dais_frame_limits hello = {HELLO_MAX_JSON, HELLO_MAX_BIN};
        int rc =
            dais_frame_read(in, c->state == DAIS_MCONN_HELLO ? &hello : &c->m->limits, &msg, &err);
        if (rc == DAIS_FRAME_NEED_MORE) return;
        if (rc != 0) {
            DAIS_WARN("cluster connection %s%s%s: %s; closing", c->peer,
                      c->w != NULL ? " worker " : "", c->w != NULL ? c->w->id : "", err.msg);
            if (c->state == DAIS_MCONN_HELLO) count_registration(c->m, DAIS_REJECT_MALFORMED);
            conn_close(c, "malformed frame");
            return;
        }
        bool open = on_frame(c, msg);
        dais_msg_free(msg);
        if (!open) return;
    }
    /* Many frames at once: yield to the loop and come back for the rest. */
    if (evbuffer_get_length(in) > 0) bufferevent_trigger(bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    dais_mconn *c = arg;
    (void)bev;
    const char *why = (what & BEV_EVENT_EOF)       ? "connection closed by the worker"
                      : (what & BEV_EVENT_TIMEOUT) ? "connection timed out"
                                                   : "connection error";
    if (c->w != NULL) DAIS_WARN("worker %s: %s", c->w->id, why);
    conn_close(c, why);
}

static void hello_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    dais_mconn *c = arg;
    (void)fd;
    (void)what;
    DAIS_WARN("cluster connection from %s: no NODE_DISCOVERY within %d s; closing", c->peer,
              HELLO_TIMEOUT_MS / 1000);
    conn_close(c, "registration timeout");
}

static void accept_cb(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    dais_master *m = arg;
    (void)lis;
    size_t hello = 0;
    for (dais_mconn *o = m->conns; o != NULL && hello < HELLO_MAX_CONNS; o = o->next)
        hello += o->state == DAIS_MCONN_HELLO;
    mconn_full *full = hello < HELLO_MAX_CONNS ? calloc(1, sizeof(*full)) : NULL;
    dais_mconn *c = full != NULL ? &full->c : NULL;
    if (c == NULL) {
        DAIS_WARN("cluster port: refusing a connection (%zu unregistered ones open)", hello);
        evutil_closesocket(fd);
        return;
    }
    c->m = m;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    char host[INET6_ADDRSTRLEN] = "?", serv[8] = "?";
    getnameinfo(sa, (socklen_t)salen, host, sizeof(host), serv, sizeof(serv),
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(c->peer_ip, sizeof(c->peer_ip), "%s", host);
    snprintf(c->peer, sizeof(c->peer), "%s:%s", host, serv);
    c->bev = bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(m->base, hello_timeout_cb, c);
    full->flush = event_new(m->base, -1, 0, flush_cb, c);
    if (c->bev == NULL || c->timer == NULL || full->flush == NULL) {
        if (c->bev == NULL) evutil_closesocket(fd);
        if (c->timer != NULL) event_free(c->timer);
        if (full->flush != NULL) event_free(full->flush);
        if (c->bev != NULL) bufferevent_free(c->bev);
        free(full);
        return;
    }
    c->next = m->conns;
    if (m->conns != NULL) m->conns->prev = c;
    m->conns = c;
    struct timeval tv = {HELLO_TIMEOUT_MS / 1000, 0};
    evtimer_add(c->timer, &tv);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(c->bev, EV_READ); /* EV_WRITE only while output waits (conn_flush) */
}

static void accept_error_cb(struct evconnlistener *lis, void *arg)
{
    (void)lis;
    (void)arg;
    int e = EVUTIL_SOCKET_ERROR();
    DAIS_WARN("cluster accept: %s", evutil_socket_error_to_string(e));
}

int dais_cluster_listen(dais_master *m, dais_err *err)
{
    m->limits.max_json = WORKER_MAX_JSON;
    m->limits.max_bin = WORKER_MAX_BIN;
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)m->cfg.cluster_port);
    int g = getaddrinfo(m->cfg.cluster_addr, port, &hints, &ai);
    if (g != 0)
        return dais_err_set(err, DAIS_EINVAL, "cluster address %s: %s", m->cfg.cluster_addr,
                            gai_strerror(g));
    m->cluster_lis = evconnlistener_new_bind(
        m->base, accept_cb, m, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
        256, ai->ai_addr, (int)ai->ai_addrlen);
    int e = errno;
    freeaddrinfo(ai);
    if (m->cluster_lis == NULL)
        return dais_err_set(err, DAIS_EIO, "cluster listen on %s:%u: %s", m->cfg.cluster_addr,
                            (unsigned)m->cfg.cluster_port, strerror(e));
    evconnlistener_set_error_cb(m->cluster_lis, accept_error_cb);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl = sizeof(ss);
    if (getsockname(evconnlistener_get_fd(m->cluster_lis), (struct sockaddr *)&ss, &sl) == 0)
        m->cluster_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                         : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

void dais_cluster_worker_lost(dais_master *m, dais_worker *w, const char *reason)
{
    if (w->state != DAIS_WORKER_DEAD) {
        DAIS_WARN("worker %s is dead: %s (%u requests in flight)", w->id, reason, w->inflight);
        dais_worker_set_state(w, DAIS_WORKER_DEAD, dais_now_ns());
    }
    dais_router_worker_failed(m, w, reason);
    dais_mconn *c = w->conn;
    if (c != NULL) {
        w->conn = NULL;
        c->w = NULL;
        conn_free(c);
    }
}

void dais_cluster_worker_remove(dais_master *m, dais_worker *w)
{
    if (w->conn != NULL || w->reqs != NULL || w->stage_seqs != NULL)
        dais_cluster_worker_lost(m, w, "removed");
    dais_registry_remove(m->reg, w);
}

void dais_cluster_close_all(dais_master *m)
{
    if (m->cluster_lis != NULL) {
        evconnlistener_free(m->cluster_lis);
        m->cluster_lis = NULL;
    }
    while (m->conns != NULL)
        conn_close(m->conns, "master shutting down");
}
