/* `dais worker` options: defaults, DAIS_* variables, flags, --help (config.h). */
#include "worker/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum kind {
    K_STR,
    K_PATH,
    K_HOSTPORT,
    K_LISTEN,
    K_PORT,
    K_INT,
    K_DURATION,
    K_TOKEN,
    K_TOKEN_FILE,
    K_BOOL_OFF,
    K_LEVEL,
    K_FORMAT,
    K_ID,
    K_LAYERS,
    K_HELP
};

typedef struct option {
    const char *flag, *env, *arg;
    enum kind kind;
    size_t off, size;
    long lo, hi;
    const char *def, *help;
} option;

#define OFF(f) offsetof(dais_worker_config, f)
#define SZ(f)  sizeof(((dais_worker_config *)0)->f)

static const option options[] = {
    {"--model", "DAIS_MODEL", "PATH", K_PATH, OFF(model), SZ(model), 0, 0, "(required)",
     "GGUF model file to serve"},
    {"--master", "DAIS_MASTER", "HOST:PORT", K_HOSTPORT, 0, 0, 0, 0, "localhost:8888",
     "master's cluster address; a DNS name is resolved (and retried) asynchronously"},
    {"--id", "DAIS_NODE_ID", "ID", K_ID, OFF(node_id), SZ(node_id), 0, 0, "(host name)",
     "this worker's node id: 1-128 of [A-Za-z0-9._:-]"},
    {"--token", "DAIS_CLUSTER_TOKEN", "SECRET", K_TOKEN, 0, 0, 0, 0, "(required)",
     "shared cluster token (prefer the variable or --token-file: flags show in ps)"},
    {"--token-file", "DAIS_CLUSTER_TOKEN_FILE", "PATH", K_TOKEN_FILE, 0, 0, 0, 0, "",
     "read the cluster token from a file (a trailing newline is ignored)"},
    {"--addr", "DAIS_ADDR", "ADDR", K_STR, OFF(addr), SZ(addr), 0, 0, "0.0.0.0",
     "bind address for heartbeats and metrics"},
    {"--heartbeat-port", "DAIS_HEARTBEAT_PORT", "PORT", K_PORT, OFF(heartbeat_port), 0, 0, 65535,
     "8889", "UDP port the master sends HEARTBEAT to (0 = any free port)"},
    {"--listen", "DAIS_LISTEN", "ADDR:PORT", K_LISTEN, 0, 0, 0, 0, "0.0.0.0:8889",
     "--addr and --heartbeat-port in one"},
    {"--advertise", "DAIS_ADVERTISE", "HOST", K_STR, OFF(advertise), SZ(advertise), 0, 0,
     "(--addr unless wildcard)",
     "address the master should send heartbeats to "
     "(empty: the address it sees the connection from)"},
    {"--metrics-addr", "DAIS_METRICS_ADDR", "ADDR", K_STR, OFF(metrics_addr), SZ(metrics_addr), 0,
     0, "(--addr)", "Prometheus /metrics bind address"},
    {"--metrics-port", "DAIS_METRICS_PORT", "PORT", K_PORT, OFF(metrics_port), 0, 0, 65535, "9090",
     "Prometheus /metrics port (0 = any free port)"},
    {"--no-metrics", "DAIS_NO_METRICS", NULL, K_BOOL_OFF, OFF(metrics_enabled), 0, 0, 0, "off",
     "do not serve /metrics (variable: 1/true)"},
    {"--threads", "DAIS_THREADS", "N", K_INT, OFF(threads), sizeof(int), 1, 1024, "(usable CPUs)",
     "compute threads of the engine"},
    {"--slots", "DAIS_SLOTS", "N", K_INT, OFF(slots), sizeof(int32_t), 1, 4096, "4",
     "sequences decoded together (each has its own KV cache)"},
    {"--ctx", "DAIS_CTX", "N", K_INT, OFF(ctx), sizeof(int32_t), 0, 1 << 20, "(min(2048, model))",
     "context positions per sequence"},
    {"--batch", "DAIS_BATCH", "N", K_INT, OFF(batch), sizeof(int32_t), 1, 1 << 20, "512",
     "most tokens in one forward pass (prompt chunks + one per decoding sequence)"},
    {"--queue", "DAIS_QUEUE", "N", K_INT, OFF(queue), sizeof(int32_t), 0, 1 << 20, "64",
     "requests that may wait for a slot; beyond that the worker answers busy"},
    {"--layers", "DAIS_LAYERS", "FIRST:LAST", K_LAYERS, 0, 0, 0, 0, "(all)",
     "hold only layers [FIRST, LAST) of the model: a pipeline shard (docs/sharding.md)"},
    {"--master-timeout", "DAIS_MASTER_TIMEOUT", "DURATION", K_DURATION, OFF(master_timeout_ms), 0,
     0, 0, "(8 heartbeats)", "re-register when no heartbeat arrived for this long"},
    {"--register-timeout", "DAIS_REGISTER_TIMEOUT", "DURATION", K_DURATION,
     OFF(register_timeout_ms), 0, 0, 0, "10s", "wait this long for NODE_ACCEPT"},
    {"--retry-base", "DAIS_RETRY_BASE", "DURATION", K_DURATION, OFF(retry_base_ms), 0, 0, 0,
     "100ms", "first reconnect delay (exponential backoff with full jitter)"},
    {"--retry-max", "DAIS_RETRY_MAX", "DURATION", K_DURATION, OFF(retry_max_ms), 0, 0, 0, "5s",
     "longest reconnect delay"},
    {"--drain-timeout", "DAIS_DRAIN_TIMEOUT", "DURATION", K_DURATION, OFF(drain_timeout_ms), 0, 0,
     0, "30s", "on SIGTERM, how long in-flight requests may still run"},
    {"--max-frame-json", "DAIS_MAX_FRAME_JSON", "BYTES", K_INT, OFF(max_frame_json),
     sizeof(uint32_t), 1024, 1 << 30, "1048576", "largest accepted frame envelope"},
    {"--max-frame-bin", "DAIS_MAX_FRAME_BIN", "BYTES", K_INT, OFF(max_frame_bin), sizeof(uint32_t),
     0, 1 << 30, "67108864", "largest accepted binary payload"},
    {"--otlp-endpoint", "DAIS_OTLP_ENDPOINT", "URL", K_STR, OFF(trace_endpoint), SZ(trace_endpoint),
     0, 0, "", "OTLP/HTTP collector for spans (empty = off)"},
    /* an alias row follows the option it names (see is_alias) */
    {"--trace-endpoint", "DAIS_TRACE_ENDPOINT", "URL", K_STR, OFF(trace_endpoint),
     SZ(trace_endpoint), 0, 0, "", "alias of --otlp-endpoint (older name)"},
    {"--log-level", "DAIS_LOG_LEVEL", "LEVEL", K_LEVEL, 0, 0, 0, 0, "info",
     "debug | info | warn | error"},
    {"--log-format", "DAIS_LOG_FORMAT", "FORMAT", K_FORMAT, 0, 0, 0, 0, "text", "text | json"},
    {"--help", NULL, NULL, K_HELP, 0, 0, 0, 0, "", "show this help"},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

void dais_worker_config_help(FILE *out)
{
    fprintf(out, "usage: dais worker --model PATH --master HOST:PORT [options]\n\n"
                 "Runs a worker node: loads the model, registers with the master (NODE_DISCOVERY\n"
                 "on its cluster port), answers heartbeats and serves inference requests with\n"
                 "continuous batching. Every option can also be set by its variable; flags win.\n"
                 "SIGTERM/SIGINT drain (tell the master, finish in-flight work, exit); a second\n"
                 "signal exits at once.\n\noptions:\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option *o = &options[i];
        char left[64];
        snprintf(left, sizeof(left), "%s%s%s", o->flag, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(out, "  %-28s %s\n", left, o->help);
        if (o->env != NULL || o->def[0] != '\0')
            fprintf(out, "  %-28s %s%s%s%s\n", "", o->env ? "$" : "", o->env ? o->env : "",
                    o->def[0] ? (o->env ? ", default " : "default ") : "", o->def);
    }
}

int dais_worker_parse_duration(const char *s, uint32_t *ms)
{
    if (s == NULL || *s == '\0') return DAIS_EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !isfinite(v) || v < 0) return DAIS_EINVAL;
    double mul;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else
        return DAIS_EINVAL;
    double r = floor(v * mul + 0.5);
    if (r < 1 || r > 86400000.0) return DAIS_EINVAL;
    *ms = (uint32_t)r;
    return 0;
}

int dais_worker_parse_layers(const char *s, int32_t *first, int32_t *last)
{
    if (s == NULL) return DAIS_EINVAL;
    errno = 0;
    char *end;
    long a = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != ':' || a < 0) return DAIS_EINVAL;
    const char *t = end + 1;
    long b = strtol(t, &end, 10);
    if (errno != 0 || end == t || *end != '\0' || b <= a || b > 1024) return DAIS_EINVAL;
    *first = (int32_t)a;
    *last = (int32_t)b;
    return 0;
}

