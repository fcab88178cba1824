/*
 * Frames: how one message travels over a TCP stream (cluster port 8888, model sync 8890).
 *
 *   offset size  field
 *   0      4     magic "DAIS"
 *   4      1     version (DAIS_PROTO_VERSION)
 *   5      1     flags (must be 0 in version 1)
 *   6      2     reserved (must be 0)
 *   8      4     json_len  (u32, network byte order), 1 .. limits.max_json
 *   12     4     bin_len   (u32, network byte order), 0 .. limits.max_bin
 *   16     json_len bytes: the JSON envelope (proto/envelope.h)
 *   16+json_len bin_len bytes: the binary payload
 *
 * The decoder is incremental: it looks at whatever bytes have arrived and says "need more",
 * "here is a frame (this many bytes)" or "error, close the connection" with a reason. Limits
 * are checked on the header alone, before anything is buffered beyond it, so a peer cannot
 * make us hold more than max_json + max_bin + 16 bytes per connection.
 * No global state; callable from any thread on its own buffers.
 */
#ifndef DAIS_PROTO_FRAME_H
#define DAIS_PROTO_FRAME_H

#include "common/error.h"
#include "proto/envelope.h"

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define DAIS_FRAME_MAGIC            "DAIS"
#define DAIS_FRAME_HEADER_LEN       16
#define DAIS_FRAME_DEFAULT_MAX_JSON (1u << 20)  /* 1 MiB */
#define DAIS_FRAME_DEFAULT_MAX_BIN  (64u << 20) /* 64 MiB */

typedef struct dais_frame_limits {
    uint32_t max_json; /* largest accepted envelope, bytes */
    uint32_t max_bin;  /* largest accepted binary payload, bytes */
} dais_frame_limits;

/* The defaults above. */
void dais_frame_limits_default(dais_frame_limits *l);

typedef struct dais_frame_header {
    uint8_t version;
    uint8_t flags;
    uint32_t json_len;
    uint32_t bin_len;
} dais_frame_header;

/* Return values of the decoders besides 0 (a frame) and negative errors. */
#define DAIS_FRAME_NEED_MORE 1

/* Validates a 16-byte header against `lim` (NULL = defaults): magic, version, flags, reserved,
 * 1 <= json_len <= max_json, bin_len <= max_bin. 0 or DAIS_EPROTO / DAIS_ETOOBIG with err
 * naming the reason. */
int dais_frame_header_parse(const uint8_t hdr[DAIS_FRAME_HEADER_LEN], const dais_frame_limits *lim,
                            dais_frame_header *out, dais_err *err);
/* Writes a header for the given lengths. */
void dais_frame_header_write(uint8_t hdr[DAIS_FRAME_HEADER_LEN], uint32_t json_len,
                             uint32_t bin_len);

/* Looks for one frame at the start of buf[0..len). Returns:
 *   DAIS_FRAME_NEED_MORE  the bytes so far are a valid prefix; read more
 *   0                     a whole frame: *json / *bin point into buf (borrowed), *frame_len is
 *                         the number of bytes it occupies (16 + json_len + bin_len)
 *   < 0                   a malformed header (err says why); close the connection
 * The envelope itself is not parsed here (see dais_frame_decode_msg). */
int dais_frame_split(const uint8_t *buf, size_t len, const dais_frame_limits *lim,
                     const uint8_t **json, uint32_t *json_len, const uint8_t **bin,
                     uint32_t *bin_len, size_t *frame_len, dais_err *err);

/* dais_frame_split plus dais_envelope_parse: on 0, *out is an owned message (binary payload
 * copied) and *frame_len the bytes consumed. Same return values. */
int dais_frame_decode_msg(const uint8_t *buf, size_t len, const dais_frame_limits *lim,
                          dais_msg **out, size_t *frame_len, dais_err *err);

/* The same over a libevent input buffer: on 0 the frame's bytes are removed from `in` and
 * *out is an owned message. On DAIS_FRAME_NEED_MORE nothing is removed. On error the buffer is
 * left as it is (the caller closes the connection). Loop thread of the buffer's owner. */
int dais_frame_read(struct evbuffer *in, const dais_frame_limits *lim, dais_msg **out,
                    dais_err *err);

/* Serialises m (envelope + binary payload) into a malloc'd frame: *out owned by the caller,
 * *out_len its length. DAIS_ETOOBIG when the envelope or the payload exceeds `lim`
 * (NULL = defaults). */
int dais_frame_encode(const dais_msg *m, const dais_frame_limits *lim, uint8_t **out,
                      size_t *out_len);

/* Appends the frame for m to a libevent output buffer (the binary payload is copied once). */
int dais_frame_write(struct evbuffer *out, const dais_msg *m, const dais_frame_limits *lim);

#endif
