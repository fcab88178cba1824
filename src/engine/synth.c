/*
 * Synthetic Llama GGUF writer (see synth.h): the vocabulary builder, the seeded weight
 * generator (parallel over rows on a thread pool, quantized with dais_quantize_row), and the
 * metadata a llama-architecture file carries.
 */
#include "engine/synth.h"

#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPACE         "\xe2\x96\x81" /* ▁ U+2581, SentencePiece's word-start marker */
#define N_BYTE_TOKENS 256
#define N_SPECIAL     3
#define MIN_VOCAB     (N_SPECIAL + N_BYTE_TOKENS + 3)
#define MAX_PIECE     32

/* ============================================================================================
 * Vocabulary
 * ========================================================================================== */

static const char *const words[] = {
    "the",      "and",     "to",       "of",       "a",       "in",       "is",       "it",
    "you",      "that",    "he",       "was",      "for",     "on",       "are",      "with",
    "as",       "his",     "they",     "be",       "at",      "one",      "have",     "this",
    "from",     "or",      "had",      "by",       "not",     "word",     "but",      "what",
    "some",     "we",      "can",      "out",      "other",   "were",     "all",      "there",
    "when",     "up",      "use",      "your",     "how",     "said",     "an",       "each",
    "she",      "which",   "do",       "their",    "time",    "if",       "will",     "way",
    "about",    "many",    "then",     "them",     "would",   "write",    "like",     "so",
    "these",    "her",     "long",     "make",     "thing",   "see",      "him",      "two",
    "has",      "look",    "more",     "day",      "could",   "go",       "come",     "did",
    "number",   "sound",   "no",       "most",     "people",  "my",       "over",     "know",
    "water",    "than",    "call",     "first",    "who",     "may",      "down",     "side",
    "been",     "now",     "find",     "any",      "new",     "work",     "part",     "take",
    "get",      "place",   "made",     "live",     "where",   "after",    "back",     "little",
    "only",     "round",   "man",      "year",     "came",    "show",     "every",    "good",
    "me",       "give",    "our",      "under",    "name",    "very",     "through",  "just",
    "form",     "great",   "think",    "say",      "help",    "low",      "line",     "before",
    "turn",     "cause",   "same",     "mean",     "move",    "right",    "boy",      "old",
    "too",      "does",    "tell",     "sentence", "set",     "three",    "want",     "air",
    "well",     "also",    "play",     "small",    "end",     "put",      "home",     "read",
    "hand",     "port",    "large",    "spell",    "add",     "even",     "land",     "here",
    "must",     "big",     "high",     "such",     "follow",  "act",      "why",      "ask",
    "men",      "change",  "went",     "light",    "kind",    "off",      "need",     "house",
    "picture",  "try",     "us",       "again",    "animal",  "point",    "mother",   "world",
    "near",     "build",   "self",     "earth",    "father",  "head",     "stand",    "own",
    "page",     "should",  "country",  "found",    "answer",  "school",   "grow",     "study",
    "still",    "learn",   "plant",    "cover",    "food",    "sun",      "four",     "thought",
    "let",      "keep",    "eye",      "never",    "last",    "door",     "between",  "city",
    "tree",     "cross",   "since",    "hard",     "start",   "might",    "story",    "saw",
    "far",      "sea",     "draw",     "left",     "late",    "run",      "while",    "press",
    "close",    "night",   "real",     "life",     "few",     "stop",     "open",     "seem",
    "together", "next",    "white",    "children", "begin",   "got",      "walk",     "example",
    "ease",     "paper",   "often",    "always",   "music",   "those",    "both",     "mark",
    "book",     "letter",  "until",    "mile",     "river",   "car",      "feet",     "care",
    "second",   "group",   "carry",    "took",     "rain",    "eat",      "room",     "friend",
    "began",    "idea",    "fish",     "mountain", "north",   "once",     "base",     "hear",
    "horse",    "cut",     "sure",     "watch",    "color",   "face",     "wood",     "main",
    "enough",   "plain",   "girl",     "usual",    "young",   "ready",    "above",    "ever",
    "red",      "list",    "though",   "feel",     "talk",    "bird",     "soon",     "body",
    "dog",      "family",  "direct",   "pose",     "leave",   "song",     "measure",  "state",
    "product",  "black",   "short",    "numeral",  "class",   "wind",     "question", "happen",
    "complete", "ship",    "area",     "half",     "rock",    "order",    "fire",     "south",
    "problem",  "piece",   "told",     "knew",     "pass",    "farm",     "top",      "whole",
    "king",     "size",    "heard",    "best",     "hour",    "better",   "true",     "during",
    "hundred",  "am",      "remember", "step",     "early",   "hold",     "west",     "ground",
    "interest", "reach",   "fast",     "five",     "sing",    "listen",   "six",      "table",
    "travel",   "less",    "morning",  "ten",      "simple",  "several",  "vowel",    "toward",
    "war",      "lay",     "against",  "pattern",  "slow",    "center",   "love",     "person",
    "money",    "serve",   "appear",   "road",     "map",     "science",  "rule",     "govern",
    "pull",     "cold",    "notice",   "voice",    "fall",    "power",    "town",     "fine",
    "certain",  "fly",     "unit",     "lead",     "cry",     "dark",     "machine",  "note",
    "wait",     "plan",    "figure",   "star",     "box",     "noun",     "field",    "rest",
    "correct",  "able",    "pound",    "done",     "beauty",  "drive",    "stood",    "contain",
    "front",    "teach",   "week",     "final",    "gave",    "green",    "oh",       "quick",
    "develop",  "sleep",   "warm",     "free",     "minute",  "strong",   "special",  "mind",
    "behind",   "clear",   "tail",     "produce",  "fact",    "street",   "inch",     "lot",
    "nothing",  "course",  "stay",     "wheel",    "full",    "force",    "blue",     "object",
    "decide",   "surface", "deep",     "moon",     "island",  "foot",     "yet",      "busy",
    "test",     "record",  "boat",     "common",   "gold",    "possible", "plane",    "age",
    "dry",      "wonder",  "laugh",    "thousand", "ago",     "ran",      "check",    "game",
    "shape",    "yes",     "hot",      "miss",     "brought", "heat",     "snow",     "bed",
    "bring",    "sit",     "perhaps",  "fill",     "east",    "weight",   "language", "among",
    "happy",    "ball",    "park",     "upon",     "named",   "loved",    "wanted",   "mom",
    "sad",      "sorry",   "fun",      "cat",
};

