/*
 * Prometheus metrics: counters, gauges and histograms kept in a registry and rendered in the
 * text exposition format 0.0.4 (served on /metrics by metrics_http.h).
 *
 * Model. A *family* is one metric name with its help text, type and label names. A family
 * without labels has exactly one *child*; a labelled family has one child per tuple of label
 * values, created up front or on first use. Creating a family or a child takes the registry
 * mutex; the child handle that comes back (dais_counter, dais_gauge, dais_histogram) stays
 * valid until the registry is freed and is then updated without any lock:
 *   - counter: an integer part (relaxed atomic fetch_add on a uint64) plus a fractional part
 *     (a double kept as its IEEE-754 bits in an atomic uint64, updated with a CAS loop);
 *     the rendered value is their sum, so integer increments cost one atomic add;
 *   - gauge: a double kept as atomic uint64 bits (set = one store, add = CAS loop);
 *   - histogram: fixed upper bounds chosen at registration; observe = find the bucket, one
 *     relaxed add on that bucket's (non-cumulative) count, one CAS add on the sum. _count is
 *     the sum of the bucket counts at render time, so _count always equals the +Inf bucket.
 * No allocation happens on update. Every update function accepts NULL and does nothing, so
 * a caller whose family could not be created needs no special case.
 *
 * Callback families (dais_metrics_collector_new) are evaluated at render time: the callback
 * emits (label values, value) samples, e.g. "workers by state" derived from a node's own
 * registry of workers. Callbacks run on the thread that renders (for a node: the metrics
 * HTTP server's event loop thread) while the registry mutex is held, so they must not
 * register metrics in the same registry.
 *
 * Names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* (not "__"
 * prefixed, not "le" on histograms). Label values may be any string; they are escaped
 * (\\, \", \n) when rendered. A family caps its children (DAIS_METRICS_MAX_CHILDREN) so a
 * label fed from outside input cannot grow memory without bound: past the cap the child
 * getters return NULL.
 */
#ifndef DAIS_COMMON_METRICS_H
#define DAIS_COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define DAIS_METRICS_MAX_LABELS   8
#define DAIS_METRICS_MAX_BUCKETS  64
#define DAIS_METRICS_MAX_CHILDREN 4096
/* Default cap on a rendered registry (dais_metrics_render*). */
#define DAIS_METRICS_RENDER_MAX (16u << 20)

typedef struct dais_metrics_registry dais_metrics_registry;
typedef struct dais_metric_family dais_metric_family;
typedef struct dais_counter dais_counter;
typedef struct dais_gauge dais_gauge;
typedef struct dais_histogram dais_histogram;
typedef struct dais_metric_sink dais_metric_sink;

enum dais_metric_type { DAIS_METRIC_COUNTER = 0, DAIS_METRIC_GAUGE, DAIS_METRIC_HISTOGRAM };

/* Bucket upper bounds (seconds) for request latencies: 5 ms .. 60 s. */
extern const double dais_buckets_latency[];
extern const size_t dais_buckets_latency_n;
/* Bucket upper bounds (seconds) for fast operations: 100 us .. 2.5 s (heartbeat RTT, TPOT). */
extern const double dais_buckets_fast[];
extern const size_t dais_buckets_fast_n;

/* ---- registries ------------------------------------------------------------------------ */

/* A new, empty registry; returns owned, or NULL when out of memory. Any thread. */
dais_metrics_registry *dais_metrics_registry_new(void);

/* Frees a registry, its families and every child handle obtained from it. Accepts NULL.
 * No other thread may use the registry or its handles any more. */
void dais_metrics_registry_free(dais_metrics_registry *r);

/* The process-wide default registry (created on first use, never freed). Any thread. */
dais_metrics_registry *dais_metrics_default(void);

/* ---- families and children --------------------------------------------------------------- */

/* Registers a family; returns a handle borrowed from `r` (valid until the registry is freed)
 * or NULL (invalid name/labels/buckets, out of memory, or `name` already registered with a
 * different type, label names or buckets; registering the same definition again returns the
 * existing family). `labels` holds `n_labels` label names (copied). For histograms `bounds`
 * holds `n_bounds` finite, strictly increasing upper bounds (copied; +Inf is implicit).
 * Any thread. */
dais_metric_family *dais_metrics_family_new(dais_metrics_registry *r, enum dais_metric_type type,
                                            const char *name, const char *help, size_t n_labels,
                                            const char *const *labels, size_t n_bounds,
                                            const double *bounds);

/* The child for a tuple of label values (`values` holds one string per label name; copied),
 * created on first use. Returns a handle borrowed from the registry, or NULL (wrong family
 * type, NULL value, child cap reached, out of memory). Takes the registry mutex: get the
 * handle once (per worker, per route…) and keep it, rather than calling this per update. */
