/* Tests for src/common/procstats.c: the /proc parsers on fixed text (including a process
 * name with spaces and parentheses), and the live readers on this process and machine. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/procstats.h"

#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void test_parse_stat(void **state)
{
    (void)state;
    /* fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
     * cmajflt utime stime cutime cstime priority nice threads itreal starttime vsize rss */
    const char *s = "4242 (evil) (name) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 "
                    "150 50 0 0 20 0 3 0 123456 987654321 2500 18446744073709551615 1 1 0\n";
    uint64_t cpu, start, vsize, rss;
    assert_int_equal(dais_procstats_parse_stat(s, strlen(s), &cpu, &start, &vsize, &rss), 0);
    assert_int_equal(cpu, 200);
    assert_int_equal(start, 123456);
    assert_int_equal(vsize, 987654321);
    assert_int_equal(rss, 2500);

    static const char *const bad[] = {
        "",
        "4242 no parens S 1 2 3",
        "4242 (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150", /* truncated */
        "4242 (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 abc 50 0 0 20 0 3 0 1 2 3",
        ("4242 (x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 99999999999999999999 50 0 0 20 0 3 0 "
         "1 2 3"),
        "4242 (x)",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(
            dais_procstats_parse_stat(bad[i], strlen(bad[i]), &cpu, &start, &vsize, &rss),
            DAIS_EFORMAT);
}

static void test_parse_cpu_mem_load(void **state)
{
    (void)state;
    const char *stat = "cpu  100 5 50 800 40 1 4 0 0 0\n"
                       "cpu0 50 2 25 400 20 1 2 0 0 0\n"
                       "intr 12345 1 2 3\n"
                       "btime 1700000000\n";
    dais_cpu_sample a, b;
    uint64_t btime = 0;
    assert_int_equal(dais_procstats_parse_cpu(stat, strlen(stat), &a, &btime), 0);
    assert_int_equal(a.total, 1000);
    assert_int_equal(a.busy, 160); /* total - idle - iowait */
    assert_int_equal(btime, 1700000000);
    const char *stat2 = "cpu  200 5 100 1600 90 1 4 0 0 0\n";
    assert_int_equal(dais_procstats_parse_cpu(stat2, strlen(stat2), &b, NULL), 0);
    /* +150 busy of +1000 ticks */
    assert_true(fabs(dais_cpu_percent(&a, &b) - 15.0) < 1e-9);
    assert_true(dais_cpu_percent(&b, &a) == 0);
    assert_true(dais_cpu_percent(&a, &a) == 0);
    assert_int_equal(dais_procstats_parse_cpu(stat2, strlen(stat2), &b, &btime), DAIS_EFORMAT);
    assert_int_equal(dais_procstats_parse_cpu("cpu  1 2\n", 9, &b, NULL), DAIS_EFORMAT);
    assert_int_equal(dais_procstats_parse_cpu("cpu0 1 2 3 4\n", 13, &b, NULL), DAIS_EFORMAT);

    const char *mem = "MemTotal:       16318440 kB\n"
                      "MemFree:         1000000 kB\n"
                      "MemAvailable:    8000000 kB\n";
    uint64_t total, avail;
    assert_int_equal(dais_procstats_parse_meminfo(mem, strlen(mem), &total, &avail), 0);
    assert_int_equal(total, 16318440ull * 1024);
    assert_int_equal(avail, 8000000ull * 1024);
    assert_int_equal(dais_procstats_parse_meminfo(mem, 30, &total, &avail), DAIS_EFORMAT);
    const char *huge = "MemTotal: 99999999999999999999 kB\nMemAvailable: 1 kB\n";
    assert_int_equal(dais_procstats_parse_meminfo(huge, strlen(huge), &total, &avail),
                     DAIS_EFORMAT);

    double load[3];
    const char *la = "0.52 1.25 10.00 2/345 6789\n";
    assert_int_equal(dais_procstats_parse_loadavg(la, strlen(la), load), 0);
    assert_true(fabs(load[0] - 0.52) < 1e-9);
    assert_true(fabs(load[1] - 1.25) < 1e-9);
    assert_true(fabs(load[2] - 10.0) < 1e-9);
    assert_int_equal(dais_procstats_parse_loadavg("0.52 1.25", 9, load), DAIS_EFORMAT);
    assert_int_equal(dais_procstats_parse_loadavg("", 0, load), DAIS_EFORMAT);
}

static void test_live(void **state)
{
    (void)state;
    dais_proc_stats p;
    assert_int_equal(dais_procstats_self(&p), 0);
    assert_true(p.rss_bytes > 100000);
    assert_true(p.vsize_bytes >= p.rss_bytes);
    assert_true(p.cpu_seconds >= 0);
    assert_true(p.open_fds >= 3);
    double now = (double)time(NULL);
    assert_true(p.start_time_seconds <= now + 1 && p.start_time_seconds > now - 3600);
    /* opening a file shows up in the count */
    int fd = open("/dev/null", O_RDONLY);
    dais_proc_stats q;
    assert_int_equal(dais_procstats_self(&q), 0);
    assert_int_equal(q.open_fds, p.open_fds + 1);
    close(fd);

    dais_cpu_sample prev = {0};
    dais_sys_stats s;
    assert_int_equal(dais_sysstats_read(&prev, &s), 0);
    assert_true(prev.total > 0);
    assert_true(s.cpu_percent >= 0 && s.cpu_percent <= 100);
    assert_true(s.mem_total_bytes > 0 && s.mem_used_bytes <= s.mem_total_bytes);
    assert_true(s.mem_used_bytes + s.mem_available_bytes == s.mem_total_bytes);
    assert_true(s.n_cpus >= 1);
    assert_true(s.load1 >= 0 && s.load5 >= 0 && s.load15 >= 0);
    /* burn a little CPU, then sample again */
    volatile double x = 0;
    for (int i = 0; i < 5000000; i++)
        x = x + i * 0.5;
    assert_true(x > 0);
    assert_int_equal(dais_sysstats_read(&prev, &s), 0);
    assert_true(s.cpu_percent >= 0 && s.cpu_percent <= 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_stat),
        cmocka_unit_test(test_parse_cpu_mem_load),
        cmocka_unit_test(test_live),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
