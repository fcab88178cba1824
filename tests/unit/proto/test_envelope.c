/*
 * Envelope tests: the spec's example parses, encode/parse round trips, and every malformed
 * case (bad JSON, wrong top-level type, each field missing / of the wrong type / out of
 * format, duplicate keys, NUL bytes) is refused with the field named in the message.
 */
#include "proto/envelope.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define GOOD_ID "2c5ea4c0-4067-4a1b-9c4e-3f1c1b2d5e6f"

static int parse(const char *s, dais_msg **m, dais_err *err)
{
    dais_err_clear(err);
    return dais_envelope_parse(s, strlen(s), m, err);
}

static void test_spec_example(void **state)
{
    (void)state;
    const char *s = "{\n  \"message_id\": \"" GOOD_ID "\",\n"
                    "  \"message_type\": \"HEARTBEAT\",\n  \"source_node\": \"worker-1\",\n"
                    "  \"target_node\": \"master\",\n  \"payload\": {\n    \"data\": {\"x\": 1},\n"
                    "    \"timestamp\": 1643123456.789,\n    \"metadata\": {}\n  },\n"
                    "  \"timestamp\": 1643123456.789,\n  \"future_field\": [1, 2]\n}";
    dais_msg *m;
    dais_err err;
    assert_int_equal(parse(s, &m, &err), 0);
    assert_int_equal(m->type, DAIS_MSG_HEARTBEAT);
    assert_string_equal(m->id, GOOD_ID);
    assert_string_equal(m->source, "worker-1");
    assert_string_equal(m->target, "master");
    assert_true(m->timestamp > 1643123456.78 && m->timestamp < 1643123456.80);
    assert_int_equal(json_integer_value(json_object_get(m->data, "x")), 1);
    assert_null(m->bin);
    dais_msg_free(m);
}

static void test_roundtrip_all_types(void **state)
{
    (void)state;
    for (int t = 1; t < DAIS_MSG__COUNT; t++) {
        dais_msg *m = dais_msg_new((enum dais_msg_type)t, "a.b_c:1-2", "master");
        assert_non_null(m);
        assert_true(dais_uuid4_valid(m->id, strlen(m->id)));
        json_object_set_new(m->metadata, "traceparent", json_string("x"));
        char *s;
        size_t n;
        assert_int_equal(dais_envelope_encode(m, &s, &n), 0);
        assert_int_equal(strlen(s), n);
        dais_msg *r;
        dais_err err;
        assert_int_equal(dais_envelope_parse(s, n, &r, &err), 0);
        assert_int_equal(r->type, t);
        assert_string_equal(dais_msg_type_name(r->type), dais_msg_type_name((enum dais_msg_type)t));
        assert_string_equal(r->id, m->id);
        assert_string_equal(r->source, m->source);
        assert_true(r->timestamp == m->timestamp);
        assert_true(json_equal(r->metadata, m->metadata));
        free(s);
        dais_msg_free(r);
        dais_msg_free(m);
    }
    assert_null(dais_msg_new(DAIS_MSG_NONE, "a", "b"));
    assert_null(dais_msg_new(DAIS_MSG_HEARTBEAT, "bad id", "b"));
    assert_null(dais_msg_new(DAIS_MSG_HEARTBEAT, "a", ""));
}

