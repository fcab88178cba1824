/*
 * Heartbeats (UDP 8889). Each worker has a loss-tolerant failure detector (master/detector.h):
 * it says when the next HEARTBEAT (a probe) is due — every interval while the worker answers,
 * every suspect interval once a probe went unanswered for the ack timeout — and gives the
 * verdict: alive, suspect (a probe missed: routed to only when nothing better is left), or
 * dead (`misses` probes in a row unanswered and no answer at all for `dead_after`), which
 * ends the worker. One timer serves every worker: it fires at the earliest next event among
 * them, sends the probes that are due, applies the verdicts, and removes DEAD records whose
 * linger time is over.
 *
 * Answers (HEARTBEAT_ACK) are authenticated and replay-checked by proto/dgram.h before any
 * JSON is parsed; they carry the worker's system and load metrics, which the registry keeps
 * for the balancer and /api/cluster. Every rejected datagram is dropped silently and counted
 * by reason.
 */
#include "master/master_impl.h"

#include "common/clock.h"
#include "common/log.h"
#include "proto/dgram.h"
#include "proto/messages.h"

#include <event2/event.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Datagrams handled per readable event before yielding to the loop. */
#define RECV_BATCH 64

const char *dais_master_cluster_state(const dais_master *m)
{
    size_t active = dais_registry_count_state(m->reg, DAIS_WORKER_ACTIVE);
    if (active == 0) return "unavailable";
    if (m->cfg.n_models == 0) return "ok";
    for (size_t i = 0; i < m->cfg.n_models; i++)
        if (!dais_registry_model_active(m->reg, m->cfg.models[i].name)) return "degraded";
    return "ok";
}

static void tick_cb(evutil_socket_t fd, short what, void *arg);

/* Arms the timer for `at` (monotonic ns) unless it already fires sooner. */
static void schedule(dais_master *m, uint64_t at)
{
    uint64_t now = dais_now_ns();
    uint64_t min_at = now + 1000000ull; /* at most one pass per millisecond */
    uint64_t max_at = now + (uint64_t)m->cfg.heartbeat_interval_ms * 1000000ull;
    if (at < min_at) at = min_at;
    if (at > max_at) at = max_at;
    if (m->hb_timer_at != 0 && m->hb_timer_at <= at && m->hb_timer_at > now) return;
    uint64_t d = at - now;
    struct timeval tv = {(time_t)(d / 1000000000ull), (suseconds_t)((d % 1000000000ull) / 1000)};
    evtimer_add(m->hb_timer, &tv);
    m->hb_timer_at = at;
}

static void send_probe(dais_master *m, dais_worker *w, uint64_t now)
{
    dais_msg *msg = dais_msg_new(DAIS_MSG_HEARTBEAT, m->cfg.node_id, w->id);
    if (msg == NULL) return;
    dais_msg_heartbeat h;
    memset(&h, 0, sizeof(h));
    h.interval_ms = m->cfg.heartbeat_interval_ms;
    snprintf(h.cluster_state, sizeof(h.cluster_state), "%s", dais_master_cluster_state(m));
    h.workers_active = (int32_t)dais_registry_count_state(m->reg, DAIS_WORKER_ACTIVE);
    h.workers_total = (int32_t)dais_registry_count(m->reg);
    h.sent_ms = dais_wall_ms();
    uint8_t buf[DAIS_DGRAM_MAX];
    size_t len = 0;
    uint64_t seq = w->tx_seq + 1;
    if (dais_heartbeat_encode(&h, msg) == 0 &&
        dais_dgram_seal(msg, w->session_id, seq, w->session_key, buf, sizeof(buf), &len) == 0) {
        w->tx_seq = seq;
        dais_worker_hb_sent(w, seq, now);
        dais_counter_inc(m->mx.hb_sent);
        ssize_t n =
            sendto(m->udp_fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&w->hb_sa, w->hb_salen);
        if (n < 0) DAIS_DEBUG("heartbeat to %s (%s): %s", w->id, w->addr, strerror(errno));
    }
    dais_msg_free(msg);
}

