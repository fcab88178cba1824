/* The JSON envelope: message type names, uuid4, validation and serialisation (envelope.h). */
#include "proto/envelope.h"
#include "common/clock.h"
#include "proto/jsonv.h"

#include <openssl/rand.h>
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

int dais_uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) return DAIS_EINTERNAL;
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
    m->timestamp = m->payload_timestamp = dais_wall_time();
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
    int rc = DAIS_ENOMEM;
    json_t *root = json_object();
    json_t *payload = json_object();
    if (root == NULL || payload == NULL) goto fail;
    if (dais_jv_set_str(root, "message_id", m->id) != 0 ||
        dais_jv_set_str(root, "message_type", dais_msg_type_name(m->type)) != 0 ||
        dais_jv_set_str(root, "source_node", m->source) != 0 ||
        dais_jv_set_str(root, "target_node", m->target) != 0 ||
        json_object_set(payload, "data", m->data) != 0 ||
        dais_jv_set_num(payload, "timestamp", m->payload_timestamp) != 0 ||
        json_object_set(payload, "metadata", m->metadata) != 0 ||
        json_object_set(root, "payload", payload) != 0 ||
        dais_jv_set_num(root, "timestamp", m->timestamp) != 0)
        goto fail;
    char *s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s == NULL) goto fail;
    *out = s;
    *out_len = strlen(s);
    rc = 0;
fail:
    json_decref(payload);
    json_decref(root);
    return rc;
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
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
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
