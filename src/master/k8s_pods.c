/*
 * The pure half of Kubernetes discovery (see k8s.h): label selectors, the strict PodList
 * parser, candidate lookup by address, and the diff between two successful lists. Nothing
 * here does I/O or keeps state between calls, so all of it is unit-tested and fuzzed
 * (tests/fuzz/fuzz_podlist.c).
 *
 * Every value from the API is checked before use: JSON types, string lengths against the
 * Kubernetes limits, name/namespace/uid character sets, podIP with inet_pton. A document that
 * breaks any rule is rejected as a whole (DAIS_EFORMAT) with a message naming the item and
 * the field.
 */
#include "master/k8s.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ---- character classes and Kubernetes name rules ----------------------------------------- */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* DNS-1123 label: 1..63 of [a-z0-9-], starting and ending alphanumeric. */
static bool valid_dns_label(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1])) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '-') return false;
    return true;
}

/* DNS-1123 subdomain: 1..253, dot-separated DNS labels. */
static bool valid_dns_subdomain(const char *s, size_t n)
{
    if (n == 0 || n > 253) return false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (!valid_dns_label(s + start, i - start)) return false;
            start = i + 1;
        }
    }
    return true;
}

/* Label name part / label value: up to 63 of [A-Za-z0-9_.-], alphanumeric at both ends. */
static bool valid_label_token(const char *s, size_t n, bool allow_empty)
{
    if (n == 0) return allow_empty;
    if (n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1])) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.') return false;
    return true;
}

/* Label key: [prefix/]name, prefix a DNS subdomain. */
static bool valid_label_key(const char *s, size_t n)
{
    const char *slash = memchr(s, '/', n);
    if (slash == NULL) return valid_label_token(s, n, false);
    size_t plen = (size_t)(slash - s);
    return valid_dns_subdomain(s, plen) && valid_label_token(slash + 1, n - plen - 1, false);
}

/* ---- label selectors ---------------------------------------------------------------------- */

enum sel_op { OP_EXISTS, OP_NOT_EXISTS, OP_EQ, OP_NEQ, OP_IN, OP_NOTIN };

typedef struct sel_req {
    char *key;
    enum sel_op op;
    size_t n_values;
    char **values;
} sel_req;

struct dais_k8s_selector {
    size_t n;
    sel_req *reqs;
};

void dais_k8s_selector_free(dais_k8s_selector *s)
{
    if (s == NULL) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->reqs[i].key);
        for (size_t j = 0; j < s->reqs[i].n_values; j++)
            free(s->reqs[i].values[j]);
        free(s->reqs[i].values);
    }
    free(s->reqs);
    free(s);
}

typedef struct sel_parser {
    const char *s;
    size_t pos, len;
    dais_err *err;
} sel_parser;

static void sp_ws(sel_parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
}

static bool sel_char(char c)
{
    return is_alnum(c) || c == '-' || c == '_' || c == '.' || c == '/';
}

/* Reads a run of key/value characters; returns its length (start in *start). */
static size_t sp_word(sel_parser *p, size_t *start)
{
    *start = p->pos;
    while (p->pos < p->len && sel_char(p->s[p->pos]))
        p->pos++;
    return p->pos - *start;
}

static int sp_value(sel_parser *p, sel_req *r)
{
    sp_ws(p);
    size_t st, n = sp_word(p, &st);
    if (!valid_label_token(p->s + st, n, true))
        return dais_err_set(p->err, DAIS_EINVAL, "label selector: invalid value at offset %zu", st);
    char **v = realloc(r->values, (r->n_values + 1) * sizeof(*v));
    if (v == NULL) return dais_err_set(p->err, DAIS_ENOMEM, "label selector: out of memory");
    r->values = v;
    v[r->n_values] = strndup(p->s + st, n);
    if (v[r->n_values] == NULL)
        return dais_err_set(p->err, DAIS_ENOMEM, "label selector: out of memory");
    r->n_values++;
    return 0;
}