static const char punct[] = ".,!?'\"-:;()";

typedef struct vocab {
    char **tok;    /* (n) NUL-terminated pieces, owned */
    float *score;  /* (n) */
    int32_t *type; /* (n) llama token types: 1 normal, 2 unknown, 3 control, 6 byte */
    int32_t n, cap;
    uint64_t *set;    /* open-addressing hash set of piece hashes+1 (for de-duplication) */
    int32_t *set_idx; /* token index per slot */
    size_t set_cap;   /* power of two, > 2 * cap */
} vocab;

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Adds a piece unless the vocabulary is full or holds it already. -1 on out of memory. */
static int vocab_add(vocab *v, const char *piece, float score, int32_t type)
{
    if (v->n >= v->cap) return 0;
    uint64_t h = fnv1a(piece) | 1;
    size_t mask = v->set_cap - 1, i = (size_t)h & mask;
    while (v->set[i] != 0) {
        if (v->set[i] == h && strcmp(v->tok[v->set_idx[i]], piece) == 0) return 0;
        i = (i + 1) & mask;
    }
    char *copy = strdup(piece);
    if (copy == NULL) return -1;
    v->set[i] = h;
    v->set_idx[i] = v->n;
    v->tok[v->n] = copy;
    v->score[v->n] = score;
    v->type[v->n] = type;
    v->n++;
    return 0;
}

static void vocab_free(vocab *v)
{
    for (int32_t i = 0; i < v->n; i++)
        free(v->tok[i]);
    free(v->tok);
    free(v->score);
    free(v->type);
    free(v->set);
    free(v->set_idx);
}

