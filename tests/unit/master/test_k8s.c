/*
 * Tests for Kubernetes discovery (src/master/k8s.c, k8s_pods.c).
 *
 * Part one is pure: label selectors, the PodList parser (real documents and every kind of
 * invalid one), candidate lookup and the diff. Part two runs the real client against
 * tests/system/k8s/fake_apiserver.py, a local HTTPS server with its own CA (made with the
 * openssl CLI) that serves PodList documents and each failure a real API server can produce;
 * those tests skip with a message when python3 or openssl is missing. All traffic stays on
 * 127.0.0.1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/metrics.h"
#include "master/k8s.h"

#define MS  1000000ull
#define SEC (1000 * MS)

/* ---- helpers ------------------------------------------------------------------------------ */

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(content, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0); /* the server never reads half a file */
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* rm -rf without a shell (the tests must not depend on PATH). */
static int rm_tree(const char *dir)
{
    return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *read_file(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL) return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* A PodList item in the API server's shape. */
static json_t *pod(const char *name, const char *uid, const char *phase, const char *ip,
                   const char *app, bool ready, bool deleting)
{
    json_t *meta = json_pack("{s:s, s:s, s:s, s:{s:s, s:s}}", "name", name, "namespace", "dais",
                             "uid", uid, "labels", "app", app, "tier", "cpu");
    if (deleting)
        json_object_set_new(meta, "deletionTimestamp", json_string("2024-05-01T10:05:00Z"));
    json_t *status = json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}]}", "phase", phase, "conditions",
                               "type", "Initialized", "status", "True", "type", "Ready", "status",
                               ready ? "True" : "False");
    if (ip != NULL) json_object_set_new(status, "podIP", json_string(ip));
    return json_pack("{s:o, s:{s:[{s:s}]}, s:o}", "metadata", meta, "spec", "containers", "name",
                     "worker", "status", status);
}

static char *podlist_doc(json_t *items)
{
    json_t *doc = json_pack("{s:s, s:s, s:{s:s}, s:o}", "kind", "PodList", "apiVersion", "v1",
                            "metadata", "resourceVersion", "98765", "items", items);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return s;
}

static dais_k8s_podlist *parse_ok(const char *doc, const char *selector)
{
    dais_err e;
    dais_k8s_selector *sel = dais_k8s_selector_parse(selector, &e);
    assert_non_null(sel);
    dais_k8s_parse_opts o = {.ns = "dais", .selector = sel};
    dais_k8s_podlist *l = NULL;
    int rc = dais_k8s_podlist_parse(doc, strlen(doc), &o, &l, &e);
    if (rc != 0) fail_msg("parse failed: %s", e.msg);
    dais_k8s_selector_free(sel);
    return l;
}

static const dais_k8s_pod *by_name(const dais_k8s_podlist *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->pods[i].name, name) == 0) return &l->pods[i];
    return NULL;
}

/* ---- selectors ------------------------------------------------------------------------------ */

static void test_selector_grammar(void **state)
{
    (void)state;
    const char *good[] = {
        "",
        "  ",
        "app=dais-worker",
        "app==dais-worker",
        "app!=x",
        "app",
        "!app",
        "app = dais-worker , tier in (cpu, gpu)",
        "tier notin (a,b,c)",
        "example.com/role=worker",
        "app=",
        "a.b_c-d=E.f_G-h",
        "x in (foo,,baz),y,z notin ()",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        dais_err e;
        dais_k8s_selector *s = dais_k8s_selector_parse(good[i], &e);
        if (s == NULL) fail_msg("selector \"%s\" rejected: %s", good[i], e.msg);
        dais_k8s_selector_free(s);
    }
    const char *bad[] = {
        "app=a b", "=x",      "app=-x",    "app in x", "app in (a",  "app in (a b)",
        "app>3",   "app<3",   "app,",      ",app",     "app=x,,b=y", "Bad_Prefix.com/x=y",
        "app!x",   "a/b/c=d", "app=\"x\"", "-app",     "app=x;y",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        dais_err e;
        dais_err_clear(&e);
        dais_k8s_selector *s = dais_k8s_selector_parse(bad[i], &e);
        if (s != NULL) fail_msg("selector \"%s\" accepted", bad[i]);
        assert_int_equal(e.code, DAIS_EINVAL);
        assert_non_null(strstr(e.msg, "label selector"));
    }
    char big[DAIS_K8S_MAX_SELECTOR + 8];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_null(dais_k8s_selector_parse(big, NULL));
    dais_k8s_selector_free(NULL);
}

