/*
 * W3C Trace Context and OTLP/HTTP JSON span export (see trace.h).
 *
 * Threads. Any thread starts, annotates and ends spans. dais_span_end pushes the span on the
 * tracer's ring (one short mutex hold; full ring = drop and count). One export thread per
 * tracer pops batches, encodes them with jansson and POSTs them with a reused libcurl easy
 * handle under a whole-request timeout; a failed POST drops its batch and counts it.
 */
#include "common/trace.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metric_names.h"

#include <curl/curl.h>
#include <jansson.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- ids ------------------------------------------------------------------------------- */

static _Thread_local uint8_t t_rand[512];
static _Thread_local size_t t_rand_pos = sizeof(t_rand);

/* Last resort when getrandom fails (it does not on any supported kernel): a splitmix64
 * stream seeded from the clocks and an address, so ids stay unique enough to trace. */
static void fallback_fill(uint8_t *buf, size_t n)
{
    static _Atomic uint64_t ctr;
    uint64_t x = dais_now_ns() ^ (uint64_t)(uintptr_t)buf ^ (uint64_t)time(NULL) << 20;
    x += atomic_fetch_add(&ctr, 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; i < n; i += 8) {
        x += 0x9e3779b97f4a7c15ull;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(buf + i, &z, k);
    }
}

static void rand_bytes(uint8_t *out, size_t n)
{
    while (n > 0) {
        if (t_rand_pos == sizeof(t_rand)) {
            size_t got = 0;
            while (got < sizeof(t_rand)) {
                ssize_t r = getrandom(t_rand + got, sizeof(t_rand) - got, 0);
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) break;
                got += (size_t)r;
            }
            if (got < sizeof(t_rand)) fallback_fill(t_rand + got, sizeof(t_rand) - got);
            t_rand_pos = 0;
        }
        size_t k = sizeof(t_rand) - t_rand_pos;
        if (k > n) k = n;
        memcpy(out, t_rand + t_rand_pos, k);
        memset(t_rand + t_rand_pos, 0, k); /* an id is handed out once */
        t_rand_pos += k;
        out += k;
        n -= k;
    }
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0) return false;
    return true;
}

