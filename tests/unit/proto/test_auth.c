/*
 * Authentication tests: known-answer MACs (computed independently with Python's hmac module,
 * so the wire definition in docs/protocol.md is pinned), forgery (wrong token, tampered id,
 * timestamp or nonce), the replay window (skew both ways, nonce reuse, expiry, a full cache),
 * and the accept proof and session key agreeing on both sides.
 */
#include "proto/auth.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define TOK    "secret-token"
#define TOKLEN (sizeof(TOK) - 1)
#define WN     "00112233445566778899aabbccddeeff"
#define MN     "ffeeddccbbaa99887766554433221100"

static void test_known_answers(void **state)
{
    (void)state;
    char mac[65];
    dais_auth_discovery_mac(TOK, TOKLEN, "worker-1", 1700000000123, WN, mac);
    assert_string_equal(mac, "81b670e20bf697437519f20595add78ca684b1af5b25284ecad2e1328dd1f589");
    dais_auth_accept_mac(TOK, TOKLEN, "worker-1", WN, MN, mac);
    assert_string_equal(mac, "17db38ea41c4d9c609893148b246b38c5c4671c7868e04e12b27650e079c2906");
    uint8_t key[32];
    dais_auth_session_key(TOK, TOKLEN, "worker-1", MN, WN, key);
    char hex[65];
    dais_hex_encode(key, 32, hex);
    assert_string_equal(hex, "8d36cc1af573f9d0630504f089842aa231149681441e5eba722376ce5eb0d331");
}

static void test_verify_and_forgery(void **state)
{
    (void)state;
    int64_t now = 1700000000000;
    dais_auth a;
    assert_int_equal(dais_auth_make_discovery(TOK, TOKLEN, "w1", now, &a), 0);
    assert_true(dais_hex_valid(a.nonce, 32));
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &a, now, 60000, NULL),
                     DAIS_AUTH_OK);
    /* Wrong token, other node id, changed timestamp, changed nonce, changed MAC. */
    assert_int_equal(dais_auth_verify_discovery("other", 5, "w1", &a, now, 60000, NULL),
                     DAIS_AUTH_BAD_MAC);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN - 1, "w1", &a, now, 60000, NULL),
                     DAIS_AUTH_BAD_MAC);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w2", &a, now, 60000, NULL),
                     DAIS_AUTH_BAD_MAC);
    dais_auth b = a;
    b.timestamp_ms++;
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &b, now, 60000, NULL),
                     DAIS_AUTH_BAD_MAC);
    b = a;
    b.nonce[0] = b.nonce[0] == '0' ? '1' : '0';
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &b, now, 60000, NULL),
                     DAIS_AUTH_BAD_MAC);
    for (int i = 0; i < 64; i++) {
        b = a;
        b.hmac[i] = b.hmac[i] == 'a' ? 'b' : 'a';
        assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &b, now, 60000, NULL),
                         DAIS_AUTH_BAD_MAC);
    }
    /* Malformed: uppercase hex, short nonce. */
    b = a;
    b.hmac[0] = 'A';
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &b, now, 60000, NULL),
                     DAIS_AUTH_MALFORMED);
    b = a;
    b.nonce[31] = '\0';
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &b, now, 60000, NULL),
                     DAIS_AUTH_MALFORMED);
    assert_string_equal(dais_auth_verdict_name(DAIS_AUTH_BAD_MAC), "bad_token");
}

static void test_skew(void **state)
{
    (void)state;
    int64_t now = 1700000000000;
    dais_auth a;
    dais_auth_make_discovery(TOK, TOKLEN, "w1", now - 60000, &a);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &a, now, 60000, NULL),
                     DAIS_AUTH_OK);
    dais_auth_make_discovery(TOK, TOKLEN, "w1", now - 60001, &a);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &a, now, 60000, NULL),
                     DAIS_AUTH_SKEW);
    dais_auth_make_discovery(TOK, TOKLEN, "w1", now + 60001, &a);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &a, now, 60000, NULL),
                     DAIS_AUTH_SKEW);
    /* Extreme timestamps do not overflow the comparison. */
    dais_auth_make_discovery(TOK, TOKLEN, "w1", INT64_MIN, &a);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &a, INT64_MAX, 60000, NULL),
                     DAIS_AUTH_SKEW);
    dais_auth_make_discovery(TOK, TOKLEN, "w1", INT64_MAX, &a);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &a, INT64_MIN, 60000, NULL),
                     DAIS_AUTH_SKEW);
}

