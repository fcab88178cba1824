/*
 * Typed payloads: one C struct per message type and an encode/decode pair that maps it to
 * the message's payload.data (and binary payload). Master and worker share these
 * definitions, so the wire format is written down in exactly one place (and in
 * docs/protocol.md, which is normative).
 *
 * encode: fills m->data (and m->bin where the type has a binary payload) from the struct;
 *         the message's type must match. Returns 0, DAIS_EINVAL (a field out of range),
 *         DAIS_ENOMEM.
 * decode: validates m->data (types, ranges, string lengths) and fills the struct. Returns 0 or
 *         DAIS_EPROTO with err naming the field. Unknown keys are ignored. Structs that own
 *         memory have a _clear function; the others are plain values.
 * Strings are copied into fixed arrays (bounded) unless a field says "borrowed".
 * Any thread, on its own objects.
 */
#ifndef DAIS_PROTO_MESSAGES_H
#define DAIS_PROTO_MESSAGES_H

#include "common/error.h"
#include "proto/auth.h"
#include "proto/envelope.h"

#include <stdbool.h>
#include <stdint.h>

#define DAIS_NAME_MAX          128  /* model names, addresses, health strings */
#define DAIS_TEXT_MAX          4096 /* reason / error messages */
#define DAIS_STOP_MAX          8    /* stop strings per request */
#define DAIS_STOP_LEN_MAX      128  /* bytes per stop string */
#define DAIS_PROMPT_TOKENS_MAX (1 << 20)

/* SIMD features a node's CPU has (capabilities.simd on the wire: an array of these names). */
enum {
    DAIS_SIMD_SSE42 = 1u << 0,   /* "sse4.2" */
    DAIS_SIMD_AVX = 1u << 1,     /* "avx" */
    DAIS_SIMD_AVX2 = 1u << 2,    /* "avx2" */
    DAIS_SIMD_FMA = 1u << 3,     /* "fma" */
    DAIS_SIMD_F16C = 1u << 4,    /* "f16c" */
    DAIS_SIMD_AVX512F = 1u << 5, /* "avx512f" */
    DAIS_SIMD_NEON = 1u << 6,    /* "neon" */
};
/* The features of the CPU this runs on. */
uint32_t dais_simd_detect(void);

/* ---- NODE_DISCOVERY (worker → master, TCP, first frame of a connection) ------------------ */

typedef struct dais_model_info {
    char name[DAIS_NAME_MAX + 1]; /* general.name, else the file's base name */
    char hash[65];                /* lowercase hex SHA-256 of the GGUF file */
    int32_t n_vocab;
    int32_t n_layers;
    int32_t layer_first, layer_last; /* layers this node holds: [first, last); whole = [0, n) */
    int32_t n_ctx_train;
} dais_model_info;

typedef struct dais_msg_discovery {
    char node_id[DAIS_NODE_ID_MAX + 1]; /* must equal the envelope's source_node */
    uint32_t protocol_version;          /* DAIS_PROTO_VERSION */
    char addr[DAIS_NAME_MAX + 1];       /* where to send heartbeats; "" = the TCP peer address */
    uint16_t heartbeat_port;            /* UDP port the worker receives HEARTBEAT on */
    uint16_t metrics_port;              /* TCP port of its /metrics; 0 = not served (optional) */
    /* capabilities */
    int32_t cores;             /* online CPUs */
    int32_t threads;           /* compute threads the engine uses */
    uint64_t memory_total;     /* bytes */
    uint64_t memory_available; /* bytes at registration */
    uint32_t simd;             /* DAIS_SIMD_* */
    dais_model_info model;
    int32_t n_ctx; /* context positions per sequence (KV cache size) */
    int32_t slots; /* sequences decoded together */
    int32_t batch; /* tokens per forward pass */
    int32_t queue; /* requests that may wait beyond the slots */
    dais_auth auth;
} dais_msg_discovery;

