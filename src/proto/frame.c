/* Frame header, incremental decoder and encoder over byte buffers and evbuffers (frame.h). */
#include "proto/frame.h"

#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

void dais_frame_limits_default(dais_frame_limits *l)
{
    l->max_json = DAIS_FRAME_DEFAULT_MAX_JSON;
    l->max_bin = DAIS_FRAME_DEFAULT_MAX_BIN;
}

static uint32_t rd32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static const dais_frame_limits *limits_or_default(const dais_frame_limits *lim,
                                                  dais_frame_limits *tmp)
{
    if (lim != NULL) return lim;
    dais_frame_limits_default(tmp);
    return tmp;
}

int dais_frame_header_parse(const uint8_t hdr[DAIS_FRAME_HEADER_LEN], const dais_frame_limits *lim,
                            dais_frame_header *out, dais_err *err)
{
    dais_frame_limits tmp;
    lim = limits_or_default(lim, &tmp);
    if (memcmp(hdr, DAIS_FRAME_MAGIC, 4) != 0)
        return dais_err_set(err, DAIS_EPROTO, "bad magic %02x%02x%02x%02x", hdr[0], hdr[1], hdr[2],
                            hdr[3]);
    if (hdr[4] != DAIS_PROTO_VERSION)
        return dais_err_set(err, DAIS_EPROTO, "unsupported frame version %u", hdr[4]);
    if (hdr[5] != 0) return dais_err_set(err, DAIS_EPROTO, "unknown flags 0x%02x", hdr[5]);
    if (hdr[6] != 0 || hdr[7] != 0)
        return dais_err_set(err, DAIS_EPROTO, "reserved bytes not zero");
    uint32_t jl = rd32(hdr + 8), bl = rd32(hdr + 12);
    if (jl == 0) return dais_err_set(err, DAIS_EPROTO, "empty envelope (json_len 0)");
    if (jl > lim->max_json)
        return dais_err_set(err, DAIS_ETOOBIG, "json_len %u over the limit %u", jl, lim->max_json);
    if (bl > lim->max_bin)
        return dais_err_set(err, DAIS_ETOOBIG, "bin_len %u over the limit %u", bl, lim->max_bin);
    out->version = hdr[4];
    out->flags = hdr[5];
    out->json_len = jl;
    out->bin_len = bl;
    return 0;
}

void dais_frame_header_write(uint8_t hdr[DAIS_FRAME_HEADER_LEN], uint32_t json_len,
                             uint32_t bin_len)
{
    memcpy(hdr, DAIS_FRAME_MAGIC, 4);
    hdr[4] = DAIS_PROTO_VERSION;
    hdr[5] = 0;
    hdr[6] = hdr[7] = 0;
    wr32(hdr + 8, json_len);
    wr32(hdr + 12, bin_len);
}

/* A partial header is checked as far as it goes, so garbage is refused at its first bytes. */
static int check_prefix(const uint8_t *buf, size_t len, dais_err *err)
{
    size_t n = len < 4 ? len : 4;
    if (memcmp(buf, DAIS_FRAME_MAGIC, n) != 0) return dais_err_set(err, DAIS_EPROTO, "bad magic");
    if (len > 4 && buf[4] != DAIS_PROTO_VERSION)
        return dais_err_set(err, DAIS_EPROTO, "unsupported frame version %u", buf[4]);
    return 0;
}

int dais_frame_split(const uint8_t *buf, size_t len, const dais_frame_limits *lim,
                     const uint8_t **json, uint32_t *json_len, const uint8_t **bin,
                     uint32_t *bin_len, size_t *frame_len, dais_err *err)
{
    if (len < DAIS_FRAME_HEADER_LEN) {
        int rc = check_prefix(buf, len, err);
        return rc != 0 ? rc : DAIS_FRAME_NEED_MORE;
    }
    dais_frame_header h;
    int rc = dais_frame_header_parse(buf, lim, &h, err);
    if (rc != 0) return rc;
    /* Both lengths are bounded by u32 and the header by 16: the sum fits in 64 bits. */
    uint64_t total = (uint64_t)DAIS_FRAME_HEADER_LEN + h.json_len + h.bin_len;
    if (total > SIZE_MAX)
        return dais_err_set(err, DAIS_ETOOBIG, "frame of %llu bytes", (unsigned long long)total);
    if ((uint64_t)len < total) return DAIS_FRAME_NEED_MORE;
    *json = buf + DAIS_FRAME_HEADER_LEN;
    *json_len = h.json_len;
    *bin = h.bin_len > 0 ? buf + DAIS_FRAME_HEADER_LEN + h.json_len : NULL;
    *bin_len = h.bin_len;
    *frame_len = (size_t)total;
    return 0;
}

static int attach_bin(dais_msg *m, const uint8_t *bin, uint32_t bin_len, dais_err *err)
{
    if (bin_len == 0) return 0;
    int rc = dais_msg_set_bin(m, bin, bin_len);
    if (rc != 0) return dais_err_set(err, rc, "no memory for a %u-byte binary payload", bin_len);
    return 0;
}

