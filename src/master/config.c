/*
 * The master's configuration table and parsers (see config.h). Each option is one row of
 * `options`: flag, environment variable, kind, where it goes, default text and help. A value
 * is taken from the last occurrence of the flag, else from the environment, else the default.
 */
#include "master/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum opt_kind {
    K_ADDR_ALL, /* sets the four bind addresses (a specific one wins) */
    K_STR,      /* string field of a given capacity */
    K_PORT,
    K_DURATION,
    K_U32,
    K_SIZE,
    K_MODELS,
    K_TOKEN,
    K_TOKEN_FILE,
    K_LEVEL,
    K_FORMAT,
    K_NO_METRICS,
    K_BOOL, /* a flag without a value sets the bool at off; the variable: 1/true/yes/on */
    K_HELP,
};

typedef struct opt {
    const char *flag;
    const char *env;
    const char *metavar; /* NULL: a flag without a value */
    enum opt_kind kind;
    size_t off;      /* offsetof(dais_master_config, field) */
    size_t cap;      /* K_STR: capacity of the char array */
    uint32_t lo, hi; /* K_U32 range */
    const char *def; /* default as shown in --help */
    const char *help;
} opt;

#define DAIS_K8S_SA_DIR_TEXT "/var/run/secrets/kubernetes.io/serviceaccount"
#define OFF(f) offsetof(dais_master_config, f)
#define SZ(f)  sizeof(((dais_master_config *)0)->f)

