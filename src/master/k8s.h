/*
 * Kubernetes worker discovery: list the worker pods through the Kubernetes API, validate the
 * answer strictly, and tell the master which pods appeared and which went away.
 *
 * Three layers, usable separately:
 *   1. the PodList parser (k8s_pods.c): JSON bytes → dais_k8s_podlist, every field checked
 *      (types, lengths, IPs with inet_pton, label selector re-checked locally); no I/O;
 *   2. the client (k8s.c): one blocking `GET /api/v1/namespaces/{ns}/pods?labelSelector=…`
 *      with the in-cluster service-account token (re-read on every call, so rotated projected
 *      tokens are picked up) and TLS verified against the service-account CA, with a connect
 *      timeout, a total timeout and a response size cap;
 *   3. the discovery thread (k8s.c): polls every `poll_interval_ns` off the event loop,
 *      retries failures with backoff, and hands every outcome — a pod list, or a failure
 *      with its reason — to a callback (on the loop thread when given an event_base).
 * Plus the diff (k8s_pods.c): which candidate pods are new and which are gone or no longer
 * Running, so the master registers the first and drains and removes the second at once.
 *
 * A failed list is always reported as a failure, never as an empty list: the master keeps its
 * pool as it is until a list succeeds.
 *
 * Candidates: pods with status.phase == "Running", a status.podIP and no
 * metadata.deletionTimestamp (readiness is reported, and required only with require_ready).
 * The recommended flow (docs/reliability.md, "Kubernetes discovery"): workers initiate with
 * NODE_DISCOVERY; the master admits a registering worker only if its address is a candidate
 * pod (dais_k8s_podlist_find_ip) when discovery is on, and removes workers whose pod left the
 * candidate set (dais_k8s_diff_compute → removed).
 */
#ifndef DAIS_MASTER_K8S_H
#define DAIS_MASTER_K8S_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/backoff.h"
#include "common/error.h"

struct event_base;
struct dais_metrics_registry;

#define DAIS_K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* Limits on what the API may send. */
#define DAIS_K8S_MAX_RESPONSE_DEFAULT (16u << 20) /* bytes of one list response */
#define DAIS_K8S_MAX_PODS_DEFAULT     10000u      /* items in one list */
#define DAIS_K8S_MAX_TOKEN            (64u << 10) /* bytes of the token file */
#define DAIS_K8S_MAX_SELECTOR         1024u       /* bytes of the label selector */

/* Field sizes (Kubernetes limits + NUL). */
#define DAIS_K8S_NAME_MAX 254 /* DNS-1123 subdomain: 253 */
#define DAIS_K8S_NS_MAX   64  /* DNS-1123 label: 63 */
#define DAIS_K8S_UID_MAX  64  /* a UUID is 36 */
#define DAIS_K8S_IP_MAX   46  /* INET6_ADDRSTRLEN */

enum dais_k8s_phase {
    DAIS_K8S_PHASE_UNKNOWN = 0, /* "Unknown", absent, or a value this version does not know */
    DAIS_K8S_PHASE_PENDING,
    DAIS_K8S_PHASE_RUNNING,
    DAIS_K8S_PHASE_SUCCEEDED,
    DAIS_K8S_PHASE_FAILED,
};

/* One pod of a list. `ip` is the canonical text form (inet_ntop of the parsed podIP), empty
 * when the pod has none; `addr` holds its 4 or 16 bytes. */
typedef struct dais_k8s_pod {
    char name[DAIS_K8S_NAME_MAX];
    char ns[DAIS_K8S_NS_MAX];
    char uid[DAIS_K8S_UID_MAX];
    char ip[DAIS_K8S_IP_MAX];
    int family; /* AF_INET, AF_INET6, or 0 without an IP */
    unsigned char addr[16];
    enum dais_k8s_phase phase;
    bool ready;    /* condition Ready == "True" */
    bool deleting; /* metadata.deletionTimestamp is set */
} dais_k8s_pod;

typedef struct dais_k8s_podlist {
    size_t n;
    dais_k8s_pod *pods; /* n entries, owned; sorted by uid */
    size_t filtered;    /* items dropped because their labels did not match the selector */
    char resource_version[64];
} dais_k8s_podlist;

