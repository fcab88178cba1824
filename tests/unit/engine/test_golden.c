/*
 * Golden tests on a real trained model: stories260K (../shared/models, found through
 * $DAIS_SHARED). Greedy decoding of "Once upon a time" must reproduce llama2.c run.c's output
 * byte for byte and id for id (run.c's -n counts positions including the 5 prompt tokens, so
 * -n 64 is 60 new tokens and -n 256 is 252), run-to-completion must stop where run.c stops
 * (the model samples BOS after 341 new tokens: 345 printed pieces minus the 4 prompt pieces),
 * and seeded sampling (-t 1 -s 42, top-p 0.95 and 1) must match run.c's output, which checks
 * the RNG and the top-p rule. The expected texts are the README's, which end with the newline
 * run.c prints after generating; the generated text is compared without it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "engine/generate.h"
#include "engine/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char REF_GREEDY_64[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside "
    "in the park. One day, she saw a big, red ball. She wanted to play with it, but "
    "it was too high.\n"
    "Lily\n";

static const char REF_GREEDY_256[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside "
    "in the park. One day, she saw a big, red ball. She wanted to play with it, but "
    "it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know "
    "what to do. She said, \"I want to play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't "
    "know what to do.\"\n"
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know "
    "what to do.\" Her mom said, \"Don't worry, Lily. We can help you.\n";

static const char REF_GREEDY_FULL[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside "
    "in the park. One day, she saw a big, red ball. She wanted to play with it, but "
    "it was too high.\n"
    "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know "
    "what to do. She said, \"I want to play with your ball, but I can't find it.\"\n"
    "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't "
    "know what to do.\"\n"
    "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know "
    "what to do.\" Her mom said, \"Don't worry, Lily. We can help you.\"\n"
    "Lily and her mom went to the park to play. They played together and had fun. "
    "After a while, Lily's mom came into the room and saw the park. She was so happy "
    "and said, \"Thank you, Lily! You are a good friend.\"\n";

static const char REF_SEED42_P1[] =
    "Once upon a time, there was a little girl named Lily. She loved to play with "
    "her owners and cut her structures. One day, Lily's mommy gave her a quiet knife "
    "and dreamed. Lily ate all of her brush and wished she had a big, three yummy "
    "colorful mess.\n"
    "While she was catching, she noticed that she was cinging. \"Mommy! It's wet it!\" "
    "she asked. Her mommy said, \"We can't take the best balance and don't get in her "
    "bag. You lost my ba\n";

static const char REF_SEED42_P095[] =
    "Once upon a time, there was a brave little boy named Tim. Tim loved to play "
    "with his toys and blow very much. One day, Tim and his friends saw a mean "
    "puddle. They started to rain and sighed.\n"
    "Tim looked in the sand and saw a big, red ball on the ground. He asked his "
    "friend, Timmy, \"Why do you know what is in the back?\" Timmy smiled and said, "
    "\"I'm sorry, Tim. We can have my melon branch.\"\n"
    "Tim said, \"Don't worry, you can help you. Then you can always c\n";

static const int32_t REF_IDS_64[] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338,
                                     401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282,
                                     295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
                                     266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432,
                                     398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438, 310};

static const int32_t REF_IDS_256[] = {
    432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408,
    419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
    266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270,
    333, 415, 426, 13,  438, 310, 439, 419, 357, 336, 432, 313, 438, 310, 432, 278, 316, 439,
    419, 298, 414, 267, 265, 282, 295, 433, 426, 436, 317, 286, 296, 418, 269, 279, 292, 416,
    439, 413, 409, 416, 327, 263, 415, 294, 267, 400, 426, 338, 336, 432, 313, 442, 391, 267,
    337, 335, 364, 420, 268, 388, 432, 398, 359, 280, 303, 439, 413, 272, 417, 264, 312, 426,
    436, 13,  438, 310, 286, 296, 418, 269, 279, 292, 416, 439, 413, 409, 416, 327, 263, 415,
    294, 267, 400, 426, 338, 336, 432, 313, 442, 439, 423, 262, 304, 420, 422, 432, 317, 426,
    359, 279, 292, 416, 439, 413, 409, 416, 327, 263, 415, 294, 267, 400, 426, 436, 13,  438,
    310, 279, 292, 416, 439, 413, 391, 267, 281, 421, 427, 311, 357, 432, 384, 358, 336, 432,
    313, 442, 439, 423, 262, 304, 420, 422, 432, 357, 426, 359, 279, 292, 416, 439, 413, 409,
    416, 327, 263, 415, 294, 267, 400, 426, 436, 320, 285, 357, 336, 432, 313, 455, 289, 439,
    413, 263, 304, 420, 422, 432, 317, 426, 410, 448, 411, 280, 303, 281, 421, 427, 364, 426};

static dais_model *model;

static int setup(void **state)
{
    (void)state;
    const char *env = getenv("DAIS_SHARED");
    const char *cands[] = {env, "../shared", "../../shared", "../../../shared"};
    char path[4096];
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (cands[i] == NULL) continue;
        snprintf(path, sizeof path, "%s/models/stories260K.gguf", cands[i]);
        if (access(path, R_OK) == 0) break;
        path[0] = '\0';
    }
    if (path[0] == '\0') {
        fprintf(stderr, "stories260K.gguf not found: set DAIS_SHARED to the shared directory\n");
        return -1;
    }
    dais_err err;
    model = dais_model_load(path, &err);
    if (model == NULL) {
        fprintf(stderr, "loading %s: %s\n", path, err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    dais_model_free(model);
    return 0;
}

typedef struct collect {
    char text[8192];
    size_t n;
    int32_t ids[1024];
    int n_ids;
} collect;

static int on_text(void *user, const char *t, size_t len)
{
    collect *c = user;
    assert_true(c->n + len < sizeof c->text);
    memcpy(c->text + c->n, t, len);
    c->n += len;
    c->text[c->n] = '\0';
    return 0;
}

static int on_token(void *user, int32_t id)
{
    collect *c = user;
    assert_true(c->n_ids < 1024);
    c->ids[c->n_ids++] = id;
    return 0;
}

/* Runs one generation of "Once upon a time" into *out (text echoes the prompt). */
static void run(int threads, int32_t max_batch, int32_t n_ctx, const dais_gen_params *gp,
                collect *out, dais_gen_stats *st)
{
    dais_err err;
    dais_ctx *c = dais_ctx_new(model, threads, max_batch, &err);
    assert_non_null(c);
    dais_kv *kv = dais_kv_new(model, n_ctx, 0, dais_model_hparams(model)->n_layers);
    assert_non_null(kv);
    memset(out, 0, sizeof *out);
    dais_gen_callbacks cb = {.on_text = on_text, .on_token = on_token, .user = out};
    const char *prompt = "Once upon a time";
    assert_int_equal(dais_generate(c, kv, prompt, strlen(prompt), gp, &cb, st, &err), 0);
    dais_kv_free(kv);
    dais_ctx_free(c);
}

