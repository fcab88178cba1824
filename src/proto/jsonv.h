/*
 * Bounded readers for JSON object fields, used by the envelope and typed-payload decoders
 * (internal to src/proto, but plain enough for any module that validates peer JSON).
 * Each reads `key` from `obj`: a missing key gives the default when !required, else
 * DAIS_EPROTO; a present key of the wrong type or out of range is DAIS_EPROTO. Error messages
 * name the field as "where.key" (where may be NULL). Outputs are written only on success.
 * Pure; any thread.
 */
#ifndef DAIS_PROTO_JSONV_H
#define DAIS_PROTO_JSONV_H

#include "common/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A string of min..max bytes; *out borrowed from obj (NUL-terminated), *len its length.
 * Missing and not required: *out = NULL, *len = 0. */
int dais_jv_str(const json_t *obj, const char *where, const char *key, bool required, size_t min,
                size_t max, const char **out, size_t *len, dais_err *err);
/* The same copied into dst (max + 1 bytes); missing and not required: dst = "". */
int dais_jv_str_copy(const json_t *obj, const char *where, const char *key, bool required,
                     size_t min, size_t max, char *dst, dais_err *err);
/* A JSON integer in [lo, hi]. */
int dais_jv_int(const json_t *obj, const char *where, const char *key, bool required, int64_t lo,
                int64_t hi, int64_t def, int64_t *out, dais_err *err);
/* A JSON number (integer or real), finite, in [lo, hi]. */
int dais_jv_num(const json_t *obj, const char *where, const char *key, bool required, double lo,
                double hi, double def, double *out, dais_err *err);
int dais_jv_bool(const json_t *obj, const char *where, const char *key, bool required, bool def,
                 bool *out, dais_err *err);
/* An object (borrowed); missing and not required: *out = NULL. */
int dais_jv_obj(const json_t *obj, const char *where, const char *key, bool required, json_t **out,
                dais_err *err);
/* An array (borrowed) of at most max elements; missing and not required: *out = NULL. */
int dais_jv_arr(const json_t *obj, const char *where, const char *key, bool required, size_t max,
                json_t **out, dais_err *err);

/* Setters that report allocation failure (json_object_set_new returns -1). */
int dais_jv_set_str(json_t *obj, const char *key, const char *s);
int dais_jv_set_strn(json_t *obj, const char *key, const char *s, size_t len);
int dais_jv_set_int(json_t *obj, const char *key, int64_t v);
int dais_jv_set_num(json_t *obj, const char *key, double v);
int dais_jv_set_bool(json_t *obj, const char *key, bool v);
/* Sets key to a new empty object and returns it (borrowed), or NULL. */
json_t *dais_jv_set_obj(json_t *obj, const char *key);

#endif