static int parse_port(const char *s, long lo, uint16_t *out)
{
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > 65535) return DAIS_EINVAL;
    *out = (uint16_t)v;
    return 0;
}

int dais_worker_parse_hostport(const char *s, char *host, size_t host_cap, uint16_t *port,
                               uint16_t def)
{
    if (s == NULL || *s == '\0') return DAIS_EINVAL;
    const char *h = s, *p = NULL;
    size_t hl;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL) return DAIS_EINVAL;
        h = s + 1;
        hl = (size_t)(close - h);
        if (close[1] == ':')
            p = close + 2;
        else if (close[1] != '\0')
            return DAIS_EINVAL;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon != NULL && strchr(s, ':') != colon)
            return DAIS_EINVAL; /* a bare IPv6 address needs brackets */
        hl = colon != NULL ? (size_t)(colon - s) : strlen(s);
        p = colon != NULL ? colon + 1 : NULL;
    }
    if (hl == 0 || hl >= host_cap) return DAIS_EINVAL;
    for (size_t i = 0; i < hl; i++)
        if (!(isalnum((unsigned char)h[i]) || h[i] == '.' || h[i] == '-' || h[i] == '_' ||
              h[i] == ':'))
            return DAIS_EINVAL;
    uint16_t v = def;
    if (p != NULL && parse_port(p, 1, &v) != 0) return DAIS_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = v;
    return 0;
}