/* ---- label selectors --------------------------------------------------------------------- */

/* A parsed label selector: comma-separated requirements `k=v`, `k==v`, `k!=v`, `k`, `!k`,
 * `k in (a,b)`, `k notin (a,b)` (the Kubernetes grammar). */
typedef struct dais_k8s_selector dais_k8s_selector;

/* Parses `text` (at most DAIS_K8S_MAX_SELECTOR bytes; "" selects everything). Returns owned,
 * or NULL with DAIS_EINVAL / DAIS_ENOMEM in `err` (may be NULL). Any thread. */
dais_k8s_selector *dais_k8s_selector_parse(const char *text, dais_err *err);
void dais_k8s_selector_free(dais_k8s_selector *s);

/* ---- parser ---------------------------------------------------------------------------- */

typedef struct dais_k8s_parse_opts {
    const char *ns;                    /* items must be in this namespace; NULL = any */
    const dais_k8s_selector *selector; /* items whose labels do not match are dropped; NULL = all */
    size_t max_pods;                   /* 0 = DAIS_K8S_MAX_PODS_DEFAULT */
} dais_k8s_parse_opts;

/* Parses a PodList document of `len` bytes. On success returns 0 and an owned list in `*out`
 * (free with dais_k8s_podlist_free). Returns DAIS_EFORMAT (not JSON, not a PodList, a field
 * of the wrong type, length or syntax, an invalid podIP, an item from another namespace),
 * DAIS_ETOOBIG (more than max_pods items) or DAIS_ENOMEM, with a message naming the item and
 * field in `err` (may be NULL). One invalid item fails the whole list: a server that sends it
 * is not trusted for the rest either, and the master keeps its pool. Pure; any thread. */
int dais_k8s_podlist_parse(const char *json, size_t len, const dais_k8s_parse_opts *opts,
                           dais_k8s_podlist **out, dais_err *err);

void dais_k8s_podlist_free(dais_k8s_podlist *l);

/* Whether a pod is a worker candidate: Running, with an IP, not being deleted, and Ready when
 * `require_ready`. */
bool dais_k8s_pod_is_candidate(const dais_k8s_pod *p, bool require_ready);

/* The candidate pod whose podIP equals `ip` (IPv4, IPv6, or IPv4-mapped IPv6 text such as a
 * dual-stack socket reports); NULL when none or `ip` does not parse. Borrowed from `l`. */
const dais_k8s_pod *dais_k8s_podlist_find_ip(const dais_k8s_podlist *l, const char *ip,
                                             bool require_ready);

/* "Pending", "Running", … (static). */
const char *dais_k8s_phase_name(enum dais_k8s_phase p);

/* ---- diff -------------------------------------------------------------------------------- */

enum dais_k8s_removal {
    DAIS_K8S_GONE = 0,    /* the pod is no longer listed */
    DAIS_K8S_NOT_RUNNING, /* its phase left Running (Succeeded, Failed, Unknown…) */
    DAIS_K8S_DELETING,    /* deletionTimestamp set: drain it now */
    DAIS_K8S_NO_IP,       /* it lost its podIP */
    DAIS_K8S_IP_CHANGED,  /* same uid, another IP: the old address is removed, the new added */
    DAIS_K8S_NOT_READY,   /* Ready went false (only with require_ready) */
};

typedef struct dais_k8s_removed {
    const dais_k8s_pod *pod; /* borrowed from `prev` */
    enum dais_k8s_removal why;
} dais_k8s_removed;

typedef struct dais_k8s_diff {
    size_t n_added;
    const dais_k8s_pod **added; /* borrowed from `next`: candidates now, not candidates before */
    size_t n_removed;
    dais_k8s_removed *removed; /* candidates before, not (with the same IP) now */
} dais_k8s_diff;

/* Compares two successful lists by pod uid (`prev` NULL = no previous list: every candidate of
 * `next` is added). Fills `out` (arrays owned by it, entries borrowed from the lists, which
 * must outlive it); release with dais_k8s_diff_release. Returns 0 or DAIS_ENOMEM. Pure. */