static void new_id(uint8_t *out, size_t n)
{
    do {
        rand_bytes(out, n);
    } while (all_zero(out, n));
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void dais_trace_id_hex(const uint8_t id[16], char out[33])
{
    hex_encode(id, 16, out);
}

void dais_span_id_hex(const uint8_t id[8], char out[17])
{
    hex_encode(id, 8, out);
}

void dais_trace_ctx_child(const dais_trace_ctx *parent, dais_trace_ctx *out)
{
    if (parent != NULL && parent->valid) {
        memcpy(out->trace_id, parent->trace_id, sizeof(out->trace_id));
        out->flags = parent->flags;
    } else {
        new_id(out->trace_id, sizeof(out->trace_id));
        out->flags = DAIS_TRACE_FLAG_SAMPLED;
    }
    new_id(out->span_id, sizeof(out->span_id));
    out->valid = true;
}

void dais_trace_log_bind(const dais_trace_ctx *ctx)
{
    if (ctx == NULL || !ctx->valid) {
        dais_log_set_trace(NULL);
        return;
    }
    char hex[33];
    hex_encode(ctx->trace_id, 16, hex);
    dais_log_set_trace(hex);
}

/* ---- traceparent / tracestate ---------------------------------------------------------- */

/* Lower-case hex digit value, or -1. */
static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static bool hex_decode(const char *s, size_t n_bytes, uint8_t *out)
{
    for (size_t i = 0; i < n_bytes; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

int dais_traceparent_parse(const char *s, size_t len, dais_trace_ctx *out)
{
    dais_trace_ctx c;
    memset(&c, 0, sizeof(c));
    memset(out, 0, sizeof(*out));
    if (s == NULL || len < DAIS_TRACEPARENT_LEN) return DAIS_EFORMAT;
    uint8_t version, flags;
    if (!hex_decode(s, 1, &version) || version == 0xff) return DAIS_EFORMAT;
    /* version 00 is exactly 55 bytes; a later version may append "-…" fields */
    if (len != DAIS_TRACEPARENT_LEN && (version == 0 || s[DAIS_TRACEPARENT_LEN] != '-'))
        return DAIS_EFORMAT;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-') return DAIS_EFORMAT;
    if (!hex_decode(s + 3, 16, c.trace_id) || !hex_decode(s + 36, 8, c.span_id) ||
        !hex_decode(s + 53, 1, &flags))
        return DAIS_EFORMAT;
    if (all_zero(c.trace_id, 16) || all_zero(c.span_id, 8)) return DAIS_EFORMAT;
    c.flags = flags & DAIS_TRACE_FLAG_SAMPLED; /* the only flag version 00 defines */
    c.valid = true;
    *out = c;
    return 0;
}

int dais_traceparent_format(const dais_trace_ctx *ctx, char out[DAIS_TRACEPARENT_LEN + 1])
{
    out[0] = '\0';
    if (ctx == NULL || !ctx->valid) return DAIS_EINVAL;
    char tid[33], sid[17];
    hex_encode(ctx->trace_id, 16, tid);
    hex_encode(ctx->span_id, 8, sid);
    snprintf(out, DAIS_TRACEPARENT_LEN + 1, "00-%s-%s-%02x", tid, sid,
             ctx->flags & DAIS_TRACE_FLAG_SAMPLED);
    return 0;
}

static bool is_lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_key_char(char c)
{
    return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

/* key = lcalpha 0*255(keychar) / (lcalpha|DIGIT) 0*240(keychar) "@" lcalpha 0*13(keychar) */
static bool tracestate_key_valid(const char *k, size_t n)
{
    if (n == 0) return false;
    const char *at = memchr(k, '@', n);
    if (at == NULL) {
        if (n > 256 || !is_lcalpha(k[0])) return false;
        for (size_t i = 1; i < n; i++)
            if (!is_key_char(k[i])) return false;
        return true;
    }
    size_t tn = (size_t)(at - k), sn = n - tn - 1;
    if (tn == 0 || tn > 241 || sn == 0 || sn > 14) return false;
    if (!is_lcalpha(k[0]) && !is_digit(k[0])) return false;
    for (size_t i = 1; i < tn; i++)
        if (!is_key_char(k[i])) return false;
    if (!is_lcalpha(at[1])) return false;
    for (size_t i = 1; i < sn; i++)
        if (!is_key_char(at[1 + i])) return false;
    return true;
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E */
static bool tracestate_value_valid(const char *v, size_t n)
{
    if (n == 0 || n > 256) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=') return false;
    }
    return v[n - 1] != ' ';
}

bool dais_tracestate_valid(const char *s, size_t len)
{
    if (s == NULL || len > DAIS_TRACESTATE_MAX) return false;
    size_t members = 0;
    size_t i = 0;
    for (;;) {
        size_t start = i;
        while (i < len && s[i] != ',')
            i++;
        size_t a = start, b = i;
        while (a < b && (s[a] == ' ' || s[a] == '\t'))
            a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
            b--;
        if (b > a) {
            const char *eq = memchr(s + a, '=', b - a);
            if (eq == NULL) return false;
            size_t kn = (size_t)(eq - (s + a));
            if (!tracestate_key_valid(s + a, kn) || !tracestate_value_valid(eq + 1, b - a - kn - 1))
                return false;
            if (++members > 32) return false;
        }
        if (i >= len) return true;
        i++; /* the comma */
    }
}

/* ---- spans ----------------------------------------------------------------------------- */

#define SPAN_NAME_MAX   64
#define SPAN_KEY_MAX    32
#define SPAN_ARENA      768
#define SPAN_STATUS_MAX 128

typedef struct span_attr {
    char key[SPAN_KEY_MAX];
    bool is_int;
    int64_t ival;
    uint16_t off; /* string value: offset into the span's arena */
} span_attr;

struct dais_span {
    dais_tracer *t;
    dais_trace_ctx ctx;
    uint8_t parent_id[8];
    bool has_parent;
    enum dais_span_kind kind;
    enum dais_span_status status;
    uint64_t start_unix_ns;
    uint64_t start_mono_ns;
    uint64_t end_unix_ns;
    char name[SPAN_NAME_MAX];
    char status_msg[SPAN_STATUS_MAX];
    unsigned n_attrs;
    span_attr attrs[DAIS_SPAN_MAX_ATTRS];
    size_t arena_used;
    char arena[SPAN_ARENA];
};

/* Copies at most cap-1 bytes of `s` as valid UTF-8 into `out` (NUL-terminated): malformed
 * sequences and control bytes become '?', and a character that does not fit is cut whole,
 * so the JSON encoder never meets bytes it would reject. Returns the bytes written. */
static size_t utf8_copy(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    while (*p != '\0') {
        size_t k = 1;
        unsigned char c = p[0];
        bool ok = true;
        if (c < 0x80) {
            ok = c >= 0x20 || c == '\t';
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 4;
        } else {
            ok = false;
        }
        for (size_t i = 1; ok && i < k; i++)
            if ((p[i] & 0xc0) != 0x80) ok = false;
        if (ok && k == 3) { /* no overlongs, no surrogates */
            if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)) ok = false;
        } else if (ok && k == 4) {
            if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)) ok = false;
        }
        if (!ok) k = 1;
        if (n + k + 1 > cap) break;
        if (ok)
            memcpy(out + n, p, k);
        else
            out[n] = '?';
        n += k;
        p += k;
    }
    out[n] = '\0';
    return n;
}

