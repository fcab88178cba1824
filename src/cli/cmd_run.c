/*
 * `dais run`: a whole cluster on this machine in one command — a master and N workers, each
 * its own process (this same binary, exec'd through /proc/self/exe), on loopback, sharing a
 * fresh random cluster token (passed in the environment, never on a command line). It waits
 * until the master says /ready, prints how to call the API, and supervises: Ctrl-C or
 * SIGTERM stops every process cleanly (SIGTERM, a grace period, then SIGKILL), and because
 * each child asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), even a
 * `kill -9` of this process leaves no orphans.
 *
 * Ports: the API port is --port (default 8080). With --metrics-port P the master serves
 * /metrics on P and worker i on P+i (a worker whose P+i is taken gets a free port instead);
 * every other port (cluster, heartbeats, and without --metrics-port all metrics ports) is a
 * free port the kernel picks, held until all are chosen so they cannot collide. The startup
 * output lists every node's metrics URL. --otlp-endpoint is passed to every node.
 *
 * Without -m it serves the project's demo model: a small Llama with random weights written by
 * the engine's synth module into $XDG_CACHE_HOME/dais (or ~/.cache/dais) on first use.
 *
 * This is a supervisor, not an event loop: it waits in sigtimedwait with SIGINT, SIGTERM and
 * SIGCHLD blocked, so no signal handler runs and no child is ever missed.
 */
#include "common/log.h"
#include "engine/dtype.h"
#include "engine/model.h"
#include "engine/synth.h"
#include "master/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int dais_cmd_run(int argc, char **argv);

#define MAX_WORKERS         64
#define DAIS_RUN_MAX_SHARDS 16
#define READY_TIMEOUT_S     300
#define STOP_GRACE_S        10
#define DEMO_NAME           "dais-demo-v2.gguf"

typedef struct child {
    pid_t pid;
    char name[32];
    bool alive;
    int status;
} child;

typedef struct run_opts {
    const char *model;
    uint32_t workers;
    uint16_t port;
    uint32_t threads;
    const char *heartbeat_interval;
    const char *log_level;
    uint16_t metrics_port; /* 0: free ports */
    const char *otlp_endpoint;
    uint32_t shards; /* pipeline stages the model is split into; 0/1 = whole */
    bool workers_given;
} run_opts;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: dais run [-m MODEL.gguf] [--workers N] [--shards S] [--port P]\n"
        "                [--metrics-port P] [--threads T] [--otlp-endpoint URL]\n\n"
        "Starts a master and N workers as separate processes on 127.0.0.1, waits until the\n"
        "cluster is ready, prints how to call it, and stops everything on Ctrl-C/SIGTERM.\n\n"
        "  -m, --model PATH           GGUF Llama model to serve [the demo model, synthesized\n"
        "                             into $XDG_CACHE_HOME/dais or ~/.cache/dais on first use]\n"
        "  --workers N                worker processes, 1..%d [2, or S with --shards]\n"
        "  --shards S                 split the model's layers into S pipeline stages; worker\n"
        "                             i holds stage i mod S (docs/sharding.md) [1: whole]\n"
        "  --port P                   HTTP API port [8080]; other ports are picked free\n"
        "  --metrics-port P           master /metrics on P, worker i on P+i (a free port when\n"
        "                             P+i is taken); all listed at startup [free ports]\n"
        "  --otlp-endpoint URL        OTLP/HTTP collector for every node's spans [off]\n"
        "  --threads T                compute threads per worker [CPUs / workers, at least 1]\n"
        "  --heartbeat-interval D     master heartbeat period, e.g. 1s [the master's default]\n"
        "  --log-level LEVEL          debug | info | warn | error [info]\n"
        "  -h, --help                 show this help\n",
        MAX_WORKERS);
}

static int parse_opts(run_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->workers = 2;
    o->port = 8080;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - a) : strlen(a);
        const char *v = eq != NULL ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