/* The selector is applied to parsed items (a second check behind the server's). */
static void test_selector_matching(void **state)
{
    (void)state;
    json_t *items = json_array();
    json_array_append_new(items, pod("w-a", "u-a", "Running", "10.0.0.1", "dais-worker", 1, 0));
    json_array_append_new(items, pod("w-b", "u-b", "Running", "10.0.0.2", "other", 1, 0));
    json_t *nolabels = pod("w-c", "u-c", "Running", "10.0.0.3", "x", 1, 0);
    json_object_del(json_object_get(nolabels, "metadata"), "labels");
    json_array_append_new(items, nolabels);
    char *doc = podlist_doc(items);
    const struct {
        const char *sel;
        size_t n;
    } cases[] = {
        {"", 3},
        {"app=dais-worker", 1},
        {"app!=dais-worker", 2}, /* absent label matches != */
        {"app", 2},
        {"!app", 1},
        {"app in (dais-worker,other)", 2},
        {"app notin (dais-worker)", 2},
        {"app=dais-worker,tier=cpu", 1},
        {"app=dais-worker,tier=gpu", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        dais_k8s_podlist *l = parse_ok(doc, cases[i].sel);
        if (l->n != cases[i].n)
            fail_msg("selector \"%s\": %zu pods, want %zu", cases[i].sel, l->n, cases[i].n);
        assert_int_equal(l->filtered, 3 - cases[i].n);
        dais_k8s_podlist_free(l);
    }
    free(doc);
}

/* ---- parser ------------------------------------------------------------------------------- */

static void test_parse_real_podlist(void **state)
{
    (void)state;
    json_t *items = json_array();
    json_array_append_new(items,
                          pod("dais-worker-7c9f-x2k4p", "9d1a6a58-55a5-4c1e-9a3e-000000000003",
                              "Running", "10.244.1.7", "dais-worker", 1, 0));
    json_array_append_new(items,
                          pod("dais-worker-7c9f-pend", "9d1a6a58-55a5-4c1e-9a3e-000000000001",
                              "Pending", NULL, "dais-worker", 0, 0));
    json_array_append_new(items,
                          pod("dais-worker-7c9f-done", "9d1a6a58-55a5-4c1e-9a3e-000000000002",
                              "Succeeded", "10.244.1.9", "dais-worker", 0, 0));
    json_array_append_new(items, pod("dais-worker-7c9f-v6", "9d1a6a58-55a5-4c1e-9a3e-000000000004",
                                     "Running", "fd00:0:0:0:0:0:0:a", "dais-worker", 1, 0));
    json_array_append_new(items, pod("dais-worker-7c9f-bye", "9d1a6a58-55a5-4c1e-9a3e-000000000005",
                                     "Running", "10.244.1.11", "dais-worker", 1, 1));
    json_array_append_new(items, pod("dais-worker-7c9f-odd", "9d1a6a58-55a5-4c1e-9a3e-000000000006",
                                     "Evicted", NULL, "dais-worker", 0, 0));
    json_array_append_new(items,
                          pod("dais-worker-7c9f-noip", "9d1a6a58-55a5-4c1e-9a3e-000000000007",
                              "Running", "", "dais-worker", 1, 0));
    char *doc = podlist_doc(items);
    dais_k8s_podlist *l = parse_ok(doc, "app=dais-worker");
    assert_int_equal(l->n, 7);
    assert_string_equal(l->resource_version, "98765");
    for (size_t i = 1; i < l->n; i++)
        assert_true(strcmp(l->pods[i - 1].uid, l->pods[i].uid) < 0); /* sorted by uid */

    const dais_k8s_pod *p = by_name(l, "dais-worker-7c9f-x2k4p");
    assert_non_null(p);
    assert_string_equal(p->ns, "dais");
    assert_string_equal(p->uid, "9d1a6a58-55a5-4c1e-9a3e-000000000003");
    assert_string_equal(p->ip, "10.244.1.7");
    assert_int_equal(p->family, AF_INET);
    assert_int_equal(p->phase, DAIS_K8S_PHASE_RUNNING);
    assert_true(p->ready);
    assert_false(p->deleting);
    assert_true(dais_k8s_pod_is_candidate(p, true));

    p = by_name(l, "dais-worker-7c9f-pend");
    assert_int_equal(p->phase, DAIS_K8S_PHASE_PENDING);
    assert_int_equal(p->family, 0);
    assert_string_equal(p->ip, "");
    assert_false(dais_k8s_pod_is_candidate(p, false));

    p = by_name(l, "dais-worker-7c9f-done");
    assert_int_equal(p->phase, DAIS_K8S_PHASE_SUCCEEDED);
    assert_false(dais_k8s_pod_is_candidate(p, false));

    p = by_name(l, "dais-worker-7c9f-v6");
    assert_int_equal(p->family, AF_INET6);
    assert_string_equal(p->ip, "fd00::a"); /* canonical form */
    assert_true(dais_k8s_pod_is_candidate(p, false));

    p = by_name(l, "dais-worker-7c9f-bye");
    assert_true(p->deleting);
    assert_false(dais_k8s_pod_is_candidate(p, false));

    p = by_name(l, "dais-worker-7c9f-odd");
    assert_int_equal(p->phase, DAIS_K8S_PHASE_UNKNOWN);
    p = by_name(l, "dais-worker-7c9f-noip");
    assert_int_equal(p->family, 0);
    assert_false(dais_k8s_pod_is_candidate(p, false));

    assert_string_equal(dais_k8s_phase_name(DAIS_K8S_PHASE_RUNNING), "Running");
    assert_string_equal(dais_k8s_phase_name(DAIS_K8S_PHASE_UNKNOWN), "Unknown");
    dais_k8s_podlist_free(l);
    free(doc);

    /* An empty list is a valid, empty answer. */
    doc = podlist_doc(json_array());
    l = parse_ok(doc, "");
    assert_int_equal(l->n, 0);
    dais_k8s_podlist_free(l);
    free(doc);
    dais_k8s_podlist_free(NULL);
}

/* Replaces items[0].<path> with `v` (NULL: delete it) in a one-pod list and returns the doc. */
static char *mutate(const char *obj, const char *key, json_t *v)
{
    json_t *items = json_array();
    json_array_append_new(items, pod("w-1", "u-1", "Running", "10.0.0.1", "dais-worker", 1, 0));
    json_t *item = json_array_get(items, 0);
    json_t *target = obj[0] == '\0' ? item : json_object_get(item, obj);
    if (v != NULL)
        json_object_set_new(target, key, v);
    else
        json_object_del(target, key);
    return podlist_doc(items);
}

static void expect_reject(const char *doc, size_t len, int code, const char *needle)
{
    dais_err e;
    dais_err_clear(&e);
    dais_k8s_parse_opts o = {.ns = "dais"};
    dais_k8s_podlist *l = (dais_k8s_podlist *)0x1;
    int rc = dais_k8s_podlist_parse(doc, len, &o, &l, &e);
    if (rc != code) fail_msg("doc %.200s: rc %d (%s), want %d", doc, rc, e.msg, code);
    assert_null(l);
    if (strstr(e.msg, needle) == NULL) fail_msg("message \"%s\" lacks \"%s\"", e.msg, needle);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    const struct {
        const char *doc;
        const char *needle;
    } raw[] = {
        {"", "not JSON"},
        {"{\"kind\":\"PodList\",\"items\":[", "not JSON"},
        {"[1,2]", "not an object"},
        {"{\"kind\":\"Status\",\"items\":[]}", "kind"},
        {"{\"items\":[]}", "kind"},
        {"{\"kind\":\"PodList\",\"apiVersion\":\"v2\",\"items\":[]}", "apiVersion"},
        {"{\"kind\":\"PodList\"}", "items"},
        {"{\"kind\":\"PodList\",\"items\":null}", "items"},
        {"{\"kind\":\"PodList\",\"items\":{}}", "items"},
        {"{\"kind\":\"PodList\",\"items\":[1]}", "items[0] is not an object"},
        {"{\"kind\":\"PodList\",\"items\":[{}]}", "metadata"},
        {"{\"kind\":\"PodList\",\"kind\":\"PodList\",\"items\":[]}", "not JSON"}, /* duplicate */
        {"{\"kind\":\"PodList\",\"metadata\":[],\"items\":[]}", "metadata is not an object"},
        {"{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":5},\"items\":[]}",
         "resourceVersion"},
    };
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++)
        expect_reject(raw[i].doc, strlen(raw[i].doc), DAIS_EFORMAT, raw[i].needle);

    char long_name[300];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    char long_label[80];
    memset(long_label, 'v', sizeof(long_label) - 1);
    long_label[sizeof(long_label) - 1] = '\0';
    const struct {
        const char *obj, *key;
        json_t *v;
        const char *needle;
    } cases[] = {
        {"metadata", "name", json_integer(5), "metadata.name is not a string"},
        {"metadata", "name", NULL, "metadata.name is missing"},
        {"metadata", "name", json_string(long_name), "longer than 253"},
        {"metadata", "name", json_string("Bad_Name"), "metadata.name has an invalid value"},
        {"metadata", "name", json_string(""), "metadata.name has an invalid value"},
        {"metadata", "namespace", json_string("other"), "namespace \"other\""},
        {"metadata", "namespace", json_string("UPPER"), "metadata.namespace has an invalid"},
        {"metadata", "uid", NULL, "metadata.uid is missing"},
        {"metadata", "uid", json_string("u 1"), "metadata.uid has an invalid value"},
        {"metadata", "uid", json_string("u\n1"), "metadata.uid has an invalid value"},
        {"metadata", "labels", json_array(), "labels is not an object"},
        {"metadata", "labels", json_pack("{s:i}", "app", 1), "labels value"},
        {"metadata", "labels", json_pack("{s:s}", "app", long_label), "labels value"},
        {"metadata", "deletionTimestamp", json_true(), "deletionTimestamp is not a string"},
        {"", "metadata", json_string("x"), "metadata is missing or not an object"},
        {"", "status", json_integer(1), "status is not an object"},
        {"status", "phase", json_array(), "status.phase is not a string"},
        {"status", "podIP", json_string("10.0.0.256"), "podIP is not an IP address"},
        {"status", "podIP", json_string("10.0.0.1 "), "podIP is not an IP address"},
        {"status", "podIP", json_string("fe80::1%eth0"), "podIP is not an IP address"},
        {"status", "podIP", json_string("hostname"), "podIP is not an IP address"},
        {"status", "podIP", json_integer(10), "podIP is not a string"},
        {"status", "podIP", json_string("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb"),
         "longer than 45"},
        {"status", "conditions", json_object(), "conditions is not an array"},
        {"status", "conditions", json_pack("[i]", 1), "conditions[0] is not an object"},
        {"status", "conditions", json_pack("[{s:s}]", "type", "Ready"), "lacks string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *doc = mutate(cases[i].obj, cases[i].key, cases[i].v);
        expect_reject(doc, strlen(doc), DAIS_EFORMAT, cases[i].needle);
        free(doc);
    }

    /* Two items with the same uid. */
    json_t *items = json_array();
    json_array_append_new(items, pod("w-1", "same", "Running", "10.0.0.1", "a", 1, 0));
    json_array_append_new(items, pod("w-2", "same", "Running", "10.0.0.2", "a", 1, 0));
    char *doc = podlist_doc(items);
    expect_reject(doc, strlen(doc), DAIS_EFORMAT, "two items have uid same");
    /* Cut anywhere: always rejected, never a partial list. */
    for (size_t cut = 0; cut < strlen(doc); cut += 7)
        expect_reject(doc, cut, DAIS_EFORMAT, "not JSON");
    free(doc);
    /* A NUL byte inside the document. */
    expect_reject("{\"kind\":\"PodList\"\0,\"items\":[]}", 30, DAIS_EFORMAT, "not JSON");
}

