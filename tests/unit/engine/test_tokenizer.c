/*
 * Tokenizer unit tests: the real stories260K vocabulary (the prompt ids of the reference run),
 * small hand-made "llama" and "gpt2" vocabularies whose expected ids are worked out by hand
 * (merge order, the tie rule, byte fallback, the pre-tokenizer, ignore_merges, special tokens),
 * invalid UTF-8 in and out, the streaming decoder, validation of every tokenizer key (through
 * explicit parameters and through GGUF files), and concurrent use from several threads.
 * The real Llama 2 / Llama 3 conformance suite is test_tokenizer_conformance.c.
 */
#include "engine/gguf.h"
#include "engine/tokenizer.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static const char *shared_dir(void)
{
    const char *d = getenv("DAIS_SHARED");
    return d != NULL && d[0] != '\0' ? d : "../shared";
}

#define MAXIDS 4096

/* Encodes a NUL-terminated string; returns the count (asserted to fit). */
static int64_t enc(const dais_tokenizer *t, const char *s, bool bos, bool special, int32_t *ids)
{
    int64_t n = dais_tokenize(t, s, strlen(s), bos, special, ids, MAXIDS);
    assert_true(n >= 0 && n <= MAXIDS);
    return n;
}

static void assert_ids(const int32_t *got, int64_t n, const int32_t *want, int64_t nw)
{
    if (n != nw || memcmp(got, want, (size_t)n * sizeof(int32_t)) != 0) {
        fprintf(stderr, "want:");
        for (int64_t i = 0; i < nw; i++)
            fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\ngot: ");
        for (int64_t i = 0; i < n; i++)
            fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n");
        fail();
    }
}

#define ENC_EQ(t, s, bos, special, ...)                                                            \
    do {                                                                                           \
        int32_t got_[MAXIDS];                                                                      \
        const int32_t want_[] = {__VA_ARGS__};                                                     \
        int64_t n_ = enc((t), (s), (bos), (special), got_);                                        \
        assert_ids(got_, n_, want_, (int64_t)(sizeof(want_) / sizeof(want_[0])));                  \
    } while (0)

/* Decodes ids in one call (NUL-terminated into buf). */
static const char *dec(const dais_tokenizer *t, const int32_t *ids, int64_t n, bool skip, char *buf,
                       size_t cap)
{
    int64_t m = dais_detokenize(t, ids, (size_t)n, skip, buf, cap - 1);
    assert_true(m >= 0 && (size_t)m < cap);
    buf[m] = '\0';
    return buf;
}

/* Concatenated raw token bytes (dais_token_text), for byte-exactness checks. */
static size_t raw_concat(const dais_tokenizer *t, const int32_t *ids, int64_t n, char *out)
{
    size_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t l;
        const char *p = dais_token_text(t, ids[i], &l);
        assert_non_null(p);
        memcpy(out + m, p, l);
        m += l;
    }
    return m;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* ---- a hand-made llama vocabulary ---------------------------------------------------------- */

/* Ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then: */
enum {
    L_SP = 259, /* ▁        -100 */
    L_A,        /* a        -101 */
    L_B,        /* b        -102 */
    L_C,        /* c        -103 */
    L_AB,       /* ab       -1   */
    L_BC,       /* bc       -2   */
    L_SPA,      /* ▁a       -3   */
    L_ABC,      /* abc      -4   */
    L_EACUTE,   /* é        -104 */
    L_USER,     /* <user>   user-defined */
    L_SP2,      /* ▁▁       -1e9 */
    L_SP3,      /* ▁▁▁      -1e9 */
    L_LT,       /* <        -105 */
    L_N
};
#define BYTE(b) (3 + (b))

/* One spare slot: test_llama_space_inside_piece adds "a▁". */
static char llama_pieces[L_N + 1][16];
static float llama_scores[L_N + 1];
static int32_t llama_types[L_N + 1];
static const char *llama_ptrs[L_N + 1];

static void llama_params(dais_tokenizer_params *p)
{
    static const struct {
        const char *s;
        float score;
        int32_t type;
    } extra[] = {
        {"\xE2\x96\x81", -100, 1},
        {"a", -101, 1},
        {"b", -102, 1},
        {"c", -103, 1},
        {"ab", -1, 1},
        {"bc", -2, 1},
        {"\xE2\x96\x81"
         "a",
         -3, 1},
        {"abc", -4, 1},
        {"\xC3\xA9", -104, 1},
        {"<user>", 0, DAIS_TOKT_USER_DEFINED},
        {"\xE2\x96\x81\xE2\x96\x81", -1e9f, 1},
        {"\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81", -1e9f, 1},
        {"<", -105, 1},
    };
    strcpy(llama_pieces[0], "<unk>");
    strcpy(llama_pieces[1], "<s>");
    strcpy(llama_pieces[2], "</s>");
    llama_types[0] = DAIS_TOKT_UNKNOWN;
    llama_types[1] = llama_types[2] = DAIS_TOKT_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(llama_pieces[BYTE(b)], 16, "<0x%02X>", b);
        llama_types[BYTE(b)] = DAIS_TOKT_BYTE;
    }
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        strcpy(llama_pieces[L_SP + i], extra[i].s);
        llama_scores[L_SP + i] = extra[i].score;
        llama_types[L_SP + i] = extra[i].type;
    }
    for (int i = 0; i < L_N; i++)
        llama_ptrs[i] = llama_pieces[i];
    dais_tokenizer_params_init(p);
    p->model = "llama";
    p->model_len = 5;
    p->n_vocab = L_N;
    p->tokens = llama_ptrs;
    p->scores = llama_scores;
    p->token_types = llama_types;
    p->bos_id = 1;
    p->eos_id = 2;
    p->unk_id = 0;
}

