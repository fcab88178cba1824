/*
 * MODEL_SYNC_REQUEST / MODEL_SYNC_CHUNK codecs (proto/messages.h): both round-trip through
 * encode → frame → decode with every field intact; the decoders refuse each invalid field
 * (missing, wrong type, out of range, inconsistent with the binary payload) naming it; the
 * encoders refuse what the decoders would; the auth subject separates sync proofs from
 * registrations.
 */
#include "proto/frame.h"
#include "proto/messages.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Encodes m to a frame and decodes it again (what the peer sees). */
static dais_msg *wire(const dais_msg *m)
{
    uint8_t *f;
    size_t n, used;
    assert_int_equal(dais_frame_encode(m, NULL, &f, &n), 0);
    dais_msg *r;
    dais_err err;
    assert_int_equal(dais_frame_decode_msg(f, n, NULL, &r, &used, &err), 0);
    assert_int_equal(used, n);
    free(f);
    return r;
}

/* Replaces the value at a dotted path of m->data ("auth.nonce") with JSON text; NULL json
 * deletes the key. */
static void patch(dais_msg *m, const char *path, const char *json)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *o = m->data;
    char *p = buf, *dot;
    while ((dot = strchr(p, '.')) != NULL) {
        *dot = '\0';
        o = json_object_get(o, p);
        assert_non_null(o);
        p = dot + 1;
    }
    if (json == NULL) {
        json_object_del(o, p);
        return;
    }
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    assert_non_null(v);
    json_object_set_new(o, p, v);
}

static void fill_request(dais_msg_sync_req *q, const char *token)
{
    memset(q, 0, sizeof(*q));
    snprintf(q->node_id, sizeof(q->node_id), "worker-7");
    q->protocol_version = DAIS_PROTO_VERSION;
    snprintf(q->model, sizeof(q->model), "stories260K");
    q->offset = 123456789012ull;
    char subject[512];
    assert_int_equal(
        dais_sync_auth_subject(q->node_id, q->model, q->offset, subject, sizeof(subject)), 0);
    assert_int_equal(
        dais_auth_make_discovery(token, strlen(token), subject, 1700000000000, &q->auth), 0);
}

static void test_request_round_trip(void **state)
{
    (void)state;
    dais_msg_sync_req q, r;
    fill_request(&q, "tok");
    dais_msg *m = dais_msg_new(DAIS_MSG_MODEL_SYNC_REQUEST, "worker-7", "master");
    assert_int_equal(dais_sync_req_encode(&q, m), 0);
    dais_msg *x = wire(m);
    dais_err err;
    assert_int_equal(dais_sync_req_decode(x, &r, &err), 0);
    assert_memory_equal(&q, &r, sizeof(q));
    /* The proof verifies over the subject, and only over it. */
    char subject[512];
    assert_int_equal(dais_sync_auth_subject(r.node_id, r.model, r.offset, subject, sizeof(subject)),
                     0);
    assert_string_equal(subject, "model-sync\nworker-7\nstories260K\n123456789012");
    assert_int_equal(
        dais_auth_verify_discovery("tok", 3, subject, &r.auth, 1700000000000, 60000, NULL),
        DAIS_AUTH_OK);
    assert_int_equal(
        dais_auth_verify_discovery("tok", 3, "worker-7", &r.auth, 1700000000000, 60000, NULL),
        DAIS_AUTH_BAD_MAC); /* not a registration proof */
    assert_int_equal(
        dais_auth_verify_discovery("other", 5, subject, &r.auth, 1700000000000, 60000, NULL),
        DAIS_AUTH_BAD_MAC);
    char other[512];
    assert_int_equal(dais_sync_auth_subject("worker-7", "stories260K", 0, other, sizeof(other)), 0);
    assert_int_equal(
        dais_auth_verify_discovery("tok", 3, other, &r.auth, 1700000000000, 60000, NULL),
        DAIS_AUTH_BAD_MAC); /* another offset */
    /* offset is optional (0); a hash names a model too */
    patch(x, "offset", NULL);
    patch(x, "model",
          "\""
          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
          "\"");
    assert_int_equal(dais_sync_req_decode(x, &r, &err), 0);
    assert_int_equal(r.offset, 0);
    assert_int_equal(strlen(r.model), 64);
    /* model names may hold spaces and UTF-8 inside */
    patch(x, "model", "\"tiny llama \\u00e9\"");
    assert_int_equal(dais_sync_req_decode(x, &r, &err), 0);
    dais_msg_free(x);
    dais_msg_free(m);
}

