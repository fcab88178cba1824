/* Validation of the POST /api/inference body (see api_request.h). */
#include "master/api_request.h"
#include "proto/json.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEMPERATURE    100.0
#define MAX_REPEAT_PENALTY 100.0
#define MAX_TOP_K          1000000
#define MAX_REPEAT_LAST_N  4096
#define MAX_SEED           (1ll << 53) /* the cluster protocol carries seeds as exact JSON integers */

static int field_error(dais_api_error *e, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int field_error(dais_api_error *e, const char *code, const char *field, const char *fmt, ...)
{
    e->status = 400;
    snprintf(e->code, sizeof(e->code), "%s", code);
    snprintf(e->field, sizeof(e->field), "%s", field);
    e->line = e->column = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return DAIS_EINVAL;
}

static int get_number(json_t *v, const char *name, double lo, double hi, bool lo_open, double *out,
                      dais_api_error *e)
{
    if (!json_is_number(v))
        return field_error(e, "invalid_field", name, "%s must be a number", name);
    double d = json_number_value(v);
    if (!isfinite(d) || d > hi || d < lo || (lo_open && d <= lo))
        return field_error(e, "invalid_field", name, "%s must be a number %s %g and <= %g", name,
                           lo_open ? ">" : ">=", lo, hi);
    *out = d;
    return 0;
}

static int get_int(json_t *v, const char *name, long long lo, long long hi, long long *out,
                   dais_api_error *e)
{
    if (!json_is_integer(v))
        return field_error(e, "invalid_field", name, "%s must be an integer between %lld and %lld",
                           name, lo, hi);
    long long x = (long long)json_integer_value(v);
    if (x < lo || x > hi)
        return field_error(e, "invalid_field", name, "%s must be an integer between %lld and %lld",
                           name, lo, hi);
    *out = x;
    return 0;
}

static int add_stop(dais_infer_params *p, json_t *v, dais_api_error *e)
{
    if (!json_is_string(v))
        return field_error(e, "invalid_field", "stop",
                           "stop must be a string or an array of strings");
    size_t n = json_string_length(v);
    if (n == 0 || n > DAIS_STOP_LEN_MAX)
        return field_error(e, "invalid_field", "stop", "each stop string must be 1..%d bytes",
                           DAIS_STOP_LEN_MAX);
    if (p->n_stop >= DAIS_STOP_MAX)
        return field_error(e, "invalid_field", "stop", "at most %d stop strings", DAIS_STOP_MAX);
    const char *s = json_string_value(v);
    if (memchr(s, '\0', n) != NULL)
        return field_error(e, "invalid_field", "stop", "stop strings must not contain NUL");
    memcpy(p->stop[p->n_stop], s, n);
    p->stop[p->n_stop][n] = '\0';
    p->n_stop++;
    return 0;
}

static int parse_fields(json_t *root, const dais_api_limits *lim, dais_api_request *r,
                        dais_api_error *e)
{
    const char *key;
    json_t *v;
    bool have_prompt = false;
    json_object_foreach(root, key, v)
    {
        double d = 0;
        long long x = 0;
        int rc = 0;
        if (strcmp(key, "model") == 0) {
            if (!json_is_string(v) ||
                !dais_model_name_valid(json_string_value(v), json_string_length(v)))
                return field_error(e, "invalid_field", "model",
                                   "model must be a name of 1..%d bytes without control "
                                   "characters",
                                   DAIS_MODEL_NAME_MAX);
            memcpy(r->model, json_string_value(v), json_string_length(v) + 1);
        } else if (strcmp(key, "prompt") == 0) {
            if (!json_is_string(v))
                return field_error(e, "invalid_field", "prompt", "prompt must be a string");
            size_t n = json_string_length(v);
            if (memchr(json_string_value(v), '\0', n) != NULL)
                return field_error(e, "invalid_field", "prompt", "prompt must not contain NUL");
            r->prompt = malloc(n + 1);
            if (r->prompt == NULL) return field_error(e, "internal", "prompt", "out of memory");
            memcpy(r->prompt, json_string_value(v), n + 1);
            r->prompt_len = n;
            have_prompt = true;
        } else if (strcmp(key, "max_tokens") == 0) {
            if ((rc = get_int(v, "max_tokens", 1, lim->max_tokens_limit, &x, e)) != 0) return rc;
            r->params.max_tokens = (int32_t)x;
        } else if (strcmp(key, "temperature") == 0) {
            if ((rc = get_number(v, "temperature", 0, MAX_TEMPERATURE, false, &d, e)) != 0)
                return rc;
            r->params.temperature = (float)d;
        } else if (strcmp(key, "top_k") == 0) {
            if ((rc = get_int(v, "top_k", 0, MAX_TOP_K, &x, e)) != 0) return rc;
            r->params.top_k = (int32_t)x;
        } else if (strcmp(key, "top_p") == 0) {
            if ((rc = get_number(v, "top_p", 0, 1, true, &d, e)) != 0) return rc;
            r->params.top_p = (float)d;
        } else if (strcmp(key, "min_p") == 0) {
            if ((rc = get_number(v, "min_p", 0, 1, false, &d, e)) != 0) return rc;
            r->params.min_p = (float)d;
        } else if (strcmp(key, "repeat_penalty") == 0) {
            if ((rc = get_number(v, "repeat_penalty", 0, MAX_REPEAT_PENALTY, true, &d, e)) != 0)
                return rc;
            r->params.repeat_penalty = (float)d;
        } else if (strcmp(key, "repeat_last_n") == 0) {
            if ((rc = get_int(v, "repeat_last_n", 0, MAX_REPEAT_LAST_N, &x, e)) != 0) return rc;
            r->params.repeat_last_n = (int32_t)x;
        } else if (strcmp(key, "seed") == 0) {
            if ((rc = get_int(v, "seed", 0, MAX_SEED, &x, e)) != 0) return rc;
            r->params.seed = (uint64_t)x;
            r->seed_set = true;
        } else if (strcmp(key, "stop") == 0) {
            if (json_is_array(v)) {
                size_t i;
                json_t *s;
                if (json_array_size(v) > DAIS_STOP_MAX)
                    return field_error(e, "invalid_field", "stop", "at most %d stop strings",
                                       DAIS_STOP_MAX);
                json_array_foreach(v, i, s)
                {
                    if ((rc = add_stop(&r->params, s, e)) != 0) return rc;
                }
            } else if ((rc = add_stop(&r->params, v, e)) != 0) {
                return rc;
            }
        } else if (strcmp(key, "stream") == 0) {
            if (!json_is_boolean(v))
                return field_error(e, "invalid_field", "stream", "stream must be true or false");
            r->stream = json_is_true(v);
        } else {
            char shown[48];
            size_t kl = strlen(key);
            snprintf(shown, sizeof(shown), "%.40s%s", key, kl > 40 ? "…" : "");
            for (char *p = shown; *p != '\0'; p++)
                if ((unsigned char)*p < 0x20) *p = '?';
            return field_error(e, "unknown_field", shown, "unknown field '%s'", shown);
        }
    }
    if (!have_prompt) return field_error(e, "missing_field", "prompt", "prompt is required");
    return 0;
}

int dais_api_request_parse(const char *body, size_t len, const dais_api_limits *lim,
                           dais_api_request *out, dais_api_error *e)
{
    memset(out, 0, sizeof(*out));
    memset(e, 0, sizeof(*e));
    dais_infer_params_default(&out->params);
    out->params.max_tokens = (int32_t)lim->default_max_tokens;

    dais_json_error je; /* jansson's line, column and wording (proto/json.h) */
    json_t *root = dais_json_parse(body, len, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL) {
        e->status = 400;
        snprintf(e->code, sizeof(e->code), "invalid_json");
        e->line = je.line;
        e->column = je.column;
        snprintf(e->message, sizeof(e->message), "malformed JSON at line %d, column %d: %s",
                 je.line, je.column, je.text);
        return DAIS_EFORMAT;
    }
    int rc;
    if (!json_is_object(root))
        rc = field_error(e, "invalid_json", "", "the body must be a JSON object");
    else
        rc = parse_fields(root, lim, out, e);
    json_decref(root);
    if (rc != 0) dais_api_request_clear(out);
    return rc;
}

void dais_api_request_clear(dais_api_request *r)
{
    if (r == NULL) return;
    free(r->prompt);
    memset(r, 0, sizeof(*r));
}
