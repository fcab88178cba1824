/* The JSON envelope: message type names, uuid4, validation and serialisation (envelope.h).
 * Envelopes are read with proto/json.c's reader and written with its writer (the master
 * handles several per request; jansson's own reader and json_dumps were most of its CPU). */
#include "proto/envelope.h"
#include "common/clock.h"
#include "proto/json.h"
#include "proto/jsonv.h"

#include <math.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[DAIS_MSG__COUNT] = {[DAIS_MSG_NONE] = "?",
#define DAIS_MSG_TYPE_STR(name) [DAIS_MSG_##name] = #name,
                                                        DAIS_MSG_TYPE_MAP(DAIS_MSG_TYPE_STR)
#undef DAIS_MSG_TYPE_STR
};

const char *dais_msg_type_name(enum dais_msg_type t)
{
    if ((int)t <= 0 || t >= DAIS_MSG__COUNT) return "?";
    return type_names[t];
}

enum dais_msg_type dais_msg_type_from_name(const char *s, size_t len)
{
    for (int t = 1; t < DAIS_MSG__COUNT; t++)
        if (strlen(type_names[t]) == len && memcmp(type_names[t], s, len) == 0)
            return (enum dais_msg_type)t;
    return DAIS_MSG_NONE;
}

/* ---- small validators ------------------------------------------------------------------- */

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool dais_uuid4_valid(const char *s, size_t len)
{
    if (s == NULL || len != 36) return false;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return false;
        } else if (!is_hex(s[i])) {
            return false;
        }
    }
    char v = s[19];
    return s[14] == '4' && (v == '8' || v == '9' || v == 'a' || v == 'b' || v == 'A' || v == 'B');
}

/* Random bytes for uuids, drawn from OpenSSL 4 KiB at a time per thread: RAND_bytes costs a
 * lock, a DRBG step and a getpid() (its fork check) per call, which for 16 bytes is most of
 * the work. A forked child must not hand out the bytes its parent still holds (both would
 * produce the same ids), so the pool is emptied in the child by a pthread_atfork handler,
 * registered before the first refill. */
#define UUID_POOL_BYTES 4096

static _Thread_local struct {
    unsigned char bytes[UUID_POOL_BYTES];
    size_t used;
} uuid_pool = {.used = UUID_POOL_BYTES};

static pthread_once_t uuid_atfork_once = PTHREAD_ONCE_INIT;

static void uuid_pool_reset_in_child(void)
{
    uuid_pool.used = UUID_POOL_BYTES;
}

static void uuid_atfork_register(void)
{
    pthread_atfork(NULL, NULL, uuid_pool_reset_in_child);
}

int dais_uuid4(char out[37])
{
    if (uuid_pool.used > UUID_POOL_BYTES - 16) {
        pthread_once(&uuid_atfork_once, uuid_atfork_register);
        if (RAND_bytes(uuid_pool.bytes, UUID_POOL_BYTES) != 1) return DAIS_EINTERNAL;
        uuid_pool.used = 0;
    }
    unsigned char *b = uuid_pool.bytes + uuid_pool.used;
    uuid_pool.used += 16;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hx[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hx[b[i] >> 4];
        out[o++] = hx[b[i] & 15];
    }
    out[o] = '\0';
    memset(b, 0, 16); /* each byte is used once */
    return 0;
}

