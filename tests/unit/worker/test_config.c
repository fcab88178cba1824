/*
 * Worker option tests: defaults, variables overridden by flags, --listen and --addr together,
 * durations and host:port forms (IPv6 in brackets), the token from a file, --help, and every
 * invalid value refused with the option named.
 */
#include "worker/config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

static const char *const *g_env;

static const char *fake_env(const char *name)
{
    for (const char *const *e = g_env; e != NULL && *e != NULL; e += 2)
        if (strcmp(e[0], name) == 0) return e[1];
    return NULL;
}

static int parse(dais_worker_config *c, const char *const *env, const char *const *args,
                 dais_err *err)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "worker";
    for (const char *const *a = args; a != NULL && *a != NULL; a++)
        argv[argc++] = (char *)*a;
    g_env = env;
    FILE *devnull = fopen("/dev/null", "w");
    dais_err_clear(err);
    int rc = dais_worker_config_parse(c, argc, argv, fake_env, devnull, err);
    fclose(devnull);
    return rc;
}

static void test_defaults_env_flags(void **state)
{
    (void)state;
    static dais_worker_config c;
    dais_err err;
    const char *env[] = {"DAIS_MODEL", "/m.gguf", "DAIS_CLUSTER_TOKEN", "s3cret",
                         "DAIS_SLOTS", "8",       "DAIS_MASTER",        "dais-master.ns.svc:9999",
                         NULL};
    assert_int_equal(parse(&c, env, NULL, &err), 0);
    assert_string_equal(c.model, "/m.gguf");
    assert_string_equal(c.token, "s3cret");
    assert_int_equal(c.token_len, 6);
    assert_string_equal(c.master_host, "dais-master.ns.svc");
    assert_int_equal(c.master_port, 9999);
    assert_int_equal(c.slots, 8);
    assert_int_equal(c.heartbeat_port, 8889);
    assert_int_equal(c.metrics_port, 9090);
    assert_true(c.metrics_enabled);
    assert_string_equal(c.addr, "0.0.0.0");
    assert_string_equal(c.advertise, ""); /* wildcard: the master uses the peer address */
    assert_string_equal(c.metrics_addr, "0.0.0.0");
    assert_int_equal(c.retry_base_ms, 100);
    assert_int_equal(c.retry_max_ms, 5000);
    assert_int_equal(c.queue, 64);
    /* Flags win over variables. */
    const char *args[] = {"--slots",
                          "2",
                          "--master=10.1.2.3",
                          "--addr",
                          "127.0.0.1",
                          "--heartbeat-port",
                          "0",
                          "--metrics-port",
                          "9191",
                          "--id",
                          "w-7",
                          "--retry-base",
                          "20ms",
                          "--retry-max",
                          "1.5s",
                          "--master-timeout",
                          "2m",
                          "--no-metrics",
                          "--log-level",
                          "debug",
                          "--log-format",
                          "json",
                          NULL};
    assert_int_equal(parse(&c, env, args, &err), 0);
    assert_int_equal(c.slots, 2);
    assert_string_equal(c.master_host, "10.1.2.3");
    assert_int_equal(c.master_port, 8888);
    assert_string_equal(c.addr, "127.0.0.1");
    assert_string_equal(c.advertise, "127.0.0.1");
    assert_string_equal(c.metrics_addr, "127.0.0.1");
    assert_int_equal(c.heartbeat_port, 0);
    assert_int_equal(c.metrics_port, 9191);
    assert_string_equal(c.node_id, "w-7");
    assert_int_equal(c.retry_base_ms, 20);
    assert_int_equal(c.retry_max_ms, 1500);
    assert_int_equal(c.master_timeout_ms, 120000);
    assert_false(c.metrics_enabled);
    assert_int_equal(c.log_level, DAIS_LOG_DEBUG);
    assert_int_equal(c.log_format, DAIS_LOG_JSON);
    const char *listen[] = {"--listen", "[::1]:7000", "--advertise", "w.example", NULL};
    assert_int_equal(parse(&c, env, listen, &err), 0);
    assert_string_equal(c.addr, "::1");
    assert_int_equal(c.heartbeat_port, 7000);
    assert_string_equal(c.advertise, "w.example");
    const char *listen0[] = {"--listen", "127.0.0.2:0", NULL};
    assert_int_equal(parse(&c, env, listen0, &err), 0);
    assert_string_equal(c.addr, "127.0.0.2");
    assert_int_equal(c.heartbeat_port, 0);
    const char *help[] = {"--help", NULL};
    assert_int_equal(parse(&c, env, help, &err), 1);
}