static dais_tokenizer *llama_tok(void)
{
    dais_tokenizer_params p;
    llama_params(&p);
    dais_err err = {0};
    dais_tokenizer *t = dais_tokenizer_new(&p, &err);
    if (t == NULL) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(t);
    return t;
}

/* ---- a hand-made gpt2 vocabulary ------------------------------------------------------------ */

/* Ids 0..255: the byte-level symbol of byte i. Then: */
enum {
    G_HE = 256, /* h e */
    G_LL,       /* l l */
    G_HELL,     /* he ll */
    G_HELLO,    /* hell o */
    G_SPW,      /* Ġ w */
    G_OR,       /* o r */
    G_SPWOR,    /* Ġw or */
    G_LO,       /* "lo": a token no merge produces */
    G_EOT,      /* <|endoftext|> control */
    G_END,      /* <|end|> control */
    G_ENDP,     /* <|end control (a prefix of the one above) */
    G_N
};

static char gpt2_pieces[G_N][24];
static int32_t gpt2_types[G_N];
static const char *gpt2_ptrs[G_N];
static const char *gpt2_merges[] = {"h e",        "l l", "he ll",       "hell o",
                                    "\xC4\xA0 w", "o r", "\xC4\xA0w or"};

static void byte_symbol(int b, char *out)
{
    int k = 0, cp = -1;
    for (int x = 0; x < 256; x++) {
        bool self = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
        int c = self ? x : 0x100 + k++;
        if (x == b) cp = c;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

static void gpt2_params(dais_tokenizer_params *p, const char *pre)
{
    for (int b = 0; b < 256; b++) {
        byte_symbol(b, gpt2_pieces[b]);
        gpt2_types[b] = DAIS_TOKT_NORMAL;
    }
    static const char *extra[] = {"he",   "ll",          "hell", "hello",         "\xC4\xA0w",
                                  "or",   "\xC4\xA0wor", "lo",   "<|endoftext|>", "<|end|>",
                                  "<|end"};
    for (int i = 0; i < G_N - 256; i++) {
        strcpy(gpt2_pieces[256 + i], extra[i]);
        gpt2_types[256 + i] = 256 + i >= G_EOT ? DAIS_TOKT_CONTROL : DAIS_TOKT_NORMAL;
    }
    for (int i = 0; i < G_N; i++)
        gpt2_ptrs[i] = gpt2_pieces[i];
    dais_tokenizer_params_init(p);
    p->model = "gpt2";
    p->model_len = 4;
    p->pre = pre;
    p->pre_len = pre != NULL ? strlen(pre) : 0;
    p->n_vocab = G_N;
    p->tokens = gpt2_ptrs;
    p->token_types = gpt2_types;
    p->merges = gpt2_merges;
    p->n_merges = sizeof gpt2_merges / sizeof gpt2_merges[0];
    p->bos_id = G_EOT;
    p->eos_id = G_EOT;
}

static dais_tokenizer *gpt2_tok(const char *pre)
{
    dais_tokenizer_params p;
    gpt2_params(&p, pre);
    dais_err err = {0};
    dais_tokenizer *t = dais_tokenizer_new(&p, &err);
    if (t == NULL) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(t);
    return t;
}

/* ---- stories260K ---------------------------------------------------------------------------- */

static void test_stories260k_prompt(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", shared_dir());
    dais_err err = {0};
    dais_gguf *g = dais_gguf_open(path, &err);
    if (g == NULL) fprintf(stderr, "%s\n", err.msg);
    assert_non_null(g);
    dais_tokenizer *t = dais_tokenizer_from_gguf(g, &err);
    dais_gguf_free(g); /* the tokenizer keeps its own copy */
    assert_non_null(t);
    assert_int_equal(dais_tokenizer_kind(t), DAIS_TOK_LLAMA);
    assert_int_equal(dais_tokenizer_n_vocab(t), 512);
    assert_int_equal(dais_tokenizer_bos(t), 1);
    assert_int_equal(dais_tokenizer_eos(t), 2);
    assert_int_equal(dais_tokenizer_unk(t), 0);
    assert_int_equal(dais_tokenizer_pad(t), -1); /* 0xFFFFFFFF in the file */
    assert_true(dais_tokenizer_add_bos(t));
    assert_true(dais_tokenizer_is_eog(t, 2));
    assert_false(dais_tokenizer_is_eog(t, 1));

    ENC_EQ(t, "Once upon a time", true, false, 1, 403, 407, 261, 378);
    ENC_EQ(t, "Once upon a time", false, false, 403, 407, 261, 378);
    /* The 60 ids the reference run generates (-n 64) decode to its text. */
    const int32_t gen[] = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421,
                           395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411,
                           322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370,
                           432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312,
                           432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13,  438, 310};
    char buf[512];
    assert_string_equal(dec(t, gen, (int64_t)(sizeof gen / sizeof gen[0]), true, buf, sizeof buf),
                        "Once upon a time, there was a little girl named Lily. She loved to play "
                        "outside in the park. One day, she saw a big, red ball. She wanted to play "
                        "with it, but it was too high.\nLily");
    /* Spelled out, BOS counts as the first piece: the dummy space then stays (llama.cpp too). */
    assert_string_equal(dec(t, gen, 5, false, buf, sizeof buf), "<s> Once upon a time");
    size_t l;
    assert_memory_equal(dais_token_text(t, 403, &l), " Once", 5);
    assert_int_equal(l, 5);
    assert_null(dais_token_text(t, 512, &l));
    assert_null(dais_token_text(t, -1, &l));
    dais_tokenizer_free(t);
}

/* ---- llama ---------------------------------------------------------------------------------- */

static void test_llama_merges(void **state)
{
    (void)state;
    dais_tokenizer *t = llama_tok();
    /* ▁ a b c: ab (-1) first, then ab+c = abc (-4); ▁a (-3) lost its a. */
    ENC_EQ(t, "abc", false, false, L_SP, L_ABC);
    /* ▁ b c a: bc (-2); nothing joins bc and a. */
    ENC_EQ(t, "bca", false, false, L_SP, L_BC, L_A);
    /* ▁ a: the dummy prefix merges with the first letter. */
    ENC_EQ(t, "a", false, false, L_SPA);
    ENC_EQ(t, "a", true, false, 1, L_SPA);
    ENC_EQ(t, "a b", false, false, L_SPA, L_SP, L_B);
    /* Equal scores (the ▁ runs, -1e9) rank by (left id, right id): ▁+▁ before ▁▁+▁, so four
     * ▁ become ▁▁ ▁▁, where SentencePiece's leftmost rule would give ▁▁▁ ▁. */
    ENC_EQ(t, "   ", false, false, L_SP2, L_SP2);
    ENC_EQ(t, "  ", false, false, L_SP3);
    dais_tokenizer_free(t);
}

/* With a piece that has ▁ after another character ("a▁"), a merge can join a word to the
 * space after it, so the text must not be merged word by word. */
static void test_llama_space_inside_piece(void **state)
{
    (void)state;
    dais_tokenizer *t = llama_tok();
    ENC_EQ(t, "a a", false, false, L_SPA, L_SPA);
    dais_tokenizer_free(t);
    dais_tokenizer_params p;
    llama_params(&p);
    strcpy(llama_pieces[L_N], "a\xE2\x96\x81");
    llama_ptrs[L_N] = llama_pieces[L_N];
    llama_scores[L_N] = -0.5f;
    llama_types[L_N] = DAIS_TOKT_NORMAL;
    p.n_vocab = L_N + 1;
    dais_err err = {0};
    t = dais_tokenizer_new(&p, &err);
    assert_non_null(t);
    /* ▁ a ▁ a: "a▁" (-0.5) beats both "▁a" (-3); nothing joins the rest. */
    ENC_EQ(t, "a a", false, false, L_SP, L_N, L_A);
    dais_tokenizer_free(t);
}

static void test_llama_byte_fallback(void **state)
{
    (void)state;
    dais_tokenizer *t = llama_tok();
    ENC_EQ(t, "\xC3\xA9", false, false, L_SP, L_EACUTE);               /* é is a piece */
    ENC_EQ(t, "\xC3\xBC", false, false, L_SP, BYTE(0xC3), BYTE(0xBC)); /* ü is not */
    ENC_EQ(t, "x\n", false, false, L_SP, BYTE('x'), BYTE('\n'));
    ENC_EQ(t, "\xF0\x9F\xA6\x99", false, false, L_SP, BYTE(0xF0), BYTE(0x9F), BYTE(0xA6),
           BYTE(0x99));
    /* Invalid UTF-8: each stray byte is its byte token; nothing is lost. */
    ENC_EQ(t,
           "\xFF"
           "a\xC3",
           false, false, L_SP, BYTE(0xFF), L_A, BYTE(0xC3));
    ENC_EQ(t, "\xED\xA0\x80", false, false, L_SP, BYTE(0xED), BYTE(0xA0), BYTE(0x80));
    /* An embedded NUL is a byte like any other. */
    int32_t ids[8];
    assert_int_equal(dais_tokenize(t, "a\0b", 3, false, false, ids, 8), 3);
    assert_int_equal(ids[0], L_SPA);
    assert_int_equal(ids[1], BYTE(0));
    assert_int_equal(ids[2], L_B);
    /* A typed ▁ is a space. */
    ENC_EQ(t,
           "\xE2\x96\x81"
           "a",
           false, false, L_SP, L_SPA);
    dais_tokenizer_free(t);
}

static void test_llama_empty_and_capacity(void **state)
{
    (void)state;
    dais_tokenizer *t = llama_tok();
    int32_t ids[4] = {-7, -7, -7, -7};
    assert_int_equal(dais_tokenize(t, "", 0, false, false, ids, 4), 0);
    assert_int_equal(dais_tokenize(t, "", 0, true, false, ids, 4), 1);
    assert_int_equal(ids[0], 1);
    assert_int_equal(dais_tokenize(t, NULL, 0, true, true, ids, 4), 1);
    assert_int_equal(dais_tokenize(t, NULL, 1, true, true, ids, 4), DAIS_EINVAL);
    /* A short buffer gets the first ids and the full count. */
    ids[1] = -7;
    assert_int_equal(dais_tokenize(t, "bca", 3, true, false, ids, 1), 4);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], -7);
    assert_int_equal(dais_tokenize(t, "bca", 3, true, false, NULL, 0), 4);
    assert_int_equal(dais_tokenize(t, "x", (size_t)DAIS_TOK_MAX_TEXT + 1, false, false, ids, 4),
                     DAIS_ETOOBIG);
    dais_tokenizer_free(t);
}

