/*
 * Fuzz target for the Kubernetes PodList parser and label selectors (src/master/k8s_pods.c).
 * Input: an optional first line "#sel:<selector>\n", then the PodList document. Any bytes must
 * give either a list whose every field is within its limits, sorted by unique uid, or an error
 * with a message — never a crash, a leak or a partial list. Successful lists also go through
 * the candidate lookup and the diff, whose results are checked against each other.
 */
#include "master/k8s.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_list(const dais_k8s_podlist *l)
{
    size_t candidates = 0;
    for (size_t i = 0; i < l->n; i++) {
        const dais_k8s_pod *p = &l->pods[i];
        if (strnlen(p->name, sizeof(p->name)) == sizeof(p->name) || p->name[0] == '\0' ||
            strnlen(p->uid, sizeof(p->uid)) == sizeof(p->uid) || p->uid[0] == '\0' ||
            strcmp(p->ns, "dais") != 0 || strnlen(p->ip, sizeof(p->ip)) == sizeof(p->ip))
            abort();
        if (i > 0 && strcmp(l->pods[i - 1].uid, p->uid) >= 0) abort();
        if ((p->family == 0) != (p->ip[0] == '\0')) abort();
        if (dais_k8s_pod_is_candidate(p, false)) {
            candidates++;
            /* Every candidate is found by its own address (the first with that address). */
            const dais_k8s_pod *q = dais_k8s_podlist_find_ip(l, p->ip, false);
            if (q == NULL || strcmp(q->ip, p->ip) != 0) abort();
        }
    }
    dais_k8s_diff d;
    if (dais_k8s_diff_compute(NULL, l, false, &d) == 0) {
        if (d.n_added != candidates || d.n_removed != 0) abort();
        dais_k8s_diff_release(&d);
    }
    if (dais_k8s_diff_compute(l, l, false, &d) == 0) {
        if (d.n_added != 0 || d.n_removed != 0) abort();
        dais_k8s_diff_release(&d);
    }
    if (dais_k8s_diff_compute(l, NULL, false, &d) == 0) {
        if (d.n_removed != candidates || d.n_added != 0) abort();
        dais_k8s_diff_release(&d);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *doc = (const char *)data;
    size_t len = size;
    dais_k8s_selector *sel = NULL;
    dais_err e;

    if (size >= 5 && memcmp(data, "#sel:", 5) == 0) {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t sl = nl != NULL ? (size_t)(nl - data) - 5 : size - 5;
        char *text = malloc(sl + 1);
        if (text == NULL) return 0;
        memcpy(text, data + 5, sl);
        text[sl] = '\0';
        dais_err_clear(&e);
        sel = dais_k8s_selector_parse(text, &e);
        if (sel == NULL && (e.code >= 0 || e.msg[0] == '\0')) abort();
        free(text);
        doc = nl != NULL ? (const char *)nl + 1 : doc + size;
        len = nl != NULL ? size - (size_t)(nl + 1 - data) : 0;
    }

    dais_k8s_parse_opts o = {.ns = "dais", .selector = sel, .max_pods = 1000};
    dais_k8s_podlist *l = NULL;
    dais_err_clear(&e);
    int rc = dais_k8s_podlist_parse(doc, len, &o, &l, &e);
    if (rc == 0) {
        if (l == NULL) abort();
        check_list(l);
        dais_k8s_podlist_free(l);
    } else if (l != NULL || rc >= 0 || e.msg[0] == '\0') {
        abort();
    }
    dais_k8s_selector_free(sel);
    return 0;
}
