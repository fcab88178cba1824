/*
 * The option parser and value parsers behind `dais master` and `dais worker` (options.h):
 * one pass checks the command line, one reads the variables of the options no flag names,
 * one applies the flags in order. The value parsers accept only plain decimal text (no sign,
 * exponent or white space), so a flag means the same in every command.
 */
#include "common/options.h"

#include "common/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- value parsers ----------------------------------------------------------------------- */

int dais_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    if (s == NULL || *s == '\0') return DAIS_EINVAL;
    uint64_t v = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') return DAIS_EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > hi) return DAIS_ERANGE;
    }
    if (v < lo) return DAIS_ERANGE;
    *out = (uint32_t)v;
    return 0;
}

int dais_parse_port(const char *s, uint16_t *out)
{
    uint32_t v;
    int rc = dais_parse_u32(s, 0, 65535, &v);
    if (rc == 0) *out = (uint16_t)v;
    return rc;
}

/* A non-negative decimal number (digits with an optional fraction) followed by a unit;
 * returns the number and points *unit at the rest. */
static int parse_number_unit(const char *s, double *num, const char **unit)
{
    const char *p = s;
    if (!isdigit((unsigned char)*p)) return DAIS_EINVAL;
    double v = 0;
    int digits = 0;
    for (; isdigit((unsigned char)*p); p++) {
        if (++digits > 15) return DAIS_ERANGE;
        v = v * 10 + (*p - '0');
    }
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) return DAIS_EINVAL;
        double scale = 0.1;
        for (int n = 0; isdigit((unsigned char)*p); p++, n++) {
            if (n < 9) v += (*p - '0') * scale;
            scale /= 10;
        }
    }
    *num = v;
    *unit = p;
    return 0;
}

int dais_parse_duration_ms(const char *s, uint32_t *out)
{
    double v;
    const char *unit;
    if (s == NULL || parse_number_unit(s, &v, &unit) != 0) return DAIS_EINVAL;
    double ms;
    if (*unit == '\0' || strcmp(unit, "s") == 0)
        ms = v * 1000.0;
    else if (strcmp(unit, "ms") == 0)
        ms = v;
    else if (strcmp(unit, "m") == 0 || strcmp(unit, "min") == 0)
        ms = v * 60000.0;
    else if (strcmp(unit, "h") == 0)
        ms = v * 3600000.0;
    else
        return DAIS_EINVAL;
    ms = floor(ms + 0.5);
    if (ms < 1.0 || ms > 86400000.0) return DAIS_ERANGE;
    *out = (uint32_t)ms;
    return 0;
}

int dais_parse_size(const char *s, size_t *out)
{
    double v;
    const char *unit;
    if (s == NULL || parse_number_unit(s, &v, &unit) != 0) return DAIS_EINVAL;
    double mult;
    if (*unit == '\0' || strcmp(unit, "B") == 0)
        mult = 1;
    else if (strcmp(unit, "k") == 0 || strcmp(unit, "K") == 0 || strcmp(unit, "KiB") == 0)
        mult = 1024.0;
    else if (strcmp(unit, "m") == 0 || strcmp(unit, "M") == 0 || strcmp(unit, "MiB") == 0)
        mult = 1048576.0;
    else if (strcmp(unit, "g") == 0 || strcmp(unit, "G") == 0 || strcmp(unit, "GiB") == 0)
        mult = 1073741824.0;
    else
        return DAIS_EINVAL;
    double b = floor(v * mult);
    if (b < 1.0 || b > 1073741824.0) return DAIS_ERANGE;
    *out = (size_t)b;
    return 0;
}

/* ---- applying values --------------------------------------------------------------------- */

int dais_opt_set_str(const dais_opt *o, void *base, const char *v, const char *src, dais_err *err)
{
    size_t len = strlen(v);
    if (len >= o->size)
        return dais_err_set(err, DAIS_EINVAL, "%s: longer than %zu bytes", src, o->size - 1);
    if (len == 0 && (o->flags & DAIS_OPT_NONEMPTY) != 0)
        return dais_err_set(err, DAIS_EINVAL, "%s: empty", src);
    memcpy((char *)base + o->off, v, len + 1);
    return 0;
}

