/*
 * A strict JSON reader and a compact writer for jansson trees, for the hot paths (every
 * cluster envelope, every HTTP request body).
 *
 * The reader builds exactly the json_t tree json_loadb(s, len, flags, &jerr) builds and
 * refuses exactly what it refuses, with the same line, column, position and message text
 * ("'}' expected near ']'"), so every decoder written against jansson keeps working and every
 * error a client sees reads the same. It differs only in speed: one pass over the bytes with
 * pointer loops (jansson reads one byte at a time through a callback and copies every token),
 * an explicit stack instead of recursion, and numbers converted in place when the conversion
 * is exact. Grammar, as jansson 2.14 applies it:
 *   - RFC 8259 values; the top level must be an object or an array unless JSON_DECODE_ANY;
 *     whitespace around it, nothing after it;
 *   - the whole input must be valid UTF-8 (no overlong forms, no surrogates, nothing above
 *     U+10FFFF); \uXXXX escapes must pair surrogates; a raw control character (below 0x20) in
 *     a string is an error; \u0000 is an error in a value without JSON_ALLOW_NUL and always in
 *     a key;
 *   - duplicate keys are an error with JSON_REJECT_DUPLICATES;
 *   - integers (no '.', 'e' or 'E') must fit json_int_t (int64) ("too big integer"); other
 *     numbers become reals and must not overflow a double ("real number overflow");
 *   - nesting deeper than DAIS_JSON_MAX_DEPTH values is an error.
 * tests/fuzz/fuzz_json.c checks all of this against json_loadb itself.
 *
 * The writer appends the compact form of a tree (what json_dumps(v, JSON_COMPACT) gives:
 * keys in insertion order, UTF-8 kept as it is, '"', '\\' and control characters escaped) to a
 * growable buffer with a maximum size. Reals are written so that they read back bit for bit:
 * a value with at most six decimals (the envelope's timestamps, rounded to microseconds) as a
 * plain decimal ("1643123456.789", "0.8", "1.0"), any other as "%.17g", always with a '.' or
 * an 'e' so it stays a real.
 *
 * Everything here is pure and reentrant: any thread, on its own objects.
 */
#ifndef DAIS_PROTO_JSON_H
#define DAIS_PROTO_JSON_H

#include "common/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest accepted nesting, counting values (a top-level array is depth 1, its elements 2):
 * jansson's JSON_PARSER_MAX_DEPTH, so both readers accept the same documents. The writer
 * refuses trees deeper than this too (which also stops a tree that contains itself). */
#define DAIS_JSON_MAX_DEPTH JSON_PARSER_MAX_DEPTH

/* Where and why a document was refused: the fields of jansson's json_error_t. */
typedef struct dais_json_error {
    int line;        /* 1-based; -1 for bad arguments */
    int column;      /* characters (code points) read on that line before the error; -1 ditto */
    size_t position; /* bytes read before the error */
    char text[JSON_ERROR_TEXT_LENGTH]; /* jansson's wording: "... near '<token>'" */
} dais_json_error;

/* Parses s[0..len) (need not be NUL-terminated). `flags` is 0 or any of jansson's
 * JSON_REJECT_DUPLICATES, JSON_ALLOW_NUL and JSON_DECODE_ANY, with jansson's meaning; any other
 * flag is refused ("unsupported flags"). Returns an owned tree (json_decref), or NULL with
 * *err filled (err may be NULL). */
json_t *dais_json_parse(const char *s, size_t len, size_t flags, dais_json_error *err);

/* ---- the writer ---------------------------------------------------------------------------- */

/* A growable output buffer (curl's dynbuf idea: created with a maximum size). The first
 * failure (no memory, over max, an unwritable value) is kept in `err` and turns every later
 * call into a no-op, so a run of appends needs one check at the end. */
typedef struct dais_json_buf {
    char *data; /* owned; NUL-terminated after every call while err == 0 */
    size_t len;
    size_t cap;
    size_t max; /* len never exceeds it */
    int err;    /* 0, DAIS_ENOMEM, DAIS_ETOOBIG (over max or too deep), DAIS_EINVAL */
} dais_json_buf;

/* An empty buffer that may grow to `max` bytes (0: no limit but memory). Allocates nothing. */
void dais_json_buf_init(dais_json_buf *b, size_t max);
/* Frees the data; the buffer can be initialised again. Accepts NULL. */
void dais_json_buf_close(dais_json_buf *b);
/* Returns the text (owned by the caller, free(), NUL-terminated; *len its length without the
 * NUL) and empties the buffer; NULL with the buffer freed when err != 0. The returned value
 * is never NULL on success, even for an empty buffer. */
char *dais_json_buf_take(dais_json_buf *b, size_t *len);

/* Appends bytes as they are (JSON punctuation, a key written by hand). */
void dais_json_buf_raw(dais_json_buf *b, const char *s, size_t n);
/* Appends s[0..n) as a quoted JSON string. The bytes are not checked: callers pass UTF-8
 * (a json_t string, a validated identifier). */
void dais_json_buf_str(dais_json_buf *b, const char *s, size_t n);
void dais_json_buf_int(dais_json_buf *b, int64_t v);
/* A finite double (err = DAIS_EINVAL for NaN or infinity), written to read back exactly. */
void dais_json_buf_real(dais_json_buf *b, double v);
/* Appends the compact text of a whole tree. */
void dais_json_buf_value(dais_json_buf *b, const json_t *v);

/* Shorthand: the compact text of v as an owned NUL-terminated string (free()), like
 * json_dumps(v, JSON_COMPACT); *len (may be NULL) gets its length. NULL on failure. */
char *dais_json_dumps(const json_t *v, size_t *len);

#endif