static void test_request_invalid_fields(void **state)
{
    (void)state;
    dais_msg_sync_req q, r;
    fill_request(&q, "tok");
    dais_msg *m = dais_msg_new(DAIS_MSG_MODEL_SYNC_REQUEST, "worker-7", "master");
    assert_int_equal(dais_sync_req_encode(&q, m), 0);
    struct {
        const char *path, *json, *needle;
    } cases[] = {
        {"node_id", NULL, "node_id"},
        {"node_id", "\"worker-8\"", "differs"},
        {"node_id", "\"bad id\"", "node_id"},
        {"node_id", "7", "node_id"},
        {"protocol_version", NULL, "protocol_version"},
        {"protocol_version", "\"1\"", "protocol_version"},
        {"protocol_version", "-1", "protocol_version"},
        {"model", NULL, "model"},
        {"model", "\"\"", "model"},
        {"model", "\" lead\"", "model"},
        {"model", "\"trail \"", "model"},
        {"model", "\"new\\nline\"", "model"},
        {"model", "\"tab\\there\"", "model"},
        {"model",
         "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
         "model"}, /* 129 bytes */
        {"model", "null", "model"},
        {"offset", "-1", "offset"},
        {"offset", "1.5", "offset"},
        {"offset", "\"0\"", "offset"},
        {"offset", "9007199254740993", "offset"}, /* 2^53 + 1 */
        {"auth", NULL, "auth"},
        {"auth", "[]", "auth"},
        {"auth.timestamp_ms", NULL, "auth.timestamp_ms"},
        {"auth.timestamp_ms", "1.5", "auth.timestamp_ms"},
        {"auth.nonce", "\"00112233445566778899AABBCCDDEEFF\"", "auth.nonce"},
        {"auth.nonce", "\"0011\"", "auth.nonce"},
        {"auth.hmac", "null", "auth.hmac"},
        {"auth.hmac", "\"zz\"", "auth.hmac"},
    };
    dais_err err;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dais_msg *x = wire(m);
        patch(x, cases[i].path, cases[i].json);
        dais_err_clear(&err);
        int rc = dais_sync_req_decode(x, &r, &err);
        if (rc != DAIS_EPROTO || strstr(err.msg, cases[i].needle) == NULL)
            fail_msg("case %zu (%s=%s): rc %d '%s'", i, cases[i].path,
                     cases[i].json ? cases[i].json : "(deleted)", rc, err.msg);
        dais_msg_free(x);
    }
    /* The largest offset on the wire is fine. */
    dais_msg *x = wire(m);
    patch(x, "offset", "9007199254740992");
    assert_int_equal(dais_sync_req_decode(x, &r, &err), 0);
    assert_true(r.offset == DAIS_SYNC_SIZE_MAX);
    dais_msg_free(x);
    /* Wrong message type, both ways. */
    dais_msg *hb = dais_msg_new(DAIS_MSG_HEARTBEAT, "worker-7", "master");
    assert_int_equal(dais_sync_req_decode(hb, &r, &err), DAIS_EINVAL);
    assert_int_equal(dais_sync_req_encode(&q, hb), DAIS_EINVAL);
    dais_msg_free(hb);
    /* The encoder refuses what the decoder would. */
    q.offset = DAIS_SYNC_SIZE_MAX + 1;
    assert_int_equal(dais_sync_req_encode(&q, m), DAIS_EINVAL);
    q.offset = 0;
    q.model[0] = '\0';
    assert_int_equal(dais_sync_req_encode(&q, m), DAIS_EINVAL);
    /* A subject with a newline in a part, or one that does not fit, is refused. */
    char subject[64];
    assert_int_equal(dais_sync_auth_subject("w\n1", "m", 0, subject, sizeof(subject)), DAIS_EINVAL);
    assert_int_equal(dais_sync_auth_subject("w1", "m\n", 0, subject, sizeof(subject)), DAIS_EINVAL);
    assert_int_equal(dais_sync_auth_subject("w1",
                                            "a-model-name-that-is-long-enough-to-overflow-64-bytes",
                                            0, subject, sizeof(subject)),
                     DAIS_EINVAL);
    dais_msg_free(m);
}

static void fill_chunk(dais_msg_sync_chunk *c, const uint8_t *data, uint32_t len, uint64_t offset,
                       uint64_t size)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->model, sizeof(c->model), "stories260K");
    memset(c->sha256, 'e', 64);
    c->sha256[64] = '\0';
    c->size = size;
    c->offset = offset;
    c->final = offset + len == size;
    c->data = data;
    c->len = len;
}

