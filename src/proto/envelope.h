/*
 * The message envelope: the JSON object every cluster message carries, exactly as the
 * system description shows it
 *
 *   {"message_id": uuid4, "message_type": "...", "source_node": "...", "target_node": "...",
 *    "payload": {"data": {...}, "timestamp": 1643123456.789, "metadata": {...}},
 *    "timestamp": 1643123456.789}
 *
 * plus the optional binary payload that travels after it in the same frame (token ids,
 * activations). dais_msg is the decoded form; proto/frame.h moves it over TCP and
 * proto/dgram.h over UDP; proto/messages.h gives the typed view of payload.data for each
 * message type. docs/protocol.md is the normative description.
 *
 * Parsing is strict and bounded: every field is checked for type, length and format, unknown
 * top-level keys are ignored (so fields can be added), duplicate keys are rejected, and every
 * failure returns DAIS_EFORMAT / DAIS_EPROTO with a message naming the field. Nothing here
 * keeps global state; every function may be called from any thread on its own objects.
 */
#ifndef DAIS_PROTO_ENVELOPE_H
#define DAIS_PROTO_ENVELOPE_H

#include "common/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DAIS_PROTO_VERSION 1

/* Node ids: 1..128 bytes of [A-Za-z0-9._:-] (fits a Kubernetes pod name or host:port). */
#define DAIS_NODE_ID_MAX 128
/* Request ids: 1..64 bytes of the same characters. */
#define DAIS_REQUEST_ID_MAX 64

/* Message types, in wire order. Append only: the names are the wire format. */
#define DAIS_MSG_TYPE_MAP(X)                                                                       \
    X(NODE_DISCOVERY)                                                                              \
    X(NODE_ACCEPT)                                                                                 \
    X(NODE_REJECT)                                                                                 \
    X(HEARTBEAT)                                                                                   \
    X(HEARTBEAT_ACK)                                                                               \
    X(INFERENCE_REQUEST)                                                                           \
    X(INFERENCE_RESPONSE)                                                                          \
    X(CANCEL)                                                                                      \
    X(DRAIN)                                                                                       \
    X(ERROR)                                                                                       \
    X(MODEL_UPDATE)                                                                                \
    X(SHARD_ACTIVATION)                                                                            \
    X(MODEL_SYNC_REQUEST)                                                                          \
    X(MODEL_SYNC_CHUNK)

enum dais_msg_type {
    DAIS_MSG_NONE = 0,
#define DAIS_MSG_TYPE_ENUM(name) DAIS_MSG_##name,
    DAIS_MSG_TYPE_MAP(DAIS_MSG_TYPE_ENUM)
#undef DAIS_MSG_TYPE_ENUM
        DAIS_MSG__COUNT
};

/* "NODE_DISCOVERY" … for a known type, "?" otherwise. */
const char *dais_msg_type_name(enum dais_msg_type t);
/* The type for a wire name, or DAIS_MSG_NONE. */
enum dais_msg_type dais_msg_type_from_name(const char *s, size_t len);

typedef struct dais_msg {
    enum dais_msg_type type;
    char id[37];                       /* message_id: canonical lowercase uuid4 */
    char source[DAIS_NODE_ID_MAX + 1]; /* source_node */
    char target[DAIS_NODE_ID_MAX + 1]; /* target_node */
    double timestamp;                  /* sender's wall clock, Unix seconds */
    double payload_timestamp;          /* payload.timestamp */
    json_t *data;                      /* owned: payload.data, always a JSON object */
    json_t *metadata;                  /* owned: payload.metadata, always a JSON object */
    uint8_t *bin;                      /* owned: binary payload; NULL when bin_len == 0 */
    uint32_t bin_len;
} dais_msg;

/* A new message of `type` from `source` to `target` (both copied; must be valid node ids),
 * with a fresh uuid4, both timestamps set to now, and empty data/metadata objects.
 * Returns owned, or NULL (bad id, no memory). Any thread. */
dais_msg *dais_msg_new(enum dais_msg_type type, const char *source, const char *target);
void dais_msg_free(dais_msg *m); /* accepts NULL */

/* Copies `len` bytes into the binary payload (replacing any). DAIS_ETOOBIG above UINT32_MAX. */
int dais_msg_set_bin(dais_msg *m, const void *bytes, size_t len);
/* Takes ownership of a malloc'd buffer as the binary payload (freed with free()). */
void dais_msg_take_bin(dais_msg *m, uint8_t *bytes, uint32_t len);

/* Serialises the envelope (not the binary payload) as compact JSON. *out is owned by the
 * caller (free()); *out_len excludes the terminating NUL. */
int dais_envelope_encode(const dais_msg *m, char **out, size_t *out_len);

/* Parses and validates an envelope of `len` bytes (need not be NUL-terminated; an embedded
 * NUL is an error). On success *out is an owned message with no binary payload.
 * DAIS_EFORMAT for bad JSON (err has line and column), DAIS_EPROTO for a valid JSON
 * document that is not a valid envelope (err names the field). */
int dais_envelope_parse(const char *json, size_t len, dais_msg **out, dais_err *err);

/* ---- small validators shared with proto/messages.c and the master ---------------------- */

/* Fills out[37] with a random canonical uuid4 (OpenSSL RAND_bytes). 0 or DAIS_EINTERNAL. */
int dais_uuid4(char out[37]);
/* True when s (len bytes) is a canonical uuid4: 8-4-4-4-12 hex, version 4, variant 8/9/a/b;
 * hex digits in either case. */
bool dais_uuid4_valid(const char *s, size_t len);
/* True when s is 1..max bytes of [A-Za-z0-9._:-]. */
bool dais_ident_valid(const char *s, size_t len, size_t max);

#endif
