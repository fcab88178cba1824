/* Tests for src/common/metrics.c: exposition golden output, escaping, histogram bucket math,
 * definition checks, collectors, hiding, size caps and concurrent updates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/metrics.h"

#include <event2/buffer.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *render(dais_metrics_registry *r)
{
    int err = -1;
    size_t len = 0;
    char *s = dais_metrics_render_string(r, 0, &len, &err);
    assert_non_null(s);
    assert_int_equal(err, 0);
    assert_int_equal(len, strlen(s));
    return s;
}

static void test_golden(void **state)
{
    (void)state;
    dais_metrics_registry *r = dais_metrics_registry_new();
    assert_non_null(r);

    dais_counter *c = dais_counter_new(r, "dais_requests_total", "Requests served.");
    dais_counter_inc(c);
    dais_counter_add(c, 41);

    static const char *const lbl[] = {"route", "code"};
    dais_metric_family *f =
        dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_http_requests_total",
                                "HTTP requests by route and code.", 2, lbl, 0, NULL);
    assert_non_null(f);
    dais_counter *ok = dais_counter_child(f, (const char *[]){"/api/inference", "200"});
    dais_counter *bad = dais_counter_child(f, (const char *[]){"/api/inference", "503"});
    dais_counter_add(ok, 7);
    dais_counter_inc(bad);
    /* the same tuple again is the same child */
    assert_ptr_equal(ok, dais_counter_child(f, (const char *[]){"/api/inference", "200"}));

    dais_gauge *g = dais_gauge_new(r, "dais_queue_depth", "Requests waiting.");
    dais_gauge_set(g, 3);
    dais_gauge_inc(g);
    dais_gauge_dec(g);
    dais_gauge_add(g, -0.5);

    static const double b[] = {0.1, 1, 2.5};
    dais_histogram *h =
        dais_histogram_new(r, "dais_request_duration_seconds", "Request duration.", 3, b);
    dais_histogram_observe(h, 0.05);
    dais_histogram_observe(h, 0.1); /* on the bound: belongs to le="0.1" */
    dais_histogram_observe(h, 0.5);
    dais_histogram_observe(h, 7);

    dais_counter *cf = dais_counter_new(r, "dais_cpu_seconds_total", "Fractional counter.");
    dais_counter_add(cf, 2);
    dais_counter_add_f(cf, 0.25);

    char *s = render(r);
    const char *want = "# HELP dais_requests_total Requests served.\n"
                       "# TYPE dais_requests_total counter\n"
                       "dais_requests_total 42\n"
                       "# HELP dais_http_requests_total HTTP requests by route and code.\n"
                       "# TYPE dais_http_requests_total counter\n"
                       "dais_http_requests_total{route=\"/api/inference\",code=\"200\"} 7\n"
                       "dais_http_requests_total{route=\"/api/inference\",code=\"503\"} 1\n"
                       "# HELP dais_queue_depth Requests waiting.\n"
                       "# TYPE dais_queue_depth gauge\n"
                       "dais_queue_depth 2.5\n"
                       "# HELP dais_request_duration_seconds Request duration.\n"
                       "# TYPE dais_request_duration_seconds histogram\n"
                       "dais_request_duration_seconds_bucket{le=\"0.1\"} 2\n"
                       "dais_request_duration_seconds_bucket{le=\"1\"} 3\n"
                       "dais_request_duration_seconds_bucket{le=\"2.5\"} 3\n"
                       "dais_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"
                       "dais_request_duration_seconds_sum 7.65\n"
                       "dais_request_duration_seconds_count 4\n"
                       "# HELP dais_cpu_seconds_total Fractional counter.\n"
                       "# TYPE dais_cpu_seconds_total counter\n"
                       "dais_cpu_seconds_total 2.25\n";
    assert_string_equal(s, want);
    free(s);

    assert_true(dais_counter_value(c) == 42);
    assert_true(dais_gauge_value(g) == 2.5);
    assert_int_equal(dais_histogram_count(h), 4);
    assert_true(fabs(dais_histogram_sum(h) - 7.65) < 1e-12);
    dais_metrics_registry_free(r);
}