static uint64_t unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- tracer ---------------------------------------------------------------------------- */

struct dais_tracer {
    bool enabled;
    char *url; /* {endpoint}/v1/traces */
    char *service;
    char *instance;
    size_t batch_max;
    unsigned flush_ms;
    unsigned timeout_ms;

    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work for the export thread */
    pthread_cond_t done_cv; /* progress for dais_tracer_flush */
    dais_span **ring;       /* (queue_max) */
    dais_span **batch;      /* (batch_max) the export thread's current batch */
    size_t queue_max, head, count;
    uint64_t pushed;  /* spans ever queued (under mu) */
    uint64_t handled; /* queued spans exported or dropped by the thread (under mu) */
    unsigned flush_waiters;
    bool stop;
    pthread_t thread;
    bool thread_started;

    _Atomic uint64_t started, exported, dropped_queue, dropped_export, batches_failed;
    dais_counter *m_exported, *m_drop_queue, *m_drop_export, *m_batch_ok, *m_batch_err;
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

bool dais_tracer_enabled(const dais_tracer *t)
{
    return t != NULL && t->enabled;
}

dais_span *dais_span_start(dais_tracer *t, const char *name, enum dais_span_kind kind,
                           const dais_trace_ctx *parent, dais_trace_ctx *ctx_out)
{
    dais_trace_ctx ctx;
    dais_trace_ctx_child(parent, &ctx);
    if (ctx_out != NULL) *ctx_out = ctx;
    if (t == NULL || !t->enabled || !(ctx.flags & DAIS_TRACE_FLAG_SAMPLED)) return NULL;
    dais_span *s = malloc(sizeof(*s));
    if (s == NULL) return NULL;
    s->t = t;
    s->ctx = ctx;
    s->has_parent = parent != NULL && parent->valid;
    if (s->has_parent) memcpy(s->parent_id, parent->span_id, sizeof(s->parent_id));
    s->kind =
        (kind >= DAIS_SPAN_INTERNAL && kind <= DAIS_SPAN_CONSUMER) ? kind : DAIS_SPAN_INTERNAL;
    s->status = DAIS_SPAN_UNSET;
    s->status_msg[0] = '\0';
    s->n_attrs = 0;
    s->arena_used = 0;
    s->end_unix_ns = 0;
    utf8_copy(s->name, sizeof(s->name), name);
    s->start_unix_ns = unix_ns();
    s->start_mono_ns = dais_now_ns();
    atomic_fetch_add_explicit(&t->started, 1, memory_order_relaxed);
    return s;
}

static span_attr *attr_slot(dais_span *s, const char *key)
{
    if (s == NULL || key == NULL) return NULL;
    for (unsigned i = 0; i < s->n_attrs; i++)
        if (strncmp(s->attrs[i].key, key, SPAN_KEY_MAX - 1) == 0)
            return NULL; /* first value wins: attributes are set once */
    if (s->n_attrs >= DAIS_SPAN_MAX_ATTRS) return NULL;
    span_attr *a = &s->attrs[s->n_attrs];
    utf8_copy(a->key, sizeof(a->key), key);
    if (a->key[0] == '\0') return NULL;
    return a;
}

void dais_span_set_str(dais_span *s, const char *key, const char *value)
{
    span_attr *a = attr_slot(s, key);
    if (a == NULL || s->arena_used >= sizeof(s->arena)) return;
    a->is_int = false;
    a->off = (uint16_t)s->arena_used;
    size_t n = utf8_copy(s->arena + s->arena_used, sizeof(s->arena) - s->arena_used, value);
    s->arena_used += n + 1;
    s->n_attrs++;
}

void dais_span_set_int(dais_span *s, const char *key, int64_t value)
{
    span_attr *a = attr_slot(s, key);
    if (a == NULL) return;
    a->is_int = true;
    a->ival = value;
    s->n_attrs++;
}

void dais_span_set_status(dais_span *s, enum dais_span_status st, const char *message)
{
    if (s == NULL) return;
    s->status = (st >= DAIS_SPAN_UNSET && st <= DAIS_SPAN_ERROR) ? st : DAIS_SPAN_UNSET;
    utf8_copy(s->status_msg, sizeof(s->status_msg), message);
}

void dais_span_ctx(const dais_span *s, dais_trace_ctx *out)
{
    if (s == NULL)
        memset(out, 0, sizeof(*out));
    else
        *out = s->ctx;
}

void dais_span_end(dais_span *s)
{
    if (s == NULL) return;
    dais_tracer *t = s->t;
    uint64_t mono = dais_now_ns();
    s->end_unix_ns = s->start_unix_ns + (mono > s->start_mono_ns ? mono - s->start_mono_ns : 0);
    pthread_mutex_lock(&t->mu);
    if (t->count >= t->queue_max || t->stop) {
        pthread_mutex_unlock(&t->mu);
        atomic_fetch_add_explicit(&t->dropped_queue, 1, memory_order_relaxed);
        dais_counter_inc(t->m_drop_queue);
        free(s);
        return;
    }
    t->ring[(t->head + t->count) % t->queue_max] = s;
    t->count++;
    t->pushed++;
    bool wake = t->count == t->batch_max;
    pthread_mutex_unlock(&t->mu);
    if (wake) pthread_cond_signal(&t->cv);
}

/* ---- OTLP JSON ------------------------------------------------------------------------- */

static json_t *kv_string(const char *key, const char *value)
{
    return json_pack("{s:s, s:{s:s}}", "key", key, "value", "stringValue", value);
}

static json_t *u64_string(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
    return json_string(b);
}

/* Appends to `arr` (stealing `v`); false when `v` is NULL or the append fails. */
static bool push(json_t *arr, json_t *v)
{
    return v != NULL && json_array_append_new(arr, v) == 0;
}

static json_t *encode_span(const dais_span *s)
{
    char tid[33], sid[17], pid[17];
    hex_encode(s->ctx.trace_id, 16, tid);
    hex_encode(s->ctx.span_id, 8, sid);
    json_t *o = json_object();
    json_t *attrs = json_array();
    if (o == NULL || attrs == NULL) goto fail;
    if (json_object_set_new(o, "traceId", json_string(tid)) != 0 ||
        json_object_set_new(o, "spanId", json_string(sid)) != 0 ||
        json_object_set_new(o, "name", json_string(s->name)) != 0 ||
        json_object_set_new(o, "kind", json_integer(s->kind)) != 0 ||
        json_object_set_new(o, "startTimeUnixNano", u64_string(s->start_unix_ns)) != 0 ||
        json_object_set_new(o, "endTimeUnixNano", u64_string(s->end_unix_ns)) != 0)
        goto fail;
    if (s->has_parent) {
        hex_encode(s->parent_id, 8, pid);
        if (json_object_set_new(o, "parentSpanId", json_string(pid)) != 0) goto fail;
    }
    for (unsigned i = 0; i < s->n_attrs; i++) {
        const span_attr *a = &s->attrs[i];
        json_t *kv;
        if (a->is_int) {
            char b[24];
            snprintf(b, sizeof(b), "%lld", (long long)a->ival);
            kv = json_pack("{s:s, s:{s:s}}", "key", a->key, "value", "intValue", b);
        } else {
            kv = kv_string(a->key, s->arena + a->off);
        }
        if (!push(attrs, kv)) goto fail;
    }
    if (json_object_set_new(o, "attributes", attrs) != 0) {
        attrs = NULL;
        goto fail;
    }
    attrs = NULL;
    json_t *st = json_pack("{s:i}", "code", (int)s->status);
    if (st != NULL && s->status_msg[0] != '\0')
        json_object_set_new(st, "message", json_string(s->status_msg));
    if (st == NULL || json_object_set_new(o, "status", st) != 0) goto fail;
    return o;
fail:
    json_decref(attrs);
    json_decref(o);
    return NULL;
}

char *dais_trace_encode_otlp(const dais_tracer *t, dais_span *const *spans, size_t n)
{
    if (t == NULL) return NULL;
    char *out = NULL;
    json_t *res_attrs = json_array();
    json_t *arr = json_array();
    json_t *root = NULL;
    if (res_attrs == NULL || arr == NULL) goto done;
    if (!push(res_attrs, kv_string("service.name", t->service))) goto done;
    if (t->instance != NULL && !push(res_attrs, kv_string("service.instance.id", t->instance)))
        goto done;
    for (size_t i = 0; i < n; i++)
        if (!push(arr, encode_span(spans[i]))) goto done;
    root = json_pack("{s:[{s:{s:o}, s:[{s:{s:s, s:s}, s:o}]}]}", "resourceSpans", "resource",
                     "attributes", res_attrs, "scopeSpans", "scope", "name", "dais", "version",
                     DAIS_VERSION, "spans", arr);
    res_attrs = arr = NULL; /* "o" steals the references, even on failure */
    if (root != NULL) out = json_dumps(root, JSON_COMPACT);
done:
    json_decref(res_attrs);
    json_decref(arr);
    json_decref(root);
    return out;
}

/* ---- export thread --------------------------------------------------------------------- */

static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* POSTs one batch; returns true when the collector answered 2xx. */
static bool export_batch(dais_tracer *t, CURL *curl, struct curl_slist *hdrs, dais_span **batch,
                         size_t n)
{
    char *body = dais_trace_encode_otlp(t, batch, n);
    if (body == NULL) return false;
    curl_easy_setopt(curl, CURLOPT_URL, t->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    free(body);
    return rc == CURLE_OK && status >= 200 && status < 300;
}

static void *export_main(void *arg)
{
    dais_tracer *t = arg;
    CURL *curl = curl_easy_init();
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    dais_span **batch = t->batch;
    bool last_failed = false;

    pthread_mutex_lock(&t->mu);
    for (;;) {
        if (t->stop && t->count == 0) break;
            /* Sleep until a batch is full, a flush or stop is asked, or flush_ms passed. Ending a
             * span wakes this thread only when it fills a batch, so the request path rarely pays
             * for a wake-up; an idle tracer wakes once per flush_ms. */
#define EXPORT_SHOULD_WAIT(t)                                                                      \
    (!(t)->stop && ((t)->count == 0 || ((t)->count < (t)->batch_max && (t)->flush_waiters == 0)))
        if (EXPORT_SHOULD_WAIT(t)) {
            struct timespec dl;
            clock_gettime(CLOCK_MONOTONIC, &dl);
            uint64_t ns = (uint64_t)dl.tv_nsec + (uint64_t)t->flush_ms * 1000000ull;
            dl.tv_sec += (time_t)(ns / 1000000000ull);
            dl.tv_nsec = (long)(ns % 1000000000ull);
            while (EXPORT_SHOULD_WAIT(t)) {
                if (pthread_cond_timedwait(&t->cv, &t->mu, &dl) == ETIMEDOUT) break;
            }
        }
#undef EXPORT_SHOULD_WAIT
        if (t->count == 0) continue;
        size_t n = 0;
        while (n < t->batch_max && t->count > 0) {
            batch[n++] = t->ring[t->head];
            t->head = (t->head + 1) % t->queue_max;
            t->count--;
        }
        bool stopping = t->stop;
        pthread_mutex_unlock(&t->mu);

        /* While stopping, one failure means the collector is gone: drop the rest. */
        bool ok = false;
        if (!(stopping && last_failed) && curl != NULL && hdrs != NULL)
            ok = export_batch(t, curl, hdrs, batch, n);
        last_failed = !ok;
        if (ok) {
            atomic_fetch_add_explicit(&t->exported, n, memory_order_relaxed);
            dais_counter_add(t->m_exported, n);
            dais_counter_inc(t->m_batch_ok);
        } else {
            atomic_fetch_add_explicit(&t->dropped_export, n, memory_order_relaxed);
            atomic_fetch_add_explicit(&t->batches_failed, 1, memory_order_relaxed);
            dais_counter_add(t->m_drop_export, n);
            dais_counter_inc(t->m_batch_err);
        }
        for (size_t i = 0; i < n; i++)
            free(batch[i]);

        pthread_mutex_lock(&t->mu);
        t->handled += n;
        pthread_cond_broadcast(&t->done_cv);
    }
    pthread_mutex_unlock(&t->mu);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(curl);
    return NULL;
}

static bool endpoint_valid(const char *e)
{
    size_t n = strlen(e);
    if (n > 1024) return false;
    if (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)e[i];
        if (c <= 0x20 || c >= 0x7f) return false;
    }
    return true;
}

dais_tracer *dais_tracer_new(const dais_tracer_config *cfg, dais_err *err)
{
    dais_tracer *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "tracer: out of memory");
        return NULL;
    }
    bool mu_ok = false, cv_ok = false, done_ok = false;
    const char *endpoint = cfg != NULL ? cfg->endpoint : NULL;
    t->service = strdup(cfg != NULL && cfg->service_name != NULL ? cfg->service_name : "dais");
    if (cfg != NULL && cfg->instance_id != NULL) t->instance = strdup(cfg->instance_id);
    if (t->service == NULL || (cfg != NULL && cfg->instance_id != NULL && t->instance == NULL)) {
        dais_err_set(err, DAIS_ENOMEM, "tracer: out of memory");
        goto fail;
    }
    if (endpoint == NULL || endpoint[0] == '\0') return t; /* disabled: nothing else to set up */

    if (!endpoint_valid(endpoint)) {
        dais_err_set(err, DAIS_EINVAL, "OTLP endpoint must be an http:// or https:// URL: %.64s",
                     endpoint);
        goto fail;
    }
    size_t n = strlen(endpoint);
    while (n > 0 && endpoint[n - 1] == '/')
        n--;
    if (asprintf(&t->url, "%.*s/v1/traces", (int)n, endpoint) < 0) {
        t->url = NULL;
        dais_err_set(err, DAIS_ENOMEM, "tracer: out of memory");
        goto fail;
    }
    t->queue_max = cfg->queue_max != 0 ? cfg->queue_max : 2048;
    t->batch_max = cfg->batch_max != 0 ? cfg->batch_max : 512;
    if (t->batch_max > t->queue_max) t->batch_max = t->queue_max;
    t->flush_ms = cfg->flush_ms != 0 ? cfg->flush_ms : 1000;
    t->timeout_ms = cfg->timeout_ms != 0 ? cfg->timeout_ms : 2000;
    t->ring = calloc(t->queue_max, sizeof(dais_span *));
    t->batch = calloc(t->batch_max, sizeof(dais_span *));
    if (t->ring == NULL || t->batch == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "tracer: out of memory");
        goto fail;
    }

    dais_metrics_registry *reg = cfg->metrics != NULL ? cfg->metrics : dais_metrics_default();
    static const char *const reason[] = {"reason"};
    static const char *const result[] = {"result"};
    dais_metric_family *drop = dais_metrics_family_new(
        reg, DAIS_METRIC_COUNTER, DAIS_M_TRACE_DROPPED,
        "Spans dropped instead of exported (queue full, export failed).", 1, reason, 0, NULL);
    dais_metric_family *batches =
        dais_metrics_family_new(reg, DAIS_METRIC_COUNTER, DAIS_M_TRACE_BATCHES,
                                "OTLP export requests by result.", 1, result, 0, NULL);
    t->m_drop_queue = dais_counter_child(drop, (const char *[]){"queue_full"});
    t->m_drop_export = dais_counter_child(drop, (const char *[]){"export_failed"});
    t->m_batch_ok = dais_counter_child(batches, (const char *[]){"ok"});
    t->m_batch_err = dais_counter_child(batches, (const char *[]){"error"});
    t->m_exported =
        dais_counter_new(reg, DAIS_M_TRACE_EXPORTED, "Spans accepted by the OTLP collector.");

    pthread_once(&g_curl_once, curl_init_once);
    mu_ok = pthread_mutex_init(&t->mu, NULL) == 0;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) == 0) {
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        cv_ok = pthread_cond_init(&t->cv, &ca) == 0;
        pthread_condattr_destroy(&ca);
    }
    done_ok = pthread_cond_init(&t->done_cv, NULL) == 0;
    if (!mu_ok || !cv_ok || !done_ok) {
        dais_err_set(err, DAIS_EINTERNAL, "tracer: cannot create synchronisation objects");
        goto fail;
    }
    t->enabled = true;
    if (pthread_create(&t->thread, NULL, export_main, t) != 0) {
        dais_err_set(err, DAIS_EINTERNAL, "tracer: cannot start the export thread");
        goto fail;
    }
    t->thread_started = true;
    return t;
