/*
 * Differential fuzz target for src/proto/json.c: every input is read by jansson's json_loadb
 * and by dais_json_parse under the flag sets dais uses (JSON_REJECT_DUPLICATES) and the others
 * the reader supports. They must agree exactly: both refuse, with the same line, column,
 * position and message; or both accept, with the same tree (same types, same keys in the same
 * order, reals bit for bit). An accepted tree is then written with the fast writer and read
 * back by both readers: it must come back identical, and for a tree without reals the text
 * must be json_dumps(JSON_COMPACT)'s byte for byte. Any disagreement aborts.
 *
 * The one known difference: a raw NUL byte is always refused by dais_json_parse, while
 * jansson 2.14 skips a NUL that directly follows a number or a word (its one-byte push-back
 * cannot hold a NUL), so it accepts "[1\0]". Inputs with a NUL byte must be refused; their
 * messages are not compared.
 * Seeds: corpus/json/.
 */
#include "proto/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Same tree: types, values (reals compared as bits), keys in iteration order. */
static int same_tree(json_t *a, json_t *b)
{
    if (json_typeof(a) != json_typeof(b)) return 0;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) return 0;
        void *ia = json_object_iter(a), *ib = json_object_iter(b);
        for (; ia != NULL && ib != NULL;
             ia = json_object_iter_next(a, ia), ib = json_object_iter_next(b, ib)) {
            size_t la = json_object_iter_key_len(ia), lb = json_object_iter_key_len(ib);
            if (la != lb || memcmp(json_object_iter_key(ia), json_object_iter_key(ib), la) != 0)
                return 0;
            if (!same_tree(json_object_iter_value(ia), json_object_iter_value(ib))) return 0;
        }
        return ia == NULL && ib == NULL;
    }
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b)) return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!same_tree(json_array_get(a, i), json_array_get(b, i))) return 0;
        return 1;
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
    case JSON_INTEGER:
        return json_integer_value(a) == json_integer_value(b);
    case JSON_REAL: {
        double x = json_real_value(a), y = json_real_value(b);
        return memcmp(&x, &y, sizeof(x)) == 0;
    }
    default:
        return 1;
    }
}

static int has_real(json_t *v)
{
    if (json_is_real(v)) return 1;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            if (has_real(x)) return 1;
        }
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            if (has_real(x)) return 1;
        }
    }
    return 0;
}

static void fail(const char *what, const uint8_t *data, size_t size)
{
    fprintf(stderr, "fuzz_json: %s on %zu bytes: %.*s\n", what, size,
            (int)(size < 200 ? size : 200), (const char *)data);
    abort();
}

static void check(const uint8_t *data, size_t size, size_t flags)
{
    json_error_t je;
    dais_json_error de;
    json_t *a = json_loadb((const char *)data, size, flags, &je);
    json_t *b = dais_json_parse((const char *)data, size, flags, &de);
    if (memchr(data, '\0', size) != NULL) {
        if (b != NULL) fail("a raw NUL byte was accepted", data, size);
        json_decref(a);
        return;
    }
    if ((a == NULL) != (b == NULL)) {
        fprintf(stderr, "jansson: %s (line %d column %d position %d)\n", a ? "accepts" : je.text,
                je.line, je.column, je.position);
        fprintf(stderr, "dais:    %s (line %d column %d position %zu)\n", b ? "accepts" : de.text,
                de.line, de.column, de.position);
        fail("accept/reject differs", data, size);
    }
    if (a == NULL) {
        if (je.line != de.line || je.column != de.column || (size_t)je.position != de.position ||
            strcmp(je.text, de.text) != 0) {
            fprintf(stderr, "jansson: %s (line %d column %d position %d)\n", je.text, je.line,
                    je.column, je.position);
            fprintf(stderr, "dais:    %s (line %d column %d position %zu)\n", de.text, de.line,
                    de.column, de.position);
            fail("errors differ", data, size);
        }
        return;
    }
    if (!same_tree(a, b) || !json_equal(a, b)) fail("trees differ", data, size);

    size_t n;
    char *s = dais_json_dumps(b, &n);
    if (s == NULL || strlen(s) != n) fail("writer failed", data, size);
    json_t *c = json_loadb(s, n, flags | JSON_DECODE_ANY, &je);
    json_t *d = dais_json_parse(s, n, flags | JSON_DECODE_ANY, &de);
    if (c == NULL || d == NULL || !same_tree(b, c) || !same_tree(b, d))
        fail("written text does not read back", data, size);
    if (!has_real(b)) {
        char *j = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
        if (j == NULL || strcmp(j, s) != 0) fail("writer differs from json_dumps", data, size);
        free(j);
    }
    json_decref(c);
    json_decref(d);
    free(s);
    json_decref(a);
    json_decref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, JSON_REJECT_DUPLICATES);
    check(data, size, 0);
    check(data, size, JSON_ALLOW_NUL | JSON_DECODE_ANY | JSON_REJECT_DUPLICATES);
    return 0;
}