static int sp_requirement(sel_parser *p, sel_req *r)
{
    sp_ws(p);
    bool negated = false;
    if (p->pos < p->len && p->s[p->pos] == '!') {
        negated = true;
        p->pos++;
        sp_ws(p);
    }
    size_t kst, kn = sp_word(p, &kst);
    if (!valid_label_key(p->s + kst, kn))
        return dais_err_set(p->err, DAIS_EINVAL, "label selector: invalid key at offset %zu", kst);
    r->key = strndup(p->s + kst, kn);
    if (r->key == NULL) return dais_err_set(p->err, DAIS_ENOMEM, "label selector: out of memory");
    sp_ws(p);
    if (negated) {
        r->op = OP_NOT_EXISTS;
        return 0;
    }
    if (p->pos >= p->len || p->s[p->pos] == ',') {
        r->op = OP_EXISTS;
        return 0;
    }
    char c = p->s[p->pos];
    if (c == '=' || c == '!') {
        if (c == '!') {
            if (p->pos + 1 >= p->len || p->s[p->pos + 1] != '=')
                return dais_err_set(p->err, DAIS_EINVAL,
                                    "label selector: expected != at offset %zu", p->pos);
            p->pos += 2;
            r->op = OP_NEQ;
        } else {
            p->pos += (p->pos + 1 < p->len && p->s[p->pos + 1] == '=') ? 2 : 1;
            r->op = OP_EQ;
        }
        return sp_value(p, r);
    }
    size_t wst, wn = sp_word(p, &wst);
    if (wn == 2 && memcmp(p->s + wst, "in", 2) == 0)
        r->op = OP_IN;
    else if (wn == 5 && memcmp(p->s + wst, "notin", 5) == 0)
        r->op = OP_NOTIN;
    else
        return dais_err_set(p->err, DAIS_EINVAL,
                            "label selector: expected =, ==, !=, in, notin or , at offset %zu "
                            "(>, < are not supported)",
                            wst);
    sp_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != '(')
        return dais_err_set(p->err, DAIS_EINVAL, "label selector: expected ( at offset %zu",
                            p->pos);
    p->pos++;
    for (;;) {
        int rc = sp_value(p, r);
        if (rc != 0) return rc;
        sp_ws(p);
        if (p->pos < p->len && p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == ')') {
            p->pos++;
            return 0;
        }
        return dais_err_set(p->err, DAIS_EINVAL, "label selector: expected , or ) at offset %zu",
                            p->pos);
    }
}

dais_k8s_selector *dais_k8s_selector_parse(const char *text, dais_err *err)
{
    if (text == NULL) text = "";
    size_t len = strnlen(text, DAIS_K8S_MAX_SELECTOR + 1);
    if (len > DAIS_K8S_MAX_SELECTOR) {
        dais_err_set(err, DAIS_EINVAL, "label selector longer than %u bytes",
                     DAIS_K8S_MAX_SELECTOR);
        return NULL;
    }
    dais_k8s_selector *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "label selector: out of memory");
        return NULL;
    }
    sel_parser p = {.s = text, .pos = 0, .len = len, .err = err};
    sp_ws(&p);
    if (p.pos == p.len) return s; /* empty: selects everything */
    for (;;) {
        sel_req *r = realloc(s->reqs, (s->n + 1) * sizeof(*r));
        if (r == NULL) {
            dais_err_set(err, DAIS_ENOMEM, "label selector: out of memory");
            goto fail;
        }
        s->reqs = r;
        memset(&r[s->n], 0, sizeof(*r));
        s->n++;
        if (sp_requirement(&p, &r[s->n - 1]) != 0) goto fail;
        sp_ws(&p);
        if (p.pos == p.len) return s;
        if (p.s[p.pos] != ',') {
            dais_err_set(err, DAIS_EINVAL, "label selector: expected , at offset %zu", p.pos);
            goto fail;
        }
        p.pos++;
    }
fail:
    dais_k8s_selector_free(s);
    return NULL;
}

/* Whether `labels` (a JSON object of strings, or NULL for none) satisfies `s`. */
static bool selector_match(const dais_k8s_selector *s, json_t *labels)
{
    for (size_t i = 0; i < s->n; i++) {
        const sel_req *r = &s->reqs[i];
        json_t *v = labels != NULL ? json_object_get(labels, r->key) : NULL;
        const char *val = v != NULL ? json_string_value(v) : NULL;
        bool in = false;
        for (size_t j = 0; val != NULL && j < r->n_values; j++)
            in = in || strcmp(val, r->values[j]) == 0;
        switch (r->op) {
        case OP_EXISTS:
            if (val == NULL) return false;
            break;
        case OP_NOT_EXISTS:
            if (val != NULL) return false;
            break;
        case OP_EQ:
        case OP_IN:
            if (!in) return false;
            break;
        case OP_NEQ:
        case OP_NOTIN:
            if (in) return false;
            break;
        }
    }
    return true;
}

