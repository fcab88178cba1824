/*
 * Tokenizer benchmark: throughput (MB/s of UTF-8 text and tokens/s, one thread) of the "llama"
 * (Llama 2 vocabulary) and "gpt2" (Llama 3 vocabulary) tokenizers on three inputs — the
 * conformance corpus (tests/tokenizer/corpus.jsonl, 2,564 strings, one dais_tokenize call
 * each), a large plain-English text generated here from a fixed seed (one call), and the same
 * text cut into its paragraphs (one call each, prompt-sized) — next to the JavaScript
 * reference encoders timed in the same run on the same inputs (bench/bench_tokenizer_ref.mjs
 * under node; needs `npm ci` in tests/tokenizer).
 *
 *   bench_tokenizer [--mb N] [--reps N] [--no-js]
 *
 * Options match the conformance test: Llama 2 without BOS, Llama 3 with special tokens parsed.
 * Each figure is the median of --reps timed passes (default 5) after a warm-up pass; the
 * vocabularies are loaded from GGUF files written at start (tests/tokenizer/vocab.h). Token
 * counts are compared with the reference's as a cross-check.
 */
#include "../tests/tokenizer/vocab.h"
#include "common/clock.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct text {
    char *p;
    size_t len;
} text;

static int reps = 5;

/* ---- inputs ------------------------------------------------------------------------------- */

static uint64_t rng = 0x853c49e6748fea9bull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)((rng >> 33) % n);
}

/* Plain English: sentences of common words with capitals, commas, quotes, numbers and
 * paragraph breaks, `bytes` long. Fixed seed: the same text every run. */
