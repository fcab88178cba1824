/*
 * Cluster authentication. Every node holds the same cluster token (a secret string). Nothing
 * derived from it is a password on the wire: a worker proves it holds the token with
 *
 *   discovery MAC = HMAC-SHA256(token, "dais-v1-discovery\n" node_id "\n" ts_ms "\n" nonce)
 *
 * (ts_ms: decimal Unix milliseconds, nonce: 32 lowercase hex digits of 16 random bytes); the
 * master proves it back in NODE_ACCEPT with
 *
 *   accept MAC    = HMAC-SHA256(token, "dais-v1-accept\n" node_id "\n" worker_nonce "\n"
 * master_nonce)
 *
 * and both sides derive the heartbeat session key, which never travels:
 *
 *   session key   = HMAC-SHA256(token, "dais-v1-heartbeat\n" node_id "\n" master_nonce "\n"
 * worker_nonce)
 *
 * The master checks a discovery against a replay window: |now - ts| <= window and the nonce not
 * seen within the window (dais_replay_cache). MACs are compared in constant time.
 * The functions are pure except dais_replay_cache, which belongs to one thread (the master's
 * loop).
 */
#ifndef DAIS_PROTO_AUTH_H
#define DAIS_PROTO_AUTH_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DAIS_NONCE_HEX_LEN          32
#define DAIS_MAC_HEX_LEN            64
#define DAIS_SESSION_KEY_LEN        32
#define DAIS_AUTH_DEFAULT_WINDOW_MS 60000

/* What a NODE_DISCOVERY carries in payload.data.auth. */
typedef struct dais_auth {
    int64_t timestamp_ms;               /* sender's wall clock, Unix ms */
    char nonce[DAIS_NONCE_HEX_LEN + 1]; /* lowercase hex */
    char hmac[DAIS_MAC_HEX_LEN + 1];    /* lowercase hex */
} dais_auth;

/* Outcome of a verification, counted by the caller; names are the NODE_REJECT reasons. */
enum dais_auth_verdict {
    DAIS_AUTH_OK = 0,
    DAIS_AUTH_MALFORMED,  /* "malformed": nonce or MAC not hex of the right length */
    DAIS_AUTH_BAD_MAC,    /* "bad_token": MAC does not match (wrong token or tampered) */
    DAIS_AUTH_SKEW,       /* "clock_skew": timestamp outside the window */
    DAIS_AUTH_REPLAY,     /* "replay": nonce already used within the window */
    DAIS_AUTH_OVERLOADED, /* "overloaded": replay cache full of live entries (retry later) */
    DAIS_AUTH__COUNT
};
const char *dais_auth_verdict_name(enum dais_auth_verdict v);

/* Fills out[33] with a fresh random nonce. 0 or DAIS_EINTERNAL. */
int dais_nonce_new(char out[DAIS_NONCE_HEX_LEN + 1]);

/* Builds a worker's proof for node_id at now_ms (fresh nonce). 0 or DAIS_EINTERNAL. */
int dais_auth_make_discovery(const char *token, size_t token_len, const char *node_id,
                             int64_t now_ms, dais_auth *out);

/* Computes the discovery MAC (lowercase hex into out[65]). */
void dais_auth_discovery_mac(const char *token, size_t token_len, const char *node_id,
                             int64_t ts_ms, const char *nonce, char out[DAIS_MAC_HEX_LEN + 1]);

/* The master's proof in NODE_ACCEPT, and the worker's check of it (constant time). */
void dais_auth_accept_mac(const char *token, size_t token_len, const char *node_id,
                          const char *worker_nonce, const char *master_nonce,
                          char out[DAIS_MAC_HEX_LEN + 1]);
bool dais_auth_accept_verify(const char *token, size_t token_len, const char *node_id,
                             const char *worker_nonce, const char *master_nonce,
                             const char *mac_hex);

/* The heartbeat session key both sides derive after NODE_ACCEPT. */
void dais_auth_session_key(const char *token, size_t token_len, const char *node_id,
                           const char *master_nonce, const char *worker_nonce,
                           uint8_t key[DAIS_SESSION_KEY_LEN]);

/* ---- replay cache (master side) --------------------------------------------------------- */

typedef struct dais_replay_cache dais_replay_cache;

/* A cache remembering up to `cap` nonces for window_ms. NULL on no memory. */
dais_replay_cache *dais_replay_cache_new(size_t cap, int64_t window_ms);
void dais_replay_cache_free(dais_replay_cache *c);         /* accepts NULL */
size_t dais_replay_cache_size(const dais_replay_cache *c); /* live entries */

/* Verifies a discovery proof: format, MAC (constant time), |now_ms - ts| <= window, then the
 * nonce against the cache (only a proof with a good MAC is remembered, so the cache cannot be
 * filled by someone without the token). `cache` may be NULL (no replay check). */
enum dais_auth_verdict dais_auth_verify_discovery(const char *token, size_t token_len,
                                                  const char *node_id, const dais_auth *a,
                                                  int64_t now_ms, int64_t window_ms,
                                                  dais_replay_cache *cache);

/* ---- helpers --------------------------------------------------------------------------- */

/* True when s is exactly n lowercase hex digits. */
bool dais_hex_valid(const char *s, size_t n);
/* Lowercase hex of n bytes into out (2n + 1 bytes). */
void dais_hex_encode(const uint8_t *bytes, size_t n, char *out);
/* Wall clock in Unix milliseconds. */
int64_t dais_wall_ms(void);

#endif