int dais_discovery_encode(const dais_msg_discovery *d, dais_msg *m);
int dais_discovery_decode(const dais_msg *m, dais_msg_discovery *d, dais_err *err);

/* ---- NODE_ACCEPT / NODE_REJECT (master → worker, TCP) ------------------------------------- */

typedef struct dais_msg_accept {
    char node_id[DAIS_NODE_ID_MAX + 1];
    uint64_t session_id; /* names the heartbeat session in datagram trailers; >= 1 */
    char master_nonce[DAIS_NONCE_HEX_LEN + 1];
    char hmac[DAIS_MAC_HEX_LEN + 1]; /* dais_auth_accept_mac */
    uint32_t heartbeat_interval_ms;  /* how often the master sends HEARTBEAT; >= 1 */
    uint32_t heartbeat_port;         /* master's UDP port (informational; replies go to
                                        the datagram's source address) */
} dais_msg_accept;

int dais_accept_encode(const dais_msg_accept *a, dais_msg *m);
int dais_accept_decode(const dais_msg *m, dais_msg_accept *a, dais_err *err);

/* Stable reject reasons (the wire strings in parentheses). Append only. */
#define DAIS_REJECT_MAP(X)                                                                         \
    X(MALFORMED, "malformed", false)                                                               \
    X(BAD_TOKEN, "bad_token", false)                                                               \
    X(CLOCK_SKEW, "clock_skew", true)                                                              \
    X(REPLAY, "replay", true)                                                                      \
    X(UNSUPPORTED_VERSION, "unsupported_version", false)                                           \
    X(UNKNOWN_MODEL, "unknown_model", false)                                                       \
    X(DUPLICATE_ID, "duplicate_id", true)                                                          \
    X(OVERLOADED, "overloaded", true)                                                              \
    X(DRAINING, "draining", true)                                                                  \
    X(NOT_A_POD, "not_a_pod", true)

enum dais_reject_reason {
    DAIS_REJECT_NONE = 0,
#define DAIS_REJECT_ENUM(n, s, t) DAIS_REJECT_##n,
    DAIS_REJECT_MAP(DAIS_REJECT_ENUM)
#undef DAIS_REJECT_ENUM
        DAIS_REJECT__COUNT
};
const char *dais_reject_reason_name(enum dais_reject_reason r);
enum dais_reject_reason dais_reject_reason_from_name(const char *s); /* NONE if unknown */
bool dais_reject_reason_transient(enum dais_reject_reason r);
/* The reason to send for an auth verdict (DAIS_AUTH_OK → NONE). */
enum dais_reject_reason dais_reject_from_auth(enum dais_auth_verdict v);

typedef struct dais_msg_reject {
    enum dais_reject_reason reason; /* an unknown wire reason decodes as NONE */
    char reason_name[65];           /* the wire string as received */
    char message[DAIS_TEXT_MAX + 1];
    bool retry; /* the worker may register again (after retry_after_ms) */
    uint32_t retry_after_ms;
} dais_msg_reject;

int dais_reject_encode(const dais_msg_reject *r, dais_msg *m);
int dais_reject_decode(const dais_msg *m, dais_msg_reject *r, dais_err *err);

/* ---- HEARTBEAT (master → worker, UDP) / HEARTBEAT_ACK (worker → master, UDP) ------------- */

typedef struct dais_msg_heartbeat {
    uint32_t interval_ms;   /* the master's current heartbeat interval */
    char cluster_state[33]; /* "ok" | "degraded" | "unavailable" */
    int32_t workers_active;
    int32_t workers_total;
    int64_t sent_ms; /* master wall clock when sent (echoed for RTT) */
} dais_msg_heartbeat;

int dais_heartbeat_encode(const dais_msg_heartbeat *h, dais_msg *m);
int dais_heartbeat_decode(const dais_msg *m, dais_msg_heartbeat *h, dais_err *err);

