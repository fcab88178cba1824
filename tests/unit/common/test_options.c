/*
 * Unit tests for src/common/options.c: every kind of option, variables against flags,
 * alternative rows (aliases), --flag=value and --flag value, the errors (unknown option,
 * missing value, out of range, a bad table), both --help layouts, secret files and the value
 * parsers.
 */
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

#include "common/log.h"
#include "common/options.h"

typedef struct tcfg {
    char name[8];
    char note[16];
    uint16_t port;
    uint32_t count;
    int32_t depth;
    uint32_t wait_ms;
    size_t bytes;
    bool on;
    bool metrics;
    enum dais_log_level level;
    enum dais_log_format format;
    int twice;
} tcfg;

enum { K_TWICE = DAIS_OPT_CUSTOM, K_NOHOOK };

#define FIELD(f) offsetof(tcfg, f), sizeof(((tcfg *)0)->f)

static const dais_opt opts[] = {
    {"--name", "T_NAME", "NAME", DAIS_OPT_STR, DAIS_OPT_NONEMPTY, FIELD(name), 0, 0, "x", "a name"},
    {"--old-name", "T_OLD_NAME", "NAME", DAIS_OPT_STR, DAIS_OPT_ALT, FIELD(name), 0, 0, "",
     "alias of --name"},
    {"--note", "T_NOTE", "TEXT", DAIS_OPT_STR, 0, FIELD(note), 0, 0, "", "may be empty"},
    {"--port", "T_PORT", "PORT", DAIS_OPT_PORT, 0, FIELD(port), 0, 0, "80", "a port"},
    {"--count", "T_COUNT", "N", DAIS_OPT_INT, 0, FIELD(count), 1, 10, "3", "a count"},
    {"--depth", "T_DEPTH", "N", DAIS_OPT_INT, 0, FIELD(depth), 0, 1u << 20, "", "signed field"},
    {"--wait", "T_WAIT", "DURATION", DAIS_OPT_DURATION, 0, FIELD(wait_ms), 0, 0, "5s", "a wait"},
    {"--size", "T_SIZE", "SIZE", DAIS_OPT_SIZE, 0, FIELD(bytes), 0, 0, "1MiB", "a size"},
    {"--on", "T_ON", NULL, DAIS_OPT_BOOL, 0, FIELD(on), 0, 0, "off", "switch on"},
    {"--no-metrics", "T_NO_METRICS", NULL, DAIS_OPT_BOOL_OFF, 0, FIELD(metrics), 0, 0, "", "off"},
    {"--log-level", "T_LEVEL", "LEVEL", DAIS_OPT_LOG_LEVEL, 0, FIELD(level), 0, 0, "info", "lvl"},
    {"--log-format", "T_FORMAT", "FORMAT", DAIS_OPT_LOG_FORMAT, 0, FIELD(format), 0, 0, "", "fmt"},
    {"--twice", "T_TWICE", "N", K_TWICE, 0, FIELD(twice), 0, 0, "", "doubled by the hook"},
    {"--nohook", NULL, "X", K_NOHOOK, 0, 0, 0, 0, 0, "", "a custom kind the hook refuses"},
    {"--help", NULL, NULL, DAIS_OPT_HELP, 0, 0, 0, 0, 0, "", "show this help"},
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const char *const *g_env;
static int g_env_reads;

static const char *fake_env(const char *name)
{
    g_env_reads++;
    for (const char *const *e = g_env; e != NULL && *e != NULL; e += 2)
        if (strcmp(e[0], name) == 0) return e[1];
    return NULL;
}

static int hook(void *ctx, void *base, const dais_opt *o, const char *v, const char *src,
                dais_err *err)
{
    (*(int *)ctx)++;
    if (o->kind != K_TWICE) return dais_err_set(err, DAIS_EINTERNAL, "%s: not mine", src);
    uint32_t x;
    if (dais_parse_u32(v, 0, 1000, &x) != 0)
        return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not 0..1000", src, v);
    ((tcfg *)base)->twice = (int)(2 * x);
    return 0;
}

static int g_hook_calls;
static bool g_set[N_OPTS];

/* Parses args (NULL-terminated, argv[0] added) with variables env over defaults into c. */
static int parse(tcfg *c, const char *const *env, const char *const *args, dais_err *err)
{
    static const char *const shorts[] = {"-h", "--help", "-n", "--name", NULL};
    const dais_opt_spec spec = {opts, N_OPTS, "test --help", shorts, fake_env, hook, &g_hook_calls};
    char *argv[32];
    int argc = 0;
    argv[argc++] = "test";
    for (const char *const *a = args; a != NULL && *a != NULL; a++)
        argv[argc++] = (char *)*a;
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "x");
    c->count = 3;
    c->metrics = true;
    g_env = env;
    g_env_reads = 0;
    g_hook_calls = 0;
    dais_err_clear(err);
    return dais_opt_parse(&spec, c, argc, argv, g_set, err);
}