static const opt options[] = {
    {"--addr", "DAIS_ADDR", "ADDR", K_ADDR_ALL, 0, 0, 0, 0, "0.0.0.0",
     "bind address for every port below unless its own address is set"},
    {"--http-addr", "DAIS_HTTP_ADDR", "ADDR", K_STR, OFF(http_addr), SZ(http_addr), 0, 0,
     "(--addr)", "HTTP API bind address"},
    {"--http-port", "DAIS_HTTP_PORT", "PORT", K_PORT, OFF(http_port), 0, 0, 0, "8080",
     "HTTP API port (0 = any free port)"},
    {"--cluster-addr", "DAIS_CLUSTER_ADDR", "ADDR", K_STR, OFF(cluster_addr), SZ(cluster_addr), 0,
     0, "(--addr)", "cluster TCP bind address (worker registration)"},
    {"--cluster-port", "DAIS_CLUSTER_PORT", "PORT", K_PORT, OFF(cluster_port), 0, 0, 0, "8888",
     "cluster TCP port"},
    {"--heartbeat-addr", "DAIS_HEARTBEAT_ADDR", "ADDR", K_STR, OFF(heartbeat_addr),
     SZ(heartbeat_addr), 0, 0, "(--addr)", "heartbeat UDP bind address"},
    {"--heartbeat-port", "DAIS_HEARTBEAT_PORT", "PORT", K_PORT, OFF(heartbeat_port), 0, 0, 0,
     "8889", "heartbeat UDP port"},
    {"--metrics-addr", "DAIS_METRICS_ADDR", "ADDR", K_STR, OFF(metrics_addr), SZ(metrics_addr), 0,
     0, "(--addr)", "Prometheus /metrics bind address"},
    {"--metrics-port", "DAIS_METRICS_PORT", "PORT", K_PORT, OFF(metrics_port), 0, 0, 0, "9090",
     "Prometheus /metrics port"},
    {"--no-metrics", "DAIS_NO_METRICS", NULL, K_NO_METRICS, 0, 0, 0, 0, "off",
     "do not serve /metrics (variable: 1/true)"},
    {"--token", "DAIS_CLUSTER_TOKEN", "SECRET", K_TOKEN, 0, 0, 0, 0, "(required)",
     "cluster token shared by every node (prefer the variable or --token-file)"},
    {"--token-file", "DAIS_CLUSTER_TOKEN_FILE", "PATH", K_TOKEN_FILE, 0, 0, 0, 0, "",
     "read the cluster token from a file (trailing newline ignored)"},
    {"--model", "DAIS_MODELS", "NAME[@SHA256]", K_MODELS, 0, 0, 0, 0, "(any)",
     "a served model, repeatable (variable: comma-separated); @SHA256 pins the GGUF file"},
    {"--id", "DAIS_NODE_ID", "ID", K_STR, OFF(node_id), SZ(node_id), 0, 0, "master",
     "this node's id in cluster messages"},
    {"--heartbeat-interval", "DAIS_HEARTBEAT_INTERVAL", "DURATION", K_DURATION,
     OFF(heartbeat_interval_ms), 0, 0, 0, "5s", "how often each worker gets a HEARTBEAT"},
    {"--heartbeat-misses", "DAIS_HEARTBEAT_MISSES", "N", K_U32, OFF(heartbeat_misses), 0, 1, 1000,
     "20",
     "probes missed in a row (and --heartbeat-dead-after without any answer) before a worker "
     "is dead; suspect after the first (20: 30 % loss ~ 2.5e-8 false removals/worker-hour)"},
    {"--heartbeat-suspect-interval", "DAIS_HEARTBEAT_SUSPECT_INTERVAL", "DURATION", K_DURATION,
     OFF(heartbeat_suspect_ms), 0, 0, 0, "min(500ms, interval)",
     "probe period of a worker whose last probe went unanswered"},
    {"--heartbeat-ack-timeout", "DAIS_HEARTBEAT_ACK_TIMEOUT", "DURATION", K_DURATION,
     OFF(heartbeat_ack_timeout_ms), 0, 0, 0, "min(1s, interval)",
     "a probe unanswered this long counts as missed"},
    {"--heartbeat-dead-after", "DAIS_HEARTBEAT_DEAD_AFTER", "DURATION", K_DURATION,
     OFF(heartbeat_dead_after_ms), 0, 0, 0, "3 x interval",
     "a worker is dead only after this long without any answer (loss tolerance)"},
    {"--auth-window", "DAIS_AUTH_WINDOW", "DURATION", K_DURATION, OFF(auth_window_ms), 0, 0, 0,
     "60s", "registration clock-skew and replay window"},
    {"--body-limit", "DAIS_BODY_LIMIT", "SIZE", K_SIZE, OFF(body_limit), 0, 0, 0, "1MiB",
     "largest request body accepted (larger: 413)"},
    {"--max-connections", "DAIS_MAX_CONNECTIONS", "N", K_U32, OFF(max_connections), 0, 1, 1000000,
     "4096", "HTTP connections served at once (more wait in the listen queue)"},
    {"--idle-timeout", "DAIS_IDLE_TIMEOUT", "DURATION", K_DURATION, OFF(idle_timeout_ms), 0, 0, 0,
     "60s", "close a keep-alive HTTP connection idle this long"},
    {"--default-max-tokens", "DAIS_DEFAULT_MAX_TOKENS", "N", K_U32, OFF(default_max_tokens), 0, 1,
     1u << 20, "128", "max_tokens of a request that does not set it"},
    {"--max-tokens-limit", "DAIS_MAX_TOKENS_LIMIT", "N", K_U32, OFF(max_tokens_limit), 0, 1,
     1u << 20, "8192", "largest max_tokens a request may ask for"},
    {"--request-timeout", "DAIS_REQUEST_TIMEOUT", "DURATION", K_DURATION, OFF(request_timeout_ms),
     0, 0, 0, "10m", "a request's whole time budget (then 504)"},
    {"--stall-timeout", "DAIS_STALL_TIMEOUT", "DURATION", K_DURATION, OFF(stall_timeout_ms), 0, 0,
     0, "10s",
     "a worker silent this long on a request (before its first frame or between frames) is "
     "given up on: CANCEL, breaker failure, the request continues on another worker (0 = off)"},
    {"--queue-limit", "DAIS_QUEUE_LIMIT", "N", K_U32, OFF(queue_limit), 0, 0, 1000000, "1024",
     "requests per model that may wait for a free worker slot (more: 429)"},
    {"--shutdown-grace", "DAIS_SHUTDOWN_GRACE", "DURATION", K_DURATION, OFF(shutdown_grace_ms), 0,
     0, 0, "10s", "on SIGTERM, how long requests in flight may still finish"},
    {"--otlp-endpoint", "DAIS_OTLP_ENDPOINT", "URL", K_STR, OFF(trace_endpoint), SZ(trace_endpoint),
     0, 0, "(off)", "OTLP/HTTP collector base URL, e.g. http://jaeger:4318"},
    /* an alias row follows the option it names (see is_alias) */
    {"--trace-endpoint", "DAIS_TRACE_ENDPOINT", "URL", K_STR, OFF(trace_endpoint),
     SZ(trace_endpoint), 0, 0, "", "alias of --otlp-endpoint (older name)"},
    {"--k8s-discovery", "DAIS_K8S_DISCOVERY", NULL, K_BOOL, OFF(k8s_discovery), 0, 0, 0, "off",
     "discover workers through the Kubernetes API: a registered worker whose address is not a "
     "Running pod of the selector any more is drained and removed (variable: 1/true)"},
    {"--k8s-namespace", "DAIS_K8S_NAMESPACE", "NS", K_STR, OFF(k8s_namespace), SZ(k8s_namespace),
     0, 0, "(service-account namespace)", "namespace whose pods are listed"},
    {"--k8s-selector", "DAIS_K8S_SELECTOR", "SELECTOR", K_STR, OFF(k8s_selector),
     SZ(k8s_selector), 0, 0, "app=dais-worker", "label selector of the worker pods"},
    {"--k8s-interval", "DAIS_K8S_INTERVAL", "DURATION", K_DURATION, OFF(k8s_interval_ms), 0, 0, 0,
     "10s", "how often the pod list is fetched (failures retry with backoff)"},
    {"--k8s-api-server", "DAIS_K8S_API_SERVER", "URL", K_STR, OFF(k8s_api_server),
     SZ(k8s_api_server), 0, 0, "(KUBERNETES_SERVICE_HOST/_PORT)",
     "Kubernetes API base URL, e.g. https://10.0.0.1:443"},
    {"--k8s-token-file", "DAIS_K8S_TOKEN_FILE", "PATH", K_STR, OFF(k8s_token_file),
     SZ(k8s_token_file), 0, 0, DAIS_K8S_SA_DIR_TEXT "/token",
     "service-account token (re-read on every list)"},
    {"--k8s-ca-file", "DAIS_K8S_CA_FILE", "PATH", K_STR, OFF(k8s_ca_file), SZ(k8s_ca_file), 0, 0,
     DAIS_K8S_SA_DIR_TEXT "/ca.crt", "CA certificate the API server is verified against"},
    {"--log-level", "DAIS_LOG_LEVEL", "LEVEL", K_LEVEL, 0, 0, 0, 0, "info",
     "debug | info | warn | error"},
    {"--log-format", "DAIS_LOG_FORMAT", "FORMAT", K_FORMAT, 0, 0, 0, 0, "text", "text | json"},
    {"--help", NULL, NULL, K_HELP, 0, 0, 0, 0, "", "show this help"},
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

/* ---- value parsers ----------------------------------------------------------------------- */

int dais_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    if (s == NULL || *s == '\0') return DAIS_EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') return DAIS_EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > hi) return DAIS_ERANGE;
    }
    if (v < lo) return DAIS_ERANGE;
    *out = (uint32_t)v;
    return 0;
}