typedef struct dais_sys_metrics {
    double cpu_percent;         /* whole machine, 0..100, since the previous sample */
    double process_cpu_percent; /* this process, 0..100 * cores */
    uint64_t mem_total;         /* bytes */
    uint64_t mem_used;          /* bytes (total - available) */
    uint64_t process_rss;       /* bytes */
    double load1, load5, load15;
} dais_sys_metrics;

typedef struct dais_load_metrics {
    int32_t queue_depth; /* requests waiting for a slot */
    int32_t active;      /* sequences in slots */
    int32_t slots;
    double tokens_per_s;     /* generated tokens/s over the last interval */
    int64_t kv_used;         /* KV positions in use over all slots */
    int64_t kv_total;        /* slots * n_ctx */
    uint64_t requests_total; /* finished since start */
    uint64_t tokens_total;   /* generated since start */
} dais_load_metrics;

typedef struct dais_msg_heartbeat_ack {
    uint64_t echo_seq;    /* seq of the HEARTBEAT answered */
    int64_t echo_sent_ms; /* its sent_ms */
    char health[33];      /* "ok" | "degraded" | "draining" */
    dais_sys_metrics sys;
    dais_load_metrics load;
} dais_msg_heartbeat_ack;

int dais_heartbeat_ack_encode(const dais_msg_heartbeat_ack *a, dais_msg *m);
int dais_heartbeat_ack_decode(const dais_msg *m, dais_msg_heartbeat_ack *a, dais_err *err);

/* ---- INFERENCE_REQUEST (master → worker, TCP) -------------------------------------------- */

typedef struct dais_infer_params {
    float temperature;     /* >= 0; 0 = greedy */
    int32_t top_k;         /* >= 0; 0 = off */
    float top_p;           /* (0, 1]; 1 = off */
    float min_p;           /* [0, 1]; 0 = off */
    float repeat_penalty;  /* > 0; 1 = off */
    int32_t repeat_last_n; /* >= 0 */
    uint64_t seed;
    int32_t max_tokens; /* new tokens to generate on this worker, >= 1 */
    int32_t n_stop;
    char stop[DAIS_STOP_MAX][DAIS_STOP_LEN_MAX + 1]; /* each 1..128 bytes */
} dais_infer_params;

/* The values a missing field decodes to (the HTTP API's defaults are the master's business):
 * temperature 1, top_k 0, top_p 1, min_p 0, repeat_penalty 1, repeat_last_n 64, seed 0,
 * max_tokens 16, no stop strings. */
void dais_infer_params_default(dais_infer_params *p);

typedef struct dais_msg_infer_req {
    char request_id[DAIS_REQUEST_ID_MAX + 1];
    char model[DAIS_NAME_MAX + 1]; /* "" = whatever the worker serves */
    /* Exactly one of prompt text / prompt tokens. */
    char *prompt; /* owned, NUL-terminated text, or NULL */
    size_t prompt_len;
    bool add_bos;    /* text prompts: prepend BOS when the vocabulary wants it */
    int32_t *tokens; /* owned: prompt token ids (binary payload), or NULL */
    int32_t n_tokens;
    int32_t n_generated; /* the last n_generated of `tokens` were generated earlier
                            (failover): output continues after them */
    dais_infer_params params;
    uint32_t deadline_ms; /* time budget from receipt, 0 = none */
    char traceparent[56]; /* W3C traceparent from metadata, "" when absent */
    /* The worker is the last stage of a pipeline (its layers start after 0): the hidden state
     * of every position arrives in SHARD_ACTIVATION frames, and after each sampled token it
     * sends that token back in a SHARD_ACTIVATION of kind tokens. Default false. */
    bool pipeline;
} dais_msg_infer_req;