static void test_every_kind_from_flags(void **state)
{
    (void)state;
    tcfg c;
    dais_err err;
    const char *args[] = {
        "--name",      "abc",    "--note=",      "--port", "8080",    "--count=10", "--depth",
        "1048576",     "--wait", "1.5m",         "--size", "64KiB",   "--on",       "--no-metrics",
        "--log-level", "debug",  "--log-format", "json",   "--twice", "21",         NULL};
    assert_int_equal(parse(&c, NULL, args, &err), 0);
    assert_string_equal(c.name, "abc");
    assert_string_equal(c.note, "");
    assert_int_equal(c.port, 8080);
    assert_int_equal(c.count, 10);
    assert_int_equal(c.depth, 1 << 20);
    assert_int_equal(c.wait_ms, 90000);
    assert_int_equal(c.bytes, 65536);
    assert_true(c.on);
    assert_false(c.metrics);
    assert_int_equal(c.level, DAIS_LOG_DEBUG);
    assert_int_equal(c.format, DAIS_LOG_JSON);
    assert_int_equal(c.twice, 42);
    assert_int_equal(g_hook_calls, 1);
    assert_true(g_set[0]);
    assert_false(g_set[1]); /* --old-name not given */
    assert_true(g_set[12]);
    assert_false(g_set[13]);
    /* Nothing given: the defaults stay, nothing is marked. */
    assert_int_equal(parse(&c, NULL, NULL, &err), 0);
    assert_string_equal(c.name, "x");
    assert_int_equal(c.count, 3);
    assert_true(c.metrics);
    for (size_t i = 0; i < N_OPTS; i++)
        assert_false(g_set[i]);
}

static void test_variables_and_precedence(void **state)
{
    (void)state;
    tcfg c;
    dais_err err;
    const char *env[] = {"T_NAME", "env",    "T_COUNT", "7",       "T_ON", "yes", "T_NO_METRICS",
                         "TRUE",   "T_WAIT", "200ms",   "T_TWICE", "5",    NULL};
    assert_int_equal(parse(&c, env, NULL, &err), 0);
    assert_string_equal(c.name, "env");
    assert_int_equal(c.count, 7);
    assert_true(c.on);
    assert_false(c.metrics);
    assert_int_equal(c.wait_ms, 200);
    assert_int_equal(c.twice, 10);
    assert_true(g_set[0]);
    /* A flag wins over its variable, whichever comes first in the table. */
    const char *args[] = {"--count", "2", "--name=flag", NULL};
    assert_int_equal(parse(&c, env, args, &err), 0);
    assert_string_equal(c.name, "flag");
    assert_int_equal(c.count, 2);
    assert_int_equal(c.wait_ms, 200);
    /* The last of several flags wins. */
    const char *again[] = {"--count", "2", "--count", "4", NULL};
    assert_int_equal(parse(&c, env, again, &err), 0);
    assert_int_equal(c.count, 4);
    /* A variable a flag overrides is not even read, so a bad one does no harm. */
    const char *bad_env[] = {"T_COUNT", "999", NULL};
    assert_int_equal(parse(&c, bad_env, args, &err), 0);
    assert_int_equal(c.count, 2);
    assert_int_equal(parse(&c, bad_env, NULL, &err), DAIS_EINVAL);
    assert_string_equal(err.msg, "T_COUNT: '999' is not an integer in 1..10");
    /* A bool variable that is not truthy clears it. */
    const char *off[] = {"T_ON", "0", "T_NO_METRICS", "no", NULL};
    assert_int_equal(parse(&c, off, NULL, &err), 0);
    assert_false(c.on);
    assert_true(c.metrics);
}

