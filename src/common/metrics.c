/*
 * Metric registries and the Prometheus text exposition (see metrics.h for the model).
 *
 * Layout. A registry is a mutex plus a list of families in registration order. A family
 * keeps its children in creation order (for rendering) and in a small chained hash table
 * keyed by the label values (for dais_*_child lookups). Children are never freed before the
 * registry, which is what makes the handles safe to use without a lock. Each child is its
 * own 64-byte-aligned allocation so that two hot counters never share a cache line.
 */
#include "common/metrics.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/procstats.h"

#include <event2/buffer.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buckets --------------------------------------------------------------------------- */

const double dais_buckets_latency[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                       1,     2.5,  5,     10,   20,  30,   60};
const size_t dais_buckets_latency_n = sizeof(dais_buckets_latency) / sizeof(double);
const double dais_buckets_fast[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                    0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
const size_t dais_buckets_fast_n = sizeof(dais_buckets_fast) / sizeof(double);

/* ---- data ------------------------------------------------------------------------------ */

struct dais_counter {
    _Atomic uint64_t n;     /* integer increments */
    _Atomic uint64_t fbits; /* fractional additions: double bits */
};

struct dais_gauge {
    _Atomic uint64_t bits; /* double bits */
};

struct dais_histogram {
    const double *bounds; /* (nb) upper bounds, owned by the family */
    size_t nb;
    _Atomic uint64_t sumbits;  /* double bits */
    _Atomic uint64_t counts[]; /* (nb + 1) per-bucket counts, last = above every bound */
};

typedef struct child {
    struct child *next;  /* creation order */
    struct child *hnext; /* hash chain */
    uint64_t hash;
    char **values; /* (n_labels) owned strings */
    bool hidden;
    /* the metric (dais_counter, dais_gauge or dais_histogram) follows at CHILD_HDR */
} child;

/* Offset of a child's metric: the header rounded up to a cache line. */
#define CHILD_HDR ((sizeof(child) + 63) & ~(size_t)63)
#define METRIC(c) ((void *)((char *)(c) + CHILD_HDR))

struct dais_metric_family {
    struct dais_metric_family *next;
    dais_metrics_registry *reg;
    enum dais_metric_type type;
    char *name;
    char *help;
    size_t n_labels;
    char **labels; /* (n_labels) */
    size_t nb;
    double *bounds; /* (nb) histogram upper bounds */
    /* children */
    child *first, *last;
    size_t n_children;
    child **table; /* (table_size) hash buckets */
    size_t table_size;
    /* callback families */
    dais_metric_collect_fn fn;
    void *arg;
    bool removed;
};

struct dais_metrics_registry {
    pthread_mutex_t mu;
    dais_metric_family *first, *last;
};

/* ---- atomic doubles -------------------------------------------------------------------- */

static inline uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static inline double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static inline void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    uint64_t nw;
    do {
        nw = d2u(u2d(old) + v);
    } while (!atomic_compare_exchange_weak_explicit(p, &old, nw, memory_order_relaxed,
                                                    memory_order_relaxed));
}

/* ---- updates --------------------------------------------------------------------------- */

void dais_counter_inc(dais_counter *c)
{
    if (c != NULL) atomic_fetch_add_explicit(&c->n, 1, memory_order_relaxed);
}

void dais_counter_add(dais_counter *c, uint64_t n)
{
    if (c != NULL) atomic_fetch_add_explicit(&c->n, n, memory_order_relaxed);
}

void dais_counter_add_f(dais_counter *c, double v)
{
    if (c == NULL || !(v > 0) || isinf(v)) return;
    atomic_add_double(&c->fbits, v);
}

double dais_counter_value(const dais_counter *c)
{
    if (c == NULL) return 0;
    dais_counter *m = (dais_counter *)c;
    return (double)atomic_load_explicit(&m->n, memory_order_relaxed) +
           u2d(atomic_load_explicit(&m->fbits, memory_order_relaxed));
}

