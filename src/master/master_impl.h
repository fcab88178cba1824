/*
 * The master's internal state, shared by its modules (master.c, cluster.c, heartbeat.c,
 * router.c, api.c). Everything here belongs to the master's loop thread.
 *
 * Ownership:
 *   dais_master      owns the registry, the connections, the requests, the sockets.
 *   dais_mconn       one worker TCP connection; owned by the master's connection list; points
 *                    to its worker record once registered (w->conn points back).
 *   dais_mreq        one inference request; owned by the router from submission to its end;
 *                    linked into exactly one of: a model queue (QUEUED) or a worker's list
 *                    (DISPATCHED). It borrows its HTTP request until the reply completes or the
 *                    client goes away (then http == NULL).
 */
#ifndef DAIS_MASTER_MASTER_IMPL_H
#define DAIS_MASTER_MASTER_IMPL_H

#include "common/metrics.h"
#include "common/metrics_http.h"
#include "common/trace.h"
#include "master/api_request.h"
#include "master/balancer.h"
#include "master/config.h"
#include "master/httpd.h"
#include "master/master.h"
#include "master/registry.h"
#include "proto/auth.h"
#include "proto/frame.h"

#include <event2/event_struct.h>
#include <event2/util.h>
#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>

struct event;
struct bufferevent;
struct evconnlistener;
struct evbuffer;

/* ---- cluster connections ------------------------------------------------------------------ */

enum dais_mconn_state {
    DAIS_MCONN_HELLO = 0, /* waiting for NODE_DISCOVERY */
    DAIS_MCONN_READY,     /* registered: w is set */
    DAIS_MCONN_CLOSING,   /* flushing a NODE_REJECT / ERROR, then closed */
};

typedef struct dais_mconn dais_mconn;
struct dais_mconn {
    struct dais_master *m;
    struct bufferevent *bev;
    struct event *timer; /* HELLO: discovery deadline; CLOSING: flush deadline */
    char peer[64];       /* "ip:port" */
    char peer_ip[64];
    enum dais_mconn_state state;
    dais_worker *w;
    dais_mconn *prev, *next;
};

/* ---- requests ------------------------------------------------------------------------------ */

enum dais_mreq_state {
    DAIS_MREQ_NEW = 0,
    DAIS_MREQ_QUEUED,     /* waiting at the master for a worker slot */
    DAIS_MREQ_DISPATCHED, /* sent to a worker, output may be arriving */
};

typedef struct dais_model_queue dais_model_queue;
typedef struct dais_mreq dais_mreq;

/* Most stages one pipeline may have (docs/sharding.md). */
#define DAIS_MAX_STAGES 16

/* A request's sequence on a first or middle pipeline stage (the last stage is the request's
 * worker). Linked into the stage worker's stage_seqs while the attempt lasts. */
typedef struct dais_mstage {
    dais_mreq *r;
    dais_worker *w; /* NULL once unlinked */
    struct dais_mstage *prev, *next;
    uint64_t ticket; /* the stage worker's breaker admission */
    bool blamed;     /* the attempt failed because of this stage */
} dais_mstage;

struct dais_mreq {
    struct dais_master *m;
    char id[37]; /* request id (uuid4), also the worker's request_id */
    char model[DAIS_MODEL_NAME_MAX + 1];
    dais_api_request api; /* owned */
    enum dais_mreq_state state;
    uint32_t attempts;                    /* dispatches so far (issue 4 retries add more) */
    uint32_t productive;                  /* attempts that produced output before failing: not
                                             counted against MAX_ATTEMPTS (max_tokens bounds them) */
    int32_t n_out_at_dispatch;            /* n_out when the current attempt was dispatched */
    uint64_t ticket;                      /* DISPATCHED: the worker's breaker admission */
    dais_worker *worker;                  /* DISPATCHED: where it runs */
    char worker_id[DAIS_NODE_ID_MAX + 1]; /* the last worker it ran on */
    dais_mreq *wprev, *wnext;             /* in worker->reqs */
    dais_mreq *qprev, *qnext;             /* in queue */
    dais_model_queue *queue;
    dais_http_req *http; /* borrowed; NULL when the client left */

    /* progress: enough to continue elsewhere (prompt ids + tokens already produced) */
    uint32_t next_index; /* the response frame index expected next */
    int32_t *prompt_ids; /* owned: frame 0's prompt token ids */
    int32_t n_prompt_ids;
    int32_t *out_ids; /* owned: output token ids received */
    int32_t n_out, cap_out;
    struct evbuffer *text; /* output text received (non-streamed replies) */
    bool stream_started;   /* SSE headers sent: errors go in-band now */
    int32_t prompt_tokens, completion_tokens;
    enum dais_finish finish;
    dais_infer_timings wt; /* the worker's timings */

