/* `dais worker` options: the table, the worker's own kinds, defaults and checks (config.h);
 * common/options.c parses them. */
#include "worker/config.h"

#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The worker's own kinds (options.h: DAIS_OPT_CUSTOM on), applied by apply_worker. */
enum {
    K_PATH = DAIS_OPT_CUSTOM,
    K_HOSTPORT,
    K_LISTEN,
    K_PORT,
    K_TOKEN,
    K_TOKEN_FILE,
    K_ID,
    K_LAYERS,
    K_PULL, /* a model name (a file name without .gguf) or a SHA-256 */
};

#define FIELD(f) offsetof(dais_worker_config, f), sizeof(((dais_worker_config *)0)->f)

static const dais_opt options[] = {
    {"--model", "DAIS_MODEL", "PATH", K_PATH, 0, FIELD(model), 0, 0,
     "(required unless --pull-model)",
     "GGUF model file to serve; with --pull-model, where the pulled file is kept"},
    {"--pull-model", "DAIS_PULL_MODEL", "NAME", K_PULL, 0, FIELD(pull_model), 0, 0, "(off)",
     "before starting, download model NAME (or its SHA-256) from the master's sync port, "
     "unless the cached copy is already the master's file"},
    {"--model-cache", "DAIS_MODEL_CACHE", "DIR", K_PATH, 0, FIELD(model_cache), 0, 0,
     "$XDG_CACHE_HOME/dais/models", "where pulled models are kept (as NAME.gguf)"},
    {"--sync-port", "DAIS_SYNC_PORT", "PORT", K_PORT, 0, FIELD(sync_port), 0, 0, "8890",
     "the master's model sync port (its host is --master's)"},
    {"--master", "DAIS_MASTER", "HOST:PORT", K_HOSTPORT, 0, 0, 0, 0, 0, "localhost:8888",
     "master's cluster address; a DNS name is resolved (and retried) asynchronously"},
    {"--id", "DAIS_NODE_ID", "ID", K_ID, 0, FIELD(node_id), 0, 0, "(host name)",
     "this worker's node id: 1-128 of [A-Za-z0-9._:-]"},
    {"--token", "DAIS_CLUSTER_TOKEN", "SECRET", K_TOKEN, 0, 0, 0, 0, 0, "(required)",
     "shared cluster token (prefer the variable or --token-file: flags show in ps)"},
    {"--token-file", "DAIS_CLUSTER_TOKEN_FILE", "PATH", K_TOKEN_FILE, DAIS_OPT_ALT, 0, 0, 0, 0, "",
     "read the cluster token from a file (a trailing newline is ignored)"},
    {"--addr", "DAIS_ADDR", "ADDR", DAIS_OPT_STR, 0, FIELD(addr), 0, 0, "0.0.0.0",
     "bind address for heartbeats and metrics"},
    {"--heartbeat-port", "DAIS_HEARTBEAT_PORT", "PORT", K_PORT, 0, FIELD(heartbeat_port), 0, 0,
     "8889", "UDP port the master sends HEARTBEAT to (0 = any free port)"},
    {"--listen", "DAIS_LISTEN", "ADDR:PORT", K_LISTEN, 0, 0, 0, 0, 0, "0.0.0.0:8889",
     "--addr and --heartbeat-port in one"},
    {"--advertise", "DAIS_ADVERTISE", "HOST", DAIS_OPT_STR, 0, FIELD(advertise), 0, 0,
     "(--addr unless wildcard)",
     "address the master should send heartbeats to "
     "(empty: the address it sees the connection from)"},
    {"--metrics-addr", "DAIS_METRICS_ADDR", "ADDR", DAIS_OPT_STR, 0, FIELD(metrics_addr), 0, 0,
     "(--addr)", "Prometheus /metrics bind address"},
    {"--metrics-port", "DAIS_METRICS_PORT", "PORT", K_PORT, 0, FIELD(metrics_port), 0, 0, "9090",
     "Prometheus /metrics port (0 = any free port)"},
    {"--no-metrics", "DAIS_NO_METRICS", NULL, DAIS_OPT_BOOL_OFF, 0, FIELD(metrics_enabled), 0, 0,
     "off", "do not serve /metrics (variable: 1/true)"},
    {"--threads", "DAIS_THREADS", "N", DAIS_OPT_INT, 0, FIELD(threads), 1, 1024, "(usable CPUs)",
     "compute threads of the engine"},
    {"--slots", "DAIS_SLOTS", "N", DAIS_OPT_INT, 0, FIELD(slots), 1, 4096, "4",
     "sequences decoded together (each has its own KV cache)"},
    {"--ctx", "DAIS_CTX", "N", DAIS_OPT_INT, 0, FIELD(ctx), 0, 1 << 20, "(min(2048, model))",
     "context positions per sequence"},
    {"--batch", "DAIS_BATCH", "N", DAIS_OPT_INT, 0, FIELD(batch), 1, 1 << 20, "512",
     "most tokens in one forward pass (prompt chunks + one per decoding sequence)"},
    {"--queue", "DAIS_QUEUE", "N", DAIS_OPT_INT, 0, FIELD(queue), 0, 1 << 20, "64",
     "requests that may wait for a slot; beyond that the worker answers busy"},
    {"--layers", "DAIS_LAYERS", "FIRST:LAST", K_LAYERS, 0, 0, 0, 0, 0, "(all)",
     "hold only layers [FIRST, LAST) of the model: a pipeline shard (docs/sharding.md)"},
    {"--master-timeout", "DAIS_MASTER_TIMEOUT", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(master_timeout_ms), 0, 0, "(8 heartbeats)",
     "re-register when no heartbeat arrived for this long"},
    {"--register-timeout", "DAIS_REGISTER_TIMEOUT", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(register_timeout_ms), 0, 0, "10s", "wait this long for NODE_ACCEPT"},
    {"--retry-base", "DAIS_RETRY_BASE", "DURATION", DAIS_OPT_DURATION, 0, FIELD(retry_base_ms), 0,
     0, "100ms", "first reconnect delay (exponential backoff with full jitter)"},
    {"--retry-max", "DAIS_RETRY_MAX", "DURATION", DAIS_OPT_DURATION, 0, FIELD(retry_max_ms), 0, 0,
     "5s", "longest reconnect delay"},
    {"--drain-timeout", "DAIS_DRAIN_TIMEOUT", "DURATION", DAIS_OPT_DURATION, 0,
     FIELD(drain_timeout_ms), 0, 0, "30s", "on SIGTERM, how long in-flight requests may still run"},
    {"--max-frame-json", "DAIS_MAX_FRAME_JSON", "BYTES", DAIS_OPT_INT, 0, FIELD(max_frame_json),
     1024, 1 << 30, "1048576", "largest accepted frame envelope"},
    {"--max-frame-bin", "DAIS_MAX_FRAME_BIN", "BYTES", DAIS_OPT_INT, 0, FIELD(max_frame_bin), 0,
     1 << 30, "67108864", "largest accepted binary payload"},
    {"--otlp-endpoint", "DAIS_OTLP_ENDPOINT", "URL", DAIS_OPT_STR, 0, FIELD(trace_endpoint), 0, 0,
     "", "OTLP/HTTP collector for spans (empty = off)"},
    {"--trace-endpoint", "DAIS_TRACE_ENDPOINT", "URL", DAIS_OPT_STR, DAIS_OPT_ALT,
     FIELD(trace_endpoint), 0, 0, "", "alias of --otlp-endpoint (older name)"},
    DAIS_OPT_TAIL_ROWS(dais_worker_config),
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

void dais_worker_config_help(FILE *out)
{
    fprintf(out, "usage: dais worker --model PATH --master HOST:PORT [options]\n"
                 "       dais worker --pull-model NAME --master HOST:PORT [options]\n\n"
                 "Runs a worker node: loads the model (with --pull-model, first downloads it from\n"
                 "the master's sync port), registers with the master (NODE_DISCOVERY\n"
                 "on its cluster port), answers heartbeats and serves inference requests with\n"
                 "continuous batching. Every option can also be set by its variable; flags win.\n"
                 "SIGTERM/SIGINT drain (tell the master, finish in-flight work, exit); a second\n"
                 "signal exits at once.\n\noptions:\n");
    dais_opt_help(out, options, N_OPTIONS, DAIS_OPT_NARROW);
}

int dais_worker_parse_duration(const char *s, uint32_t *ms)
{
    return dais_parse_duration_ms(s, ms) == 0 ? 0 : DAIS_EINVAL;
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
    uint32_t v = def;
    if (p != NULL && dais_parse_u32(p, 1, 65535, &v) != 0) return DAIS_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)v;
    return 0;
}

