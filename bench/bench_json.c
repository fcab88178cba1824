/*
 * JSON micro-benchmark: jansson's json_loadb and json_dumps against proto/json.c's reader and
 * writer, on the envelopes the master handles for every request — an INFERENCE_REQUEST it
 * writes, and the two INFERENCE_RESPONSE frames it reads (the prompt-ids frame 0 and the final
 * frame with usage and timings, as the worker fills them) — built with the real encoders.
 * Also the whole envelope parse/encode and one uuid4.
 *
 *   bench_json [iterations]          (default 200000 per measurement)
 *
 * Prints ns per document for each side and the ratio. Single thread; each figure is the best
 * of 5 timed passes after a warm-up, so other load on the machine inflates it least.
 */
#include "common/clock.h"
#include "proto/envelope.h"
#include "proto/json.h"
#include "proto/messages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long iters = 200000;
static volatile size_t sink;

typedef void (*op_fn)(const char *s, size_t n, json_t *tree);

static void op_loadb(const char *s, size_t n, json_t *tree)
{
    (void)tree;
    json_t *v = json_loadb(s, n, JSON_REJECT_DUPLICATES, NULL);
    sink += v != NULL;
    json_decref(v);
}

static void op_parse(const char *s, size_t n, json_t *tree)
{
    (void)tree;
    json_t *v = dais_json_parse(s, n, JSON_REJECT_DUPLICATES, NULL);
    sink += v != NULL;
    json_decref(v);
}

static void op_dumps(const char *s, size_t n, json_t *tree)
{
    (void)s;
    (void)n;
    char *t = json_dumps(tree, JSON_COMPACT | JSON_PRESERVE_ORDER);
    sink += t != NULL;
    free(t);
}

static void op_write(const char *s, size_t n, json_t *tree)
{
    (void)s;
    (void)n;
    char *t = dais_json_dumps(tree, NULL);
    sink += t != NULL;
    free(t);
}

static void op_env_parse(const char *s, size_t n, json_t *tree)
{
    (void)tree;
    dais_msg *m = NULL;
    dais_err err;
    sink += dais_envelope_parse(s, n, &m, &err) == 0;
    dais_msg_free(m);
}

static const dais_msg *env_msg;
static void op_env_encode(const char *s, size_t n, json_t *tree)
{
    (void)s;
    (void)n;
    (void)tree;
    char *t;
    size_t len;
    sink += dais_envelope_encode(env_msg, &t, &len) == 0;
    free(t);
}

static void op_uuid(const char *s, size_t n, json_t *tree)
{
    (void)s;
    (void)n;
    (void)tree;
    char id[37];
    sink += dais_uuid4(id) == 0;
}

/* Best of 5 passes, ns per call. */
static double measure(op_fn f, const char *s, size_t n, json_t *tree)
{
    for (long i = 0; i < iters / 10; i++)
        f(s, n, tree);
    double best = 1e300;
    for (int rep = 0; rep < 5; rep++) {
        uint64_t t0 = dais_now_ns();
        for (long i = 0; i < iters; i++)
            f(s, n, tree);
        double ns = (double)(dais_now_ns() - t0) / (double)iters;
        if (ns < best) best = ns;
    }
    return best;
}

static void compare(const char *name, dais_msg *m)
{
    char *s;
    size_t n;
    if (dais_envelope_encode(m, &s, &n) != 0) {
        fprintf(stderr, "bench_json: cannot encode %s\n", name);
        exit(1);
    }
    json_t *tree = json_loadb(s, n, JSON_REJECT_DUPLICATES, NULL);
    if (tree == NULL) {
        fprintf(stderr, "bench_json: %s does not parse\n", name);
        exit(1);
    }
    env_msg = m;
    double a = measure(op_loadb, s, n, tree), b = measure(op_parse, s, n, tree);
    double c = measure(op_dumps, s, n, tree), d = measure(op_write, s, n, tree);
    double e = measure(op_env_parse, s, n, tree), f = measure(op_env_encode, s, n, tree);
    printf("%-28s %4zu bytes | read: json_loadb %6.0f ns, dais_json_parse %5.0f ns (x%.1f) | "
           "write: json_dumps %5.0f ns, dais_json_dumps %5.0f ns (x%.1f) | envelope parse %5.0f "
           "ns, encode %5.0f ns\n",
           name, n, a, b, a / b, c, d, c / d, e, f);
    json_decref(tree);
    free(s);
}

int main(int argc, char **argv)
{
    if (argc > 1) iters = atol(argv[1]);
    if (iters < 10) iters = 10;
    static const char traceparent[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /* What the master sends for the gateway benchmark's request. */
    dais_msg *req = dais_msg_new(DAIS_MSG_INFERENCE_REQUEST, "master", "bench-w");
    dais_msg_infer_req q;
    memset(&q, 0, sizeof(q));
    snprintf(q.request_id, sizeof(q.request_id), "%s", "0f4c1a9e2b7d4c3e8a1f5b6d7c8e9f01");
    q.prompt = (char *)"Once upon a time";
    q.prompt_len = strlen(q.prompt);
    q.add_bos = true;
    dais_infer_params_default(&q.params);
    q.params.temperature = 0;
    q.params.max_tokens = 1;
    q.params.seed = 1234567890123ull;
    snprintf(q.traceparent, sizeof(q.traceparent), "%s", traceparent);
    if (req == NULL || dais_infer_req_encode(&q, req) != 0) return 1;

    /* Frame 0: the prompt's token ids (binary payload; the envelope is small). */
    dais_msg *r0 = dais_msg_new(DAIS_MSG_INFERENCE_RESPONSE, "bench-w", "master");
    dais_msg_infer_resp p;
    memset(&p, 0, sizeof(p));
    snprintf(p.request_id, sizeof(p.request_id), "%s", q.request_id);
    p.prompt_token_ids = true;
    p.text = "";
    if (r0 == NULL || dais_infer_resp_encode(&p, r0) != 0) return 1;

    /* The final frame, with the timings the worker computes (ns / 1e6 and tokens/s). */
    dais_msg *r1 = dais_msg_new(DAIS_MSG_INFERENCE_RESPONSE, "bench-w", "master");
    memset(&p, 0, sizeof(p));
    snprintf(p.request_id, sizeof(p.request_id), "%s", q.request_id);
    p.index = 1;
    p.final = true;
    p.text = " there";
    p.text_len = strlen(p.text);
    p.finish = DAIS_FINISH_LENGTH;
    p.prompt_tokens = 5;
    p.completion_tokens = 1;
    p.timings.queue_ms = 21345 / 1e6;
    p.timings.ttft_ms = 412873 / 1e6;
    p.timings.total_ms = 419021 / 1e6;
    p.timings.prefill_ms = 391528 / 1e6;
    p.timings.prefill_tokens_per_s = 5 / (p.timings.prefill_ms / 1e3);
    if (r1 == NULL || dais_infer_resp_encode(&p, r1) != 0) return 1;

    printf("bench_json: %ld iterations per measurement, best of 5\n", iters);
    compare("INFERENCE_REQUEST", req);
    compare("INFERENCE_RESPONSE (ids)", r0);
    compare("INFERENCE_RESPONSE (final)", r1);
    printf("dais_uuid4: %.0f ns\n", measure(op_uuid, NULL, 0, NULL));
    dais_msg_free(req);
    dais_msg_free(r0);
    dais_msg_free(r1);
    return sink == 0;
}