#define IS(name) (nlen == strlen(name) && strncmp(a, name, nlen) == 0)
        if (IS("-h") || IS("--help")) {
            usage(stdout);
            return 1;
        }
        bool known = IS("-m") || IS("--model") || IS("--workers") || IS("--port") ||
                     IS("--threads") || IS("--heartbeat-interval") || IS("--log-level") ||
                     IS("--metrics-port") || IS("--otlp-endpoint") || IS("--shards");
        if (!known) {
            fprintf(stderr, "dais run: unknown option '%s' (see --help)\n", a);
            return -1;
        }
        if (v == NULL) {
            fprintf(stderr, "dais run: %s needs a value\n", a);
            return -1;
        }
        if (eq == NULL) i++;
        if (IS("-m") || IS("--model")) {
            o->model = v;
        } else if (IS("--shards")) {
            if (dais_parse_u32(v, 1, DAIS_RUN_MAX_SHARDS, &o->shards) != 0) {
                fprintf(stderr, "dais run: --shards must be 1..%d\n", DAIS_RUN_MAX_SHARDS);
                return -1;
            }
        } else if (IS("--workers")) {
            o->workers_given = true;
            if (dais_parse_u32(v, 1, MAX_WORKERS, &o->workers) != 0) {
                fprintf(stderr, "dais run: --workers must be 1..%d\n", MAX_WORKERS);
                return -1;
            }
        } else if (IS("--port")) {
            if (dais_parse_port(v, &o->port) != 0 || o->port == 0) {
                fprintf(stderr, "dais run: --port must be 1..65535\n");
                return -1;
            }
        } else if (IS("--metrics-port")) {
            if (dais_parse_port(v, &o->metrics_port) != 0 || o->metrics_port == 0) {
                fprintf(stderr, "dais run: --metrics-port must be 1..65535\n");
                return -1;
            }
        } else if (IS("--otlp-endpoint")) {
            if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
                fprintf(stderr, "dais run: --otlp-endpoint must be an http:// or https:// URL\n");
                return -1;
            }
            o->otlp_endpoint = v;
        } else if (IS("--threads")) {
            if (dais_parse_u32(v, 1, 1024, &o->threads) != 0) {
                fprintf(stderr, "dais run: --threads must be 1..1024\n");
                return -1;
            }
        } else if (IS("--heartbeat-interval")) {
            uint32_t ms;
            if (dais_parse_duration_ms(v, &ms) != 0) {
                fprintf(stderr, "dais run: --heartbeat-interval: '%s' is not a duration\n", v);
                return -1;
            }
            o->heartbeat_interval = v;
        } else {
            enum dais_log_level l;
            if (dais_log_parse_level(v, &l) != 0) {
                fprintf(stderr, "dais run: --log-level must be debug|info|warn|error\n");
                return -1;
            }
            o->log_level = v;
        }
#undef IS
    }
    return 0;
}

/* ---- the demo model ------------------------------------------------------------------------- */

static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf)) return -1;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p != '\0'; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* The demo model's path, synthesized into the cache directory when absent. */
static int demo_model(char *out, size_t cap)
{
    char dir[PATH_MAX];
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (xdg != NULL && xdg[0] == '/')
        snprintf(dir, sizeof(dir), "%s/dais", xdg);
    else if (home != NULL && home[0] == '/')
        snprintf(dir, sizeof(dir), "%s/.cache/dais", home);
    else
        snprintf(dir, sizeof(dir), "/tmp/dais-cache-%u", (unsigned)getuid());
    if ((size_t)snprintf(out, cap, "%s/%s", dir, DEMO_NAME) >= cap) return -1;
    if (access(out, R_OK) == 0) return 0;
    if (mkdir_p(dir) != 0) {
        fprintf(stderr, "dais run: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    dais_synth_params p;
    dais_synth_params_default(&p);
    p.dim = 256;
    p.n_layers = 4;
    p.n_heads = 8;
    p.n_kv_heads = 4;
    p.ffn_dim = 768;
    p.n_vocab = 4096;
    p.n_ctx = 1024;
    p.type = DAIS_F32; /* the simplest kernel path: a demo should not depend on more */
    p.seed = 20260101;
    p.n_threads = 1; /* small: one thread writes it in well under a second */
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", out, (int)getpid());
    fprintf(stderr, "dais run: writing the demo model (random weights) to %s\n", out);
    dais_err err;
    dais_err_clear(&err);
    if (dais_synth_write(&p, tmp, &err) != 0) {
        fprintf(stderr, "dais run: cannot write the demo model: %s\n", err.msg);
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, out) != 0) {
        fprintf(stderr, "dais run: cannot move the demo model into place: %s\n", strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* ---- ports ------------------------------------------------------------------------------------
 */

/* Binds a socket of `type` to 127.0.0.1:want (0: any) and returns it (open, so the port
 * stays taken until every port is chosen) with the port in *port; -1 on failure. */
static int hold_port(int type, uint16_t want, uint16_t *port)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(want);
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- children ----------------------------------------------------------------------------------
 */

static pid_t spawn(char *const argv[], const char *token, const sigset_t *oldmask)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* child: die with the supervisor, default signal handling, then exec ourselves */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    sigprocmask(SIG_SETMASK, oldmask, NULL);
    signal(SIGPIPE, SIG_DFL);
    setenv("DAIS_CLUSTER_TOKEN", token, 1);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "dais run: exec /proc/self/exe: %s\n", strerror(errno));
    _exit(127);
}

/* Reaps exited children; returns how many exited. */
static int reap(child *kids, int n)
{
    int exited = 0;
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) return exited;
        for (int i = 0; i < n; i++) {
            if (kids[i].pid == pid && kids[i].alive) {
                kids[i].alive = false;
                kids[i].status = st;
                exited++;
            }
        }
    }
}

