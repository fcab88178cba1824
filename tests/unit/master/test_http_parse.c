/* Unit tests for src/master/http_parse.c: request heads and chunked bodies, good and bad. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "master/http_parse.h"

static int parse(const char *s, dais_http_head *h, int *status)
{
    dais_err e;
    return dais_http_parse_head(s, strlen(s), 16384, h, status, &e);
}

static void test_simple_get(void **state)
{
    (void)state;
    dais_http_head h;
    int st;
    const char *req = "GET /health?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent:  t  \r\n\r\nNEXT";
    assert_int_equal(parse(req, &h, &st), 0);
    assert_string_equal(h.method, "GET");
    assert_int_equal(h.target_len, strlen("/health?x=1"));
    assert_memory_equal(h.target, "/health?x=1", h.target_len);
    assert_int_equal(h.minor, 1);
    assert_true(h.keep_alive);
    assert_false(h.has_length);
    assert_int_equal(h.head_len, strlen(req) - 4);
    const dais_http_header *ua = dais_http_find_header(&h, "user-agent");
    assert_non_null(ua);
    assert_int_equal(ua->value_len, 1);
    assert_memory_equal(ua->value, "t", 1);
    assert_null(dais_http_find_header(&h, "x-missing"));
}

static void test_need_more_and_bare_lf(void **state)
{
    (void)state;
    dais_http_head h;
    int st;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\n", &h, &st), DAIS_HTTP_NEED_MORE);
    assert_int_equal(parse("GET / HT", &h, &st), DAIS_HTTP_NEED_MORE);
    assert_int_equal(parse("", &h, &st), DAIS_HTTP_NEED_MORE);
    assert_int_equal(parse("\r\nGET / HTTP/1.1\nHost: a\n\n", &h, &st), 0);
    assert_string_equal(h.method, "GET");
}

static void test_post_length_and_connection(void **state)
{
    (void)state;
    dais_http_head h;
    int st;
    assert_int_equal(parse("POST /api/inference HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n"
                           "Connection: foo, Close\r\nExpect: 100-continue\r\n\r\n",
                           &h, &st),
                     0);
    assert_true(h.has_length);
    assert_int_equal(h.content_length, 12);
    assert_false(h.keep_alive);
    assert_true(h.expect_continue);

    assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &h, &st), 0);
    assert_false(h.keep_alive);
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &h, &st), 0);
    assert_true(h.keep_alive);
    assert_int_equal(h.minor, 0);

    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &h, &st), 0);
    assert_true(h.chunked);
}

static void expect_status(const char *req, int want)
{
    dais_http_head h;
    int st = 0;
    int rc = parse(req, &h, &st);
    assert_true(rc < 0);
    assert_int_equal(st, want);
}

static void test_errors(void **state)
{
    (void)state;
    expect_status("GET /\r\n\r\n", 400);
    expect_status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    expect_status("GET / HTTP/1.1\r\n\r\n", 400); /* no Host */
    expect_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400);
    expect_status("GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                  400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                  400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n",
                  400);
    expect_status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
    expect_status("VERYLONGMETHODNAME / HTTP/1.1\r\nHost: a\r\n\r\n", 501);

    /* same Content-Length twice is fine */
    dais_http_head h;
    int st;
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                           "Content-Length: 2\r\n\r\n",
                           &h, &st),
                     0);
}

static void test_limits(void **state)
{
    (void)state;
    dais_http_head h;
    int st;
    dais_err e;
    /* a head that does not end within max_head: 431 */
    char big[2000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    assert_true(dais_http_parse_head(big, sizeof(big), 1024, &h, &st, &e) < 0);
    assert_int_equal(st, 431);
    /* a request line longer than 8 KiB: 414 */
    static char line[9000];
    memset(line, 'a', sizeof(line));
    memcpy(line, "GET /", 5);
    assert_true(dais_http_parse_head(line, sizeof(line), 16384, &h, &st, &e) < 0);
    assert_int_equal(st, 414);
    /* too many fields */
    static char many[8192];
    size_t n = (size_t)snprintf(many, sizeof(many), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 70; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(many + n, sizeof(many) - n, "\r\n");
    assert_true(dais_http_parse_head(many, n, 16384, &h, &st, &e) < 0);
    assert_int_equal(st, 431);
}

static int chunked(const char *in, size_t len, uint64_t limit, char *out, size_t *out_len,
                   size_t *consumed)
{
    dais_http_chunked c;
    dais_http_chunked_init(&c, limit);
    dais_err e;
    *out_len = 0;
    return dais_http_chunked_decode(&c, in, len, consumed, out, out_len, &e);
}

static void test_chunked(void **state)
{
    (void)state;
    char out[256];
    size_t ol, used;
    const char *b = "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\nGET";
    assert_int_equal(chunked(b, strlen(b), 100, out, &ol, &used), 0);
    assert_int_equal(ol, 9);
    assert_memory_equal(out, "Wikipedia", 9);
    assert_int_equal(used, strlen(b) - 3);

    /* byte by byte gives the same result */
    dais_http_chunked c;
    dais_http_chunked_init(&c, 100);
    dais_err e;
    ol = 0;
    int rc = DAIS_HTTP_NEED_MORE;
    size_t i = 0;
    for (; i < strlen(b) && rc == DAIS_HTTP_NEED_MORE; i++) {
        rc = dais_http_chunked_decode(&c, b + i, 1, &used, out, &ol, &e);
        assert_true(rc == 0 || rc == DAIS_HTTP_NEED_MORE);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(i, strlen(b) - 3);
    assert_memory_equal(out, "Wikipedia", 9);

    /* bare LF line ends */
    const char *lf = "3\nabc\n0\n\n";
    assert_int_equal(chunked(lf, strlen(lf), 100, out, &ol, &used), 0);
    assert_memory_equal(out, "abc", 3);

    /* over the limit */
    const char *big = "10\r\n0123456789abcdef\r\n0\r\n\r\n";
    assert_int_equal(chunked(big, strlen(big), 8, out, &ol, &used), DAIS_ETOOBIG);
    /* malformed */
    assert_int_equal(chunked("zz\r\n", 4, 100, out, &ol, &used), DAIS_EFORMAT);
    assert_int_equal(chunked("3\r\nabcX", 7, 100, out, &ol, &used), DAIS_EFORMAT);
    assert_int_equal(chunked("ffffffffffffffffff\r\n", 20, 100, out, &ol, &used), DAIS_ETOOBIG);
    /* incomplete */
    assert_int_equal(chunked("3\r\nab", 5, 100, out, &ol, &used), DAIS_HTTP_NEED_MORE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_need_more_and_bare_lf),
        cmocka_unit_test(test_post_length_and_connection),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_chunked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