static void test_token_file(void **state)
{
    (void)state;
    char path[] = "/tmp/dais-token-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "from-file\n", 10), 10);
    close(fd);
    static dais_worker_config c;
    dais_err err;
    const char *env[] = {"DAIS_MODEL", "/m.gguf", "DAIS_CLUSTER_TOKEN_FILE", path, NULL};
    assert_int_equal(parse(&c, env, NULL, &err), 0);
    assert_string_equal(c.token, "from-file");
    assert_int_equal(c.token_len, 9);
    /* The token variable wins over the file variable, as in the master. */
    const char *both[] = {
        "DAIS_MODEL", "/m.gguf", "DAIS_CLUSTER_TOKEN_FILE", path, "DAIS_CLUSTER_TOKEN",
        "direct",     NULL};
    assert_int_equal(parse(&c, both, NULL, &err), 0);
    assert_string_equal(c.token, "direct");
    fd = open(path, O_WRONLY | O_TRUNC);
    close(fd);
    assert_int_equal(parse(&c, env, NULL, &err), DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "DAIS_CLUSTER_TOKEN_FILE"));
    unlink(path);
    assert_int_equal(parse(&c, env, NULL, &err), DAIS_EINVAL);
    /* A --token flag wins over both variables: the file is not even opened. */
    const char *flag[] = {"--token", "t", NULL};
    assert_int_equal(parse(&c, env, flag, &err), 0);
    assert_string_equal(c.token, "t");
}

static void test_invalid(void **state)
{
    (void)state;
    static dais_worker_config c;
    const char *env[] = {"DAIS_MODEL", "/m.gguf", "DAIS_CLUSTER_TOKEN", "t", NULL};
    struct {
        const char *args[5]; /* NULL-terminated: at most 4 arguments */
        const char *needle;
    } cases[] = {
        {{"--slots", "0"}, "--slots"},
        {{"--slots", "x"}, "--slots"},
        {{"--threads", "5000"}, "--threads"},
        {{"--master", "a:b:c"}, "--master"},
        {{"--master", "host:0"}, "--master"},
        {{"--master", "host:70000"}, "--master"},
        {{"--master", ""}, "--master"},
        {{"--master", "bad host:1"}, "--master"},
        {{"--heartbeat-port", "65536"}, "--heartbeat-port"},
        {{"--id", "has space"}, "--id"},
        {{"--retry-base", "soon"}, "--retry-base"},
        {{"--retry-base", "0ms"}, "--retry-base"},
        {{"--retry-base", "2s", "--retry-max", "1s"}, "--retry-max"},
        {{"--drain-timeout", "25h"}, "--drain-timeout"},
        {{"--log-level", "loud"}, "--log-level"},
        {{"--frobnicate"}, "unknown option"},
        {{"--slots"}, "needs a value"},
        {{"--no-metrics=1"}, "takes no value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dais_err err;
        int rc = parse(&c, env, cases[i].args, &err);
        if (rc != DAIS_EINVAL || strstr(err.msg, cases[i].needle) == NULL)
            fail_msg("case %zu: rc %d, '%s'", i, rc, err.msg);
    }
    dais_err err;
    const char *no_model[] = {"DAIS_CLUSTER_TOKEN", "t", NULL};
    assert_int_equal(parse(&c, no_model, NULL, &err), DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "--model"));
    const char *no_token[] = {"DAIS_MODEL", "/m", NULL};
    assert_int_equal(parse(&c, no_token, NULL, &err), DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "token"));
    const char *bad_env[] = {"DAIS_MODEL", "/m", "DAIS_CLUSTER_TOKEN", "t", "DAIS_QUEUE",
                             "-1",         NULL};
    assert_int_equal(parse(&c, bad_env, NULL, &err), DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "DAIS_QUEUE"));
}

static void test_parsers(void **state)
{
    (void)state;
    uint32_t ms;
    assert_int_equal(dais_worker_parse_duration("5", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(dais_worker_parse_duration("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(dais_worker_parse_duration("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(dais_worker_parse_duration("-1s", &ms), DAIS_EINVAL);
    assert_int_equal(dais_worker_parse_duration("1e30", &ms), DAIS_EINVAL);
    assert_int_equal(dais_worker_parse_duration("nan", &ms), DAIS_EINVAL);
    assert_int_equal(dais_worker_parse_duration("5 s", &ms), DAIS_EINVAL);
    char host[64];
    uint16_t port;
    assert_int_equal(dais_worker_parse_hostport("[fe80::1]:99", host, sizeof(host), &port, 1), 0);
    assert_string_equal(host, "fe80::1");
    assert_int_equal(port, 99);
    assert_int_equal(dais_worker_parse_hostport("[fe80::1]", host, sizeof(host), &port, 7), 0);
    assert_int_equal(port, 7);
    assert_int_equal(dais_worker_parse_hostport("fe80::1", host, sizeof(host), &port, 7),
                     DAIS_EINVAL);
    assert_int_equal(dais_worker_parse_hostport("[fe80::1", host, sizeof(host), &port, 7),
                     DAIS_EINVAL);
    char small[4];
    assert_int_equal(dais_worker_parse_hostport("abcd:1", small, sizeof(small), &port, 7),
                     DAIS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_env_flags),
        cmocka_unit_test(test_token_file),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_parsers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