void dais_heartbeat_send(dais_master *m, dais_worker *w)
{
    send_probe(m, w, dais_now_ns());
    schedule(m, dais_worker_hb_next_ns(w));
}

static void count_drop(dais_master *m, enum dais_dgram_verdict v)
{
    if ((unsigned)v < DAIS_DGRAM__COUNT) m->dgram_drops[v]++;
    if (v == DAIS_DGRAM_BAD_MAC || v == DAIS_DGRAM_REPLAY || v == DAIS_DGRAM_UNKNOWN_SESSION)
        dais_counter_inc(m->mx.hb_forged);
}

static void on_datagram(dais_master *m, const uint8_t *buf, size_t len)
{
    uint64_t sid = 0, seq = 0;
    enum dais_dgram_verdict v = dais_dgram_peek(buf, len, &sid, &seq);
    if (v != DAIS_DGRAM_OK) {
        count_drop(m, v);
        return;
    }
    dais_worker *w = dais_registry_find_session(m->reg, sid);
    if (w == NULL || w->state == DAIS_WORKER_DEAD) {
        count_drop(m, DAIS_DGRAM_UNKNOWN_SESSION);
        return;
    }
    dais_msg *msg = NULL;
    dais_err err;
    v = dais_dgram_open(buf, len, w->session_key, &w->rx_window, &msg, NULL, &err);
    if (v != DAIS_DGRAM_OK) {
        count_drop(m, v);
        return;
    }
    dais_msg_heartbeat_ack ack;
    if (msg->type != DAIS_MSG_HEARTBEAT_ACK || strcmp(msg->source, w->id) != 0 ||
        dais_heartbeat_ack_decode(msg, &ack, &err) != 0) {
        count_drop(m, DAIS_DGRAM_BAD_ENVELOPE);
        dais_msg_free(msg);
        return;
    }
    dais_msg_free(msg);
    uint64_t now = dais_now_ns();
    enum dais_worker_state before = w->state;
    double rtt_ms;
    if (!dais_worker_hb_ack(w, ack.echo_seq, &ack, now, &rtt_ms)) {
        count_drop(m, DAIS_DGRAM_BAD_ENVELOPE);
        return;
    }
    dais_counter_inc(m->mx.hb_answered);
    if (rtt_ms >= 0) dais_histogram_observe(m->mx.hb_rtt, rtt_ms / 1000.0);
    schedule(m, dais_worker_hb_next_ns(w));
    if (strcmp(ack.health, "draining") == 0 && !w->draining) {
        DAIS_INFO("worker %s reports it is draining", w->id);
        w->draining = true;
    }
    if (before != w->state) {
        DAIS_INFO("worker %s is %s again%s", w->id, dais_worker_state_name(w->state),
                  before == DAIS_WORKER_JOINING ? " (first heartbeat answered)" : "");
        dais_router_worker_ready(m, w);
    }
}