static void test_llama_special(void **state)
{
    (void)state;
    dais_tokenizer *t = llama_tok();
    /* Off: "<s>" is text (< is a piece, s and > fall back to bytes). */
    ENC_EQ(t, "<s>", false, false, L_SP, L_LT, BYTE('s'), BYTE('>'));
    /* On: control and user-defined spellings become their tokens; every text fragment after
     * one gets SentencePiece's leading ▁, as llama.cpp does. */
    ENC_EQ(t, "a<s>b", false, true, L_SPA, 1, L_SP, L_B);
    ENC_EQ(t, "<user></s>", false, true, L_USER, 2);
    /* The unknown token is neither control nor user-defined: its spelling stays text. */
    ENC_EQ(t, "<unk>", false, true, L_SP, L_LT, BYTE('u'), BYTE('n'), BYTE('k'), BYTE('>'));
    dais_tokenizer_free(t);
}

static void test_llama_decode(void **state)
{
    (void)state;
    dais_tokenizer *t = llama_tok();
    char buf[256];
    const int32_t a[] = {1, L_SPA, L_BC, L_SP, L_EACUTE, 2};
    assert_string_equal(dec(t, a, 6, true, buf, sizeof buf), "abc \xC3\xA9");
    assert_string_equal(dec(t, a, 6, false, buf, sizeof buf), "<s>\x20"
                                                              "abc \xC3\xA9</s>");
    /* Byte tokens rebuild a character split across them. */
    const int32_t b[] = {L_SP, BYTE(0xF0), BYTE(0x9F), BYTE(0xA6), BYTE(0x99)};
    assert_string_equal(dec(t, b, 5, true, buf, sizeof buf), "\xF0\x9F\xA6\x99");
    /* Round trips of random valid text built from a few characters. */
    const char *parts[] = {"a",
                           "b",
                           "c",
                           " ",
                           "  ",
                           "\xC3\xA9",
                           "\xC3\xBC",
                           "x",
                           "\n",
                           "\xE6\xBC\xA2",
                           "\xF0\x9F\xA6\x99"};
    for (int it = 0; it < 300; it++) {
        char s[128];
        size_t n = 0;
        int k = (int)(rnd() % 12);
        for (int j = 0; j < k; j++) {
            const char *p = parts[rnd() % (sizeof parts / sizeof parts[0])];
            memcpy(s + n, p, strlen(p));
            n += strlen(p);
        }
        s[n] = '\0';
        int32_t ids[MAXIDS];
        int64_t m = enc(t, s, true, false, ids);
        assert_string_equal(dec(t, ids, m, true, buf, sizeof buf), s);
    }
    dais_tokenizer_free(t);
}