/* Normal pieces get scores 0, -1, -2 … in the order added (earlier = merged first). */
static int add_piece(vocab *v, const char *piece)
{
    return vocab_add(v, piece, -(float)(v->n - N_SPECIAL - N_BYTE_TOKENS), 1);
}

/* All strings of `len` lowercase letters (with the ▁ prefix when `space`), in order. */
static int add_letter_strings(vocab *v, int len, bool space)
{
    int idx[MAX_PIECE] = {0};
    char buf[MAX_PIECE + 8];
    for (;;) {
        if (v->n >= v->cap) return 0;
        size_t o = 0;
        if (space) {
            memcpy(buf, SPACE, 3);
            o = 3;
        }
        for (int i = 0; i < len; i++)
            buf[o++] = (char)('a' + idx[i]);
        buf[o] = '\0';
        if (add_piece(v, buf)) return -1;
        int i = len - 1;
        while (i >= 0 && ++idx[i] == 26)
            idx[i--] = 0;
        if (i < 0) return 0;
    }
}

static int build_vocab(vocab *v, int32_t n_vocab)
{
    memset(v, 0, sizeof *v);
    v->cap = n_vocab;
    v->set_cap = 1;
    while (v->set_cap < (size_t)n_vocab * 2 + 2)
        v->set_cap <<= 1;
    v->tok = calloc((size_t)n_vocab, sizeof *v->tok);
    v->score = calloc((size_t)n_vocab, sizeof *v->score);
    v->type = calloc((size_t)n_vocab, sizeof *v->type);
    v->set = calloc(v->set_cap, sizeof *v->set);
    v->set_idx = calloc(v->set_cap, sizeof *v->set_idx);
    if (!v->tok || !v->score || !v->type || !v->set || !v->set_idx) return -1;
    if (vocab_add(v, "<unk>", 0.0f, 2) || vocab_add(v, "<s>", 0.0f, 3) ||
        vocab_add(v, "</s>", 0.0f, 3))
        return -1;
    char buf[MAX_PIECE + 8];
    for (int b = 0; b < N_BYTE_TOKENS; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        if (vocab_add(v, buf, 0.0f, 6)) return -1;
    }
    if (add_piece(v, SPACE)) return -1;
    for (int ch = 'a'; ch <= 'z'; ch++) {
        char s[2] = {(char)ch, 0};
        if (add_piece(v, s)) return -1;
    }
    for (const char *p = punct; *p; p++) {
        char s[2] = {*p, 0};
        if (add_piece(v, s)) return -1;
    }
    for (int ch = 'A'; ch <= 'Z'; ch++) {
        char s[2] = {(char)ch, 0};
        if (add_piece(v, s)) return -1;
    }
    for (int ch = '0'; ch <= '9'; ch++) {
        char s[2] = {(char)ch, 0};
        if (add_piece(v, s)) return -1;
    }
    /* Words: ▁w[0..i] for every prefix, shortest first across all words so that the prefixes
     * that merge first also score highest; then the capitalised forms. */
    for (int cap = 0; cap < 2; cap++) {
        for (size_t len = 1; len <= 12; len++) {
            for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
                size_t wl = strlen(words[w]);
                if (len > wl) continue;
                memcpy(buf, SPACE, 3);
                memcpy(buf + 3, words[w], len);
                buf[3 + len] = '\0';
                if (cap) buf[3] = (char)(buf[3] - 'a' + 'A');
                if (add_piece(v, buf)) return -1;
            }
        }
    }
    /* Word-internal letter strings, then ▁-prefixed ones, growing in length. */
    for (int len = 2; len <= 6 && v->n < v->cap; len++)
        if (add_letter_strings(v, len, false) || add_letter_strings(v, len, true)) return -1;
    return v->n == n_vocab ? 0 : -1;
}

/* ============================================================================================
 * Weights
 * ========================================================================================== */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

