/*
 * The master's model store: port 8890 (docs/protocol.md, "Model synchronisation"). It serves
 * the *.gguf files of one directory to workers that pull their model instead of having it on
 * their own disk. A file is named by its file name without ".gguf", or by its SHA-256, which
 * is computed once per file, when first needed, and cached with the file's identity (device,
 * inode, size, mtime) so a replaced file is hashed again.
 *
 * Threads: the store never touches the master's event loop. One acceptor thread polls the
 * listening socket and a wake pipe. Each accepted connection gets a transfer thread, at most
 * max_transfers at once; beyond that the peer is answered ERROR busy and closed. A transfer
 * thread reads one MODEL_SYNC_REQUEST (within io_timeout), checks the token proof against the
 * store's own replay window, resolves the model, and streams the file from the requested
 * offset with pread into MODEL_SYNC_CHUNK frames on its socket (each chunk must be taken by
 * the peer within io_timeout; an optional rate limit paces the chunks), then closes.
 * A request with `layers` [A, B] is served the shard file of those layers (engine/shard.h),
 * made from the named file the first time that range is asked for, by the transfer thread that
 * asks (one generation at a time, under its own lock: nothing but transfers waits), in a private
 * directory outside `dir` ($TMPDIR or /tmp, "dais-shards.XXXXXX", removed by stop).
 * dais_modelstore_stop wakes every thread (shutdown(2) on live connections) and joins them.
 * Every error a peer can cause is answered with ERROR and a close, never more.
 */
#ifndef DAIS_MASTER_MODELSTORE_H
#define DAIS_MASTER_MODELSTORE_H

#include "common/error.h"
#include "common/metrics.h"

#include <stddef.h>
#include <stdint.h>

typedef struct dais_modelstore dais_modelstore;

typedef struct dais_modelstore_config {
    const char *dir;        /* directory whose *.gguf files are served (copied) */
    const char *addr;       /* bind address (copied) */
    uint16_t port;          /* 0 = any free port */
    const char *node_id;    /* source_node of the store's frames (copied) */
    const char *token;      /* the cluster token (copied) */
    size_t token_len;       /* 1..1024 */
    int64_t auth_window_ms; /* clock-skew and replay window of request proofs */
    uint32_t max_transfers; /* downloads served at once, >= 1 */
    uint32_t chunk_size;    /* bytes per MODEL_SYNC_CHUNK, 1 .. 64 MiB */
    uint32_t io_timeout_ms; /* a peer sending no request / taking no chunk this long is dropped */
    uint64_t rate_limit;    /* bytes per second per download, 0 = unlimited */
    dais_metrics_registry *metrics; /* borrowed, may be NULL; must outlive the store */
} dais_modelstore_config;

/* Defaults: port 8890, 4 transfers, 4 MiB chunks, 30 s timeout, 60 s auth window, no rate
 * limit; dir, addr, node_id and token must be set by the caller. */
void dais_modelstore_config_default(dais_modelstore_config *c);

/* Checks that the directory can be read, binds the port and starts the acceptor. Registers
 * dais_model_sync_requests_total{result} and dais_model_sync_bytes_total in c->metrics.
 * Returns owned, or NULL with err filled (unreadable directory, port in use, no memory).
 * Any thread; the store's own threads do the rest. */
dais_modelstore *dais_modelstore_start(const dais_modelstore_config *c, dais_err *err);

/* The port actually bound. */
uint16_t dais_modelstore_port(const dais_modelstore *s);

/* Stops accepting, ends the transfers in progress (their peers see the connection close and
 * resume later), joins every thread and frees the store. Accepts NULL. Call from the thread
 * that started it, once. */
void dais_modelstore_stop(dais_modelstore *s);

/* Outcomes of one sync connection (the result label of dais_model_sync_requests_total). */
#define DAIS_SYNC_RESULT_MAP(X)                                                                    \
    X(OK, "ok")                       /* the final chunk was sent */                               \
    X(UNKNOWN_MODEL, "unknown_model") /* no served file has that name or hash */                   \
    X(BAD_REQUEST, "bad_request")     /* offset beyond the file's size */                          \
    X(BAD_TOKEN, "bad_token")                                                                      \
    X(CLOCK_SKEW, "clock_skew")                                                                    \
    X(REPLAY, "replay")                                                                            \
    X(OVERLOADED, "overloaded")   /* the replay cache is full of live entries */                   \
    X(BUSY, "busy")               /* max_transfers already running */                              \
    X(UNSUPPORTED, "unsupported") /* another protocol_version */                                   \
    X(PROTO, "proto")             /* no valid MODEL_SYNC_REQUEST within the timeout */             \
    X(ABORTED, "aborted") /* the peer left or stalled mid-transfer, or the store stopped */        \
    X(ERROR, "error")     /* the file could not be read */

enum dais_sync_result {
#define DAIS_SYNC_RESULT_ENUM(n, s) DAIS_SYNC_##n,
    DAIS_SYNC_RESULT_MAP(DAIS_SYNC_RESULT_ENUM)
#undef DAIS_SYNC_RESULT_ENUM
        DAIS_SYNC__COUNT
};
const char *dais_sync_result_name(enum dais_sync_result r);

typedef struct dais_modelstore_stats {
    uint64_t bytes_sent;                /* file bytes handed to the kernel, all transfers */
    uint64_t results[DAIS_SYNC__COUNT]; /* finished connections by outcome */
    uint64_t hashes_computed;           /* files hashed (cache misses) */
    uint32_t active;                    /* transfers running now */
} dais_modelstore_stats;

/* A consistent-enough snapshot (each counter is read atomically). Any thread. */
void dais_modelstore_get_stats(dais_modelstore *s, dais_modelstore_stats *out);

/* What a request for `model` (a served name or 64 lowercase hex) would get: the served name,
 * the file's SHA-256 (computed now if not cached) and size. 0, DAIS_ENOTFOUND (err lists the
 * served names), DAIS_EIO. Any thread (the lookup a transfer makes; for tests and tools). */
int dais_modelstore_resolve(dais_modelstore *s, const char *model, char name[129], char sha[65],
                            uint64_t *size, dais_err *err);

/* The served names, sorted, as "'a', 'b'" (or "none") into buf[cap]; returns their count.
 * Any thread. */
size_t dais_modelstore_names(dais_modelstore *s, char *buf, size_t cap);

#endif