/* ---- gpt2 ----------------------------------------------------------------------------------- */

static void test_gpt2_merges_and_pretokenizer(void **state)
{
    (void)state;
    dais_tokenizer *t = gpt2_tok("default");
    ENC_EQ(t, "hello world", false, false, G_HELLO, G_SPWOR, 'l', 'd');
    /* GPT-2 regex: contractions, letters, digits, punctuation, spaces before a word. */
    /* Pre-tokens "he" "'s" " " " 42" "!": byte symbol ids equal the byte values. */
    ENC_EQ(t, "he's  42!", false, false, G_HE, '\'', 's', ' ', ' ', '4', '2', '!');
    dais_tokenizer_free(t);
}

static void test_gpt2_regexes(void **state)
{
    (void)state;
    /* Compare the pre-token boundaries through the ids of a vocabulary without merges
     * between pre-tokens: each byte is its symbol, merges only inside "hello"/" wor". */
    dais_tokenizer *d = gpt2_tok(NULL);         /* no pre key: GPT-2 regex */
    dais_tokenizer *l3 = gpt2_tok("llama-bpe"); /* Llama 3 regex + ignore_merges */
    /* "lo" is a token that no merge makes: only ignore_merges finds it. */
    ENC_EQ(d, "lo", false, false, 'l', 'o');
    ENC_EQ(l3, "lo", false, false, G_LO);
    ENC_EQ(l3, "hello", false, false, G_HELLO);
    /* Llama 3 splits digits in threes and keeps case-insensitive contractions. */
    int32_t ids[MAXIDS];
    char raw[256];
    const char *cases[] = {"12345 I'LL don't",
                           "\t\tx\n\n y",
                           "a  \n b",
                           "  trailing  ",
                           "\xC3\xA9t\xC3\xA9 \xE6\xBC\xA2\xE5\xAD\x97!!",
                           "x\r\n\r\ny",
                           "\xEF\xBB\xBFx\xC2\x85y"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t n = enc(l3, cases[i], false, false, ids);
        size_t m = raw_concat(l3, ids, n, raw);
        assert_int_equal(m, strlen(cases[i]));
        assert_memory_equal(raw, cases[i], m);
        n = enc(d, cases[i], false, false, ids);
        m = raw_concat(d, ids, n, raw);
        assert_int_equal(m, strlen(cases[i]));
        assert_memory_equal(raw, cases[i], m);
    }
    dais_tokenizer_free(d);
    dais_tokenizer_free(l3);
}

