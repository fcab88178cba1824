/*
 * Output text tests: stop strings (whole, across pieces, inside a piece, several candidates),
 * holding back tokens of an unfinished UTF-8 sequence, and a randomized check of the two
 * invariants failover relies on: every non-final commit's text is exactly its tokens' text,
 * and the committed text is the generated text cut at the first stop string.
 */
#include "worker/textout.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void params(dais_infer_params *p, int n, const char *const *stops)
{
    dais_infer_params_default(p);
    p->n_stop = n;
    for (int i = 0; i < n; i++)
        snprintf(p->stop[i], sizeof(p->stop[i]), "%s", stops[i]);
}

static void expect(const dais_textout_commit *c, const char *text, int n_tok, bool stop)
{
    if (c->text_len != strlen(text) || memcmp(c->text, text, c->text_len) != 0 ||
        c->n_tokens != n_tok || c->stop != stop)
        fail_msg("commit '%.*s' (%d tokens, stop %d), wanted '%s' (%d, %d)", (int)c->text_len,
                 c->text, c->n_tokens, c->stop, text, n_tok, stop);
}

static void test_plain(void **state)
{
    (void)state;
    dais_infer_params p;
    params(&p, 0, NULL);
    dais_textout to;
    assert_int_equal(dais_textout_init(&to, &p), 0);
    dais_textout_commit c;
    assert_int_equal(dais_textout_push(&to, 10, " Once", 5, true, &c), 0);
    expect(&c, " Once", 1, false);
    assert_int_equal(c.tokens[0], 10);
    /* é split over two byte tokens: held until complete. */
    dais_textout_push(&to, 200, "", 0, false, &c);
    expect(&c, "", 0, false);
    dais_textout_push(&to, 201, "\xc3\xa9", 2, true, &c);
    expect(&c, "\xc3\xa9", 2, false);
    assert_int_equal(c.tokens[0], 200);
    assert_int_equal(c.tokens[1], 201);
    /* finish flushes what a detokenizer still held. */
    dais_textout_push(&to, 202, "", 0, false, &c);
    dais_textout_finish(&to, "\xef\xbf\xbd", 3, &c);
    expect(&c, "\xef\xbf\xbd", 1, false);
    dais_textout_push(&to, 5, "x", 1, true, &c);
    expect(&c, "", 0, false);
    dais_textout_close(&to);
}

static void test_stops(void **state)
{
    (void)state;
    const char *stops[] = {"END", "ab", "\n\n"};
    dais_infer_params p;
    params(&p, 3, stops);
    dais_textout to;
    dais_textout_commit c;

    dais_textout_init(&to, &p);
    dais_textout_push(&to, 1, "E", 1, true, &c);
    expect(&c, "", 0, false); /* could be the start of END */
    dais_textout_push(&to, 2, "ND", 2, true, &c);
    expect(&c, "", 2, true);
    dais_textout_close(&to);

    dais_textout_init(&to, &p);
    dais_textout_push(&to, 1, "xa", 2, true, &c);
    expect(&c, "", 0, false); /* the token's text ends with a held "a" */
    dais_textout_push(&to, 2, "c", 1, true, &c);
    expect(&c, "xac", 2, false);
    dais_textout_push(&to, 3, "hello END world", 15, true, &c);
    expect(&c, "hello ", 1, true);
    dais_textout_close(&to);

    /* Earliest match wins; "E" is held but then "ab" completes first. */
    dais_textout_init(&to, &p);
    dais_textout_push(&to, 1, "Ea", 2, true, &c);
    expect(&c, "", 0, false);
    dais_textout_push(&to, 2, "bEND", 4, true, &c);
    expect(&c, "E", 2, true);
    dais_textout_close(&to);

    dais_textout_init(&to, &p);
    dais_textout_push(&to, 1, "line\n", 5, true, &c);
    expect(&c, "", 0, false);
    dais_textout_push(&to, 2, "next", 4, true, &c);
    expect(&c, "line\nnext", 2, false);
    /* Many empty control tokens behind a held prefix grow the buffers, never fail. */
    dais_textout_push(&to, 3, "\n", 1, true, &c);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(dais_textout_push(&to, 100 + i, "", 0, true, &c), 0);
        expect(&c, "", 0, false);
    }
    dais_textout_push(&to, 4, "\n", 1, true, &c);
    expect(&c, "", 1002, true);
    dais_textout_close(&to);
}

/* Random streams over a small alphabet so stop strings occur often. */
static void test_random_invariants(void **state)
{
    (void)state;
    const char *stops[] = {"abc", "ba", "cc", "aaaa"};
    uint64_t rng = 12345;
    for (int trial = 0; trial < 2000; trial++) {
        dais_infer_params p;
        int ns = trial % 4; /* 0..3 strings from offset 0 or 1 of the 4 */
        params(&p, ns, stops + (trial % 2));
        dais_textout to;
        dais_textout_init(&to, &p);
        char gen[4096], got[4096];
        size_t gl = 0, cl = 0;
        char pieces[64][8];
        size_t plen[64];
        int32_t got_tok[64];
        int n_got = 0;
        bool stopped = false;
        for (int t = 0; t < 64 && !stopped; t++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t n = (rng >> 33) % 4;
            for (size_t i = 0; i < n; i++)
                pieces[t][i] = "abcx"[(rng >> (40 + 2 * i)) % 4];
            plen[t] = n;
            memcpy(gen + gl, pieces[t], n);
            gl += n;
            bool clean = ((rng >> 20) % 5) != 0;
            dais_textout_commit c;
            assert_int_equal(dais_textout_push(&to, t, pieces[t], n, clean || t == 63, &c), 0);
            if (!c.stop) {
                /* text == concatenation of its tokens' pieces */
                size_t off = 0;
                for (int i = 0; i < c.n_tokens; i++) {
                    int32_t id = c.tokens[i];
                    assert_true(off + plen[id] <= c.text_len);
                    assert_memory_equal(c.text + off, pieces[id], plen[id]);
                    off += plen[id];
                }
                assert_int_equal(off, c.text_len);
            }
            for (int i = 0; i < c.n_tokens; i++) {
                assert_int_equal(c.tokens[i], n_got); /* in order, none lost */
                got_tok[n_got++] = c.tokens[i];
            }
            memcpy(got + cl, c.text, c.text_len);
            cl += c.text_len;
            stopped = c.stop;
        }
        if (!stopped) {
            dais_textout_commit c;
            dais_textout_finish(&to, "", 0, &c);
            for (int i = 0; i < c.n_tokens; i++)
                got_tok[n_got++] = c.tokens[i];
            memcpy(got + cl, c.text, c.text_len);
            cl += c.text_len;
        }
        /* The expected text: generated text cut at the earliest stop occurrence. */
        size_t cut = gl;
        for (int i = 0; i < ns; i++) {
            const char *s = stops[(trial % 2) + i];
            const char *h = memmem(gen, gl, s, strlen(s));
            if (h != NULL && (size_t)(h - gen) < cut) cut = (size_t)(h - gen);
        }
        if (cl != cut || memcmp(got, gen, cut) != 0)
            fail_msg("trial %d: got '%.*s' want '%.*s'", trial, (int)cl, got, (int)cut, gen);
        (void)got_tok;
        dais_textout_close(&to);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_stops),
        cmocka_unit_test(test_random_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
