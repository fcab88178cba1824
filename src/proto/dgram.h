/*
 * Heartbeat datagrams (UDP 8889): one frame (proto/frame.h header + JSON envelope, no binary
 * payload) followed by a 48-byte trailer
 *
 *   session_id u64 | seq u64 | HMAC-SHA256(session key, header ‖ json ‖ session_id ‖ seq)
 *
 * (integers in network byte order). session_id is the number the master assigned in
 * NODE_ACCEPT; the key is dais_auth_session_key. Each sender numbers its datagrams 1, 2, 3 …
 * per session; the receiver keeps a 64-wide sliding window (as IPsec does) and drops a
 * sequence number it has seen or that is older than the window.
 *
 * Opening a datagram is two steps so that the receiver looks up the key before it parses
 * any JSON: dais_dgram_peek (size and header checks, session id) then dais_dgram_open (MAC,
 * replay window, envelope). Each rejection has a reason the caller counts.
 * No global state; a dais_seq_window belongs to its session's thread.
 */
#ifndef DAIS_PROTO_DGRAM_H
#define DAIS_PROTO_DGRAM_H

#include "common/error.h"
#include "proto/auth.h"
#include "proto/envelope.h"

#include <stddef.h>
#include <stdint.h>

#define DAIS_DGRAM_TRAILER_LEN 48
#define DAIS_DGRAM_MAX         8192 /* largest datagram sent or accepted, bytes */

enum dais_dgram_verdict {
    DAIS_DGRAM_OK = 0,
    DAIS_DGRAM_OVERSIZE,        /* "oversize": longer than DAIS_DGRAM_MAX */
    DAIS_DGRAM_MALFORMED,       /* "malformed": short, bad header, lengths disagree */
    DAIS_DGRAM_UNKNOWN_SESSION, /* "unknown_session": the caller found no key (caller sets) */
    DAIS_DGRAM_BAD_MAC,         /* "bad_mac": forged or corrupted */
    DAIS_DGRAM_REPLAY,          /* "replay": seq seen or older than the window */
    DAIS_DGRAM_BAD_ENVELOPE,    /* "bad_envelope": authentic but the JSON is not valid */
    DAIS_DGRAM__COUNT
};
const char *dais_dgram_verdict_name(enum dais_dgram_verdict v);

/* Anti-replay window: highest seq accepted and a bitmap of the 64 below it. Zero-init. */
typedef struct dais_seq_window {
    uint64_t top;
    uint64_t bitmap;
} dais_seq_window;

/* True when seq (>= 1) would be accepted (not seen, not older than top - 63). Pure. */
bool dais_seq_window_check(const dais_seq_window *w, uint64_t seq);
/* Records seq as seen (call only after the MAC verified). */
void dais_seq_window_update(dais_seq_window *w, uint64_t seq);

/* Builds a datagram for m (its binary payload must be empty) into out[cap]. *out_len gets the
 * length. DAIS_ETOOBIG when it would exceed min(cap, DAIS_DGRAM_MAX), DAIS_EINVAL with a
 * binary payload. */
int dais_dgram_seal(const dais_msg *m, uint64_t session_id, uint64_t seq,
                    const uint8_t key[DAIS_SESSION_KEY_LEN], uint8_t *out, size_t cap,
                    size_t *out_len);

/* Structural check without the key: size, header (magic, version, bin_len == 0, lengths add
 * up). On OK, *session_id and *seq are the (not yet authenticated) trailer values. */
enum dais_dgram_verdict dais_dgram_peek(const uint8_t *buf, size_t len, uint64_t *session_id,
                                        uint64_t *seq);

/* Full check with the session's key and window: peek, MAC (constant time), window, envelope.
 * On OK the window is updated and *out is an owned message; *seq_out (may be NULL) gets seq.
 * On anything else *out is NULL and err (may be NULL) says more. */
enum dais_dgram_verdict dais_dgram_open(const uint8_t *buf, size_t len,
                                        const uint8_t key[DAIS_SESSION_KEY_LEN],
                                        dais_seq_window *win, dais_msg **out, uint64_t *seq_out,
                                        dais_err *err);

#endif
