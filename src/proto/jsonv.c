/* Bounded JSON field readers and checked setters (see jsonv.h). */
#include "proto/jsonv.h"

#include <math.h>
#include <string.h>

#define WHERE(w) ((w) != NULL ? (w) : ""), ((w) != NULL ? "." : "")

static int fetch(const json_t *obj, const char *where, const char *key, bool required, json_t **v,
                 dais_err *err)
{
    *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (*v == NULL && required)
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: missing", WHERE(where), key);
    return 0;
}

int dais_jv_str(const json_t *obj, const char *where, const char *key, bool required, size_t min,
                size_t max, const char **out, size_t *len, dais_err *err)
{
    json_t *v;
    int rc = fetch(obj, where, key, required, &v, err);
    if (rc != 0) return rc;
    if (v == NULL) {
        *out = NULL;
        *len = 0;
        return 0;
    }
    if (!json_is_string(v))
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: expected a string", WHERE(where), key);
    size_t n = json_string_length(v);
    if (n < min || n > max)
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: length %zu not in [%zu, %zu]", WHERE(where),
                            key, n, min, max);
    *out = json_string_value(v);
    *len = n;
    return 0;
}

int dais_jv_str_copy(const json_t *obj, const char *where, const char *key, bool required,
                     size_t min, size_t max, char *dst, dais_err *err)
{
    const char *s;
    size_t n;
    int rc = dais_jv_str(obj, where, key, required, min, max, &s, &n, err);
    if (rc != 0) return rc;
    if (s == NULL)
        n = 0;
    else
        memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int dais_jv_int(const json_t *obj, const char *where, const char *key, bool required, int64_t lo,
                int64_t hi, int64_t def, int64_t *out, dais_err *err)
{
    json_t *v;
    int rc = fetch(obj, where, key, required, &v, err);
    if (rc != 0) return rc;
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v))
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: expected an integer", WHERE(where), key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: %lld not in [%lld, %lld]", WHERE(where), key,
                            (long long)x, (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return 0;
}

int dais_jv_num(const json_t *obj, const char *where, const char *key, bool required, double lo,
                double hi, double def, double *out, dais_err *err)
{
    json_t *v;
    int rc = fetch(obj, where, key, required, &v, err);
    if (rc != 0) return rc;
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: expected a number", WHERE(where), key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi)
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: %g not in [%g, %g]", WHERE(where), key, x,
                            lo, hi);
    *out = x;
    return 0;
}

int dais_jv_bool(const json_t *obj, const char *where, const char *key, bool required, bool def,
                 bool *out, dais_err *err)
{
    json_t *v;
    int rc = fetch(obj, where, key, required, &v, err);
    if (rc != 0) return rc;
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: expected true or false", WHERE(where), key);
    *out = json_is_true(v);
    return 0;
}

int dais_jv_obj(const json_t *obj, const char *where, const char *key, bool required, json_t **out,
                dais_err *err)
{
    json_t *v;
    int rc = fetch(obj, where, key, required, &v, err);
    if (rc != 0) return rc;
    if (v != NULL && !json_is_object(v))
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: expected an object", WHERE(where), key);
    *out = v;
    return 0;
}

int dais_jv_arr(const json_t *obj, const char *where, const char *key, bool required, size_t max,
                json_t **out, dais_err *err)
{
    json_t *v;
    int rc = fetch(obj, where, key, required, &v, err);
    if (rc != 0) return rc;
    if (v != NULL && !json_is_array(v))
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: expected an array", WHERE(where), key);
    if (v != NULL && json_array_size(v) > max)
        return dais_err_set(err, DAIS_EPROTO, "%s%s%s: more than %zu elements", WHERE(where), key,
                            max);
    *out = v;
    return 0;
}

/* A NULL value means no memory or (strings) invalid UTF-8: report it as a bad argument. */
static int set_new(json_t *obj, const char *key, json_t *v)
{
    if (v == NULL) return DAIS_EINVAL;
    return json_object_set_new(obj, key, v) == 0 ? 0 : DAIS_ENOMEM;
}

int dais_jv_set_str(json_t *obj, const char *key, const char *s)
{
    return set_new(obj, key, json_string(s));
}

int dais_jv_set_strn(json_t *obj, const char *key, const char *s, size_t len)
{
    return set_new(obj, key, json_stringn(s != NULL ? s : "", s != NULL ? len : 0));
}

int dais_jv_set_int(json_t *obj, const char *key, int64_t v)
{
    return set_new(obj, key, json_integer((json_int_t)v));
}

int dais_jv_set_num(json_t *obj, const char *key, double v)
{
    return set_new(obj, key, json_real(isfinite(v) ? v : 0.0));
}

int dais_jv_set_bool(json_t *obj, const char *key, bool v)
{
    return set_new(obj, key, json_boolean(v));
}

json_t *dais_jv_set_obj(json_t *obj, const char *key)
{
    json_t *o = json_object();
    if (o == NULL || json_object_set_new(obj, key, o) != 0) return NULL;
    return o;
}