static void test_replay_cache(void **state)
{
    (void)state;
    int64_t now = 1700000000000;
    dais_replay_cache *c = dais_replay_cache_new(3, 1000);
    assert_non_null(c);
    dais_auth a, b, x, y;
    dais_auth_make_discovery(TOK, TOKLEN, "w1", now, &a);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &a, now, 1000, c), DAIS_AUTH_OK);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &a, now + 10, 1000, c),
                     DAIS_AUTH_REPLAY);
    /* A forged proof is not remembered (cannot fill the cache). */
    b = a;
    dais_nonce_new(b.nonce);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &b, now, 1000, c),
                     DAIS_AUTH_BAD_MAC);
    assert_int_equal(dais_replay_cache_size(c), 1);
    /* Fill it with live entries: the next good proof is refused as overloaded, not forgotten. */
    dais_auth_make_discovery(TOK, TOKLEN, "w2", now, &x);
    dais_auth_make_discovery(TOK, TOKLEN, "w3", now, &y);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w2", &x, now, 1000, c), DAIS_AUTH_OK);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w3", &y, now, 1000, c), DAIS_AUTH_OK);
    dais_auth_make_discovery(TOK, TOKLEN, "w4", now, &b);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w4", &b, now, 1000, c),
                     DAIS_AUTH_OVERLOADED);
    /* After the window the entries expire; the old proof is now refused for its age. */
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w1", &a, now + 1001, 1000, c),
                     DAIS_AUTH_SKEW);
    dais_auth_make_discovery(TOK, TOKLEN, "w4", now + 1001, &b);
    assert_int_equal(dais_auth_verify_discovery(TOK, TOKLEN, "w4", &b, now + 1001, 1000, c),
                     DAIS_AUTH_OK);
    assert_int_equal(dais_replay_cache_size(c), 1);
    dais_replay_cache_free(c);
    dais_replay_cache_free(NULL);
    assert_null(dais_replay_cache_new(0, 1000));
}

static void test_accept_and_session(void **state)
{
    (void)state;
    char mac[65];
    dais_auth_accept_mac(TOK, TOKLEN, "w1", WN, MN, mac);
    assert_true(dais_auth_accept_verify(TOK, TOKLEN, "w1", WN, MN, mac));
    assert_false(dais_auth_accept_verify("x", 1, "w1", WN, MN, mac));
    assert_false(dais_auth_accept_verify(TOK, TOKLEN, "w1", MN, WN, mac));
    assert_false(dais_auth_accept_verify(TOK, TOKLEN, "w1", WN, MN, "zz"));
    mac[3] ^= 1;
    assert_false(dais_auth_accept_verify(TOK, TOKLEN, "w1", WN, MN, mac));
    uint8_t k1[32], k2[32], k3[32];
    dais_auth_session_key(TOK, TOKLEN, "w1", MN, WN, k1);
    dais_auth_session_key(TOK, TOKLEN, "w1", MN, WN, k2);
    assert_memory_equal(k1, k2, 32);
    dais_auth_session_key(TOK, TOKLEN, "w1", WN, MN, k3);
    assert_memory_not_equal(k1, k3, 32);
    dais_auth_session_key(TOK, TOKLEN, "w2", MN, WN, k3);
    assert_memory_not_equal(k1, k3, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_verify_and_forgery),
        cmocka_unit_test(test_skew),
        cmocka_unit_test(test_replay_cache),
        cmocka_unit_test(test_accept_and_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
