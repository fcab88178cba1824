/*
 * Fuzz target for the tokenizers. The first input byte picks a mode; the rest is the payload.
 *   mode % 5 == 0..2: the payload is text for a built-in "llama", "gpt2" (GPT-2 regex) or
 *       "gpt2" (Llama 3 regex, ignore_merges) vocabulary; bit 3 turns special-token parsing
 *       on, bit 4 adds BOS. Checked: the id count fits the bound, every id is in range, the
 *       token bytes give back the input (gpt2: exactly; llama: after the dummy space, with ▁
 *       read as a space), streaming decode emits only valid UTF-8 and equals the one-call
 *       decode, and for valid UTF-8 input decode(encode(s)) == s.
 *   mode % 5 == 3: the payload patches a built-in tokenizer-only GGUF image (u32 offset, then
 *       bytes written there), which is then parsed and, if the GGUF parses, loaded as a
 *       tokenizer: structure-aware mutations of every tokenizer.ggml.* key.
 *   mode % 5 == 4: the payload is a whole GGUF image, loaded the same way.
 * A loaded tokenizer then encodes and decodes a fixed sample and the payload.
 * Any violated property aborts. Seeds: corpus/tokenizer/.
 */
#include "engine/gguf.h"
#include "engine/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- built-in vocabularies ---------------------------------------------------------------- */

static char pieces[600][24];
static const char *ptrs[600];
static float scores[600];
static int32_t types[600];

static int add_piece(int n, const char *s, float score, int32_t type)
{
    snprintf(pieces[n], sizeof pieces[n], "%s", s);
    ptrs[n] = pieces[n];
    scores[n] = score;
    types[n] = type;
    return n + 1;
}

/* <unk> <s> </s> <0x00>..<0xFF> ▁ letters, a few merges, a user-defined token. */
static int llama_vocab(void)
{
    int n = 0;
    n = add_piece(n, "<unk>", 0, 2);
    n = add_piece(n, "<s>", 0, 3);
    n = add_piece(n, "</s>", 0, 3);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        n = add_piece(n, s, 0, 6);
    }
    static const char *extra[] = {"\xE2\x96\x81",
                                  "a",
                                  "b",
                                  "e",
                                  "h",
                                  "l",
                                  "o",
                                  "t",
                                  "\xC3\xA9",
                                  "ab",
                                  "he",
                                  "ll",
                                  "\xE2\x96\x81t",
                                  "\xE2\x96\x81th",
                                  "\xE2\x96\x81the",
                                  "hell",
                                  "hello",
                                  "\xE2\x96\x81\xE2\x96\x81",
                                  "<",
                                  ">",
                                  "<b>"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        n = add_piece(n, extra[i], -(float)i, strcmp(extra[i], "<b>") == 0 ? 4 : 1);
    return n;
}

static void byte_symbol(int b, char *out)
{
    int k = 0, cp = 0;
    for (int x = 0; x <= b; x++) {
        bool self = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
        cp = self ? x : 0x100 + k++;
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

static const char *gpt2_merges[] = {"h e",        "l l", "he ll",        "hell o",
                                    "\xC4\xA0 w", "o r", "\xC4\xA0w or", "\xC4\xA0 \xC4\xA0",
                                    "1 2",        "12 3"};

static int gpt2_vocab(void)
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        char s[4];
        byte_symbol(b, s);
        n = add_piece(n, s, 0, 1);
    }
    static const char *extra[] = {"he",        "ll",  "hell",        "hello",
                                  "\xC4\xA0w", "or",  "\xC4\xA0wor", "\xC4\xA0\xC4\xA0",
                                  "12",        "123", "lo"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
        n = add_piece(n, extra[i], 0, 1);
    n = add_piece(n, "<|endoftext|>", 0, 3);
    n = add_piece(n, "<|end|>", 0, 3);
    n = add_piece(n, "<|e", 0, 4);
    return n;
}

static dais_tokenizer *toks[3];
static uint8_t *image;
static size_t image_len;

static void init(void)
{
    dais_tokenizer_params p;
    dais_err err;
    int n = llama_vocab();
    dais_tokenizer_params_init(&p);
    p.model = "llama";
    p.model_len = 5;
    p.n_vocab = n;
    p.tokens = ptrs;
    p.scores = scores;
    p.token_types = types;
    p.bos_id = 1;
    p.eos_id = 2;
    p.unk_id = 0;
    toks[0] = dais_tokenizer_new(&p, &err);

    /* The GGUF image carries the llama vocabulary (tokens, scores, types) and gpt2-style merges
     * and pre, so mutations can flip the model key and reach both kinds. */
    dais_gguf_writer *w = dais_gguf_writer_new();
    dais_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    dais_gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe");
    dais_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", ptrs, NULL, (uint64_t)n);
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.scores", DAIS_GGUF_F32, scores, (uint64_t)n);
    dais_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", DAIS_GGUF_I32, types, (uint64_t)n);
    dais_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", gpt2_merges, NULL, 2);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    dais_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    dais_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f != NULL && dais_gguf_writer_write_file(w, f, &err) == 0) {
        fclose(f);
        image = (uint8_t *)buf;
        image_len = len;
    } else if (f != NULL) {
        fclose(f);
        free(buf);
    }
    dais_gguf_writer_free(w);

    n = gpt2_vocab();
    for (int k = 0; k < 2; k++) {
        dais_tokenizer_params_init(&p);
        p.model = "gpt2";
        p.model_len = 4;
        p.pre = k == 0 ? "gpt2" : "llama-bpe";
        p.pre_len = strlen(p.pre);
        p.n_vocab = n;
        p.tokens = ptrs;
        p.token_types = types;
        p.merges = gpt2_merges;
        p.n_merges = sizeof gpt2_merges / sizeof gpt2_merges[0];
        p.bos_id = n - 3;
        toks[1 + k] = dais_tokenizer_new(&p, &err);
    }
    if (toks[0] == NULL || toks[1] == NULL || toks[2] == NULL || image == NULL) abort();
}