int dais_infer_req_encode(const dais_msg_infer_req *r, dais_msg *m);
int dais_infer_req_decode(const dais_msg *m, dais_msg_infer_req *r, dais_err *err);
void dais_infer_req_clear(dais_msg_infer_req *r); /* frees prompt/tokens, zeroes */

/* ---- INFERENCE_RESPONSE (worker → master, TCP) ------------------------------------------- */

enum dais_finish {
    DAIS_FINISH_NONE = 0,  /* a partial frame */
    DAIS_FINISH_STOP,      /* "stop": end-of-generation token or a stop string */
    DAIS_FINISH_LENGTH,    /* "length": max_tokens or the context is full */
    DAIS_FINISH_CANCELLED, /* "cancelled": CANCEL, deadline, or the worker is shutting down */
    DAIS_FINISH_ERROR,     /* "error": see error_code / error_message */
    DAIS_FINISH__COUNT
};
const char *dais_finish_name(enum dais_finish f);

typedef struct dais_infer_timings {
    double queue_ms; /* receipt → slot assigned */
    double ttft_ms;  /* receipt → first token sampled */
    double total_ms; /* receipt → final frame */
    double prefill_ms, decode_ms;
    double prefill_tokens_per_s, decode_tokens_per_s;
} dais_infer_timings;

typedef struct dais_msg_infer_resp {
    char request_id[DAIS_REQUEST_ID_MAX + 1];
    uint32_t index; /* 0, 1, 2 … per request, final included */
    bool final;
    /* Frame 0 only: text is "" and tokens are the prompt's ids (for failover), not output. */
    bool prompt_token_ids;
    /* Text and the token ids that produced exactly that text (binary payload). In a partial
     * frame the two always agree: text == detokenize(tokens) continuing the stream, so a
     * master can resume elsewhere from the tokens it has. Borrowed from the message on
     * decode (valid while it lives); owned by the caller on encode. */
    const char *text;
    size_t text_len;
    const int32_t *tokens; /* decode: owned copy, freed by dais_infer_resp_clear */
    int32_t n_tokens;
    /* final only */
    enum dais_finish finish;
    int32_t prompt_tokens;
    int32_t completion_tokens;
    dais_infer_timings timings;
    char error_code[33]; /* finish == ERROR: a dais_proto_error code string */
    char error_message[DAIS_TEXT_MAX + 1];
} dais_msg_infer_resp;

int dais_infer_resp_encode(const dais_msg_infer_resp *r, dais_msg *m);
int dais_infer_resp_decode(const dais_msg *m, dais_msg_infer_resp *r, dais_err *err);
void dais_infer_resp_clear(dais_msg_infer_resp *r);

/* ---- SHARD_ACTIVATION (pipeline shards: master ↔ worker, TCP) --------------------------- */

#define DAIS_SHARD_TOKENS_MAX (1 << 20) /* positions in one frame */

enum dais_shard_kind {
    DAIS_SHARD_TOKENS = 1, /* "tokens": int32 ids (input of the first stage; the last stage's
                              sampled token) */
    DAIS_SHARD_HIDDEN = 2, /* "hidden": f32 hidden states, n_tokens x dim (between stages) */
};

typedef struct dais_msg_shard {
    char request_id[DAIS_REQUEST_ID_MAX + 1]; /* the stage's sequence id */
    enum dais_shard_kind kind;
    int32_t pos;          /* position of the first token in its sequence, >= 0 */
    int32_t n_tokens;     /* 1..DAIS_SHARD_TOKENS_MAX */
    int32_t dim;          /* HIDDEN: floats per position (the model's embedding length) */
    uint32_t deadline_ms; /* master → stage, pos 0: the sequence's time budget; 0 = none */
    /* The binary payload (owned after decode; borrowed for encode): tokens for TOKENS,
     * n_tokens * dim finite floats for HIDDEN. */
    int32_t *tokens;
    float *hidden;
} dais_msg_shard;

