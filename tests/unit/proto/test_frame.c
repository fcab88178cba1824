/*
 * Frame tests: header validation (every field), the incremental decoder fed at every split
 * point and one byte at a time through an evbuffer, limits checked from the header alone,
 * and encode/decode round trips with and without a binary payload.
 */
#include "proto/envelope.h"
#include "proto/frame.h"

#include <event2/buffer.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static dais_msg *sample_msg(size_t bin_len)
{
    dais_msg *m = dais_msg_new(DAIS_MSG_INFERENCE_REQUEST, "master", "worker-1");
    assert_non_null(m);
    json_object_set_new(m->data, "request_id", json_string("r1"));
    if (bin_len > 0) {
        uint8_t *b = malloc(bin_len);
        for (size_t i = 0; i < bin_len; i++)
            b[i] = (uint8_t)(i * 7);
        dais_msg_take_bin(m, b, (uint32_t)bin_len);
    }
    return m;
}

static void test_header_roundtrip(void **state)
{
    (void)state;
    uint8_t h[DAIS_FRAME_HEADER_LEN];
    dais_frame_header_write(h, 123, 456);
    assert_memory_equal(h, "DAIS\x01\x00\x00\x00\x00\x00\x00\x7b\x00\x00\x01\xc8", 16);
    dais_frame_header fh;
    dais_err err;
    assert_int_equal(dais_frame_header_parse(h, NULL, &fh, &err), 0);
    assert_int_equal(fh.json_len, 123);
    assert_int_equal(fh.bin_len, 456);
    assert_int_equal(fh.version, 1);
}