static int read_token_file(dais_worker_config *c, const char *path, const char *src, dais_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dais_err_set(err, DAIS_EINVAL, "%s: cannot open %s: %s", src, path, strerror(errno));
    char buf[DAIS_WORKER_TOKEN_MAX + 2];
    size_t n = 0;
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n == 0 || n > DAIS_WORKER_TOKEN_MAX)
        return dais_err_set(err, DAIS_EINVAL, "%s: %s must hold a token of 1..%d bytes", src, path,
                            DAIS_WORKER_TOKEN_MAX);
    memcpy(c->token, buf, n);
    c->token[n] = '\0';
    c->token_len = n;
    return 0;
}

static bool truthy(const char *v)
{
    return v == NULL || strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 ||
           strcasecmp(v, "yes") == 0 || strcasecmp(v, "on") == 0;
}

/* Applies one value `v` (NULL for a flag without argument) from `src` (flag or variable). */
static int apply(dais_worker_config *c, const option *o, const char *v, const char *src,
                 dais_err *err)
{
    char *base = (char *)c;
    /* Only K_BOOL_OFF options are declared without an argument in the table; saying so here
     * keeps every other case's use of v visibly safe. */
    if (v == NULL && o->kind != K_BOOL_OFF)
        return dais_err_set(err, DAIS_EINVAL, "%s needs a value", src);
    switch (o->kind) {
    case K_STR:
    case K_PATH:
    case K_ID:
        if (strlen(v) >= o->size)
            return dais_err_set(err, DAIS_EINVAL, "%s: longer than %zu bytes", src, o->size - 1);
        if (o->kind == K_ID && !dais_ident_valid(v, strlen(v), DAIS_NODE_ID_MAX))
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not 1-128 of [A-Za-z0-9._:-]", src,
                                v);
        if (o->kind == K_PATH && v[0] == '\0')
            return dais_err_set(err, DAIS_EINVAL, "%s: empty path", src);
        memcpy(base + o->off, v, strlen(v) + 1);
        return 0;
    case K_HOSTPORT:
        if (dais_worker_parse_hostport(v, c->master_host, sizeof(c->master_host), &c->master_port,
                                       8888) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not HOST[:PORT]", src, v);
        return 0;
    case K_LISTEN: {
        char host[64];
        uint16_t port;
        const char *colon = strrchr(v, ':');
        if (colon != NULL && colon[1] == '0' && colon[2] == '\0') {
            /* ADDR:0 = any free port (parse_hostport refuses port 0) */
            char tmp[80];
            snprintf(tmp, sizeof(tmp), "%.*s", (int)(colon - v), v);
            if (dais_worker_parse_hostport(tmp, host, sizeof(host), &port, 1) != 0)
                return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not ADDR:PORT", src, v);
            port = 0;
        } else if (dais_worker_parse_hostport(v, host, sizeof(host), &port, c->heartbeat_port) !=
                   0) {
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not ADDR:PORT", src, v);
        }
        snprintf(c->addr, sizeof(c->addr), "%s", host);
        c->heartbeat_port = port;
        return 0;
    }
    case K_PORT:
        if (parse_port(v, o->lo, (uint16_t *)(void *)(base + o->off)) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not a port in 0..65535", src, v);
        return 0;
    case K_INT: {
        errno = 0;
        char *end;
        long x = strtol(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || x < o->lo || x > o->hi)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not an integer in %ld..%ld", src, v,
                                o->lo, o->hi);
        if (o->size == sizeof(int32_t))
            *(int32_t *)(void *)(base + o->off) = (int32_t)x;
        else
            *(int *)(void *)(base + o->off) = (int)x;
        return 0;
    }
    case K_DURATION:
        if (dais_worker_parse_duration(v, (uint32_t *)(void *)(base + o->off)) != 0)
            return dais_err_set(err, DAIS_EINVAL,
                                "%s: '%s' is not a duration between 1ms and 24h (e.g. 5s, 200ms)",
                                src, v);
        return 0;
    case K_TOKEN: {
        size_t n = strlen(v);
        if (n == 0 || n > DAIS_WORKER_TOKEN_MAX)
            return dais_err_set(err, DAIS_EINVAL, "%s: the token must be 1..%d bytes", src,
                                DAIS_WORKER_TOKEN_MAX);
        memcpy(c->token, v, n + 1);
        c->token_len = n;
        return 0;
    }
    case K_TOKEN_FILE:
        return read_token_file(c, v, src, err);
    case K_BOOL_OFF:
        *(bool *)(void *)(base + o->off) = !truthy(v);
        return 0;
    case K_LEVEL:
        if (dais_log_parse_level(v, &c->log_level) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not debug|info|warn|error", src, v);
        return 0;
    case K_FORMAT:
        if (dais_log_parse_format(v, &c->log_format) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not text|json", src, v);
        return 0;
    case K_LAYERS:
        if (dais_worker_parse_layers(v, &c->layer_first, &c->layer_last) != 0)
            return dais_err_set(err, DAIS_EINVAL,
                                "%s: '%s' is not FIRST:LAST with 0 <= FIRST < LAST <= 1024", src, v);
        return 0;
    case K_HELP:
        return 0;
    }
    return DAIS_EINVAL;
}

/* CPUs this process may really use: the affinity mask (cpusets), capped by a cgroup v2 CPU
 * quota (cpu.max, e.g. a Kubernetes limit), so a pod limited to 2 CPUs on a 64-CPU node does
 * not start 64 compute threads that spin against each other. */
static int default_threads(void)
{
    cpu_set_t set;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) n = CPU_COUNT(&set);
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f != NULL) {
        char quota[32];
        long period = 0;
        if (fscanf(f, "%31s %ld", quota, &period) == 2 && strcmp(quota, "max") != 0 && period > 0) {
            long q = strtol(quota, NULL, 10);
            long cpus = q > 0 ? (q + period - 1) / period : 0;
            if (cpus >= 1 && cpus < n) n = cpus;
        }
        fclose(f);
    }
    return n >= 1 && n <= 1024 ? (int)n : 1;
}