    uint64_t t_start_ns, t_dispatch_ns, t_first_ns;
    struct event deadline_ev; /* assigned when the master has a request timeout */
    bool deadline_set;
    struct event stall_ev; /* DISPATCHED with a stall timeout: armed at dispatch and on every
                              frame from the worker; fires when the worker went silent */
    bool stall_set;
    dais_worker *avoid;   /* after a stall: the silent worker, not picked again if another can */
    struct event wait_ev; /* QUEUED after its worker died with output already sent and no other
                             worker left: bounds the wait for a returning one */
    bool wait_set;        /* wait_ev assigned */
    bool waiting_worker;  /* QUEUED for that reason (wait_ev pending) */
    dais_trace_ctx trace; /* this request's span context */
    dais_span *span;
    /* Pipeline attempt (docs/sharding.md): `worker` is the last stage; these are the stages
     * before it, in layer order. n_stages == 0 for a whole-model worker. */
    int32_t n_stages;
    dais_mstage stages[DAIS_MAX_STAGES - 1];
    char seq_id[DAIS_REQUEST_ID_MAX + 1]; /* the stages' sequence id: "<id>.<attempt>" */
    /* The request's id on its worker for this attempt: `id` for the first dispatch, then
     * "<id>.<attempt>", so frames of an earlier attempt still winding down on the same worker
     * (a cancelled one sends its final frame later) never match the new one. */
    char wid[DAIS_REQUEST_ID_MAX + 1];
    int32_t chunk;         /* most positions per SHARD_ACTIVATION */
    int32_t waiting_stage; /* stage last fed (for a stall's blame), -1 = last */
    char stage_ids[DAIS_MAX_STAGES * (DAIS_NODE_ID_MAX + 3)]; /* "\"w0\",\"w1\"" for the reply */
};

struct dais_model_queue {
    char model[DAIS_MODEL_NAME_MAX + 1];
    dais_mreq *head, *tail;
    uint32_t n;
    dais_model_queue *next;
};

/* ---- metrics handles ---------------------------------------------------------------------- */

typedef struct dais_master_metrics {
    dais_metrics_registry *reg;
    dais_metric_family *http_requests; /* {route, code} */
    dais_histogram *request_duration;
    dais_histogram *queue_time;
    dais_histogram *ttft;
    dais_histogram *tpot;
    dais_counter *tokens_in;
    dais_counter *tokens_out;
    dais_gauge *in_flight;
    dais_gauge *queued;
    dais_metric_family *registrations; /* {result} */
    dais_counter *hb_sent, *hb_answered, *hb_lost, *hb_forged;
    dais_counter *retries;   /* requests routed again (busy, worker lost early) */
    dais_counter *failovers; /* generations continued elsewhere (issue 4) */
    dais_counter *pipeline_attempts, *shard_relays; /* docs/sharding.md */
    dais_histogram *hb_rtt;
} dais_master_metrics;

/* ---- the master ----------------------------------------------------------------------------- */

struct dais_master {
    dais_master_config cfg;
    struct event_base *base;
    dais_registry *reg;
    dais_balancer bal;
    dais_frame_limits limits;
    dais_breaker_config breaker_cfg;
    dais_detector_config det_cfg;
    dais_replay_cache *replay;

    dais_httpd *api;
    dais_metrics_http *metrics_http;
    dais_tracer *tracer;
    dais_master_metrics mx;

    struct evconnlistener *cluster_lis;
    uint16_t cluster_port;
    dais_mconn *conns;

    evutil_socket_t udp_fd;
    struct event *udp_ev;
    uint16_t hb_port;
    struct event *hb_timer;
    uint64_t hb_timer_at; /* when hb_timer fires next (monotonic ns), 0 none */

    struct dais_modelstore *store; /* the sync port (--model-dir); NULL when off */

    struct event *sig_int, *sig_term, *grace_poll, *grace_over;
    bool stopping;

    uint64_t rng;                      /* xorshift64* for request ids and seeds */
    const struct timeval *deadline_tv; /* common timeout: O(1) timer adds per request */
    const struct timeval *stall_tv;    /* the same for the per-attempt stall timeout */
    dais_counter *http_codes[8][16];   /* dais_http_requests_total children by route, code */
    int http_code_of[8][16];

    dais_model_queue *queues;
    uint32_t n_inflight; /* requests dispatched to workers */
    uint32_t n_queued;
    uint32_t n_requests; /* requests alive at the master (any state) */
    uint64_t requests_total;
    uint64_t dgram_drops[DAIS_DGRAM__COUNT];
    uint64_t registrations[DAIS_REJECT__COUNT]; /* [NONE] = accepted */

    /* Kubernetes discovery (--k8s-discovery; NULL when off). Results arrive on the loop. */
    struct dais_k8s_discovery *k8s;
    uint64_t k8s_last_success_wall_s; /* 0 = never */
    uint64_t k8s_last_error_wall_s;   /* 0 = never */
    char k8s_last_error[300];         /* "" = the last list succeeded */
    uint32_t k8s_pods_seen;           /* pods in the last successful list */
    uint32_t k8s_candidates;          /* Running pods with an IP in it */
    uint64_t k8s_lists_ok, k8s_lists_failed;
    uint64_t k8s_workers_removed;      /* workers removed because their pod left the list */
    uint64_t k8s_prev_ok_ns;           /* monotonic time of the previous successful list */
    struct dais_k8s_podlist *k8s_pods; /* the last successful list (for --k8s-admit), or NULL */
};