static void test_parse_limits(void **state)
{
    (void)state;
    json_t *items = json_array();
    for (int i = 0; i < 5; i++) {
        char name[32], uid[32], ip[32];
        snprintf(name, sizeof(name), "w-%d", i);
        snprintf(uid, sizeof(uid), "u-%d", i);
        snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
        json_array_append_new(items, pod(name, uid, "Running", ip, "a", 1, 0));
    }
    char *doc = podlist_doc(items);
    dais_k8s_parse_opts o = {.max_pods = 4};
    dais_k8s_podlist *l;
    dais_err e;
    assert_int_equal(dais_k8s_podlist_parse(doc, strlen(doc), &o, &l, &e), DAIS_ETOOBIG);
    assert_null(l);
    o.max_pods = 5;
    assert_int_equal(dais_k8s_podlist_parse(doc, strlen(doc), &o, &l, &e), 0);
    assert_int_equal(l->n, 5);
    dais_k8s_podlist_free(l);
    /* No options at all: any namespace, every label. */
    assert_int_equal(dais_k8s_podlist_parse(doc, strlen(doc), NULL, &l, &e), 0);
    assert_int_equal(l->n, 5);
    dais_k8s_podlist_free(l);
    free(doc);
}

/* ---- candidates, lookup, diff ------------------------------------------------------------- */

static void test_find_ip(void **state)
{
    (void)state;
    json_t *items = json_array();
    json_array_append_new(items, pod("w-1", "u-1", "Running", "10.0.0.5", "a", 1, 0));
    json_array_append_new(items, pod("w-2", "u-2", "Running", "fd00::7", "a", 0, 0));
    json_array_append_new(items, pod("w-3", "u-3", "Pending", "10.0.0.6", "a", 0, 0));
    char *doc = podlist_doc(items);
    dais_k8s_podlist *l = parse_ok(doc, "");
    const dais_k8s_pod *p = dais_k8s_podlist_find_ip(l, "10.0.0.5", false);
    assert_non_null(p);
    assert_string_equal(p->name, "w-1");
    p = dais_k8s_podlist_find_ip(l, "::ffff:10.0.0.5", false); /* dual-stack socket view */
    assert_non_null(p);
    assert_string_equal(p->name, "w-1");
    p = dais_k8s_podlist_find_ip(l, "fd00:0::7", false);
    assert_non_null(p);
    assert_string_equal(p->name, "w-2");
    assert_null(dais_k8s_podlist_find_ip(l, "fd00::7", true));   /* not Ready */
    assert_null(dais_k8s_podlist_find_ip(l, "10.0.0.6", false)); /* Pending */
    assert_null(dais_k8s_podlist_find_ip(l, "10.0.0.7", false));
    assert_null(dais_k8s_podlist_find_ip(l, "not-an-ip", false));
    assert_null(dais_k8s_podlist_find_ip(l, "", false));
    assert_null(dais_k8s_podlist_find_ip(l, NULL, false));
    assert_null(dais_k8s_podlist_find_ip(NULL, "10.0.0.5", false));
    dais_k8s_podlist_free(l);
    free(doc);
}