static void test_gpt2_special(void **state)
{
    (void)state;
    dais_tokenizer *t = gpt2_tok("llama3");
    /* Longest spelling first: "<|end|>" beats its prefix "<|end". */
    ENC_EQ(t, "<|end|>", false, true, G_END);
    ENC_EQ(t, "<|end", false, true, G_ENDP);
    ENC_EQ(t, "hello<|endoftext|>hello", false, true, G_HELLO, G_EOT, G_HELLO);
    ENC_EQ(t, "<|endoftext|>", true, true, G_EOT, G_EOT);
    /* Off: the same text is bytes. */
    int32_t ids[MAXIDS];
    int64_t n = enc(t, "<|end|>", false, false, ids);
    assert_true(n > 1);
    for (int64_t i = 0; i < n; i++)
        assert_true(ids[i] < 256);
    char buf[64];
    const int32_t a[] = {G_HELLO, G_EOT, G_SPWOR};
    assert_string_equal(dec(t, a, 3, false, buf, sizeof buf), "hello<|endoftext|> wor");
    assert_string_equal(dec(t, a, 3, true, buf, sizeof buf), "hello wor");
    assert_true(dais_tokenizer_is_eog(t, G_EOT));
    assert_true(dais_tokenizer_is_eog(t, G_END)); /* "<|end|>" ends a turn in chat vocabularies */
    assert_false(dais_tokenizer_is_eog(t, G_HELLO));
    assert_false(dais_tokenizer_add_bos(t)); /* gpt2 default */
    dais_tokenizer_free(t);
}

/* Every byte string survives: the raw bytes of the ids are the input, for both regexes. */
static void test_gpt2_invalid_utf8_bytes_kept(void **state)
{
    (void)state;
    dais_tokenizer *ts[2] = {gpt2_tok("default"), gpt2_tok("llama-bpe")};
    for (int k = 0; k < 2; k++) {
        for (int it = 0; it < 500; it++) {
            unsigned char s[200];
            size_t len = rnd() % sizeof s;
            for (size_t i = 0; i < len; i++) {
                uint32_t r = rnd();
                /* Mostly invalid-UTF-8-prone bytes, some ASCII and whitespace. */
                s[i] = (r & 3) == 0 ? (unsigned char)" \n\tah'1"[r % 7] : (unsigned char)(r >> 8);
            }
            int32_t ids[MAXIDS];
            char raw[MAXIDS];
            int64_t n = dais_tokenize(ts[k], (const char *)s, len, false, true, ids, MAXIDS);
            assert_true(n >= 0 && n <= MAXIDS);
            size_t m = raw_concat(ts[k], ids, n, raw);
            assert_int_equal(m, len);
            assert_memory_equal(raw, s, len);
        }
        dais_tokenizer_free(ts[k]);
    }
}

/* ---- streaming decoder ---------------------------------------------------------------------- */

static void test_detok_stream(void **state)
{
    (void)state;
    dais_tokenizer *t = gpt2_tok("default");
    dais_detok d;
    char out[64];
    dais_detok_init(&d, t, true);
    /* 🦙 = F0 9F A6 99 fed byte by byte: nothing until the last byte. */
    assert_int_equal(dais_detok_push(&d, 0xF0, out, sizeof out), 0);
    assert_int_equal(dais_detok_push(&d, 0x9F, out, sizeof out), 0);
    assert_int_equal(dais_detok_push(&d, 0xA6, out, sizeof out), 0);
    assert_int_equal(dais_detok_push(&d, 0x99, out, sizeof out), 4);
    assert_memory_equal(out, "\xF0\x9F\xA6\x99", 4);
    /* An interrupted sequence: E6 then 'a' gives U+FFFD then 'a' (WHATWG). */
    assert_int_equal(dais_detok_push(&d, 0xE6, out, sizeof out), 0);
    assert_int_equal(dais_detok_push(&d, 'a', out, sizeof out), 4);
    assert_memory_equal(out,
                        "\xEF\xBF\xBD"
                        "a",
                        4);
    /* Invalid lead bytes, overlong and surrogate starts: one U+FFFD per maximal subpart. */
    assert_int_equal(dais_detok_push(&d, 0xFF, out, sizeof out), 3);
    assert_int_equal(dais_detok_push(&d, 0xC0, out, sizeof out), 3);
    assert_int_equal(dais_detok_push(&d, 0xED, out, sizeof out), 0);
    assert_int_equal(dais_detok_push(&d, 0xA0, out, sizeof out), 6); /* ED then A0: two */
    /* Too small a buffer: error, state unchanged. */
    assert_int_equal(dais_detok_push(&d, 0xE6, out, sizeof out), 0);
    assert_int_equal(dais_detok_push(&d, G_HELLO, out, 3), DAIS_ETOOBIG);
    assert_int_equal(d.n_pending, 1);
    assert_int_equal(dais_detok_push(&d, G_HELLO, out, sizeof out), 8);
    assert_memory_equal(out, "\xEF\xBF\xBDhello", 8);
    /* Flush of an incomplete tail: one U+FFFD; then a fresh stream. */
    assert_int_equal(dais_detok_push(&d, 0xF0, out, sizeof out), 0);
    assert_int_equal(dais_detok_push(&d, 0x9F, out, sizeof out), 0);
    assert_int_equal(dais_detok_flush(&d, out, 2), DAIS_ETOOBIG);
    assert_int_equal(dais_detok_flush(&d, out, sizeof out), 3);
    assert_int_equal(dais_detok_flush(&d, out, sizeof out), 0);
    /* Control tokens: skipped, or spelled out. */
    assert_int_equal(dais_detok_push(&d, G_EOT, out, sizeof out), 0);
    dais_detok_init(&d, t, false);
    assert_int_equal(dais_detok_push(&d, G_EOT, out, sizeof out), 13);
    assert_int_equal(dais_detok_push(&d, G_N, out, sizeof out), DAIS_ERANGE);
    assert_int_equal(dais_detok_push(&d, -1, out, sizeof out), DAIS_ERANGE);
    assert_int_equal(dais_detokenize(t, (const int32_t[]){G_N}, 1, false, out, sizeof out),
                     DAIS_ERANGE);
    /* dais_detokenize reports the full length when the buffer is short. */
    const int32_t h[] = {G_HELLO, G_SPWOR};
    assert_int_equal(dais_detokenize(t, h, 2, true, out, 3), 9);
    assert_memory_equal(out, "hel", 3);
    dais_tokenizer_free(t);
}

