/* Typed payloads: encode/decode of payload.data for each message type (messages.h). */
#include "proto/messages.h"
#include "proto/jsonv.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_53      ((int64_t)1 << 53)
#define IDENT_CHARS "characters outside [A-Za-z0-9._:-]"

/* Every encoder starts here: the message has the right type and an empty data object. */
static int begin(dais_msg *m, enum dais_msg_type t)
{
    if (m == NULL || m->type != t || !json_is_object(m->data)) return DAIS_EINVAL;
    json_object_clear(m->data);
    return 0;
}

static int want_type(const dais_msg *m, enum dais_msg_type t, dais_err *err)
{
    if (m == NULL || m->type != t || !json_is_object(m->data))
        return dais_err_set(err, DAIS_EINVAL, "not a %s message", dais_msg_type_name(t));
    return 0;
}

static int get_ident(const json_t *o, const char *where, const char *key, bool required, size_t max,
                     char *dst, dais_err *err)
{
    int rc = dais_jv_str_copy(o, where, key, required, required ? 1 : 0, max, dst, err);
    if (rc != 0) return rc;
    if (dst[0] != '\0' && !dais_ident_valid(dst, strlen(dst), max))
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: " IDENT_CHARS, where ? where : "",
                            where ? "." : "", key);
    return 0;
}

static int get_hex(const json_t *o, const char *where, const char *key, size_t n, char *dst,
                   dais_err *err)
{
    int rc = dais_jv_str_copy(o, where, key, true, n, n, dst, err);
    if (rc != 0) return rc;
    if (!dais_hex_valid(dst, n))
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: expected %zu lowercase hex digits",
                            where ? where : "", where ? "." : "", key, n);
    return 0;
}

static int get_i32(const json_t *o, const char *where, const char *key, bool required, int64_t lo,
                   int64_t hi, int64_t def, int32_t *out, dais_err *err)
{
    int64_t v;
    int rc = dais_jv_int(o, where, key, required, lo, hi, def, &v, err);
    if (rc == 0) *out = (int32_t)v;
    return rc;
}

static int get_u64(const json_t *o, const char *where, const char *key, bool required,
                   uint64_t *out, dais_err *err)
{
    int64_t v;
    int rc = dais_jv_int(o, where, key, required, 0, INT64_MAX, 0, &v, err);
    if (rc == 0) *out = (uint64_t)v;
    return rc;
}

/* Integers we send must fit what the peer accepts (a JSON integer is at most int64). */
static int64_t clamp_u64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* ---- SIMD ------------------------------------------------------------------------------- */

static const struct {
    uint32_t bit;
    const char *name;
} simd_names[] = {
    {DAIS_SIMD_SSE42, "sse4.2"}, {DAIS_SIMD_AVX, "avx"},   {DAIS_SIMD_AVX2, "avx2"},
    {DAIS_SIMD_FMA, "fma"},      {DAIS_SIMD_F16C, "f16c"}, {DAIS_SIMD_AVX512F, "avx512f"},
    {DAIS_SIMD_NEON, "neon"},
};

uint32_t dais_simd_detect(void)
{
    uint32_t f = 0;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) f |= DAIS_SIMD_SSE42;
    if (__builtin_cpu_supports("avx")) f |= DAIS_SIMD_AVX;
    if (__builtin_cpu_supports("avx2")) f |= DAIS_SIMD_AVX2;
    if (__builtin_cpu_supports("fma")) f |= DAIS_SIMD_FMA;
    if (__builtin_cpu_supports("avx512f")) f |= DAIS_SIMD_AVX512F;
    /* f16c has no __builtin_cpu_supports name in every compiler: every AVX2 CPU has it. */
    if (f & DAIS_SIMD_AVX2) f |= DAIS_SIMD_F16C;
#elif defined(__aarch64__)
    f |= DAIS_SIMD_NEON;
#endif
    return f;
}

/* ---- NODE_DISCOVERY --------------------------------------------------------------------- */

int dais_discovery_encode(const dais_msg_discovery *d, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_NODE_DISCOVERY);
    if (rc != 0) return rc;
    json_t *o = m->data;
    json_t *caps, *model, *auth, *simd;
    if (dais_jv_set_str(o, "node_id", d->node_id) ||
        dais_jv_set_int(o, "protocol_version", d->protocol_version) ||
        dais_jv_set_str(o, "addr", d->addr) ||
        dais_jv_set_int(o, "heartbeat_port", d->heartbeat_port) ||
        dais_jv_set_int(o, "metrics_port", d->metrics_port) ||
        (caps = dais_jv_set_obj(o, "capabilities")) == NULL ||
        dais_jv_set_int(caps, "cores", d->cores) || dais_jv_set_int(caps, "threads", d->threads) ||
        dais_jv_set_int(caps, "memory_total", clamp_u64(d->memory_total)) ||
        dais_jv_set_int(caps, "memory_available", clamp_u64(d->memory_available)) ||
        dais_jv_set_int(caps, "n_ctx", d->n_ctx) || dais_jv_set_int(caps, "slots", d->slots) ||
        dais_jv_set_int(caps, "batch", d->batch) || dais_jv_set_int(caps, "queue", d->queue) ||
        (model = dais_jv_set_obj(caps, "model")) == NULL ||
        dais_jv_set_str(model, "name", d->model.name) ||
        dais_jv_set_str(model, "hash", d->model.hash) ||
        dais_jv_set_int(model, "n_vocab", d->model.n_vocab) ||
        dais_jv_set_int(model, "n_layers", d->model.n_layers) ||
        dais_jv_set_int(model, "layer_first", d->model.layer_first) ||
        dais_jv_set_int(model, "layer_last", d->model.layer_last) ||
        dais_jv_set_int(model, "n_ctx_train", d->model.n_ctx_train) ||
        (auth = dais_jv_set_obj(o, "auth")) == NULL ||
        dais_jv_set_int(auth, "timestamp_ms", d->auth.timestamp_ms) ||
        dais_jv_set_str(auth, "nonce", d->auth.nonce) ||
        dais_jv_set_str(auth, "hmac", d->auth.hmac))
        return DAIS_EINVAL;
    simd = json_array();
    if (simd == NULL || json_object_set_new(caps, "simd", simd) != 0) return DAIS_ENOMEM;
    for (size_t i = 0; i < sizeof(simd_names) / sizeof(simd_names[0]); i++)
        if ((d->simd & simd_names[i].bit) &&
            json_array_append_new(simd, json_string(simd_names[i].name)) != 0)
            return DAIS_ENOMEM;
    return 0;
}