static void test_diff(void **state)
{
    (void)state;
    json_t *a = json_array();
    json_array_append_new(a, pod("keep", "u-keep", "Running", "10.0.0.1", "x", 1, 0));
    json_array_append_new(a, pod("gone", "u-gone", "Running", "10.0.0.2", "x", 1, 0));
    json_array_append_new(a, pod("done", "u-done", "Running", "10.0.0.3", "x", 1, 0));
    json_array_append_new(a, pod("del", "u-del", "Running", "10.0.0.4", "x", 1, 0));
    json_array_append_new(a, pod("moved", "u-moved", "Running", "10.0.0.5", "x", 1, 0));
    json_array_append_new(a, pod("starting", "u-starting", "Pending", NULL, "x", 0, 0));
    json_array_append_new(a, pod("lostip", "u-lostip", "Running", "10.0.0.6", "x", 1, 0));
    json_array_append_new(a, pod("unready", "u-unready", "Running", "10.0.0.7", "x", 1, 0));
    json_t *b = json_array();
    json_array_append_new(b, pod("keep", "u-keep", "Running", "10.0.0.1", "x", 1, 0));
    json_array_append_new(b, pod("done", "u-done", "Succeeded", "10.0.0.3", "x", 0, 0));
    json_array_append_new(b, pod("del", "u-del", "Running", "10.0.0.4", "x", 1, 1));
    json_array_append_new(b, pod("moved", "u-moved", "Running", "10.0.0.50", "x", 1, 0));
    json_array_append_new(b, pod("starting", "u-starting", "Running", "10.0.0.8", "x", 1, 0));
    json_array_append_new(b, pod("new", "u-new", "Running", "10.0.0.9", "x", 1, 0));
    json_array_append_new(b, pod("newpending", "u-newpending", "Pending", NULL, "x", 0, 0));
    json_array_append_new(b, pod("lostip", "u-lostip", "Running", NULL, "x", 1, 0));
    json_array_append_new(b, pod("unready", "u-unready", "Running", "10.0.0.7", "x", 0, 0));
    char *da = podlist_doc(a), *db = podlist_doc(b);
    dais_k8s_podlist *prev = parse_ok(da, ""), *next = parse_ok(db, "");

    dais_k8s_diff d;
    assert_int_equal(dais_k8s_diff_compute(prev, next, false, &d), 0);
    /* added: moved (new IP), starting, new */
    assert_int_equal(d.n_added, 3);
    const char *added[3];
    for (size_t i = 0; i < 3; i++)
        added[i] = d.added[i]->name;
    const char *want_added[] = {"moved", "new", "starting"}; /* uid order */
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(added[i], want_added[i]);
    assert_string_equal(d.added[0]->ip, "10.0.0.50");
    /* removed: del (deleting), done (not running), gone, lostip, moved (ip changed) */
    assert_int_equal(d.n_removed, 5);
    const struct {
        const char *name;
        enum dais_k8s_removal why;
    } want[] = {{"del", DAIS_K8S_DELETING},
                {"done", DAIS_K8S_NOT_RUNNING},
                {"gone", DAIS_K8S_GONE},
                {"lostip", DAIS_K8S_NO_IP},
                {"moved", DAIS_K8S_IP_CHANGED}};
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(d.removed[i].pod->name, want[i].name);
        assert_int_equal(d.removed[i].why, want[i].why);
        assert_true(d.removed[i].pod >= prev->pods && d.removed[i].pod < prev->pods + prev->n);
    }
    assert_string_equal(d.removed[4].pod->ip, "10.0.0.5"); /* the old address */
    dais_k8s_diff_release(&d);

    /* With readiness required, "unready" is removed too and "starting" is added (Ready). */
    assert_int_equal(dais_k8s_diff_compute(prev, next, true, &d), 0);
    assert_int_equal(d.n_removed, 6);
    bool saw = false;
    for (size_t i = 0; i < d.n_removed; i++)
        if (strcmp(d.removed[i].pod->name, "unready") == 0) {
            saw = true;
            assert_int_equal(d.removed[i].why, DAIS_K8S_NOT_READY);
        }
    assert_true(saw);
    dais_k8s_diff_release(&d);

    /* No previous list: every candidate is new. Same list twice: nothing changes. */
    assert_int_equal(dais_k8s_diff_compute(NULL, prev, false, &d), 0);
    assert_int_equal(d.n_added, 7);
    assert_int_equal(d.n_removed, 0);
    dais_k8s_diff_release(&d);
    assert_int_equal(dais_k8s_diff_compute(next, next, false, &d), 0);
    assert_int_equal(d.n_added + d.n_removed, 0);
    dais_k8s_diff_release(&d);
    /* Everything vanished (an empty but successful list): all removed as gone. */
    char *de = podlist_doc(json_array());
    dais_k8s_podlist *empty = parse_ok(de, "");
    assert_int_equal(dais_k8s_diff_compute(next, empty, false, &d), 0);
    assert_int_equal(d.n_removed, 5); /* keep, moved, starting, new, unready */
    for (size_t i = 0; i < d.n_removed; i++)
        assert_int_equal(d.removed[i].why, DAIS_K8S_GONE);
    dais_k8s_diff_release(&d);
    dais_k8s_diff_release(NULL);

    assert_string_equal(dais_k8s_removal_name(DAIS_K8S_GONE), "gone");
    assert_string_equal(dais_k8s_removal_name(DAIS_K8S_IP_CHANGED), "ip_changed");
    assert_string_equal(dais_k8s_reason_name(DAIS_K8S_R_UNAUTHORIZED), "unauthorized");
    assert_string_equal(dais_k8s_reason_name(DAIS_K8S_R_COUNT), "unknown");
    dais_k8s_podlist_free(empty);
    dais_k8s_podlist_free(prev);
    dais_k8s_podlist_free(next);
    free(da);
    free(db);
    free(de);
}

/* ---- client configuration ------------------------------------------------------------------ */

typedef struct fixture {
    char dir[256];
    pid_t server;
    int port;
    char url[64];
    char token_path[300], ca_path[300], other_ca[300];
    bool skip;
    char why[200];
} fixture;

static fixture g;

static void base_config(dais_k8s_config *c)
{
    dais_k8s_config_default(c);
    c->api_url = g.url;
    c->token_path = g.token_path;
    c->ca_path = g.ca_path;
    c->ns = "dais";
    c->label_selector = "app=dais-worker,tier in (cpu,gpu)";
    c->connect_timeout_ns = 2 * SEC;
    c->timeout_ns = 1500 * MS;
}