static void test_detok_llama_prefix(void **state)
{
    (void)state;
    dais_tokenizer *t = llama_tok();
    dais_detok d;
    char out[64];
    dais_detok_init(&d, t, true);
    assert_int_equal(dais_detok_push(&d, 1, out, sizeof out), 0);     /* BOS skipped */
    assert_int_equal(dais_detok_push(&d, L_SP, out, sizeof out), 0);  /* the dummy space */
    assert_int_equal(dais_detok_push(&d, L_SPA, out, sizeof out), 2); /* later spaces stay */
    assert_memory_equal(out, " a", 2);
    dais_tokenizer_free(t);
}

/* Random token streams: every chunk is valid UTF-8 and the stream equals the one-call decode. */
static void test_detok_random_streams(void **state)
{
    (void)state;
    dais_tokenizer *t = gpt2_tok("default");
    for (int it = 0; it < 300; it++) {
        int32_t ids[64];
        int n = (int)(rnd() % 64);
        for (int i = 0; i < n; i++)
            ids[i] = (int32_t)(rnd() % G_N);
        char whole[2048], chunk[256], cat[2048];
        int64_t w = dais_detokenize(t, ids, (size_t)n, false, whole, sizeof whole);
        assert_true(w >= 0 && w < (int64_t)sizeof whole);
        dais_detok d;
        dais_detok_init(&d, t, false);
        size_t m = 0;
        for (int i = 0; i <= n; i++) {
            int k = i < n ? dais_detok_push(&d, ids[i], chunk, sizeof chunk)
                          : dais_detok_flush(&d, chunk, sizeof chunk);
            assert_true(k >= 0);
            /* Valid UTF-8: re-decoding the chunk as bytes changes nothing. */
            dais_detok v;
            dais_detok_init(&v, t, false);
            char again[1024];
            size_t a = 0;
            for (int j = 0; j < k; j++) {
                int r = dais_detok_push(&v, (unsigned char)chunk[j], again + a, sizeof again - a);
                assert_true(r >= 0);
                a += (size_t)r;
            }
            assert_int_equal(dais_detok_flush(&v, again + a, sizeof again - a), 0);
            assert_int_equal(a, (size_t)k);
            assert_memory_equal(again, chunk, (size_t)k);
            memcpy(cat + m, chunk, (size_t)k);
            m += (size_t)k;
        }
        assert_int_equal(m, (size_t)w);
        assert_memory_equal(cat, whole, m);
    }
    dais_tokenizer_free(t);
}

/* ---- validation ----------------------------------------------------------------------------- */

static void expect_reject(const dais_tokenizer_params *p, int code, const char *needle)
{
    dais_err err = {0};
    dais_tokenizer *t = dais_tokenizer_new(p, &err);
    if (t != NULL || err.code != code || strstr(err.msg, needle) == NULL)
        fprintf(stderr, "want %d containing '%s', got %d '%s'\n", code, needle, err.code, err.msg);
    assert_null(t);
    assert_int_equal(err.code, code);
    assert_non_null(strstr(err.msg, needle));
}

