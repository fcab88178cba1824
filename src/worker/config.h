/*
 * `dais worker` configuration: every option as a flag and as a DAIS_* environment variable
 * (flags win), with the defaults and ranges shown by --help. Parsing is pure (the
 * environment comes in as a lookup function), so tests cover it without a process.
 */
#ifndef DAIS_WORKER_CONFIG_H
#define DAIS_WORKER_CONFIG_H

#include "common/error.h"
#include "common/log.h"
#include "common/options.h"
#include "proto/envelope.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define DAIS_WORKER_TOKEN_MAX 1024

typedef struct dais_worker_config {
    char model[4096];                   /* GGUF path (required unless pull_model is set;
                                           with it: where the pulled file is kept) */
    char pull_model[129];               /* model to download from the master, "" = off */
    char model_cache[4096];             /* directory of pulled models */
    uint16_t sync_port;                 /* the master's model sync port */
    char master_host[256];              /* DNS name or IP of the master */
    uint16_t master_port;               /* its cluster port */
    char node_id[DAIS_NODE_ID_MAX + 1]; /* this worker's id */
    char token[DAIS_WORKER_TOKEN_MAX + 1];
    size_t token_len;
    char addr[64];           /* bind address: heartbeat UDP (and metrics) */
    uint16_t heartbeat_port; /* 0 = any free port */
    char advertise[128];     /* address the master sends heartbeats to */
    char metrics_addr[64];
    uint16_t metrics_port; /* 0 = any free port */
    bool metrics_enabled;
    int threads;
    int32_t slots, ctx, batch, queue; /* ctx 0 = min(2048, the model's context) */
    int32_t layer_first, layer_last;  /* pipeline shard [first, last); 0, 0 = the whole model */
    uint32_t master_timeout_ms;       /* 0 = 8 heartbeat intervals (at least 2 s) */
    uint32_t register_timeout_ms;
    uint32_t retry_base_ms, retry_max_ms;
    uint32_t drain_timeout_ms;
    uint32_t max_frame_json, max_frame_bin;
    char trace_endpoint[512]; /* OTLP/HTTP collector, "" = off */
    enum dais_log_level log_level;
    enum dais_log_format log_format;
} dais_worker_config;

/* Fills c from defaults, then the environment (`env`, dais_env_fn in common/options.h), then
 * argv (argv[0] is the command name).
 * Returns 0, 1 when --help was given (help printed to `out`), or DAIS_EINVAL with err naming
 * the option and the problem. */
int dais_worker_config_parse(dais_worker_config *c, int argc, char **argv, dais_env_fn env,
                             FILE *out, dais_err *err);

/* Prints the option table (flags, variables, defaults) to out. */
void dais_worker_config_help(FILE *out);

/* "5s", "200ms", "1.5m", "2h"; a bare number is seconds. 1 ms .. 24 h. 0 or DAIS_EINVAL.
 * (dais_parse_duration_ms with one error code.) */
int dais_worker_parse_duration(const char *s, uint32_t *ms);
/* "A:B" (0 <= A < B <= DAIS_MODEL_MAX_LAYERS) → [A, B). 0 or DAIS_EINVAL. */
int dais_worker_parse_layers(const char *s, int32_t *first, int32_t *last);
/* "HOST:PORT", "[V6]:PORT" or "HOST" (port `def`, else 1..65535). 0 or DAIS_EINVAL. */
int dais_worker_parse_hostport(const char *s, char *host, size_t host_cap, uint16_t *port,
                               uint16_t def);

#endif