int dais_parse_port(const char *s, uint16_t *out)
{
    uint32_t v;
    int rc = dais_parse_u32(s, 0, 65535, &v);
    if (rc == 0) *out = (uint16_t)v;
    return rc;
}

/* A non-negative decimal number (digits with an optional fraction) followed by a unit;
 * returns the number and points *unit at the rest. */
static int parse_number_unit(const char *s, double *num, const char **unit)
{
    const char *p = s;
    if (!isdigit((unsigned char)*p)) return DAIS_EINVAL;
    double v = 0;
    int digits = 0;
    for (; isdigit((unsigned char)*p); p++) {
        if (++digits > 15) return DAIS_ERANGE;
        v = v * 10 + (*p - '0');
    }
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) return DAIS_EINVAL;
        double scale = 0.1;
        for (int n = 0; isdigit((unsigned char)*p); p++, n++) {
            if (n < 9) v += (*p - '0') * scale;
            scale /= 10;
        }
    }
    *num = v;
    *unit = p;
    return 0;
}

int dais_parse_duration_ms(const char *s, uint32_t *out)
{
    double v;
    const char *unit;
    if (s == NULL || parse_number_unit(s, &v, &unit) != 0) return DAIS_EINVAL;
    double ms;
    if (*unit == '\0' || strcmp(unit, "s") == 0)
        ms = v * 1000.0;
    else if (strcmp(unit, "ms") == 0)
        ms = v;
    else if (strcmp(unit, "m") == 0 || strcmp(unit, "min") == 0)
        ms = v * 60000.0;
    else if (strcmp(unit, "h") == 0)
        ms = v * 3600000.0;
    else
        return DAIS_EINVAL;
    ms = floor(ms + 0.5);
    if (ms < 1.0 || ms > 86400000.0) return DAIS_ERANGE;
    *out = (uint32_t)ms;
    return 0;
}

