/*
 * Engine benchmark: prefill and decode speed of one model, and decode as a fraction of the
 * memory-bandwidth limit, by the method of issue 2 so that figures compare with other engines:
 *   - prompt of P = 128 tokens: BOS, then P-1 ids from a fixed generator (xorshift64, seed
 *     0x5eed, id = 3 + r mod (n_vocab - 3), i.e. never a control token), prefilled in ONE
 *     forward pass from an empty cache;
 *   - then N = 128 single-token greedy decode steps at positions P .. P+N-1, not stopping at
 *     EOS;
 *   - median of R runs (-r, default 3), after one untimed warm-up run that pages the weights in;
 *   - the bandwidth limit is read bandwidth (dais_membw_read_gbs, 256 MiB, the same thread pool)
 *     divided by the weight bytes one token reads (dais_model_weight_bytes).
 *
 *   bench_engine -m MODEL.gguf [-t THREADS (2)] [-r RUNS (3)] [-p PROMPT (128)] [-n DECODE (128)]
 */
#include "common/clock.h"
#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/membw.h"
#include "engine/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int32_t argmax(const float *x, int32_t n)
{
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static long arg_long(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_engine: %s must be in [%ld, %ld]\n", what, lo, hi);
        exit(2);
    }
    return v;
}

/* One run: prefill the prompt in one pass, then n_dec greedy steps. Times in seconds. */
static int run_once(dais_ctx *c, dais_kv *kv, const int32_t *prompt, int32_t np, int32_t n_dec,
                    float *logits, int32_t n_layers, int32_t n_vocab, double *t_pre, double *t_dec)
{
    int32_t *pos = malloc((size_t)np * sizeof *pos), *seq = calloc((size_t)np, sizeof *seq);
    if (pos == NULL || seq == NULL) return DAIS_ENOMEM;
    for (int32_t i = 0; i < np; i++)
        pos[i] = i;
    dais_kv_truncate(kv, 0);
    dais_batch b = {.n_tokens = np,
                    .token = prompt,
                    .pos = pos,
                    .seq = seq,
                    .layer_first = 0,
                    .layer_last = n_layers};
    uint64_t t0 = dais_now_ns();
    int rc = dais_forward(c, &b, &kv, 1, logits);
    uint64_t t1 = dais_now_ns();
    for (int32_t i = 0; rc == 0 && i < n_dec; i++) {
        int32_t tok = argmax(logits, n_vocab), p = np + i, s0 = 0;
        dais_batch d = {.n_tokens = 1,
                        .token = &tok,
                        .pos = &p,
                        .seq = &s0,
                        .layer_first = 0,
                        .layer_last = n_layers};
        rc = dais_forward(c, &d, &kv, 1, logits);
    }
    uint64_t t2 = dais_now_ns();
    *t_pre = (double)(t1 - t0) * 1e-9;
    *t_dec = (double)(t2 - t1) * 1e-9;
    free(pos);
    free(seq);
    return rc;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int threads = 2, runs = 3, opt;
    int32_t np = 128, n_dec = 128;
    while ((opt = getopt(argc, argv, "m:t:r:p:n:h")) != -1) {
        switch (opt) {
        case 'm':
            path = optarg;
            break;
        case 't':
            threads = (int)arg_long(optarg, 1, 256, "-t");
            break;
        case 'r':
            runs = (int)arg_long(optarg, 1, 100, "-r");
            break;
        case 'p':
            np = (int32_t)arg_long(optarg, 1, 1 << 16, "-p");
            break;
        case 'n':
            n_dec = (int32_t)arg_long(optarg, 1, 1 << 16, "-n");
            break;
        default:
            fprintf(stderr, "usage: bench_engine -m MODEL.gguf [-t THREADS] [-r RUNS] "
                            "[-p PROMPT_TOKENS] [-n DECODE_STEPS]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "bench_engine: -m MODEL.gguf is required\n");
        return 2;
    }
    dais_err err;
    uint64_t tl = dais_now_ns();
    dais_model *m = dais_model_load(path, &err);
    if (m == NULL) {
        fprintf(stderr, "bench_engine: %s: %s\n", path, err.msg);
        return 1;
    }
    double load_s = (double)(dais_now_ns() - tl) * 1e-9;
    const dais_hparams *hp = dais_model_hparams(m);
    if (np + n_dec > hp->n_ctx_train)
        fprintf(stderr, "bench_engine: note: %d positions exceed the model's context of %d\n",
                np + n_dec, hp->n_ctx_train);
    dais_ctx *c = dais_ctx_new(m, threads, np, &err);
    dais_kv *kv = dais_kv_new(m, np + n_dec, 0, hp->n_layers);
    float *logits = malloc((size_t)hp->n_vocab * sizeof *logits);
    int32_t *prompt = malloc((size_t)np * sizeof *prompt);
    double *pre = calloc((size_t)runs, sizeof *pre), *dec = calloc((size_t)runs, sizeof *dec);
    if (c == NULL || kv == NULL || logits == NULL || prompt == NULL || pre == NULL || dec == NULL) {
        fprintf(stderr, "bench_engine: out of memory\n");
        return 1;
    }
    int32_t bos = dais_tokenizer_bos(dais_model_tokenizer(m));
    uint64_t r = 0x5eed;
    prompt[0] = bos >= 0 ? bos : 1 % hp->n_vocab;
    for (int32_t i = 1; i < np; i++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        prompt[i] = hp->n_vocab > 3 ? 3 + (int32_t)(r % (uint64_t)(hp->n_vocab - 3))
                                    : (int32_t)(r % (uint64_t)hp->n_vocab);
    }

    const dais_gguf_tensor *t = dais_gguf_find_tensor(dais_model_gguf(m), "blk.0.ffn_down.weight");
    printf("model      %s\n           %s, dim %d, %d layers, %d/%d heads, ffn %d, vocab %d\n", path,
           t ? dais_dtype_name(t->type) : "?", hp->dim, hp->n_layers, hp->n_heads, hp->n_kv_heads,
           hp->ffn_dim, hp->n_vocab);
    printf("machine    %ld online CPUs, kernels %s (%s), %d threads; loaded in %.2f s\n",
           sysconf(_SC_NPROCESSORS_ONLN), dais_kernels_isa() == DAIS_ISA_AVX2 ? "avx2" : "scalar",
           dais_kernels_features(), threads, load_s);
    printf("method     prompt %d tokens in one pass, %d greedy decode steps, median of %d runs "
           "(+1 warm-up)\n",
           np, n_dec, runs);
    fflush(stdout);

    double wp, wd;
    if (run_once(c, kv, prompt, np, n_dec, logits, hp->n_layers, hp->n_vocab, &wp, &wd) != 0) {
        fprintf(stderr, "bench_engine: forward pass failed\n");
        return 1;
    }
    for (int i = 0; i < runs; i++) {
        if (run_once(c, kv, prompt, np, n_dec, logits, hp->n_layers, hp->n_vocab, &pre[i],
                     &dec[i]) != 0) {
            fprintf(stderr, "bench_engine: forward pass failed\n");
            return 1;
        }
        printf("run %d      prefill %.2f s (%.1f tok/s), decode %.2f s (%.2f tok/s)\n", i + 1,
               pre[i], np / pre[i], dec[i], n_dec / dec[i]);
        fflush(stdout);
    }
    double pre_tps = np / median(pre, runs), dec_tps = n_dec / median(dec, runs);
    double wb = (double)dais_model_weight_bytes(m);
    double bw = dais_membw_read_gbs(dais_ctx_pool(c), (size_t)256 << 20, 5);
    double limit = bw > 0 ? bw * 1e9 / wb : 0;
    printf("prefill    %.1f tok/s\n", pre_tps);
    printf("decode     %.2f tok/s\n", dec_tps);
    printf("weights    %.1f MB read per token\n", wb / 1e6);
    printf("bandwidth  %.1f GB/s read (%d threads)\n", bw, threads);
    printf("limit      %.2f tok/s; decode at %.0f %% of the bandwidth limit\n", limit,
           limit > 0 ? 100.0 * dec_tps / limit : 0.0);
    free(pre);
    free(dec);
    free(prompt);
    free(logits);
    dais_kv_free(kv);
    dais_ctx_free(c);
    dais_model_free(m);
    return 0;
}