static void test_labelled_histogram_and_special_values(void **state)
{
    (void)state;
    dais_metrics_registry *r = dais_metrics_registry_new();
    static const char *const lbl[] = {"worker"};
    static const double b[] = {1};
    dais_metric_family *f =
        dais_metrics_family_new(r, DAIS_METRIC_HISTOGRAM, "dais_x_seconds", "x", 1, lbl, 1, b);
    dais_histogram *h = dais_histogram_child(f, (const char *[]){"w1"});
    dais_histogram_observe(h, 0.5);
    dais_gauge *g1 = dais_gauge_new(r, "dais_g_inf", "g");
    dais_gauge_set(g1, INFINITY);
    dais_gauge *g2 = dais_gauge_new(r, "dais_g_ninf", "g");
    dais_gauge_set(g2, -INFINITY);
    dais_gauge *g3 = dais_gauge_new(r, "dais_g_nan", "g");
    dais_gauge_set(g3, NAN);
    dais_gauge *g4 = dais_gauge_new(r, "dais_g_frac", "g");
    dais_gauge_set(g4, 0.1);
    dais_gauge_add(g4, 0.2);
    char *s = render(r);
    assert_non_null(strstr(s, "dais_x_seconds_bucket{worker=\"w1\",le=\"1\"} 1\n"));
    assert_non_null(strstr(s, "dais_x_seconds_bucket{worker=\"w1\",le=\"+Inf\"} 1\n"));
    assert_non_null(strstr(s, "dais_x_seconds_sum{worker=\"w1\"} 0.5\n"));
    assert_non_null(strstr(s, "dais_x_seconds_count{worker=\"w1\"} 1\n"));
    assert_non_null(strstr(s, "dais_g_inf +Inf\n"));
    assert_non_null(strstr(s, "dais_g_ninf -Inf\n"));
    assert_non_null(strstr(s, "dais_g_nan NaN\n"));
    /* 0.1 + 0.2 is not 0.3: the shortest exact round-trip form is printed */
    assert_non_null(strstr(s, "dais_g_frac 0.30000000000000004\n"));
    free(s);
    dais_metrics_registry_free(r);
}

static void test_escaping(void **state)
{
    (void)state;
    dais_metrics_registry *r = dais_metrics_registry_new();
    static const char *const lbl[] = {"v"};
    dais_metric_family *f = dais_metrics_family_new(
        r, DAIS_METRIC_GAUGE, "dais_esc", "back\\slash \"quoted\"\nnext line", 1, lbl, 0, NULL);
    dais_gauge_set(dais_gauge_child(f, (const char *[]){"a\\b\"c\nd"}), 1);
    dais_gauge_set(dais_gauge_child(f, (const char *[]){""}), 2);
    char *s = render(r);
    /* HELP escapes backslash and newline but not quotes; label values escape all three */
    assert_non_null(strstr(s, "# HELP dais_esc back\\\\slash \"quoted\"\\nnext line\n"));
    assert_non_null(strstr(s, "dais_esc{v=\"a\\\\b\\\"c\\nd\"} 1\n"));
    assert_non_null(strstr(s, "dais_esc{v=\"\"} 2\n"));
    free(s);
    dais_metrics_registry_free(r);
}