static dais_gen_params greedy(int32_t n)
{
    dais_gen_params gp;
    dais_gen_params_default(&gp);
    gp.n_predict = n;
    gp.sampling.temperature = 0.0f;
    gp.echo_prompt = true;
    return gp;
}

/* The reference output without run.c's final newline. */
static void assert_text(const collect *c, const char *ref)
{
    size_t n = strlen(ref) - 1;
    assert_int_equal(ref[n], '\n');
    if (c->n != n || memcmp(c->text, ref, n) != 0)
        fprintf(stderr, "got %zu bytes:\n%s\nexpected %zu bytes:\n%.*s\n", c->n, c->text, n, (int)n,
                ref);
    assert_int_equal(c->n, n);
    assert_memory_equal(c->text, ref, n);
}

static void test_hparams(void **state)
{
    (void)state;
    const dais_hparams *hp = dais_model_hparams(model);
    assert_string_equal(hp->arch, "llama");
    assert_int_equal(hp->n_vocab, 512);
    assert_int_equal(hp->dim, 64);
    assert_int_equal(hp->n_layers, 5);
    assert_int_equal(hp->n_heads, 8);
    assert_int_equal(hp->n_kv_heads, 4);
    assert_int_equal(hp->head_dim, 8);
    assert_int_equal(hp->ffn_dim, 172);
    assert_int_equal(hp->rope_dim, 8);
    assert_int_equal(hp->n_ctx_train, 2048);
    assert_false(hp->tied_output);
    assert_true(hp->rope_base == 10000.0f);
    assert_string_equal(dais_model_hash(model),
                        "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d");
}