static void test_client_config(void **state)
{
    (void)state;
    char dir[] = "/tmp/dais-k8s-cfg-XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_file(dir, "token", "abc\n");
    write_file(dir, "ca.crt", "not used here\n");
    write_file(dir, "namespace", "team-a\n");
    write_file(dir, "badns", "Team_A\n");
    char tok[300], ca[300], nsf[300], badns[300];
    snprintf(tok, sizeof(tok), "%s/token", dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    snprintf(nsf, sizeof(nsf), "%s/namespace", dir);
    snprintf(badns, sizeof(badns), "%s/badns", dir);

    dais_k8s_config c;
    dais_k8s_config_default(&c);
    assert_int_equal(c.poll_interval_ns, 10 * SEC);
    assert_int_equal(c.max_response, 16u << 20);
    c.token_path = tok;
    c.ca_path = ca;
    c.ns_path = nsf;
    c.label_selector = "app=dais-worker,tier in (a,b)";
    dais_err e;

    /* In-cluster: the URL comes from the environment. */
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    assert_null(dais_k8s_client_new(&c, &e));
    assert_int_equal(e.code, DAIS_EINVAL);
    assert_non_null(strstr(e.msg, "KUBERNETES_SERVICE_HOST"));
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    dais_k8s_client *cl = dais_k8s_client_new(&c, &e);
    if (cl == NULL) fail_msg("%s", e.msg);
    assert_string_equal(dais_k8s_client_namespace(cl), "team-a");
    assert_string_equal(dais_k8s_client_url(cl),
                        "https://10.96.0.1:443/api/v1/namespaces/team-a/pods?labelSelector="
                        "app%3Ddais-worker%2Ctier%20in%20%28a%2Cb%29");
    assert_string_equal(dais_k8s_client_config(cl)->token_path, tok);
    dais_k8s_client_free(cl);
    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    c.label_selector = NULL;
    cl = dais_k8s_client_new(&c, &e);
    assert_non_null(cl);
    assert_string_equal(dais_k8s_client_url(cl),
                        "https://[fd00:10:96::1]:443/api/v1/namespaces/team-a/pods");
    dais_k8s_client_free(cl);
    setenv("KUBERNETES_SERVICE_PORT", "99999", 1);
    assert_null(dais_k8s_client_new(&c, &e));
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    setenv("KUBERNETES_SERVICE_HOST", "evil/host?x=", 1);
    assert_null(dais_k8s_client_new(&c, &e));
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");

    /* Explicit URL and the checks on each input. */
    c.api_url = "https://127.0.0.1:6443/";
    cl = dais_k8s_client_new(&c, &e);
    assert_non_null(cl);
    assert_string_equal(dais_k8s_client_url(cl),
                        "https://127.0.0.1:6443/api/v1/namespaces/team-a/pods");
    dais_k8s_client_free(cl);
    const char *bad_urls[] = {"http://127.0.0.1:6443", "https://", "https://a b", "https://x/y",
                              "file:///etc/passwd"};
    for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
        c.api_url = bad_urls[i];
        assert_null(dais_k8s_client_new(&c, &e));
        assert_int_equal(e.code, DAIS_EINVAL);
    }
    c.api_url = "https://127.0.0.1:6443";
    c.ns_path = badns;
    assert_null(dais_k8s_client_new(&c, &e));
    assert_non_null(strstr(e.msg, "DNS-1123"));
    c.ns_path = "/nonexistent/namespace";
    assert_null(dais_k8s_client_new(&c, &e));
    assert_int_equal(e.code, DAIS_EIO);
    c.ns_path = nsf;
    c.token_path = "/nonexistent/token";
    assert_null(dais_k8s_client_new(&c, &e));
    assert_int_equal(e.code, DAIS_EIO);
    c.token_path = tok;
    c.ca_path = "/nonexistent/ca.crt";
    assert_null(dais_k8s_client_new(&c, &e));
    assert_int_equal(e.code, DAIS_EIO);
    c.ca_path = ca;
    c.label_selector = "app in (";
    assert_null(dais_k8s_client_new(&c, &e));
    assert_int_equal(e.code, DAIS_EINVAL);
    c.label_selector = NULL;
    c.poll_interval_ns = 0;
    assert_null(dais_k8s_client_new(&c, &e));
    c.poll_interval_ns = SEC;
    c.retry.base_ns = 0;
    assert_null(dais_k8s_client_new(&c, &e));
    assert_null(dais_k8s_client_new(NULL, &e));
    dais_k8s_client_free(NULL);

    assert_int_equal(rm_tree(dir), 0);
}

/* ---- against the fake API server -------------------------------------------------------- */

static const char *repo_root(void)
{
    static char root[4096];
    snprintf(root, sizeof(root), "%s", __FILE__);
    char *p = strstr(root, "/tests/unit/master/test_k8s.c");
    if (p == NULL) return ".";
    *p = '\0';
    return root;
}

static int server_setup(void **state)
{
    (void)state;
    memset(&g, 0, sizeof(g));
    g.server = -1;
    if (system("python3 -c 'import ssl, http.server' >/dev/null 2>&1") != 0) {
        g.skip = true;
        snprintf(g.why, sizeof(g.why), "python3 with the ssl module is not available");
        return 0;
    }
    if (system("openssl version >/dev/null 2>&1") != 0) {
        g.skip = true;
        snprintf(g.why, sizeof(g.why), "the openssl command is not available");
        return 0;
    }
    /* The client must go straight to 127.0.0.1, whatever proxy the environment names. */
    const char *proxies[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "HTTP_PROXY",
                             "ALL_PROXY",  "all_proxy",   "NO_PROXY",    "no_proxy"};
    for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
        unsetenv(proxies[i]);

    snprintf(g.dir, sizeof(g.dir), "/tmp/dais-k8s-XXXXXX");
    if (mkdtemp(g.dir) == NULL) return -1;
    write_file(g.dir, "token", "token-one\n");
    write_file(g.dir, "expected_token", "token-one\n");
    write_file(g.dir, "mode", "ok\n");
    write_file(g.dir, "pods.json", "[]");
    snprintf(g.token_path, sizeof(g.token_path), "%s/token", g.dir);
    snprintf(g.ca_path, sizeof(g.ca_path), "%s/ca.crt", g.dir);
    snprintf(g.other_ca, sizeof(g.other_ca), "%s/other-ca.crt", g.dir);

    char script[4200];
    snprintf(script, sizeof(script), "%s/tests/system/k8s/fake_apiserver.py", repo_root());
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive a test that crashed */
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
        execlp("python3", "python3", script, "--dir", g.dir, (char *)NULL);
        _exit(127);
    }
    g.server = pid;
    for (int i = 0; i < 200; i++) { /* up to 20 s: certificates are made first */
        char *port = read_file(g.dir, "port");
        if (port != NULL) {
            g.port = atoi(port);
            free(port);
            break;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            g.server = -1;
            g.skip = true;
            snprintf(g.why, sizeof(g.why), "the fake API server exited (status %d)", st);
            return 0;
        }
        usleep(100 * 1000);
    }
    if (g.port <= 0) {
        fprintf(stderr, "fake API server did not start\n");
        return -1;
    }
    snprintf(g.url, sizeof(g.url), "https://127.0.0.1:%d", g.port);
    return 0;
}

static int server_teardown(void **state)
{
    (void)state;
    if (g.server > 0) {
        kill(g.server, SIGTERM);
        waitpid(g.server, NULL, 0);
    }
    if (g.dir[0] != '\0' && rm_tree(g.dir) != 0) fprintf(stderr, "could not remove %s\n", g.dir);
    return 0;
}

