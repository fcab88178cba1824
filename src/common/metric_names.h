/*
 * The catalogue of dais metric names: what each node exports on /metrics, with its type,
 * labels and base unit. The Grafana dashboard (deploy/grafana/dais.json) queries these names
 * and tests/system/test_observability*.py checks that both sides agree, so a module that
 * registers one of these metrics uses the macro rather than spelling the name again.
 *
 * Conventions: counters end in _total, durations are histograms in seconds (buckets from
 * metrics.h: dais_buckets_latency for requests, dais_buckets_fast for sub-second steps),
 * sizes in bytes, ratios in 0..1. State-like values are exported as one series per state
 * with value 1 for the current state and 0 for the others (a "state set"), so dashboards can
 * count by state with sum by (state).
 */
#ifndef DAIS_COMMON_METRIC_NAMES_H
#define DAIS_COMMON_METRIC_NAMES_H

/* ---- every node (dais_metrics_register_standard) ----------------------------------------- */
/* process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds,
 * process_max_fds, process_start_time_seconds, dais_build_info{version,commit,simd} */
#define DAIS_M_BUILD_INFO "dais_build_info"

/* ---- master: HTTP API -------------------------------------------------------------------- */
/* counter {route, code}: HTTP requests answered, by route template and status code */
#define DAIS_M_HTTP_REQUESTS "dais_http_requests_total"
/* histogram (latency buckets): whole inference request, arrival to last byte */
#define DAIS_M_REQUEST_DURATION "dais_request_duration_seconds"
/* histogram (latency buckets): time a request waited before a worker took it */
#define DAIS_M_REQUEST_QUEUE_TIME "dais_request_queue_seconds"
/* histogram (latency buckets): arrival to first generated token */
#define DAIS_M_TTFT "dais_time_to_first_token_seconds"
/* histogram (fast buckets): mean time per output token after the first, one per request */
#define DAIS_M_TPOT "dais_time_per_output_token_seconds"
/* counters: prompt tokens in, generated tokens out */
#define DAIS_M_TOKENS_IN  "dais_prompt_tokens_total"
#define DAIS_M_TOKENS_OUT "dais_generated_tokens_total"
/* gauges: requests being served / waiting for a worker */
#define DAIS_M_REQUESTS_IN_FLIGHT "dais_requests_in_flight"
#define DAIS_M_REQUESTS_QUEUED    "dais_requests_queued"
/* counters: attempts retried on another try, requests moved to another worker */
#define DAIS_M_RETRIES   "dais_request_retries_total"
#define DAIS_M_FAILOVERS "dais_request_failovers_total"
/* counters: attempts sent through a pipeline of shards; SHARD_ACTIVATION frames the master
 * relayed between stages (docs/sharding.md) */
#define DAIS_M_PIPELINE_ATTEMPTS "dais_pipeline_attempts_total"
#define DAIS_M_SHARD_RELAYS      "dais_shard_relays_total"

/* ---- master: cluster --------------------------------------------------------------------- */
/* gauge {state}: workers by state (e.g. joining, healthy, suspect, draining, dead) */
#define DAIS_M_WORKERS "dais_workers"
/* gauge state set {worker, state}: circuit breaker per worker (closed, open, half_open) */
#define DAIS_M_BREAKER_STATE "dais_breaker_state"
/* counter {result}: NODE_DISCOVERY outcomes (accepted, or the rejection reason) */
#define DAIS_M_REGISTRATIONS "dais_registrations_total"
/* counters: heartbeats sent, answered, lost (no answer in time), forged (bad MAC / replay) */
#define DAIS_M_HEARTBEATS_SENT     "dais_heartbeats_sent_total"
#define DAIS_M_HEARTBEATS_ANSWERED "dais_heartbeats_answered_total"
#define DAIS_M_HEARTBEATS_LOST     "dais_heartbeats_lost_total"
#define DAIS_M_HEARTBEATS_FORGED   "dais_heartbeats_forged_total"
/* histogram (fast buckets): heartbeat round-trip time */
#define DAIS_M_HEARTBEAT_RTT "dais_heartbeat_rtt_seconds"
/* counter {result}: model sync connections on port 8890 (ok, unknown_model, bad_token, busy, …;
 * master/modelstore.h); counter: model file bytes sent to workers */
#define DAIS_M_MODEL_SYNC_REQUESTS "dais_model_sync_requests_total"
#define DAIS_M_MODEL_SYNC_BYTES    "dais_model_sync_bytes_total"
/* counters {result}: Kubernetes API discovery calls (ok, error) */
#define DAIS_M_K8S_DISCOVERY "dais_k8s_discovery_requests_total"

/* ---- worker ------------------------------------------------------------------------------ */
/* counter {result}: inference requests finished (ok, error, cancelled) */
#define DAIS_M_WORKER_REQUESTS "dais_worker_requests_total"
/* counters: tokens processed in prefill (prompt) and decode (generated) */
#define DAIS_M_WORKER_PREFILL_TOKENS "dais_worker_prefill_tokens_total"
#define DAIS_M_WORKER_DECODE_TOKENS  "dais_worker_decode_tokens_total"
/* gauges: throughput of the last prefill / decode step, tokens per second */
#define DAIS_M_WORKER_PREFILL_TPS "dais_worker_prefill_tokens_per_second"
#define DAIS_M_WORKER_DECODE_TPS  "dais_worker_decode_tokens_per_second"
/* histogram (buckets 1,2,4,…,256): sequences per batched forward pass */
#define DAIS_M_WORKER_BATCH_SIZE "dais_worker_batch_size"
/* gauges: sequences being decoded, requests waiting in the worker's queue */
#define DAIS_M_WORKER_ACTIVE_SEQS "dais_worker_active_sequences"
#define DAIS_M_WORKER_QUEUE_DEPTH "dais_worker_queue_depth"
/* gauges: KV-cache use as a ratio of capacity and in bytes */
#define DAIS_M_WORKER_KV_USED_RATIO "dais_worker_kv_cache_used_ratio"
#define DAIS_M_WORKER_KV_USED_BYTES "dais_worker_kv_cache_used_bytes"
/* gauge: seconds the last model load took */
#define DAIS_M_WORKER_MODEL_LOAD "dais_worker_model_load_seconds"
/* counter: engine errors (allocation, numerical, model) */
#define DAIS_M_WORKER_ENGINE_ERRORS "dais_worker_engine_errors_total"

/* ---- tracing (registered by trace.c) ---------------------------------------------------- */
#define DAIS_M_TRACE_EXPORTED "dais_trace_spans_exported_total"
/* counter {reason}: queue_full, export_failed */
#define DAIS_M_TRACE_DROPPED "dais_trace_spans_dropped_total"
/* counter {result}: ok, error */
#define DAIS_M_TRACE_BATCHES "dais_trace_export_batches_total"

#endif