static void defaults(dais_worker_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->master_host, sizeof(c->master_host), "localhost");
    c->master_port = 8888;
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0' ||
        !dais_ident_valid(host, strlen(host), DAIS_NODE_ID_MAX))
        snprintf(host, sizeof(host), "worker");
    snprintf(c->node_id, sizeof(c->node_id), "%.128s", host);
    snprintf(c->addr, sizeof(c->addr), "0.0.0.0");
    c->heartbeat_port = 8889;
    c->metrics_port = 9090;
    c->metrics_enabled = true;
    c->threads = default_threads();
    c->slots = 4;
    c->batch = 512;
    c->queue = 64;
    c->register_timeout_ms = 10000;
    c->retry_base_ms = 100;
    c->retry_max_ms = 5000;
    c->drain_timeout_ms = 30000;
    c->max_frame_json = 1u << 20;
    c->max_frame_bin = 64u << 20;
    c->log_level = DAIS_LOG_INFO;
    c->log_format = DAIS_LOG_TEXT;
}

/* An alias row (help "alias of ...") directly follows the option it names: its flag sets the
 * same field, its variable is read only when the option's own variable is unset. */
static bool is_alias(const option *o)
{
    return strncmp(o->help, "alias of ", 9) == 0;
}

static const option *find_flag(const char *arg, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].flag) == len && strncmp(options[i].flag, arg, len) == 0)
            return &options[i];
    return NULL;
}