int dais_discovery_decode(const dais_msg *m, dais_msg_discovery *d, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_NODE_DISCOVERY, err);
    if (rc != 0) return rc;
    memset(d, 0, sizeof(*d));
    const json_t *o = m->data;
    json_t *caps, *model, *auth, *simd;
    int64_t v;
    if ((rc = get_ident(o, NULL, "node_id", true, DAIS_NODE_ID_MAX, d->node_id, err)) != 0)
        return rc;
    if (strcmp(d->node_id, m->source) != 0)
        return dais_err_set(err, DAIS_EPROTO, "node_id '%s' differs from source_node '%s'",
                            d->node_id, m->source);
    if ((rc = dais_jv_int(o, NULL, "protocol_version", true, 0, UINT32_MAX, 0, &v, err)) != 0)
        return rc;
    d->protocol_version = (uint32_t)v;
    if ((rc = dais_jv_str_copy(o, NULL, "addr", false, 0, DAIS_NAME_MAX, d->addr, err)) != 0)
        return rc;
    if ((rc = dais_jv_int(o, NULL, "heartbeat_port", true, 1, 65535, 0, &v, err)) != 0) return rc;
    d->heartbeat_port = (uint16_t)v;
    if ((rc = dais_jv_int(o, NULL, "metrics_port", false, 0, 65535, 0, &v, err)) != 0) return rc;
    d->metrics_port = (uint16_t)v;
    if ((rc = dais_jv_obj(o, NULL, "capabilities", true, &caps, err)) != 0 ||
        (rc = get_i32(caps, "capabilities", "cores", true, 1, 65536, 0, &d->cores, err)) != 0 ||
        (rc = get_i32(caps, "capabilities", "threads", true, 1, 65536, 0, &d->threads, err)) != 0 ||
        (rc = get_u64(caps, "capabilities", "memory_total", true, &d->memory_total, err)) != 0 ||
        (rc = get_u64(caps, "capabilities", "memory_available", false, &d->memory_available,
                      err)) != 0 ||
        (rc = get_i32(caps, "capabilities", "n_ctx", true, 1, INT32_MAX, 0, &d->n_ctx, err)) != 0 ||
        (rc = get_i32(caps, "capabilities", "slots", true, 1, 65536, 0, &d->slots, err)) != 0 ||
        (rc = get_i32(caps, "capabilities", "batch", true, 1, INT32_MAX, 0, &d->batch, err)) != 0 ||
        (rc = get_i32(caps, "capabilities", "queue", false, 0, INT32_MAX, 0, &d->queue, err)) !=
            0 ||
        (rc = dais_jv_arr(caps, "capabilities", "simd", false, 32, &simd, err)) != 0)
        return rc;
    for (size_t i = 0; simd != NULL && i < json_array_size(simd); i++) {
        json_t *s = json_array_get(simd, i);
        if (!json_is_string(s))
            return dais_err_set(err, DAIS_EPROTO, "capabilities.simd[%zu]: expected a string", i);
        for (size_t k = 0; k < sizeof(simd_names) / sizeof(simd_names[0]); k++)
            if (strcmp(json_string_value(s), simd_names[k].name) == 0) d->simd |= simd_names[k].bit;
    }
    const char *w = "capabilities.model";
    dais_model_info *mi = &d->model;
    if ((rc = dais_jv_obj(caps, "capabilities", "model", true, &model, err)) != 0 ||
        (rc = dais_jv_str_copy(model, w, "name", true, 1, DAIS_NAME_MAX, mi->name, err)) != 0 ||
        (rc = get_hex(model, w, "hash", 64, mi->hash, err)) != 0 ||
        (rc = get_i32(model, w, "n_vocab", true, 1, INT32_MAX, 0, &mi->n_vocab, err)) != 0 ||
        (rc = get_i32(model, w, "n_layers", true, 1, 65536, 0, &mi->n_layers, err)) != 0 ||
        (rc = get_i32(model, w, "layer_first", false, 0, 65536, 0, &mi->layer_first, err)) != 0 ||
        (rc = get_i32(model, w, "layer_last", false, 0, 65536, mi->n_layers, &mi->layer_last,
                      err)) != 0 ||
        (rc = get_i32(model, w, "n_ctx_train", true, 1, INT32_MAX, 0, &mi->n_ctx_train, err)) != 0)
        return rc;
    if (!(mi->layer_first < mi->layer_last && mi->layer_last <= mi->n_layers))
        return dais_err_set(err, DAIS_EPROTO,
                            "capabilities.model: layer range [%d, %d) not "
                            "within [0, %d)",
                            mi->layer_first, mi->layer_last, mi->n_layers);
    if ((rc = dais_jv_obj(o, NULL, "auth", true, &auth, err)) != 0 ||
        (rc = dais_jv_int(auth, "auth", "timestamp_ms", true, INT64_MIN, INT64_MAX, 0,
                          &d->auth.timestamp_ms, err)) != 0 ||
        (rc = get_hex(auth, "auth", "nonce", DAIS_NONCE_HEX_LEN, d->auth.nonce, err)) != 0 ||
        (rc = get_hex(auth, "auth", "hmac", DAIS_MAC_HEX_LEN, d->auth.hmac, err)) != 0)
        return rc;
    return 0;
}

/* ---- NODE_ACCEPT ------------------------------------------------------------------------ */

int dais_accept_encode(const dais_msg_accept *a, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_NODE_ACCEPT);
    if (rc != 0) return rc;
    if (a->session_id == 0 || a->session_id > (uint64_t)MAX_53) return DAIS_EINVAL;
    json_t *o = m->data;
    if (dais_jv_set_str(o, "node_id", a->node_id) ||
        dais_jv_set_int(o, "session_id", (int64_t)a->session_id) ||
        dais_jv_set_str(o, "master_nonce", a->master_nonce) ||
        dais_jv_set_str(o, "hmac", a->hmac) ||
        dais_jv_set_int(o, "heartbeat_interval_ms", a->heartbeat_interval_ms) ||
        dais_jv_set_int(o, "heartbeat_port", a->heartbeat_port))
        return DAIS_EINVAL;
    return 0;
}

int dais_accept_decode(const dais_msg *m, dais_msg_accept *a, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_NODE_ACCEPT, err);
    if (rc != 0) return rc;
    memset(a, 0, sizeof(*a));
    int64_t sid, iv, port;
    if ((rc = get_ident(m->data, NULL, "node_id", true, DAIS_NODE_ID_MAX, a->node_id, err)) != 0 ||
        (rc = dais_jv_int(m->data, NULL, "session_id", true, 1, MAX_53, 0, &sid, err)) != 0 ||
        (rc = get_hex(m->data, NULL, "master_nonce", DAIS_NONCE_HEX_LEN, a->master_nonce, err)) !=
            0 ||
        (rc = get_hex(m->data, NULL, "hmac", DAIS_MAC_HEX_LEN, a->hmac, err)) != 0 ||
        (rc = dais_jv_int(m->data, NULL, "heartbeat_interval_ms", true, 1, 3600000, 0, &iv, err)) !=
            0 ||
        (rc = dais_jv_int(m->data, NULL, "heartbeat_port", false, 0, 65535, 0, &port, err)) != 0)
        return rc;
    a->session_id = (uint64_t)sid;
    a->heartbeat_interval_ms = (uint32_t)iv;
    a->heartbeat_port = (uint32_t)port;
    return 0;
}