/* The options.h hook for the worker's own kinds. */
static int apply_worker(void *ctx, void *base, const dais_opt *o, const char *v, const char *src,
                        dais_err *err)
{
    dais_worker_config *c = base;
    size_t n = strlen(v);
    switch (o->kind) {
    case K_PATH:
        if (n == 0) return dais_err_set(err, DAIS_EINVAL, "%s: empty path", src);
        return dais_opt_set_str(o, base, v, src, err);
    case K_ID:
        if (n < o->size && !dais_ident_valid(v, n, DAIS_NODE_ID_MAX))
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not 1-128 of [A-Za-z0-9._:-]", src,
                                v);
        return dais_opt_set_str(o, base, v, src, err);
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
        if (dais_parse_port(v, (uint16_t *)(void *)((char *)base + o->off)) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not a port in 0..65535", src, v);
        return 0;
    case K_TOKEN_FILE: {
        char buf[DAIS_WORKER_TOKEN_MAX + 2];
        int rc = dais_opt_read_secret(v, buf, sizeof(buf), &n, src, err);
        if (rc != 0) return rc;
        if (n == 0 || n > DAIS_WORKER_TOKEN_MAX)
            return dais_err_set(err, DAIS_EINVAL, "%s: %s must hold a token of 1..%d bytes", src, v,
                                DAIS_WORKER_TOKEN_MAX);
        memcpy(c->token, buf, n);
        c->token[n] = '\0';
        c->token_len = n;
        return 0;
    }
    case K_TOKEN:
        if (n == 0 || n > DAIS_WORKER_TOKEN_MAX)
            return dais_err_set(err, DAIS_EINVAL, "%s: the token must be 1..%d bytes", src,
                                DAIS_WORKER_TOKEN_MAX);
        memcpy(c->token, v, n + 1);
        c->token_len = n;
        return 0;
    case K_PULL: {
        /* it names a file in the cache: no path separators, no hidden files */
        bool ok = n >= 1 && n <= 128 && v[0] != '.' && v[0] != ' ' && v[n - 1] != ' ' &&
                  strchr(v, '/') == NULL;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)v[i] >= 0x20 && v[i] != 0x7f;
        if (!ok)
            return dais_err_set(err, DAIS_EINVAL,
                                "%s: '%s' is not a model name (1-128 bytes, no '/', no control "
                                "characters, not starting with '.')",
                                src, v);
        return dais_opt_set_str(o, base, v, src, err);
    }
    case K_LAYERS:
        if (dais_worker_parse_layers(v, &c->layer_first, &c->layer_last) != 0)
            return dais_err_set(err, DAIS_EINVAL,
                                "%s: '%s' is not FIRST:LAST with 0 <= FIRST < LAST <= 1024", src,
                                v);
        return 0;
    }
    return dais_err_set(err, DAIS_EINTERNAL, "%s: unhandled option kind", src);
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
    c->sync_port = 8890;
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