static void udp_cb(evutil_socket_t fd, short what, void *arg)
{
    dais_master *m = arg;
    (void)what;
    uint8_t buf[DAIS_DGRAM_MAX + 1];
    for (int i = 0; i < RECV_BATCH; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) return;
        if ((size_t)n > DAIS_DGRAM_MAX) {
            count_drop(m, DAIS_DGRAM_OVERSIZE);
            continue;
        }
        on_datagram(m, buf, (size_t)n);
    }
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    dais_master *m = arg;
    (void)fd;
    (void)what;
    m->hb_timer_at = 0;
    uint64_t now = dais_now_ns();
    uint64_t linger_ns = m->det_cfg.dead_after_ns;
    uint64_t next = UINT64_MAX;
    /* Collect first: losing or removing a worker changes the registry. */
    size_t n = dais_registry_count(m->reg);
    dais_worker **ws = n > 0 ? malloc(n * sizeof(*ws)) : NULL;
    if (n > 0 && ws == NULL) {
        schedule(m, now + 10000000ull);
        return;
    }
    for (size_t i = 0; i < n; i++)
        ws[i] = dais_registry_at(m->reg, i);
    for (size_t i = 0; i < n; i++) {
        dais_worker *w = ws[i];
        if (w->state == DAIS_WORKER_DEAD) {
            uint64_t gone = w->state_since_ns + linger_ns;
            if (now >= gone) {
                DAIS_INFO("worker %s removed from the registry", w->id);
                dais_cluster_worker_remove(m, w);
            } else if (gone < next) {
                next = gone;
            }
            continue;
        }
        enum dais_worker_state before = w->state;
        uint64_t missed_before = w->det.probes_missed;
        uint32_t streak_before = w->det.missed;
        enum dais_worker_state st = dais_worker_hb_check(w, now);
        /* A hung worker (SIGSTOP, a wedged process) keeps its TCP connection open and answers
         * nothing: requests would wait on it until its detector declares it dead. As many
         * missed heartbeats in a row as the breaker's failure streak open its breaker now, so
         * the balancer routes around it; once it answers again, the breaker's half-open
         * probe (a real request) closes it. One crossing of the threshold trips it once. */
        uint32_t trip_at = w->breaker.cfg.consecutive_failures;
        if (st != DAIS_WORKER_DEAD && trip_at > 0 && streak_before < trip_at &&
            w->det.missed >= trip_at && dais_breaker_trip(&w->breaker, now))
            DAIS_WARN("worker %s: %u heartbeats in a row unanswered; circuit breaker open", w->id,
                      w->det.missed);
        if (w->det.probes_missed > missed_before)
            dais_counter_add(m->mx.hb_lost, w->det.probes_missed - missed_before);
        if (st == DAIS_WORKER_DEAD) {
            char why[128];
            snprintf(why, sizeof(why),
                     "%u heartbeats in a row unanswered, none answered for %.1f s",
                     dais_worker_misses(w), (double)(now - w->det.last_heard_ns) / 1e9);
            w->state = before; /* so that worker_lost logs the transition */
            dais_cluster_worker_lost(m, w, why);
            uint64_t gone = now + linger_ns;
            if (gone < next) next = gone;
            continue;
        }
        if (st == DAIS_WORKER_SUSPECT && before != DAIS_WORKER_SUSPECT)
            DAIS_WARN("worker %s is suspect: a heartbeat went unanswered", w->id);
        else if (st == DAIS_WORKER_ACTIVE && before == DAIS_WORKER_SUSPECT)
            DAIS_INFO("worker %s answers again", w->id);
        if (dais_worker_hb_due(w, now)) send_probe(m, w, now);
        uint64_t t = dais_worker_hb_next_ns(w);
        if (t < next) next = t;
    }
    free(ws);
    schedule(m, next);
}

int dais_heartbeat_open(dais_master *m, dais_err *err)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_PASSIVE;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)m->cfg.heartbeat_port);
    int g = getaddrinfo(m->cfg.heartbeat_addr, port, &hints, &ai);
    if (g != 0)
        return dais_err_set(err, DAIS_EINVAL, "heartbeat address %s: %s", m->cfg.heartbeat_addr,
                            gai_strerror(g));
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return dais_err_set(err, DAIS_EIO, "heartbeat bind %s:%u: %s", m->cfg.heartbeat_addr,
                            (unsigned)m->cfg.heartbeat_port, strerror(e));
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        m->hb_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                    : ((struct sockaddr_in *)&ss)->sin_port);
    m->udp_fd = fd;
    m->udp_ev = event_new(m->base, fd, EV_READ | EV_PERSIST, udp_cb, m);
    m->hb_timer = evtimer_new(m->base, tick_cb, m);
    if (m->udp_ev == NULL || m->hb_timer == NULL)
        return dais_err_set(err, DAIS_ENOMEM, "no memory for heartbeat events");
    event_add(m->udp_ev, NULL);
    schedule(m, UINT64_MAX);
    return 0;
}

void dais_heartbeat_close(dais_master *m)
{
    if (m->hb_timer != NULL) event_free(m->hb_timer);
    if (m->udp_ev != NULL) event_free(m->udp_ev);
    if (m->udp_fd >= 0) close(m->udp_fd);
    m->hb_timer = m->udp_ev = NULL;
    m->udp_fd = -1;
}