static void test_uuid(void **state)
{
    (void)state;
    char u[37];
    for (int i = 0; i < 100; i++) {
        assert_int_equal(dais_uuid4(u), 0);
        assert_true(dais_uuid4_valid(u, 36));
        assert_int_equal(u[14], '4');
    }
    assert_true(dais_uuid4_valid("2C5EA4C0-4067-4A1B-9C4E-3F1C1B2D5E6F", 36));
    assert_false(dais_uuid4_valid("2c5ea4c0-4067-1a1b-9c4e-3f1c1b2d5e6f", 36)); /* v1 */
    assert_false(dais_uuid4_valid("2c5ea4c0-4067-4a1b-cc4e-3f1c1b2d5e6f", 36)); /* variant */
    assert_false(dais_uuid4_valid("2c5ea4c0-4067-4a1b-9c4e-3f1c1b2d5e6", 35));
    assert_false(dais_uuid4_valid("2c5ea4c0x4067-4a1b-9c4e-3f1c1b2d5e6f", 36));
    assert_false(dais_uuid4_valid("2c5ea4c0-4067-4a1b-9c4e-3f1c1b2d5e6g", 36));
    /* Uppercase ids are accepted and normalised to lowercase. */
    dais_msg *m;
    dais_err err;
    char s[512];
    snprintf(s, sizeof(s),
             "{\"message_id\":\"2C5EA4C0-4067-4A1B-9C4E-3F1C1B2D5E6F\","
             "\"message_type\":\"DRAIN\",\"source_node\":\"a\",\"target_node\":\"b\","
             "\"payload\":{\"data\":{},\"timestamp\":1,\"metadata\":{}},\"timestamp\":2}");
    assert_int_equal(parse(s, &m, &err), 0);
    assert_string_equal(m->id, GOOD_ID);
    dais_msg_free(m);
}

/* Builds an envelope from parts; a NULL part leaves that key out. */
static void build(char *out, size_t cap, const char *id, const char *type, const char *src,
                  const char *dst, const char *payload, const char *ts)
{
    size_t n = (size_t)snprintf(out, cap, "{");
    const char *keys[] = {"message_id",  "message_type", "source_node",
                          "target_node", "payload",      "timestamp"};
    const char *vals[] = {id, type, src, dst, payload, ts};
    for (int i = 0; i < 6; i++) {
        if (vals[i] == NULL) continue;
        n += (size_t)snprintf(out + n, cap - n, "%s\"%s\":%s", n > 1 ? "," : "", keys[i], vals[i]);
    }
    snprintf(out + n, cap - n, "}");
}

