/*
 * The master's configuration table (see config.h). Each option is one row of `options`: flag,
 * environment variable, kind, where it goes, default text and help; common/options.c parses
 * them. A value is taken from the last occurrence of the flag, else from the environment, else
 * the default. The kinds only the master has (--addr, --model, the token) are applied here.
 */
#include "master/config.h"

#include "proto/frame.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The master's own kinds (options.h: DAIS_OPT_CUSTOM on), applied by apply_master. */
enum {
    K_ADDR_ALL = DAIS_OPT_CUSTOM, /* every bind address not set on its own */
    K_BIND,                       /* one bind address (a string; wins over --addr) */
    K_ID,
    K_MODELS,
    K_TOKEN,
    K_TOKEN_FILE,
    K_RATE, /* a size per second, or 0 = unlimited */
};

#define DAIS_K8S_SA_DIR_TEXT "/var/run/secrets/kubernetes.io/serviceaccount"
#define FIELD(f)             offsetof(dais_master_config, f), sizeof(((dais_master_config *)0)->f)
#define NE                   DAIS_OPT_NONEMPTY

static const dais_opt options[] = {
    {"--addr", "DAIS_ADDR", "ADDR", K_ADDR_ALL, 0, 0, 0, 0, 0, "0.0.0.0",
     "bind address for every port below unless its own address is set"},
    {"--http-addr", "DAIS_HTTP_ADDR", "ADDR", K_BIND, NE, FIELD(http_addr), 0, 0, "(--addr)",
     "HTTP API bind address"},
    {"--http-port", "DAIS_HTTP_PORT", "PORT", DAIS_OPT_PORT, 0, FIELD(http_port), 0, 0, "8080",
     "HTTP API port (0 = any free port)"},
    {"--cluster-addr", "DAIS_CLUSTER_ADDR", "ADDR", K_BIND, NE, FIELD(cluster_addr), 0, 0,
     "(--addr)", "cluster TCP bind address (worker registration)"},
    {"--cluster-port", "DAIS_CLUSTER_PORT", "PORT", DAIS_OPT_PORT, 0, FIELD(cluster_port), 0, 0,
     "8888", "cluster TCP port"},
    {"--heartbeat-addr", "DAIS_HEARTBEAT_ADDR", "ADDR", K_BIND, NE, FIELD(heartbeat_addr), 0, 0,
     "(--addr)", "heartbeat UDP bind address"},
    {"--heartbeat-port", "DAIS_HEARTBEAT_PORT", "PORT", DAIS_OPT_PORT, 0, FIELD(heartbeat_port), 0,
     0, "8889", "heartbeat UDP port"},
    {"--sync-addr", "DAIS_SYNC_ADDR", "ADDR", K_BIND, NE, FIELD(sync_addr), 0, 0, "(--addr)",
     "model sync TCP bind address"},
    {"--sync-port", "DAIS_SYNC_PORT", "PORT", DAIS_OPT_PORT, 0, FIELD(sync_port), 0, 0, "8890",
     "model sync TCP port, opened with --model-dir (0 = any free port)"},
    {"--metrics-addr", "DAIS_METRICS_ADDR", "ADDR", K_BIND, NE, FIELD(metrics_addr), 0, 0,
     "(--addr)", "Prometheus /metrics bind address"},
    {"--metrics-port", "DAIS_METRICS_PORT", "PORT", DAIS_OPT_PORT, 0, FIELD(metrics_port), 0, 0,
     "9090", "Prometheus /metrics port"},
    {"--no-metrics", "DAIS_NO_METRICS", NULL, DAIS_OPT_BOOL_OFF, 0, FIELD(metrics_enabled), 0, 0,
     "off", "do not serve /metrics (variable: 1/true)"},
    {"--token", "DAIS_CLUSTER_TOKEN", "SECRET", K_TOKEN, 0, 0, 0, 0, 0, "(required)",
     "cluster token shared by every node (prefer the variable or --token-file)"},
    {"--token-file", "DAIS_CLUSTER_TOKEN_FILE", "PATH", K_TOKEN_FILE, DAIS_OPT_ALT, 0, 0, 0, 0, "",
     "read the cluster token from a file (trailing newline ignored)"},
    {"--model", "DAIS_MODELS", "NAME[@SHA256]", K_MODELS, 0, 0, 0, 0, 0, "(any)",
     "a served model, repeatable (variable: comma-separated); @SHA256 pins the GGUF file"},
    {"--model-dir", "DAIS_MODEL_DIR", "DIR", DAIS_OPT_STR, 0, FIELD(model_dir), 0, 0, "(off)",
     "serve the *.gguf files in DIR to workers started with --pull-model (name = file name "
     "without .gguf, or the file's SHA-256) on the sync port"},
    {"--sync-transfers", "DAIS_SYNC_TRANSFERS", "N", DAIS_OPT_INT, 0, FIELD(sync_transfers), 1, 64,
     "4", "model downloads served at once (more are answered busy and retry)"},
    {"--sync-chunk", "DAIS_SYNC_CHUNK", "SIZE", DAIS_OPT_SIZE, 0, FIELD(sync_chunk), 0, 0, "4MiB",
     "bytes per MODEL_SYNC_CHUNK frame (4KiB..64MiB)"},
    {"--sync-timeout", "DAIS_SYNC_TIMEOUT", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(sync_timeout_ms), 0, 0, "30s",
     "drop a sync peer that sends no request, or takes no chunk, for this long"},
    {"--sync-rate-limit", "DAIS_SYNC_RATE_LIMIT", "SIZE", K_RATE, 0, FIELD(sync_rate_limit), 0, 0,
     "0", "bytes per second per model download (0 = unlimited)"},
    {"--id", "DAIS_NODE_ID", "ID", K_ID, NE, FIELD(node_id), 0, 0, "master",
     "this node's id in cluster messages"},
    {"--heartbeat-interval", "DAIS_HEARTBEAT_INTERVAL", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(heartbeat_interval_ms), 0, 0, "5s", "how often each worker gets a HEARTBEAT"},
    {"--heartbeat-misses", "DAIS_HEARTBEAT_MISSES", "N", DAIS_OPT_INT, 0, FIELD(heartbeat_misses),
     1, 1000, "20",
     "probes missed in a row (and --heartbeat-dead-after without any answer) before a worker "
     "is dead; suspect after the first (20: 30 % loss ~ 2.5e-8 false removals/worker-hour)"},
    {"--heartbeat-suspect-interval", "DAIS_HEARTBEAT_SUSPECT_INTERVAL", "DURATION",
     DAIS_OPT_DURATION, 0, FIELD(heartbeat_suspect_ms), 0, 0, "min(500ms, interval)",
     "probe period of a worker whose last probe went unanswered"},
    {"--heartbeat-ack-timeout", "DAIS_HEARTBEAT_ACK_TIMEOUT", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(heartbeat_ack_timeout_ms), 0, 0, "min(1s, interval)",
     "a probe unanswered this long counts as missed"},
    {"--heartbeat-dead-after", "DAIS_HEARTBEAT_DEAD_AFTER", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(heartbeat_dead_after_ms), 0, 0, "3 x interval",
     "a worker is dead only after this long without any answer (loss tolerance)"},
    {"--auth-window", "DAIS_AUTH_WINDOW", "DURATION", DAIS_OPT_DURATION, 0, FIELD(auth_window_ms),
     0, 0, "60s", "registration clock-skew and replay window"},
    {"--body-limit", "DAIS_BODY_LIMIT", "SIZE", DAIS_OPT_SIZE, 0, FIELD(body_limit), 0, 0, "1MiB",
     "largest request body accepted (larger: 413)"},
    {"--max-connections", "DAIS_MAX_CONNECTIONS", "N", DAIS_OPT_INT, 0, FIELD(max_connections), 1,
     1000000, "4096", "HTTP connections served at once (more wait in the listen queue)"},
    {"--idle-timeout", "DAIS_IDLE_TIMEOUT", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(idle_timeout_ms), 0, 0, "60s", "close a keep-alive HTTP connection idle this long"},
    {"--default-max-tokens", "DAIS_DEFAULT_MAX_TOKENS", "N", DAIS_OPT_INT, 0,
     FIELD(default_max_tokens), 1, 1u << 20, "128", "max_tokens of a request that does not set it"},
    {"--max-tokens-limit", "DAIS_MAX_TOKENS_LIMIT", "N", DAIS_OPT_INT, 0, FIELD(max_tokens_limit),
     1, 1u << 20, "8192", "largest max_tokens a request may ask for"},
    {"--request-timeout", "DAIS_REQUEST_TIMEOUT", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(request_timeout_ms), 0, 0, "10m", "a request's whole time budget (then 504)"},
    {"--stall-timeout", "DAIS_STALL_TIMEOUT", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(stall_timeout_ms), 0, 0, "10s",
     "a worker silent this long on a request (before its first frame or between frames) is "
     "given up on: CANCEL, breaker failure, the request continues on another worker (0 = off)"},
    {"--queue-limit", "DAIS_QUEUE_LIMIT", "N", DAIS_OPT_INT, 0, FIELD(queue_limit), 0, 1000000,
     "1024", "requests per model that may wait for a free worker slot (more: 429)"},
    {"--shutdown-grace", "DAIS_SHUTDOWN_GRACE", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(shutdown_grace_ms), 0, 0, "10s",
     "on SIGTERM, how long requests in flight may still finish"},
    {"--otlp-endpoint", "DAIS_OTLP_ENDPOINT", "URL", DAIS_OPT_STR, 0, FIELD(trace_endpoint), 0, 0,
     "(off)", "OTLP/HTTP collector base URL, e.g. http://jaeger:4318"},
    {"--trace-endpoint", "DAIS_TRACE_ENDPOINT", "URL", DAIS_OPT_STR, DAIS_OPT_ALT,
     FIELD(trace_endpoint), 0, 0, "", "alias of --otlp-endpoint (older name)"},
    {"--k8s-discovery", "DAIS_K8S_DISCOVERY", NULL, DAIS_OPT_BOOL, 0, FIELD(k8s_discovery), 0, 0,
     "off",
     "discover workers through the Kubernetes API: a registered worker whose address is not a "
     "Running pod of the selector any more is drained and removed (variable: 1/true)"},
    {"--k8s-admit", "DAIS_K8S_ADMIT", NULL, DAIS_OPT_BOOL, 0, FIELD(k8s_admit), 0, 0, "off",
     "with --k8s-discovery: refuse a registration (not_a_pod, retried) from an address that is "
     "not a Running pod of the last pod list (variable: 1/true)"},
    {"--k8s-namespace", "DAIS_K8S_NAMESPACE", "NS", DAIS_OPT_STR, NE, FIELD(k8s_namespace), 0, 0,
     "(service-account namespace)", "namespace whose pods are listed"},
    {"--k8s-selector", "DAIS_K8S_SELECTOR", "SELECTOR", DAIS_OPT_STR, NE, FIELD(k8s_selector), 0, 0,
     "app=dais-worker", "label selector of the worker pods"},
    {"--k8s-interval", "DAIS_K8S_INTERVAL", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(k8s_interval_ms), 0, 0, "10s",
     "how often the pod list is fetched (failures retry with backoff)"},
    {"--k8s-api-server", "DAIS_K8S_API_SERVER", "URL", DAIS_OPT_STR, NE, FIELD(k8s_api_server), 0,
     0, "(KUBERNETES_SERVICE_HOST/_PORT)", "Kubernetes API base URL, e.g. https://10.0.0.1:443"},
    {"--k8s-token-file", "DAIS_K8S_TOKEN_FILE", "PATH", DAIS_OPT_STR, NE, FIELD(k8s_token_file), 0,
     0, DAIS_K8S_SA_DIR_TEXT "/token", "service-account token (re-read on every list)"},
    {"--k8s-ca-file", "DAIS_K8S_CA_FILE", "PATH", DAIS_OPT_STR, NE, FIELD(k8s_ca_file), 0, 0,
     DAIS_K8S_SA_DIR_TEXT "/ca.crt", "CA certificate the API server is verified against"},
    DAIS_OPT_TAIL_ROWS(dais_master_config),
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

void dais_master_config_default(dais_master_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->node_id, sizeof(c->node_id), "master");
    snprintf(c->http_addr, sizeof(c->http_addr), "0.0.0.0");
    snprintf(c->cluster_addr, sizeof(c->cluster_addr), "0.0.0.0");
    snprintf(c->heartbeat_addr, sizeof(c->heartbeat_addr), "0.0.0.0");
    snprintf(c->metrics_addr, sizeof(c->metrics_addr), "0.0.0.0");
    snprintf(c->sync_addr, sizeof(c->sync_addr), "0.0.0.0");
    c->sync_port = 8890;
    c->sync_transfers = 4;
    c->sync_chunk = 4u << 20;
    c->sync_timeout_ms = 30000;
    c->http_port = 8080;
    c->cluster_port = 8888;
    c->heartbeat_port = 8889;
    c->metrics_port = 9090;
    c->metrics_enabled = true;
    c->heartbeat_interval_ms = 5000;
    c->heartbeat_misses = 20; /* docs/reliability.md: the loss-tolerant detector's k */
    c->auth_window_ms = 60000;
    c->body_limit = 1u << 20;
    c->max_connections = 4096;
    c->idle_timeout_ms = 60000;
    c->default_max_tokens = 128;
    c->max_tokens_limit = 8192;
    c->request_timeout_ms = 600000;
    c->stall_timeout_ms = 10000;
    c->queue_limit = 1024;
    c->shutdown_grace_ms = 10000;
    snprintf(c->k8s_selector, sizeof(c->k8s_selector), "app=dais-worker");
    c->k8s_interval_ms = 10000;
    c->log_level = DAIS_LOG_INFO;
    c->log_format = DAIS_LOG_TEXT;
}