int dais_opt_read_secret(const char *path, char *buf, size_t cap, size_t *len, const char *src,
                         dais_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dais_err_set(err, DAIS_EINVAL, "%s: cannot open %s: %s", src, path, strerror(errno));
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return dais_err_set(err, DAIS_EINVAL, "%s: cannot read %s: %s", src, path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (memchr(buf, '\0', n) != NULL)
        return dais_err_set(err, DAIS_EINVAL, "%s: %s holds a NUL byte", src, path);
    *len = n;
    return 0;
}

static bool truthy(const char *v)
{
    return strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
           strcasecmp(v, "on") == 0;
}

/* The field size each kind writes; 0: any (DAIS_OPT_STR: at least 1) or none. */
static const size_t kind_size[DAIS_OPT_CUSTOM] = {
    [DAIS_OPT_PORT] = sizeof(uint16_t),
    [DAIS_OPT_INT] = sizeof(uint32_t),
    [DAIS_OPT_DURATION] = sizeof(uint32_t),
    [DAIS_OPT_SIZE] = sizeof(size_t),
    [DAIS_OPT_BOOL] = sizeof(bool),
    [DAIS_OPT_BOOL_OFF] = sizeof(bool),
    [DAIS_OPT_LOG_LEVEL] = sizeof(enum dais_log_level),
    [DAIS_OPT_LOG_FORMAT] = sizeof(enum dais_log_format),
};

/* Applies value `v` of row `o`; `src` names where it came from for messages. */
static int apply(const dais_opt_spec *s, void *base, const dais_opt *o, const char *v,
                 const char *src, dais_err *err)
{
    void *f = (char *)base + o->off;
    uint32_t x;
    switch (o->kind) {
    case DAIS_OPT_STR:
        return dais_opt_set_str(o, base, v, src, err);
    case DAIS_OPT_PORT:
        if (dais_parse_port(v, f) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not a port (0..65535)", src, v);
        return 0;
    case DAIS_OPT_INT:
        if (dais_parse_u32(v, o->lo, o->hi, &x) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not an integer in %u..%u", src, v,
                                o->lo, o->hi);
        memcpy(f, &x, sizeof(x)); /* a signed field: hi fits it, and so the same bytes */
        return 0;
    case DAIS_OPT_DURATION:
        if (dais_parse_duration_ms(v, f) != 0)
            return dais_err_set(err, DAIS_EINVAL,
                                "%s: '%s' is not a duration between 1ms and 24h (e.g. 5s, 200ms)",
                                src, v);
        return 0;
    case DAIS_OPT_SIZE:
        if (dais_parse_size(v, f) != 0)
            return dais_err_set(err, DAIS_EINVAL,
                                "%s: '%s' is not a size between 1 byte and 1GiB (e.g. 1MiB)", src,
                                v);
        return 0;
    case DAIS_OPT_BOOL:
    case DAIS_OPT_BOOL_OFF:
        *(bool *)f = truthy(v) == (o->kind == DAIS_OPT_BOOL);
        return 0;
    case DAIS_OPT_LOG_LEVEL:
        if (dais_log_parse_level(v, f) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not debug|info|warn|error", src, v);
        return 0;
    case DAIS_OPT_LOG_FORMAT:
        if (dais_log_parse_format(v, f) != 0)
            return dais_err_set(err, DAIS_EINVAL, "%s: '%s' is not text|json", src, v);
        return 0;
    case DAIS_OPT_HELP:
        return 0;
    default:
        if (o->kind >= DAIS_OPT_CUSTOM && s->hook != NULL)
            return s->hook(s->ctx, base, o, v, src, err);
        return dais_err_set(err, DAIS_EINTERNAL, "%s: unhandled option kind", src);
    }
}

/* ---- the parser -------------------------------------------------------------------------- */

/* The row an option and its DAIS_OPT_ALT rows share: the first of them. */
static size_t leader(const dais_opt_spec *s, const dais_opt *o)
{
    size_t k = (size_t)(o - s->opts);
    while (k > 0 && (s->opts[k].flags & DAIS_OPT_ALT) != 0)
        k--;
    return k;
}

/* The row argv[*i] names, and its value: "--flag=V", "--flag V" (*i moves past V) or "1" for
 * a flag that takes none. */
static int next_flag(const dais_opt_spec *s, int argc, char **argv, int *i, const dais_opt **out,
                     const char **val, dais_err *err)
{
    const char *a = argv[*i];
    for (const char *const *p = s->shorts; p != NULL && *p != NULL; p += 2)
        if (strcmp(a, p[0]) == 0) a = p[1];
    const char *eq = strchr(a, '=');
    size_t len = eq != NULL ? (size_t)(eq - a) : strlen(a);
    const dais_opt *o = NULL;
    for (size_t k = 0; k < s->n && o == NULL; k++)
        if (strlen(s->opts[k].flag) == len && strncmp(s->opts[k].flag, a, len) == 0)
            o = &s->opts[k];
    if (o == NULL) return dais_err_set(err, DAIS_EINVAL, "unknown option '%s' (see %s)", a, s->see);
    if (o->metavar == NULL) {
        if (eq != NULL) return dais_err_set(err, DAIS_EINVAL, "%s takes no value", o->flag);
        *val = "1";
    } else if (eq != NULL) {
        *val = eq + 1;
    } else if (*i + 1 < argc) {
        *val = argv[++*i];
    } else {
        return dais_err_set(err, DAIS_EINVAL, "%s needs a value (%s)", o->flag, o->metavar);
    }
    *out = o;
    return 0;
}

int dais_opt_parse(const dais_opt_spec *s, void *base, int argc, char **argv, bool *set,
                   dais_err *err)
{
    if (s->n > DAIS_OPT_MAX)
        return dais_err_set(err, DAIS_EINTERNAL, "option table: more than %d rows", DAIS_OPT_MAX);
    for (size_t k = 0; k < s->n; k++) {
        const dais_opt *o = &s->opts[k];
        size_t want = o->kind >= 0 && o->kind < DAIS_OPT_CUSTOM ? kind_size[o->kind] : 0;
        if ((want != 0 && o->size != want) || (o->kind == DAIS_OPT_STR && o->size == 0))
            return dais_err_set(err, DAIS_EINTERNAL, "option table: %s has a %zu-byte field",
                                o->flag, o->size);
    }
    if (set != NULL) memset(set, 0, s->n * sizeof(*set));
    /* done[leader]: a flag names the option, or one of its variables gave it a value */
    bool done[DAIS_OPT_MAX] = {false};
    const dais_opt *o;
    const char *v;
    for (int i = 1; i < argc; i++) {
        int rc = next_flag(s, argc, argv, &i, &o, &v, err);
        if (rc != 0) return rc;
        if (o->kind == DAIS_OPT_HELP) return 1;
        done[leader(s, o)] = true;
    }
    for (size_t k = 0; s->env != NULL && k < s->n; k++) {
        o = &s->opts[k];
        size_t g = leader(s, o);
        if (o->env == NULL || done[g] || (v = s->env(o->env)) == NULL) continue;
        /* an empty variable is unset, unless the option is a string that may be empty */
        if (v[0] == '\0' && (o->kind != DAIS_OPT_STR || (o->flags & DAIS_OPT_NONEMPTY) != 0))
            continue;
        int rc = apply(s, base, o, v, o->env, err);
        if (rc != 0) return rc;
        done[g] = true;
        if (set != NULL) set[k] = true;
    }
    for (int i = 1; i < argc; i++) {
        int rc = next_flag(s, argc, argv, &i, &o, &v, err);
        if (rc == 0) rc = apply(s, base, o, v, o->flag, err);
        if (rc != 0) return rc;
        if (set != NULL) set[o - s->opts] = true;
    }
    return 0;
}

void dais_opt_help(FILE *out, const dais_opt *opts, size_t n, enum dais_opt_layout layout)
{
    for (size_t i = 0; i < n; i++) {
        const dais_opt *o = &opts[i];
        char left[64];
        snprintf(left, sizeof(left), "%s%s%s", o->flag, o->metavar != NULL ? " " : "",
                 o->metavar != NULL ? o->metavar : "");
        if (layout == DAIS_OPT_WIDE) {
            fprintf(out, "  %-36s  %s", left, o->help);
            if (o->def[0] != '\0') fprintf(out, " [%s]", o->def);
            fprintf(out, "\n");
            if (o->env != NULL) fprintf(out, "  %-36s    env %s\n", "", o->env);
        } else {
            fprintf(out, "  %-28s %s\n", left, o->help);
            if (o->env != NULL || o->def[0] != '\0')
                fprintf(out, "  %-28s %s%s%s%s\n", "", o->env != NULL ? "$" : "",
                        o->env != NULL ? o->env : "",
                        o->def[0] != '\0' ? (o->env != NULL ? ", default " : "default ") : "",
                        o->def);
        }
    }
}