/* ---- NODE_REJECT ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    bool transient;
} reject_table[DAIS_REJECT__COUNT] = {[DAIS_REJECT_NONE] = {"unknown", false},
#define DAIS_REJECT_ROW(n, s, t) [DAIS_REJECT_##n] = {s, t},
                                      DAIS_REJECT_MAP(DAIS_REJECT_ROW)
#undef DAIS_REJECT_ROW
};

const char *dais_reject_reason_name(enum dais_reject_reason r)
{
    return (unsigned)r < DAIS_REJECT__COUNT ? reject_table[r].name : "unknown";
}

enum dais_reject_reason dais_reject_reason_from_name(const char *s)
{
    for (int r = 1; r < DAIS_REJECT__COUNT; r++)
        if (strcmp(reject_table[r].name, s) == 0) return (enum dais_reject_reason)r;
    return DAIS_REJECT_NONE;
}

bool dais_reject_reason_transient(enum dais_reject_reason r)
{
    return (unsigned)r < DAIS_REJECT__COUNT && reject_table[r].transient;
}

enum dais_reject_reason dais_reject_from_auth(enum dais_auth_verdict v)
{
    switch (v) {
    case DAIS_AUTH_OK:
        return DAIS_REJECT_NONE;
    case DAIS_AUTH_BAD_MAC:
        return DAIS_REJECT_BAD_TOKEN;
    case DAIS_AUTH_SKEW:
        return DAIS_REJECT_CLOCK_SKEW;
    case DAIS_AUTH_REPLAY:
        return DAIS_REJECT_REPLAY;
    case DAIS_AUTH_OVERLOADED:
        return DAIS_REJECT_OVERLOADED;
    default:
        return DAIS_REJECT_MALFORMED;
    }
}

int dais_reject_encode(const dais_msg_reject *r, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_NODE_REJECT);
    if (rc != 0) return rc;
    const char *name = r->reason != DAIS_REJECT_NONE ? dais_reject_reason_name(r->reason)
                       : r->reason_name[0] != '\0'   ? r->reason_name
                                                     : "unknown";
    if (dais_jv_set_str(m->data, "reason", name) ||
        dais_jv_set_str(m->data, "message", r->message) ||
        dais_jv_set_bool(m->data, "retry", r->retry) ||
        dais_jv_set_int(m->data, "retry_after_ms", r->retry_after_ms))
        return DAIS_EINVAL;
    return 0;
}

int dais_reject_decode(const dais_msg *m, dais_msg_reject *r, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_NODE_REJECT, err);
    if (rc != 0) return rc;
    memset(r, 0, sizeof(*r));
    int64_t ra;
    if ((rc = dais_jv_str_copy(m->data, NULL, "reason", true, 1, 64, r->reason_name, err)) != 0 ||
        (rc = dais_jv_str_copy(m->data, NULL, "message", false, 0, DAIS_TEXT_MAX, r->message,
                               err)) != 0 ||
        (rc = dais_jv_bool(m->data, NULL, "retry", false, false, &r->retry, err)) != 0 ||
        (rc = dais_jv_int(m->data, NULL, "retry_after_ms", false, 0, UINT32_MAX, 0, &ra, err)) != 0)
        return rc;
    r->reason = dais_reject_reason_from_name(r->reason_name);
    r->retry_after_ms = (uint32_t)ra;
    return 0;
}

/* ---- HEARTBEAT / HEARTBEAT_ACK ---------------------------------------------------------- */

int dais_heartbeat_encode(const dais_msg_heartbeat *h, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_HEARTBEAT);
    if (rc != 0) return rc;
    json_t *o = m->data;
    if (dais_jv_set_int(o, "interval_ms", h->interval_ms) ||
        dais_jv_set_str(o, "cluster_state", h->cluster_state) ||
        dais_jv_set_int(o, "workers_active", h->workers_active) ||
        dais_jv_set_int(o, "workers_total", h->workers_total) ||
        dais_jv_set_int(o, "sent_ms", h->sent_ms))
        return DAIS_EINVAL;
    return 0;
}

int dais_heartbeat_decode(const dais_msg *m, dais_msg_heartbeat *h, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_HEARTBEAT, err);
    if (rc != 0) return rc;
    memset(h, 0, sizeof(*h));
    const json_t *o = m->data;
    int64_t iv;
    if ((rc = dais_jv_int(o, NULL, "interval_ms", true, 1, 3600000, 0, &iv, err)) != 0 ||
        (rc = dais_jv_str_copy(o, NULL, "cluster_state", false, 0, 32, h->cluster_state, err)) !=
            0 ||
        (rc = get_i32(o, NULL, "workers_active", false, 0, INT32_MAX, 0, &h->workers_active,
                      err)) != 0 ||
        (rc = get_i32(o, NULL, "workers_total", false, 0, INT32_MAX, 0, &h->workers_total, err)) !=
            0 ||
        (rc = dais_jv_int(o, NULL, "sent_ms", false, INT64_MIN, INT64_MAX, 0, &h->sent_ms, err)) !=
            0)
        return rc;
    h->interval_ms = (uint32_t)iv;
    return 0;
}

int dais_heartbeat_ack_encode(const dais_msg_heartbeat_ack *a, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_HEARTBEAT_ACK);
    if (rc != 0) return rc;
    json_t *o = m->data, *sys, *load;
    const dais_sys_metrics *s = &a->sys;
    const dais_load_metrics *l = &a->load;
    if (dais_jv_set_int(o, "echo_seq", clamp_u64(a->echo_seq)) ||
        dais_jv_set_int(o, "echo_sent_ms", a->echo_sent_ms) ||
        dais_jv_set_str(o, "health", a->health) || (sys = dais_jv_set_obj(o, "system")) == NULL ||
        dais_jv_set_num(sys, "cpu_percent", s->cpu_percent) ||
        dais_jv_set_num(sys, "process_cpu_percent", s->process_cpu_percent) ||
        dais_jv_set_int(sys, "mem_total", clamp_u64(s->mem_total)) ||
        dais_jv_set_int(sys, "mem_used", clamp_u64(s->mem_used)) ||
        dais_jv_set_int(sys, "process_rss", clamp_u64(s->process_rss)) ||
        dais_jv_set_num(sys, "load1", s->load1) || dais_jv_set_num(sys, "load5", s->load5) ||
        dais_jv_set_num(sys, "load15", s->load15) || (load = dais_jv_set_obj(o, "load")) == NULL ||
        dais_jv_set_int(load, "queue_depth", l->queue_depth) ||
        dais_jv_set_int(load, "active", l->active) || dais_jv_set_int(load, "slots", l->slots) ||
        dais_jv_set_num(load, "tokens_per_s", l->tokens_per_s) ||
        dais_jv_set_int(load, "kv_used", l->kv_used) ||
        dais_jv_set_int(load, "kv_total", l->kv_total) ||
        dais_jv_set_int(load, "requests_total", clamp_u64(l->requests_total)) ||
        dais_jv_set_int(load, "tokens_total", clamp_u64(l->tokens_total)))
        return DAIS_EINVAL;
    return 0;
}

int dais_heartbeat_ack_decode(const dais_msg *m, dais_msg_heartbeat_ack *a, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_HEARTBEAT_ACK, err);
    if (rc != 0) return rc;
    memset(a, 0, sizeof(*a));
    const json_t *o = m->data;
    json_t *sys, *load;
    dais_sys_metrics *s = &a->sys;
    dais_load_metrics *l = &a->load;
    const double big = 1e18;
    if ((rc = get_u64(o, NULL, "echo_seq", true, &a->echo_seq, err)) != 0 ||
        (rc = dais_jv_int(o, NULL, "echo_sent_ms", false, INT64_MIN, INT64_MAX, 0, &a->echo_sent_ms,
                          err)) != 0 ||
        (rc = dais_jv_str_copy(o, NULL, "health", true, 1, 32, a->health, err)) != 0 ||
        (rc = dais_jv_obj(o, NULL, "system", true, &sys, err)) != 0 ||
        (rc = dais_jv_num(sys, "system", "cpu_percent", true, 0, 100, 0, &s->cpu_percent, err)) !=
            0 ||
        (rc = dais_jv_num(sys, "system", "process_cpu_percent", false, 0, big, 0,
                          &s->process_cpu_percent, err)) != 0 ||
        (rc = get_u64(sys, "system", "mem_total", true, &s->mem_total, err)) != 0 ||
        (rc = get_u64(sys, "system", "mem_used", true, &s->mem_used, err)) != 0 ||
        (rc = get_u64(sys, "system", "process_rss", false, &s->process_rss, err)) != 0 ||
        (rc = dais_jv_num(sys, "system", "load1", true, 0, big, 0, &s->load1, err)) != 0 ||
        (rc = dais_jv_num(sys, "system", "load5", false, 0, big, 0, &s->load5, err)) != 0 ||
        (rc = dais_jv_num(sys, "system", "load15", false, 0, big, 0, &s->load15, err)) != 0 ||
        (rc = dais_jv_obj(o, NULL, "load", true, &load, err)) != 0 ||
        (rc = get_i32(load, "load", "queue_depth", true, 0, INT32_MAX, 0, &l->queue_depth, err)) !=
            0 ||
        (rc = get_i32(load, "load", "active", true, 0, INT32_MAX, 0, &l->active, err)) != 0 ||
        (rc = get_i32(load, "load", "slots", true, 0, INT32_MAX, 0, &l->slots, err)) != 0 ||
        (rc = dais_jv_num(load, "load", "tokens_per_s", true, 0, big, 0, &l->tokens_per_s, err)) !=
            0 ||
        (rc = dais_jv_int(load, "load", "kv_used", false, 0, INT64_MAX, 0, &l->kv_used, err)) !=
            0 ||
        (rc = dais_jv_int(load, "load", "kv_total", false, 0, INT64_MAX, 0, &l->kv_total, err)) !=
            0 ||
        (rc = get_u64(load, "load", "requests_total", false, &l->requests_total, err)) != 0 ||
        (rc = get_u64(load, "load", "tokens_total", false, &l->tokens_total, err)) != 0)
        return rc;
    return 0;
}