static text english(size_t bytes)
{
    static const char *w[] = {"the",
                              "of",
                              "and",
                              "to",
                              "a",
                              "in",
                              "is",
                              "it",
                              "you",
                              "that",
                              "he",
                              "was",
                              "for",
                              "on",
                              "are",
                              "with",
                              "as",
                              "his",
                              "they",
                              "be",
                              "at",
                              "one",
                              "have",
                              "this",
                              "from",
                              "or",
                              "had",
                              "by",
                              "word",
                              "but",
                              "what",
                              "some",
                              "we",
                              "can",
                              "out",
                              "other",
                              "were",
                              "all",
                              "there",
                              "when",
                              "up",
                              "use",
                              "your",
                              "how",
                              "said",
                              "an",
                              "each",
                              "she",
                              "which",
                              "do",
                              "their",
                              "time",
                              "if",
                              "will",
                              "way",
                              "about",
                              "many",
                              "then",
                              "them",
                              "write",
                              "would",
                              "like",
                              "so",
                              "these",
                              "her",
                              "long",
                              "make",
                              "thing",
                              "see",
                              "him",
                              "two",
                              "has",
                              "look",
                              "more",
                              "day",
                              "could",
                              "go",
                              "come",
                              "did",
                              "number",
                              "sound",
                              "most",
                              "people",
                              "my",
                              "over",
                              "know",
                              "water",
                              "than",
                              "call",
                              "first",
                              "who",
                              "may",
                              "down",
                              "side",
                              "been",
                              "now",
                              "find",
                              "new",
                              "work",
                              "part",
                              "take",
                              "get",
                              "place",
                              "made",
                              "live",
                              "where",
                              "after",
                              "back",
                              "little",
                              "only",
                              "round",
                              "man",
                              "year",
                              "came",
                              "show",
                              "every",
                              "good",
                              "give",
                              "our",
                              "under",
                              "name",
                              "very",
                              "through",
                              "just",
                              "form",
                              "sentence",
                              "great",
                              "think",
                              "help",
                              "line",
                              "before",
                              "turn",
                              "cause",
                              "mean",
                              "move",
                              "right",
                              "boy",
                              "old",
                              "same",
                              "tell",
                              "does",
                              "set",
                              "three",
                              "want",
                              "air",
                              "well",
                              "also",
                              "play",
                              "small",
                              "end",
                              "put",
                              "home",
                              "read",
                              "hand",
                              "port",
                              "large",
                              "spell",
                              "add",
                              "even",
                              "land",
                              "here",
                              "must",
                              "big",
                              "high",
                              "such",
                              "follow",
                              "act",
                              "why",
                              "ask",
                              "men",
                              "change",
                              "went",
                              "light",
                              "kind",
                              "off",
                              "need",
                              "house",
                              "picture",
                              "try",
                              "again",
                              "animal",
                              "point",
                              "mother",
                              "world",
                              "near",
                              "build",
                              "self",
                              "earth",
                              "father",
                              "head",
                              "stand",
                              "own",
                              "page",
                              "should",
                              "country",
                              "found",
                              "answer",
                              "school",
                              "grow",
                              "study",
                              "still",
                              "learn",
                              "plant",
                              "cover",
                              "food",
                              "sun",
                              "four",
                              "between",
                              "state",
                              "keep",
                              "eye",
                              "never",
                              "last",
                              "thought",
                              "city",
                              "tree",
                              "cross",
                              "farm",
                              "hard",
                              "start",
                              "might",
                              "story",
                              "saw",
                              "far",
                              "sea",
                              "draw",
                              "left",
                              "late",
                              "run",
                              "while",
                              "press",
                              "close",
                              "night",
                              "real",
                              "life",
                              "few",
                              "north",
                              "beautiful",
                              "government",
                              "understanding",
                              "relationship",
                              "responsibility",
                              "nevertheless",
                              "extraordinary"};
    static const char *names[] = {"Lily",     "Tom",       "Sarah",   "London", "Monday",
                                  "December", "Mr. Brown", "America", "Paris",  "Elizabeth"};
    text t = {malloc(bytes + 256), 0};
    while (t.len < bytes) {
        int n = 4 + (int)rnd(18);
        bool quote = rnd(12) == 0;
        if (quote) t.p[t.len++] = '"';
        for (int i = 0; i < n; i++) {
            const char *x = rnd(25) == 0 ? names[rnd(10)] : w[rnd(sizeof w / sizeof w[0])];
            size_t l = strlen(x);
            if (rnd(60) == 0) {
                t.len += (size_t)snprintf(t.p + t.len, 16, "%u", rnd(100000));
            } else {
                memcpy(t.p + t.len, x, l);
                if (i == 0 && x[0] >= 'a' && x[0] <= 'z') t.p[t.len] = (char)(x[0] - 'a' + 'A');
                t.len += l;
            }
            if (i + 1 < n) {
                if (rnd(9) == 0) t.p[t.len++] = ',';
                t.p[t.len++] = ' ';
            }
        }
        t.p[t.len++] = ".!?."[rnd(4)];
        if (quote) t.p[t.len++] = '"';
        if (rnd(7) == 0) {
            t.p[t.len++] = '\n';
            t.p[t.len++] = '\n';
        } else {
            t.p[t.len++] = ' ';
        }
    }
    t.p[t.len] = '\0';
    return t;
}

/* The paragraphs of `t` (split after each "\n\n", which stays with its paragraph). */
static text *paragraphs(const text *t, size_t *n)
{
    size_t cap = 1024;
    text *p = malloc(cap * sizeof(text));
    *n = 0;
    for (size_t i = 0, start = 0; i < t->len; i++) {
        bool end = i + 1 == t->len || (i > 0 && t->p[i] == '\n' && t->p[i - 1] == '\n');
        if (!end) continue;
        if (*n == cap) p = realloc(p, (cap *= 2) * sizeof(text));
        p[(*n)++] = (text){t->p + start, i + 1 - start};
        start = i + 1;
    }
    return p;
}