static int alive_count(const child *kids, int n)
{
    int a = 0;
    for (int i = 0; i < n; i++)
        a += kids[i].alive;
    return a;
}

static void describe_exit(const child *c)
{
    if (WIFEXITED(c->status))
        fprintf(stderr, "dais run: %s exited with status %d\n", c->name, WEXITSTATUS(c->status));
    else if (WIFSIGNALED(c->status))
        fprintf(stderr, "dais run: %s was killed by signal %d\n", c->name, WTERMSIG(c->status));
}

/* SIGTERM to every child, then SIGKILL after the grace period; waits for all. */
static void stop_all(child *kids, int n)
{
    for (int i = 0; i < n; i++)
        if (kids[i].alive) kill(kids[i].pid, SIGTERM);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    bool killed = false;
    while (alive_count(kids, n) > 0) {
        reap(kids, n);
        if (alive_count(kids, n) == 0) break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!killed && now.tv_sec - start.tv_sec >= STOP_GRACE_S) {
            for (int i = 0; i < n; i++)
                if (kids[i].alive) {
                    fprintf(stderr, "dais run: %s did not stop in %d s; killing it\n", kids[i].name,
                            STOP_GRACE_S);
                    kill(kids[i].pid, SIGKILL);
                }
            killed = true;
        }
        struct timespec nap = {0, 20L * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
}

/* GET /ready on 127.0.0.1:port: 1 when it answers 200, 0 otherwise. Short timeouts. */
static int probe_ready(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) goto out;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, 200) != 1) goto out;
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) goto out;
    static const char req[] = "GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1)) goto out;
    char buf[32];
    size_t got = 0;
    while (got < 12) {
        p.events = POLLIN;
        if (poll(&p, 1, 500) != 1) goto out;
        ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (r <= 0) goto out;
        got += (size_t)r;
    }
    buf[got] = '\0';
    ok = strncmp(buf, "HTTP/1.1 200", 12) == 0;
out:
    close(fd);
    return ok;
}

