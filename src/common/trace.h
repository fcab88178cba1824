/*
 * Distributed tracing: W3C Trace Context (traceparent / tracestate) and spans exported over
 * OTLP/HTTP with JSON encoding (POST {endpoint}/v1/traces), e.g. to Jaeger on port 4318.
 *
 * Contexts. A dais_trace_ctx is the (trace id, span id, flags) triple that travels in the
 * HTTP `traceparent` header and in the cluster envelope's metadata ("traceparent" key, the
 * same 55-character string). dais_span_start always fills the new span's context, even when
 * tracing is off, so a node can propagate ids, log them (dais_log_set_trace) and return the
 * trace id to the client without exporting anything.
 *
 * Spans. With no endpoint configured the tracer is disabled and dais_span_start returns NULL
 * without allocating; every span function accepts NULL. With an endpoint, a span is one
 * malloc holding its name and a few attributes inline; dais_span_end timestamps it and pushes
 * it on the tracer's bounded queue (a short mutex hold, never a wait). A background thread
 * sends batches (every flush interval or when a batch is full) with libcurl under a short
 * timeout. When the queue is full or an export fails the spans are dropped and counted in
 * dais_trace_spans_dropped_total{reason} — the request path never waits for the collector.
 * A span whose parent is not sampled (flags bit 0 clear) is not recorded either. The export
 * uses libcurl, which honours the usual proxy variables (https_proxy, no_proxy…).
 */
#ifndef DAIS_COMMON_TRACE_H
#define DAIS_COMMON_TRACE_H

#include "common/error.h"
#include "common/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define DAIS_TRACEPARENT_LEN 55
/* Longest tracestate value passed on (the W3C minimum every vendor must propagate). */
#define DAIS_TRACESTATE_MAX     512
#define DAIS_TRACE_FLAG_SAMPLED 0x01

typedef struct dais_trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;
    bool valid; /* false: no context (no header, or a malformed one) */
} dais_trace_ctx;

/* ---- W3C Trace Context ----------------------------------------------------------------- */

/* Parses a traceparent value of `len` bytes (need not be NUL-terminated). Accepts version 00
 * exactly as specified (lower-case hex, trace id and parent id not all zero), and a later
 * version (not ff) when the first 55 bytes have the 00 layout and anything after them starts
 * with '-'. Returns 0 and fills `out`, or DAIS_EFORMAT and leaves `out->valid` false. Any
 * thread. */
int dais_traceparent_parse(const char *s, size_t len, dais_trace_ctx *out);

/* Writes the version-00 traceparent of a valid `ctx` into `out` (DAIS_TRACEPARENT_LEN + 1
 * bytes, NUL-terminated). Returns 0, or DAIS_EINVAL for an invalid context (out = ""). */
int dais_traceparent_format(const dais_trace_ctx *ctx, char out[DAIS_TRACEPARENT_LEN + 1]);

/* Checks a tracestate value of `len` bytes: at most DAIS_TRACESTATE_MAX bytes, at most 32
 * comma-separated list members, each empty (OWS only) or key=value with the W3C key and
 * value character sets. Returns true when it may be passed on as is. */
bool dais_tracestate_valid(const char *s, size_t len);

/* Lower-case hex of a trace id (33 bytes incl. NUL) / span id (17 bytes). */
void dais_trace_id_hex(const uint8_t id[16], char out[33]);
void dais_span_id_hex(const uint8_t id[8], char out[17]);

/* Fills `out` with a new context: the trace id of `parent` when it is valid (with its flags),
 * otherwise a new random trace id with the sampled flag; always a new random span id. Ids
 * come from getrandom(2) through a small per-thread buffer and are never all zero. */
void dais_trace_ctx_child(const dais_trace_ctx *parent, dais_trace_ctx *out);

/* Tags this thread's log lines with the trace id of `ctx` (dais_log_set_trace); NULL or an
 * invalid context clears it. For a loop thread: bind while handling one request's event,
 * clear when done. */
void dais_trace_log_bind(const dais_trace_ctx *ctx);

/* ---- tracer ---------------------------------------------------------------------------- */

typedef struct dais_tracer dais_tracer;
typedef struct dais_span dais_span;

/* OTLP span kinds (the OTLP enum values). */
enum dais_span_kind {
    DAIS_SPAN_INTERNAL = 1,
    DAIS_SPAN_SERVER = 2,
    DAIS_SPAN_CLIENT = 3,
    DAIS_SPAN_PRODUCER = 4,
    DAIS_SPAN_CONSUMER = 5,
};