static text *load_corpus(size_t *n, size_t *bytes)
{
    char path[4096];
    char *all = tv_read_file(tv_path(path, sizeof path, tv_data_dir(), "corpus.jsonl"), NULL);
    if (all == NULL) return NULL;
    size_t cap = 4096;
    text *c = malloc(cap * sizeof(text));
    *n = *bytes = 0;
    for (char *line = strtok(all, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *j = json_loads(line, JSON_ALLOW_NUL, &je);
        json_t *s = json_array_get(j, 1);
        if (s == NULL) {
            json_decref(j);
            continue;
        }
        if (*n == cap) c = realloc(c, (cap *= 2) * sizeof(text));
        c[*n].len = json_string_length(s);
        c[*n].p = malloc(c[*n].len + 1);
        memcpy(c[*n].p, json_string_value(s), c[*n].len + 1);
        *bytes += c[*n].len;
        (*n)++;
        json_decref(j);
    }
    free(all);
    return c;
}

/* ---- timing ------------------------------------------------------------------------------- */

static int32_t *ids;
static int64_t ids_cap;

static int64_t encode_all(const dais_tokenizer *t, const text *in, size_t n, bool special)
{
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t k = dais_tokenize(t, in[i].p, in[i].len, false, special, ids, ids_cap);
        if (k < 0 || k > ids_cap) {
            fprintf(stderr, "bench_tokenizer: dais_tokenize failed (%lld)\n", (long long)k);
            exit(1);
        }
        total += k;
    }
    return total;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of `reps` passes after a warm-up; *tokens gets one pass's token count. */
static double time_encode(const dais_tokenizer *t, const text *in, size_t n, bool special,
                          int64_t *tokens)
{
    double s[64];
    int r = reps < 64 ? reps : 64;
    *tokens = encode_all(t, in, n, special);
    for (int i = 0; i < r; i++) {
        uint64_t t0 = dais_now_ns();
        encode_all(t, in, n, special);
        s[i] = (double)(dais_now_ns() - t0) * 1e-9;
    }
    qsort(s, (size_t)r, sizeof s[0], cmp_double);
    return s[r / 2];
}

typedef struct result {
    const char *vocab, *input;
    double bytes, tokens, seconds;
    bool have;
} result;

int main(int argc, char **argv)
{
    double mb = 1.0;
    bool js = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mb") == 0 && i + 1 < argc) {
            mb = atof(argv[++i]);
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--no-js") == 0) {
            js = false;
        } else {
            fprintf(stderr, "usage: %s [--mb N] [--reps N] [--no-js]\n", argv[0]);
            return 2;
        }
    }
    if (mb <= 0 || mb > 512 || reps < 1) {
        fprintf(stderr, "bench_tokenizer: --mb must be in (0, 512], --reps >= 1\n");
        return 2;
    }

    dais_err err = {0};
    dais_tokenizer *tok[2];
    const char *vocab[2] = {"llama2", "llama3"};
    for (int v = 0; v < 2; v++) {
        uint64_t t0 = dais_now_ns();
        tok[v] = tv_load_real(vocab[v], NULL, 0, &err);
        if (tok[v] == NULL) {
            fprintf(stderr, "bench_tokenizer: %s vocabulary: %s\n", vocab[v], err.msg);
            return 1;
        }
        fprintf(stderr, "%s: GGUF written and tokenizer loaded in %.0f ms\n", vocab[v],
                (double)(dais_now_ns() - t0) * 1e-6);
    }
    size_t n_corpus, corpus_bytes;
    text *corpus = load_corpus(&n_corpus, &corpus_bytes);
    if (corpus == NULL) {
        fprintf(stderr, "bench_tokenizer: cannot read %s/corpus.jsonl\n", tv_data_dir());
        return 1;
    }
    text eng = english((size_t)(mb * 1048576.0));
    ids_cap = (int64_t)eng.len + 1024;
    ids = malloc((size_t)ids_cap * sizeof(int32_t));

    size_t n_par;
    text *par = paragraphs(&eng, &n_par);
    static const char *inputs[3] = {"corpus", "english", "paragraphs"};
    result res[2][3][2] = {0}; /* [vocab][input][c, js] */
    for (int v = 0; v < 2; v++) {
        int64_t tk;
        double s = time_encode(tok[v], corpus, n_corpus, v == 1, &tk);
        res[v][0][0] = (result){vocab[v], inputs[0], (double)corpus_bytes, (double)tk, s, true};
        s = time_encode(tok[v], &eng, 1, v == 1, &tk);
        res[v][1][0] = (result){vocab[v], inputs[1], (double)eng.len, (double)tk, s, true};
        s = time_encode(tok[v], par, n_par, v == 1, &tk);
        res[v][2][0] = (result){vocab[v], inputs[2], (double)eng.len, (double)tk, s, true};
    }

    if (js) {
        char tmp[] = "/tmp/dais-bench-english-XXXXXX";
        int fd = mkstemp(tmp);
        FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (f == NULL || fwrite(eng.p, 1, eng.len, f) != eng.len || fclose(f) != 0) {
            fprintf(stderr, "bench_tokenizer: cannot write %s\n", tmp);
            return 1;
        }
        char script[4096], cpath[4096], cmd[12288];
        tv_path(script, sizeof script, tv_data_dir(), "../../bench/bench_tokenizer_ref.mjs");
        tv_path(cpath, sizeof cpath, tv_data_dir(), "corpus.jsonl");
        snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s' %d", script, tmp, cpath, reps);
        fprintf(stderr, "running the JavaScript references: %s\n", cmd);
        FILE *p = popen(cmd, "r");
        char line[1024];
        while (p != NULL && fgets(line, sizeof line, p) != NULL) {
            json_error_t je;
            json_t *j = json_loads(line, 0, &je);
            const char *vv = json_string_value(json_object_get(j, "vocab"));
            const char *in = json_string_value(json_object_get(j, "input"));
            int k = 0;
            while (in != NULL && k < 3 && strcmp(in, inputs[k]) != 0)
                k++;
            if (vv != NULL && k < 3) {
                int v = strcmp(vv, "llama3") == 0;
                res[v][k][1] = (result){vocab[v],
                                        inputs[k],
                                        json_number_value(json_object_get(j, "bytes")),
                                        json_number_value(json_object_get(j, "tokens")),
                                        json_number_value(json_object_get(j, "seconds")),
                                        true};
            }
            json_decref(j);
        }
        int st = p != NULL ? pclose(p) : -1;
        unlink(tmp);
        if (st != 0)
            fprintf(stderr, "bench_tokenizer: the JavaScript references did not run (node "
                            "missing, or run `npm ci` in tests/tokenizer); C figures only\n");
    }

    printf("tokenizer throughput, 1 thread (median of %d passes)\n", reps);
    printf("%-7s %-10s %7s %9s | %9s %11s | %9s %11s | %7s\n", "vocab", "input", "MB", "tokens",
           "C MB/s", "C tok/s", "JS MB/s", "JS tok/s", "C/JS");
    int bad = 0;
    for (int v = 0; v < 2; v++) {
        for (int k = 0; k < 3; k++) {
            result *c = &res[v][k][0], *r = &res[v][k][1];
            double cmbs = c->bytes / 1048576.0 / c->seconds;
            printf("%-7s %-10s %7.3f %9.0f | %9.2f %11.0f |", c->vocab, c->input,
                   c->bytes / 1048576.0, c->tokens, cmbs, c->tokens / c->seconds);
            if (r->have) {
                double rmbs = r->bytes / 1048576.0 / r->seconds;
                printf(" %9.2f %11.0f | %6.1fx\n", rmbs, r->tokens / r->seconds, cmbs / rmbs);
                if (r->tokens != c->tokens) {
                    fprintf(stderr, "%s %s: %0.f tokens here, %0.f in the reference\n", c->vocab,
                            c->input, c->tokens, r->tokens);
                    bad = 1;
                }
            } else {
                printf(" %9s %11s | %7s\n", "-", "-", "-");
            }
        }
    }
    for (size_t i = 0; i < n_corpus; i++)
        free(corpus[i].p);
    free(corpus);
    free(par);
    free(eng.p);
    free(ids);
    dais_tokenizer_free(tok[0]);
    dais_tokenizer_free(tok[1]);
    return bad;
}