/* ---- PodList parser ----------------------------------------------------------------------- */

typedef struct pctx {
    dais_err *err;
    size_t item;
} pctx;

#define FAIL(c, ...) dais_err_set((c)->err, DAIS_EFORMAT, __VA_ARGS__)

/* Optional member: absent and JSON null both read as NULL. */
static json_t *opt(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* Copies a string member into dst (size cap includes NUL) after checking its type, length and
 * (optional) syntax. */
static int get_string(pctx *c, json_t *obj, const char *where, const char *key, bool required,
                      char *dst, size_t cap, bool (*valid)(const char *, size_t))
{
    json_t *v = opt(obj, key);
    dst[0] = '\0';
    if (v == NULL) {
        if (required) return FAIL(c, "PodList: items[%zu].%s.%s is missing", c->item, where, key);
        return 0;
    }
    if (!json_is_string(v))
        return FAIL(c, "PodList: items[%zu].%s.%s is not a string", c->item, where, key);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= cap)
        return FAIL(c, "PodList: items[%zu].%s.%s is longer than %zu bytes", c->item, where, key,
                    cap - 1);
    if (memchr(s, '\0', n) != NULL || (valid != NULL && !valid(s, n)))
        return FAIL(c, "PodList: items[%zu].%s.%s has an invalid value", c->item, where, key);
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static bool valid_uid(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-') return false;
    return true;
}

static bool valid_name(const char *s, size_t n)
{
    return valid_dns_subdomain(s, n);
}

static bool valid_ns(const char *s, size_t n)
{
    return valid_dns_label(s, n);
}

static bool valid_printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

static int parse_labels(pctx *c, json_t *meta, json_t **labels_out)
{
    json_t *labels = opt(meta, "labels");
    *labels_out = NULL;
    if (labels == NULL) return 0;
    if (!json_is_object(labels))
        return FAIL(c, "PodList: items[%zu].metadata.labels is not an object", c->item);
    if (json_object_size(labels) > 1024)
        return FAIL(c, "PodList: items[%zu].metadata.labels has too many entries", c->item);
    const char *k;
    json_t *v;
    json_object_foreach(labels, k, v)
    {
        if (strlen(k) > 317)
            return FAIL(c, "PodList: items[%zu].metadata.labels has a key longer than 317 bytes",
                        c->item);
        if (!json_is_string(v) || json_string_length(v) > 63)
            return FAIL(c,
                        "PodList: items[%zu].metadata.labels value is not a string of at most "
                        "63 bytes",
                        c->item);
    }
    *labels_out = labels;
    return 0;
}

static enum dais_k8s_phase phase_of(const char *s)
{
    static const struct {
        const char *name;
        enum dais_k8s_phase p;
    } map[] = {{"Pending", DAIS_K8S_PHASE_PENDING},
               {"Running", DAIS_K8S_PHASE_RUNNING},
               {"Succeeded", DAIS_K8S_PHASE_SUCCEEDED},
               {"Failed", DAIS_K8S_PHASE_FAILED}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(s, map[i].name) == 0) return map[i].p;
    return DAIS_K8S_PHASE_UNKNOWN;
}

/* Parses text into (family, 16-byte address); IPv4-mapped IPv6 becomes IPv4 when `unmap`. */
static int parse_ip(const char *s, unsigned char addr[16], int *family, bool unmap)
{
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, s, addr) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, addr) == 1) {
        *family = AF_INET6;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (unmap && memcmp(addr, mapped, 12) == 0) {
            memmove(addr, addr + 12, 4);
            memset(addr + 4, 0, 12);
            *family = AF_INET;
        }
        return 0;
    }
    return DAIS_EINVAL;
}