/* ---- INFERENCE_REQUEST ------------------------------------------------------------------ */

void dais_infer_params_default(dais_infer_params *p)
{
    memset(p, 0, sizeof(*p));
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->max_tokens = 16;
}

/* Token ids travel as int32 little-endian. */
static uint8_t *tokens_to_le(const int32_t *t, int32_t n)
{
    uint8_t *b = malloc(n > 0 ? (size_t)n * 4 : 1);
    if (b == NULL) return NULL;
    for (int32_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)t[i];
        uint8_t *q = b + (size_t)i * 4;
        q[0] = (uint8_t)v;
        q[1] = (uint8_t)(v >> 8);
        q[2] = (uint8_t)(v >> 16);
        q[3] = (uint8_t)(v >> 24);
    }
    return b;
}

static int32_t *tokens_from_le(const uint8_t *b, uint32_t len, int32_t *n_out)
{
    int32_t n = (int32_t)(len / 4);
    int32_t *t = malloc(n > 0 ? (size_t)n * sizeof(int32_t) : 1);
    if (t == NULL) return NULL;
    for (int32_t i = 0; i < n; i++) {
        /* size_t offset: len comes from the peer, and 4 * i in int would overflow for a
         * payload over 2 GiB (bin_len is a u32; only the configured limit keeps it below). */
        const uint8_t *q = b + (size_t)i * 4;
        uint32_t v = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) |
                     ((uint32_t)q[3] << 24);
        t[i] = (int32_t)v;
    }
    *n_out = n;
    return t;
}

static int set_tokens_bin(dais_msg *m, const int32_t *t, int32_t n)
{
    if (n < 0) return DAIS_EINVAL;
    if (n == 0) {
        dais_msg_take_bin(m, NULL, 0);
        return 0;
    }
    if (t == NULL || n > INT32_MAX / 4) return DAIS_EINVAL;
    uint8_t *b = tokens_to_le(t, n);
    if (b == NULL) return DAIS_ENOMEM;
    dais_msg_take_bin(m, b, (uint32_t)n * 4);
    return 0;
}

int dais_infer_req_encode(const dais_msg_infer_req *r, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_INFERENCE_REQUEST);
    if (rc != 0) return rc;
    bool has_text = r->prompt != NULL, has_tokens = r->n_tokens > 0;
    if (has_text == has_tokens || r->n_generated < 0 ||
        r->n_generated > (has_tokens ? r->n_tokens : 0) || r->params.n_stop < 0 ||
        r->params.n_stop > DAIS_STOP_MAX)
        return DAIS_EINVAL;
    json_t *o = m->data, *p, *stop;
    const dais_infer_params *q = &r->params;
    if (dais_jv_set_str(o, "request_id", r->request_id) || dais_jv_set_str(o, "model", r->model) ||
        (has_text && dais_jv_set_strn(o, "prompt", r->prompt, r->prompt_len)) ||
        dais_jv_set_bool(o, "add_bos", r->add_bos) ||
        dais_jv_set_int(o, "n_generated", r->n_generated) ||
        dais_jv_set_int(o, "deadline_ms", r->deadline_ms) ||
        (p = dais_jv_set_obj(o, "params")) == NULL ||
        dais_jv_set_num(p, "temperature", q->temperature) ||
        dais_jv_set_int(p, "top_k", q->top_k) || dais_jv_set_num(p, "top_p", q->top_p) ||
        dais_jv_set_num(p, "min_p", q->min_p) ||
        dais_jv_set_num(p, "repeat_penalty", q->repeat_penalty) ||
        dais_jv_set_int(p, "repeat_last_n", q->repeat_last_n) ||
        dais_jv_set_int(p, "seed", clamp_u64(q->seed)) ||
        dais_jv_set_int(p, "max_tokens", q->max_tokens) ||
        (r->pipeline && dais_jv_set_bool(o, "pipeline", true)))
        return DAIS_EINVAL;
    stop = json_array();
    if (stop == NULL || json_object_set_new(p, "stop", stop) != 0) return DAIS_ENOMEM;
    for (int i = 0; i < q->n_stop; i++)
        if (json_array_append_new(stop, json_string(q->stop[i])) != 0) return DAIS_EINVAL;
    if (r->traceparent[0] != '\0' && dais_jv_set_str(m->metadata, "traceparent", r->traceparent))
        return DAIS_EINVAL;
    return set_tokens_bin(m, has_tokens ? r->tokens : NULL, has_tokens ? r->n_tokens : 0);
}

/* W3C traceparent: version "00", 32 hex trace id (not all zero), 16 hex parent id (not all
 * zero), 2 hex flags, separated by '-'. Anything else is dropped (not an error: tracing must
 * never fail a request). */
static bool traceparent_valid(const char *s, size_t n)
{
    if (n != 55 || s[2] != '-' || s[35] != '-' || s[52] != '-') return false;
    bool tz = true, pz = true;
    for (size_t i = 0; i < n; i++) {
        if (i == 2 || i == 35 || i == 52) continue;
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
        if (i >= 3 && i < 35 && c != '0') tz = false;
        if (i >= 36 && i < 52 && c != '0') pz = false;
    }
    return !(s[0] == 'f' && s[1] == 'f') && !tz && !pz;
}

