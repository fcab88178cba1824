/*
 * The generation loop and its pieces: the stop-string matcher (text held back across pieces,
 * matches spanning pieces, several stop strings, cancel), and dais_generate on a synthetic
 * model: token limit, empty prompt (BOS only), invalid UTF-8 prompt, prompt longer than the
 * context, context full, stop strings, EOS handling, cancel from a callback, prefill chunking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/generate.h"
#include "engine/synth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- stopper ------------------------------------------------------------------------------ */

typedef struct sink {
    char buf[65536];
    size_t n;
    int calls;
    int cancel_after; /* return non-zero on this call (0 = never) */
} sink;

static int emit(void *user, const char *t, size_t len)
{
    sink *s = user;
    assert_true(len > 0);
    assert_true(s->n + len < sizeof s->buf);
    memcpy(s->buf + s->n, t, len);
    s->n += len;
    s->buf[s->n] = '\0';
    return ++s->calls == s->cancel_after ? 7 : 0;
}

static void push_all(dais_stopper *st, sink *s, const char *const *pieces, int *last_rc)
{
    *last_rc = 0;
    for (int i = 0; pieces[i] && *last_rc == 0; i++)
        *last_rc = dais_stopper_push(st, pieces[i], strlen(pieces[i]), emit, s);
    if (*last_rc == 0) *last_rc = dais_stopper_finish(st, emit, s);
}

static void test_stopper(void **state)
{
    (void)state;
    dais_stopper st;
    sink s;
    int rc;

    /* no stop strings: everything passes straight through */
    memset(&s, 0, sizeof s);
    assert_int_equal(dais_stopper_init(&st, NULL, 0), 0);
    push_all(&st, &s, (const char *[]){"Hello", " world", NULL}, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s.buf, "Hello world");
    dais_stopper_free(&st);

    /* a stop string split over three pieces; the text before it is emitted, not the rest */
    const char *stops[] = {"\n\nUser:", "STOP"};
    memset(&s, 0, sizeof s);
    assert_int_equal(dais_stopper_init(&st, stops, 2), 0);
    push_all(&st, &s, (const char *[]){"Hi there.", "\n", "\nUs", "er: more", NULL}, &rc);
    assert_int_equal(rc, 1);
    assert_true(st.hit);
    assert_string_equal(s.buf, "Hi there.");
    assert_int_equal(dais_stopper_push(&st, "x", 1, emit, &s), 1);
    dais_stopper_free(&st);

    /* a near miss is released once it cannot match any more */
    memset(&s, 0, sizeof s);
    assert_int_equal(dais_stopper_init(&st, stops, 2), 0);
    push_all(&st, &s, (const char *[]){"a\n", "\nUse", "d it. ST", "OR", NULL}, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s.buf, "a\n\nUsed it. STOR");
    dais_stopper_free(&st);

    /* the first of two stop strings in one piece wins; held text ends at the stream's end */
    memset(&s, 0, sizeof s);
    assert_int_equal(dais_stopper_init(&st, stops, 2), 0);
    push_all(&st, &s, (const char *[]){"one STOP two\n\nUser:", NULL}, &rc);
    assert_int_equal(rc, 1);
    assert_string_equal(s.buf, "one ");
    dais_stopper_free(&st);
    memset(&s, 0, sizeof s);
    assert_int_equal(dais_stopper_init(&st, stops, 2), 0);
    push_all(&st, &s, (const char *[]){"tail ST", NULL}, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s.buf, "tail ST");
    dais_stopper_free(&st);

    /* a piece longer than the internal buffer */
    static char big[20000];
    memset(big, 'x', sizeof big - 1);
    memcpy(big + 15000, "STOP", 4);
    memset(&s, 0, sizeof s);
    assert_int_equal(dais_stopper_init(&st, stops, 2), 0);
    push_all(&st, &s, (const char *[]){big, NULL}, &rc);
    assert_int_equal(rc, 1);
    assert_int_equal(s.n, 15000);
    dais_stopper_free(&st);

    /* the callback's cancel value is returned */
    memset(&s, 0, sizeof s);
    s.cancel_after = 1;
    assert_int_equal(dais_stopper_init(&st, stops, 2), 0);
    assert_int_equal(dais_stopper_push(&st, "abc", 3, emit, &s), 7);
    dais_stopper_free(&st);

    /* limits */
    const char *many[DAIS_STOP_MAX + 1];
    for (int i = 0; i <= DAIS_STOP_MAX; i++)
        many[i] = "x";
    assert_int_equal(dais_stopper_init(&st, many, DAIS_STOP_MAX + 1), DAIS_EINVAL);
    dais_stopper_free(&st);
    const char *empty[] = {""};
    assert_int_equal(dais_stopper_init(&st, empty, 1), 0); /* ignored */
    assert_int_equal(st.n_stop, 0);
    dais_stopper_free(&st);
}

/* ---- dais_generate ------------------------------------------------------------------------ */