typedef struct gen_job {
    uint32_t type;
    int64_t n_in, n_out;
    size_t row_bytes;
    uint64_t seed; /* the tensor's seed */
    float lo, hi;  /* uniform range */
    uint8_t *out;  /* (n_out, row_bytes) */
    float **row;   /* (nth) scratch rows of n_in floats */
} gen_job;

static void gen_rows(void *arg, int ith, int nth)
{
    gen_job *j = arg;
    int64_t r0 = j->n_out * ith / nth, r1 = j->n_out * (ith + 1) / nth;
    float *row = j->row[ith];
    float span = j->hi - j->lo;
    for (int64_t r = r0; r < r1; r++) {
        uint64_t s = splitmix64(j->seed ^ splitmix64((uint64_t)r)) | 1;
        for (int64_t i = 0; i < j->n_in; i++) {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            uint64_t x = s * 0x2545F4914F6CDD1Dull;
            row[i] = j->lo + span * ((float)(x >> 40) * (1.0f / 16777216.0f));
        }
        dais_quantize_row(j->type, row, j->out + (size_t)r * j->row_bytes, j->n_in);
    }
}

typedef struct synth {
    const dais_synth_params *p;
    dais_gguf_writer *w;
    dais_pool *pool;
    float **rows;
    uint8_t *buf; /* the largest tensor's bytes, reused */
    size_t buf_cap;
} synth;

/* Generates tensor `name` of shape (n_in, n_out) (n_out = 0: a vector) with values uniform in
 * [lo, hi] and adds it to the writer. */
static int add_tensor(synth *s, const char *name, uint32_t type, int64_t n_in, int64_t n_out,
                      float lo, float hi, dais_err *err)
{
    size_t rb = dais_dtype_row_bytes(type, (uint64_t)n_in, NULL);
    int64_t rows = n_out ? n_out : 1;
    if (rb == 0)
        return dais_err_set(err, DAIS_EINVAL,
                            "tensor %s: %lld elements per row is not a multiple of the %s block "
                            "size (%u)",
                            name, (long long)n_in, dais_dtype_name(type),
                            dais_dtype_get(type) ? dais_dtype_get(type)->block : 0);
    gen_job j = {
        .type = type,
        .n_in = n_in,
        .n_out = rows,
        .row_bytes = rb,
        .seed = splitmix64(s->p->seed ^ fnv1a(name)),
        .lo = lo,
        .hi = hi,
        .out = s->buf,
        .row = s->rows,
    };
    if ((size_t)rows * rb > s->buf_cap)
        return dais_err_set(err, DAIS_EINTERNAL, "tensor %s larger than the scratch", name);
    dais_pool_run(s->pool, gen_rows, &j);
    uint64_t ne[2] = {(uint64_t)n_in, (uint64_t)rows};
    int rc = dais_gguf_writer_add_tensor(s->w, name, type, n_out ? 2 : 1, ne, s->buf);
    if (rc) return dais_err_set(err, rc, "adding tensor %s: %s", name, dais_strerror(rc));
    return 0;
}

/* llama.cpp's general.file_type for a model whose matrices are all `type`. */
static int file_type(uint32_t type)
{
    switch (type) {
    case DAIS_F32:
        return 0;
    case DAIS_F16:
        return 1;
    case DAIS_Q4_0:
        return 2;
    case DAIS_Q8_0:
        return 7;
    case DAIS_Q4_K:
        return 15;
    case DAIS_Q6_K:
        return 18;
    case DAIS_BF16:
        return 32;
    default:
        return -1;
    }
}

void dais_synth_params_default(dais_synth_params *p)
{
    memset(p, 0, sizeof *p);
    p->dim = 64;
    p->n_layers = 2;
    p->n_heads = 4;
    p->n_kv_heads = 2;
    p->ffn_dim = 160;
    p->n_vocab = 320;
    p->n_ctx = 256;
    p->type = DAIS_F32;
    p->seed = 1;
    p->rope_base = 10000.0f;
    p->rope_scaling = DAIS_ROPE_SCALING_NONE;
    p->rope_scale_factor = 1.0f;
    p->rope_low_freq_factor = 1.0f;
    p->rope_high_freq_factor = 4.0f;
    p->n_threads = 1;
}