static void test_header_rejects(void **state)
{
    (void)state;
    dais_frame_limits lim = {.max_json = 1000, .max_bin = 2000};
    struct {
        int off;
        uint8_t val;
        int want;
        const char *needle;
    } cases[] = {
        {0, 'X', DAIS_EPROTO, "magic"},     {3, 's', DAIS_EPROTO, "magic"},
        {4, 2, DAIS_EPROTO, "version"},     {4, 0, DAIS_EPROTO, "version"},
        {5, 1, DAIS_EPROTO, "flags"},       {6, 1, DAIS_EPROTO, "reserved"},
        {7, 0x80, DAIS_EPROTO, "reserved"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t h[16];
        dais_frame_header_write(h, 10, 0);
        h[cases[i].off] = cases[i].val;
        dais_frame_header fh;
        dais_err err;
        dais_err_clear(&err);
        assert_int_equal(dais_frame_header_parse(h, &lim, &fh, &err), cases[i].want);
        assert_non_null(strstr(err.msg, cases[i].needle));
    }
    uint8_t h[16];
    dais_frame_header fh;
    dais_err err;
    dais_frame_header_write(h, 0, 0);
    assert_int_equal(dais_frame_header_parse(h, &lim, &fh, &err), DAIS_EPROTO);
    dais_frame_header_write(h, 1001, 0);
    assert_int_equal(dais_frame_header_parse(h, &lim, &fh, &err), DAIS_ETOOBIG);
    assert_non_null(strstr(err.msg, "json_len"));
    dais_frame_header_write(h, 1000, 2001);
    assert_int_equal(dais_frame_header_parse(h, &lim, &fh, &err), DAIS_ETOOBIG);
    assert_non_null(strstr(err.msg, "bin_len"));
    dais_frame_header_write(h, 1000, 2000);
    assert_int_equal(dais_frame_header_parse(h, &lim, &fh, &err), 0);
    /* Maximal u32 lengths against the defaults. */
    dais_frame_header_write(h, UINT32_MAX, UINT32_MAX);
    assert_int_equal(dais_frame_header_parse(h, NULL, &fh, &err), DAIS_ETOOBIG);
}

static void test_roundtrip_split_everywhere(void **state)
{
    (void)state;
    dais_msg *m = sample_msg(37);
    uint8_t *f;
    size_t flen;
    assert_int_equal(dais_frame_encode(m, NULL, &f, &flen), 0);
    /* A second frame right after the first: the decoder must stop at the boundary. */
    uint8_t *two = malloc(2 * flen);
    memcpy(two, f, flen);
    memcpy(two + flen, f, flen);
    for (size_t cut = 0; cut <= 2 * flen; cut++) {
        dais_msg *out = NULL;
        size_t used = 0;
        dais_err err;
        int rc = dais_frame_decode_msg(two, cut, NULL, &out, &used, &err);
        if (cut < flen) {
            assert_int_equal(rc, DAIS_FRAME_NEED_MORE);
            assert_null(out);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(used, flen);
            assert_int_equal(out->type, DAIS_MSG_INFERENCE_REQUEST);
            assert_string_equal(out->id, m->id);
            assert_string_equal(out->source, "master");
            assert_string_equal(out->target, "worker-1");
            assert_int_equal(out->bin_len, 37);
            assert_memory_equal(out->bin, m->bin, 37);
            assert_string_equal(json_string_value(json_object_get(out->data, "request_id")), "r1");
            dais_msg_free(out);
        }
    }
    free(two);
    free(f);
    dais_msg_free(m);
}

static void test_garbage_refused_early(void **state)
{
    (void)state;
    const uint8_t *j, *b;
    uint32_t jl, bl;
    size_t fl;
    dais_err err;
    /* "GET / HTTP/1.1" is refused at its first byte, not after 16 bytes are buffered. */
    assert_int_equal(dais_frame_split((const uint8_t *)"G", 1, NULL, &j, &jl, &b, &bl, &fl, &err),
                     DAIS_EPROTO);
    assert_int_equal(dais_frame_split((const uint8_t *)"DAI", 3, NULL, &j, &jl, &b, &bl, &fl, &err),
                     DAIS_FRAME_NEED_MORE);
    assert_int_equal(
        dais_frame_split((const uint8_t *)"DAIS\x09", 5, NULL, &j, &jl, &b, &bl, &fl, &err),
        DAIS_EPROTO);
    assert_int_equal(dais_frame_split((const uint8_t *)"", 0, NULL, &j, &jl, &b, &bl, &fl, &err),
                     DAIS_FRAME_NEED_MORE);
}

static void test_bad_envelope_in_frame(void **state)
{
    (void)state;
    const char *bodies[] = {"{", "[]", "{\"message_id\":1}", "null", "{}"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        size_t jl = strlen(bodies[i]);
        uint8_t buf[64];
        dais_frame_header_write(buf, (uint32_t)jl, 0);
        memcpy(buf + 16, bodies[i], jl);
        dais_msg *out = NULL;
        size_t used;
        dais_err err;
        int rc = dais_frame_decode_msg(buf, 16 + jl, NULL, &out, &used, &err);
        assert_true(rc == DAIS_EFORMAT || rc == DAIS_EPROTO);
        assert_null(out);
    }
}

static void test_evbuffer_byte_by_byte(void **state)
{
    (void)state;
    dais_msg *m = sample_msg(1000);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(dais_frame_write(out, m, NULL), 0);
    assert_int_equal(dais_frame_write(out, m, NULL), 0);
    size_t total = evbuffer_get_length(out);
    uint8_t *bytes = malloc(total);
    evbuffer_remove(out, bytes, total);
    struct evbuffer *in = evbuffer_new();
    int got = 0;
    for (size_t i = 0; i < total; i++) {
        evbuffer_add(in, bytes + i, 1);
        for (;;) {
            dais_msg *r = NULL;
            dais_err err;
            int rc = dais_frame_read(in, NULL, &r, &err);
            if (rc == DAIS_FRAME_NEED_MORE) break;
            assert_int_equal(rc, 0);
            assert_int_equal(r->bin_len, 1000);
            assert_memory_equal(r->bin, m->bin, 1000);
            assert_string_equal(r->id, m->id);
            dais_msg_free(r);
            got++;
        }
    }
    assert_int_equal(got, 2);
    assert_int_equal(evbuffer_get_length(in), 0);
    /* Limits apply from the header: a 100-byte cap refuses this frame once 16 bytes are in. */
    dais_frame_limits lim = {.max_json = 100, .max_bin = 100};
    evbuffer_add(in, bytes, 16);
    dais_msg *r = NULL;
    dais_err err;
    assert_int_equal(dais_frame_read(in, &lim, &r, &err), DAIS_ETOOBIG);
    assert_null(r);
    free(bytes);
    evbuffer_free(in);
    evbuffer_free(out);
    dais_msg_free(m);
}

static void test_encode_limits(void **state)
{
    (void)state;
    dais_msg *m = sample_msg(200);
    dais_frame_limits lim = {.max_json = 4096, .max_bin = 100};
    uint8_t *f = NULL;
    size_t fl = 0;
    assert_int_equal(dais_frame_encode(m, &lim, &f, &fl), DAIS_ETOOBIG);
    assert_null(f);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(dais_frame_write(out, m, &lim), DAIS_ETOOBIG);
    assert_int_equal(evbuffer_get_length(out), 0);
    lim.max_json = 10;
    lim.max_bin = 1000;
    assert_int_equal(dais_frame_encode(m, &lim, &f, &fl), DAIS_ETOOBIG);
    evbuffer_free(out);
    dais_msg_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_roundtrip),
        cmocka_unit_test(test_header_rejects),
        cmocka_unit_test(test_roundtrip_split_everywhere),
        cmocka_unit_test(test_garbage_refused_early),
        cmocka_unit_test(test_bad_envelope_in_frame),
        cmocka_unit_test(test_evbuffer_byte_by_byte),
        cmocka_unit_test(test_encode_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