static char model_path[64];
static dais_model *model;

static int setup(void **state)
{
    (void)state;
    snprintf(model_path, sizeof model_path, "/tmp/dais_test_gen_XXXXXX");
    int fd = mkstemp(model_path);
    if (fd < 0) return -1;
    close(fd);
    dais_synth_params p;
    dais_synth_params_default(&p);
    p.n_ctx = 64;
    p.n_vocab = 600;
    dais_err err;
    if (dais_synth_write(&p, model_path, &err) != 0) {
        fprintf(stderr, "synth: %s\n", err.msg);
        return -1;
    }
    model = dais_model_load(model_path, &err);
    if (model == NULL) fprintf(stderr, "load: %s\n", err.msg);
    return model ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    dais_model_free(model);
    unlink(model_path);
    return 0;
}

typedef struct out {
    sink text;
    int32_t ids[512];
    int n_ids;
    int cancel_at_token; /* cancel when this many tokens have been seen (0 = never) */
} out;

static int on_text(void *user, const char *t, size_t len)
{
    return emit(&((out *)user)->text, t, len);
}

static int on_token(void *user, int32_t id)
{
    out *o = user;
    assert_true(o->n_ids < 512);
    o->ids[o->n_ids++] = id;
    return o->cancel_at_token && o->n_ids == o->cancel_at_token;
}

static int gen(const char *prompt, size_t len, const dais_gen_params *gp, int32_t n_ctx,
               int32_t batch, out *o, dais_gen_stats *st, dais_err *err)
{
    dais_ctx *c = dais_ctx_new(model, 2, batch, err);
    assert_non_null(c);
    dais_kv *kv = dais_kv_new(model, n_ctx, 0, dais_model_hparams(model)->n_layers);
    assert_non_null(kv);
    int cancel = o->cancel_at_token;
    memset(o, 0, sizeof *o);
    o->cancel_at_token = cancel;
    dais_gen_callbacks cb = {.on_text = on_text, .on_token = on_token, .user = o};
    int rc = dais_generate(c, kv, prompt, len, gp, &cb, st, err);
    dais_kv_free(kv);
    dais_ctx_free(c);
    return rc;
}

static dais_gen_params greedy(int n)
{
    dais_gen_params gp;
    dais_gen_params_default(&gp);
    gp.sampling.temperature = 0.0f;
    gp.n_predict = n;
    gp.ignore_eos = true; /* random weights: EOS may come at any time */
    return gp;
}

static void test_limit_and_determinism(void **state)
{
    (void)state;
    out a = {0}, b = {0};
    dais_gen_stats st;
    dais_err err;
    dais_gen_params gp = greedy(20);
    const char *p = "the quick brown fox";
    assert_int_equal(gen(p, strlen(p), &gp, 64, 64, &a, &st, &err), 0);
    assert_int_equal(st.n_gen, 20);
    assert_int_equal(st.n_decode, 19);
    assert_int_equal(st.stop, DAIS_GEN_STOP_LIMIT);
    assert_true(st.n_prompt >= 2);
    assert_true(st.prefill_s >= 0 && st.decode_s > 0 && st.total_s >= st.decode_s);
    assert_int_equal(a.n_ids, 20);
    /* prompt prefilled 3 tokens at a time: same tokens */
    assert_int_equal(gen(p, strlen(p), &gp, 64, 3, &b, &st, &err), 0);
    assert_memory_equal(a.ids, b.ids, sizeof a.ids);
    assert_string_equal(a.text.buf, b.text.buf);
    /* echo: the text starts with the prompt */
    gp.echo_prompt = true;
    assert_int_equal(gen(p, strlen(p), &gp, 64, 64, &b, &st, &err), 0);
    assert_int_equal(strncmp(b.text.buf, p, strlen(p)), 0);
    assert_string_equal(b.text.buf + strlen(p), a.text.buf);
}

static void test_edge_prompts(void **state)
{
    (void)state;
    out o = {0};
    dais_gen_stats st;
    dais_err err;
    dais_gen_params gp = greedy(5);
    /* empty prompt: BOS only */
    assert_int_equal(gen("", 0, &gp, 64, 64, &o, &st, &err), 0);
    assert_int_equal(st.n_prompt, 1);
    assert_int_equal(st.n_gen, 5);
    assert_int_equal(gen(NULL, 0, &gp, 64, 64, &o, &st, &err), 0);
    /* empty prompt without BOS: a clear error */
    gp.add_bos = 0;
    assert_int_equal(gen("", 0, &gp, 64, 64, &o, &st, &err), DAIS_EINVAL);
    assert_non_null(strstr(err.msg, "empty"));
    gp.add_bos = -1;
    /* invalid UTF-8 and stray bytes: tokenized through byte fallback, no crash */
    const char bad[] = "\xff\xfe abc \xc3\x28 \xe2\x82 \xf0\x9f\x98";
    gp.echo_prompt = true;
    assert_int_equal(gen(bad, sizeof bad - 1, &gp, 64, 64, &o, &st, &err), 0);
    assert_int_equal(st.n_gen, 5);
    /* prompt longer than the context */
    char longp[400];
    for (int i = 0; i < 399; i++)
        longp[i] = (char)('a' + i % 26);
    longp[399] = '\0';
    assert_int_equal(gen(longp, 399, &gp, 16, 64, &o, &st, &err), DAIS_ECTXFULL);
    assert_non_null(strstr(err.msg, "context"));
    /* no token limit: stops when the context is full */
    gp.n_predict = 0;
    assert_int_equal(gen("hi", 2, &gp, 12, 64, &o, &st, &err), 0);
    assert_int_equal(st.stop, DAIS_GEN_STOP_CTX);
    assert_int_equal(st.n_prompt + st.n_gen, 13); /* 12 positions + the last sampled token */
    /* bad sampling parameters */
    gp.sampling.top_p = 2.0f;
    assert_int_equal(gen("hi", 2, &gp, 12, 64, &o, &st, &err), DAIS_EINVAL);
}