int dais_infer_req_decode(const dais_msg *m, dais_msg_infer_req *r, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_INFERENCE_REQUEST, err);
    if (rc != 0) return rc;
    memset(r, 0, sizeof(*r));
    const json_t *o = m->data;
    json_t *p, *stop;
    const char *prompt;
    size_t plen;
    int64_t v;
    dais_infer_params *q = &r->params;
    dais_infer_params_default(q);
    double d;
    if ((rc = get_ident(o, NULL, "request_id", true, DAIS_REQUEST_ID_MAX, r->request_id, err)) !=
            0 ||
        (rc = dais_jv_str_copy(o, NULL, "model", false, 0, DAIS_NAME_MAX, r->model, err)) != 0 ||
        (rc = dais_jv_str(o, NULL, "prompt", false, 0, SIZE_MAX, &prompt, &plen, err)) != 0 ||
        (rc = dais_jv_bool(o, NULL, "add_bos", false, true, &r->add_bos, err)) != 0 ||
        (rc = dais_jv_bool(o, NULL, "pipeline", false, false, &r->pipeline, err)) != 0 ||
        (rc = dais_jv_int(o, NULL, "deadline_ms", false, 0, UINT32_MAX, 0, &v, err)) != 0)
        goto fail;
    r->deadline_ms = (uint32_t)v;
    if ((rc = dais_jv_obj(o, NULL, "params", false, &p, err)) != 0) goto fail;
    if (p != NULL) {
        const char *w = "params";
        if ((rc = dais_jv_num(p, w, "temperature", false, 0, 100, 1, &d, err)) != 0) goto fail;
        q->temperature = (float)d;
        if ((rc = get_i32(p, w, "top_k", false, 0, INT32_MAX, 0, &q->top_k, err)) != 0 ||
            (rc = dais_jv_num(p, w, "top_p", false, 0, 1, 1, &d, err)) != 0)
            goto fail;
        if (d <= 0) {
            rc = dais_err_set(err, DAIS_EPROTO, "params.top_p: must be in (0, 1]");
            goto fail;
        }
        q->top_p = (float)d;
        if ((rc = dais_jv_num(p, w, "min_p", false, 0, 1, 0, &d, err)) != 0) goto fail;
        q->min_p = (float)d;
        if ((rc = dais_jv_num(p, w, "repeat_penalty", false, 0, 100, 1, &d, err)) != 0) goto fail;
        if (d <= 0) {
            rc = dais_err_set(err, DAIS_EPROTO, "params.repeat_penalty: must be in (0, 100]");
            goto fail;
        }
        q->repeat_penalty = (float)d;
        if ((rc = get_i32(p, w, "repeat_last_n", false, 0, 4096, 64, &q->repeat_last_n, err)) !=
                0 ||
            (rc = dais_jv_int(p, w, "seed", false, 0, MAX_53, 0, &v, err)) != 0)
            goto fail;
        q->seed = (uint64_t)v;
        if ((rc = get_i32(p, w, "max_tokens", false, 1, DAIS_PROMPT_TOKENS_MAX, 16, &q->max_tokens,
                          err)) != 0 ||
            (rc = dais_jv_arr(p, w, "stop", false, DAIS_STOP_MAX, &stop, err)) != 0)
            goto fail;
        for (size_t i = 0; stop != NULL && i < json_array_size(stop); i++) {
            json_t *s = json_array_get(stop, i);
            size_t n = json_is_string(s) ? json_string_length(s) : 0;
            if (!json_is_string(s) || n < 1 || n > DAIS_STOP_LEN_MAX) {
                rc = dais_err_set(err, DAIS_EPROTO,
                                  "params.stop[%zu]: expected a string of 1..%d "
                                  "bytes",
                                  i, DAIS_STOP_LEN_MAX);
                goto fail;
            }
            memcpy(q->stop[i], json_string_value(s), n);
            q->stop[i][n] = '\0';
            q->n_stop++;
        }
    }
    if ((prompt != NULL) == (m->bin_len > 0)) {
        rc = dais_err_set(err, DAIS_EPROTO,
                          "exactly one of prompt text and prompt tokens "
                          "(binary payload) is required");
        goto fail;
    }
    if (prompt != NULL) {
        r->prompt = malloc(plen + 1);
        if (r->prompt == NULL) {
            rc = dais_err_set(err, DAIS_ENOMEM, "out of memory");
            goto fail;
        }
        memcpy(r->prompt, prompt, plen);
        r->prompt[plen] = '\0';
        r->prompt_len = plen;
    } else {
        if (m->bin_len % 4 != 0 || m->bin_len / 4 > DAIS_PROMPT_TOKENS_MAX) {
            rc = dais_err_set(err, DAIS_EPROTO, "prompt tokens: %u bytes is not 1..%d int32 ids",
                              m->bin_len, DAIS_PROMPT_TOKENS_MAX);
            goto fail;
        }
        r->tokens = tokens_from_le(m->bin, m->bin_len, &r->n_tokens);
        if (r->tokens == NULL) {
            rc = dais_err_set(err, DAIS_ENOMEM, "out of memory");
            goto fail;
        }
        for (int32_t i = 0; i < r->n_tokens; i++) {
            if (r->tokens[i] < 0) {
                rc = dais_err_set(err, DAIS_EPROTO, "prompt tokens: id %d at %d is negative",
                                  r->tokens[i], i);
                goto fail;
            }
        }
    }
    if ((rc = get_i32(o, NULL, "n_generated", false, 0, r->n_tokens, 0, &r->n_generated, err)) != 0)
        goto fail;
    const char *tp;
    size_t tpl;
    if (dais_jv_str(m->metadata, NULL, "traceparent", false, 0, 64, &tp, &tpl, NULL) == 0 &&
        tp != NULL && traceparent_valid(tp, tpl))
        memcpy(r->traceparent, tp, tpl + 1);
    return 0;
fail:
    dais_infer_req_clear(r);
    return rc;
}

void dais_infer_req_clear(dais_msg_infer_req *r)
{
    if (r == NULL) return;
    free(r->prompt);
    free(r->tokens);
    memset(r, 0, sizeof(*r));
}

/* ---- INFERENCE_RESPONSE ----------------------------------------------------------------- */

static const char *const finish_names[DAIS_FINISH__COUNT] = {
    [DAIS_FINISH_NONE] = "",         [DAIS_FINISH_STOP] = "stop",
    [DAIS_FINISH_LENGTH] = "length", [DAIS_FINISH_CANCELLED] = "cancelled",
    [DAIS_FINISH_ERROR] = "error",
};

const char *dais_finish_name(enum dais_finish f)
{
    return (unsigned)f < DAIS_FINISH__COUNT ? finish_names[f] : "";
}

int dais_infer_resp_encode(const dais_msg_infer_resp *r, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_INFERENCE_RESPONSE);
    if (rc != 0) return rc;
    if (r->final == (r->finish == DAIS_FINISH_NONE) || (unsigned)r->finish >= DAIS_FINISH__COUNT ||
        r->n_tokens < 0)
        return DAIS_EINVAL;
    json_t *o = m->data, *u, *t, *e;
    if (dais_jv_set_str(o, "request_id", r->request_id) || dais_jv_set_int(o, "index", r->index) ||
        dais_jv_set_bool(o, "final", r->final) || dais_jv_set_strn(o, "text", r->text, r->text_len))
        return DAIS_EINVAL;
    if (r->prompt_token_ids && dais_jv_set_bool(o, "prompt_token_ids", true)) return DAIS_EINVAL;
    if (r->final) {
        const dais_infer_timings *tm = &r->timings;
        if (dais_jv_set_str(o, "finish_reason", dais_finish_name(r->finish)) ||
            (u = dais_jv_set_obj(o, "usage")) == NULL ||
            dais_jv_set_int(u, "prompt_tokens", r->prompt_tokens) ||
            dais_jv_set_int(u, "completion_tokens", r->completion_tokens) ||
            (t = dais_jv_set_obj(o, "timings")) == NULL ||
            dais_jv_set_num(t, "queue_ms", tm->queue_ms) ||
            dais_jv_set_num(t, "ttft_ms", tm->ttft_ms) ||
            dais_jv_set_num(t, "total_ms", tm->total_ms) ||
            dais_jv_set_num(t, "prefill_ms", tm->prefill_ms) ||
            dais_jv_set_num(t, "decode_ms", tm->decode_ms) ||
            dais_jv_set_num(t, "prefill_tokens_per_s", tm->prefill_tokens_per_s) ||
            dais_jv_set_num(t, "decode_tokens_per_s", tm->decode_tokens_per_s))
            return DAIS_EINVAL;
        if (r->finish == DAIS_FINISH_ERROR && ((e = dais_jv_set_obj(o, "error")) == NULL ||
                                               dais_jv_set_str(e, "code", r->error_code) ||
                                               dais_jv_set_str(e, "message", r->error_message)))
            return DAIS_EINVAL;
    }
    return set_tokens_bin(m, r->tokens, r->n_tokens);
}