static void test_chunk_round_trip(void **state)
{
    (void)state;
    uint8_t bytes[1000];
    for (size_t i = 0; i < sizeof(bytes); i++)
        bytes[i] = (uint8_t)(i * 7);
    dais_err err;
    /* a middle chunk, the final chunk, an empty final chunk (the offset at the end) */
    const struct {
        uint32_t len;
        uint64_t offset, size;
    } shapes[] = {{1000, 0, 5000},
                  {1000, 4000, 5000},
                  {0, 5000, 5000},
                  {0, 0, 0},
                  {1000, (1ull << 40), (1ull << 40) + 1000}};
    for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
        dais_msg_sync_chunk c, d;
        fill_chunk(&c, shapes[k].len > 0 ? bytes : NULL, shapes[k].len, shapes[k].offset,
                   shapes[k].size);
        dais_msg *m = dais_msg_new(DAIS_MSG_MODEL_SYNC_CHUNK, "master", "worker-7");
        assert_int_equal(dais_sync_chunk_encode(&c, m), 0);
        assert_int_equal(m->bin_len, shapes[k].len);
        dais_msg *x = wire(m);
        assert_int_equal(dais_sync_chunk_decode(x, &d, &err), 0);
        assert_string_equal(d.model, c.model);
        assert_string_equal(d.sha256, c.sha256);
        assert_true(d.size == c.size && d.offset == c.offset && d.final == c.final);
        assert_int_equal(d.len, c.len);
        if (c.len > 0) assert_memory_equal(d.data, bytes, c.len);
        dais_msg_free(x);
        dais_msg_free(m);
    }
    /* data NULL with len > 0: the caller sends the bytes itself, the message has none. */
    dais_msg_sync_chunk c;
    fill_chunk(&c, NULL, 1000, 0, 5000);
    dais_msg *m = dais_msg_new(DAIS_MSG_MODEL_SYNC_CHUNK, "master", "worker-7");
    assert_int_equal(dais_msg_set_bin(m, "old", 3), 0);
    assert_int_equal(dais_sync_chunk_encode(&c, m), 0);
    assert_int_equal(m->bin_len, 0);
    assert_null(m->bin);
    dais_msg_free(m);
}

static void test_chunk_invalid_fields(void **state)
{
    (void)state;
    uint8_t bytes[100];
    memset(bytes, 1, sizeof(bytes));
    dais_msg_sync_chunk c, d;
    fill_chunk(&c, bytes, 100, 200, 1000);
    dais_msg *m = dais_msg_new(DAIS_MSG_MODEL_SYNC_CHUNK, "master", "worker-7");
    assert_int_equal(dais_sync_chunk_encode(&c, m), 0);
    struct {
        const char *path, *json, *needle;
    } cases[] = {
        {"model", NULL, "model"},
        {"model", "\"\"", "model"},
        {"model", "\"a\\u0001b\"", "model"},
        {"model", "5", "model"},
        {"sha256", NULL, "sha256"},
        {"sha256", "\"EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE\"",
         "sha256"},
        {"sha256", "\"eeee\"", "sha256"},
        {"size", NULL, "size"},
        {"size", "-5", "size"},
        {"size", "1e3", "size"},
        {"size", "9007199254740993", "size"},
        {"size", "250", "past size"},   /* 200 + 100 > 250 */
        {"size", "100", "beyond size"}, /* offset 200 > 100 */
        {"size", "300", "final"},       /* now the chunk ends the file, final is false */
        {"offset", NULL, "offset"},
        {"offset", "-1", "offset"},
        {"offset", "\"200\"", "offset"},
        {"offset", "950", "past size"},
        {"offset", "1001", "beyond size"},
        {"final", NULL, "final"},
        {"final", "1", "final"},
        {"final", "true", "final"}, /* ends at 300 of 1000 */
    };
    dais_err err;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dais_msg *x = wire(m);
        patch(x, cases[i].path, cases[i].json);
        dais_err_clear(&err);
        int rc = dais_sync_chunk_decode(x, &d, &err);
        if (rc != DAIS_EPROTO || strstr(err.msg, cases[i].needle) == NULL)
            fail_msg("case %zu (%s=%s): rc %d '%s'", i, cases[i].path,
                     cases[i].json ? cases[i].json : "(deleted)", rc, err.msg);
        dais_msg_free(x);
    }
    /* Binary payload versus the fields. */
    dais_msg *x = wire(m);
    assert_int_equal(dais_msg_set_bin(x, bytes, 0), 0); /* empty, not final */
    assert_int_equal(dais_sync_chunk_decode(x, &d, &err), DAIS_EPROTO);
    assert_non_null(strstr(err.msg, "empty chunk"));
    assert_int_equal(dais_msg_set_bin(x, bytes, 99), 0); /* fine: any length before the end */
    assert_int_equal(dais_sync_chunk_decode(x, &d, &err), 0);
    patch(x, "final", "true");
    assert_int_equal(dais_sync_chunk_decode(x, &d, &err), DAIS_EPROTO);
    patch(x, "offset", "901"); /* 901 + 99 = 1000: final now right */
    assert_int_equal(dais_sync_chunk_decode(x, &d, &err), 0);
    assert_true(d.final);
    assert_int_equal(dais_msg_set_bin(x, bytes, 100), 0); /* one byte past the end */
    assert_int_equal(dais_sync_chunk_decode(x, &d, &err), DAIS_EPROTO);
    dais_msg_free(x);
    /* Wrong type. */
    dais_msg *e = dais_msg_new(DAIS_MSG_ERROR, "master", "worker-7");
    assert_int_equal(dais_sync_chunk_decode(e, &d, &err), DAIS_EINVAL);
    assert_int_equal(dais_sync_chunk_encode(&c, e), DAIS_EINVAL);
    dais_msg_free(e);
    /* The encoder refuses inconsistent chunks. */
    dais_msg_sync_chunk bad = c;
    bad.final = true; /* ends at 300 of 1000 */
    assert_int_equal(dais_sync_chunk_encode(&bad, m), DAIS_EINVAL);
    bad = c;
    bad.offset = 950; /* runs past the size */
    assert_int_equal(dais_sync_chunk_encode(&bad, m), DAIS_EINVAL);
    bad = c;
    bad.len = 0; /* empty and not final */
    assert_int_equal(dais_sync_chunk_encode(&bad, m), DAIS_EINVAL);
    bad = c;
    bad.sha256[3] = 'X';
    assert_int_equal(dais_sync_chunk_encode(&bad, m), DAIS_EINVAL);
    bad = c;
    bad.model[0] = '\0';
    assert_int_equal(dais_sync_chunk_encode(&bad, m), DAIS_EINVAL);
    bad = c;
    bad.size = DAIS_SYNC_SIZE_MAX + 1;
    bad.offset = bad.size - 100;
    bad.final = true;
    assert_int_equal(dais_sync_chunk_encode(&bad, m), DAIS_EINVAL);
    dais_msg_free(m);
}