/* True when a row writing the string field at `off` gave a value. */
static bool str_set(const bool *set, size_t off)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (set[i] && options[i].kind == DAIS_OPT_STR && options[i].off == off) return true;
    return false;
}

int dais_worker_config_parse(dais_worker_config *c, int argc, char **argv, dais_env_fn env,
                             FILE *out, dais_err *err)
{
    static const char *const shorts[] = {"-h", "--help", "-m", "--model", NULL};
    const dais_opt_spec spec = {options,      N_OPTIONS, "dais worker --help", shorts, env,
                                apply_worker, NULL};
    bool set[N_OPTIONS];
    defaults(c);
    int rc = dais_opt_parse(&spec, c, argc, argv, set, err);
    if (rc == 1) dais_worker_config_help(out);
    if (rc != 0) return rc;
    if (c->model[0] == '\0' && c->pull_model[0] == '\0')
        return dais_err_set(err, DAIS_EINVAL,
                            "--model (DAIS_MODEL) or --pull-model (DAIS_PULL_MODEL) is required");
    if (c->pull_model[0] != '\0' && c->sync_port == 0)
        return dais_err_set(err, DAIS_EINVAL, "--sync-port must be 1..65535");
    if (c->pull_model[0] != '\0' && c->model_cache[0] == '\0') {
        /* $XDG_CACHE_HOME/dais/models, else ~/.cache/dais/models */
        const char *xdg = env != NULL ? env("XDG_CACHE_HOME") : NULL;
        const char *home = env != NULL ? env("HOME") : NULL;
        if (xdg != NULL && xdg[0] == '/')
            snprintf(c->model_cache, sizeof(c->model_cache), "%.4000s/dais/models", xdg);
        else if (home != NULL && home[0] == '/')
            snprintf(c->model_cache, sizeof(c->model_cache), "%.4000s/.cache/dais/models", home);
        else
            return dais_err_set(err, DAIS_EINVAL,
                                "--pull-model needs --model-cache (no $XDG_CACHE_HOME or $HOME)");
    }
    if (c->token_len == 0)
        return dais_err_set(err, DAIS_EINVAL,
                            "a cluster token is required: DAIS_CLUSTER_TOKEN, "
                            "--token-file or --token");
    if (c->retry_max_ms < c->retry_base_ms)
        return dais_err_set(err, DAIS_EINVAL, "--retry-max must be at least --retry-base");
    if (!str_set(set, offsetof(dais_worker_config, metrics_addr)))
        snprintf(c->metrics_addr, sizeof(c->metrics_addr), "%s", c->addr);
    if (!str_set(set, offsetof(dais_worker_config, advertise))) {
        bool wildcard = strcmp(c->addr, "0.0.0.0") == 0 || strcmp(c->addr, "::") == 0;
        snprintf(c->advertise, sizeof(c->advertise), "%s", wildcard ? "" : c->addr);
    }
    return 0;
}
