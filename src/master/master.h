/*
 * The master node: the cluster's front door. One libevent loop on one thread owns all of its
 * state — the worker registry, the balancer, every connection (HTTP clients, workers), the
 * heartbeat socket and the requests in flight. Nothing here blocks the loop; work that must
 * block (tracing export) runs on the tracer's own thread.
 *
 *   HTTP API (master/api.c)      → requests (master/router.c) → worker connections
 *   cluster TCP (master/cluster.c): registration, INFERENCE_REQUEST/RESPONSE, CANCEL, DRAIN
 *   heartbeat UDP (master/heartbeat.c): HEARTBEAT out, HEARTBEAT_ACK in, failure detection
 *   /metrics (common/metrics_http.c) on its own port, same loop
 *
 * Lifecycle: dais_master_new binds every port (so errors show before anything runs),
 * dais_master_run runs the loop until SIGINT/SIGTERM or dais_master_stop, then shuts down:
 * stop accepting, answer what is pending, close the workers' connections.
 */
#ifndef DAIS_MASTER_MASTER_H
#define DAIS_MASTER_MASTER_H

#include "common/error.h"
#include "master/config.h"

#include <stdint.h>

typedef struct dais_master dais_master;

/* Creates the master and binds its ports. `cfg` is copied. Installs SIGINT/SIGTERM handling
 * on its loop (and ignores SIGPIPE). Returns owned, or NULL with `err` filled. Main thread. */
dais_master *dais_master_new(const dais_master_config *cfg, dais_err *err);

/* Runs until stopped. Returns 0 after a clean shutdown. Main thread. */
int dais_master_run(dais_master *m);

/* Asks the loop to stop (graceful). Loop thread, or a signal handler context via the loop's
 * own signal events. */
void dais_master_stop(dais_master *m);

/* The ports actually bound (useful when the configuration said 0). */
uint16_t dais_master_http_port(const dais_master *m);
uint16_t dais_master_cluster_port(const dais_master *m);
uint16_t dais_master_heartbeat_port(const dais_master *m);
uint16_t dais_master_metrics_port(const dais_master *m);

/* Frees everything. Accepts NULL. */
void dais_master_free(dais_master *m);

#endif