int dais_parse_size(const char *s, size_t *out)
{
    double v;
    const char *unit;
    if (s == NULL || parse_number_unit(s, &v, &unit) != 0) return DAIS_EINVAL;
    double mult;
    if (*unit == '\0' || strcmp(unit, "B") == 0)
        mult = 1;
    else if (strcmp(unit, "k") == 0 || strcmp(unit, "K") == 0 || strcmp(unit, "KiB") == 0)
        mult = 1024.0;
    else if (strcmp(unit, "m") == 0 || strcmp(unit, "M") == 0 || strcmp(unit, "MiB") == 0)
        mult = 1048576.0;
    else if (strcmp(unit, "g") == 0 || strcmp(unit, "G") == 0 || strcmp(unit, "GiB") == 0)
        mult = 1073741824.0;
    else
        return DAIS_EINVAL;
    double b = floor(v * mult);
    if (b < 1.0 || b > 1073741824.0) return DAIS_ERANGE;
    *out = (size_t)b;
    return 0;
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

static int read_token_file(dais_master_config *c, const char *path, const char *src, dais_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dais_err_set(err, DAIS_EINVAL, "%s: cannot open %s: %s", src, path, strerror(errno));
    char buf[DAIS_TOKEN_MAX + 2];
    size_t n = 0;
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return dais_err_set(err, DAIS_EINVAL, "%s: cannot read %s: %s", src, path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (memchr(buf, '\0', n) != NULL)
        return dais_err_set(err, DAIS_EINVAL, "%s: %s holds a NUL byte", src, path);
    return set_token(c, buf, n, src, err);
}

static bool truthy(const char *v)
{
    return strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
           strcasecmp(v, "on") == 0;
}

/* Applies one value of option `o`; `src` names where it came from for messages. */
static int apply(dais_master_config *c, const opt *o, const char *v, const char *src, dais_err *err)
{
    char *base = (char *)c;
    switch (o->kind) {
    case K_ADDR_ALL: {
        size_t len = strlen(v);
        if (len == 0 || len > DAIS_ADDR_MAX)
            return dais_err_set(err, DAIS_EINVAL, "%s: address must be 1..%d bytes", src,
                                DAIS_ADDR_MAX);
        memcpy(c->http_addr, v, len + 1);
        memcpy(c->cluster_addr, v, len + 1);
        memcpy(c->heartbeat_addr, v, len + 1);
        memcpy(c->metrics_addr, v, len + 1);
        return 0;
    }
    case K_STR: {
        size_t len = strlen(v);
        if (len >= o->cap)
            return dais_err_set(err, DAIS_EINVAL, "%s: longer than %zu bytes", src, o->cap - 1);
        if (o->off == OFF(node_id) && !dais_ident_valid(v, len, DAIS_NODE_ID_MAX))
            return dais_err_set(err, DAIS_EINVAL,
                                "%s: node id must be 1..%d bytes of "
                                "[A-Za-z0-9._:-]",
                                src, DAIS_NODE_ID_MAX);
        if (o->off != OFF(trace_endpoint) && len == 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: empty", src);
        memcpy(base + o->off, v, len + 1);
        return 0;
    }
    case K_PORT:
        if (dais_parse_port(v, (uint16_t *)(void *)(base + o->off)) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not a port (0..65535)", src, v);
        return 0;
    case K_DURATION:
        if (dais_parse_duration_ms(v, (uint32_t *)(void *)(base + o->off)) != 0)
            return dais_err_set(err, DAIS_EINVAL,
                                "%s: '%s' is not a duration between 1ms and 24h (e.g. 5s, 200ms)",
                                src, v);
        return 0;
    case K_U32:
        if (dais_parse_u32(v, o->lo, o->hi, (uint32_t *)(void *)(base + o->off)) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not an integer in %u..%u", src, v,
                                o->lo, o->hi);
        return 0;
    case K_SIZE:
        if (dais_parse_size(v, (size_t *)(void *)(base + o->off)) != 0)
            return dais_err_set(err, DAIS_EINVAL,
                                "%s: '%s' is not a size between 1 byte and 1GiB (e.g. 1MiB)", src,
                                v);
        return 0;
    case K_MODELS: {
        /* comma-separated in the variable; a flag carries one (commas allowed there too) */
        const char *p = v;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
            while (len > 0 && *p == ' ') {
                p++;
                len--;
            }
            while (len > 0 && p[len - 1] == ' ')
                len--;
            if (len > 0) {
                int rc = add_model(c, p, len, src, err);
                if (rc != 0) return rc;
            }
            if (comma == NULL) break;
            p = comma + 1;
        }
        return 0;
    }
    case K_TOKEN:
        return set_token(c, v, strlen(v), src, err);
    case K_TOKEN_FILE:
        return read_token_file(c, v, src, err);
    case K_LEVEL:
        if (dais_log_parse_level(v, &c->log_level) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not debug|info|warn|error", src, v);
        return 0;
    case K_FORMAT:
        if (dais_log_parse_format(v, &c->log_format) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not text|json", src, v);
        return 0;
    case K_NO_METRICS:
        c->metrics_enabled = !truthy(v);
        return 0;
    case K_BOOL:
        *(bool *)(void *)(base + o->off) = truthy(v);
        return 0;
    case K_HELP:
        return 0;
    }
    return dais_err_set(err, DAIS_EINTERNAL, "%s: unhandled option kind", src);
}

/* An alias row (help "alias of ...") directly follows the option it names: its flag counts as
 * that option's flag, its variable is read only when the option's own is unset. */
static bool is_alias(const opt *o)
{
    return strncmp(o->help, "alias of ", 9) == 0;
}

static const opt *find_flag(const char *arg, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].flag) == len && strncmp(options[i].flag, arg, len) == 0)
            return &options[i];
    if (len == 2 && strncmp(arg, "-h", 2) == 0) return &options[N_OPTIONS - 1];
    return NULL;
}

/* The values the command line gives, per option: the last occurrence (K_MODELS: all). */
typedef struct flag_vals {
    const char *last[N_OPTIONS];
    const char *models[DAIS_MASTER_MAX_MODELS + 1];
    size_t n_models;
    bool help;
} flag_vals;

static int scan_flags(int argc, char **argv, flag_vals *fv, dais_err *err)
{
    memset(fv, 0, sizeof(*fv));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t len = eq != NULL ? (size_t)(eq - a) : strlen(a);
        const opt *o = a[0] == '-' ? find_flag(a, len) : NULL;
        if (o == NULL) return dais_err_set(err, DAIS_EINVAL, "unknown option '%s' (see --help)", a);
        if (is_alias(o)) o = o - 1;
        const char *v;
        if (o->metavar == NULL) {
            if (eq != NULL) return dais_err_set(err, DAIS_EINVAL, "%s takes no value", o->flag);
            v = "1";
        } else if (eq != NULL) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc)
                return dais_err_set(err, DAIS_EINVAL, "%s needs a value (%s)", o->flag, o->metavar);
            v = argv[++i];
        }
        if (o->kind == K_HELP) {
            fv->help = true;
        } else if (o->kind == K_MODELS) {
            if (fv->n_models >= DAIS_MASTER_MAX_MODELS)
                return dais_err_set(err, DAIS_EINVAL, "--model: more than %d models",
                                    DAIS_MASTER_MAX_MODELS);
            fv->models[fv->n_models++] = v;
        }
        fv->last[o - options] = v;
    }
    return 0;
}

