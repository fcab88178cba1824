/*
 * Typed payload tests: every message type round-trips through encode → frame → decode with
 * all fields intact, and the decoders refuse missing fields, wrong types, out-of-range values,
 * over-long strings, mismatched ids and malformed binary payloads, naming the field.
 */
#include "proto/frame.h"
#include "proto/messages.h"

#include <math.h>
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

static void fill_discovery(dais_msg_discovery *d)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->node_id, sizeof(d->node_id), "worker-1");
    d->protocol_version = DAIS_PROTO_VERSION;
    snprintf(d->addr, sizeof(d->addr), "10.0.0.7");
    d->heartbeat_port = 9001;
    d->cores = 8;
    d->threads = 6;
    d->memory_total = 64ull << 30;
    d->memory_available = 12345678901ull;
    d->simd = DAIS_SIMD_AVX2 | DAIS_SIMD_FMA | DAIS_SIMD_F16C;
    snprintf(d->model.name, sizeof(d->model.name), "stories260K");
    memset(d->model.hash, 'a', 64);
    d->model.n_vocab = 512;
    d->model.n_layers = 5;
    d->model.layer_first = 0;
    d->model.layer_last = 5;
    d->model.n_ctx_train = 2048;
    d->n_ctx = 512;
    d->slots = 4;
    d->batch = 256;
    d->queue = 32;
    dais_auth_make_discovery("tok", 3, "worker-1", 1700000000000, &d->auth);
}