static void test_malformed(void **state)
{
    (void)state;
    const char *id = "\"" GOOD_ID "\"", *ty = "\"CANCEL\"", *src = "\"w1\"", *dst = "\"master\"",
               *pl = "{\"data\":{},\"timestamp\":1.5,\"metadata\":{}}", *ts = "1.5";
    char long_id[300];
    memset(long_id, 'a', sizeof(long_id));
    long_id[0] = '"';
    long_id[130] = '"';
    long_id[131] = '\0';
    struct {
        const char *id, *ty, *src, *dst, *pl, *ts, *needle;
    } cases[] = {
        {NULL, ty, src, dst, pl, ts, "message_id"},
        {"1", ty, src, dst, pl, ts, "message_id"},
        {"\"abc\"", ty, src, dst, pl, ts, "message_id"},
        {"\"2c5ea4c0-4067-3a1b-9c4e-3f1c1b2d5e6f\"", ty, src, dst, pl, ts, "uuid4"},
        {id, NULL, src, dst, pl, ts, "message_type"},
        {id, "\"SELF_DESTRUCT\"", src, dst, pl, ts, "unknown type"},
        {id, "\"cancel\"", src, dst, pl, ts, "unknown type"},
        {id, "7", src, dst, pl, ts, "message_type"},
        {id, ty, NULL, dst, pl, ts, "source_node"},
        {id, ty, "\"\"", dst, pl, ts, "source_node"},
        {id, ty, "\"w 1\"", dst, pl, ts, "source_node"},
        {id, ty, "\"w/1\"", dst, pl, ts, "source_node"},
        {id, ty, long_id, dst, pl, ts, "source_node"},
        {id, ty, src, NULL, pl, ts, "target_node"},
        {id, ty, src, "null", pl, ts, "target_node"},
        {id, ty, src, dst, NULL, ts, "payload"},
        {id, ty, src, dst, "\"x\"", ts, "payload"},
        {id, ty, src, dst, "{\"timestamp\":1,\"metadata\":{}}", ts, "payload.data"},
        {id, ty, src, dst, "{\"data\":\"...\",\"timestamp\":1,\"metadata\":{}}", ts,
         "payload.data"},
        {id, ty, src, dst, "{\"data\":{},\"metadata\":{}}", ts, "payload.timestamp"},
        {id, ty, src, dst, "{\"data\":{},\"timestamp\":\"1\",\"metadata\":{}}", ts,
         "payload.timestamp"},
        {id, ty, src, dst, "{\"data\":{},\"timestamp\":1}", ts, "payload.metadata"},
        {id, ty, src, dst, "{\"data\":{},\"timestamp\":1,\"metadata\":[]}", ts, "payload.metadata"},
        {id, ty, src, dst, pl, NULL, "timestamp"},
        {id, ty, src, dst, pl, "\"now\"", "timestamp"},
        {id, ty, src, dst, pl, "-1", "timestamp"},
        {id, ty, src, dst, pl, "1e300", "timestamp"},
        {id, ty, src, dst, pl, "true", "timestamp"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char s[2048];
        build(s, sizeof(s), cases[i].id, cases[i].ty, cases[i].src, cases[i].dst, cases[i].pl,
              cases[i].ts);
        dais_msg *m = (dais_msg *)1;
        dais_err err;
        int rc = parse(s, &m, &err);
        if (rc != DAIS_EPROTO || strstr(err.msg, cases[i].needle) == NULL)
            fail_msg("case %zu (%s): rc %d, message '%s'", i, s, rc, err.msg);
        assert_null(m);
    }
    /* The good parts do parse (so the cases above fail for the intended reason). */
    char s[2048];
    build(s, sizeof(s), id, ty, src, dst, pl, ts);
    dais_msg *m;
    dais_err err;
    assert_int_equal(parse(s, &m, &err), 0);
    dais_msg_free(m);
}

static void test_bad_json(void **state)
{
    (void)state;
    const char *docs[] = {"",
                          "{",
                          "[1,2]",
                          "\"str\"",
                          "{\"a\":1,\"a\":2}",
                          "{} trailing",
                          "{\"message_id\":\"\\u0000\"}",
                          "nul",
                          "{\"a\":NaN}"};
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        dais_msg *m = (dais_msg *)1;
        dais_err err;
        int rc = dais_envelope_parse(docs[i], strlen(docs[i]), &m, &err);
        assert_true(rc == DAIS_EFORMAT || rc == DAIS_EPROTO);
        assert_null(m);
    }
    /* An embedded NUL byte. */
    dais_msg *m = (dais_msg *)1;
    dais_err err;
    assert_int_equal(dais_envelope_parse("{}\0{}", 5, &m, &err), DAIS_EFORMAT);
    /* JSON errors carry line and column. */
    assert_int_equal(dais_envelope_parse("{\n \"a\": }", 9, &m, &err), DAIS_EFORMAT);
    assert_non_null(strstr(err.msg, "line 2"));
    /* Deep nesting is refused by the parser's depth limit, not by the stack. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    assert_int_not_equal(dais_envelope_parse(deep, 2 * depth, &m, &err), 0);
    free(deep);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_int_equal(dais_msg_type_from_name("INFERENCE_RESPONSE", 18),
                     DAIS_MSG_INFERENCE_RESPONSE);
    assert_int_equal(dais_msg_type_from_name("INFERENCE_RESPONSEX", 19), DAIS_MSG_NONE);
    assert_int_equal(dais_msg_type_from_name("INFERENCE", 9), DAIS_MSG_NONE);
    assert_string_equal(dais_msg_type_name(DAIS_MSG__COUNT), "?");
    assert_string_equal(dais_msg_type_name((enum dais_msg_type) - 3), "?");
    assert_true(dais_ident_valid("worker-1.ns:8888", 16, 128));
    assert_false(dais_ident_valid("w\xc3\xa9", 3, 128));
    assert_false(dais_ident_valid("abc", 3, 2));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example), cmocka_unit_test(test_roundtrip_all_types),
        cmocka_unit_test(test_uuid),         cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_bad_json),     cmocka_unit_test(test_type_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