int dais_shard_encode(const dais_msg_shard *a, dais_msg *m);
int dais_shard_decode(const dais_msg *m, dais_msg_shard *a, dais_err *err);
/* The same without the payload: a relay that forwards the binary payload as it came (the
 * receiving stage validates the values) checks only the fields and the payload's length.
 * encode_meta leaves m's binary payload alone; decode_meta leaves tokens/hidden NULL. */
int dais_shard_encode_meta(const dais_msg_shard *a, dais_msg *m);
int dais_shard_decode_meta(const dais_msg *m, dais_msg_shard *a, dais_err *err);
void dais_shard_clear(dais_msg_shard *a); /* frees tokens/hidden, zeroes */

/* ---- CANCEL (master → worker), DRAIN (either way), ERROR (either way) --------------------- */

typedef struct dais_msg_cancel {
    char request_id[DAIS_REQUEST_ID_MAX + 1];
    char reason[65]; /* free text, e.g. "client_gone", may be "" */
} dais_msg_cancel;

int dais_cancel_encode(const dais_msg_cancel *c, dais_msg *m);
int dais_cancel_decode(const dais_msg *m, dais_msg_cancel *c, dais_err *err);

typedef struct dais_msg_drain {
    uint32_t deadline_ms; /* how long in-flight work may still take; 0 = no bound */
    char reason[65];
} dais_msg_drain;

int dais_drain_encode(const dais_msg_drain *d, dais_msg *m);
int dais_drain_decode(const dais_msg *m, dais_msg_drain *d, dais_err *err);

/* Stable error codes carried by ERROR and by a final response's error_code. Append only. */
#define DAIS_PERR_MAP(X)                                                                           \
    X(BUSY, "busy")               /* slots and queue full: retry elsewhere */                      \
    X(BAD_REQUEST, "bad_request") /* a field out of range, prompt does not tokenize */             \
    X(UNKNOWN_MODEL, "unknown_model")                                                              \
    X(UNSUPPORTED, "unsupported") /* a message type this node does not handle */                   \
    X(CTX_FULL, "ctx_full")       /* prompt longer than the context */                             \
    X(TIMEOUT, "timeout")         /* deadline passed before work started */                        \
    X(DRAINING, "draining")       /* node is shutting down / drained */                            \
    X(DUPLICATE, "duplicate")     /* request_id already in flight */                               \
    X(INTERNAL, "internal")                                                                        \
    X(PROTO, "proto") /* a malformed message */

enum dais_perr {
    DAIS_PERR_NONE = 0,
#define DAIS_PERR_ENUM(n, s) DAIS_PERR_##n,
    DAIS_PERR_MAP(DAIS_PERR_ENUM)
#undef DAIS_PERR_ENUM
        DAIS_PERR__COUNT
};
const char *dais_perr_name(enum dais_perr e);
enum dais_perr dais_perr_from_name(const char *s); /* NONE if unknown */

typedef struct dais_msg_error {
    char code[33]; /* dais_perr_name(...) or a newer code */
    char message[DAIS_TEXT_MAX + 1];
    char request_id[DAIS_REQUEST_ID_MAX + 1]; /* "" when not about a request */
    char in_reply_to[37];                     /* message_id it answers, "" if none */
} dais_msg_error;

int dais_error_encode(const dais_msg_error *e, dais_msg *m);
int dais_error_decode(const dais_msg *m, dais_msg_error *e, dais_err *err);

/* ---- MODEL_SYNC_REQUEST (worker → master) / MODEL_SYNC_CHUNK (master → worker), TCP 8890 -- */

/* Model synchronisation (docs/protocol.md, "Model synchronisation"): a worker without the
 * model file asks the master's sync port for it by name or SHA-256 and gets the file's bytes
 * from `offset` on in MODEL_SYNC_CHUNK frames. */

/* Most bytes one MODEL_SYNC_CHUNK carries by default (a sender may be configured lower or
 * higher; a receiver bounds it with its frame limits). */