int dais_k8s_diff_compute(const dais_k8s_podlist *prev, const dais_k8s_podlist *next,
                          bool require_ready, dais_k8s_diff *out);
void dais_k8s_diff_release(dais_k8s_diff *d);

const char *dais_k8s_removal_name(enum dais_k8s_removal r);

/* ---- client ---------------------------------------------------------------------------- */

/* Why a list failed (metrics label values: dais_k8s_reason_name). Append-only. */
enum dais_k8s_reason {
    DAIS_K8S_OK = 0,
    DAIS_K8S_R_CONFIG,       /* token/CA/namespace file unreadable or invalid */
    DAIS_K8S_R_CONNECT,      /* DNS, refused, unreachable */
    DAIS_K8S_R_TLS,          /* handshake or certificate verification failed */
    DAIS_K8S_R_TIMEOUT,      /* connect or total timeout */
    DAIS_K8S_R_UNAUTHORIZED, /* 401 */
    DAIS_K8S_R_FORBIDDEN,    /* 403 */
    DAIS_K8S_R_THROTTLED,    /* 429 */
    DAIS_K8S_R_SERVER,       /* 5xx */
    DAIS_K8S_R_HTTP,         /* any other non-200 status */
    DAIS_K8S_R_TOOBIG,       /* body over max_response */
    DAIS_K8S_R_MALFORMED,    /* truncated, not JSON, not a valid PodList */
    DAIS_K8S_R_TRANSPORT,    /* any other transfer error (connection reset mid-body…) */
    DAIS_K8S_R_COUNT
};

const char *dais_k8s_reason_name(enum dais_k8s_reason r); /* "unauthorized", … */

typedef struct dais_k8s_config {
    const char *api_url;         /* "https://host:port"; NULL → KUBERNETES_SERVICE_HOST/_PORT */
    const char *token_path;      /* NULL → DAIS_K8S_SA_DIR "/token" */
    const char *ca_path;         /* NULL → DAIS_K8S_SA_DIR "/ca.crt" */
    const char *ns;              /* NULL → contents of ns_path */
    const char *ns_path;         /* NULL → DAIS_K8S_SA_DIR "/namespace" */
    const char *label_selector;  /* e.g. "app=dais-worker"; NULL or "" = every pod */
    uint64_t poll_interval_ns;   /* between successful lists (10 s) */
    uint64_t connect_timeout_ns; /* (3 s) */
    uint64_t timeout_ns;         /* whole request (10 s) */
    size_t max_response;         /* 0 → DAIS_K8S_MAX_RESPONSE_DEFAULT */
    size_t max_pods;             /* 0 → DAIS_K8S_MAX_PODS_DEFAULT */
    bool require_ready;          /* candidates must be Ready (default false) */
    /* Where the discovery thread counts its polls, as
     * dais_k8s_discovery_requests_total{result="ok"|<reason>}; NULL = no metrics. Borrowed:
     * it must outlive the discovery. */
    struct dais_metrics_registry *metrics;
    /* Between failed lists: decorrelated jitter from 1 s up to 30 s, unbounded attempts, no
     * deadline. */
    dais_backoff_config retry;
} dais_k8s_config;

/* Fills the defaults (every path and the URL NULL: in-cluster). */
void dais_k8s_config_default(dais_k8s_config *cfg);

typedef struct dais_k8s_client dais_k8s_client;

/* Creates a client: resolves the API URL (config or environment), reads and validates the
 * namespace, parses the selector, checks that the token and CA files are readable. Strings
 * are copied. Returns owned, or NULL with DAIS_EINVAL (bad config, not in a cluster),
 * DAIS_EIO (a file is unreadable) or DAIS_ENOMEM in `err`. Initialises libcurl globally the
 * first time (call it before starting other threads that use libcurl, or after they called
 * curl_global_init). */
dais_k8s_client *dais_k8s_client_new(const dais_k8s_config *cfg, dais_err *err);
void dais_k8s_client_free(dais_k8s_client *c);