void dais_gauge_set(dais_gauge *g, double v)
{
    if (g != NULL) atomic_store_explicit(&g->bits, d2u(v), memory_order_relaxed);
}

void dais_gauge_add(dais_gauge *g, double v)
{
    if (g != NULL) atomic_add_double(&g->bits, v);
}

void dais_gauge_inc(dais_gauge *g)
{
    dais_gauge_add(g, 1.0);
}

void dais_gauge_dec(dais_gauge *g)
{
    dais_gauge_add(g, -1.0);
}

double dais_gauge_value(const dais_gauge *g)
{
    if (g == NULL) return 0;
    return u2d(atomic_load_explicit(&((dais_gauge *)g)->bits, memory_order_relaxed));
}

/* Index of the first bucket whose upper bound is >= v (nb: above all bounds). NaN goes to the
 * last bucket, as Prometheus client libraries do. */
static size_t bucket_index(const double *b, size_t nb, double v)
{
    if (nb <= 16) {
        size_t i = 0;
        while (i < nb && !(v <= b[i]))
            i++;
        return i;
    }
    if (isnan(v)) return nb;
    size_t lo = 0, hi = nb;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= b[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

void dais_histogram_observe(dais_histogram *h, double v)
{
    if (h == NULL) return;
    size_t i = bucket_index(h->bounds, h->nb, v);
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_add_double(&h->sumbits, v);
}

void dais_histogram_observe_since(dais_histogram *h, uint64_t start_ns)
{
    if (h == NULL) return;
    uint64_t now = dais_now_ns();
    dais_histogram_observe(h, now > start_ns ? (double)(now - start_ns) * 1e-9 : 0.0);
}

uint64_t dais_histogram_bucket(const dais_histogram *h, size_t i)
{
    if (h == NULL) return 0;
    dais_histogram *m = (dais_histogram *)h;
    if (i > m->nb) i = m->nb;
    uint64_t sum = 0;
    for (size_t k = 0; k <= i; k++)
        sum += atomic_load_explicit(&m->counts[k], memory_order_relaxed);
    return sum;
}

uint64_t dais_histogram_count(const dais_histogram *h)
{
    return h == NULL ? 0 : dais_histogram_bucket(h, h->nb);
}

double dais_histogram_sum(const dais_histogram *h)
{
    if (h == NULL) return 0;
    return u2d(atomic_load_explicit(&((dais_histogram *)h)->sumbits, memory_order_relaxed));
}

/* ---- registries ------------------------------------------------------------------------ */

dais_metrics_registry *dais_metrics_registry_new(void)
{
    dais_metrics_registry *r = calloc(1, sizeof(*r));
    if (r == NULL) return NULL;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

static void free_strv(char **v, size_t n)
{
    if (v == NULL) return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void family_free(dais_metric_family *f)
{
    child *c = f->first;
    while (c != NULL) {
        child *next = c->next;
        free_strv(c->values, f->n_labels);
        free(c);
        c = next;
    }
    free(f->table);
    free_strv(f->labels, f->n_labels);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void dais_metrics_registry_free(dais_metrics_registry *r)
{
    if (r == NULL) return;
    dais_metric_family *f = r->first;
    while (f != NULL) {
        dais_metric_family *next = f->next;
        family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static dais_metrics_registry *g_default;
static pthread_once_t g_default_once = PTHREAD_ONCE_INIT;

static void default_init(void)
{
    g_default = dais_metrics_registry_new();
}

dais_metrics_registry *dais_metrics_default(void)
{
    pthread_once(&g_default_once, default_init);
    return g_default;
}

/* ---- families -------------------------------------------------------------------------- */

static bool valid_name(const char *s, bool colon)
{
    if (s == NULL || *s == '\0') return false;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

static char **copy_strv(const char *const *v, size_t n)
{
    if (n > 0 && v == NULL) return NULL;
    char **out = calloc(n > 0 ? n : 1, sizeof(char *));
    if (out == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        out[i] = strdup(v[i]);
        if (out[i] == NULL) {
            free_strv(out, n);
            return NULL;
        }
    }
    return out;
}

static bool same_definition(const dais_metric_family *f, enum dais_metric_type type,
                            size_t n_labels, const char *const *labels, size_t nb,
                            const double *bounds, bool collector)
{
    if (f->type != type || f->n_labels != n_labels || f->nb != nb || (f->fn != NULL) != collector)
        return false;
    for (size_t i = 0; i < n_labels; i++)
        if (strcmp(f->labels[i], labels[i]) != 0) return false;
    for (size_t i = 0; i < nb; i++)
        if (f->bounds[i] != bounds[i]) return false;
    return true;
}

static bool valid_definition(enum dais_metric_type type, const char *name, size_t n_labels,
                             const char *const *labels, size_t nb, const double *bounds)
{
    if (type > DAIS_METRIC_HISTOGRAM || !valid_name(name, true)) return false;
    if (n_labels > DAIS_METRICS_MAX_LABELS || (n_labels > 0 && labels == NULL)) return false;
    for (size_t i = 0; i < n_labels; i++) {
        if (!valid_name(labels[i], false) || strncmp(labels[i], "__", 2) == 0) return false;
        if (type == DAIS_METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0) return false;
        for (size_t k = 0; k < i; k++)
            if (strcmp(labels[i], labels[k]) == 0) return false;
    }
    if (type != DAIS_METRIC_HISTOGRAM) return nb == 0;
    if (nb == 0 || nb > DAIS_METRICS_MAX_BUCKETS || bounds == NULL) return false;
    for (size_t i = 0; i < nb; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) return false;
    }
    return true;
}

static dais_metric_family *family_add(dais_metrics_registry *r, enum dais_metric_type type,
                                      const char *name, const char *help, size_t n_labels,
                                      const char *const *labels, size_t nb, const double *bounds,
                                      dais_metric_collect_fn fn, void *arg)
{
    if (r == NULL || !valid_definition(type, name, n_labels, labels, nb, bounds)) return NULL;
    pthread_mutex_lock(&r->mu);
    dais_metric_family *f;
    for (f = r->first; f != NULL; f = f->next) {
        if (strcmp(f->name, name) != 0) continue;
        if (fn != NULL || f->removed ||
            !same_definition(f, type, n_labels, labels, nb, bounds, fn != NULL))
            f = NULL;
        pthread_mutex_unlock(&r->mu);
        return f;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) goto fail;
    f->reg = r;
    f->type = type;
    f->n_labels = n_labels;
    f->nb = nb;
    f->fn = fn;
    f->arg = arg;
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    f->labels = copy_strv(labels, n_labels);
    if (nb > 0) {
        f->bounds = malloc(nb * sizeof(double));
        if (f->bounds != NULL) memcpy(f->bounds, bounds, nb * sizeof(double));
    }
    if (f->name == NULL || f->help == NULL || f->labels == NULL || (nb > 0 && f->bounds == NULL))
        goto fail;
    if (r->last != NULL)
        r->last->next = f;
    else
        r->first = f;
    r->last = f;
    pthread_mutex_unlock(&r->mu);
    return f;
fail:
    if (f != NULL) family_free(f);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

dais_metric_family *dais_metrics_family_new(dais_metrics_registry *r, enum dais_metric_type type,
                                            const char *name, const char *help, size_t n_labels,
                                            const char *const *labels, size_t n_bounds,
                                            const double *bounds)
{
    return family_add(r, type, name, help, n_labels, labels, n_bounds, bounds, NULL, NULL);
}

dais_metric_family *dais_metrics_collector_new(dais_metrics_registry *r, enum dais_metric_type type,
                                               const char *name, const char *help, size_t n_labels,
                                               const char *const *labels, dais_metric_collect_fn fn,
                                               void *arg)
{
    if (fn == NULL || type == DAIS_METRIC_HISTOGRAM) return NULL;
    return family_add(r, type, name, help, n_labels, labels, 0, NULL, fn, arg);
}

int dais_metrics_collector_remove(dais_metrics_registry *r, dais_metric_family *f)
{
    if (r == NULL || f == NULL) return DAIS_EINVAL;
    int rc = DAIS_ENOTFOUND;
    pthread_mutex_lock(&r->mu);
    for (dais_metric_family *p = r->first; p != NULL; p = p->next) {
        if (p != f) continue;
        if (p->removed) {
            rc = DAIS_ENOTFOUND;
        } else if (p->fn == NULL) {
            rc = DAIS_EINVAL;
        } else {
            p->removed = true;
            p->fn = NULL;
            p->arg = NULL;
            rc = 0;
        }
        break;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- children -------------------------------------------------------------------------- */

static uint64_t hash_values(const char *const *values, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p != '\0'; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* separator no string byte can imitate */
    }
    return h;
}

static bool values_equal(char **a, const char *const *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(a[i], b[i]) != 0) return false;
    return true;
}

static int table_grow(dais_metric_family *f)
{
    size_t size = f->table_size == 0 ? 16 : f->table_size * 2;
    child **t = calloc(size, sizeof(child *));
    if (t == NULL) return DAIS_ENOMEM;
    for (child *c = f->first; c != NULL; c = c->next) {
        size_t b = (size_t)(c->hash & (size - 1));
        c->hnext = t[b];
        t[b] = c;
    }
    free(f->table);
    f->table = t;
    f->table_size = size;
    return 0;
}

/* Finds or creates the child for `values`; called with the registry mutex held. */
static child *child_get_locked(dais_metric_family *f, const char *const *values, bool create)
{
    for (size_t i = 0; i < f->n_labels; i++)
        if (values == NULL || values[i] == NULL) return NULL;
    uint64_t h = hash_values(values, f->n_labels);
    if (f->table_size > 0) {
        for (child *c = f->table[h & (f->table_size - 1)]; c != NULL; c = c->hnext)
            if (c->hash == h && values_equal(c->values, values, f->n_labels)) return c;
    }
    if (!create || f->n_children >= DAIS_METRICS_MAX_CHILDREN) return NULL;
    if (f->n_children * 2 >= f->table_size && table_grow(f) != 0) return NULL;

    size_t size = CHILD_HDR;
    if (f->type == DAIS_METRIC_COUNTER)
        size += sizeof(dais_counter);
    else if (f->type == DAIS_METRIC_GAUGE)
        size += sizeof(dais_gauge);
    else
        size += sizeof(dais_histogram) + (f->nb + 1) * sizeof(_Atomic uint64_t);
    size = (size + 63) & ~(size_t)63;
    child *c = aligned_alloc(64, size);
    if (c == NULL) return NULL;
    memset(c, 0, size);
    c->values = copy_strv(values, f->n_labels);
    if (c->values == NULL) {
        free(c);
        return NULL;
    }
    c->hash = h;
    if (f->type == DAIS_METRIC_HISTOGRAM) {
        dais_histogram *hist = METRIC(c);
        hist->bounds = f->bounds;
        hist->nb = f->nb;
    }
    /* the zeroed memory is a valid initial state for every atomic here (0 and +0.0) */
    size_t b = (size_t)(h & (f->table_size - 1));
    c->hnext = f->table[b];
    f->table[b] = c;
    if (f->last != NULL)
        f->last->next = c;
    else
        f->first = c;
    f->last = c;
    f->n_children++;
    return c;
}

static child *child_get(dais_metric_family *f, enum dais_metric_type type,
                        const char *const *values)
{
    if (f == NULL || f->type != type || f->fn != NULL || f->removed) return NULL;
    pthread_mutex_lock(&f->reg->mu);
    child *c = child_get_locked(f, values, true);
    if (c != NULL) c->hidden = false;
    pthread_mutex_unlock(&f->reg->mu);
    return c;
}

dais_counter *dais_counter_child(dais_metric_family *f, const char *const *values)
{
    child *c = child_get(f, DAIS_METRIC_COUNTER, values);
    return c != NULL ? (dais_counter *)METRIC(c) : NULL;
}

dais_gauge *dais_gauge_child(dais_metric_family *f, const char *const *values)
{
    child *c = child_get(f, DAIS_METRIC_GAUGE, values);
    return c != NULL ? (dais_gauge *)METRIC(c) : NULL;
}

dais_histogram *dais_histogram_child(dais_metric_family *f, const char *const *values)
{
    child *c = child_get(f, DAIS_METRIC_HISTOGRAM, values);
    return c != NULL ? (dais_histogram *)METRIC(c) : NULL;
}

int dais_metric_family_hide(dais_metric_family *f, const char *const *values)
{
    if (f == NULL) return DAIS_EINVAL;
    pthread_mutex_lock(&f->reg->mu);
    child *c = child_get_locked(f, values, false);
    if (c != NULL) c->hidden = true;
    pthread_mutex_unlock(&f->reg->mu);
    return c != NULL ? 0 : DAIS_ENOTFOUND;
}

dais_counter *dais_counter_new(dais_metrics_registry *r, const char *name, const char *help)
{
    return dais_counter_child(
        dais_metrics_family_new(r, DAIS_METRIC_COUNTER, name, help, 0, NULL, 0, NULL), NULL);
}

dais_gauge *dais_gauge_new(dais_metrics_registry *r, const char *name, const char *help)
{
    return dais_gauge_child(
        dais_metrics_family_new(r, DAIS_METRIC_GAUGE, name, help, 0, NULL, 0, NULL), NULL);
}

dais_histogram *dais_histogram_new(dais_metrics_registry *r, const char *name, const char *help,
                                   size_t n_bounds, const double *bounds)
{
    return dais_histogram_child(
        dais_metrics_family_new(r, DAIS_METRIC_HISTOGRAM, name, help, 0, NULL, n_bounds, bounds),
        NULL);
}

/* ---- rendering ------------------------------------------------------------------------- */

/* A growable output buffer with a hard maximum (curl's dynbuf idea). */
typedef struct obuf {
    char *p;
    size_t len, cap, max;
    int err;
} obuf;

static void ob_put(obuf *b, const char *s, size_t n)
{
    if (b->err != 0) return;
    if (n > b->max - b->len) {
        b->err = DAIS_ETOOBIG;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 4096 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max + 1) cap = b->max + 1;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->err = DAIS_ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void ob_str(obuf *b, const char *s)
{
    ob_put(b, s, strlen(s));
}

/* Escapes `s`: backslash and newline always, double quote when `quote` (label values). */
static void ob_escaped(obuf *b, const char *s, bool quote)
{
    const char *run = s;
    for (; *s != '\0'; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        if (rep != NULL) {
            ob_put(b, run, (size_t)(s - run));
            ob_put(b, rep, 2);
            run = s + 1;
        }
    }
    ob_put(b, run, (size_t)(s - run));
}

/* Formats a sample value the way Prometheus parses it: shortest round-trip decimal,
 * "+Inf", "-Inf", "NaN". */
static void fmt_value(char *out, size_t cap, double v)
{
    if (isnan(v)) {
        snprintf(out, cap, "NaN");
    } else if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(out, cap, "%.15g", v);
        if (strtod(out, NULL) != v) snprintf(out, cap, "%.17g", v);
    }
}

static void ob_value(obuf *b, double v)
{
    char tmp[40];
    fmt_value(tmp, sizeof(tmp), v);
    ob_str(b, tmp);
}

static void ob_u64(obuf *b, uint64_t v)
{
    char tmp[24];
    snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    ob_str(b, tmp);
}

/* Writes `name{l1="v1",...,extra}` (no braces when there is nothing to put inside). */
static void ob_series(obuf *b, const dais_metric_family *f, const char *suffix,
                      const char *const *values, const char *le)
{
    ob_str(b, f->name);
    ob_str(b, suffix);
    if (f->n_labels == 0 && le == NULL) return;
    ob_put(b, "{", 1);
    for (size_t i = 0; i < f->n_labels; i++) {
        if (i > 0) ob_put(b, ",", 1);
        ob_str(b, f->labels[i]);
        ob_put(b, "=\"", 2);
        ob_escaped(b, values[i], true);
        ob_put(b, "\"", 1);
    }
    if (le != NULL) {
        if (f->n_labels > 0) ob_put(b, ",", 1);
        ob_put(b, "le=\"", 4);
        ob_str(b, le);
        ob_put(b, "\"", 1);
    }
    ob_put(b, "}", 1);
}

static const char *const type_names[] = {"counter", "gauge", "histogram"};

static void render_child(obuf *b, const dais_metric_family *f, const child *c)
{
    const char *const *values = (const char *const *)c->values;
    if (f->type == DAIS_METRIC_COUNTER) {
        dais_counter *m = METRIC(c);
        uint64_t n = atomic_load_explicit(&m->n, memory_order_relaxed);
        double fr = u2d(atomic_load_explicit(&m->fbits, memory_order_relaxed));
        ob_series(b, f, "", values, NULL);
        ob_put(b, " ", 1);
        if (fr == 0)
            ob_u64(b, n);
        else
            ob_value(b, (double)n + fr);
        ob_put(b, "\n", 1);
    } else if (f->type == DAIS_METRIC_GAUGE) {
        ob_series(b, f, "", values, NULL);
        ob_put(b, " ", 1);
        ob_value(b, dais_gauge_value(METRIC(c)));
        ob_put(b, "\n", 1);
    } else {
        dais_histogram *h = METRIC(c);
        uint64_t cum = 0;
        char le[40];
        for (size_t i = 0; i <= h->nb; i++) {
            cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
            if (i < h->nb)
                fmt_value(le, sizeof(le), h->bounds[i]);
            else
                snprintf(le, sizeof(le), "+Inf");
            ob_series(b, f, "_bucket", values, le);
            ob_put(b, " ", 1);
            ob_u64(b, cum);
            ob_put(b, "\n", 1);
        }
        ob_series(b, f, "_sum", values, NULL);
        ob_put(b, " ", 1);
        ob_value(b, dais_histogram_sum(h));
        ob_put(b, "\n", 1);
        ob_series(b, f, "_count", values, NULL);
        ob_put(b, " ", 1);
        ob_u64(b, cum);
        ob_put(b, "\n", 1);
    }
}

struct dais_metric_sink {
    obuf *b;
    const dais_metric_family *f;
};

void dais_metric_sink_emit(dais_metric_sink *sink, const char *const *values, double value)
{
    if (sink == NULL) return;
    const dais_metric_family *f = sink->f;
    for (size_t i = 0; i < f->n_labels; i++)
        if (values == NULL || values[i] == NULL) return;
    ob_series(sink->b, f, "", values, NULL);
    ob_put(sink->b, " ", 1);
    ob_value(sink->b, value);
    ob_put(sink->b, "\n", 1);
}

static void render_registry(dais_metrics_registry *r, obuf *b)
{
    pthread_mutex_lock(&r->mu);
    for (const dais_metric_family *f = r->first; f != NULL && b->err == 0; f = f->next) {
        if (f->removed) continue;
        ob_str(b, "# HELP ");
        ob_str(b, f->name);
        ob_put(b, " ", 1);
        ob_escaped(b, f->help, false);
        ob_str(b, "\n# TYPE ");
        ob_str(b, f->name);
        ob_put(b, " ", 1);
        ob_str(b, type_names[f->type]);
        ob_put(b, "\n", 1);
        if (f->fn != NULL) {
            dais_metric_sink sink = {b, f};
            f->fn(f->arg, &sink);
            continue;
        }
        for (const child *c = f->first; c != NULL; c = c->next)
            if (!c->hidden) render_child(b, f, c);
    }
    pthread_mutex_unlock(&r->mu);
}

char *dais_metrics_render_string(dais_metrics_registry *r, size_t max, size_t *len, int *err)
{
    obuf b = {.max = max != 0 ? max : DAIS_METRICS_RENDER_MAX};
    if (r == NULL) {
        if (err != NULL) *err = DAIS_EINVAL;
        return NULL;
    }
    render_registry(r, &b);
    if (b.err == 0 && b.p == NULL) { /* nothing rendered: an empty string */
        b.p = calloc(1, 1);
        if (b.p == NULL) b.err = DAIS_ENOMEM;
    }
    if (b.err != 0) {
        free(b.p);
        if (err != NULL) *err = b.err;
        return NULL;
    }
    if (len != NULL) *len = b.len;
    if (err != NULL) *err = 0;
    return b.p;
}

static void free_cb(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

int dais_metrics_render_evbuffer(dais_metrics_registry *r, struct evbuffer *out, size_t max)
{
    if (out == NULL) return DAIS_EINVAL;
    int err;
    size_t len;
    char *s = dais_metrics_render_string(r, max, &len, &err);
    if (s == NULL) return err;
    if (len == 0) {
        free(s);
        return 0;
    }
    if (evbuffer_add_reference(out, s, len, free_cb, NULL) != 0) {
        free(s);
        return DAIS_ENOMEM;
    }
    return 0;
}

/* ---- standard metrics ------------------------------------------------------------------ */

enum proc_field { PF_CPU, PF_RSS, PF_FDS, PF_MAXFDS, PF_START };

static const int proc_fields[] = {PF_CPU, PF_RSS, PF_FDS, PF_MAXFDS, PF_START};

static void collect_proc(void *arg, dais_metric_sink *sink)
{
    dais_proc_stats st;
    if (dais_procstats_self(&st) != 0) return;
    double v;
    switch (*(const int *)arg) {
    case PF_CPU:
        v = st.cpu_seconds;
        break;
    case PF_RSS:
        v = (double)st.rss_bytes;
        break;
    case PF_FDS:
        if (st.open_fds < 0) return;
        v = (double)st.open_fds;
        break;
    case PF_MAXFDS:
        if (st.max_fds < 0) return;
        v = (double)st.max_fds;
        break;
    default:
        v = st.start_time_seconds;
        break;
    }
    dais_metric_sink_emit(sink, NULL, v);
}

int dais_metrics_register_standard(dais_metrics_registry *r, const char *simd)
{
    static const struct {
        enum dais_metric_type type;
        const char *name, *help;
    } defs[] = {
        {DAIS_METRIC_COUNTER, "process_cpu_seconds_total",
         "Total user and system CPU time spent in seconds."},
        {DAIS_METRIC_GAUGE, "process_resident_memory_bytes", "Resident memory size in bytes."},
        {DAIS_METRIC_GAUGE, "process_open_fds", "Number of open file descriptors."},
        {DAIS_METRIC_GAUGE, "process_max_fds", "Maximum number of open file descriptors."},
        {DAIS_METRIC_GAUGE, "process_start_time_seconds",
         "Start time of the process since unix epoch in seconds."},
    };
    if (r == NULL) return DAIS_EINVAL;
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
        if (dais_metrics_collector_new(r, defs[i].type, defs[i].name, defs[i].help, 0, NULL,
                                       collect_proc, (void *)&proc_fields[i]) == NULL)
            return DAIS_EINVAL;
    }
    static const char *const labels[] = {"version", "commit", "simd"};
    dais_metric_family *f =
        dais_metrics_family_new(r, DAIS_METRIC_GAUGE, "dais_build_info",
                                "Build information; the value is always 1.", 3, labels, 0, NULL);
    const char *values[] = {DAIS_VERSION, DAIS_GIT_COMMIT, simd != NULL ? simd : ""};
    dais_gauge *g = dais_gauge_child(f, values);
    if (g == NULL) return DAIS_ENOMEM;
    dais_gauge_set(g, 1);
    return 0;
}