fail:
    if (done_ok) pthread_cond_destroy(&t->done_cv);
    if (cv_ok) pthread_cond_destroy(&t->cv);
    if (mu_ok) pthread_mutex_destroy(&t->mu);
    free(t->ring);
    free(t->batch);
    free(t->url);
    free(t->instance);
    free(t->service);
    free(t);
    return NULL;
}

int dais_tracer_flush(dais_tracer *t, unsigned timeout_ms)
{
    if (t == NULL || !t->enabled) return 0;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    uint64_t ns = (uint64_t)dl.tv_nsec + (uint64_t)timeout_ms * 1000000ull;
    dl.tv_sec += (time_t)(ns / 1000000000ull);
    dl.tv_nsec = (long)(ns % 1000000000ull);
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    uint64_t target = t->pushed;
    t->flush_waiters++;
    pthread_cond_signal(&t->cv);
    while (t->handled < target) {
        if (pthread_cond_timedwait(&t->done_cv, &t->mu, &dl) == ETIMEDOUT) {
            rc = t->handled < target ? DAIS_ETIMEOUT : 0;
            break;
        }
    }
    t->flush_waiters--;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void dais_tracer_get_stats(const dais_tracer *t, dais_tracer_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (t == NULL) return;
    dais_tracer *m = (dais_tracer *)t;
    out->started = atomic_load(&m->started);
    out->exported = atomic_load(&m->exported);
    out->dropped_queue = atomic_load(&m->dropped_queue);
    out->dropped_export = atomic_load(&m->dropped_export);
    out->batches_failed = atomic_load(&m->batches_failed);
}

void dais_tracer_free(dais_tracer *t)
{
    if (t == NULL) return;
    if (t->thread_started) {
        pthread_mutex_lock(&t->mu);
        t->stop = true;
        pthread_mutex_unlock(&t->mu);
        pthread_cond_signal(&t->cv);
        pthread_join(t->thread, NULL);
    }
    if (t->enabled) {
        pthread_cond_destroy(&t->done_cv);
        pthread_cond_destroy(&t->cv);
        pthread_mutex_destroy(&t->mu);
    }
    free(t->ring);
    free(t->batch);
    free(t->url);
    free(t->instance);
    free(t->service);
    free(t);
}