dais_counter *dais_counter_child(dais_metric_family *f, const char *const *values);
dais_gauge *dais_gauge_child(dais_metric_family *f, const char *const *values);
dais_histogram *dais_histogram_child(dais_metric_family *f, const char *const *values);

/* Hides a child from rendering (e.g. a worker that left the cluster). Its handle stays valid;
 * getting the same label values again shows it again, value kept (counters stay monotonic).
 * Returns 0 or DAIS_ENOTFOUND. */
int dais_metric_family_hide(dais_metric_family *f, const char *const *values);

/* Shorthands for families without labels: register and return the only child. */
dais_counter *dais_counter_new(dais_metrics_registry *r, const char *name, const char *help);
dais_gauge *dais_gauge_new(dais_metrics_registry *r, const char *name, const char *help);
dais_histogram *dais_histogram_new(dais_metrics_registry *r, const char *name, const char *help,
                                   size_t n_bounds, const double *bounds);

/* ---- updates: lock-free, allocation-free, any thread, NULL handle = no-op ---------------- */

void dais_counter_inc(dais_counter *c);
void dais_counter_add(dais_counter *c, uint64_t n);
/* Adds a non-negative finite amount (negative or NaN values are ignored). */
void dais_counter_add_f(dais_counter *c, double v);
/* Current value (integer part + fractional part). */
double dais_counter_value(const dais_counter *c);

void dais_gauge_set(dais_gauge *g, double v);
void dais_gauge_add(dais_gauge *g, double v);
void dais_gauge_inc(dais_gauge *g);
void dais_gauge_dec(dais_gauge *g);
double dais_gauge_value(const dais_gauge *g);

void dais_histogram_observe(dais_histogram *h, double v);
/* Observes the seconds elapsed since `start_ns` (a dais_now_ns() value). */
void dais_histogram_observe_since(dais_histogram *h, uint64_t start_ns);
/* Totals: number of observations and their sum. */
uint64_t dais_histogram_count(const dais_histogram *h);
double dais_histogram_sum(const dais_histogram *h);
/* Cumulative count of observations <= the i-th upper bound (i == n_bounds: all). */
uint64_t dais_histogram_bucket(const dais_histogram *h, size_t i);

/* ---- callback families ----------------------------------------------------------------- */

/* Called at render time; emits zero or more samples with dais_metric_sink_emit. */
typedef void (*dais_metric_collect_fn)(void *arg, dais_metric_sink *sink);

/* Registers a counter or gauge family whose samples come from `fn(arg, sink)` at render time
 * (see the file comment for the thread it runs on). `arg` is borrowed and must outlive the
 * registry, or the family must be removed first with dais_metrics_collector_remove. Returns
 * the family (borrowed) or NULL, as dais_metrics_family_new. */
dais_metric_family *dais_metrics_collector_new(dais_metrics_registry *r, enum dais_metric_type type,
                                               const char *name, const char *help, size_t n_labels,
                                               const char *const *labels, dais_metric_collect_fn fn,
                                               void *arg);

/* Unregisters a callback family so `arg` may be freed; later renders skip it. Returns 0 or
 * DAIS_ENOTFOUND / DAIS_EINVAL (not a callback family). The family memory stays until the
 * registry is freed. */
int dais_metrics_collector_remove(dais_metrics_registry *r, dais_metric_family *f);

/* One sample from a collector: `values` holds one string per label name (NULL when the
 * family has no labels). Only valid inside the callback. */
void dais_metric_sink_emit(dais_metric_sink *sink, const char *const *values, double value);

/* ---- standard metrics ---------------------------------------------------------------- */

/* Registers process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds,
 * process_max_fds, process_start_time_seconds (read from /proc at render time) and
 * dais_build_info{version,commit,simd} = 1 (`simd` is copied; NULL → ""). Returns 0 or a
 * negative code. Call once per registry. */
int dais_metrics_register_standard(dais_metrics_registry *r, const char *simd);

/* ---- rendering ------------------------------------------------------------------------- */

/* Appends the text exposition of `r` to `out`, at most `max` bytes (0 → DAIS_METRICS_RENDER_MAX).
 * Returns 0, DAIS_ETOOBIG (output would pass `max`; `out` is left as it was) or DAIS_ENOMEM.
 * Takes the registry mutex and runs collector callbacks on the calling thread. */
int dais_metrics_render_evbuffer(dais_metrics_registry *r, struct evbuffer *out, size_t max);

/* Renders `r` into a new NUL-terminated string (returned owned, free() it) of at most `max`
 * bytes (0 → default); stores its length in `*len` (may be NULL). NULL on error, with the code
 * in `*err` (may be NULL). */
char *dais_metrics_render_string(dais_metrics_registry *r, size_t max, size_t *len, int *err);

/* Content-Type of the rendered text. */
#define DAIS_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