static void test_empty_variables(void **state)
{
    (void)state;
    tcfg c;
    dais_err err;
    /* Empty is unset for every kind but a string that may be empty. */
    const char *env[] = {"T_NAME", "", "T_NOTE", "", "T_COUNT", "", "T_ON", "", NULL};
    assert_int_equal(parse(&c, env, NULL, &err), 0);
    assert_string_equal(c.name, "x");
    assert_false(g_set[0]);
    assert_string_equal(c.note, "");
    assert_true(g_set[2]);
    assert_int_equal(c.count, 3);
    assert_false(c.on);
    /* An empty value of a DAIS_OPT_NONEMPTY flag is refused. */
    const char *args[] = {"--name", "", NULL};
    assert_int_equal(parse(&c, NULL, args, &err), DAIS_EINVAL);
    assert_string_equal(err.msg, "--name: empty");
}

static void test_alternative_rows(void **state)
{
    (void)state;
    tcfg c;
    dais_err err;
    /* The alias flag sets the same field; the last of the two flags wins. */
    const char *a1[] = {"--old-name", "old", NULL};
    assert_int_equal(parse(&c, NULL, a1, &err), 0);
    assert_string_equal(c.name, "old");
    assert_true(g_set[1]);
    const char *a2[] = {"--name", "new", "--old-name=old", NULL};
    assert_int_equal(parse(&c, NULL, a2, &err), 0);
    assert_string_equal(c.name, "old");
    const char *a3[] = {"--old-name", "old", "--name", "new", NULL};
    assert_int_equal(parse(&c, NULL, a3, &err), 0);
    assert_string_equal(c.name, "new");
    /* The alias variable alone works; the option's own variable wins over it. */
    const char *old_env[] = {"T_OLD_NAME", "oldenv", NULL};
    assert_int_equal(parse(&c, old_env, NULL, &err), 0);
    assert_string_equal(c.name, "oldenv");
    const char *both_env[] = {"T_OLD_NAME", "oldenv", "T_NAME", "newenv", NULL};
    assert_int_equal(parse(&c, both_env, NULL, &err), 0);
    assert_string_equal(c.name, "newenv");
    assert_false(g_set[1]);
    /* A flag of either row wins over both variables. */
    assert_int_equal(parse(&c, both_env, a1, &err), 0);
    assert_string_equal(c.name, "old");
    const char *bad_old[] = {"T_OLD_NAME", "much-too-long", NULL};
    const char *a4[] = {"--name", "n", NULL};
    assert_int_equal(parse(&c, bad_old, a4, &err), 0);
    assert_string_equal(c.name, "n");
    assert_int_equal(parse(&c, bad_old, NULL, &err), DAIS_EINVAL);
    assert_string_equal(err.msg, "T_OLD_NAME: longer than 7 bytes");
    /* A short name stands for its long one. */
    const char *s[] = {"-n", "short", NULL};
    assert_int_equal(parse(&c, NULL, s, &err), 0);
    assert_string_equal(c.name, "short");
}