static int check_params(const dais_synth_params *p, dais_err *err)
{
    const dais_dtype_info *ti = dais_dtype_get(p->type);
    if (ti == NULL || !ti->compute)
        return dais_err_set(err, DAIS_EINVAL,
                            "type %s cannot be computed (use f32, f16, bf16, "
                            "q8_0, q4_0, q4_k or q6_k)",
                            dais_dtype_name(p->type));
    if (p->dim < 2 || p->dim > DAIS_MODEL_MAX_DIM || p->n_layers < 1 ||
        p->n_layers > DAIS_MODEL_MAX_LAYERS || p->n_heads < 1 || p->n_heads > p->dim ||
        p->n_kv_heads < 1 || p->n_kv_heads > p->n_heads || p->ffn_dim < 1 ||
        p->ffn_dim > DAIS_MODEL_MAX_FFN || p->n_ctx < 1 || p->n_ctx > DAIS_MODEL_MAX_CTX ||
        p->n_vocab > 1000000 || p->n_threads < 1 || p->n_threads > 1024)
        return dais_err_set(err, DAIS_EINVAL, "shape out of range");
    if (p->n_vocab < MIN_VOCAB)
        return dais_err_set(err, DAIS_EINVAL,
                            "vocabulary of %d tokens is too small (at least %d: "
                            "3 control tokens, 256 byte tokens and a few pieces)",
                            p->n_vocab, MIN_VOCAB);
    if (p->dim % p->n_heads != 0 || (p->dim / p->n_heads) % 2 != 0)
        return dais_err_set(err, DAIS_EINVAL,
                            "dim %d must be n_heads (%d) times an even head "
                            "dimension",
                            p->dim, p->n_heads);
    if (p->n_heads % p->n_kv_heads != 0)
        return dais_err_set(err, DAIS_EINVAL, "heads (%d) must be a multiple of kv-heads (%d)",
                            p->n_heads, p->n_kv_heads);
    if (!(p->rope_base >= 1.0f) || !isfinite(p->rope_base))
        return dais_err_set(err, DAIS_EINVAL, "rope base must be >= 1");
    int32_t dims[2] = {p->dim, p->ffn_dim};
    for (int i = 0; i < 2; i++)
        if (dims[i] % (int32_t)ti->block != 0)
            return dais_err_set(err, DAIS_EINVAL,
                                "%s %d is not a multiple of the %s block size "
                                "(%u)",
                                i == 0 ? "dim" : "ffn", dims[i], ti->name, ti->block);
    return 0;
}