static int parse_status(pctx *c, json_t *item, dais_k8s_pod *p)
{
    json_t *st = opt(item, "status");
    if (st == NULL) return 0;
    if (!json_is_object(st)) return FAIL(c, "PodList: items[%zu].status is not an object", c->item);

    char phase[32];
    int rc = get_string(c, st, "status", "phase", false, phase, sizeof(phase), valid_printable);
    if (rc != 0) return rc;
    p->phase = phase[0] != '\0' ? phase_of(phase) : DAIS_K8S_PHASE_UNKNOWN;

    char ip[DAIS_K8S_IP_MAX];
    rc = get_string(c, st, "status", "podIP", false, ip, sizeof(ip), valid_printable);
    if (rc != 0) return rc;
    if (ip[0] != '\0') {
        if (parse_ip(ip, p->addr, &p->family, false) != 0)
            return FAIL(c, "PodList: items[%zu].status.podIP is not an IP address", c->item);
        if (inet_ntop(p->family, p->addr, p->ip, sizeof(p->ip)) == NULL)
            return FAIL(c, "PodList: items[%zu].status.podIP cannot be formatted", c->item);
    }

    json_t *conds = opt(st, "conditions");
    if (conds == NULL) return 0;
    if (!json_is_array(conds) || json_array_size(conds) > 64)
        return FAIL(c, "PodList: items[%zu].status.conditions is not an array of at most 64",
                    c->item);
    size_t i;
    json_t *cond;
    json_array_foreach(conds, i, cond)
    {
        if (!json_is_object(cond))
            return FAIL(c, "PodList: items[%zu].status.conditions[%zu] is not an object", c->item,
                        i);
        json_t *type = json_object_get(cond, "type");
        json_t *status = json_object_get(cond, "status");
        if (!json_is_string(type) || !json_is_string(status))
            return FAIL(c, "PodList: items[%zu].status.conditions[%zu] lacks string type/status",
                        c->item, i);
        if (strcmp(json_string_value(type), "Ready") == 0)
            p->ready = strcmp(json_string_value(status), "True") == 0;
    }
    return 0;
}

/* Parses items[c->item] into `p`; *keep is false when the selector drops it. */
static int parse_item(pctx *c, json_t *item, const dais_k8s_parse_opts *o, dais_k8s_pod *p,
                      bool *keep)
{
    *keep = false;
    memset(p, 0, sizeof(*p));
    if (!json_is_object(item)) return FAIL(c, "PodList: items[%zu] is not an object", c->item);
    json_t *meta = json_object_get(item, "metadata");
    if (!json_is_object(meta))
        return FAIL(c, "PodList: items[%zu].metadata is missing or not an object", c->item);
    int rc = get_string(c, meta, "metadata", "name", true, p->name, sizeof(p->name), valid_name);
    if (rc == 0)
        rc = get_string(c, meta, "metadata", "namespace", true, p->ns, sizeof(p->ns), valid_ns);
    if (rc == 0)
        rc = get_string(c, meta, "metadata", "uid", true, p->uid, sizeof(p->uid), valid_uid);
    if (rc != 0) return rc;
    if (o->ns != NULL && strcmp(o->ns, p->ns) != 0)
        return FAIL(c, "PodList: items[%zu] is in namespace \"%s\", not the one listed", c->item,
                    p->ns);

    char ts[64];
    rc = get_string(c, meta, "metadata", "deletionTimestamp", false, ts, sizeof(ts),
                    valid_printable);
    if (rc != 0) return rc;
    p->deleting = ts[0] != '\0';

    json_t *labels;
    rc = parse_labels(c, meta, &labels);
    if (rc == 0) rc = parse_status(c, item, p);
    if (rc != 0) return rc;
    *keep = o->selector == NULL || selector_match(o->selector, labels);
    return 0;
}

static int cmp_pod_uid(const void *a, const void *b)
{
    return strcmp(((const dais_k8s_pod *)a)->uid, ((const dais_k8s_pod *)b)->uid);
}

void dais_k8s_podlist_free(dais_k8s_podlist *l)
{
    if (l == NULL) return;
    free(l->pods);
    free(l);
}