int dais_cmd_run(int argc, char **argv)
{
    run_opts o;
    int rc = parse_opts(&o, argc, argv);
    if (rc != 0) return rc > 0 ? 0 : 2;
    enum dais_log_level lvl = DAIS_LOG_INFO;
    if (o.log_level != NULL) dais_log_parse_level(o.log_level, &lvl);
    dais_log_init("run", lvl, DAIS_LOG_TEXT);

    char model[PATH_MAX];
    if (o.model != NULL) {
        if (realpath(o.model, model) == NULL || access(model, R_OK) != 0) {
            fprintf(stderr, "dais run: cannot read the model %s: %s\n", o.model, strerror(errno));
            return 2;
        }
    } else if (demo_model(model, sizeof(model)) != 0) {
        return 1;
    }
    int32_t n_layers = 0;
    if (o.shards > 1) {
        if (!o.workers_given) o.workers = o.shards;
        if (o.workers < o.shards) {
            fprintf(stderr, "dais run: --shards %u needs at least %u workers (one per stage)\n",
                    o.shards, o.shards);
            return 2;
        }
        dais_err err;
        dais_model *mm = dais_model_load(model, &err);
        if (mm == NULL) {
            fprintf(stderr, "dais run: %s: %s\n", model, err.msg);
            return 1;
        }
        n_layers = dais_model_hparams(mm)->n_layers;
        dais_model_free(mm);
        if ((int32_t)o.shards > n_layers) {
            fprintf(stderr, "dais run: --shards %u: the model has only %d layers\n", o.shards,
                    n_layers);
            return 2;
        }
    }
    if (o.threads == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        long t = ncpu > 0 ? ncpu / (long)o.workers : 1;
        o.threads = t >= 1 ? (uint32_t)t : 1;
    }

    unsigned char raw[24];
    char token[49];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        fprintf(stderr, "dais run: no randomness for the cluster token\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(token + 2 * i, 3, "%02x", raw[i]);

    /* Choose every port while holding them all. */
    enum { P_CLUSTER = 0, P_HB, P_METRICS, P_FIXED };
    int n_ports = P_FIXED + 2 * (int)o.workers;
    uint16_t ports[P_FIXED + 2 * MAX_WORKERS];
    int fds[P_FIXED + 2 * MAX_WORKERS];
    for (int i = 0; i < n_ports; i++)
        fds[i] = -1;
    if (o.metrics_port != 0) {
        /* The asked-for metrics ports first, so no free port lands on one of them. */
        for (uint32_t w = 0; w <= o.workers; w++) {
            int slot = w == 0 ? P_METRICS : P_FIXED + 2 * (int)(w - 1) + 1;
            uint32_t want = (uint32_t)o.metrics_port + w;
            if (want <= 65535 && want != o.port)
                fds[slot] = hold_port(SOCK_STREAM, (uint16_t)want, &ports[slot]);
            if (w == 0 && fds[slot] < 0) {
                fprintf(stderr, "dais run: cannot use --metrics-port %u: %s\n",
                        (unsigned)o.metrics_port,
                        want == o.port ? "it is the API port" : strerror(errno));
                for (int k = 0; k < n_ports; k++)
                    if (fds[k] >= 0) close(fds[k]);
                return 1;
            }
        }
    }
    for (int i = 0; i < n_ports; i++) {
        if (fds[i] >= 0) continue;
        bool udp = i == P_HB || (i >= P_FIXED && (i - P_FIXED) % 2 == 0);
        fds[i] = hold_port(udp ? SOCK_DGRAM : SOCK_STREAM, 0, &ports[i]);
        if (fds[i] >= 0 && ports[i] == o.port) {
            /* The API port is not bound yet, so the kernel may offer it: keep it held while
             * taking another. */
            int api = fds[i];
            fds[i] = hold_port(udp ? SOCK_DGRAM : SOCK_STREAM, 0, &ports[i]);
            close(api);
        }
        if (fds[i] < 0 || ports[i] == o.port) {
            fprintf(stderr, "dais run: cannot find a free port: %s\n", strerror(errno));
            for (int k = 0; k < n_ports; k++)
                if (fds[k] >= 0) close(fds[k]);
            return 1;
        }
    }
    for (int i = 0; i < n_ports; i++)
        close(fds[i]);

    sigset_t mask, oldmask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, &oldmask);

    child kids[1 + MAX_WORKERS];
    int n_kids = 0;
    char sp[8][16];
    snprintf(sp[0], sizeof(sp[0]), "%u", (unsigned)o.port);
    snprintf(sp[1], sizeof(sp[1]), "%u", (unsigned)ports[P_CLUSTER]);
    snprintf(sp[2], sizeof(sp[2]), "%u", (unsigned)ports[P_HB]);
    snprintf(sp[3], sizeof(sp[3]), "%u", (unsigned)ports[P_METRICS]);
    char *margv[24];
    int k = 0;
    margv[k++] = "dais";
    margv[k++] = "master";
    margv[k++] = "--addr";
    margv[k++] = "127.0.0.1";
    margv[k++] = "--http-port";
    margv[k++] = sp[0];
    margv[k++] = "--cluster-port";
    margv[k++] = sp[1];
    margv[k++] = "--heartbeat-port";
    margv[k++] = sp[2];
    margv[k++] = "--metrics-port";
    margv[k++] = sp[3];
    if (o.heartbeat_interval != NULL) {
        margv[k++] = "--heartbeat-interval";
        margv[k++] = (char *)o.heartbeat_interval;
    }
    if (o.log_level != NULL) {
        margv[k++] = "--log-level";
        margv[k++] = (char *)o.log_level;
    }
    if (o.otlp_endpoint != NULL) {
        margv[k++] = "--otlp-endpoint";
        margv[k++] = (char *)o.otlp_endpoint;
    }
    margv[k] = NULL;
    kids[n_kids].pid = spawn(margv, token, &oldmask);
    snprintf(kids[n_kids].name, sizeof(kids[n_kids].name), "master");
    kids[n_kids].alive = kids[n_kids].pid > 0;
    n_kids++;
    if (kids[0].pid < 0) {
        fprintf(stderr, "dais run: fork: %s\n", strerror(errno));
        return 1;
    }

    char master_addr[32], threads[16];
    snprintf(master_addr, sizeof(master_addr), "127.0.0.1:%u", (unsigned)ports[P_CLUSTER]);
    snprintf(threads, sizeof(threads), "%u", o.threads);
    for (uint32_t i = 0; i < o.workers; i++) {
        char id[32], hb[16], mp[16], layers[32];
        snprintf(id, sizeof(id), "worker-%u", i + 1);
        snprintf(hb, sizeof(hb), "%u", (unsigned)ports[P_FIXED + 2 * i]);
        snprintf(mp, sizeof(mp), "%u", (unsigned)ports[P_FIXED + 2 * i + 1]);
        char *wargv[28];
        int j = 0;
        wargv[j++] = "dais";
        wargv[j++] = "worker";
        wargv[j++] = "--model";
        wargv[j++] = model;
        wargv[j++] = "--master";
        wargv[j++] = master_addr;
        wargv[j++] = "--id";
        wargv[j++] = id;
        wargv[j++] = "--addr";
        wargv[j++] = "127.0.0.1";
        wargv[j++] = "--heartbeat-port";
        wargv[j++] = hb;
        wargv[j++] = "--metrics-port";
        wargv[j++] = mp;
        wargv[j++] = "--threads";
        wargv[j++] = threads;
        if (o.shards > 1) {
            /* stage k of S holds layers [k*n/S, (k+1)*n/S) */
            uint32_t stage = i % o.shards;
            snprintf(layers, sizeof(layers), "%d:%d", (int)((int64_t)stage * n_layers / o.shards),
                     (int)((int64_t)(stage + 1) * n_layers / o.shards));
            wargv[j++] = "--layers";
            wargv[j++] = layers;
        }
        if (o.log_level != NULL) {
            wargv[j++] = "--log-level";
            wargv[j++] = (char *)o.log_level;
        }
        if (o.otlp_endpoint != NULL) {
            wargv[j++] = "--otlp-endpoint";
            wargv[j++] = (char *)o.otlp_endpoint;
        }
        wargv[j] = NULL;
        kids[n_kids].pid = spawn(wargv, token, &oldmask);
        snprintf(kids[n_kids].name, sizeof(kids[n_kids].name), "%s", id);
        kids[n_kids].alive = kids[n_kids].pid > 0;
        if (kids[n_kids].pid < 0) fprintf(stderr, "dais run: fork: %s\n", strerror(errno));
        n_kids++;
    }

    /* Wait for /ready, a signal, or the master's death. */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool ready = false;
    int status = 0;
    for (;;) {
        struct timespec wait = {0, 100L * 1000 * 1000};
        siginfo_t si;
        int sig = sigtimedwait(&mask, &si, &wait);
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
            fprintf(stderr, "\ndais run: stopping the cluster\n");
            break;
        }
        int before = alive_count(kids, n_kids);
        reap(kids, n_kids);
        if (alive_count(kids, n_kids) != before) {
            for (int i = 0; i < n_kids; i++)
                if (!kids[i].alive && kids[i].pid > 0 && kids[i].status != -1) {
                    describe_exit(&kids[i]);
                    kids[i].status = -1;
                }
            if (!kids[0].alive) {
                fprintf(stderr, "dais run: the master is gone; stopping the workers\n");
                status = 1;
                break;
            }
            if (alive_count(kids, n_kids) == 1 && !ready) {
                fprintf(stderr, "dais run: every worker exited before the cluster was ready\n");
                status = 1;
                break;
            }
        }
        if (!ready && probe_ready(o.port)) {
            ready = true;
            printf("\ndais: the cluster is ready: a master and %u worker%s serving %s\n\n"
                   "  curl -s http://127.0.0.1:%u/api/inference -d '{\"prompt\": \"Once upon a "
                   "time\", \"max_tokens\": 64}'\n"
                   "  curl -sN http://127.0.0.1:%u/api/inference -d '{\"prompt\": \"Hello\", "
                   "\"max_tokens\": 64, \"stream\": true}'\n"
                   "  curl -s http://127.0.0.1:%u/api/cluster\n\n"
                   "Metrics: http://127.0.0.1:%u/metrics (master)\n",
                   o.workers, o.workers == 1 ? "" : "s", model, (unsigned)o.port, (unsigned)o.port,
                   (unsigned)o.port, (unsigned)ports[P_METRICS]);
            for (uint32_t i = 0; i < o.workers; i++)
                printf("         http://127.0.0.1:%u/metrics (worker-%u)\n",
                       (unsigned)ports[P_FIXED + 2 * i + 1], i + 1);
            if (o.shards > 1)
                printf("The model's %d layers are split into %u pipeline stages (worker i holds "
                       "stage i mod %u).\n",
                       n_layers, o.shards, o.shards);
            printf("Ctrl-C stops the cluster.\n");
            fflush(stdout);
        }
        if (!ready) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - t0.tv_sec > READY_TIMEOUT_S) {
                fprintf(stderr, "dais run: the cluster was not ready within %d s\n",
                        READY_TIMEOUT_S);
                status = 1;
                break;
            }
        }
    }
    stop_all(kids, n_kids);
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    return status;
}