#define DAIS_SYNC_CHUNK_DEFAULT (4u << 20)
/* The largest file size and offset on the wire (a JSON integer the peer can hold exactly). */
#define DAIS_SYNC_SIZE_MAX ((uint64_t)1 << 53)

/* ERROR codes a sync request may get besides the DAIS_PERR ones (busy, bad_request,
 * unknown_model, unsupported, internal, proto): the authentication verdicts. */
#define DAIS_SYNC_ERR_BAD_TOKEN  "bad_token"
#define DAIS_SYNC_ERR_CLOCK_SKEW "clock_skew"
#define DAIS_SYNC_ERR_REPLAY     "replay"
#define DAIS_SYNC_ERR_OVERLOADED "overloaded"

typedef struct dais_msg_sync_req {
    char node_id[DAIS_NODE_ID_MAX + 1]; /* must equal the envelope's source_node */
    uint32_t protocol_version;          /* DAIS_PROTO_VERSION */
    char model[DAIS_NAME_MAX + 1];      /* a served name, or 64 lowercase hex (the SHA-256) */
    uint64_t offset;                    /* first byte wanted, 0..DAIS_SYNC_SIZE_MAX */
    /* Optional `layers` [first, last]: the shard file of those layers instead of the whole
     * file (engine/shard.h); 0 <= first < last <= 1024. 0, 0 = the whole file. */
    int32_t layer_first, layer_last;
    dais_auth auth; /* proof over dais_sync_auth_subject_layers(...) */
} dais_msg_sync_req;

int dais_sync_req_encode(const dais_msg_sync_req *r, dais_msg *m);
int dais_sync_req_decode(const dais_msg *m, dais_msg_sync_req *r, dais_err *err);

/* The string a MODEL_SYNC_REQUEST's auth proves, used as the node id of proto/auth.h's
 * discovery proof (dais_auth_make_discovery / dais_auth_verify_discovery, so the replay
 * window and verdicts are the same):
 *     "model-sync\n" node_id "\n" model "\n" offset(decimal)
 * A NODE_DISCOVERY node id never holds a newline, so a sync proof never passes as a
 * registration (nor for another model or offset). Writes out[cap]; 0, or DAIS_EINVAL when it
 * does not fit or a part holds a newline. */
int dais_sync_auth_subject(const char *node_id, const char *model, uint64_t offset, char *out,
                           size_t cap);
/* The same for a request that may carry `layers`: with layer_last > 0 the subject ends with
 * "\nlayers " first ":" last, so a proof for one shard never passes for another or for the
 * whole file; with layer_last == 0 it is dais_sync_auth_subject's. */
int dais_sync_auth_subject_layers(const char *node_id, const char *model, uint64_t offset,
                                  int32_t layer_first, int32_t layer_last, char *out, size_t cap);

typedef struct dais_msg_sync_chunk {
    char model[DAIS_NAME_MAX + 1]; /* the served name (also when asked by hash) */
    char sha256[65];               /* lowercase hex SHA-256 of the whole file */
    uint64_t size;                 /* the whole file, bytes, <= DAIS_SYNC_SIZE_MAX */
    uint64_t offset;               /* of this chunk's first byte; offset + len <= size */
    bool final;                    /* exactly when offset + len == size */
    /* The bytes (binary payload). Decode: borrowed from the message (valid while it lives).
     * Encode: copied into the message; data NULL with len > 0 leaves the message without a
     * payload: the caller sends the len bytes itself right after the envelope (the frame's
     * bin_len is len), as the model store does to send file bytes without copying them. */
    const uint8_t *data;
    uint32_t len;
} dais_msg_sync_chunk;

int dais_sync_chunk_encode(const dais_msg_sync_chunk *c, dais_msg *m);
int dais_sync_chunk_decode(const dais_msg *m, dais_msg_sync_chunk *c, dais_err *err);

#endif