static void test_errors(void **state)
{
    (void)state;
    tcfg c;
    struct {
        const char *args[4];
        const char *msg;
    } cases[] = {
        {{"--frob"}, "unknown option '--frob' (see test --help)"},
        {{"--frob=1"}, "unknown option '--frob=1' (see test --help)"},
        {{"name"}, "unknown option 'name' (see test --help)"},
        {{"--count"}, "--count needs a value (N)"},
        {{"--on=1"}, "--on takes no value"},
        {{"--count", "0"}, "--count: '0' is not an integer in 1..10"},
        {{"--count", "11"}, "--count: '11' is not an integer in 1..10"},
        {{"--count", "+5"}, "--count: '+5' is not an integer in 1..10"},
        {{"--count", " 5"}, "--count: ' 5' is not an integer in 1..10"},
        {{"--depth", "-1"}, "--depth: '-1' is not an integer in 0..1048576"},
        {{"--port", "65536"}, "--port: '65536' is not a port (0..65535)"},
        {{"--wait", "0ms"}, "--wait: '0ms' is not a duration between 1ms and 24h (e.g. 5s, 200ms)"},
        {{"--wait", "1e3"}, "--wait: '1e3' is not a duration between 1ms and 24h (e.g. 5s, 200ms)"},
        {{"--size", "2GiB"}, "--size: '2GiB' is not a size between 1 byte and 1GiB (e.g. 1MiB)"},
        {{"--log-level", "loud"}, "--log-level: 'loud' is not debug|info|warn|error"},
        {{"--log-format", "xml"}, "--log-format: 'xml' is not text|json"},
        {{"--name", "12345678"}, "--name: longer than 7 bytes"},
        {{"--twice", "x"}, "--twice: 'x' is not 0..1000"},
        {{"--nohook", "x"}, "--nohook: not mine"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dais_err err;
        int rc = parse(&c, NULL, cases[i].args, &err);
        if (rc >= 0 || strcmp(err.msg, cases[i].msg) != 0)
            fail_msg("case %zu: rc %d, '%s'", i, rc, err.msg);
    }
    /* The first bad flag stops the parse before any variable is read. */
    dais_err err;
    const char *env[] = {"T_COUNT", "999", NULL};
    const char *args[] = {"--frob", NULL};
    assert_int_equal(parse(&c, env, args, &err), DAIS_EINVAL);
    assert_int_equal(g_env_reads, 0);
}

static void test_help_and_table_checks(void **state)
{
    (void)state;
    tcfg c;
    dais_err err;
    /* --help (or -h) returns 1 before anything is read or applied. */
    const char *env[] = {"T_COUNT", "999", NULL};
    const char *help[] = {"--count", "5", "--help", "--frob", NULL};
    assert_int_equal(parse(&c, env, help, &err), 1);
    assert_int_equal(g_env_reads, 0);
    assert_int_equal(c.count, 3);
    const char *h[] = {"-h", NULL};
    assert_int_equal(parse(&c, NULL, h, &err), 1);
    /* A field whose size does not fit its kind is a programming error, caught at once. */
    const dais_opt bad[] = {
        {"--n", NULL, "N", DAIS_OPT_INT, 0, offsetof(tcfg, port), sizeof(uint16_t), 0, 9, "", ""},
    };
    const dais_opt_spec spec = {bad, 1, "--help", NULL, NULL, NULL, NULL};
    char *argv[] = {"test", "--n", "1"};
    assert_int_equal(dais_opt_parse(&spec, &c, 3, argv, NULL, &err), DAIS_EINTERNAL);
    assert_non_null(strstr(err.msg, "--n"));
    /* Without a hook a custom kind is an internal error; without env no variable is read. */
    const dais_opt custom[] = {{"--c", "T_COUNT", "X", K_TWICE, 0, 0, 0, 0, 0, "", ""}};
    const dais_opt_spec cspec = {custom, 1, "--help", NULL, NULL, NULL, NULL};
    assert_int_equal(dais_opt_parse(&cspec, &c, 1, argv, NULL, &err), 0);
    char *cargv[] = {"test", "--c", "1"};
    assert_int_equal(dais_opt_parse(&cspec, &c, 3, cargv, NULL, &err), DAIS_EINTERNAL);
}

static char *help_text(enum dais_opt_layout layout, const dais_opt *o, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    dais_opt_help(f, o, n, layout);
    fclose(f);
    return buf;
}

static void test_help_layouts(void **state)
{
    (void)state;
    const dais_opt rows[] = {
        {"--count", "T_COUNT", "N", DAIS_OPT_INT, 0, 0, 4, 1, 9, "3", "a count"},
        {"--on", "T_ON", NULL, DAIS_OPT_BOOL, 0, 0, 1, 0, 0, "", "switch on"},
        {"--help", NULL, NULL, DAIS_OPT_HELP, 0, 0, 0, 0, 0, "", "show this help"},
        {"--x", NULL, "X", DAIS_OPT_STR, 0, 0, 4, 0, 0, "d", "no variable"},
    };
    char *wide = help_text(DAIS_OPT_WIDE, rows, 4);
    assert_string_equal(wide, "  --count N                             a count [3]\n"
                              "                                          env T_COUNT\n"
                              "  --on                                  switch on\n"
                              "                                          env T_ON\n"
                              "  --help                                show this help\n"
                              "  --x X                                 no variable [d]\n");
    free(wide);
    char *narrow = help_text(DAIS_OPT_NARROW, rows, 4);
    assert_string_equal(narrow, "  --count N                    a count\n"
                                "                               $T_COUNT, default 3\n"
                                "  --on                         switch on\n"
                                "                               $T_ON\n"
                                "  --help                       show this help\n"
                                "  --x X                        no variable\n"
                                "                               default d\n");
    free(narrow);
}

static void test_read_secret(void **state)
{
    (void)state;
    char path[] = "/tmp/dais-test-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cret\r\n\n", 9), 9);
    close(fd);
    char buf[8];
    size_t n = 99;
    dais_err err;
    assert_int_equal(dais_opt_read_secret(path, buf, sizeof(buf), &n, "--f", &err), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "s3cret", 6);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "a\0b\n", 4), 4);
    close(fd);
    assert_int_equal(dais_opt_read_secret(path, buf, sizeof(buf), &n, "--f", &err), DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "--f: "));
    assert_non_null(strstr(err.msg, "holds a NUL byte"));
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "0123456789", 10), 10);
    close(fd);
    assert_int_equal(dais_opt_read_secret(path, buf, sizeof(buf), &n, "--f", &err), 0);
    assert_int_equal(n, sizeof(buf)); /* cut at cap: the caller sees it is too long */
    unlink(path);
    assert_int_equal(dais_opt_read_secret(path, buf, sizeof(buf), &n, "T_F", &err), DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "T_F: cannot open"));
    assert_int_equal(dais_opt_read_secret("/", buf, sizeof(buf), &n, "T_F", &err), DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "T_F: cannot read /"));
}