int dais_worker_config_parse(dais_worker_config *c, int argc, char **argv, dais_env_fn env,
                             FILE *out, dais_err *err)
{
    defaults(c);
    bool advertise_set = false, metrics_addr_set = false;
    /* Variables first, in table order (so DAIS_LISTEN and DAIS_ADDR combine predictably). */
    for (size_t i = 0; env != NULL && i < N_OPTIONS; i++) {
        const option *o = &options[i];
        const char *v = o->env != NULL ? env(o->env) : NULL;
        if (v == NULL || (v[0] == '\0' && o->kind != K_STR)) continue;
        if (is_alias(o) && env(options[i - 1].env) != NULL) continue; /* its option's wins */
        int rc = apply(c, o, v, o->env, err);
        if (rc != 0) return rc;
        advertise_set |= o->off == OFF(advertise) && o->kind == K_STR;
        metrics_addr_set |= o->off == OFF(metrics_addr) && o->kind == K_STR;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0) a = "--help";
        if (strcmp(a, "-m") == 0) a = "--model";
        const char *eq = strchr(a, '=');
        size_t flen = eq != NULL ? (size_t)(eq - a) : strlen(a);
        const option *o = find_flag(a, flen);
        if (o == NULL)
            return dais_err_set(err, DAIS_EINVAL, "unknown option '%s' (see dais worker --help)",
                                a);
        if (o->kind == K_HELP) {
            dais_worker_config_help(out);
            return 1;
        }
        const char *v = NULL;
        if (o->arg != NULL) {
            if (eq != NULL)
                v = eq + 1;
            else if (i + 1 < argc)
                v = argv[++i];
            else
                return dais_err_set(err, DAIS_EINVAL, "%s needs a value (%s)", o->flag, o->arg);
        } else if (eq != NULL) {
            return dais_err_set(err, DAIS_EINVAL, "%s takes no value", o->flag);
        }
        int rc = apply(c, o, v, o->flag, err);
        if (rc != 0) return rc;
        advertise_set |= o->off == OFF(advertise) && o->kind == K_STR;
        metrics_addr_set |= o->off == OFF(metrics_addr) && o->kind == K_STR;
    }
    if (c->model[0] == '\0')
        return dais_err_set(err, DAIS_EINVAL, "--model (DAIS_MODEL) is required");
    if (c->token_len == 0)
        return dais_err_set(err, DAIS_EINVAL,
                            "a cluster token is required: DAIS_CLUSTER_TOKEN, "
                            "--token-file or --token");
    if (c->retry_max_ms < c->retry_base_ms)
        return dais_err_set(err, DAIS_EINVAL, "--retry-max must be at least --retry-base");
    if (!metrics_addr_set) snprintf(c->metrics_addr, sizeof(c->metrics_addr), "%s", c->addr);
    if (!advertise_set) {
        bool wildcard = strcmp(c->addr, "0.0.0.0") == 0 || strcmp(c->addr, "::") == 0;
        snprintf(c->advertise, sizeof(c->advertise), "%s", wildcard ? "" : c->addr);
    }
    return 0;
}