int dais_k8s_podlist_parse(const char *json, size_t len, const dais_k8s_parse_opts *opts,
                           dais_k8s_podlist **out, dais_err *err)
{
    static const dais_k8s_parse_opts none = {0};
    const dais_k8s_parse_opts *o = opts != NULL ? opts : &none;
    size_t max_pods = o->max_pods != 0 ? o->max_pods : DAIS_K8S_MAX_PODS_DEFAULT;
    pctx c = {.err = err, .item = 0};
    dais_k8s_podlist *l = NULL;
    int rc;
    *out = NULL;

    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return dais_err_set(err, DAIS_EFORMAT, "PodList: not JSON: %s at line %d column %d",
                            je.text, je.line, je.column);
    if (!json_is_object(root)) {
        rc = dais_err_set(err, DAIS_EFORMAT, "PodList: the document is not an object");
        goto fail;
    }
    json_t *kind = json_object_get(root, "kind");
    if (!json_is_string(kind) || strcmp(json_string_value(kind), "PodList") != 0) {
        rc = dais_err_set(err, DAIS_EFORMAT, "PodList: kind is not \"PodList\"");
        goto fail;
    }
    json_t *api = opt(root, "apiVersion");
    if (api != NULL && (!json_is_string(api) || strcmp(json_string_value(api), "v1") != 0)) {
        rc = dais_err_set(err, DAIS_EFORMAT, "PodList: apiVersion is not \"v1\"");
        goto fail;
    }
    json_t *items = json_object_get(root, "items");
    if (!json_is_array(items)) {
        rc = dais_err_set(err, DAIS_EFORMAT, "PodList: items is missing or not an array");
        goto fail;
    }
    size_t n = json_array_size(items);
    if (n > max_pods) {
        rc = dais_err_set(err, DAIS_ETOOBIG, "PodList: %zu items, more than the limit %zu", n,
                          max_pods);
        goto fail;
    }
    l = calloc(1, sizeof(*l));
    if (l != NULL) l->pods = calloc(n > 0 ? n : 1, sizeof(*l->pods));
    if (l == NULL || l->pods == NULL) {
        rc = dais_err_set(err, DAIS_ENOMEM, "PodList: out of memory for %zu items", n);
        goto fail;
    }

    json_t *meta = opt(root, "metadata");
    if (meta != NULL) {
        if (!json_is_object(meta)) {
            rc = dais_err_set(err, DAIS_EFORMAT, "PodList: metadata is not an object");
            goto fail;
        }
        json_t *rv = opt(meta, "resourceVersion");
        if (rv != NULL &&
            (!json_is_string(rv) || json_string_length(rv) >= sizeof(l->resource_version) ||
             !valid_printable(json_string_value(rv), json_string_length(rv)))) {
            rc = dais_err_set(err, DAIS_EFORMAT, "PodList: metadata.resourceVersion is invalid");
            goto fail;
        }
        if (rv != NULL)
            snprintf(l->resource_version, sizeof(l->resource_version), "%s", json_string_value(rv));
    }

    json_t *item;
    json_array_foreach(items, c.item, item)
    {
        bool keep;
        rc = parse_item(&c, item, o, &l->pods[l->n], &keep);
        if (rc != 0) goto fail;
        if (keep)
            l->n++;
        else
            l->filtered++;
    }
    qsort(l->pods, l->n, sizeof(*l->pods), cmp_pod_uid);
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->pods[i - 1].uid, l->pods[i].uid) == 0) {
            rc = dais_err_set(err, DAIS_EFORMAT, "PodList: two items have uid %s", l->pods[i].uid);
            goto fail;
        }
    }
    json_decref(root);
    *out = l;
    return 0;
fail:
    dais_k8s_podlist_free(l);
    json_decref(root);
    return rc;
}

bool dais_k8s_pod_is_candidate(const dais_k8s_pod *p, bool require_ready)
{
    return p->phase == DAIS_K8S_PHASE_RUNNING && p->family != 0 && !p->deleting &&
           (!require_ready || p->ready);
}

const dais_k8s_pod *dais_k8s_podlist_find_ip(const dais_k8s_podlist *l, const char *ip,
                                             bool require_ready)
{
    if (l == NULL || ip == NULL || strnlen(ip, DAIS_K8S_IP_MAX) >= DAIS_K8S_IP_MAX) return NULL;
    unsigned char addr[16];
    int family;
    if (parse_ip(ip, addr, &family, true) != 0) return NULL;
    for (size_t i = 0; i < l->n; i++) {
        const dais_k8s_pod *p = &l->pods[i];
        if (p->family == family && memcmp(p->addr, addr, 16) == 0 &&
            dais_k8s_pod_is_candidate(p, require_ready))
            return p;
    }
    return NULL;
}