int dais_infer_resp_decode(const dais_msg *m, dais_msg_infer_resp *r, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_INFERENCE_RESPONSE, err);
    if (rc != 0) return rc;
    memset(r, 0, sizeof(*r));
    const json_t *o = m->data;
    int64_t idx;
    if ((rc = get_ident(o, NULL, "request_id", true, DAIS_REQUEST_ID_MAX, r->request_id, err)) !=
            0 ||
        (rc = dais_jv_int(o, NULL, "index", true, 0, UINT32_MAX, 0, &idx, err)) != 0 ||
        (rc = dais_jv_bool(o, NULL, "final", true, false, &r->final, err)) != 0 ||
        (rc = dais_jv_str(o, NULL, "text", false, 0, SIZE_MAX, &r->text, &r->text_len, err)) != 0 ||
        (rc = dais_jv_bool(o, NULL, "prompt_token_ids", false, false, &r->prompt_token_ids, err)) !=
            0)
        return rc;
    r->index = (uint32_t)idx;
    if (r->text == NULL) r->text = "";
    if (m->bin_len % 4 != 0)
        return dais_err_set(err, DAIS_EPROTO, "tokens: %u bytes is not a whole number of int32",
                            m->bin_len);
    if (r->final) {
        char fr[16];
        json_t *u, *t, *e;
        dais_infer_timings *tm = &r->timings;
        const double big = 1e15;
        if ((rc = dais_jv_str_copy(o, NULL, "finish_reason", true, 1, 15, fr, err)) != 0) return rc;
        for (int f = 1; f < DAIS_FINISH__COUNT; f++)
            if (strcmp(fr, finish_names[f]) == 0) r->finish = (enum dais_finish)f;
        if (r->finish == DAIS_FINISH_NONE)
            return dais_err_set(err, DAIS_EPROTO, "finish_reason: unknown '%s'", fr);
        if ((rc = dais_jv_obj(o, NULL, "usage", true, &u, err)) != 0 ||
            (rc = get_i32(u, "usage", "prompt_tokens", true, 0, INT32_MAX, 0, &r->prompt_tokens,
                          err)) != 0 ||
            (rc = get_i32(u, "usage", "completion_tokens", true, 0, INT32_MAX, 0,
                          &r->completion_tokens, err)) != 0 ||
            (rc = dais_jv_obj(o, NULL, "timings", false, &t, err)) != 0)
            return rc;
        if (t != NULL &&
            ((rc = dais_jv_num(t, "timings", "queue_ms", false, 0, big, 0, &tm->queue_ms, err)) !=
                 0 ||
             (rc = dais_jv_num(t, "timings", "ttft_ms", false, 0, big, 0, &tm->ttft_ms, err)) !=
                 0 ||
             (rc = dais_jv_num(t, "timings", "total_ms", false, 0, big, 0, &tm->total_ms, err)) !=
                 0 ||
             (rc = dais_jv_num(t, "timings", "prefill_ms", false, 0, big, 0, &tm->prefill_ms,
                               err)) != 0 ||
             (rc = dais_jv_num(t, "timings", "decode_ms", false, 0, big, 0, &tm->decode_ms, err)) !=
                 0 ||
             (rc = dais_jv_num(t, "timings", "prefill_tokens_per_s", false, 0, big, 0,
                               &tm->prefill_tokens_per_s, err)) != 0 ||
             (rc = dais_jv_num(t, "timings", "decode_tokens_per_s", false, 0, big, 0,
                               &tm->decode_tokens_per_s, err)) != 0))
            return rc;
        if (r->finish == DAIS_FINISH_ERROR &&
            ((rc = dais_jv_obj(o, NULL, "error", true, &e, err)) != 0 ||
             (rc = dais_jv_str_copy(e, "error", "code", true, 1, 32, r->error_code, err)) != 0 ||
             (rc = dais_jv_str_copy(e, "error", "message", false, 0, DAIS_TEXT_MAX,
                                    r->error_message, err)) != 0))
            return rc;
    }
    if (m->bin_len > 0) {
        int32_t *t = tokens_from_le(m->bin, m->bin_len, &r->n_tokens);
        if (t == NULL) return dais_err_set(err, DAIS_ENOMEM, "out of memory");
        r->tokens = t;
    }
    return 0;
}

void dais_infer_resp_clear(dais_msg_infer_resp *r)
{
    if (r == NULL) return;
    free((void *)r->tokens);
    memset(r, 0, sizeof(*r));
}

/* ---- SHARD_ACTIVATION ------------------------------------------------------------------ */

int dais_shard_encode_meta(const dais_msg_shard *a, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_SHARD_ACTIVATION);
    if (rc != 0) return rc;
    bool hidden = a->kind == DAIS_SHARD_HIDDEN;
    if ((a->kind != DAIS_SHARD_TOKENS && !hidden) || a->pos < 0 || a->n_tokens < 1 ||
        a->n_tokens > DAIS_SHARD_TOKENS_MAX || (hidden && (a->dim < 1 || a->dim > 65536)))
        return DAIS_EINVAL;
    json_t *o = m->data;
    if (dais_jv_set_str(o, "request_id", a->request_id) ||
        dais_jv_set_str(o, "kind", hidden ? "hidden" : "tokens") ||
        dais_jv_set_int(o, "pos", a->pos) || dais_jv_set_int(o, "n_tokens", a->n_tokens) ||
        (hidden && dais_jv_set_int(o, "dim", a->dim)) ||
        (a->deadline_ms > 0 && dais_jv_set_int(o, "deadline_ms", a->deadline_ms)))
        return DAIS_EINVAL;
    return 0;
}

int dais_shard_encode(const dais_msg_shard *a, dais_msg *m)
{
    bool hidden = a->kind == DAIS_SHARD_HIDDEN;
    if (hidden ? a->hidden == NULL : a->tokens == NULL) return DAIS_EINVAL;
    int rc = dais_shard_encode_meta(a, m);
    if (rc != 0) return rc;
    if (!hidden) return set_tokens_bin(m, a->tokens, a->n_tokens);
    uint64_t n = (uint64_t)a->n_tokens * (uint64_t)a->dim;
    if (n > UINT32_MAX / 4) return DAIS_ETOOBIG;
    uint8_t *b = malloc((size_t)n * 4);
    if (b == NULL) return DAIS_ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &a->hidden[i], 4);
        b[4 * i] = (uint8_t)u, b[4 * i + 1] = (uint8_t)(u >> 8);
        b[4 * i + 2] = (uint8_t)(u >> 16), b[4 * i + 3] = (uint8_t)(u >> 24);
    }
    dais_msg_take_bin(m, b, (uint32_t)(n * 4));
    return 0;
}

int dais_shard_decode_meta(const dais_msg *m, dais_msg_shard *a, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_SHARD_ACTIVATION, err);
    if (rc != 0) return rc;
    memset(a, 0, sizeof(*a));
    const json_t *o = m->data;
    char kind[8];
    int64_t v;
    if ((rc = get_ident(o, NULL, "request_id", true, DAIS_REQUEST_ID_MAX, a->request_id, err)) !=
            0 ||
        (rc = dais_jv_str_copy(o, NULL, "kind", true, 1, 7, kind, err)) != 0 ||
        (rc = get_i32(o, NULL, "pos", true, 0, INT32_MAX, 0, &a->pos, err)) != 0 ||
        (rc = get_i32(o, NULL, "n_tokens", true, 1, DAIS_SHARD_TOKENS_MAX, 0, &a->n_tokens, err)) !=
            0 ||
        (rc = dais_jv_int(o, NULL, "deadline_ms", false, 0, UINT32_MAX, 0, &v, err)) != 0)
        return rc;
    a->deadline_ms = (uint32_t)v;
    if (strcmp(kind, "tokens") == 0) {
        a->kind = DAIS_SHARD_TOKENS;
        if (m->bin_len != (uint64_t)a->n_tokens * 4)
            return dais_err_set(err, DAIS_EPROTO,
                                "tokens: %u bytes of binary payload for %d int32 ids", m->bin_len,
                                a->n_tokens);
        return 0;
    }
    if (strcmp(kind, "hidden") != 0)
        return dais_err_set(err, DAIS_EPROTO, "kind: '%s' is not tokens or hidden", kind);
    a->kind = DAIS_SHARD_HIDDEN;
    if ((rc = get_i32(o, NULL, "dim", true, 1, 65536, 0, &a->dim, err)) != 0) return rc;
    if (m->bin_len != (uint64_t)a->n_tokens * (uint64_t)a->dim * 4)
        return dais_err_set(err, DAIS_EPROTO,
                            "hidden: %u bytes of binary payload for %d x %d floats", m->bin_len,
                            a->n_tokens, a->dim);
    return 0;
}