static void test_bucket_math(void **state)
{
    (void)state;
    dais_metrics_registry *r = dais_metrics_registry_new();
    /* 40 bounds: exercises the binary search path; compare with a direct count */
    double b[40];
    for (int i = 0; i < 40; i++)
        b[i] = 0.001 * (i + 1) * (i + 1);
    dais_histogram *h = dais_histogram_new(r, "dais_big_seconds", "h", 40, b);
    static const double small_b[] = {1, 2, 3};
    dais_histogram *hs = dais_histogram_new(r, "dais_small_seconds", "h", 3, small_b);
    assert_non_null(h);
    double vals[1000];
    for (int i = 0; i < 1000; i++) {
        vals[i] = (i % 7 == 0) ? b[i % 40] : (double)i * 0.0021;
        dais_histogram_observe(h, vals[i]);
    }
    for (int k = 0; k < 40; k++) {
        uint64_t want = 0;
        for (int i = 0; i < 1000; i++)
            want += vals[i] <= b[k];
        assert_int_equal(dais_histogram_bucket(h, (size_t)k), want);
    }
    assert_int_equal(dais_histogram_bucket(h, 40), 1000);
    assert_int_equal(dais_histogram_count(h), 1000);

    dais_histogram_observe(hs, -5); /* below the first bound */
    dais_histogram_observe(hs, 1);  /* exactly on a bound */
    dais_histogram_observe(hs, 1.0000001);
    dais_histogram_observe(hs, INFINITY);
    dais_histogram_observe(hs, NAN); /* counted in +Inf only */
    assert_int_equal(dais_histogram_bucket(hs, 0), 2);
    assert_int_equal(dais_histogram_bucket(hs, 1), 3);
    assert_int_equal(dais_histogram_bucket(hs, 2), 3);
    assert_int_equal(dais_histogram_bucket(hs, 3), 5);
    assert_int_equal(dais_histogram_bucket(hs, 99), 5);

    /* the shared bucket sets are valid */
    assert_non_null(dais_histogram_new(r, "dais_lat_seconds", "l", dais_buckets_latency_n,
                                       dais_buckets_latency));
    assert_non_null(
        dais_histogram_new(r, "dais_fast_seconds", "f", dais_buckets_fast_n, dais_buckets_fast));
    dais_metrics_registry_free(r);
}