int dais_frame_decode_msg(const uint8_t *buf, size_t len, const dais_frame_limits *lim,
                          dais_msg **out, size_t *frame_len, dais_err *err)
{
    *out = NULL;
    const uint8_t *json, *bin;
    uint32_t jl, bl;
    int rc = dais_frame_split(buf, len, lim, &json, &jl, &bin, &bl, frame_len, err);
    if (rc != 0) return rc;
    dais_msg *m;
    rc = dais_envelope_parse((const char *)json, jl, &m, err);
    if (rc != 0) return rc;
    rc = attach_bin(m, bin, bl, err);
    if (rc != 0) {
        dais_msg_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int dais_frame_read(struct evbuffer *in, const dais_frame_limits *lim, dais_msg **out,
                    dais_err *err)
{
    *out = NULL;
    size_t have = evbuffer_get_length(in);
    uint8_t hdr[DAIS_FRAME_HEADER_LEN];
    size_t n = have < DAIS_FRAME_HEADER_LEN ? have : DAIS_FRAME_HEADER_LEN;
    if (n > 0 && evbuffer_copyout(in, hdr, n) != (ev_ssize_t)n)
        return dais_err_set(err, DAIS_EINTERNAL, "evbuffer_copyout failed");
    if (have < DAIS_FRAME_HEADER_LEN) {
        int rc = check_prefix(hdr, n, err);
        return rc != 0 ? rc : DAIS_FRAME_NEED_MORE;
    }
    dais_frame_header h;
    int rc = dais_frame_header_parse(hdr, lim, &h, err);
    if (rc != 0) return rc;
    uint64_t total = (uint64_t)DAIS_FRAME_HEADER_LEN + h.json_len + h.bin_len;
    if ((uint64_t)have < total) return DAIS_FRAME_NEED_MORE;
    /* Make the envelope contiguous (only it: the binary payload is copied straight out). */
    uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)(DAIS_FRAME_HEADER_LEN + h.json_len));
    if (p == NULL) return dais_err_set(err, DAIS_ENOMEM, "no memory to assemble a frame");
    dais_msg *m;
    rc = dais_envelope_parse((const char *)p + DAIS_FRAME_HEADER_LEN, h.json_len, &m, err);
    if (rc != 0) return rc;
    evbuffer_drain(in, DAIS_FRAME_HEADER_LEN + (size_t)h.json_len);
    if (h.bin_len > 0) {
        uint8_t *b = malloc(h.bin_len);
        if (b == NULL) {
            dais_msg_free(m);
            return dais_err_set(err, DAIS_ENOMEM, "no memory for a %u-byte binary payload",
                                h.bin_len);
        }
        evbuffer_remove(in, b, h.bin_len);
        dais_msg_take_bin(m, b, h.bin_len);
    }
    *out = m;
    return 0;
}

int dais_frame_encode(const dais_msg *m, const dais_frame_limits *lim, uint8_t **out,
                      size_t *out_len)
{
    dais_frame_limits tmp;
    lim = limits_or_default(lim, &tmp);
    *out = NULL;
    *out_len = 0;
    char *json;
    size_t jl;
    int rc = dais_envelope_encode(m, &json, &jl);
    if (rc != 0) return rc;
    if (jl > lim->max_json || m->bin_len > lim->max_bin) {
        free(json);
        return DAIS_ETOOBIG;
    }
    size_t total = DAIS_FRAME_HEADER_LEN + jl + m->bin_len;
    uint8_t *f = malloc(total);
    if (f == NULL) {
        free(json);
        return DAIS_ENOMEM;
    }
    dais_frame_header_write(f, (uint32_t)jl, m->bin_len);
    memcpy(f + DAIS_FRAME_HEADER_LEN, json, jl);
    if (m->bin_len > 0) memcpy(f + DAIS_FRAME_HEADER_LEN + jl, m->bin, m->bin_len);
    free(json);
    *out = f;
    *out_len = total;
    return 0;
}

int dais_frame_write(struct evbuffer *out, const dais_msg *m, const dais_frame_limits *lim)
{
    dais_frame_limits tmp;
    lim = limits_or_default(lim, &tmp);
    char *json;
    size_t jl;
    int rc = dais_envelope_encode(m, &json, &jl);
    if (rc != 0) return rc;
    if (jl > lim->max_json || m->bin_len > lim->max_bin) {
        free(json);
        return DAIS_ETOOBIG;
    }
    uint8_t hdr[DAIS_FRAME_HEADER_LEN];
    dais_frame_header_write(hdr, (uint32_t)jl, m->bin_len);
    rc = 0;
    if (evbuffer_add(out, hdr, sizeof(hdr)) != 0 || evbuffer_add(out, json, jl) != 0 ||
        (m->bin_len > 0 && evbuffer_add(out, m->bin, m->bin_len) != 0))
        rc = DAIS_ENOMEM;
    free(json);
    return rc;
}