int dais_shard_decode(const dais_msg *m, dais_msg_shard *a, dais_err *err)
{
    int rc = dais_shard_decode_meta(m, a, err);
    if (rc != 0) return rc;
    if (a->kind == DAIS_SHARD_TOKENS) {
        int32_t n;
        a->tokens = tokens_from_le(m->bin, m->bin_len, &n);
        if (a->tokens == NULL) return dais_err_set(err, DAIS_ENOMEM, "out of memory");
        for (int32_t i = 0; i < n; i++) {
            if (a->tokens[i] < 0) {
                int32_t bad = a->tokens[i];
                dais_shard_clear(a);
                return dais_err_set(err, DAIS_EPROTO, "tokens: id %d at %d is negative", bad, i);
            }
        }
        return 0;
    }
    uint64_t n = (uint64_t)a->n_tokens * (uint64_t)a->dim;
    a->hidden = malloc((size_t)n * sizeof(float));
    if (a->hidden == NULL) return dais_err_set(err, DAIS_ENOMEM, "out of memory");
    const uint8_t *b = m->bin;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 |
                     (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
        float f;
        memcpy(&f, &u, 4);
        if (!isfinite(f)) {
            dais_shard_clear(a);
            return dais_err_set(err, DAIS_EPROTO, "hidden: value %llu is not finite",
                                (unsigned long long)i);
        }
        a->hidden[i] = f;
    }
    return 0;
}

void dais_shard_clear(dais_msg_shard *a)
{
    if (a == NULL) return;
    free(a->tokens);
    free(a->hidden);
    memset(a, 0, sizeof(*a));
}

/* ---- CANCEL / DRAIN / ERROR ------------------------------------------------------------- */

int dais_cancel_encode(const dais_msg_cancel *c, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_CANCEL);
    if (rc != 0) return rc;
    if (dais_jv_set_str(m->data, "request_id", c->request_id) ||
        dais_jv_set_str(m->data, "reason", c->reason))
        return DAIS_EINVAL;
    return 0;
}

int dais_cancel_decode(const dais_msg *m, dais_msg_cancel *c, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_CANCEL, err);
    if (rc != 0) return rc;
    memset(c, 0, sizeof(*c));
    if ((rc = get_ident(m->data, NULL, "request_id", true, DAIS_REQUEST_ID_MAX, c->request_id,
                        err)) != 0 ||
        (rc = dais_jv_str_copy(m->data, NULL, "reason", false, 0, 64, c->reason, err)) != 0)
        return rc;
    return 0;
}

int dais_drain_encode(const dais_msg_drain *d, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_DRAIN);
    if (rc != 0) return rc;
    if (dais_jv_set_int(m->data, "deadline_ms", d->deadline_ms) ||
        dais_jv_set_str(m->data, "reason", d->reason))
        return DAIS_EINVAL;
    return 0;
}

int dais_drain_decode(const dais_msg *m, dais_msg_drain *d, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_DRAIN, err);
    if (rc != 0) return rc;
    memset(d, 0, sizeof(*d));
    int64_t v;
    if ((rc = dais_jv_int(m->data, NULL, "deadline_ms", false, 0, UINT32_MAX, 0, &v, err)) != 0 ||
        (rc = dais_jv_str_copy(m->data, NULL, "reason", false, 0, 64, d->reason, err)) != 0)
        return rc;
    d->deadline_ms = (uint32_t)v;
    return 0;
}

static const char *const perr_names[DAIS_PERR__COUNT] = {[DAIS_PERR_NONE] = "",
#define DAIS_PERR_STR(n, s) [DAIS_PERR_##n] = s,
                                                         DAIS_PERR_MAP(DAIS_PERR_STR)
#undef DAIS_PERR_STR
};

const char *dais_perr_name(enum dais_perr e)
{
    return (unsigned)e < DAIS_PERR__COUNT ? perr_names[e] : "";
}

enum dais_perr dais_perr_from_name(const char *s)
{
    for (int e = 1; e < DAIS_PERR__COUNT; e++)
        if (strcmp(perr_names[e], s) == 0) return (enum dais_perr)e;
    return DAIS_PERR_NONE;
}

int dais_error_encode(const dais_msg_error *e, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_ERROR);
    if (rc != 0) return rc;
    if (dais_jv_set_str(m->data, "code", e->code) ||
        dais_jv_set_str(m->data, "message", e->message) ||
        (e->request_id[0] != '\0' && dais_jv_set_str(m->data, "request_id", e->request_id)) ||
        (e->in_reply_to[0] != '\0' && dais_jv_set_str(m->data, "in_reply_to", e->in_reply_to)))
        return DAIS_EINVAL;
    return 0;
}

int dais_error_decode(const dais_msg *m, dais_msg_error *e, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_ERROR, err);
    if (rc != 0) return rc;
    memset(e, 0, sizeof(*e));
    if ((rc = dais_jv_str_copy(m->data, NULL, "code", true, 1, 32, e->code, err)) != 0 ||
        (rc = dais_jv_str_copy(m->data, NULL, "message", false, 0, DAIS_TEXT_MAX, e->message,
                               err)) != 0 ||
        (rc = get_ident(m->data, NULL, "request_id", false, DAIS_REQUEST_ID_MAX, e->request_id,
                        err)) != 0 ||
        (rc = dais_jv_str_copy(m->data, NULL, "in_reply_to", false, 0, 36, e->in_reply_to, err)) !=
            0)
        return rc;
    return 0;
}

/* ---- MODEL_SYNC_REQUEST / MODEL_SYNC_CHUNK ---------------------------------------------- */

/* A model as a sync request names it: 1..128 bytes, no control characters (so no newline in
 * the auth subject), no leading or trailing space — the master's model-name rule. */
static int get_sync_model(const json_t *o, char *dst, dais_err *err)
{
    int rc = dais_jv_str_copy(o, NULL, "model", true, 1, DAIS_NAME_MAX, dst, err);
    if (rc != 0) return rc;
    size_t n = strlen(dst);
    if (dst[0] == ' ' || dst[n - 1] == ' ')
        return dais_err_set(err, DAIS_EPROTO, "model: leading or trailing space");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
            return dais_err_set(err, DAIS_EPROTO, "model: control character at byte %zu", i);
    return 0;
}

static int get_sync_u64(const json_t *o, const char *key, uint64_t *out, dais_err *err)
{
    int64_t v;
    int rc = dais_jv_int(o, NULL, key, true, 0, (int64_t)DAIS_SYNC_SIZE_MAX, 0, &v, err);
    if (rc == 0) *out = (uint64_t)v;
    return rc;
}

int dais_sync_auth_subject(const char *node_id, const char *model, uint64_t offset, char *out,
                           size_t cap)
{
    if (node_id == NULL || model == NULL || strchr(node_id, '\n') != NULL ||
        strchr(model, '\n') != NULL)
        return DAIS_EINVAL;
    int n =
        snprintf(out, cap, "model-sync\n%s\n%s\n%llu", node_id, model, (unsigned long long)offset);
    return n < 0 || (size_t)n >= cap ? DAIS_EINVAL : 0;
}