/* OTLP status codes. */
enum dais_span_status { DAIS_SPAN_UNSET = 0, DAIS_SPAN_OK = 1, DAIS_SPAN_ERROR = 2 };

typedef struct dais_tracer_config {
    const char *endpoint;     /* base URL, e.g. "http://127.0.0.1:4318"; NULL or "" = off */
    const char *service_name; /* resource service.name, e.g. "dais-master" (NULL → "dais") */
    const char *instance_id;  /* resource service.instance.id (node id), may be NULL */
    size_t queue_max;         /* spans waiting for export; 0 → 2048 */
    size_t batch_max;         /* spans per POST; 0 → 512 */
    unsigned flush_ms;        /* longest wait before a partial batch is sent; 0 → 1000 */
    unsigned timeout_ms;      /* whole-request timeout of one export; 0 → 2000 */
    /* Where dais_trace_spans_{exported,dropped}_total and dais_trace_export_seconds go;
     * NULL → the default registry. */
    dais_metrics_registry *metrics;
} dais_tracer_config;

/* Counters of one tracer (also exported as metrics). */
typedef struct dais_tracer_stats {
    uint64_t started;        /* spans recorded (allocated) */
    uint64_t exported;       /* spans the collector accepted (2xx) */
    uint64_t dropped_queue;  /* dropped because the queue was full */
    uint64_t dropped_export; /* dropped because an export failed (collector down, slow, non-2xx) */
    uint64_t batches_failed;
} dais_tracer_stats;

/* A tracer for `cfg` (strings copied). With an endpoint it starts the export thread. Returns
 * owned, or NULL with `err` filled (bad endpoint, out of memory, thread start failure). */
dais_tracer *dais_tracer_new(const dais_tracer_config *cfg, dais_err *err);

/* Sends what is queued (waiting at most about one export timeout), stops the export thread
 * and frees the tracer. Spans still open must not be ended afterwards. Accepts NULL. */
void dais_tracer_free(dais_tracer *t);

/* True when spans are recorded and exported. NULL → false. */
bool dais_tracer_enabled(const dais_tracer *t);

/* Waits until every span ended before this call has been exported or dropped, at most
 * `timeout_ms`. Returns 0, or DAIS_ETIMEOUT. For shutdown paths and tests; never call it on
 * an event loop thread that serves requests. */
int dais_tracer_flush(dais_tracer *t, unsigned timeout_ms);

void dais_tracer_get_stats(const dais_tracer *t, dais_tracer_stats *out);

/* Starts a span named `name` (copied, truncated to 63 bytes) as a child of `parent` (NULL or
 * invalid → a new trace). Fills `ctx_out` (may be NULL) with the new span's context in every
 * case. Returns an owned span to end with dais_span_end, or NULL when the tracer is NULL,
 * disabled, or the parent is not sampled (then nothing was allocated). Any thread; the span
 * itself is used by one thread at a time. */
dais_span *dais_span_start(dais_tracer *t, const char *name, enum dais_span_kind kind,
                           const dais_trace_ctx *parent, dais_trace_ctx *ctx_out);

/* Attributes: up to DAIS_SPAN_MAX_ATTRS per span, keys and string values copied into the span
 * (truncated to fit its fixed space); further attributes are ignored. NULL span: no-op. */
#define DAIS_SPAN_MAX_ATTRS 12
void dais_span_set_str(dais_span *s, const char *key, const char *value);
void dais_span_set_int(dais_span *s, const char *key, int64_t value);

/* Sets the status (message copied, truncated to 127 bytes, may be NULL). */
void dais_span_set_status(dais_span *s, enum dais_span_status st, const char *message);

/* The span's context (invalid when `s` is NULL). */
void dais_span_ctx(const dais_span *s, dais_trace_ctx *out);

/* Ends the span (takes ownership): stamps the end time and queues it for export, or drops and
 * counts it when the queue is full. Never blocks on I/O. NULL: no-op. */
void dais_span_end(dais_span *s);

/* Encodes spans as one OTLP/JSON ExportTraceServiceRequest for tracer `t`'s resource. Returns
 * an owned NUL-terminated string (free()) or NULL when out of memory. Borrows the spans.
 * Used by the export thread; public so that tests can check the document. */
char *dais_trace_encode_otlp(const dais_tracer *t, dais_span *const *spans, size_t n);

#endif