static void test_value_parsers(void **state)
{
    (void)state;
    uint32_t ms;
    assert_int_equal(dais_parse_duration_ms("5", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(dais_parse_duration_ms("1.5s", &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(dais_parse_duration_ms("2min", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(dais_parse_duration_ms("24h", &ms), 0);
    assert_int_equal(ms, 86400000);
    assert_int_equal(dais_parse_duration_ms("0.4ms", &ms), DAIS_ERANGE);
    assert_int_equal(dais_parse_duration_ms("25h", &ms), DAIS_ERANGE);
    assert_int_equal(dais_parse_duration_ms(".5s", &ms), DAIS_EINVAL);
    assert_int_equal(dais_parse_duration_ms("5 s", &ms), DAIS_EINVAL);
    assert_int_equal(dais_parse_duration_ms(NULL, &ms), DAIS_EINVAL);
    size_t sz;
    assert_int_equal(dais_parse_size("1.5k", &sz), 0);
    assert_int_equal(sz, 1536);
    assert_int_equal(dais_parse_size("1G", &sz), 0);
    assert_int_equal(sz, 1u << 30);
    assert_int_equal(dais_parse_size("1.1GiB", &sz), DAIS_ERANGE);
    assert_int_equal(dais_parse_size("1kB", &sz), DAIS_EINVAL);
    uint32_t v;
    assert_int_equal(dais_parse_u32("10", 10, 10, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(dais_parse_u32("9", 10, 20, &v), DAIS_ERANGE);
    assert_int_equal(dais_parse_u32("-1", 0, 20, &v), DAIS_EINVAL);
    uint16_t port;
    assert_int_equal(dais_parse_port("0", &port), 0);
    assert_int_equal(port, 0);
    assert_int_equal(dais_parse_port("65535", &port), 0);
    assert_int_equal(port, 65535);
    assert_int_equal(dais_parse_port("65536", &port), DAIS_ERANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_from_flags),
        cmocka_unit_test(test_variables_and_precedence),
        cmocka_unit_test(test_empty_variables),
        cmocka_unit_test(test_alternative_rows),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_help_and_table_checks),
        cmocka_unit_test(test_help_layouts),
        cmocka_unit_test(test_read_secret),
        cmocka_unit_test(test_value_parsers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
