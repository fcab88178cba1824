/* Unit tests for src/master/config.c: defaults, flags over environment, every kind of value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "master/config.h"

static const char *const ENVS[] = {
    "DAIS_ADDR",          "DAIS_HTTP_ADDR",          "DAIS_HTTP_PORT",
    "DAIS_CLUSTER_PORT",  "DAIS_CLUSTER_TOKEN",      "DAIS_CLUSTER_TOKEN_FILE",
    "DAIS_MODELS",        "DAIS_HEARTBEAT_INTERVAL", "DAIS_HEARTBEAT_MISSES",
    "DAIS_BODY_LIMIT",    "DAIS_LOG_LEVEL",          "DAIS_NO_METRICS",
    "DAIS_OTLP_ENDPOINT", "DAIS_TRACE_ENDPOINT",     NULL};

static int setup(void **state)
{
    (void)state;
    for (int i = 0; ENVS[i] != NULL; i++)
        unsetenv(ENVS[i]);
    return 0;
}

static int parse(dais_master_config *c, int argc, const char **argv, dais_err *e)
{
    dais_master_config_default(c);
    return dais_master_config_parse(c, argc, (char **)argv, e);
}

static void test_defaults_need_token(void **state)
{
    (void)state;
    dais_master_config c;
    dais_err e;
    const char *argv[] = {"master"};
    assert_int_equal(parse(&c, 1, argv, &e), DAIS_EINVAL);
    assert_non_null(strstr(e.msg, "token"));
    setenv("DAIS_CLUSTER_TOKEN", "s3cret", 1);
    assert_int_equal(parse(&c, 1, argv, &e), 0);
    assert_string_equal(c.token, "s3cret");
    assert_int_equal(c.http_port, 8080);
    assert_int_equal(c.cluster_port, 8888);
    assert_int_equal(c.heartbeat_port, 8889);
    assert_int_equal(c.metrics_port, 9090);
    assert_int_equal(c.heartbeat_interval_ms, 5000);
    assert_int_equal(c.heartbeat_misses, 20);
    assert_int_equal(c.body_limit, 1u << 20);
    assert_true(c.metrics_enabled);
    assert_int_equal(c.n_models, 0);
    assert_true(dais_master_config_serves(&c, "anything", NULL));
}

static void test_flag_wins_over_env(void **state)
{
    (void)state;
    dais_master_config c;
    dais_err e;
    setenv("DAIS_CLUSTER_TOKEN", "envtok", 1);
    setenv("DAIS_HTTP_PORT", "1234", 1);
    setenv("DAIS_HEARTBEAT_INTERVAL", "200ms", 1);
    setenv("DAIS_MODELS", "a, b", 1);
    setenv("DAIS_ADDR", "127.0.0.1", 1);
    setenv("DAIS_NO_METRICS", "true", 1);
    const char *argv[] = {"master",
                          "--http-port",
                          "4321",
                          "--token=flagtok",
                          "--model",
                          "c",
                          "--heartbeat-misses=5",
                          "--body-limit",
                          "64k",
                          "--cluster-addr",
                          "::1"};
    assert_int_equal(parse(&c, 11, argv, &e), 0);
    assert_int_equal(c.http_port, 4321);
    assert_string_equal(c.token, "flagtok");
    assert_int_equal(c.heartbeat_interval_ms, 200);
    assert_int_equal(c.heartbeat_misses, 5);
    assert_int_equal(c.body_limit, 65536);
    assert_int_equal(c.n_models, 1);
    assert_string_equal(c.models[0].name, "c");
    assert_false(dais_master_config_serves(&c, "a", NULL));
    assert_string_equal(c.http_addr, "127.0.0.1");
    assert_string_equal(c.cluster_addr, "::1");
    assert_false(c.metrics_enabled);

    const char *argv2[] = {"master"};
    assert_int_equal(parse(&c, 1, argv2, &e), 0);
    assert_int_equal(c.n_models, 2);
    assert_string_equal(c.models[0].name, "a");
    assert_string_equal(c.models[1].name, "b");
    assert_int_equal(c.http_port, 1234);

    /* A specific bind address wins over --addr even when it comes from a variable. */
    setenv("DAIS_HTTP_ADDR", "10.0.0.1", 1);
    const char *argv3[] = {"master", "--addr", "10.0.0.2"};
    assert_int_equal(parse(&c, 3, argv3, &e), 0);
    assert_string_equal(c.http_addr, "10.0.0.1");
    assert_string_equal(c.cluster_addr, "10.0.0.2");
    assert_string_equal(c.metrics_addr, "10.0.0.2");
}

