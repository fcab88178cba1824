/*
 * The /metrics endpoint: an evhttp server on a node's existing event loop that answers
 * GET (and HEAD) /metrics with the text exposition of one or more registries, 404 for any
 * other path and 405 for any other method. Scrapes render on the loop thread, so collector
 * callbacks may read state that the loop owns. Like every socket server on libevent, it
 * needs the process to ignore SIGPIPE (a scraper that hangs up mid-reply must not kill it).
 */
#ifndef DAIS_COMMON_METRICS_HTTP_H
#define DAIS_COMMON_METRICS_HTTP_H

#include "common/error.h"
#include "common/metrics.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;

#define DAIS_METRICS_HTTP_MAX_REGS 8

typedef struct dais_metrics_http dais_metrics_http;

/* Listens on addr:port ("0.0.0.0", "127.0.0.1", "::"; port 0 = a free port, see
 * dais_metrics_http_port) and serves the registries `regs[0..n_regs)` (borrowed; they must
 * outlive the server) concatenated in that order; n_regs == 0 serves the default registry.
 * The registries must not define the same metric name twice. Call on the loop thread of
 * `base`. Returns owned, or NULL with `err` filled (cannot bind, bad arguments, no memory). */
dais_metrics_http *dais_metrics_http_start(struct event_base *base, const char *addr, uint16_t port,
                                           dais_metrics_registry *const *regs, size_t n_regs,
                                           dais_err *err);

/* The port actually bound. */
uint16_t dais_metrics_http_port(const dais_metrics_http *h);

/* Stops listening, closes open scrape connections and frees the server. On the loop thread.
 * Accepts NULL. */
void dais_metrics_http_free(dais_metrics_http *h);

#endif