/* ---- master.c: Kubernetes discovery ------------------------------------------------------- */

/* Adds the discovery status object to /api/cluster's answer. */
json_t *dais_master_k8s_json(const dais_master *m);

/* ---- cluster.c -------------------------------------------------------------------------- */

/* Opens the cluster listener. */
int dais_cluster_listen(dais_master *m, dais_err *err);
/* Sends a message to a registered worker (frame on its connection). 0 or a negative code
 * (connection gone / over its output bound; the caller treats the worker as failed). */
int dais_cluster_send(dais_master *m, dais_worker *w, const dais_msg *msg);
/* Ends a worker now: DEAD, its requests failed, its connection closed; the record stays
 * for the linger time. `reason` is logged. */
void dais_cluster_worker_lost(dais_master *m, dais_worker *w, const char *reason);
/* Removes a worker record at once (after dais_cluster_worker_lost, or for a replaced one). */
void dais_cluster_worker_remove(dais_master *m, dais_worker *w);
/* Closes every connection (shutdown). */
void dais_cluster_close_all(dais_master *m);

/* ---- heartbeat.c ------------------------------------------------------------------------ */

int dais_heartbeat_open(dais_master *m, dais_err *err);
void dais_heartbeat_close(dais_master *m);
/* Sends one HEARTBEAT (a detector probe) to w now (also right after registration) and makes
 * sure the heartbeat timer runs in time for the worker's next event. */
void dais_heartbeat_send(dais_master *m, dais_worker *w);
/* "ok" | "degraded" | "unavailable" for the served models. */
const char *dais_master_cluster_state(const dais_master *m);

/* ---- router.c --------------------------------------------------------------------------- */

/* Takes a validated API request (ownership of *api moves in) for an HTTP request and routes
 * it: a worker now, the model's queue, or an error reply. */
void dais_router_submit(dais_master *m, dais_http_req *http, dais_api_request *api);
/* An INFERENCE_RESPONSE from w. Returns 0, or a negative code when the message violates the
 * protocol (the caller closes the connection). */
int dais_router_on_response(dais_master *m, dais_worker *w, const dais_msg *msg);
/* An ERROR from w about one of its requests. */
void dais_router_on_error(dais_master *m, dais_worker *w, const dais_msg_error *e);
/* w is gone: every request on it fails (or is retried, issue 4). */
void dais_router_worker_failed(dais_master *m, dais_worker *w, const char *reason);
/* w may take more work (became active, finished a request): serve the queue of its model. */
void dais_router_worker_ready(dais_master *m, dais_worker *w);
/* A SHARD_ACTIVATION from w: a stage's hidden states (relayed to the next stage) or the last
 * stage's next token (relayed to the first). Returns 0, or a negative code on a protocol
 * violation (the caller closes the connection). */
int dais_router_on_shard(dais_master *m, dais_worker *w, const dais_msg *msg);
/* Whether `model` can be served now: an active whole-model worker, or active shards that
 * cover every layer (a complete pipeline). */
bool dais_router_model_ready(const dais_master *m, const char *model);
/* Shutdown: fail every queued and dispatched request with 503. */
void dais_router_shutdown(dais_master *m);
/* Fails the queued requests only (503), at the start of a graceful shutdown. */
void dais_router_fail_queued(dais_master *m);
/* Requests queued for `model`. */
uint32_t dais_router_queued(const dais_master *m, const char *model);

/* ---- api.c ------------------------------------------------------------------------------- */

/* The httpd handler for every API route. */
void dais_api_handle(dais_http_req *req, void *arg);
/* The httpd access callback (metrics). */
void dais_api_log(const dais_http_req *req, int status, void *arg);
/* Sends {"error":{"code","message", …extra}} with `status` and optional extra header lines. */
void dais_api_error_reply(dais_http_req *req, int status, const char *code, const char *message,
                          const char *headers);
/* The Retry-After header line for 503/429 answers ("Retry-After: N\r\n"). */
const char *dais_api_retry_after(const dais_master *m);

/* ---- master.c helpers ------------------------------------------------------------------------ */

/* Models the master serves or sees, for error messages: "a, b" into buf. */
void dais_master_models_text(const dais_master *m, char *buf, size_t cap);
/* Copies s into a valid-UTF-8 JSON string value (invalid bytes → U+FFFD). */
json_t *dais_json_text(const char *s, size_t len);
/* Appends s as a JSON string literal (quotes, escapes, invalid UTF-8 → U+FFFD) to b. */
void dais_json_put_str(struct evbuffer *b, const char *s, size_t len);
/* A non-cryptographic random number from the master's generator (request ids, seeds). */
uint64_t dais_master_rand64(dais_master *m);

#endif
