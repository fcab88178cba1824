/* Cluster-token MACs, the heartbeat session key and the discovery replay cache (auth.h). */
#include "proto/auth.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const verdict_names[DAIS_AUTH__COUNT] = {
    [DAIS_AUTH_OK] = "ok",
    [DAIS_AUTH_MALFORMED] = "malformed",
    [DAIS_AUTH_BAD_MAC] = "bad_token",
    [DAIS_AUTH_SKEW] = "clock_skew",
    [DAIS_AUTH_REPLAY] = "replay",
    [DAIS_AUTH_OVERLOADED] = "overloaded",
};

const char *dais_auth_verdict_name(enum dais_auth_verdict v)
{
    return (unsigned)v < DAIS_AUTH__COUNT ? verdict_names[v] : "?";
}

int64_t dais_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool dais_hex_valid(const char *s, size_t n)
{
    if (s == NULL || strlen(s) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

void dais_hex_encode(const uint8_t *bytes, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[bytes[i] >> 4];
        out[2 * i + 1] = hx[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

int dais_nonce_new(char out[DAIS_NONCE_HEX_LEN + 1])
{
    uint8_t b[DAIS_NONCE_HEX_LEN / 2];
    if (RAND_bytes(b, sizeof(b)) != 1) return DAIS_EINTERNAL;
    dais_hex_encode(b, sizeof(b), out);
    return 0;
}

/* HMAC-SHA256(token, p0 "\n" p1 "\n" p2 "\n" p3) into mac[32]. The parts are bounded
 * strings (a label, a node id <= 128 bytes, nonces, a number), so the joined message fits
 * the buffer; if a caller ever passed more, the MAC becomes random bytes that never verify. */
static void mac4(const char *token, size_t token_len, const char *p0, const char *p1,
                 const char *p2, const char *p3, uint8_t mac[32])
{
    char msg[1024];
    int n = snprintf(msg, sizeof(msg), "%s\n%s\n%s\n%s", p0, p1, p2, p3);
    unsigned int outl = 0;
    if (n < 0 || (size_t)n >= sizeof(msg) || token_len > INT32_MAX ||
        HMAC(EVP_sha256(), token, (int)token_len, (const unsigned char *)msg, (size_t)n, mac,
             &outl) == NULL ||
        outl != 32) {
        if (RAND_bytes(mac, 32) != 1) memset(mac, 0xa5, 32);
    }
    OPENSSL_cleanse(msg, sizeof(msg));
}

void dais_auth_discovery_mac(const char *token, size_t token_len, const char *node_id,
                             int64_t ts_ms, const char *nonce, char out[DAIS_MAC_HEX_LEN + 1])
{
    char ts[24];
    snprintf(ts, sizeof(ts), "%" PRId64, ts_ms);
    uint8_t mac[32];
    mac4(token, token_len, "dais-v1-discovery", node_id, ts, nonce, mac);
    dais_hex_encode(mac, 32, out);
}

int dais_auth_make_discovery(const char *token, size_t token_len, const char *node_id,
                             int64_t now_ms, dais_auth *out)
{
    memset(out, 0, sizeof(*out));
    out->timestamp_ms = now_ms;
    int rc = dais_nonce_new(out->nonce);
    if (rc != 0) return rc;
    dais_auth_discovery_mac(token, token_len, node_id, now_ms, out->nonce, out->hmac);
    return 0;
}

void dais_auth_accept_mac(const char *token, size_t token_len, const char *node_id,
                          const char *worker_nonce, const char *master_nonce,
                          char out[DAIS_MAC_HEX_LEN + 1])
{
    uint8_t mac[32];
    mac4(token, token_len, "dais-v1-accept", node_id, worker_nonce, master_nonce, mac);
    dais_hex_encode(mac, 32, out);
}

static bool hex_equal(const char *a, const char *b)
{
    if (!dais_hex_valid(a, DAIS_MAC_HEX_LEN) || !dais_hex_valid(b, DAIS_MAC_HEX_LEN)) return false;
    return CRYPTO_memcmp(a, b, DAIS_MAC_HEX_LEN) == 0;
}

bool dais_auth_accept_verify(const char *token, size_t token_len, const char *node_id,
                             const char *worker_nonce, const char *master_nonce,
                             const char *mac_hex)
{
    char want[DAIS_MAC_HEX_LEN + 1];
    dais_auth_accept_mac(token, token_len, node_id, worker_nonce, master_nonce, want);
    return hex_equal(want, mac_hex);
}

void dais_auth_session_key(const char *token, size_t token_len, const char *node_id,
                           const char *master_nonce, const char *worker_nonce,
                           uint8_t key[DAIS_SESSION_KEY_LEN])
{
    mac4(token, token_len, "dais-v1-heartbeat", node_id, master_nonce, worker_nonce, key);
}

/* ---- replay cache ----------------------------------------------------------------------- *
 * A ring of (nonce, expiry) in insertion order. Entries are appended with expiry = now +
 * window; the oldest entries expire first, so expiry is a pop from the head. Lookups scan the
 * live entries: registrations are rare (a handful per worker restart), and the cache is
 * bounded, so a linear scan of at most `cap` 32-byte nonces is cheap and has no worst case. */

typedef struct replay_entry {
    char nonce[DAIS_NONCE_HEX_LEN + 1];
    int64_t expires_ms;
} replay_entry;

struct dais_replay_cache {
    replay_entry *ring;
    size_t cap, head, count;
    int64_t window_ms;
};

dais_replay_cache *dais_replay_cache_new(size_t cap, int64_t window_ms)
{
    if (cap == 0 || cap > (1u << 24) || window_ms < 0) return NULL;
    dais_replay_cache *c = calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    c->ring = calloc(cap, sizeof(*c->ring));
    if (c->ring == NULL) {
        free(c);
        return NULL;
    }
    c->cap = cap;
    c->window_ms = window_ms;
    return c;
}

void dais_replay_cache_free(dais_replay_cache *c)
{
    if (c == NULL) return;
    free(c->ring);
    free(c);
}

size_t dais_replay_cache_size(const dais_replay_cache *c)
{
    return c->count;
}

static void cache_expire(dais_replay_cache *c, int64_t now_ms)
{
    while (c->count > 0 && c->ring[c->head].expires_ms < now_ms) {
        c->head = (c->head + 1) % c->cap;
        c->count--;
    }
}

enum dais_auth_verdict dais_auth_verify_discovery(const char *token, size_t token_len,
                                                  const char *node_id, const dais_auth *a,
                                                  int64_t now_ms, int64_t window_ms,
                                                  dais_replay_cache *cache)
{
    if (token == NULL || node_id == NULL || a == NULL ||
        !dais_hex_valid(a->nonce, DAIS_NONCE_HEX_LEN) || !dais_hex_valid(a->hmac, DAIS_MAC_HEX_LEN))
        return DAIS_AUTH_MALFORMED;
    char want[DAIS_MAC_HEX_LEN + 1];
    dais_auth_discovery_mac(token, token_len, node_id, a->timestamp_ms, a->nonce, want);
    if (!hex_equal(want, a->hmac)) return DAIS_AUTH_BAD_MAC;
    /* |now - ts| <= window without overflow for any int64 pair. */
    bool skew = a->timestamp_ms > now_ms
                    ? (uint64_t)a->timestamp_ms - (uint64_t)now_ms > (uint64_t)window_ms
                    : (uint64_t)now_ms - (uint64_t)a->timestamp_ms > (uint64_t)window_ms;
    if (window_ms < 0 || skew) return DAIS_AUTH_SKEW;
    if (cache == NULL) return DAIS_AUTH_OK;
    cache_expire(cache, now_ms);
    for (size_t i = 0; i < cache->count; i++)
        if (memcmp(cache->ring[(cache->head + i) % cache->cap].nonce, a->nonce,
                   DAIS_NONCE_HEX_LEN) == 0)
            return DAIS_AUTH_REPLAY;
    if (cache->count == cache->cap) return DAIS_AUTH_OVERLOADED;
    replay_entry *e = &cache->ring[(cache->head + cache->count) % cache->cap];
    memcpy(e->nonce, a->nonce, sizeof(e->nonce));
    /* A nonce must be remembered for as long as its timestamp stays acceptable: until
     * ts + window (and at least now + window for a proof from the future). */
    int64_t win = cache->window_ms > window_ms ? cache->window_ms : window_ms;
    int64_t until = (a->timestamp_ms > now_ms ? a->timestamp_ms : now_ms);
    e->expires_ms = until > INT64_MAX - win ? INT64_MAX : until + win;
    cache->count++;
    return DAIS_AUTH_OK;
}