static void test_prompt_ids(void **state)
{
    (void)state;
    int32_t *ids, n;
    dais_err err;
    const char *p = "Once upon a time";
    assert_int_equal(
        dais_tokenize_alloc(dais_model_tokenizer(model), p, strlen(p), true, false, &ids, &n, &err),
        0);
    const int32_t want[5] = {1, 403, 407, 261, 378};
    assert_int_equal(n, 5);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
}

static void test_greedy_64(void **state)
{
    (void)state;
    collect c;
    dais_gen_stats st;
    dais_gen_params gp = greedy(60);
    run(1, 64, 512, &gp, &c, &st);
    assert_int_equal(st.n_prompt, 5);
    assert_int_equal(st.n_gen, 60);
    assert_int_equal(st.n_decode, 59);
    assert_int_equal(st.stop, DAIS_GEN_STOP_LIMIT);
    assert_int_equal(c.n_ids, 60);
    assert_memory_equal(c.ids, REF_IDS_64, sizeof REF_IDS_64);
    assert_text(&c, REF_GREEDY_64);
}

static void test_greedy_256(void **state)
{
    (void)state;
    collect c;
    dais_gen_stats st;
    dais_gen_params gp = greedy(252);
    run(1, 64, 512, &gp, &c, &st);
    assert_int_equal(c.n_ids, 252);
    assert_memory_equal(c.ids, REF_IDS_256, sizeof REF_IDS_256);
    assert_text(&c, REF_GREEDY_256);
}

static void test_greedy_to_completion(void **state)
{
    (void)state;
    collect c;
    dais_gen_stats st;
    dais_gen_params gp = greedy(0); /* no limit: run.c -n 0 (seq_len 512) */
    run(1, 64, 512, &gp, &c, &st);
    assert_int_equal(st.stop, DAIS_GEN_STOP_EOS);
    assert_int_equal(st.n_gen, 341);
    assert_int_equal(c.n + 1, 776);
    assert_text(&c, REF_GREEDY_FULL);
}

/* Two threads, prompt prefilled one token per forward pass (max_batch 1): same ids. */
static void test_greedy_threads_unbatched(void **state)
{
    (void)state;
    collect c;
    dais_gen_stats st;
    dais_gen_params gp = greedy(252);
    run(2, 1, 300, &gp, &c, &st);
    assert_memory_equal(c.ids, REF_IDS_256, sizeof REF_IDS_256);
    assert_text(&c, REF_GREEDY_256);
}

/* The portable scalar kernels give the same ids. */
static void test_greedy_scalar(void **state)
{
    (void)state;
    enum dais_isa isa = dais_kernels_isa();
    dais_kernels_force_isa(DAIS_ISA_SCALAR);
    collect c;
    dais_gen_stats st;
    dais_gen_params gp = greedy(252);
    run(1, 64, 512, &gp, &c, &st);
    dais_kernels_force_isa(isa);
    assert_memory_equal(c.ids, REF_IDS_256, sizeof REF_IDS_256);
}

static void seeded(float top_p, const char *ref)
{
    collect c;
    dais_gen_stats st;
    dais_gen_params gp;
    dais_gen_params_default(&gp);
    gp.n_predict = 196; /* run.c -n 200 with a 5-token prompt (4 forced, 196 sampled) */
    gp.sampling.temperature = 1.0f;
    gp.sampling.top_p = top_p;
    gp.sampling.top_k = 0;
    gp.sampling.min_p = 0.0f;
    gp.sampling.seed = 42;
    gp.echo_prompt = true;
    run(1, 64, 512, &gp, &c, &st);
    assert_int_equal(st.n_gen, 196);
    assert_text(&c, ref);
}

static void test_seeded_top_p_095(void **state)
{
    (void)state;
    seeded(0.95f, REF_SEED42_P095);
}

static void test_seeded_top_p_1(void **state)
{
    (void)state;
    seeded(1.0f, REF_SEED42_P1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hparams),
        cmocka_unit_test(test_prompt_ids),
        cmocka_unit_test(test_greedy_64),
        cmocka_unit_test(test_greedy_256),
        cmocka_unit_test(test_greedy_to_completion),
        cmocka_unit_test(test_greedy_threads_unbatched),
        cmocka_unit_test(test_greedy_scalar),
        cmocka_unit_test(test_seeded_top_p_095),
        cmocka_unit_test(test_seeded_top_p_1),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