bool dais_ident_valid(const char *s, size_t len, size_t max)
{
    if (s == NULL || len == 0 || len > max) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

/* ---- message lifecycle ------------------------------------------------------------------ */

dais_msg *dais_msg_new(enum dais_msg_type type, const char *source, const char *target)
{
    if ((int)type <= 0 || type >= DAIS_MSG__COUNT || source == NULL || target == NULL ||
        !dais_ident_valid(source, strlen(source), DAIS_NODE_ID_MAX) ||
        !dais_ident_valid(target, strlen(target), DAIS_NODE_ID_MAX))
        return NULL;
    dais_msg *m = calloc(1, sizeof(*m));
    if (m == NULL) return NULL;
    m->type = type;
    snprintf(m->source, sizeof(m->source), "%s", source);
    snprintf(m->target, sizeof(m->target), "%s", target);
    /* Microseconds are all a timestamp carries, and a value with at most six decimals is one
     * the JSON writer prints exactly without "%.17g". */
    m->timestamp = m->payload_timestamp = round(dais_wall_time() * 1e6) / 1e6;
    m->data = json_object();
    m->metadata = json_object();
    if (m->data == NULL || m->metadata == NULL || dais_uuid4(m->id) != 0) {
        dais_msg_free(m);
        return NULL;
    }
    return m;
}

void dais_msg_free(dais_msg *m)
{
    if (m == NULL) return;
    json_decref(m->data);
    json_decref(m->metadata);
    free(m->bin);
    free(m);
}

int dais_msg_set_bin(dais_msg *m, const void *bytes, size_t len)
{
    if (len > UINT32_MAX) return DAIS_ETOOBIG;
    uint8_t *b = NULL;
    if (len > 0) {
        b = malloc(len);
        if (b == NULL) return DAIS_ENOMEM;
        memcpy(b, bytes, len);
    }
    free(m->bin);
    m->bin = b;
    m->bin_len = (uint32_t)len;
    return 0;
}

void dais_msg_take_bin(dais_msg *m, uint8_t *bytes, uint32_t len)
{
    free(m->bin);
    m->bin = len > 0 ? bytes : NULL;
    m->bin_len = len;
    if (len == 0) free(bytes);
}

/* ---- encode ----------------------------------------------------------------------------- */

int dais_envelope_encode(const dais_msg *m, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if ((int)m->type <= 0 || m->type >= DAIS_MSG__COUNT || !json_is_object(m->data) ||
        !json_is_object(m->metadata))
        return DAIS_EINVAL;
#define RAW(b, lit) dais_json_buf_raw((b), (lit), sizeof(lit) - 1)
    /* Written directly, in the documented key order, instead of building a tree to dump. */
    dais_json_buf b;
    dais_json_buf_init(&b, 0);
    RAW(&b, "{\"message_id\":");
    dais_json_buf_str(&b, m->id, strlen(m->id));
    RAW(&b, ",\"message_type\":");
    const char *type = dais_msg_type_name(m->type);
    dais_json_buf_str(&b, type, strlen(type));
    RAW(&b, ",\"source_node\":");
    dais_json_buf_str(&b, m->source, strlen(m->source));
    RAW(&b, ",\"target_node\":");
    dais_json_buf_str(&b, m->target, strlen(m->target));
    RAW(&b, ",\"payload\":{\"data\":");
    dais_json_buf_value(&b, m->data);
    RAW(&b, ",\"timestamp\":");
    dais_json_buf_real(&b, isfinite(m->payload_timestamp) ? m->payload_timestamp : 0.0);
    RAW(&b, ",\"metadata\":");
    dais_json_buf_value(&b, m->metadata);
    RAW(&b, "},\"timestamp\":");
    dais_json_buf_real(&b, isfinite(m->timestamp) ? m->timestamp : 0.0);
    RAW(&b, "}");
#undef RAW
    int rc = b.err;
    char *s = dais_json_buf_take(&b, out_len);
    if (s == NULL) return rc != 0 ? rc : DAIS_ENOMEM;
    *out = s;
    return 0;
}

/* ---- parse ------------------------------------------------------------------------------ */

static int parse_node(const json_t *root, const char *key, char *dst, dais_err *err)
{
    const char *s;
    size_t n;
    int rc = dais_jv_str(root, NULL, key, true, 1, DAIS_NODE_ID_MAX, &s, &n, err);
    if (rc != 0) return rc;
    if (!dais_ident_valid(s, n, DAIS_NODE_ID_MAX))
        return dais_err_set(err, DAIS_EPROTO, "%s: characters outside [A-Za-z0-9._:-]", key);
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int dais_envelope_parse(const char *json, size_t len, dais_msg **out, dais_err *err)
{
    *out = NULL;
    if (json == NULL || len == 0) return dais_err_set(err, DAIS_EFORMAT, "empty envelope");
    if (memchr(json, '\0', len) != NULL)
        return dais_err_set(err, DAIS_EFORMAT, "envelope contains a NUL byte");
    dais_json_error jerr;
    json_t *root = dais_json_parse(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return dais_err_set(err, DAIS_EFORMAT, "envelope JSON: %s at line %d column %d", jerr.text,
                            jerr.line, jerr.column);
    int rc;
    dais_msg *m = NULL;
    if (!json_is_object(root)) {
        rc = dais_err_set(err, DAIS_EPROTO, "envelope: expected an object");
        goto fail;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        rc = dais_err_set(err, DAIS_ENOMEM, "out of memory");
        goto fail;
    }
    const char *s;
    size_t n;
    if ((rc = dais_jv_str(root, NULL, "message_id", true, 36, 36, &s, &n, err)) != 0) goto fail;
    if (!dais_uuid4_valid(s, n)) {
        rc = dais_err_set(err, DAIS_EPROTO, "message_id: not a uuid4");
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        m->id[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] - 'A' + 'a') : s[i];
    m->id[n] = '\0';
    if ((rc = dais_jv_str(root, NULL, "message_type", true, 1, 64, &s, &n, err)) != 0) goto fail;
    m->type = dais_msg_type_from_name(s, n);
    if (m->type == DAIS_MSG_NONE) {
        rc = dais_err_set(err, DAIS_EPROTO, "message_type: unknown type '%.64s'", s);
        goto fail;
    }
    if ((rc = parse_node(root, "source_node", m->source, err)) != 0 ||
        (rc = parse_node(root, "target_node", m->target, err)) != 0)
        goto fail;
    if ((rc = dais_jv_num(root, NULL, "timestamp", true, 0, 1e15, 0, &m->timestamp, err)) != 0)
        goto fail;
    json_t *payload, *data, *meta;
    if ((rc = dais_jv_obj(root, NULL, "payload", true, &payload, err)) != 0 ||
        (rc = dais_jv_obj(payload, "payload", "data", true, &data, err)) != 0 ||
        (rc = dais_jv_obj(payload, "payload", "metadata", true, &meta, err)) != 0 ||
        (rc = dais_jv_num(payload, "payload", "timestamp", true, 0, 1e15, 0, &m->payload_timestamp,
                          err)) != 0)
        goto fail;
    m->data = json_incref(data);
    m->metadata = json_incref(meta);
    json_decref(root);
    *out = m;
    return 0;
fail:
    dais_msg_free(m);
    json_decref(root);
    return rc;
}
