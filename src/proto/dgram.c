/* Sealed heartbeat datagrams and the anti-replay window (dgram.h). */
#include "proto/dgram.h"
#include "proto/frame.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

static const char *const verdict_names[DAIS_DGRAM__COUNT] = {
    [DAIS_DGRAM_OK] = "ok",
    [DAIS_DGRAM_OVERSIZE] = "oversize",
    [DAIS_DGRAM_MALFORMED] = "malformed",
    [DAIS_DGRAM_UNKNOWN_SESSION] = "unknown_session",
    [DAIS_DGRAM_BAD_MAC] = "bad_mac",
    [DAIS_DGRAM_REPLAY] = "replay",
    [DAIS_DGRAM_BAD_ENVELOPE] = "bad_envelope",
};

const char *dais_dgram_verdict_name(enum dais_dgram_verdict v)
{
    return (unsigned)v < DAIS_DGRAM__COUNT ? verdict_names[v] : "?";
}

/* ---- window ----------------------------------------------------------------------------- */

bool dais_seq_window_check(const dais_seq_window *w, uint64_t seq)
{
    if (seq == 0) return false;
    if (seq > w->top) return true;
    uint64_t back = w->top - seq;
    if (back >= 64) return false;
    return (w->bitmap & (1ull << back)) == 0;
}

void dais_seq_window_update(dais_seq_window *w, uint64_t seq)
{
    if (seq == 0) return;
    if (seq > w->top) {
        uint64_t shift = seq - w->top;
        w->bitmap = shift >= 64 ? 0 : w->bitmap << shift;
        w->bitmap |= 1;
        w->top = seq;
    } else if (w->top - seq < 64) {
        w->bitmap |= 1ull << (w->top - seq);
    }
}

/* ---- seal / open ------------------------------------------------------------------------ */

static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static bool mac(const uint8_t key[DAIS_SESSION_KEY_LEN], const uint8_t *buf, size_t len,
                uint8_t out[32])
{
    unsigned int outl = 0;
    return HMAC(EVP_sha256(), key, DAIS_SESSION_KEY_LEN, buf, len, out, &outl) != NULL &&
           outl == 32;
}

int dais_dgram_seal(const dais_msg *m, uint64_t session_id, uint64_t seq,
                    const uint8_t key[DAIS_SESSION_KEY_LEN], uint8_t *out, size_t cap,
                    size_t *out_len)
{
    *out_len = 0;
    if (m->bin_len != 0) return DAIS_EINVAL;
    char *json;
    size_t jl;
    int rc = dais_envelope_encode(m, &json, &jl);
    if (rc != 0) return rc;
    size_t limit = cap < DAIS_DGRAM_MAX ? cap : DAIS_DGRAM_MAX;
    if (jl > limit || DAIS_FRAME_HEADER_LEN + DAIS_DGRAM_TRAILER_LEN > limit - jl) {
        free(json);
        return DAIS_ETOOBIG;
    }
    dais_frame_header_write(out, (uint32_t)jl, 0);
    memcpy(out + DAIS_FRAME_HEADER_LEN, json, jl);
    free(json);
    uint8_t *t = out + DAIS_FRAME_HEADER_LEN + jl;
    wr64(t, session_id);
    wr64(t + 8, seq);
    if (!mac(key, out, DAIS_FRAME_HEADER_LEN + jl + 16, t + 16)) return DAIS_EINTERNAL;
    *out_len = DAIS_FRAME_HEADER_LEN + jl + DAIS_DGRAM_TRAILER_LEN;
    return 0;
}

enum dais_dgram_verdict dais_dgram_peek(const uint8_t *buf, size_t len, uint64_t *session_id,
                                        uint64_t *seq)
{
    if (len > DAIS_DGRAM_MAX) return DAIS_DGRAM_OVERSIZE;
    if (len < DAIS_FRAME_HEADER_LEN + 1 + DAIS_DGRAM_TRAILER_LEN) return DAIS_DGRAM_MALFORMED;
    dais_frame_header h;
    dais_frame_limits lim = {.max_json = DAIS_DGRAM_MAX, .max_bin = 0};
    if (dais_frame_header_parse(buf, &lim, &h, NULL) != 0) return DAIS_DGRAM_MALFORMED;
    /* json_len <= DAIS_DGRAM_MAX, so the sum cannot overflow. */
    if ((size_t)DAIS_FRAME_HEADER_LEN + h.json_len + DAIS_DGRAM_TRAILER_LEN != len)
        return DAIS_DGRAM_MALFORMED;
    const uint8_t *t = buf + DAIS_FRAME_HEADER_LEN + h.json_len;
    *session_id = rd64(t);
    *seq = rd64(t + 8);
    if (*seq == 0) return DAIS_DGRAM_MALFORMED;
    return DAIS_DGRAM_OK;
}

enum dais_dgram_verdict dais_dgram_open(const uint8_t *buf, size_t len,
                                        const uint8_t key[DAIS_SESSION_KEY_LEN],
                                        dais_seq_window *win, dais_msg **out, uint64_t *seq_out,
                                        dais_err *err)
{
    *out = NULL;
    uint64_t sid, seq;
    enum dais_dgram_verdict v = dais_dgram_peek(buf, len, &sid, &seq);
    if (v != DAIS_DGRAM_OK) {
        dais_err_set(err, DAIS_EPROTO, "datagram %s (%zu bytes)", dais_dgram_verdict_name(v), len);
        return v;
    }
    size_t body = len - DAIS_DGRAM_TRAILER_LEN;
    uint8_t want[32];
    if (!mac(key, buf, body + 16, want) || CRYPTO_memcmp(want, buf + body + 16, 32) != 0) {
        dais_err_set(err, DAIS_EAUTH, "datagram MAC does not verify");
        return DAIS_DGRAM_BAD_MAC;
    }
    if (!dais_seq_window_check(win, seq)) {
        dais_err_set(err, DAIS_EAUTH, "datagram seq %llu replayed (newest %llu)",
                     (unsigned long long)seq, (unsigned long long)win->top);
        return DAIS_DGRAM_REPLAY;
    }
    dais_msg *m;
    if (dais_envelope_parse((const char *)buf + DAIS_FRAME_HEADER_LEN, body - DAIS_FRAME_HEADER_LEN,
                            &m, err) != 0)
        return DAIS_DGRAM_BAD_ENVELOPE;
    /* Authentic and parsed: only now does the sequence number count as used. */
    dais_seq_window_update(win, seq);
    if (seq_out != NULL) *seq_out = seq;
    *out = m;
    return DAIS_DGRAM_OK;
}