int dais_synth_write(const dais_synth_params *p, const char *path, dais_err *err)
{
    dais_err_clear(err);
    int rc = check_params(p, err);
    if (rc) return rc;
    int32_t hd = p->dim / p->n_heads, kvd = hd * p->n_kv_heads;
    vocab v;
    synth s = {.p = p};
    if (build_vocab(&v, p->n_vocab)) {
        rc = dais_err_set(err, DAIS_ENOMEM, "out of memory building the vocabulary");
        goto out;
    }
    s.w = dais_gguf_writer_new();
    s.pool = dais_pool_new(p->n_threads);
    s.rows = calloc((size_t)p->n_threads, sizeof *s.rows);
    /* The largest tensor: the embedding / output (n_vocab rows of dim) or an FFN matrix. */
    size_t rb_dim = dais_dtype_row_bytes(p->type, (uint64_t)p->dim, NULL);
    size_t rb_ffn = dais_dtype_row_bytes(p->type, (uint64_t)p->ffn_dim, NULL);
    size_t big = rb_dim * (size_t)(p->n_vocab > p->ffn_dim ? p->n_vocab : p->ffn_dim);
    if (rb_ffn * (size_t)p->dim > big) big = rb_ffn * (size_t)p->dim;
    if (big < sizeof(float) * (size_t)p->dim) big = sizeof(float) * (size_t)p->dim;
    s.buf_cap = big;
    s.buf = malloc(big);
    if (s.w == NULL || s.pool == NULL || s.rows == NULL || s.buf == NULL) {
        rc = dais_err_set(err, DAIS_ENOMEM, "out of memory");
        goto out;
    }
    int64_t max_in = p->dim > p->ffn_dim ? p->dim : p->ffn_dim;
    for (int i = 0; i < p->n_threads; i++)
        if ((s.rows[i] = malloc((size_t)max_in * sizeof(float))) == NULL) {
            rc = dais_err_set(err, DAIS_ENOMEM, "out of memory");
            goto out;
        }

    /* ---- metadata ---- */
    char name[128];
    snprintf(name, sizeof name, "dais-synth-%dx%d-%s", p->dim, p->n_layers,
             dais_dtype_name(p->type));
    rc = dais_gguf_writer_set_str(s.w, "general.architecture", "llama");
    rc = rc ? rc : dais_gguf_writer_set_str(s.w, "general.name", name);
    if (file_type(p->type) >= 0)
        rc = rc ? rc
                : dais_gguf_writer_set_u32(s.w, "general.file_type", (uint32_t)file_type(p->type));
    rc = rc ? rc : dais_gguf_writer_set_u32(s.w, "llama.context_length", (uint32_t)p->n_ctx);
    rc = rc ? rc : dais_gguf_writer_set_u32(s.w, "llama.embedding_length", (uint32_t)p->dim);
    rc = rc ? rc : dais_gguf_writer_set_u32(s.w, "llama.block_count", (uint32_t)p->n_layers);
    rc = rc ? rc : dais_gguf_writer_set_u32(s.w, "llama.feed_forward_length", (uint32_t)p->ffn_dim);
    rc =
        rc ? rc : dais_gguf_writer_set_u32(s.w, "llama.attention.head_count", (uint32_t)p->n_heads);
    rc = rc ? rc
            : dais_gguf_writer_set_u32(s.w, "llama.attention.head_count_kv",
                                       (uint32_t)p->n_kv_heads);
    rc = rc ? rc : dais_gguf_writer_set_u32(s.w, "llama.rope.dimension_count", (uint32_t)hd);
    rc = rc ? rc : dais_gguf_writer_set_f32(s.w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    rc = rc ? rc : dais_gguf_writer_set_f32(s.w, "llama.rope.freq_base", p->rope_base);
    rc = rc ? rc : dais_gguf_writer_set_u32(s.w, "llama.vocab_size", (uint32_t)p->n_vocab);
    if (p->rope_scaling == DAIS_ROPE_SCALING_LINEAR ||
        p->rope_scaling == DAIS_ROPE_SCALING_LLAMA3) {
        bool l3 = p->rope_scaling == DAIS_ROPE_SCALING_LLAMA3;
        rc =
            rc ? rc
               : dais_gguf_writer_set_str(s.w, "llama.rope.scaling.type", l3 ? "llama3" : "linear");
        rc = rc ? rc
                : dais_gguf_writer_set_f32(s.w, "llama.rope.scaling.factor", p->rope_scale_factor);
        if (l3) {
            rc = rc ? rc
                    : dais_gguf_writer_set_f32(s.w, "llama.rope.scaling.low_freq_factor",
                                               p->rope_low_freq_factor);
            rc = rc ? rc
                    : dais_gguf_writer_set_f32(s.w, "llama.rope.scaling.high_freq_factor",
                                               p->rope_high_freq_factor);
            rc = rc ? rc
                    : dais_gguf_writer_set_u32(s.w, "llama.rope.scaling.original_context_length",
                                               (uint32_t)p->rope_orig_ctx);
        }
    }
    rc = rc ? rc : dais_gguf_writer_set_str(s.w, "tokenizer.ggml.model", "llama");
    rc = rc ? rc
            : dais_gguf_writer_set_arr_str(s.w, "tokenizer.ggml.tokens", (const char *const *)v.tok,
                                           NULL, (uint64_t)v.n);
    rc = rc ? rc
            : dais_gguf_writer_set_arr(s.w, "tokenizer.ggml.scores", DAIS_GGUF_F32, v.score,
                                       (uint64_t)v.n);
    rc = rc ? rc
            : dais_gguf_writer_set_arr(s.w, "tokenizer.ggml.token_type", DAIS_GGUF_I32, v.type,
                                       (uint64_t)v.n);
    rc = rc ? rc : dais_gguf_writer_set_u32(s.w, "tokenizer.ggml.unknown_token_id", 0);
    rc = rc ? rc : dais_gguf_writer_set_u32(s.w, "tokenizer.ggml.bos_token_id", 1);
    rc = rc ? rc : dais_gguf_writer_set_u32(s.w, "tokenizer.ggml.eos_token_id", 2);
    rc = rc ? rc : dais_gguf_writer_set_bool(s.w, "tokenizer.ggml.add_bos_token", true);
    rc = rc ? rc : dais_gguf_writer_set_bool(s.w, "tokenizer.ggml.add_eos_token", false);
    if (rc) {
        rc = dais_err_set(err, rc, "writing metadata: %s", dais_strerror(rc));
        goto out;
    }

    /* ---- tensors ---- */
    float a_dim = sqrtf(3.0f / (float)p->dim), a_ffn = sqrtf(3.0f / (float)p->ffn_dim);
    float res = 1.0f / sqrtf(2.0f * (float)p->n_layers); /* residual projections */
    uint32_t t = p->type;
    if ((rc = add_tensor(&s, "token_embd.weight", t, p->dim, p->n_vocab, -1.0f, 1.0f, err)) ||
        (rc = add_tensor(&s, "output_norm.weight", DAIS_F32, p->dim, 0, 0.9f, 1.1f, err)))
        goto out;
    if (!p->tied_output &&
        (rc = add_tensor(&s, "output.weight", t, p->dim, p->n_vocab, -2 * a_dim, 2 * a_dim, err)))
        goto out;
    if (p->rope_freqs_tensor &&
        (rc = add_tensor(&s, "rope_freqs.weight", DAIS_F32, hd / 2, 0, 1.0f, 8.0f, err)))
        goto out;
    for (int32_t l = 0; l < p->n_layers; l++) {
        char nm[96];
#define NAME(x) (snprintf(nm, sizeof nm, "blk.%d." x, l), nm)
        if ((rc = add_tensor(&s, NAME("attn_norm.weight"), DAIS_F32, p->dim, 0, 0.9f, 1.1f, err)) ||
            (rc = add_tensor(&s, NAME("attn_q.weight"), t, p->dim, p->dim, -a_dim, a_dim, err)) ||
            (rc = add_tensor(&s, NAME("attn_k.weight"), t, p->dim, kvd, -a_dim, a_dim, err)) ||
            (rc = add_tensor(&s, NAME("attn_v.weight"), t, p->dim, kvd, -a_dim, a_dim, err)) ||
            (rc = add_tensor(&s, NAME("attn_output.weight"), t, p->dim, p->dim, -a_dim * res,
                             a_dim * res, err)) ||
            (rc = add_tensor(&s, NAME("ffn_norm.weight"), DAIS_F32, p->dim, 0, 0.9f, 1.1f, err)) ||
            (rc = add_tensor(&s, NAME("ffn_gate.weight"), t, p->dim, p->ffn_dim, -a_dim, a_dim,
                             err)) ||
            (rc = add_tensor(&s, NAME("ffn_up.weight"), t, p->dim, p->ffn_dim, -a_dim, a_dim,
                             err)) ||
            (rc = add_tensor(&s, NAME("ffn_down.weight"), t, p->ffn_dim, p->dim, -a_ffn * res,
                             a_ffn * res, err)))
            goto out;
#undef NAME
    }
    rc = dais_gguf_writer_write(s.w, path, err);
out:
    if (s.rows)
        for (int i = 0; i < p->n_threads; i++)
            free(s.rows[i]);
    free(s.rows);
    free(s.buf);
    dais_pool_free(s.pool);
    dais_gguf_writer_free(s.w);
    vocab_free(&v);
    return rc;
}