/* `layers` [first, last]: optional, round-trips, bounded, and covered by the proof. */
static void test_request_layers(void **state)
{
    (void)state;
    dais_msg_sync_req q, r;
    fill_request(&q, "tok");
    q.layer_first = 2;
    q.layer_last = 5;
    dais_msg *m = dais_msg_new(DAIS_MSG_MODEL_SYNC_REQUEST, "worker-7", "master");
    assert_int_equal(dais_sync_req_encode(&q, m), 0);
    dais_msg *x = wire(m);
    dais_err err;
    assert_int_equal(dais_sync_req_decode(x, &r, &err), 0);
    assert_int_equal(r.layer_first, 2);
    assert_int_equal(r.layer_last, 5);
    char subject[512], whole[512];
    assert_int_equal(dais_sync_auth_subject_layers(r.node_id, r.model, r.offset, r.layer_first,
                                                   r.layer_last, subject, sizeof(subject)),
                     0);
    assert_string_equal(subject, "model-sync\nworker-7\nstories260K\n123456789012\nlayers 2:5");
    assert_int_equal(dais_sync_auth_subject_layers(r.node_id, r.model, r.offset, 0, 0, whole,
                                                   sizeof(whole)),
                     0);
    assert_string_equal(whole, "model-sync\nworker-7\nstories260K\n123456789012");
    /* fill_request signed the whole-file subject: it does not pass for a shard. */
    assert_int_equal(
        dais_auth_verify_discovery("tok", 3, subject, &r.auth, 1700000000000, 60000, NULL),
        DAIS_AUTH_BAD_MAC);
    const char *bad[] = {"[5, 2]", "[2, 2]", "[-1, 2]", "[0, 1025]", "[1]", "[1, 2, 3]",
                         "\"0:2\"", "[1.5, 2]", "{}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        patch(x, "layers", bad[i]);
        assert_int_not_equal(dais_sync_req_decode(x, &r, &err), 0);
        assert_non_null(strstr(err.msg, "layers"));
    }
    patch(x, "layers", NULL);
    assert_int_equal(dais_sync_req_decode(x, &r, &err), 0);
    assert_int_equal(r.layer_first, 0);
    assert_int_equal(r.layer_last, 0);
    dais_msg_free(x);
    dais_msg_free(m);
    /* The encoder refuses a bad range. */
    q.layer_first = 3;
    q.layer_last = 3;
    m = dais_msg_new(DAIS_MSG_MODEL_SYNC_REQUEST, "worker-7", "master");
    assert_int_equal(dais_sync_req_encode(&q, m), DAIS_EINVAL);
    dais_msg_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_round_trip),
        cmocka_unit_test(test_request_invalid_fields),
        cmocka_unit_test(test_request_layers),
        cmocka_unit_test(test_chunk_round_trip),
        cmocka_unit_test(test_chunk_invalid_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
