/*
 * Heartbeat datagram tests: seal/open round trip, every single-bit flip rejected, a wrong key,
 * truncation at every length, oversize, the sliding replay window (reordering within 64
 * accepted, duplicates and stale numbers refused), and a binary payload refused at sealing.
 */
#include "proto/dgram.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const uint8_t key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

static size_t seal(uint64_t seq, uint8_t *out, size_t cap)
{
    dais_msg *m = dais_msg_new(DAIS_MSG_HEARTBEAT, "master", "w1");
    json_object_set_new(m->data, "interval_ms", json_integer(200));
    size_t n = 0;
    assert_int_equal(dais_dgram_seal(m, 77, seq, key, out, cap, &n), 0);
    dais_msg_free(m);
    return n;
}

static void test_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[DAIS_DGRAM_MAX];
    size_t n = seal(5, buf, sizeof(buf));
    uint64_t sid = 0, seq = 0;
    assert_int_equal(dais_dgram_peek(buf, n, &sid, &seq), DAIS_DGRAM_OK);
    assert_int_equal(sid, 77);
    assert_int_equal(seq, 5);
    dais_seq_window w = {0};
    dais_msg *m = NULL;
    dais_err err;
    assert_int_equal(dais_dgram_open(buf, n, key, &w, &m, &seq, &err), DAIS_DGRAM_OK);
    assert_int_equal(m->type, DAIS_MSG_HEARTBEAT);
    assert_int_equal(json_integer_value(json_object_get(m->data, "interval_ms")), 200);
    dais_msg_free(m);
    /* The same datagram again is a replay. */
    assert_int_equal(dais_dgram_open(buf, n, key, &w, &m, &seq, &err), DAIS_DGRAM_REPLAY);
    assert_null(m);
    /* Another key: bad MAC. */
    uint8_t k2[32] = {9};
    dais_seq_window w2 = {0};
    assert_int_equal(dais_dgram_open(buf, n, k2, &w2, &m, NULL, &err), DAIS_DGRAM_BAD_MAC);
    assert_int_equal(w2.top, 0);
}

static void test_bit_flips(void **state)
{
    (void)state;
    uint8_t buf[DAIS_DGRAM_MAX];
    size_t n = seal(1, buf, sizeof(buf));
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            uint8_t copy[DAIS_DGRAM_MAX];
            memcpy(copy, buf, n);
            copy[i] ^= (uint8_t)(1 << bit);
            dais_seq_window w = {0};
            dais_msg *m = NULL;
            enum dais_dgram_verdict v = dais_dgram_open(copy, n, key, &w, &m, NULL, NULL);
            assert_true(v == DAIS_DGRAM_BAD_MAC || v == DAIS_DGRAM_MALFORMED);
            assert_null(m);
            assert_int_equal(w.top, 0);
        }
    }
}

static void test_truncation_and_size(void **state)
{
    (void)state;
    uint8_t buf[DAIS_DGRAM_MAX + 10];
    size_t n = seal(1, buf, sizeof(buf));
    for (size_t len = 0; len < n; len++) {
        uint64_t s, q;
        assert_int_equal(dais_dgram_peek(buf, len, &s, &q), DAIS_DGRAM_MALFORMED);
    }
    uint64_t s, q;
    assert_int_equal(dais_dgram_peek(buf, DAIS_DGRAM_MAX + 1, &s, &q), DAIS_DGRAM_OVERSIZE);
    /* Sealing into a too small buffer fails cleanly. */
    dais_msg *m = dais_msg_new(DAIS_MSG_HEARTBEAT, "master", "w1");
    size_t out = 99;
    assert_int_equal(dais_dgram_seal(m, 1, 1, key, buf, 40, &out), DAIS_ETOOBIG);
    assert_int_equal(out, 0);
    /* A message too large for any datagram. */
    char *big = malloc(DAIS_DGRAM_MAX);
    memset(big, 'x', DAIS_DGRAM_MAX - 1);
    big[DAIS_DGRAM_MAX - 1] = '\0';
    json_object_set_new(m->data, "pad", json_string(big));
    assert_int_equal(dais_dgram_seal(m, 1, 1, key, buf, sizeof(buf), &out), DAIS_ETOOBIG);
    free(big);
    json_object_clear(m->data);
    /* Binary payloads never travel in datagrams. */
    dais_msg_set_bin(m, "abcd", 4);
    assert_int_equal(dais_dgram_seal(m, 1, 1, key, buf, sizeof(buf), &out), DAIS_EINVAL);
    dais_msg_free(m);
    /* seq 0 is never valid. */
    n = seal(1, buf, sizeof(buf));
    memset(buf + n - 40, 0, 8);
    assert_int_equal(dais_dgram_peek(buf, n, &s, &q), DAIS_DGRAM_MALFORMED);
}

static void test_window(void **state)
{
    (void)state;
    dais_seq_window w = {0};
    assert_false(dais_seq_window_check(&w, 0));
    assert_true(dais_seq_window_check(&w, 1));
    dais_seq_window_update(&w, 10);
    assert_false(dais_seq_window_check(&w, 10));
    /* Reordered within the window: accepted once. */
    for (uint64_t s = 9; s > 0; s--) {
        assert_true(dais_seq_window_check(&w, s));
        dais_seq_window_update(&w, s);
        assert_false(dais_seq_window_check(&w, s));
    }
    dais_seq_window_update(&w, 100);
    assert_true(dais_seq_window_check(&w, 37));
    assert_false(dais_seq_window_check(&w, 36)); /* 64 below the top */
    assert_false(dais_seq_window_check(&w, 5));
    assert_true(dais_seq_window_check(&w, 99));
    assert_true(dais_seq_window_check(&w, 101));
    /* A huge jump clears the bitmap without undefined shifts. */
    dais_seq_window_update(&w, UINT64_MAX);
    assert_false(dais_seq_window_check(&w, UINT64_MAX));
    assert_true(dais_seq_window_check(&w, UINT64_MAX - 1));
    assert_false(dais_seq_window_check(&w, 100));
    /* Through open(): out-of-order datagrams within the window are accepted. */
    dais_seq_window w2 = {0};
    uint8_t buf[DAIS_DGRAM_MAX];
    uint64_t order[] = {3, 1, 2, 70, 6, 5, 2};
    enum dais_dgram_verdict want[] = {DAIS_DGRAM_OK,    DAIS_DGRAM_OK,     DAIS_DGRAM_OK,
                                      DAIS_DGRAM_OK,    DAIS_DGRAM_REPLAY, DAIS_DGRAM_REPLAY,
                                      DAIS_DGRAM_REPLAY};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        size_t n = seal(order[i], buf, sizeof(buf));
        dais_msg *m = NULL;
        assert_int_equal(dais_dgram_open(buf, n, key, &w2, &m, NULL, NULL), want[i]);
        dais_msg_free(m);
    }
    assert_string_equal(dais_dgram_verdict_name(DAIS_DGRAM_REPLAY), "replay");
    assert_string_equal(dais_dgram_verdict_name((enum dais_dgram_verdict)99), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_truncation_and_size),
        cmocka_unit_test(test_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
