/*
 * The worker node (`dais worker`): one libevent loop thread that owns the cluster
 * connection, the heartbeat socket, the /metrics server and every timer, plus the engine
 * thread of the scheduler (worker/sched.h). The loop:
 *
 *   resolve the master (evdns, async) → connect (each address in turn) → NODE_DISCOVERY →
 *   NODE_ACCEPT (verify the master's proof, derive the heartbeat key) → serve: frames from the
 *   master go to the scheduler, scheduler events come back through event_active and go out as
 *   INFERENCE_RESPONSE / ERROR frames; HEARTBEAT datagrams are verified and answered with
 *   HEARTBEAT_ACK (system metrics from /proc, load from the scheduler).
 *
 * Any failure — DNS, refused connection, registration timeout, a malformed frame, a closed
 * connection, heartbeats that stop for --master-timeout — cancels the work that came over the
 * connection and starts over with exponential backoff and full jitter (common/backoff.h),
 * without restarting the process. A NODE_REJECT whose reason is permanent ends the process
 * with status 1. SIGTERM/SIGINT drain: DRAIN to the master, no new work, in-flight requests
 * finish (up to --drain-timeout), then exit 0; a second signal exits at once.
 */
#ifndef DAIS_WORKER_WORKER_H
#define DAIS_WORKER_WORKER_H

#include "worker/config.h"

/* Runs the worker until it is told to stop. Returns the process exit status: 0 after a
 * signal, 1 on a fatal error (model does not load, a port cannot be bound, a permanent
 * rejection). Call once per process, from the main thread. */
int dais_worker_run(const dais_worker_config *cfg);

#endif
