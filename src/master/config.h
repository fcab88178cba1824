/*
 * The master's configuration: every setting has a command-line flag and a DAIS_* environment
 * variable (the flag wins), a default, and a line of help. One table in config.c drives the
 * parser, `dais master --help` and the list in docs/operations.md, so they cannot drift apart.
 *
 * Values are validated here (ports, ranges, sizes, durations, model names), so the rest of
 * the master can trust them. Pure apart from reading the environment and a token file;
 * call it from the main thread before the loop starts.
 */
#ifndef DAIS_MASTER_CONFIG_H
#define DAIS_MASTER_CONFIG_H

#include "common/error.h"
#include "common/log.h"
#include "common/options.h"
#include "master/detector.h"
#include "proto/envelope.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DAIS_MASTER_MAX_MODELS 16
#define DAIS_MODEL_NAME_MAX    128
#define DAIS_ADDR_MAX          255
#define DAIS_TOKEN_MAX         1024

/* One model the cluster serves: a name, optionally pinned to a GGUF file hash. */
typedef struct dais_master_model {
    char name[DAIS_MODEL_NAME_MAX + 1];
    char hash[65]; /* lowercase hex SHA-256, "" = any file */
} dais_master_model;

typedef struct dais_master_config {
    char node_id[DAIS_NODE_ID_MAX + 1]; /* the master's node id in envelopes */

    char http_addr[DAIS_ADDR_MAX + 1];
    uint16_t http_port; /* 0 = any free port (logged) */
    char cluster_addr[DAIS_ADDR_MAX + 1];
    uint16_t cluster_port;
    char heartbeat_addr[DAIS_ADDR_MAX + 1];
    uint16_t heartbeat_port;
    char metrics_addr[DAIS_ADDR_MAX + 1];
    uint16_t metrics_port;
    bool metrics_enabled;

    char token[DAIS_TOKEN_MAX + 1]; /* the cluster token (secret) */
    size_t token_len;

    dais_master_model models[DAIS_MASTER_MAX_MODELS]; /* n_models == 0: any model is served */
    size_t n_models;

    uint32_t heartbeat_interval_ms;    /* master → worker HEARTBEAT period */
    uint32_t heartbeat_misses;         /* probes missed in a row before a worker is dead */
    uint32_t heartbeat_suspect_ms;     /* probe period once one went unanswered; 0 = derived */
    uint32_t heartbeat_ack_timeout_ms; /* a probe unanswered this long is missed; 0 = derived */
    uint32_t heartbeat_dead_after_ms;  /* and no answer at all for this long; 0 = derived */
    uint32_t auth_window_ms;           /* registration replay/skew window */

    size_t body_limit;           /* largest accepted request body, bytes */
    uint32_t max_connections;    /* HTTP connections served at once */
    uint32_t idle_timeout_ms;    /* keep-alive connection idle limit */
    uint32_t default_max_tokens; /* when a request does not say */
    uint32_t max_tokens_limit;   /* largest max_tokens a request may ask for */
    uint32_t request_timeout_ms; /* a request's whole time budget at the master */
    uint32_t stall_timeout_ms;   /* an attempt silent this long fails over; 0 = off */
    uint32_t queue_limit;        /* requests per model waiting at the master for a slot */
    uint32_t shutdown_grace_ms;  /* on SIGTERM, time in-flight requests get to finish */

    char trace_endpoint[DAIS_ADDR_MAX + 1]; /* OTLP/HTTP base URL, "" = tracing off */

    /* Model synchronisation (master/modelstore.h, port 8890): off while model_dir is "". */
    char model_dir[1024]; /* the *.gguf files served to workers that pull */
    char sync_addr[DAIS_ADDR_MAX + 1];
    uint16_t sync_port;       /* 0 = any free port (logged) */
    uint32_t sync_transfers;  /* downloads served at once; more are answered busy */
    size_t sync_chunk;        /* bytes per MODEL_SYNC_CHUNK */
    uint32_t sync_timeout_ms; /* a peer silent (no request) or not reading this long */
    size_t sync_rate_limit;   /* bytes/s per download, 0 = unlimited */

    /* Kubernetes discovery (master/k8s.h; docs/reliability.md): off by default. "" = the
     * in-cluster default (service-account files, KUBERNETES_SERVICE_HOST/_PORT). */
    bool k8s_discovery;
    bool k8s_admit; /* with discovery: register only workers whose address is a Running pod */
    char k8s_namespace[64];
    char k8s_selector[1025];
    uint32_t k8s_interval_ms;
    char k8s_api_server[DAIS_ADDR_MAX + 1];
    char k8s_token_file[DAIS_ADDR_MAX + 1];
    char k8s_ca_file[DAIS_ADDR_MAX + 1];

    enum dais_log_level log_level;
    enum dais_log_format log_format;
} dais_master_config;

/* Fills `c` with the defaults (no token, no models). */
void dais_master_config_default(dais_master_config *c);

/* Reads DAIS_* environment variables, then the flags argv[1..argc) (argv[0] is the command
 * name). Returns 0, 1 when --help was given (the caller prints dais_master_config_usage and
 * exits 0), or DAIS_EINVAL with err naming the flag or variable and the problem. Checks that a
 * cluster token is set. */
int dais_master_config_parse(dais_master_config *c, int argc, char **argv, dais_err *err);

/* Writes the option list (flags, variables, defaults, help) to `out`. */
void dais_master_config_usage(FILE *out);

/* The failure detector's parameters (master/detector.h) from the heartbeat settings; the
 * derived defaults are: suspect interval min(500 ms, interval), ack timeout min(1 s,
 * interval), dead after misses × interval. */
void dais_master_detector_config(const dais_master_config *c, dais_detector_config *out);

/* True when `name` is a served model (always true when no models are configured); `hash`
 * may be NULL (not checked). */
bool dais_master_config_serves(const dais_master_config *c, const char *name, const char *hash);

/* The value parsers dais_parse_duration_ms, dais_parse_size, dais_parse_u32 and dais_parse_port
 * (shared with `dais run` and tests) are in common/options.h. */

/* Model name: 1..128 bytes, no control characters, no leading or trailing space (also used
 * to validate requests; names come from GGUF metadata and may hold spaces or UTF-8). */
bool dais_model_name_valid(const char *s, size_t len);

#endif