static void test_bad_values(void **state)
{
    (void)state;
    dais_master_config c;
    dais_err e;
    setenv("DAIS_CLUSTER_TOKEN", "t", 1);
    const char *bad[][3] = {
        {"--http-port", "65536", "--http-port"},
        {"--heartbeat-interval", "0", "interval"},
        {"--heartbeat-interval", "5x", "interval"},
        {"--heartbeat-misses", "0", "misses"},
        {"--body-limit", "2GiB", "body-limit"},
        {"--log-level", "loud", "log-level"},
        {"--model", "a@123", "hash"},
        {"--id", "bad id", "node id"},
        {"--bogus", "1", "unknown option"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = {"master", bad[i][0], bad[i][1]};
        assert_int_equal(parse(&c, 3, argv, &e), DAIS_EINVAL);
    }
    setenv("DAIS_HEARTBEAT_MISSES", "x", 1);
    const char *argv[] = {"master"};
    assert_int_equal(parse(&c, 1, argv, &e), DAIS_EINVAL);
    assert_non_null(strstr(e.msg, "DAIS_HEARTBEAT_MISSES"));
    unsetenv("DAIS_HEARTBEAT_MISSES");
    const char *missing[] = {"master", "--http-port"};
    assert_int_equal(parse(&c, 2, missing, &e), DAIS_EINVAL);
    const char *help[] = {"master", "--help"};
    assert_int_equal(parse(&c, 2, help, &e), 1);
}

static void test_token_file_and_hash(void **state)
{
    (void)state;
    char path[] = "/tmp/dais-test-token-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "filetok\n", 8), 8);
    close(fd);
    dais_master_config c;
    dais_err e;
    const char *hash = "stories@270CBA1BD5109F42D03350F60406024560464DB173C0E387D91F0426D3BD256D";
    const char *argv[] = {"master", "--token-file", path, "--model", hash};
    assert_int_equal(parse(&c, 5, argv, &e), 0);
    assert_string_equal(c.token, "filetok");
    assert_string_equal(c.models[0].hash,
                        "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
    assert_true(dais_master_config_serves(&c, "stories", NULL));
    assert_false(dais_master_config_serves(&c, "stories", "00"));
    const char *both[] = {"master", "--token-file", path, "--token", "x"};
    assert_int_equal(parse(&c, 5, both, &e), DAIS_EINVAL);
    unlink(path);
}

static void test_value_parsers(void **state)
{
    (void)state;
    uint32_t ms;
    assert_int_equal(dais_parse_duration_ms("5s", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(dais_parse_duration_ms("0.2", &ms), 0);
    assert_int_equal(ms, 200);
    assert_int_equal(dais_parse_duration_ms("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(dais_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_true(dais_parse_duration_ms("25h", &ms) != 0);
    assert_true(dais_parse_duration_ms("-1s", &ms) != 0);
    assert_true(dais_parse_duration_ms("1.s", &ms) != 0);
    assert_true(dais_parse_duration_ms("99999999999999999999", &ms) != 0);
    size_t sz;
    assert_int_equal(dais_parse_size("1MiB", &sz), 0);
    assert_int_equal(sz, 1048576);
    assert_int_equal(dais_parse_size("512", &sz), 0);
    assert_int_equal(sz, 512);
    assert_true(dais_parse_size("0", &sz) != 0);
    assert_true(dais_parse_size("1TB", &sz) != 0);
    uint32_t v;
    assert_int_equal(dais_parse_u32("4294967295", 0, UINT32_MAX, &v), 0);
    assert_true(dais_parse_u32("4294967296", 0, UINT32_MAX, &v) != 0);
    assert_true(dais_parse_u32("", 0, 10, &v) != 0);
    assert_true(dais_model_name_valid("Llama 3.1 8B", 12));
    assert_false(dais_model_name_valid(" x", 2));
    assert_false(dais_model_name_valid("a\nb", 3));
}

/* --otlp-endpoint is the name; --trace-endpoint and DAIS_TRACE_ENDPOINT remain as an alias. */
static void test_otlp_endpoint_and_alias(void **state)
{
    (void)state;
    dais_master_config c;
    dais_err e;
    setenv("DAIS_CLUSTER_TOKEN", "t", 1);
    const char *none[] = {"master"};
    assert_int_equal(parse(&c, 1, none, &e), 0);
    assert_string_equal(c.trace_endpoint, "");
    const char *a1[] = {"master", "--otlp-endpoint", "http://a:4318"};
    assert_int_equal(parse(&c, 3, a1, &e), 0);
    assert_string_equal(c.trace_endpoint, "http://a:4318");
    const char *a2[] = {"master", "--trace-endpoint=http://b:4318"};
    assert_int_equal(parse(&c, 2, a2, &e), 0);
    assert_string_equal(c.trace_endpoint, "http://b:4318");
    /* the last of the two flags wins */
    const char *a3[] = {"master", "--otlp-endpoint", "http://a:4318", "--trace-endpoint",
                        "http://b:4318"};
    assert_int_equal(parse(&c, 5, a3, &e), 0);
    assert_string_equal(c.trace_endpoint, "http://b:4318");
    /* the alias variable alone works; the new variable wins over it; a flag wins over both */
    setenv("DAIS_TRACE_ENDPOINT", "http://old:4318", 1);
    assert_int_equal(parse(&c, 1, none, &e), 0);
    assert_string_equal(c.trace_endpoint, "http://old:4318");
    setenv("DAIS_OTLP_ENDPOINT", "http://new:4318", 1);
    assert_int_equal(parse(&c, 1, none, &e), 0);
    assert_string_equal(c.trace_endpoint, "http://new:4318");
    assert_int_equal(parse(&c, 2, a2, &e), 0);
    assert_string_equal(c.trace_endpoint, "http://b:4318");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_need_token, setup),
        cmocka_unit_test_setup(test_flag_wins_over_env, setup),
        cmocka_unit_test_setup(test_bad_values, setup),
        cmocka_unit_test_setup(test_token_file_and_hash, setup),
        cmocka_unit_test_setup(test_value_parsers, setup),
        cmocka_unit_test_setup(test_otlp_endpoint_and_alias, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