int dais_sync_auth_subject_layers(const char *node_id, const char *model, uint64_t offset,
                                  int32_t layer_first, int32_t layer_last, char *out, size_t cap)
{
    int rc = dais_sync_auth_subject(node_id, model, offset, out, cap);
    if (rc != 0 || layer_last == 0) return rc;
    size_t used = strlen(out);
    int n = snprintf(out + used, cap - used, "\nlayers %d:%d", (int)layer_first, (int)layer_last);
    return n < 0 || (size_t)n >= cap - used ? DAIS_EINVAL : 0;
}

int dais_sync_req_encode(const dais_msg_sync_req *r, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_MODEL_SYNC_REQUEST);
    if (rc != 0) return rc;
    if (r->offset > DAIS_SYNC_SIZE_MAX || r->model[0] == '\0') return DAIS_EINVAL;
    json_t *o = m->data, *auth;
    if (dais_jv_set_str(o, "node_id", r->node_id) ||
        dais_jv_set_int(o, "protocol_version", r->protocol_version) ||
        dais_jv_set_str(o, "model", r->model) || dais_jv_set_int(o, "offset", (int64_t)r->offset) ||
        (auth = dais_jv_set_obj(o, "auth")) == NULL ||
        dais_jv_set_int(auth, "timestamp_ms", r->auth.timestamp_ms) ||
        dais_jv_set_str(auth, "nonce", r->auth.nonce) ||
        dais_jv_set_str(auth, "hmac", r->auth.hmac))
        return DAIS_EINVAL;
    if (r->layer_last > 0) {
        if (r->layer_first < 0 || r->layer_first >= r->layer_last || r->layer_last > 1024)
            return DAIS_EINVAL;
        json_t *a = json_array();
        if (a == NULL || json_array_append_new(a, json_integer(r->layer_first)) != 0 ||
            json_array_append_new(a, json_integer(r->layer_last)) != 0 ||
            json_object_set_new(o, "layers", a) != 0)
            return DAIS_EINVAL;
    }
    return 0;
}

int dais_sync_req_decode(const dais_msg *m, dais_msg_sync_req *r, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_MODEL_SYNC_REQUEST, err);
    if (rc != 0) return rc;
    memset(r, 0, sizeof(*r));
    const json_t *o = m->data;
    json_t *auth;
    int64_t v;
    if ((rc = get_ident(o, NULL, "node_id", true, DAIS_NODE_ID_MAX, r->node_id, err)) != 0)
        return rc;
    if (strcmp(r->node_id, m->source) != 0)
        return dais_err_set(err, DAIS_EPROTO, "node_id '%s' differs from source_node '%s'",
                            r->node_id, m->source);
    if ((rc = dais_jv_int(o, NULL, "protocol_version", true, 0, UINT32_MAX, 0, &v, err)) != 0)
        return rc;
    r->protocol_version = (uint32_t)v;
    if ((rc = get_sync_model(o, r->model, err)) != 0) return rc;
    if ((rc = dais_jv_int(o, NULL, "offset", false, 0, (int64_t)DAIS_SYNC_SIZE_MAX, 0, &v, err)) !=
        0)
        return rc;
    r->offset = (uint64_t)v;
    const json_t *layers = json_object_get(o, "layers");
    if (layers != NULL && !json_is_null(layers)) {
        const json_t *a0 = json_array_get(layers, 0), *a1 = json_array_get(layers, 1);
        if (!json_is_array(layers) || json_array_size(layers) != 2 || !json_is_integer(a0) ||
            !json_is_integer(a1))
            return dais_err_set(err, DAIS_EPROTO, "layers must be an array [first, last]");
        json_int_t f = json_integer_value(a0), l = json_integer_value(a1);
        if (f < 0 || f >= l || l > 1024)
            return dais_err_set(err, DAIS_EPROTO,
                                "layers [%lld, %lld] is not 0 <= first < last <= 1024",
                                (long long)f, (long long)l);
        r->layer_first = (int32_t)f;
        r->layer_last = (int32_t)l;
    }
    if ((rc = dais_jv_obj(o, NULL, "auth", true, &auth, err)) != 0 ||
        (rc = dais_jv_int(auth, "auth", "timestamp_ms", true, INT64_MIN, INT64_MAX, 0,
                          &r->auth.timestamp_ms, err)) != 0 ||
        (rc = get_hex(auth, "auth", "nonce", DAIS_NONCE_HEX_LEN, r->auth.nonce, err)) != 0 ||
        (rc = get_hex(auth, "auth", "hmac", DAIS_MAC_HEX_LEN, r->auth.hmac, err)) != 0)
        return rc;
    return 0;
}

/* The chunk invariants both directions check: the bytes lie within the file and `final`
 * says whether they reach its end; only the final chunk may be empty. */
static bool sync_chunk_consistent(uint64_t size, uint64_t offset, uint32_t len, bool final)
{
    if (size > DAIS_SYNC_SIZE_MAX || offset > size || len > size - offset) return false;
    if (final != (offset + len == size)) return false;
    return final || len > 0;
}

int dais_sync_chunk_encode(const dais_msg_sync_chunk *c, dais_msg *m)
{
    int rc = begin(m, DAIS_MSG_MODEL_SYNC_CHUNK);
    if (rc != 0) return rc;
    if (!sync_chunk_consistent(c->size, c->offset, c->len, c->final) || c->model[0] == '\0' ||
        !dais_hex_valid(c->sha256, 64))
        return DAIS_EINVAL;
    json_t *o = m->data;
    if (dais_jv_set_str(o, "model", c->model) || dais_jv_set_str(o, "sha256", c->sha256) ||
        dais_jv_set_int(o, "size", (int64_t)c->size) ||
        dais_jv_set_int(o, "offset", (int64_t)c->offset) || dais_jv_set_bool(o, "final", c->final))
        return DAIS_EINVAL;
    if (c->data != NULL) return dais_msg_set_bin(m, c->data, c->len);
    dais_msg_take_bin(m, NULL, 0);
    return 0;
}

int dais_sync_chunk_decode(const dais_msg *m, dais_msg_sync_chunk *c, dais_err *err)
{
    int rc = want_type(m, DAIS_MSG_MODEL_SYNC_CHUNK, err);
    if (rc != 0) return rc;
    memset(c, 0, sizeof(*c));
    const json_t *o = m->data;
    if ((rc = get_sync_model(o, c->model, err)) != 0 ||
        (rc = get_hex(o, NULL, "sha256", 64, c->sha256, err)) != 0 ||
        (rc = get_sync_u64(o, "size", &c->size, err)) != 0 ||
        (rc = get_sync_u64(o, "offset", &c->offset, err)) != 0 ||
        (rc = dais_jv_bool(o, NULL, "final", true, false, &c->final, err)) != 0)
        return rc;
    if (c->offset > c->size)
        return dais_err_set(err, DAIS_EPROTO, "offset %llu beyond size %llu",
                            (unsigned long long)c->offset, (unsigned long long)c->size);
    if (m->bin_len > c->size - c->offset)
        return dais_err_set(err, DAIS_EPROTO, "%u bytes at offset %llu run past size %llu",
                            m->bin_len, (unsigned long long)c->offset, (unsigned long long)c->size);
    uint64_t end = c->offset + m->bin_len;
    if (c->final != (end == c->size))
        return dais_err_set(err, DAIS_EPROTO, "final: %s, but the chunk ends at %llu of %llu",
                            c->final ? "true" : "false", (unsigned long long)end,
                            (unsigned long long)c->size);
    if (!sync_chunk_consistent(c->size, c->offset, m->bin_len, c->final))
        return dais_err_set(err, DAIS_EPROTO, "an empty chunk must be the final one");
    c->data = m->bin;
    c->len = m->bin_len;
    return 0;
}