static void test_discovery(void **state)
{
    (void)state;
    dais_msg_discovery d, e;
    fill_discovery(&d);
    dais_msg *m = dais_msg_new(DAIS_MSG_NODE_DISCOVERY, "worker-1", "master");
    assert_int_equal(dais_discovery_encode(&d, m), 0);
    dais_msg *r = wire(m);
    dais_err err;
    assert_int_equal(dais_discovery_decode(r, &e, &err), 0);
    assert_memory_equal(&d, &e, sizeof(d));
    assert_int_equal(
        dais_auth_verify_discovery("tok", 3, e.node_id, &e.auth, 1700000000000, 60000, NULL),
        DAIS_AUTH_OK);
    /* Malformed variants, each naming its field. */
    struct {
        const char *path, *json, *needle;
    } cases[] = {
        {"node_id", "\"worker-2\"", "differs"},
        {"node_id", "\"bad id\"", "node_id"},
        {"protocol_version", "\"1\"", "protocol_version"},
        {"heartbeat_port", "0", "heartbeat_port"},
        {"heartbeat_port", "65536", "heartbeat_port"},
        {"capabilities.cores", "0", "capabilities.cores"},
        {"capabilities.memory_total", "-1", "capabilities.memory_total"},
        {"capabilities.simd", "[1]", "capabilities.simd"},
        {"capabilities.simd", "{}", "capabilities.simd"},
        {"capabilities.slots", "1.5", "capabilities.slots"},
        {"capabilities.model.hash", "\"ABC\"", "capabilities.model.hash"},
        {"capabilities.model.layer_last", "6", "layer range"},
        {"capabilities.model.name", "\"\"", "capabilities.model.name"},
        {"auth.nonce", "\"00112233445566778899AABBCCDDEEFF\"", "auth.nonce"},
        {"auth.hmac", "null", "auth.hmac"},
        {"auth.timestamp_ms", "1.5", "auth.timestamp_ms"},
        {"auth", "[]", "auth"},
        {"capabilities", "null", "capabilities"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dais_msg *x = wire(m);
        /* Walk the dotted path and replace the leaf. */
        char path[128];
        snprintf(path, sizeof(path), "%s", cases[i].path);
        json_t *o = x->data;
        char *p = path, *dot;
        while ((dot = strchr(p, '.')) != NULL) {
            *dot = '\0';
            o = json_object_get(o, p);
            p = dot + 1;
        }
        json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        json_object_set_new(o, p, v);
        dais_err_clear(&err);
        int rc = dais_discovery_decode(x, &e, &err);
        if (rc != DAIS_EPROTO || strstr(err.msg, cases[i].needle) == NULL)
            fail_msg("case %zu (%s=%s): rc %d '%s'", i, cases[i].path, cases[i].json, rc, err.msg);
        /* Removing a required field is refused as well. */
        dais_msg_free(x);
    }
    const char *required[] = {"node_id", "heartbeat_port", "capabilities", "auth",
                              "protocol_version"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        dais_msg *x = wire(m);
        json_object_del(x->data, required[i]);
        assert_int_equal(dais_discovery_decode(x, &e, &err), DAIS_EPROTO);
        assert_non_null(strstr(err.msg, "missing"));
        dais_msg_free(x);
    }
    /* Wrong message type. */
    dais_msg *hb = dais_msg_new(DAIS_MSG_HEARTBEAT, "worker-1", "master");
    assert_int_equal(dais_discovery_decode(hb, &e, &err), DAIS_EINVAL);
    assert_int_equal(dais_discovery_encode(&d, hb), DAIS_EINVAL);
    dais_msg_free(hb);
    dais_msg_free(r);
    dais_msg_free(m);
}

static void test_accept_reject(void **state)
{
    (void)state;
    dais_msg_accept a = {.session_id = 42, .heartbeat_interval_ms = 200, .heartbeat_port = 8889}, b;
    snprintf(a.node_id, sizeof(a.node_id), "w1");
    dais_nonce_new(a.master_nonce);
    dais_auth_accept_mac("t", 1, "w1", "00112233445566778899aabbccddeeff", a.master_nonce, a.hmac);
    dais_msg *m = dais_msg_new(DAIS_MSG_NODE_ACCEPT, "master", "w1");
    assert_int_equal(dais_accept_encode(&a, m), 0);
    dais_msg *r = wire(m);
    dais_err err;
    assert_int_equal(dais_accept_decode(r, &b, &err), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    json_object_set_new(r->data, "session_id", json_integer(0));
    assert_int_equal(dais_accept_decode(r, &b, &err), DAIS_EPROTO);
    json_object_set_new(r->data, "session_id", json_integer(1));
    json_object_set_new(r->data, "heartbeat_interval_ms", json_integer(0));
    assert_int_equal(dais_accept_decode(r, &b, &err), DAIS_EPROTO);
    a.session_id = 0;
    assert_int_equal(dais_accept_encode(&a, m), DAIS_EINVAL);
    dais_msg_free(r);
    dais_msg_free(m);

    dais_msg_reject j = {.reason = DAIS_REJECT_BAD_TOKEN, .retry = false, .retry_after_ms = 5}, k;
    snprintf(j.message, sizeof(j.message), "token mismatch");
    m = dais_msg_new(DAIS_MSG_NODE_REJECT, "master", "w1");
    assert_int_equal(dais_reject_encode(&j, m), 0);
    r = wire(m);
    assert_int_equal(dais_reject_decode(r, &k, &err), 0);
    assert_int_equal(k.reason, DAIS_REJECT_BAD_TOKEN);
    assert_string_equal(k.reason_name, "bad_token");
    assert_string_equal(k.message, "token mismatch");
    assert_false(k.retry);
    assert_int_equal(k.retry_after_ms, 5);
    /* A reason from a newer master decodes as NONE with its name kept. */
    json_object_set_new(r->data, "reason", json_string("quota_exceeded"));
    assert_int_equal(dais_reject_decode(r, &k, &err), 0);
    assert_int_equal(k.reason, DAIS_REJECT_NONE);
    assert_string_equal(k.reason_name, "quota_exceeded");
    json_object_set_new(r->data, "retry", json_string("yes"));
    assert_int_equal(dais_reject_decode(r, &k, &err), DAIS_EPROTO);
    dais_msg_free(r);
    dais_msg_free(m);
    assert_true(dais_reject_reason_transient(DAIS_REJECT_CLOCK_SKEW));
    assert_true(dais_reject_reason_transient(DAIS_REJECT_NOT_A_POD));
    assert_int_equal(dais_reject_reason_from_name("not_a_pod"), DAIS_REJECT_NOT_A_POD);
    assert_false(dais_reject_reason_transient(DAIS_REJECT_BAD_TOKEN));
    assert_false(dais_reject_reason_transient(DAIS_REJECT_NONE));
    assert_int_equal(dais_reject_from_auth(DAIS_AUTH_REPLAY), DAIS_REJECT_REPLAY);
    assert_int_equal(dais_reject_reason_from_name("unknown_model"), DAIS_REJECT_UNKNOWN_MODEL);
}

static void test_heartbeats(void **state)
{
    (void)state;
    dais_msg_heartbeat h = {.interval_ms = 200,
                            .workers_active = 2,
                            .workers_total = 3,
                            .sent_ms = 1700000000000},
                       h2;
    snprintf(h.cluster_state, sizeof(h.cluster_state), "degraded");
    dais_msg *m = dais_msg_new(DAIS_MSG_HEARTBEAT, "master", "w1");
    assert_int_equal(dais_heartbeat_encode(&h, m), 0);
    dais_msg *r = wire(m);
    dais_err err;
    assert_int_equal(dais_heartbeat_decode(r, &h2, &err), 0);
    assert_memory_equal(&h, &h2, sizeof(h));
    dais_msg_free(r);
    dais_msg_free(m);

    dais_msg_heartbeat_ack a, b;
    memset(&a, 0, sizeof(a));
    a.echo_seq = 17;
    a.echo_sent_ms = 1700000000000;
    snprintf(a.health, sizeof(a.health), "ok");
    a.sys = (dais_sys_metrics){.cpu_percent = 12.5,
                               .process_cpu_percent = 150.25,
                               .mem_total = 1ull << 34,
                               .mem_used = 1ull << 33,
                               .process_rss = 1 << 20,
                               .load1 = 0.5,
                               .load5 = 0.25,
                               .load15 = 2};
    a.load = (dais_load_metrics){.queue_depth = 3,
                                 .active = 4,
                                 .slots = 4,
                                 .tokens_per_s = 812.5,
                                 .kv_used = 900,
                                 .kv_total = 2048,
                                 .requests_total = 10,
                                 .tokens_total = 1000};
    m = dais_msg_new(DAIS_MSG_HEARTBEAT_ACK, "w1", "master");
    assert_int_equal(dais_heartbeat_ack_encode(&a, m), 0);
    r = wire(m);
    assert_int_equal(dais_heartbeat_ack_decode(r, &b, &err), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    json_object_set_new(json_object_get(r->data, "system"), "cpu_percent", json_real(100.5));
    assert_int_equal(dais_heartbeat_ack_decode(r, &b, &err), DAIS_EPROTO);
    assert_non_null(strstr(err.msg, "system.cpu_percent"));
    json_object_set_new(json_object_get(r->data, "system"), "cpu_percent", json_real(1));
    json_object_set_new(json_object_get(r->data, "load"), "active", json_integer(-1));
    assert_int_equal(dais_heartbeat_ack_decode(r, &b, &err), DAIS_EPROTO);
    assert_non_null(strstr(err.msg, "load.active"));
    dais_msg_free(r);
    dais_msg_free(m);
}

static void test_infer_request(void **state)
{
    (void)state;
    dais_msg_infer_req q, p;
    memset(&q, 0, sizeof(q));
    snprintf(q.request_id, sizeof(q.request_id), "req-1");
    int32_t toks[] = {1, 403, 407, 261, 378, 0x7fffffff};
    q.tokens = toks;
    q.n_tokens = 6;
    q.n_generated = 2;
    dais_infer_params_default(&q.params);
    q.params.temperature = 0;
    q.params.top_k = 40;
    q.params.top_p = 0.9f;
    q.params.min_p = 0.05f;
    q.params.repeat_penalty = 1.1f;
    q.params.seed = 42;
    q.params.max_tokens = 100;
    q.params.n_stop = 2;
    snprintf(q.params.stop[0], sizeof(q.params.stop[0]), "\n\n");
    snprintf(q.params.stop[1], sizeof(q.params.stop[1]), "The end");
    q.deadline_ms = 30000;
    snprintf(q.traceparent, sizeof(q.traceparent),
             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    dais_msg *m = dais_msg_new(DAIS_MSG_INFERENCE_REQUEST, "master", "w1");
    assert_int_equal(dais_infer_req_encode(&q, m), 0);
    assert_int_equal(m->bin_len, 24);
    assert_memory_equal(m->bin, "\x01\x00\x00\x00\x93\x01\x00\x00", 8); /* little-endian */
    dais_msg *r = wire(m);
    dais_err err;
    assert_int_equal(dais_infer_req_decode(r, &p, &err), 0);
    assert_string_equal(p.request_id, "req-1");
    assert_null(p.prompt);
    assert_int_equal(p.n_tokens, 6);
    assert_memory_equal(p.tokens, toks, sizeof(toks));
    assert_int_equal(p.n_generated, 2);
    assert_memory_equal(&p.params, &q.params, sizeof(q.params));
    assert_int_equal(p.deadline_ms, 30000);
    assert_string_equal(p.traceparent, q.traceparent);
    dais_infer_req_clear(&p);

    /* Malformed binary payloads. */
    dais_msg *x = wire(m);
    x->bin_len = 23;
    assert_int_equal(dais_infer_req_decode(x, &p, &err), DAIS_EPROTO);
    x->bin_len = 24;
    x->bin[3] = 0x80; /* negative id */
    assert_int_equal(dais_infer_req_decode(x, &p, &err), DAIS_EPROTO);
    assert_null(p.tokens);
    x->bin[3] = 0;
    json_object_set_new(x->data, "n_generated", json_integer(7));
    assert_int_equal(dais_infer_req_decode(x, &p, &err), DAIS_EPROTO);
    assert_non_null(strstr(err.msg, "n_generated"));
    json_object_set_new(x->data, "n_generated", json_integer(0));
    json_object_set_new(x->data, "prompt", json_string("both"));
    assert_int_equal(dais_infer_req_decode(x, &p, &err), DAIS_EPROTO);
    assert_non_null(strstr(err.msg, "exactly one"));
    dais_msg_free(x);

    /* A text prompt; a bad traceparent is dropped, not fatal. */
    dais_msg_infer_req t;
    memset(&t, 0, sizeof(t));
    snprintf(t.request_id, sizeof(t.request_id), "req-2");
    t.prompt = "Once upon a time";
    t.prompt_len = strlen(t.prompt);
    t.add_bos = true;
    dais_infer_params_default(&t.params);
    snprintf(t.traceparent, sizeof(t.traceparent), "zz");
    dais_msg *m2 = dais_msg_new(DAIS_MSG_INFERENCE_REQUEST, "master", "w1");
    assert_int_equal(dais_infer_req_encode(&t, m2), 0);
    dais_msg *r2 = wire(m2);
    assert_int_equal(dais_infer_req_decode(r2, &p, &err), 0);
    assert_string_equal(p.prompt, "Once upon a time");
    assert_int_equal(p.prompt_len, 16);
    assert_true(p.add_bos);
    assert_string_equal(p.traceparent, "");
    assert_int_equal(p.params.max_tokens, 16);
    dais_infer_req_clear(&p);

    /* Parameter ranges, each refused with its name. */
    struct {
        const char *key, *json;
    } bad[] = {
        {"temperature", "-0.1"},
        {"temperature", "\"hot\""},
        {"top_k", "-1"},
        {"top_p", "0"},
        {"top_p", "1.5"},
        {"min_p", "2"},
        {"repeat_penalty", "0"},
        {"repeat_last_n", "5000"},
        {"seed", "-1"},
        {"max_tokens", "0"},
        {"max_tokens", "1e3"},
        {"stop", "[\"\"]"},
        {"stop", "[1]"},
        {"stop", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dais_msg *y = wire(m2);
        json_object_set_new(json_object_get(y->data, "params"), bad[i].key,
                            json_loads(bad[i].json, JSON_DECODE_ANY, NULL));
        dais_err_clear(&err);
        int rc = dais_infer_req_decode(y, &p, &err);
        if (rc != DAIS_EPROTO || strstr(err.msg, bad[i].key) == NULL)
            fail_msg("param %s=%s: rc %d '%s'", bad[i].key, bad[i].json, rc, err.msg);
        dais_msg_free(y);
    }
    char longstop[200];
    memset(longstop, 's', 129);
    longstop[129] = '\0';
    dais_msg *y = wire(m2);
    json_t *arr = json_array();
    json_array_append_new(arr, json_string(longstop));
    json_object_set_new(json_object_get(y->data, "params"), "stop", arr);
    assert_int_equal(dais_infer_req_decode(y, &p, &err), DAIS_EPROTO);
    json_object_del(y->data, "prompt");
    json_object_del(y->data, "params");
    assert_int_equal(dais_infer_req_decode(y, &p, &err), DAIS_EPROTO); /* neither prompt */
    dais_msg_free(y);
    /* Encode refuses both or neither. */
    t.tokens = toks;
    t.n_tokens = 1;
    assert_int_equal(dais_infer_req_encode(&t, m2), DAIS_EINVAL);
    dais_msg_free(r2);
    dais_msg_free(m2);
    dais_msg_free(r);
    dais_msg_free(m);
}

static void test_infer_response(void **state)
{
    (void)state;
    int32_t toks[] = {432, 383};
    dais_msg_infer_resp a, b;
    memset(&a, 0, sizeof(a));
    snprintf(a.request_id, sizeof(a.request_id), "r9");
    a.index = 3;
    a.text = ", there";
    a.text_len = 7;
    a.tokens = toks;
    a.n_tokens = 2;
    dais_msg *m = dais_msg_new(DAIS_MSG_INFERENCE_RESPONSE, "w1", "master");
    assert_int_equal(dais_infer_resp_encode(&a, m), 0);
    dais_msg *r = wire(m);
    dais_err err;
    assert_int_equal(dais_infer_resp_decode(r, &b, &err), 0);
    assert_false(b.final);
    assert_int_equal(b.index, 3);
    assert_int_equal(b.text_len, 7);
    assert_memory_equal(b.text, ", there", 7);
    assert_int_equal(b.n_tokens, 2);
    assert_memory_equal(b.tokens, toks, 8);
    dais_infer_resp_clear(&b);
    dais_msg_free(r);

    a.final = true;
    a.finish = DAIS_FINISH_ERROR;
    a.prompt_tokens = 5;
    a.completion_tokens = 60;
    a.timings = (dais_infer_timings){1.5, 2.5, 30, 1, 28, 5000, 2100};
    snprintf(a.error_code, sizeof(a.error_code), "internal");
    snprintf(a.error_message, sizeof(a.error_message), "boom");
    a.n_tokens = 0;
    a.text = "";
    a.text_len = 0;
    assert_int_equal(dais_infer_resp_encode(&a, m), 0);
    assert_int_equal(m->bin_len, 0);
    r = wire(m);
    assert_int_equal(dais_infer_resp_decode(r, &b, &err), 0);
    assert_true(b.final);
    assert_int_equal(b.finish, DAIS_FINISH_ERROR);
    assert_int_equal(b.completion_tokens, 60);
    assert_true(b.timings.ttft_ms == 2.5 && b.timings.decode_tokens_per_s == 2100);
    assert_string_equal(b.error_code, "internal");
    assert_string_equal(b.error_message, "boom");
    assert_null(b.tokens);
    json_object_set_new(r->data, "finish_reason", json_string("exploded"));
    assert_int_equal(dais_infer_resp_decode(r, &b, &err), DAIS_EPROTO);
    json_object_set_new(r->data, "finish_reason", json_string("stop"));
    json_object_del(r->data, "usage");
    assert_int_equal(dais_infer_resp_decode(r, &b, &err), DAIS_EPROTO);
    dais_msg_free(r);
    /* final without a reason, or a reason on a partial frame, is refused at encode. */
    a.finish = DAIS_FINISH_NONE;
    assert_int_equal(dais_infer_resp_encode(&a, m), DAIS_EINVAL);
    a.final = false;
    a.finish = DAIS_FINISH_STOP;
    assert_int_equal(dais_infer_resp_encode(&a, m), DAIS_EINVAL);
    /* Text must be UTF-8. */
    a.finish = DAIS_FINISH_NONE;
    a.text = "\xff";
    a.text_len = 1;
    assert_int_equal(dais_infer_resp_encode(&a, m), DAIS_EINVAL);
    /* Prompt-ids frame. */
    a.text = "";
    a.text_len = 0;
    a.prompt_token_ids = true;
    a.tokens = toks;
    a.n_tokens = 2;
    assert_int_equal(dais_infer_resp_encode(&a, m), 0);
    r = wire(m);
    assert_int_equal(dais_infer_resp_decode(r, &b, &err), 0);
    assert_true(b.prompt_token_ids);
    assert_int_equal(b.n_tokens, 2);
    dais_infer_resp_clear(&b);
    r->bin_len = 7;
    assert_int_equal(dais_infer_resp_decode(r, &b, &err), DAIS_EPROTO);
    r->bin_len = 8;
    dais_msg_free(r);
    dais_msg_free(m);
    assert_string_equal(dais_finish_name(DAIS_FINISH_LENGTH), "length");
}

static void test_cancel_drain_error(void **state)
{
    (void)state;
    dais_err err;
    dais_msg_cancel c = {0}, c2;
    snprintf(c.request_id, sizeof(c.request_id), "r1");
    snprintf(c.reason, sizeof(c.reason), "client_gone");
    dais_msg *m = dais_msg_new(DAIS_MSG_CANCEL, "master", "w1");
    assert_int_equal(dais_cancel_encode(&c, m), 0);
    dais_msg *r = wire(m);
    assert_int_equal(dais_cancel_decode(r, &c2, &err), 0);
    assert_memory_equal(&c, &c2, sizeof(c));
    json_object_set_new(r->data, "request_id", json_string(""));
    assert_int_equal(dais_cancel_decode(r, &c2, &err), DAIS_EPROTO);
    dais_msg_free(r);
    dais_msg_free(m);

    dais_msg_drain d = {.deadline_ms = 5000}, d2;
    snprintf(d.reason, sizeof(d.reason), "sigterm");
    m = dais_msg_new(DAIS_MSG_DRAIN, "w1", "master");
    assert_int_equal(dais_drain_encode(&d, m), 0);
    r = wire(m);
    assert_int_equal(dais_drain_decode(r, &d2, &err), 0);
    assert_memory_equal(&d, &d2, sizeof(d));
    json_object_set_new(r->data, "deadline_ms", json_integer(-5));
    assert_int_equal(dais_drain_decode(r, &d2, &err), DAIS_EPROTO);
    dais_msg_free(r);
    dais_msg_free(m);

    dais_msg_error e = {0}, e2;
    snprintf(e.code, sizeof(e.code), "%s", dais_perr_name(DAIS_PERR_BUSY));
    snprintf(e.message, sizeof(e.message), "all 4 slots and 8 queue places taken");
    snprintf(e.request_id, sizeof(e.request_id), "r5");
    m = dais_msg_new(DAIS_MSG_ERROR, "w1", "master");
    assert_int_equal(dais_error_encode(&e, m), 0);
    r = wire(m);
    assert_int_equal(dais_error_decode(r, &e2, &err), 0);
    assert_memory_equal(&e, &e2, sizeof(e));
    assert_int_equal(dais_perr_from_name(e2.code), DAIS_PERR_BUSY);
    json_object_del(r->data, "code");
    assert_int_equal(dais_error_decode(r, &e2, &err), DAIS_EPROTO);
    dais_msg_free(r);
    dais_msg_free(m);
    assert_int_equal(dais_perr_from_name("nope"), DAIS_PERR_NONE);
}

/* SHARD_ACTIVATION: token ids and hidden states round-trip; the payload must match the fields
 * (length, finite floats, non-negative ids); the meta codec passes a payload through as is. */
static void test_shard_activation(void **state)
{
    (void)state;
    dais_err err;
    int32_t ids[3] = {1, 403, 407};
    dais_msg_shard a = {.kind = DAIS_SHARD_TOKENS,
                        .pos = 7,
                        .n_tokens = 3,
                        .deadline_ms = 900,
                        .tokens = ids},
                   b;
    snprintf(a.request_id, sizeof(a.request_id), "req.1");
    dais_msg *m = dais_msg_new(DAIS_MSG_SHARD_ACTIVATION, "master", "s0");
    assert_int_equal(dais_shard_encode(&a, m), 0);
    dais_msg *r = wire(m);
    assert_int_equal(dais_shard_decode(r, &b, &err), 0);
    assert_string_equal(b.request_id, "req.1");
    assert_int_equal(b.kind, DAIS_SHARD_TOKENS);
    assert_int_equal(b.pos, 7);
    assert_int_equal(b.n_tokens, 3);
    assert_int_equal(b.deadline_ms, 900);
    assert_null(b.hidden);
    assert_memory_equal(b.tokens, ids, sizeof(ids));
    dais_shard_clear(&b);
    int32_t neg = -1;
    dais_msg_set_bin(r, &neg, 4);
    json_object_set_new(r->data, "n_tokens", json_integer(1));
    assert_int_equal(dais_shard_decode(r, &b, &err), DAIS_EPROTO); /* negative id */
    assert_non_null(strstr(err.msg, "negative"));
    json_object_set_new(r->data, "n_tokens", json_integer(2));
    assert_int_equal(dais_shard_decode(r, &b, &err), DAIS_EPROTO); /* 4 bytes for 2 ids */
    dais_msg_free(r);
    dais_msg_free(m);

    float h[6] = {0.5f, -1.25f, 3e10f, 0, -0.0f, 1e-30f};
    a = (dais_msg_shard){.kind = DAIS_SHARD_HIDDEN, .pos = 0, .n_tokens = 2, .dim = 3, .hidden = h};
    snprintf(a.request_id, sizeof(a.request_id), "req.1");
    m = dais_msg_new(DAIS_MSG_SHARD_ACTIVATION, "s0", "master");
    assert_int_equal(dais_shard_encode(&a, m), 0);
    r = wire(m);
    assert_int_equal(r->bin_len, sizeof(h));
    assert_int_equal(dais_shard_decode(r, &b, &err), 0);
    assert_int_equal(b.kind, DAIS_SHARD_HIDDEN);
    assert_int_equal(b.dim, 3);
    assert_memory_equal(b.hidden, h, sizeof(h)); /* bit exact, -0 included */
    dais_shard_clear(&b);
    /* the relay: fields only, then the same bytes under a new envelope */
    assert_int_equal(dais_shard_decode_meta(r, &b, &err), 0);
    assert_null(b.hidden);
    assert_null(b.tokens);
    dais_msg *fwd = dais_msg_new(DAIS_MSG_SHARD_ACTIVATION, "master", "s1");
    assert_int_equal(dais_shard_encode_meta(&b, fwd), 0);
    assert_int_equal(dais_msg_set_bin(fwd, r->bin, r->bin_len), 0);
    dais_msg *r2 = wire(fwd);
    assert_int_equal(dais_shard_decode(r2, &b, &err), 0);
    assert_memory_equal(b.hidden, h, sizeof(h));
    dais_shard_clear(&b);
    dais_msg_free(r2);
    dais_msg_free(fwd);
    /* a NaN, a wrong length, a missing dim, an unknown kind */
    float nan_row[6];
    memcpy(nan_row, h, sizeof(h));
    nan_row[4] = NAN;
    dais_msg_set_bin(r, nan_row, sizeof(nan_row));
    assert_int_equal(dais_shard_decode(r, &b, &err), DAIS_EPROTO);
    assert_non_null(strstr(err.msg, "finite"));
    assert_int_equal(dais_shard_decode_meta(r, &b, &err),
                     0); /* the relay leaves that to the stage */
    dais_msg_set_bin(r, h, sizeof(h) - 4);
    assert_int_equal(dais_shard_decode_meta(r, &b, &err), DAIS_EPROTO);
    dais_msg_set_bin(r, h, sizeof(h));
    json_object_del(r->data, "dim");
    assert_int_equal(dais_shard_decode(r, &b, &err), DAIS_EPROTO);
    json_object_set_new(r->data, "dim", json_integer(3));
    json_object_set_new(r->data, "kind", json_string("logits"));
    assert_int_equal(dais_shard_decode(r, &b, &err), DAIS_EPROTO);
    json_object_set_new(r->data, "kind", json_string("hidden"));
    json_object_set_new(r->data, "n_tokens", json_integer(0));
    assert_int_equal(dais_shard_decode(r, &b, &err), DAIS_EPROTO);
    json_object_set_new(r->data, "n_tokens", json_integer(2));
    json_object_set_new(r->data, "pos", json_integer(-1));
    assert_int_equal(dais_shard_decode(r, &b, &err), DAIS_EPROTO);
    dais_msg_free(r);
    dais_msg_free(m);
    /* encode refuses what decode would */
    a.dim = 0;
    m = dais_msg_new(DAIS_MSG_SHARD_ACTIVATION, "s0", "master");
    assert_int_equal(dais_shard_encode(&a, m), DAIS_EINVAL);
    a.dim = 3;
    a.hidden = NULL;
    assert_int_equal(dais_shard_encode(&a, m), DAIS_EINVAL);
    dais_msg_free(m);
    /* the pipeline flag of INFERENCE_REQUEST */
    dais_msg_infer_req q, q2;
    memset(&q, 0, sizeof(q));
    snprintf(q.request_id, sizeof(q.request_id), "req");
    q.prompt = "hi";
    q.prompt_len = 2;
    q.pipeline = true;
    dais_infer_params_default(&q.params);
    m = dais_msg_new(DAIS_MSG_INFERENCE_REQUEST, "master", "s1");
    assert_int_equal(dais_infer_req_encode(&q, m), 0);
    r = wire(m);
    assert_int_equal(dais_infer_req_decode(r, &q2, &err), 0);
    assert_true(q2.pipeline);
    dais_infer_req_clear(&q2);
    json_object_del(r->data, "pipeline");
    assert_int_equal(dais_infer_req_decode(r, &q2, &err), 0);
    assert_false(q2.pipeline); /* absent: an ordinary request */
    dais_infer_req_clear(&q2);
    json_object_set_new(r->data, "pipeline", json_string("yes"));
    assert_int_equal(dais_infer_req_decode(r, &q2, &err), DAIS_EPROTO);
    dais_msg_free(r);
    dais_msg_free(m);
}

static void test_simd(void **state)
{
    (void)state;
    uint32_t f = dais_simd_detect();
#if defined(__x86_64__)
    assert_true(f & DAIS_SIMD_SSE42);
#else
    (void)f;
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_discovery),      cmocka_unit_test(test_accept_reject),
        cmocka_unit_test(test_heartbeats),     cmocka_unit_test(test_infer_request),
        cmocka_unit_test(test_infer_response), cmocka_unit_test(test_cancel_drain_error),
        cmocka_unit_test(test_simd),           cmocka_unit_test(test_shard_activation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