int dais_master_config_parse(dais_master_config *c, int argc, char **argv, dais_err *err)
{
    flag_vals fv;
    int rc = scan_flags(argc, argv, &fv, err);
    if (rc != 0) return rc;
    if (fv.help) return 1;

    /* The generic address first, so that a specific one (flag or variable) wins over it. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < N_OPTIONS; i++) {
            const opt *o = &options[i];
            if ((o->kind == K_ADDR_ALL) != (pass == 0) || o->kind == K_HELP) continue;
            if (o->kind == K_TOKEN_FILE) continue; /* handled with K_TOKEN below */
            if (is_alias(o)) continue;             /* handled with the option it names */
            char src[96];
            if (o->kind == K_MODELS && fv.n_models > 0) {
                for (size_t k = 0; k < fv.n_models; k++) {
                    rc = apply(c, o, fv.models[k], o->flag, err);
                    if (rc != 0) return rc;
                }
                continue;
            }
            if (o->kind == K_TOKEN) {
                const opt *file = o + 1;
                const char *tflag = fv.last[i], *fflag = fv.last[file - options];
                if (tflag != NULL && fflag != NULL)
                    return dais_err_set(err, DAIS_EINVAL, "give --token or --token-file, not both");
                const char *tenv = getenv(o->env), *fenv = getenv(file->env);
                if (tflag != NULL)
                    rc = apply(c, o, tflag, o->flag, err);
                else if (fflag != NULL)
                    rc = apply(c, file, fflag, file->flag, err);
                else if (tenv != NULL && *tenv != '\0')
                    rc = apply(c, o, tenv, o->env, err);
                else if (fenv != NULL && *fenv != '\0')
                    rc = apply(c, file, fenv, file->env, err);
                if (rc != 0) return rc;
                continue;
            }
            const char *v = fv.last[i];
            if (v != NULL) {
                snprintf(src, sizeof(src), "%s", o->flag);
            } else if (o->env != NULL && (v = getenv(o->env)) != NULL && *v != '\0') {
                snprintf(src, sizeof(src), "%s", o->env);
            } else if (i + 1 < N_OPTIONS && is_alias(&options[i + 1]) &&
                       (v = getenv(options[i + 1].env)) != NULL && *v != '\0') {
                snprintf(src, sizeof(src), "%s", options[i + 1].env);
            } else {
                continue;
            }
            rc = apply(c, o, v, src, err);
            if (rc != 0) return rc;
        }
    }

    if (c->token_len == 0)
        return dais_err_set(err, DAIS_EINVAL,
                            "no cluster token: set DAIS_CLUSTER_TOKEN, --token-file or --token");
    dais_detector_config dc;
    dais_master_detector_config(c, &dc);
    dais_err derr;
    if (dais_detector_config_check(&dc, &derr) != 0)
        return dais_err_set(err, DAIS_EINVAL, "heartbeat settings: %s", derr.msg);
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
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt *o = &options[i];
        char left[64];
        if (o->metavar != NULL)
            snprintf(left, sizeof(left), "%s %s", o->flag, o->metavar);
        else
            snprintf(left, sizeof(left), "%s", o->flag);
        fprintf(out, "  %-36s  %s", left, o->help);
        if (o->def[0] != '\0') fprintf(out, " [%s]", o->def);
        fprintf(out, "\n");
        if (o->env != NULL) fprintf(out, "  %-36s    env %s\n", "", o->env);
    }
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