static void test_params_validation(void **state)
{
    (void)state;
    dais_tokenizer_params p;

    llama_params(&p);
    p.model = "bert";
    p.model_len = 4;
    expect_reject(&p, DAIS_EUNSUPPORTED, "tokenizer.ggml.model = 'bert'");
    llama_params(&p);
    p.model = NULL;
    p.model_len = 0;
    expect_reject(&p, DAIS_EUNSUPPORTED, "not supported");
    llama_params(&p);
    p.n_vocab = 0;
    expect_reject(&p, DAIS_EFORMAT, "tokenizer.ggml.tokens");
    llama_params(&p);
    p.scores = NULL;
    expect_reject(&p, DAIS_EFORMAT, "tokenizer.ggml.scores");
    llama_params(&p);
    p.bos_id = L_N;
    expect_reject(&p, DAIS_EFORMAT, "bos_token_id");
    llama_params(&p);
    p.eot_id = 1ll << 40;
    expect_reject(&p, DAIS_EFORMAT, "eot_token_id");
    llama_params(&p);
    llama_types[L_A] = 9;
    expect_reject(&p, DAIS_EFORMAT, "token_type[260] = 9");
    llama_params(&p);
    strcpy(llama_pieces[BYTE(7)], "<0xZZ>");
    expect_reject(&p, DAIS_EFORMAT, "tokens[10]");
    llama_params(&p);
    llama_scores[L_AB] = 0.0f / 0.0f;
    expect_reject(&p, DAIS_EFORMAT, "scores[263]");
    /* No byte tokens and no unknown token: text could not always be encoded. */
    llama_params(&p);
    p.unk_id = -1;
    llama_types[BYTE(0x41)] = DAIS_TOKT_NORMAL;
    expect_reject(&p, DAIS_EFORMAT, "<0x41>");
    /* 0xFFFFFFFF and negative ids mean "none". */
    llama_params(&p);
    p.pad_id = 0xFFFFFFFFll;
    p.eos_id = -1;
    dais_err err = {0};
    dais_tokenizer *t = dais_tokenizer_new(&p, &err);
    assert_non_null(t);
    assert_int_equal(dais_tokenizer_pad(t), -1);
    assert_int_equal(dais_tokenizer_eos(t), -1);
    dais_tokenizer_free(t);
    /* Without token types, <0xXX> pieces are taken as byte tokens. */
    llama_params(&p);
    p.token_types = NULL;
    t = dais_tokenizer_new(&p, &err);
    assert_non_null(t);
    ENC_EQ(t, "x", false, false, L_SP, BYTE('x'));
    dais_tokenizer_free(t);

    gpt2_params(&p, "qwen2");
    expect_reject(&p, DAIS_EUNSUPPORTED, "tokenizer.ggml.pre = 'qwen2'");
    gpt2_params(&p, NULL);
    p.merges = NULL;
    expect_reject(&p, DAIS_EFORMAT, "tokenizer.ggml.merges: missing");
    const char *bad1[] = {"h e", "hx"};
    gpt2_params(&p, NULL);
    p.merges = bad1;
    p.n_merges = 2;
    expect_reject(&p, DAIS_EFORMAT, "merges[1]: 'hx' is not two pieces");
    const char *bad2[] = {"h e", "q z"};
    p.merges = bad2;
    expect_reject(&p, DAIS_EFORMAT, "merges[1]: 'q z': the merge");
    const char *bad3[] = {"he \xE2\x82\xAC"};
    p.merges = bad3;
    p.n_merges = 1;
    expect_reject(&p, DAIS_EFORMAT, "the right piece");
    const char *dup[] = {"h e", "h e"};
    p.merges = dup;
    p.n_merges = 2;
    t = dais_tokenizer_new(&p, &err);
    assert_non_null(t); /* a repeated merge is harmless */
    dais_tokenizer_free(t);
    gpt2_params(&p, NULL);
    strcpy(gpt2_pieces['A'], "AA");
    expect_reject(&p, DAIS_EFORMAT, "byte 0x41");
    gpt2_params(&p, NULL);
    gpt2_types[3] = DAIS_TOKT_BYTE; /* a byte token must be spelled <0xXX> */
    expect_reject(&p, DAIS_EFORMAT, "tokens[3]");
}

/* Writes a GGUF with the llama test vocabulary; `tweak` changes one thing. */
typedef void (*tweak_fn)(dais_gguf_writer *w);

static dais_tokenizer *gguf_tok(tweak_fn tweak, dais_err *err)
{
    dais_tokenizer_params p;
    llama_params(&p);
    dais_gguf_writer *w = dais_gguf_writer_new();
    assert_non_null(w);
    dais_gguf_writer_set_str(w, "general.architecture", "llama");
    dais_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    dais_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", llama_ptrs, NULL, L_N);
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.scores", DAIS_GGUF_F32, llama_scores, L_N);
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", DAIS_GGUF_I32, llama_types, L_N);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (tweak != NULL) tweak(w);
    char path[] = "/tmp/dais-test-tok-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    dais_err werr = {0};
    assert_int_equal(dais_gguf_writer_write(w, path, &werr), 0);
    dais_gguf_writer_free(w);
    dais_gguf *g = dais_gguf_open(path, err);
    unlink(path);
    assert_non_null(g);
    dais_tokenizer *t = dais_tokenizer_from_gguf(g, err);
    dais_gguf_free(g);
    return t;
}

static void tw_ids_i8_u64(dais_gguf_writer *w)
{
    dais_gguf_writer_set_i8(w, "tokenizer.ggml.bos_token_id", 1);
    dais_gguf_writer_set_u64(w, "tokenizer.ggml.eos_token_id", 2);
    dais_gguf_writer_set_i32(w, "tokenizer.ggml.padding_token_id", -1);
    dais_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    dais_gguf_writer_set_u8(w, "tokenizer.ggml.add_eos_token", 1);
    dais_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", false);
}
static void tw_no_model(dais_gguf_writer *w)
{
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.model", 5);
}
static void tw_short_scores(dais_gguf_writer *w)
{
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.scores", DAIS_GGUF_F32, llama_scores, L_N - 1);
}
static void tw_types_as_strings(dais_gguf_writer *w)
{
    dais_gguf_writer_set_arr_str(w, "tokenizer.ggml.token_type", llama_ptrs, NULL, L_N);
}
static void tw_bad_type_value(dais_gguf_writer *w)
{
    int32_t ty[L_N];
    memcpy(ty, llama_types, sizeof ty);
    ty[5] = -3;
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", DAIS_GGUF_I32, ty, L_N);
}
static void tw_tokens_not_array(dais_gguf_writer *w)
{
    dais_gguf_writer_set_str(w, "tokenizer.ggml.tokens", "abc");
}
static void tw_eos_out_of_range(dais_gguf_writer *w)
{
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 100000);
}
static void tw_eos_float(dais_gguf_writer *w)
{
    dais_gguf_writer_set_f32(w, "tokenizer.ggml.eos_token_id", 2.5f);
}
static void tw_pre_number(dais_gguf_writer *w)
{
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.pre", 7);
}
static void tw_scores_i32(dais_gguf_writer *w)
{
    /* Integer scores convert exactly; accepted. */
    int32_t sc[L_N];
    for (int i = 0; i < L_N; i++)
        sc[i] = (int32_t)(llama_scores[i] > -1e6f ? llama_scores[i] : -1000000);
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.scores", DAIS_GGUF_I32, sc, L_N);
}