/* ---- checks ------------------------------------------------------------------------------- */

static bool valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], cp, min;
        size_t k;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0)
            k = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0)
            k = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0)
            k = 3, cp = c & 0x07, min = 0x10000;
        else
            return false;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += k + 1;
    }
    return true;
}

/* Encodes and decodes `text`; `strict` checks byte-exactness for the built-in vocabularies. */
static void exercise(const dais_tokenizer *t, const uint8_t *text, size_t len, bool bos,
                     bool special, int strict)
{
    /* At most one id per byte, plus BOS and the dummy prefix, when the vocabulary has a "▁"
     * piece (the built-in ones do); three per space and for the prefix when it has not. */
    int64_t cap = 3 * (int64_t)len + 8;
    int32_t *ids = malloc((size_t)cap * sizeof(int32_t));
    int64_t n = dais_tokenize(t, (const char *)text, len, bos, special, ids, cap);
    if (n < 0 || n > cap || (strict && n > (int64_t)len + 2)) abort();
    int32_t nv = dais_tokenizer_n_vocab(t);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= nv) abort();

    if (strict && !special && !bos) {
        /* The token bytes give back the input: exactly for gpt2; for llama after the dummy
         * space, with each typed ▁ read as the space it stands for. */
        unsigned char *raw = malloc(3 * len + 16), *want = malloc(len + 2);
        size_t k = 0, w = 0;
        for (int64_t i = 0; i < n; i++) {
            size_t l;
            const char *p = dais_token_text(t, ids[i], &l);
            memcpy(raw + k, p, l);
            k += l;
        }
        if (strict == 1 && len > 0) want[w++] = ' ';
        for (size_t i = 0; i < len;) {
            if (strict == 1 && i + 3 <= len && memcmp(text + i, "\xE2\x96\x81", 3) == 0) {
                want[w++] = ' ';
                i += 3;
            } else {
                want[w++] = text[i++];
            }
        }
        if (k != w || memcmp(raw, want, w) != 0) abort();
        free(raw);
        free(want);
    }
    size_t ccap = 3 * dais_tokenizer_max_token_len(t) + 16;
    unsigned char *chunk = malloc(ccap);
    unsigned char *all = malloc(3 * (len + 16) + 3 * dais_tokenizer_max_token_len(t) * 2 + 64);
    size_t acap = 3 * (len + 16) + 3 * dais_tokenizer_max_token_len(t) * 2 + 64, m = 0;
    dais_detok d;
    dais_detok_init(&d, t, !special);
    for (int64_t i = 0; i <= n; i++) {
        int r = i < n ? dais_detok_push(&d, ids[i], (char *)chunk, ccap)
                      : dais_detok_flush(&d, (char *)chunk, ccap);
        if (r < 0 || !valid_utf8(chunk, (size_t)r)) abort();
        if (m + (size_t)r <= acap) memcpy(all + m, chunk, (size_t)r);
        m += (size_t)r;
    }
    char *one = malloc(m + 1);
    int64_t m2 = dais_detokenize(t, ids, (size_t)n, !special, one, m + 1);
    if (m2 != (int64_t)m || (m <= acap && memcmp(one, all, m) != 0)) abort();
    if (strict == 2 && !bos && valid_utf8(text, len) && (m != len || memcmp(all, text, len) != 0))
        abort(); /* gpt2: decode(encode(s)) == s for valid UTF-8, specials parsed or not */
    free(one);
    free(all);
    free(chunk);
    free(ids);
}

static void load_and_use(const uint8_t *img, size_t len, const uint8_t *text, size_t tlen)
{
    dais_err err;
    dais_gguf *g = dais_gguf_parse(img, len, &err);
    if (g == NULL) return;
    dais_tokenizer *t = dais_tokenizer_from_gguf(g, &err);
    dais_gguf_free(g);
    if (t == NULL) return;
    static const char sample[] = "Hello, world! <s> caf\xC3\xA9 \xF0\x9F\xA6\x99 \xFF\xFE 12345";
    exercise(t, (const uint8_t *)sample, sizeof sample - 1, true, true, 0);
    exercise(t, text, tlen > 4096 ? 4096 : tlen, false, false, 0);
    dais_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (toks[0] == NULL) init();
    if (size == 0) return 0;
    uint8_t mode = data[0];
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (mode % 5) {
    case 0:
    case 1:
    case 2:
        exercise(toks[mode % 5], p, n, (mode & 16) != 0, (mode & 8) != 0, mode % 5 == 0 ? 1 : 2);
        break;
    case 3: {
        if (n < 4) break;
        uint32_t off;
        memcpy(&off, p, 4);
        uint8_t *img = malloc(image_len);
        memcpy(img, image, image_len);
        size_t at = off % image_len, k = n - 4 < image_len - at ? n - 4 : image_len - at;
        memcpy(img + at, p + 4, k);
        load_and_use(img, image_len, p + 4, n - 4);
        free(img);
        break;
    }
    default:
        load_and_use(p, n, p, n);
        break;
    }
    return 0;
}