static void test_definitions(void **state)
{
    (void)state;
    dais_metrics_registry *r = dais_metrics_registry_new();
    static const char *const l1[] = {"a"};
    static const char *const ldup[] = {"a", "a"};
    static const char *const lres[] = {"__a"};
    static const char *const lle[] = {"le"};
    static const char *const lbad[] = {"a-b"};
    static const double ok_b[] = {1, 2};
    static const double bad_b[] = {2, 1};
    static const double nan_b[] = {1, NAN};
    assert_null(dais_counter_new(r, "9starts_with_digit", "x"));
    assert_null(dais_counter_new(r, "has space", "x"));
    assert_null(dais_counter_new(r, "", "x"));
    assert_null(dais_counter_new(r, NULL, "x"));
    assert_non_null(dais_counter_new(r, "ns:sub_total", "colons are allowed in names"));
    assert_null(dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_a", "x", 2, ldup, 0, NULL));
    assert_null(dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_b", "x", 1, lres, 0, NULL));
    assert_null(dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_c", "x", 1, lbad, 0, NULL));
    assert_null(dais_metrics_family_new(r, DAIS_METRIC_HISTOGRAM, "dais_d", "x", 1, lle, 2, ok_b));
    assert_null(
        dais_metrics_family_new(r, DAIS_METRIC_HISTOGRAM, "dais_e", "x", 0, NULL, 2, bad_b));
    assert_null(
        dais_metrics_family_new(r, DAIS_METRIC_HISTOGRAM, "dais_f", "x", 0, NULL, 2, nan_b));
    assert_null(dais_metrics_family_new(r, DAIS_METRIC_HISTOGRAM, "dais_g", "x", 0, NULL, 0, NULL));
    assert_null(dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_h", "x", 0, NULL, 2, ok_b));
    assert_null(
        dais_metrics_family_new(r, (enum dais_metric_type)7, "dais_i", "x", 0, NULL, 0, NULL));

    /* same definition again: the same family; a different one: refused */
    dais_metric_family *f =
        dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_same", "x", 1, l1, 0, NULL);
    assert_non_null(f);
    assert_ptr_equal(f, dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_same", "other help",
                                                1, l1, 0, NULL));
    assert_null(dais_metrics_family_new(r, DAIS_METRIC_GAUGE, "dais_same", "x", 1, l1, 0, NULL));
    assert_null(
        dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_same", "x", 0, NULL, 0, NULL));
    /* child getters check the family type and the values */
    assert_null(dais_gauge_child(f, (const char *[]){"v"}));
    assert_null(dais_histogram_child(f, (const char *[]){"v"}));
    assert_null(dais_counter_child(f, NULL));
    assert_null(dais_counter_child(f, (const char *[]){NULL}));
    assert_null(dais_counter_child(NULL, NULL));

    /* NULL handles are no-ops */
    dais_counter_inc(NULL);
    dais_counter_add(NULL, 3);
    dais_counter_add_f(NULL, 1.5);
    dais_gauge_set(NULL, 1);
    dais_gauge_add(NULL, 1);
    dais_histogram_observe(NULL, 1);
    dais_histogram_observe_since(NULL, 0);
    assert_true(dais_counter_value(NULL) == 0);

    /* negative, NaN and infinite counter additions are ignored */
    dais_counter *c = dais_counter_new(r, "dais_mono_total", "x");
    dais_counter_add_f(c, -1);
    dais_counter_add_f(c, NAN);
    dais_counter_add_f(c, INFINITY);
    dais_counter_add_f(c, 0.5);
    assert_true(dais_counter_value(c) == 0.5);
    dais_metrics_registry_free(r);
}

static void test_child_cap_and_hide(void **state)
{
    (void)state;
    dais_metrics_registry *r = dais_metrics_registry_new();
    static const char *const lbl[] = {"id"};
    dais_metric_family *f =
        dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_many_total", "x", 1, lbl, 0, NULL);
    char v[32];
    dais_counter *first = NULL;
    for (int i = 0; i < DAIS_METRICS_MAX_CHILDREN; i++) {
        snprintf(v, sizeof(v), "id%d", i);
        dais_counter *c = dais_counter_child(f, (const char *[]){v});
        assert_non_null(c);
        dais_counter_add(c, (uint64_t)i);
        if (i == 0) first = c;
    }
    /* lookups still find every existing child (hash table growth kept them) */
    for (int i = 0; i < DAIS_METRICS_MAX_CHILDREN; i += 97) {
        snprintf(v, sizeof(v), "id%d", i);
        dais_counter *c = dais_counter_child(f, (const char *[]){v});
        assert_true(dais_counter_value(c) == (double)i);
    }
    assert_null(dais_counter_child(f, (const char *[]){"one-too-many"}));
    assert_ptr_equal(first, dais_counter_child(f, (const char *[]){"id0"}));

    /* hide / show again */
    assert_int_equal(dais_metric_family_hide(f, (const char *[]){"id5"}), 0);
    assert_int_equal(dais_metric_family_hide(f, (const char *[]){"nope"}), DAIS_ENOTFOUND);
    char *s = render(r);
    assert_null(strstr(s, "{id=\"id5\"}"));
    assert_non_null(strstr(s, "dais_many_total{id=\"id6\"} 6\n"));
    free(s);
    dais_counter *c5 = dais_counter_child(f, (const char *[]){"id5"});
    dais_counter_inc(c5);
    s = render(r);
    assert_non_null(strstr(s, "dais_many_total{id=\"id5\"} 6\n"));
    free(s);
    dais_metrics_registry_free(r);
}

typedef struct workers {
    int up, suspect;
} workers;

static void collect_workers(void *arg, dais_metric_sink *sink)
{
    const workers *w = arg;
    dais_metric_sink_emit(sink, (const char *[]){"up"}, w->up);
    dais_metric_sink_emit(sink, (const char *[]){"suspect"}, w->suspect);
    dais_metric_sink_emit(sink, NULL, 99); /* wrong arity: ignored */
}

static void test_collector(void **state)
{
    (void)state;
    dais_metrics_registry *r = dais_metrics_registry_new();
    workers w = {3, 1};
    static const char *const lbl[] = {"state"};
    dais_metric_family *f = dais_metrics_collector_new(
        r, DAIS_METRIC_GAUGE, "dais_workers", "Workers by state.", 1, lbl, collect_workers, &w);
    assert_non_null(f);
    /* collectors are not child families, and their names are taken */
    assert_null(dais_gauge_child(f, (const char *[]){"up"}));
    assert_null(dais_metrics_collector_new(r, DAIS_METRIC_GAUGE, "dais_workers", "x", 1, lbl,
                                           collect_workers, &w));
    assert_null(dais_metrics_collector_new(r, DAIS_METRIC_HISTOGRAM, "dais_h", "x", 0, NULL,
                                           collect_workers, &w));
    char *s = render(r);
    assert_string_equal(s, "# HELP dais_workers Workers by state.\n"
                           "# TYPE dais_workers gauge\n"
                           "dais_workers{state=\"up\"} 3\n"
                           "dais_workers{state=\"suspect\"} 1\n");
    free(s);
    w.up = 2;
    s = render(r);
    assert_non_null(strstr(s, "dais_workers{state=\"up\"} 2\n"));
    free(s);
    assert_int_equal(dais_metrics_collector_remove(r, f), 0);
    assert_int_equal(dais_metrics_collector_remove(r, f), DAIS_ENOTFOUND);
    dais_counter *plain = dais_counter_new(r, "dais_plain_total", "x");
    assert_int_equal(dais_metrics_collector_remove(
                         r, dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_plain_total", "x",
                                                    0, NULL, 0, NULL)),
                     DAIS_EINVAL);
    (void)plain;
    s = render(r);
    assert_null(strstr(s, "dais_workers"));
    free(s);
    dais_metrics_registry_free(r);
}

static void test_render_limits(void **state)
{
    (void)state;
    dais_metrics_registry *r = dais_metrics_registry_new();
    /* an empty registry renders to an empty string */
    char *s = render(r);
    assert_string_equal(s, "");
    free(s);
    dais_counter_inc(dais_counter_new(r, "dais_some_total", "some counter"));
    int err = 0;
    assert_null(dais_metrics_render_string(r, 10, NULL, &err));
    assert_int_equal(err, DAIS_ETOOBIG);
    assert_null(dais_metrics_render_string(NULL, 0, NULL, &err));
    assert_int_equal(err, DAIS_EINVAL);

    struct evbuffer *eb = evbuffer_new();
    evbuffer_add(eb, "x", 1);
    assert_int_equal(dais_metrics_render_evbuffer(r, eb, 10), DAIS_ETOOBIG);
    assert_int_equal(evbuffer_get_length(eb), 1); /* left as it was */
    assert_int_equal(dais_metrics_render_evbuffer(r, eb, 0), 0);
    size_t n = evbuffer_get_length(eb);
    char *flat = (char *)evbuffer_pullup(eb, -1);
    assert_true(n > 1 && flat[0] == 'x');
    assert_memory_equal(flat + 1, "# HELP dais_some_total", 22);
    evbuffer_free(eb);
    dais_metrics_registry_free(r);
}

static void test_standard(void **state)
{
    (void)state;
    dais_metrics_registry *r = dais_metrics_registry_new();
    assert_int_equal(dais_metrics_register_standard(r, "avx2,fma"), 0);
    char *s = render(r);
    assert_non_null(strstr(s, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(s, "\nprocess_resident_memory_bytes "));
    assert_non_null(strstr(s, "\nprocess_open_fds "));
    assert_non_null(strstr(s, "\nprocess_max_fds "));
    assert_non_null(strstr(s, "\nprocess_start_time_seconds "));
    char want[256];
    snprintf(want, sizeof(want),
             "dais_build_info{version=\"%s\",commit=\"%s\",simd=\"avx2,fma\"} 1\n", DAIS_VERSION,
             DAIS_GIT_COMMIT);
    assert_non_null(strstr(s, want));
    /* resident memory is a plausible positive number */
    const char *p = strstr(s, "\nprocess_resident_memory_bytes ");
    double rss = strtod(p + strlen("\nprocess_resident_memory_bytes "), NULL);
    assert_true(rss > 1e5 && rss < 1e12);
    free(s);
    dais_metrics_registry_free(r);

    /* the default registry exists once */
    assert_non_null(dais_metrics_default());
    assert_ptr_equal(dais_metrics_default(), dais_metrics_default());
}

/* ---- concurrency --------------------------------------------------------------------- */

#define THREADS 4
#define ITERS   100000

typedef struct shared {
    dais_metric_family *fam;
    dais_counter *c;
    dais_gauge *g;
    dais_histogram *h;
    dais_counter *children[THREADS];
} shared;

static shared g_shared;

static void *hammer(void *arg)
{
    int id = (int)(intptr_t)arg;
    /* every thread creates the same child concurrently: one handle must come back */
    g_shared.children[id] = dais_counter_child(g_shared.fam, (const char *[]){"same"});
    for (int i = 0; i < ITERS; i++) {
        dais_counter_inc(g_shared.c);
        dais_counter_add_f(g_shared.c, 0.5);
        dais_gauge_add(g_shared.g, 1);
        dais_histogram_observe(g_shared.h, (double)(i % 4));
        dais_counter_inc(g_shared.children[id]);
    }
    return NULL;
}

static void *scrape(void *arg)
{
    dais_metrics_registry *r = arg;
    for (int i = 0; i < 50; i++) {
        char *s = dais_metrics_render_string(r, 0, NULL, NULL);
        assert_non_null(s);
        free(s);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    dais_metrics_registry *r = dais_metrics_registry_new();
    static const char *const lbl[] = {"k"};
    static const double b[] = {0.5, 1.5, 2.5};
    g_shared.fam =
        dais_metrics_family_new(r, DAIS_METRIC_COUNTER, "dais_conc_total", "x", 1, lbl, 0, NULL);
    g_shared.c = dais_counter_new(r, "dais_c_total", "x");
    g_shared.g = dais_gauge_new(r, "dais_g", "x");
    g_shared.h = dais_histogram_new(r, "dais_h_seconds", "x", 3, b);
    pthread_t th[THREADS], scraper;
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, (void *)(intptr_t)i), 0);
    assert_int_equal(pthread_create(&scraper, NULL, scrape, r), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_join(scraper, NULL);
    for (int i = 1; i < THREADS; i++)
        assert_ptr_equal(g_shared.children[0], g_shared.children[i]);
    double n = (double)THREADS * ITERS;
    assert_true(dais_counter_value(g_shared.c) == n * 1.5);
    assert_true(dais_gauge_value(g_shared.g) == n);
    assert_true(dais_counter_value(g_shared.children[0]) == n);
    assert_int_equal(dais_histogram_count(g_shared.h), (uint64_t)n);
    assert_int_equal(dais_histogram_bucket(g_shared.h, 0), (uint64_t)n / 4);
    assert_int_equal(dais_histogram_bucket(g_shared.h, 1), (uint64_t)n / 2);
    assert_true(dais_histogram_sum(g_shared.h) == n / 4 * (0 + 1 + 2 + 3));
    dais_metrics_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_labelled_histogram_and_special_values),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_bucket_math),
        cmocka_unit_test(test_definitions),
        cmocka_unit_test(test_child_cap_and_hide),
        cmocka_unit_test(test_collector),
        cmocka_unit_test(test_render_limits),
        cmocka_unit_test(test_standard),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