static void expect_gguf_reject(tweak_fn tw, const char *needle)
{
    dais_err err = {0};
    dais_tokenizer *t = gguf_tok(tw, &err);
    if (t != NULL || strstr(err.msg, needle) == NULL)
        fprintf(stderr, "want error containing '%s', got '%s'\n", needle, err.msg);
    assert_null(t);
    assert_true(err.code < 0);
    assert_non_null(strstr(err.msg, needle));
}

static void test_gguf_keys(void **state)
{
    (void)state;
    dais_err err = {0};
    dais_tokenizer *t = gguf_tok(NULL, &err);
    assert_non_null(t);
    ENC_EQ(t, "abc", true, false, 1, L_SP, L_ABC);
    dais_tokenizer_free(t);

    t = gguf_tok(tw_ids_i8_u64, &err);
    assert_non_null(t);
    assert_int_equal(dais_tokenizer_bos(t), 1);
    assert_int_equal(dais_tokenizer_eos(t), 2);
    assert_int_equal(dais_tokenizer_pad(t), -1);
    assert_false(dais_tokenizer_add_bos(t));
    assert_true(dais_tokenizer_add_eos(t));
    ENC_EQ(t, "abc", false, false, L_ABC); /* no dummy prefix */
    dais_tokenizer_free(t);

    t = gguf_tok(tw_scores_i32, &err);
    assert_non_null(t);
    dais_tokenizer_free(t);

    expect_gguf_reject(tw_no_model, "tokenizer.ggml.model");
    expect_gguf_reject(tw_short_scores, "tokenizer.ggml.scores");
    expect_gguf_reject(tw_types_as_strings, "tokenizer.ggml.token_type");
    expect_gguf_reject(tw_bad_type_value, "tokenizer.ggml.token_type[5]");
    expect_gguf_reject(tw_tokens_not_array, "tokenizer.ggml.tokens");
    expect_gguf_reject(tw_eos_out_of_range, "eos_token_id");
    expect_gguf_reject(tw_eos_float, "eos_token_id");
    expect_gguf_reject(tw_pre_number, "tokenizer.ggml.pre");

    /* A file without a tokenizer says so. */
    dais_gguf_writer *w = dais_gguf_writer_new();
    dais_gguf_writer_set_str(w, "general.architecture", "llama");
    char path[] = "/tmp/dais-test-tok-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(dais_gguf_writer_write(w, path, &err), 0);
    dais_gguf_writer_free(w);
    dais_gguf *g = dais_gguf_open(path, &err);
    unlink(path);
    assert_non_null(g);
    assert_null(dais_tokenizer_from_gguf(g, &err));
    assert_non_null(strstr(err.msg, "tokenizer.ggml.model: missing"));
    dais_gguf_free(g);
}

/* ---- threads -------------------------------------------------------------------------------- */

typedef struct thr_arg {
    const dais_tokenizer *t;
    int bad;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    const char *s = "hello world, hello<|endoftext|> \xF0\x9F\xA6\x99 12345";
    int32_t first[256], ids[256];
    int64_t n0 = dais_tokenize(a->t, s, strlen(s), true, true, first, 256);
    for (int i = 0; i < 2000; i++) {
        int64_t n = dais_tokenize(a->t, s, strlen(s), true, true, ids, 256);
        if (n != n0 || memcmp(ids, first, (size_t)n * sizeof(int32_t)) != 0) a->bad++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    dais_tokenizer *t = gpt2_tok("llama-bpe");
    pthread_t th[4];
    thr_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (thr_arg){t, 0};
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].bad, 0);
    }
    dais_tokenizer_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k_prompt),
        cmocka_unit_test(test_llama_merges),
        cmocka_unit_test(test_llama_space_inside_piece),
        cmocka_unit_test(test_llama_byte_fallback),
        cmocka_unit_test(test_llama_empty_and_capacity),
        cmocka_unit_test(test_llama_special),
        cmocka_unit_test(test_llama_decode),
        cmocka_unit_test(test_gpt2_merges_and_pretokenizer),
        cmocka_unit_test(test_gpt2_regexes),
        cmocka_unit_test(test_gpt2_special),
        cmocka_unit_test(test_gpt2_invalid_utf8_bytes_kept),
        cmocka_unit_test(test_detok_stream),
        cmocka_unit_test(test_detok_llama_prefix),
        cmocka_unit_test(test_detok_random_streams),
        cmocka_unit_test(test_params_validation),
        cmocka_unit_test(test_gguf_keys),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