static void test_stop_string_and_cancel(void **state)
{
    (void)state;
    out o = {0};
    dais_gen_stats st;
    dais_err err;
    dais_gen_params gp = greedy(40);
    const char *p = "once upon";
    assert_int_equal(gen(p, strlen(p), &gp, 64, 64, &o, &st, &err), 0);
    static char full[sizeof o.text.buf];
    snprintf(full, sizeof full, "%s", o.text.buf);
    size_t n = strlen(full);
    assert_true(n > 20);
    /* stop at a substring from the middle of the greedy output */
    char stop[5];
    memcpy(stop, full + n / 2, 4);
    stop[4] = '\0';
    const char *first = strstr(full, stop);
    const char *stops[] = {stop};
    gp.stop = stops;
    gp.n_stop = 1;
    assert_int_equal(gen(p, strlen(p), &gp, 64, 64, &o, &st, &err), 0);
    assert_int_equal(st.stop, DAIS_GEN_STOP_STRING);
    assert_int_equal(o.text.n, (size_t)(first - full));
    assert_memory_equal(o.text.buf, full, o.text.n);
    assert_true(st.n_gen < 40);
    /* cancel from on_token */
    gp.n_stop = 0;
    o.cancel_at_token = 7;
    assert_int_equal(gen(p, strlen(p), &gp, 64, 64, &o, &st, &err), 0);
    assert_int_equal(st.stop, DAIS_GEN_STOP_CANCELLED);
    assert_int_equal(st.n_gen, 7);
    o.cancel_at_token = 0;
    /* EOS: with ignore_eos off, generation ends at the first EOS/BOS the greedy run emits,
     * which is not counted; with it on the run goes on to the limit. */
    gp.ignore_eos = false;
    gp.n_predict = 200;
    assert_int_equal(gen(p, strlen(p), &gp, 64, 64, &o, &st, &err), 0);
    if (st.stop == DAIS_GEN_STOP_EOS) {
        assert_true(st.n_gen < 200);
        for (int i = 0; i < o.n_ids; i++)
            assert_true(o.ids[i] != 1 && o.ids[i] != 2);
    } else {
        assert_int_equal(st.stop, DAIS_GEN_STOP_CTX);
    }
    /* too many stop strings */
    const char *many[DAIS_STOP_MAX + 1];
    for (int i = 0; i <= DAIS_STOP_MAX; i++)
        many[i] = "zz";
    gp.stop = many;
    gp.n_stop = DAIS_STOP_MAX + 1;
    assert_int_equal(gen(p, strlen(p), &gp, 64, 64, &o, &st, &err), DAIS_EINVAL);
}

/* dais_prefill refuses a prompt that does not fit, without running anything. */
static void test_prefill_limits(void **state)
{
    (void)state;
    dais_err err;
    dais_ctx *c = dais_ctx_new(model, 1, 4, &err);
    dais_kv *kv = dais_kv_new(model, 8, 0, dais_model_hparams(model)->n_layers);
    float *lg = malloc(600 * sizeof(float));
    int32_t toks[9] = {1, 5, 6, 7, 8, 9, 10, 11, 12};
    assert_int_equal(dais_prefill(c, kv, toks, 9, lg), DAIS_ECTXFULL);
    assert_int_equal(dais_kv_len(kv), 0);
    assert_int_equal(dais_prefill(c, kv, toks, 0, lg), DAIS_EINVAL);
    assert_int_equal(dais_prefill(c, kv, toks, 8, lg), 0); /* two batches of 4 */
    assert_int_equal(dais_kv_len(kv), 8);
    free(lg);
    dais_kv_free(kv);
    dais_ctx_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stopper),        cmocka_unit_test(test_limit_and_determinism),
        cmocka_unit_test(test_edge_prompts),   cmocka_unit_test(test_stop_string_and_cancel),
        cmocka_unit_test(test_prefill_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