#define NEED_SERVER()                                                                              \
    do {                                                                                           \
        if (g.skip) {                                                                              \
            print_message("skipped: %s\n", g.why);                                                 \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* The pods the fake server knows; it applies the namespace and the label selector. */
static const char *k_pods =
    "["
    "{\"name\":\"dais-worker-a\",\"uid\":\"uid-a\",\"phase\":\"Running\",\"ip\":\"10.1.0.1\","
    " \"labels\":{\"app\":\"dais-worker\",\"tier\":\"cpu\"}},"
    "{\"name\":\"dais-worker-b\",\"uid\":\"uid-b\",\"phase\":\"Running\",\"ip\":\"10.1.0.2\","
    " \"labels\":{\"app\":\"dais-worker\",\"tier\":\"gpu\"}, \"ready\": false},"
    "{\"name\":\"dais-worker-p\",\"uid\":\"uid-p\",\"phase\":\"Pending\","
    " \"labels\":{\"app\":\"dais-worker\",\"tier\":\"cpu\"}},"
    "{\"name\":\"dais-worker-s\",\"uid\":\"uid-s\",\"phase\":\"Succeeded\",\"ip\":\"10.1.0.4\","
    " \"labels\":{\"app\":\"dais-worker\",\"tier\":\"cpu\"}},"
    "{\"name\":\"dais-worker-noip\",\"uid\":\"uid-n\",\"phase\":\"Running\","
    " \"labels\":{\"app\":\"dais-worker\",\"tier\":\"cpu\"}},"
    "{\"name\":\"dais-worker-tpu\",\"uid\":\"uid-t\",\"phase\":\"Running\",\"ip\":\"10.1.0.6\","
    " \"labels\":{\"app\":\"dais-worker\",\"tier\":\"tpu\"}},"
    "{\"name\":\"web-1\",\"uid\":\"uid-w\",\"phase\":\"Running\",\"ip\":\"10.1.0.7\","
    " \"labels\":{\"app\":\"web\"}},"
    "{\"name\":\"dais-worker-x\",\"uid\":\"uid-x\",\"namespace\":\"other\",\"phase\":\"Running\","
    " \"ip\":\"10.1.0.8\",\"labels\":{\"app\":\"dais-worker\",\"tier\":\"cpu\"}}"
    "]";

static void test_list_ok(void **state)
{
    (void)state;
    NEED_SERVER();
    write_file(g.dir, "pods.json", k_pods);
    write_file(g.dir, "mode", "ok");
    write_file(g.dir, "requests.log", "");
    dais_k8s_config c;
    base_config(&c);
    dais_err e;
    dais_k8s_client *cl = dais_k8s_client_new(&c, &e);
    if (cl == NULL) fail_msg("%s", e.msg);
    dais_k8s_podlist *l = NULL;
    enum dais_k8s_reason r = DAIS_K8S_R_COUNT;
    int rc = dais_k8s_list(cl, NULL, &l, &r, &e);
    if (rc != 0) fail_msg("list failed: %s", e.msg);
    assert_int_equal(r, DAIS_K8S_OK);
    /* tier in (cpu,gpu), namespace dais: a, b, p, s, noip — not tpu, web or the other ns. */
    assert_int_equal(l->n, 5);
    assert_int_equal(l->filtered, 0); /* the server applied the selector itself */
    assert_non_null(by_name(l, "dais-worker-p"));
    assert_null(by_name(l, "dais-worker-tpu"));
    assert_string_equal(by_name(l, "dais-worker-a")->ip, "10.1.0.1");
    assert_false(by_name(l, "dais-worker-b")->ready);
    dais_k8s_diff d;
    assert_int_equal(dais_k8s_diff_compute(NULL, l, false, &d), 0);
    assert_int_equal(d.n_added, 2); /* a and b: Running with an IP */
    dais_k8s_diff_release(&d);
    dais_k8s_podlist_free(l);

    /* What went over the wire: the escaped selector and the bearer token. */
    char *log = read_file(g.dir, "requests.log");
    assert_non_null(log);
    json_t *req = json_loads(log, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(req);
    assert_string_equal(json_string_value(json_object_get(req, "path")),
                        "/api/v1/namespaces/dais/pods");
    assert_string_equal(json_string_value(json_object_get(req, "query")),
                        "labelSelector=app%3Ddais-worker%2Ctier%20in%20%28cpu%2Cgpu%29");
    assert_string_equal(json_string_value(json_object_get(req, "authorization")),
                        "Bearer token-one");
    json_decref(req);
    free(log);
    dais_k8s_client_free(cl);
}

static void expect_failure(dais_k8s_client *cl, enum dais_k8s_reason want_reason, int want_code,
                           const char *needle)
{
    dais_k8s_podlist *l = (dais_k8s_podlist *)0x1;
    enum dais_k8s_reason r = DAIS_K8S_OK;
    dais_err e;
    dais_err_clear(&e);
    uint64_t t0 = dais_now_ns();
    int rc = dais_k8s_list(cl, NULL, &l, &r, &e);
    uint64_t took = dais_now_ns() - t0;
    if (rc != want_code || r != want_reason)
        fail_msg("got rc %d reason %s (%s), want rc %d reason %s", rc, dais_k8s_reason_name(r),
                 e.msg, want_code, dais_k8s_reason_name(want_reason));
    assert_null(l);
    if (needle != NULL && strstr(e.msg, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", e.msg, needle);
    assert_true(took < 5 * SEC); /* every failure is bounded by the timeouts */
}

static void test_list_failures(void **state)
{
    (void)state;
    NEED_SERVER();
    write_file(g.dir, "pods.json", k_pods);
    dais_k8s_config c;
    base_config(&c);
    c.max_response = 16u << 20;
    dais_err e;
    dais_k8s_client *cl = dais_k8s_client_new(&c, &e);
    assert_non_null(cl);
    const struct {
        const char *mode;
        enum dais_k8s_reason reason;
        int code;
        const char *needle;
    } cases[] = {
        {"401", DAIS_K8S_R_UNAUTHORIZED, DAIS_EAUTH, "HTTP 401: Unauthorized"},
        {"403", DAIS_K8S_R_FORBIDDEN, DAIS_EAUTH, "cannot list resource"},
        {"500", DAIS_K8S_R_SERVER, DAIS_EAGAIN, "HTTP 500"},
        {"503", DAIS_K8S_R_SERVER, DAIS_EAGAIN, "HTTP 503"},
        {"429", DAIS_K8S_R_THROTTLED, DAIS_EBUSY, "HTTP 429"},
        {"404", DAIS_K8S_R_HTTP, DAIS_EPROTO, "HTTP 404"},
        {"truncated", DAIS_K8S_R_MALFORMED, DAIS_EFORMAT, "truncated"},
        {"truncated_json", DAIS_K8S_R_MALFORMED, DAIS_EFORMAT, "not JSON"},
        {"malformed", DAIS_K8S_R_MALFORMED, DAIS_EFORMAT, "not JSON"},
        {"wrong_kind", DAIS_K8S_R_MALFORMED, DAIS_EFORMAT, "kind"},
        {"no_items", DAIS_K8S_R_MALFORMED, DAIS_EFORMAT, "items"},
        {"huge", DAIS_K8S_R_TOOBIG, DAIS_ETOOBIG, "larger than the limit"},
        {"huge_chunked", DAIS_K8S_R_TOOBIG, DAIS_ETOOBIG, "larger than the limit"},
        {"hang", DAIS_K8S_R_TIMEOUT, DAIS_ETIMEOUT, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file(g.dir, "mode", cases[i].mode);
        print_message("mode %s\n", cases[i].mode);
        expect_failure(cl, cases[i].reason, cases[i].code, cases[i].needle);
    }
    /* And it recovers as soon as the server does. */
    write_file(g.dir, "mode", "ok");
    dais_k8s_podlist *l;
    assert_int_equal(dais_k8s_list(cl, NULL, &l, NULL, &e), 0);
    assert_int_equal(l->n, 5);
    dais_k8s_podlist_free(l);
    dais_k8s_client_free(cl);

    /* The server's certificate does not chain to the configured CA. */
    base_config(&c);
    c.ca_path = g.other_ca;
    cl = dais_k8s_client_new(&c, &e);
    assert_non_null(cl);
    expect_failure(cl, DAIS_K8S_R_TLS, DAIS_EAUTH, "TLS");
    dais_k8s_client_free(cl);

    /* The certificate is for 127.0.0.1, not for "localhost": host verification fails. */
    base_config(&c);
    char url[64];
    snprintf(url, sizeof(url), "https://localhost:%d", g.port);
    c.api_url = url;
    cl = dais_k8s_client_new(&c, &e);
    assert_non_null(cl);
    dais_k8s_podlist *l2 = NULL;
    enum dais_k8s_reason r;
    int rc = dais_k8s_list(cl, NULL, &l2, &r, &e);
    assert_int_not_equal(rc, 0);
    assert_null(l2);
    assert_true(r == DAIS_K8S_R_TLS || r == DAIS_K8S_R_CONNECT);
    dais_k8s_client_free(cl);

    /* Nothing listens: connection refused. */
    base_config(&c);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    getsockname(s, (struct sockaddr *)&sa, &sl);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d", ntohs(sa.sin_port));
    c.api_url = url; /* bound but not listening */
    cl = dais_k8s_client_new(&c, &e);
    expect_failure(cl, DAIS_K8S_R_CONNECT, DAIS_EIO, NULL);
    dais_k8s_client_free(cl);
    close(s);

    /* A smaller response cap turns an ordinary list into too_big. */
    base_config(&c);
    c.max_response = 1000;
    cl = dais_k8s_client_new(&c, &e);
    expect_failure(cl, DAIS_K8S_R_TOOBIG, DAIS_ETOOBIG, NULL);
    dais_k8s_client_free(cl);
    c.max_response = 0;
    c.max_pods = 2;
    cl = dais_k8s_client_new(&c, &e);
    expect_failure(cl, DAIS_K8S_R_TOOBIG, DAIS_ETOOBIG, "more than the limit");
    dais_k8s_client_free(cl);
}

/* The token file is read on every call: rotation is picked up, and the server checks it. */
static void test_token_rotation(void **state)
{
    (void)state;
    NEED_SERVER();
    write_file(g.dir, "pods.json", k_pods);
    write_file(g.dir, "mode", "ok");
    write_file(g.dir, "token", "token-one\n");
    write_file(g.dir, "expected_token", "token-one");
    dais_k8s_config c;
    base_config(&c);
    dais_err e;
    dais_k8s_client *cl = dais_k8s_client_new(&c, &e);
    dais_k8s_podlist *l;
    assert_int_equal(dais_k8s_list(cl, NULL, &l, NULL, &e), 0);
    dais_k8s_podlist_free(l);

    /* The API server rotates first: the old token is refused. */
    write_file(g.dir, "expected_token", "token-two");
    expect_failure(cl, DAIS_K8S_R_UNAUTHORIZED, DAIS_EAUTH, "401");
    /* The kubelet writes the new projected token: the next call uses it. */
    write_file(g.dir, "token", "token-two");
    write_file(g.dir, "requests.log", "");
    assert_int_equal(dais_k8s_list(cl, NULL, &l, NULL, &e), 0);
    dais_k8s_podlist_free(l);
    char *log = read_file(g.dir, "requests.log");
    assert_non_null(strstr(log, "\"Bearer token-two\""));
    free(log);

    /* A token a header cannot carry, an empty one, a missing file: config failures, no call. */
    write_file(g.dir, "token", "token\r\nX-Evil: 1");
    expect_failure(cl, DAIS_K8S_R_CONFIG, DAIS_EINVAL, "header");
    write_file(g.dir, "token", "\n");
    expect_failure(cl, DAIS_K8S_R_CONFIG, DAIS_EINVAL, "empty");
    unlink(g.token_path);
    expect_failure(cl, DAIS_K8S_R_CONFIG, DAIS_EIO, "token");
    write_file(g.dir, "token", "token-one\n");
    write_file(g.dir, "expected_token", "token-one");
    dais_k8s_client_free(cl);
}

/* ---- the discovery thread ----------------------------------------------------------------- */

typedef struct collector {
    struct event_base *base;
    pthread_t loop_thread;
    int n_ok, n_fail;
    enum dais_k8s_reason last_reason;
    dais_k8s_podlist *prev; /* the last successful list */
    int n_added, n_removed;
    char removed_names[512];
    uint32_t max_consecutive;
    bool wrong_thread;
    int stop_after_ok; /* leave the loop at this many successes */
    int stop_after_fail;
} collector;

static void on_result(void *arg, dais_k8s_result *res)
{
    collector *c = arg;
    if (c->base != NULL && !pthread_equal(pthread_self(), c->loop_thread)) c->wrong_thread = true;
    if (res->code != 0) {
        assert_null(res->pods); /* a failure never looks like an empty pool */
        assert_int_not_equal(res->reason, DAIS_K8S_OK);
        assert_true(res->message[0] != '\0');
        assert_true(res->retry_in_ns > 0);
        c->n_fail++;
        c->last_reason = res->reason;
        if (res->consecutive_failures > c->max_consecutive)
            c->max_consecutive = res->consecutive_failures;
    } else {
        assert_non_null(res->pods);
        dais_k8s_diff d;
        assert_int_equal(dais_k8s_diff_compute(c->prev, res->pods, false, &d), 0);
        c->n_added += (int)d.n_added;
        c->n_removed += (int)d.n_removed;
        for (size_t i = 0; i < d.n_removed; i++) {
            strncat(c->removed_names, d.removed[i].pod->name,
                    sizeof(c->removed_names) - strlen(c->removed_names) - 2);
            strcat(c->removed_names, ",");
        }
        dais_k8s_diff_release(&d);
        dais_k8s_podlist_free(c->prev);
        c->prev = res->pods; /* taken */
        c->n_ok++;
    }
    if (c->base != NULL && ((c->stop_after_ok > 0 && c->n_ok >= c->stop_after_ok) ||
                            (c->stop_after_fail > 0 && c->n_fail >= c->stop_after_fail)))
        event_base_loopbreak(c->base);
}

/* Runs the loop until the callback breaks it, or `limit_ns` passes (then fails). */
static void run_loop(collector *c, uint64_t limit_ns)
{
    struct timeval tv = {.tv_sec = (time_t)(limit_ns / SEC),
                         .tv_usec = (suseconds_t)((limit_ns % SEC) / 1000)};
    assert_int_equal(event_base_loopexit(c->base, &tv), 0);
    event_base_dispatch(c->base);
    if (event_base_got_exit(c->base)) fail_msg("timed out: %d ok, %d failed", c->n_ok, c->n_fail);
}

static void test_discovery_on_loop(void **state)
{
    (void)state;
    NEED_SERVER();
    write_file(g.dir, "mode", "ok");
    write_file(g.dir, "pods.json", k_pods);
    dais_k8s_config c;
    base_config(&c);
    c.poll_interval_ns = 100 * MS;
    c.retry.base_ns = 50 * MS;
    c.retry.max_ns = 200 * MS;
    dais_metrics_registry *reg = dais_metrics_registry_new();
    c.metrics = reg;
    dais_err e;
    dais_k8s_client *cl = dais_k8s_client_new(&c, &e);
    assert_non_null(cl);

    collector col = {0};
    col.base = event_base_new();
    col.loop_thread = pthread_self();
    col.stop_after_ok = 1;
    dais_k8s_discovery *d = dais_k8s_discovery_start(cl, col.base, on_result, &col, &e);
    assert_non_null(d);
    run_loop(&col, 10 * SEC);
    assert_int_equal(col.n_added, 2); /* dais-worker-a and -b */
    assert_int_equal(col.n_removed, 0);

    /* Between polls: b disappears, c appears, a starts terminating. */
    write_file(g.dir, "pods.json",
               "[{\"name\":\"dais-worker-a\",\"uid\":\"uid-a\",\"phase\":\"Running\","
               "\"ip\":\"10.1.0.1\",\"deleting\":true,"
               "\"labels\":{\"app\":\"dais-worker\",\"tier\":\"cpu\"}},"
               "{\"name\":\"dais-worker-c\",\"uid\":\"uid-c\",\"phase\":\"Running\","
               "\"ip\":\"10.1.0.3\",\"labels\":{\"app\":\"dais-worker\",\"tier\":\"cpu\"}}]");
    col.stop_after_ok = 0;
    col.n_added = col.n_removed = 0;
    /* Wait for the list that shows the change. */
    while (col.n_removed == 0) {
        col.stop_after_ok = col.n_ok + 1;
        run_loop(&col, 10 * SEC);
    }
    assert_int_equal(col.n_added, 1);
    assert_int_equal(col.n_removed, 2);
    assert_non_null(strstr(col.removed_names, "dais-worker-a,"));
    assert_non_null(strstr(col.removed_names, "dais-worker-b,"));

    /* The API fails: failures are reported (with backoff), the last good list stays. */
    write_file(g.dir, "mode", "500");
    int ok_before = col.n_ok;
    col.stop_after_ok = 0;
    col.stop_after_fail = 3;
    run_loop(&col, 10 * SEC);
    assert_true(col.n_ok - ok_before <= 1); /* at most one poll was in flight when it broke */
    assert_int_equal(col.last_reason, DAIS_K8S_R_SERVER);
    assert_true(col.max_consecutive >= 3);
    assert_non_null(col.prev);
    assert_int_equal(col.prev->n, 2);

    /* It recovers. */
    write_file(g.dir, "mode", "ok");
    col.stop_after_fail = 0;
    col.stop_after_ok = col.n_ok + 1;
    run_loop(&col, 10 * SEC);
    assert_false(col.wrong_thread);

    dais_k8s_stats st;
    dais_k8s_discovery_stats(d, &st);
    assert_true(st.successes >= 3);
    assert_true(st.failures[DAIS_K8S_R_SERVER] >= 3);
    assert_true(st.polls >= st.successes + st.failures[DAIS_K8S_R_SERVER]);
    assert_int_equal(st.last_pod_count, 2); /* a (deleting) and c */
    dais_k8s_discovery_stop(d);

    /* The same counts in the metrics registry, by result. */
    char *text = dais_metrics_render_string(reg, 0, NULL, NULL);
    assert_non_null(text);
    const char *line = strstr(text, "dais_k8s_discovery_requests_total{result=\"server_error\"} ");
    assert_non_null(line);
    assert_true(strtod(strchr(line, '}') + 2, NULL) == (double)st.failures[DAIS_K8S_R_SERVER]);
    line = strstr(text, "dais_k8s_discovery_requests_total{result=\"ok\"} ");
    assert_non_null(line);
    assert_true(strtod(strchr(line, '}') + 2, NULL) == (double)st.successes);
    assert_non_null(strstr(text, "dais_k8s_discovery_requests_total{result=\"unauthorized\"} 0"));
    free(text);
    dais_metrics_registry_free(reg);
    dais_k8s_podlist_free(col.prev);
    event_base_free(col.base);
}

/* Without a base the callback runs on the discovery thread; poll_now skips the wait; stop
 * aborts a request that hangs. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_calls;

static void on_result_thread(void *arg, dais_k8s_result *res)
{
    (void)arg;
    dais_k8s_podlist_free(res->pods);
    pthread_mutex_lock(&g_mu);
    g_calls++;
    pthread_mutex_unlock(&g_mu);
}

static int calls(void)
{
    pthread_mutex_lock(&g_mu);
    int n = g_calls;
    pthread_mutex_unlock(&g_mu);
    return n;
}

static bool wait_calls(int n, uint64_t limit)
{
    uint64_t end = dais_now_ns() + limit;
    while (calls() < n && dais_now_ns() < end)
        usleep(10 * 1000);
    return calls() >= n;
}

static void test_discovery_thread_callback_and_stop(void **state)
{
    (void)state;
    NEED_SERVER();
    write_file(g.dir, "mode", "ok");
    write_file(g.dir, "pods.json", k_pods);
    dais_k8s_config c;
    base_config(&c);
    c.poll_interval_ns = 3600 * SEC; /* only poll_now makes it poll again */
    c.timeout_ns = 60 * SEC;
    dais_err e;
    dais_k8s_discovery *d =
        dais_k8s_discovery_start(dais_k8s_client_new(&c, &e), NULL, on_result_thread, NULL, &e);
    assert_non_null(d);
    assert_true(wait_calls(1, 10 * SEC));
    usleep(200 * 1000);
    assert_int_equal(calls(), 1);
    dais_k8s_discovery_poll_now(d);
    assert_true(wait_calls(2, 10 * SEC));

    write_file(g.dir, "mode", "hang");
    dais_k8s_discovery_poll_now(d);
    usleep(300 * 1000); /* the request is now hanging (timeout 60 s) */
    uint64_t t0 = dais_now_ns();
    dais_k8s_discovery_stop(d);
    uint64_t took = dais_now_ns() - t0;
    assert_true(took < 3 * SEC);
    assert_int_equal(calls(), 2); /* the cancelled poll reports nothing */
    write_file(g.dir, "mode", "ok");

    /* Bad arguments: the client is freed, nothing leaks. */
    assert_null(dais_k8s_discovery_start(dais_k8s_client_new(&c, &e), NULL, NULL, NULL, &e));
    assert_null(dais_k8s_discovery_start(NULL, NULL, on_result_thread, NULL, &e));
    dais_k8s_discovery_stop(NULL);
    dais_k8s_discovery_poll_now(NULL);
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_selector_grammar),
        cmocka_unit_test(test_selector_matching),
        cmocka_unit_test(test_parse_real_podlist),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_find_ip),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_client_config),
    };
    const struct CMUnitTest server[] = {
        cmocka_unit_test(test_list_ok),
        cmocka_unit_test(test_list_failures),
        cmocka_unit_test(test_token_rotation),
        cmocka_unit_test(test_discovery_on_loop),
        cmocka_unit_test(test_discovery_thread_callback_and_stop),
    };
    int rc = cmocka_run_group_tests_name("k8s_pure", pure, NULL, NULL);
    rc += cmocka_run_group_tests_name("k8s_server", server, server_setup, server_teardown);
    return rc;
}
