/*
 * The body of POST /api/inference: strict JSON parsing and validation into the parameters
 * an INFERENCE_REQUEST carries. Every problem becomes a dais_api_error that names what is
 * wrong (line and column of bad JSON; the field and its allowed range otherwise), which the
 * HTTP layer sends as a 400 JSON error body.
 *
 *   {"model": "name",            optional when the cluster serves one model
 *    "prompt": "text",           required (may be empty: generate from BOS)
 *    "max_tokens": 128,          1 .. limit
 *    "temperature": 1.0,         0 .. 100 (0 = greedy)
 *    "top_k": 0, "top_p": 1.0, "min_p": 0.0, "repeat_penalty": 1.0,
 *    "repeat_last_n": 64,        0 .. 4096
 *    "seed": 42,                 0 .. 2^53; chosen at random when absent
 *    "stop": "x" | ["x", "y"],   up to DAIS_STOP_MAX strings of 1..DAIS_STOP_LEN_MAX bytes
 *    "stream": false}
 * Unknown fields and duplicate keys are errors (a typo must not silently change nothing).
 * Pure; any thread. tests/fuzz/fuzz_api_request.c drives it.
 */
#ifndef DAIS_MASTER_API_REQUEST_H
#define DAIS_MASTER_API_REQUEST_H

#include "common/error.h"
#include "master/config.h"
#include "proto/messages.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dais_api_error {
    int status;       /* HTTP status: 400 */
    char code[32];    /* "invalid_json", "invalid_field", "missing_field", "unknown_field" */
    char field[64];   /* the field concerned, "" for invalid_json */
    int line, column; /* invalid_json: where (1-based line, column as jansson counts) */
    char message[320];
} dais_api_error;

typedef struct dais_api_request {
    char model[DAIS_MODEL_NAME_MAX + 1]; /* "" when absent */
    char *prompt;                        /* owned, NUL-terminated, valid UTF-8 */
    size_t prompt_len;
    dais_infer_params params; /* sampling, max_tokens, stop strings */
    bool seed_set;            /* false: the caller picks a random seed */
    bool stream;
} dais_api_request;

typedef struct dais_api_limits {
    uint32_t default_max_tokens;
    uint32_t max_tokens_limit;
} dais_api_limits;

/* Parses body[0..len). On 0, *out holds the request (free with dais_api_request_clear).
 * Otherwise returns DAIS_EFORMAT (bad JSON) or DAIS_EINVAL (a field), with *e filled and *out
 * cleared. */
int dais_api_request_parse(const char *body, size_t len, const dais_api_limits *lim,
                           dais_api_request *out, dais_api_error *e);

void dais_api_request_clear(dais_api_request *r);

#endif