const char *dais_k8s_phase_name(enum dais_k8s_phase p)
{
    switch (p) {
    case DAIS_K8S_PHASE_PENDING:
        return "Pending";
    case DAIS_K8S_PHASE_RUNNING:
        return "Running";
    case DAIS_K8S_PHASE_SUCCEEDED:
        return "Succeeded";
    case DAIS_K8S_PHASE_FAILED:
        return "Failed";
    case DAIS_K8S_PHASE_UNKNOWN:
        break;
    }
    return "Unknown";
}

/* ---- diff ---------------------------------------------------------------------------------- */

/* Why a listed pod is not a candidate (the last rule left is readiness). */
static enum dais_k8s_removal why_not_candidate(const dais_k8s_pod *p)
{
    if (p->deleting) return DAIS_K8S_DELETING;
    if (p->phase != DAIS_K8S_PHASE_RUNNING) return DAIS_K8S_NOT_RUNNING;
    if (p->family == 0) return DAIS_K8S_NO_IP;
    return DAIS_K8S_NOT_READY;
}

static bool same_ip(const dais_k8s_pod *a, const dais_k8s_pod *b)
{
    return a->family == b->family && memcmp(a->addr, b->addr, 16) == 0;
}

void dais_k8s_diff_release(dais_k8s_diff *d)
{
    if (d == NULL) return;
    free(d->added);
    free(d->removed);
    memset(d, 0, sizeof(*d));
}

int dais_k8s_diff_compute(const dais_k8s_podlist *prev, const dais_k8s_podlist *next,
                          bool require_ready, dais_k8s_diff *out)
{
    memset(out, 0, sizeof(*out));
    size_t np = prev != NULL ? prev->n : 0;
    size_t nn = next != NULL ? next->n : 0;
    out->added = calloc(nn > 0 ? nn : 1, sizeof(*out->added));
    out->removed = calloc(np > 0 ? np : 1, sizeof(*out->removed));
    if (out->added == NULL || out->removed == NULL) {
        dais_k8s_diff_release(out);
        return DAIS_ENOMEM;
    }
    /* Both lists are sorted by uid (dais_k8s_podlist_parse): one merge walk. */
    size_t i = 0, j = 0;
    while (i < np || j < nn) {
        const dais_k8s_pod *a = i < np ? &prev->pods[i] : NULL;
        const dais_k8s_pod *b = j < nn ? &next->pods[j] : NULL;
        /* cmp <= 0 only while i < np (a is set), cmp >= 0 only while j < nn (b is set). */
        int cmp = i >= np ? 1 : j >= nn ? -1 : strcmp(a->uid, b->uid);
        bool was = cmp <= 0 && dais_k8s_pod_is_candidate(a, require_ready);
        bool is = cmp >= 0 && dais_k8s_pod_is_candidate(b, require_ready);
        if (cmp < 0) {
            if (was) out->removed[out->n_removed++] = (dais_k8s_removed){a, DAIS_K8S_GONE};
            i++;
            continue;
        }
        if (cmp > 0) {
            if (is) out->added[out->n_added++] = b;
            j++;
            continue;
        }
        if (was && !is) {
            out->removed[out->n_removed++] = (dais_k8s_removed){a, why_not_candidate(b)};
        } else if (!was && is) {
            out->added[out->n_added++] = b;
        } else if (was && is && !same_ip(a, b)) {
            out->removed[out->n_removed++] = (dais_k8s_removed){a, DAIS_K8S_IP_CHANGED};
            out->added[out->n_added++] = b;
        }
        i++;
        j++;
    }
    return 0;
}

const char *dais_k8s_removal_name(enum dais_k8s_removal r)
{
    switch (r) {
    case DAIS_K8S_GONE:
        return "gone";
    case DAIS_K8S_NOT_RUNNING:
        return "not_running";
    case DAIS_K8S_DELETING:
        return "deleting";
    case DAIS_K8S_NO_IP:
        return "no_ip";
    case DAIS_K8S_IP_CHANGED:
        return "ip_changed";
    case DAIS_K8S_NOT_READY:
        return "not_ready";
    }
    return "unknown";
}