bool dais_model_name_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > DAIS_MODEL_NAME_MAX) return false;
    if (s[0] == ' ' || s[len - 1] == ' ') return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) return false;
    }
    return true;
}

static bool hex64_valid(const char *s)
{
    size_t n = strlen(s);
    if (n != 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* Adds "NAME" or "NAME@HASH" (len bytes) to the model list. */
static int add_model(dais_master_config *c, const char *s, size_t len, const char *src,
                     dais_err *err)
{
    if (c->n_models >= DAIS_MASTER_MAX_MODELS)
        return dais_err_set(err, DAIS_EINVAL, "%s: more than %d models", src,
                            DAIS_MASTER_MAX_MODELS);
    const char *at = memchr(s, '@', len);
    size_t name_len = at != NULL ? (size_t)(at - s) : len;
    if (!dais_model_name_valid(s, name_len))
        return dais_err_set(err, DAIS_EINVAL,
                            "%s: model name must be 1..%d bytes without control characters", src,
                            DAIS_MODEL_NAME_MAX);
    dais_master_model *m = &c->models[c->n_models];
    memcpy(m->name, s, name_len);
    m->name[name_len] = '\0';
    m->hash[0] = '\0';
    if (at != NULL) {
        size_t hlen = len - name_len - 1;
        if (hlen != 64)
            return dais_err_set(err, DAIS_EINVAL, "%s: hash of '%s' must be 64 hex digits", src,
                                m->name);
        memcpy(m->hash, at + 1, 64);
        m->hash[64] = '\0';
        for (int i = 0; i < 64; i++)
            m->hash[i] = (char)tolower((unsigned char)m->hash[i]);
        if (!hex64_valid(m->hash))
            return dais_err_set(err, DAIS_EINVAL, "%s: hash of '%s' must be 64 hex digits", src,
                                m->name);
    }
    for (size_t i = 0; i < c->n_models; i++)
        if (strcmp(c->models[i].name, m->name) == 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: model '%s' listed twice", src, m->name);
    c->n_models++;
    return 0;
}

static int set_token(dais_master_config *c, const char *v, size_t len, const char *src,
                     dais_err *err)
{
    if (len == 0) return dais_err_set(err, DAIS_EINVAL, "%s: the cluster token is empty", src);
    if (len > DAIS_TOKEN_MAX)
        return dais_err_set(err, DAIS_EINVAL, "%s: the cluster token is longer than %d bytes", src,
                            DAIS_TOKEN_MAX);
    memcpy(c->token, v, len);
    c->token[len] = '\0';
    c->token_len = len;
    return 0;
}

/* What the master's own kinds leave for after the parse. */
typedef struct parse_state {
    char addr[DAIS_ADDR_MAX + 1]; /* --addr, "" = not given */
    int token_kind;               /* K_TOKEN or K_TOKEN_FILE once the token is set */
} parse_state;

/* The options.h hook for the master's own kinds. */
static int apply_master(void *ctx, void *base, const dais_opt *o, const char *v, const char *src,
                        dais_err *err)
{
    parse_state *ps = ctx;
    dais_master_config *c = base;
    size_t len = strlen(v);
    switch (o->kind) {
    case K_ADDR_ALL:
        if (len == 0 || len > DAIS_ADDR_MAX)
            return dais_err_set(err, DAIS_EINVAL, "%s: address must be 1..%d bytes", src,
                                DAIS_ADDR_MAX);
        memcpy(ps->addr, v, len + 1);
        return 0;
    case K_BIND:
        return dais_opt_set_str(o, base, v, src, err);
    case K_ID:
        if (len < o->size && !dais_ident_valid(v, len, DAIS_NODE_ID_MAX))
            return dais_err_set(err, DAIS_EINVAL,
                                "%s: node id must be 1..%d bytes of [A-Za-z0-9._:-]", src,
                                DAIS_NODE_ID_MAX);
        return dais_opt_set_str(o, base, v, src, err);
    case K_MODELS:
        /* comma-separated in the variable; a flag carries one (commas allowed there too) */
        for (const char *p = v;;) {
            const char *comma = strchr(p, ',');
            size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
            while (n > 0 && *p == ' ') {
                p++;
                n--;
            }
            while (n > 0 && p[n - 1] == ' ')
                n--;
            if (n > 0) {
                int rc = add_model(c, p, n, src, err);
                if (rc != 0) return rc;
            }
            if (comma == NULL) return 0;
            p = comma + 1;
        }
    case K_RATE: {
        size_t rate = 0;
        if (strcmp(v, "0") != 0 && dais_parse_size(v, &rate) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not 0 or a size per second", src, v);
        memcpy((char *)base + o->off, &rate, sizeof(rate));
        return 0;
    }
    case K_TOKEN:
    case K_TOKEN_FILE:
        /* only flags give both: of the two variables, only the first one set is read */
        if (ps->token_kind != 0 && ps->token_kind != o->kind)
            return dais_err_set(err, DAIS_EINVAL, "give --token or --token-file, not both");
        ps->token_kind = o->kind;
        if (o->kind == K_TOKEN) return set_token(c, v, len, src, err);
        char buf[DAIS_TOKEN_MAX + 2];
        size_t n;
        int rc = dais_opt_read_secret(v, buf, sizeof(buf), &n, src, err);
        return rc != 0 ? rc : set_token(c, buf, n, src, err);
    }
    return dais_err_set(err, DAIS_EINTERNAL, "%s: unhandled option kind", src);
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

int dais_master_config_parse(dais_master_config *c, int argc, char **argv, dais_err *err)
{
    static const char *const shorts[] = {"-h", "--help", NULL};
    parse_state ps = {{0}, 0};
    const dais_opt_spec spec = {options, N_OPTIONS, "--help", shorts, env_get, apply_master, &ps};
    bool set[N_OPTIONS];
    int rc = dais_opt_parse(&spec, c, argc, argv, set, err);
    if (rc != 0) return rc;
    /* A specific bind address, flag or variable, wins over --addr. */
    for (size_t i = 0; i < N_OPTIONS && ps.addr[0] != '\0'; i++)
        if (options[i].kind == K_BIND && !set[i])
            memcpy((char *)c + options[i].off, ps.addr, strlen(ps.addr) + 1);

    if (c->token_len == 0)
        return dais_err_set(err, DAIS_EINVAL,
                            "no cluster token: set DAIS_CLUSTER_TOKEN, --token-file or --token");
    dais_detector_config dc;
    dais_master_detector_config(c, &dc);
    dais_err derr;
    if (dais_detector_config_check(&dc, &derr) != 0)
        return dais_err_set(err, DAIS_EINVAL, "heartbeat settings: %s", derr.msg);
    if (c->k8s_admit && !c->k8s_discovery)
        return dais_err_set(err, DAIS_EINVAL, "--k8s-admit needs --k8s-discovery");
    if (c->sync_chunk < 4096 || c->sync_chunk > DAIS_FRAME_DEFAULT_MAX_BIN)
        return dais_err_set(err, DAIS_EINVAL, "--sync-chunk must be 4KiB..64MiB");
    if (c->default_max_tokens > c->max_tokens_limit)
        return dais_err_set(err, DAIS_EINVAL,
                            "--default-max-tokens (%u) is above --max-tokens-limit (%u)",
                            c->default_max_tokens, c->max_tokens_limit);
    return 0;
}

void dais_master_config_usage(FILE *out)
{
    fprintf(out, "usage: dais master [options]\n\n"
                 "The cluster's front door: HTTP API, worker registration (TCP), heartbeats (UDP)\n"
                 "and Prometheus metrics. Every option can also be set by the environment\n"
                 "variable shown; a flag wins over its variable.\n\n");
    dais_opt_help(out, options, N_OPTIONS, DAIS_OPT_WIDE);
}

void dais_master_detector_config(const dais_master_config *c, dais_detector_config *out)
{
    const uint64_t ms = 1000000ull;
    uint64_t interval = (uint64_t)c->heartbeat_interval_ms;
    uint64_t suspect =
        c->heartbeat_suspect_ms != 0 ? c->heartbeat_suspect_ms : (interval < 500 ? interval : 500);
    uint64_t ack = c->heartbeat_ack_timeout_ms != 0 ? c->heartbeat_ack_timeout_ms
                                                    : (interval < 1000 ? interval : 1000);
    uint64_t dead_after = c->heartbeat_dead_after_ms != 0
                              ? c->heartbeat_dead_after_ms
                              : interval * 3u; /* 15 s with the default interval */
    out->interval_ns = interval * ms;
    out->suspect_interval_ns = suspect * ms;
    out->ack_timeout_ns = ack * ms;
    out->dead_missed = c->heartbeat_misses;
    out->dead_after_ns = dead_after * ms;
}

bool dais_master_config_serves(const dais_master_config *c, const char *name, const char *hash)
{
    if (c->n_models == 0) return true;
    for (size_t i = 0; i < c->n_models; i++) {
        if (strcmp(c->models[i].name, name) != 0) continue;
        return c->models[i].hash[0] == '\0' || hash == NULL ||
               strcasecmp(c->models[i].hash, hash) == 0;
    }
    return false;
}