/* The effective settings (borrowed; valid while the client lives). */
const char *dais_k8s_client_url(const dais_k8s_client *c); /* the full list URL */
const char *dais_k8s_client_namespace(const dais_k8s_client *c);
const dais_k8s_config *dais_k8s_client_config(const dais_k8s_client *c); /* strings borrowed */

/* One blocking list call (never on the event loop thread). Returns 0 with an owned list in
 * `*out`, or a negative code with `*reason` set (DAIS_K8S_OK on success; may be NULL) and a
 * message in `err` (may be NULL). `*out` is NULL on failure. Codes: DAIS_EAUTH (401, 403,
 * TLS verification), DAIS_ETIMEOUT, DAIS_EIO (connect, transport, unreadable token),
 * DAIS_EBUSY (429), DAIS_EAGAIN (5xx), DAIS_EPROTO (other status), DAIS_ETOOBIG,
 * DAIS_EFORMAT (truncated or invalid PodList), DAIS_EINVAL (invalid token file),
 * DAIS_ECANCELLED, DAIS_ENOMEM. At most one call at a time per client. `cancel` (may be
 * NULL) is polled during the transfer (at least about once a second); when it becomes nonzero
 * the call ends with DAIS_ECANCELLED. */
int dais_k8s_list(dais_k8s_client *c, const atomic_int *cancel, dais_k8s_podlist **out,
                  enum dais_k8s_reason *reason, dais_err *err);

/* ---- discovery thread ---------------------------------------------------------------------- */

/* One outcome of a poll, handed to the callback. On success `code` is 0 and `pods` a list the
 * callback takes (it must free it with dais_k8s_podlist_free, or keep it as the next `prev` of
 * dais_k8s_diff_compute); on failure `pods` is NULL and `reason`/`message` say why. */
typedef struct dais_k8s_result {
    int code;
    enum dais_k8s_reason reason;
    char message[256];
    dais_k8s_podlist *pods;
    uint32_t consecutive_failures; /* failures since the last success, this one included */
    uint64_t retry_in_ns;          /* when the next poll will be (backoff after a failure) */
} dais_k8s_result;

/* Receives each outcome. With an event_base it runs on that base's loop thread (the discovery
 * thread queues the result and wakes the loop through an eventfd); without, it runs on the
 * discovery thread itself and the master must hand the result over to its loop on its own.
 * `res` is valid during the call only, except `res->pods`, which the callback takes. */
typedef void (*dais_k8s_result_fn)(void *arg, dais_k8s_result *res);

typedef struct dais_k8s_discovery dais_k8s_discovery;

/* Counters kept by the discovery thread (read with relaxed atomics; any thread). */
typedef struct dais_k8s_stats {
    uint64_t polls;
    uint64_t successes;
    uint64_t failures[DAIS_K8S_R_COUNT]; /* by reason; [DAIS_K8S_OK] unused */
    uint64_t last_success_wall_s;        /* 0 = never */
    uint32_t last_pod_count;
} dais_k8s_stats;

/* Starts the discovery thread; it takes `client` (freed by dais_k8s_discovery_stop, also on
 * failure here). The first poll starts at once. `base` may be NULL (see dais_k8s_result_fn);
 * otherwise call this and _stop on the base's loop thread. Returns owned, or NULL with the
 * code in `err`. */
dais_k8s_discovery *dais_k8s_discovery_start(dais_k8s_client *client, struct event_base *base,
                                             dais_k8s_result_fn fn, void *arg, dais_err *err);

/* Asks for a poll now (e.g. a worker registered whose pod is not in the last list). Any
 * thread. */
void dais_k8s_discovery_poll_now(dais_k8s_discovery *d);

/* Copies the counters. Any thread. */
void dais_k8s_discovery_stats(const dais_k8s_discovery *d, dais_k8s_stats *out);

/* Stops the thread (an in-flight request is aborted within about a second), drops queued
 * results without calling the callback (freeing their lists), frees everything. With a base:
 * call on its loop thread. Accepts NULL. */
void dais_k8s_discovery_stop(dais_k8s_discovery *d);

#endif
