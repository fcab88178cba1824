/*
 * Kernel benchmark: per weight type, the matrix-vector product's weight read rate against the
 * measured memory read bandwidth (same threads), the batched matmul rate in GFLOP/s
 * (2 * n_in * n_out * n_tok / time) for n_tok = 1, 4, 16, 128, and for the types the engine
 * benchmark uses, the matmul-only time of a 128-token prefill of a TinyLlama-1.1B-shaped model.
 *
 *   bench_kernels [-t threads] [-T type[,type...]] [--scalar] [--no-model]
 *
 * Matrix-vector products cycle through enough copies of the matrix to exceed the caches
 * several times over, as a forward pass does, so the figure is a DRAM rate; each pass is
 * paired with a bandwidth probe run just before it and the median of the per-pair ratios is
 * reported (the machine may be shared, and what else runs moves both figures). Other figures
 * are the best of several repetitions.
 */
#include "common/clock.h"
#include "engine/kernels.h"
#include "engine/membw.h"
#include "engine/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COPY_BYTES (320ull << 20) /* bytes of matrices a matvec pass cycles through */

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float gauss(void)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u[i] = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

/* n_copies matrices of (n_out, n_in) `type` in one buffer; rows repeat a small set of
 * quantized Gaussian rows (the kernels' speed does not depend on the values). */
typedef struct mats {
    dais_matrix *m;
    int n;
    uint8_t *buf;
    size_t bytes; /* of one matrix */
} mats;

static int mats_make(mats *ms, uint32_t type, int64_t n_in, int64_t n_out, int n_copies)
{
    size_t rb = dais_dtype_row_bytes(type, (uint64_t)n_in, NULL);
    ms->bytes = rb * (size_t)n_out;
    ms->n = n_copies;
    ms->buf = aligned_alloc(4096, (ms->bytes * (size_t)n_copies + 4095) / 4096 * 4096);
    ms->m = calloc((size_t)n_copies, sizeof(dais_matrix));
    float *row = malloc((size_t)n_in * sizeof(float));
    if (!ms->buf || !ms->m || !row) return -1;
    enum { DISTINCT = 61 };
    for (int64_t r = 0; r < n_out && r < DISTINCT; r++) {
        for (int64_t i = 0; i < n_in; i++)
            row[i] = gauss() * 0.05f;
        dais_quantize_row(type, row, ms->buf + rb * (size_t)r, n_in);
    }
    for (int64_t r = DISTINCT; r < n_out; r++)
        memcpy(ms->buf + rb * (size_t)r, ms->buf + rb * (size_t)(r % DISTINCT), rb);
    for (int c = 0; c < n_copies; c++) {
        if (c > 0) memcpy(ms->buf + ms->bytes * (size_t)c, ms->buf, ms->bytes);
        ms->m[c] = (dais_matrix){type, n_in, n_out, ms->buf + ms->bytes * (size_t)c};
    }
    free(row);
    return 0;
}

static void mats_free(mats *ms)
{
    free(ms->buf);
    free(ms->m);
}

static float *acts(int64_t n)
{
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n && x; i++)
        x[i] = gauss();
    return x;
}

/* Best time (ns) of `reps` passes, each pass = `per_pass` matmuls cycling through ms. */
static uint64_t time_mm(dais_pool *pool, dais_mm_scratch *s, const mats *ms, const float *x,
                        float *y, int n_tok, int per_pass, int reps)
{
    uint64_t best = UINT64_MAX;
    int c = 0;
    for (int r = 0; r <= reps; r++) {
        uint64_t t0 = dais_now_ns();
        for (int i = 0; i < per_pass; i++) {
            if (dais_matmul(pool, s, &ms->m[c], x, y, n_tok) != 0) {
                fprintf(stderr, "dais_matmul failed\n");
                exit(1);
            }
            c = (c + 1) % ms->n;
        }
        uint64_t dt = dais_now_ns() - t0;
        if (r > 0 && dt < best) /* pass 0 warms up */
            best = dt;
    }
    return best;
}

#define ROUNDS 7

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++) /* insertion sort: n is small */
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void pool_noop(void *arg, int ith, int nth)
{
    (void)arg;
    (void)ith;
    (void)nth;
}

static double pool_overhead_us(dais_pool *pool)
{
    uint64_t best = UINT64_MAX;
    for (int r = 0; r < 5; r++) {
        uint64_t t0 = dais_now_ns();
        for (int i = 0; i < 20000; i++)
            dais_pool_run(pool, pool_noop, NULL);
        uint64_t dt = dais_now_ns() - t0;
        best = dt < best ? dt : best;
    }
    return (double)best / 20000 / 1000.0;
}

/* Matmul-only time of a 128-token prefill of a TinyLlama-1.1B-shaped model: 22 layers of
 * q/k/v/o (dim 2048, 4 KV heads of 64), gate/up/down (FFN 5632), then the output matrix
 * (vocab 32000), all of one type. Returns tokens per second. */
static double model_prefill(dais_pool *pool, uint32_t type, int n_tok, double *layer_ms,
                            double *out_ms)
{
    static const int64_t shapes[][2] = {/* n_in, n_out */
                                        {2048, 2048}, {2048, 256},  {2048, 256}, {2048, 2048},
                                        {2048, 5632}, {2048, 5632}, {5632, 2048}};
    dais_mm_scratch *s = dais_mm_scratch_new(5632, n_tok);
    float *x = acts(5632 * (int64_t)n_tok);
    float *y = malloc(sizeof(float) * 32000 * (size_t)n_tok);
    if (!s || !x || !y) return 0;
    uint64_t layer = 0;
    for (int i = 0; i < 7; i++) {
        mats ms;
        if (mats_make(&ms, type, shapes[i][0], shapes[i][1], 1) != 0) return 0;
        layer += time_mm(pool, s, &ms, x, y, n_tok, 1, 2);
        mats_free(&ms);
    }
    mats out;
    if (mats_make(&out, type, 2048, 32000, 1) != 0) return 0;
    uint64_t tout = time_mm(pool, s, &out, x, y, n_tok, 1, 1);
    mats_free(&out);
    dais_mm_scratch_free(s);
    free(x);
    free(y);
    *layer_ms = (double)layer / 1e6;
    *out_ms = (double)tout / 1e6;
    return (double)n_tok / ((22.0 * (double)layer + (double)tout) / 1e9);
}

int main(int argc, char **argv)
{
    int n_threads = 2;
    bool model = true;
    const char *types_arg = "q4_0,q8_0,q4_K,q6_K,f16,bf16,f32";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            n_threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "-T") && i + 1 < argc) {
            types_arg = argv[++i];
        } else if (!strcmp(argv[i], "--scalar")) {
            dais_kernels_force_isa(DAIS_ISA_SCALAR);
        } else if (!strcmp(argv[i], "--no-model")) {
            model = false;
        } else {
            fprintf(stderr, "usage: %s [-t threads] [-T type,...] [--scalar] [--no-model]\n",
                    argv[0]);
            return 2;
        }
    }
    dais_pool *pool = dais_pool_new(n_threads);
    if (!pool) {
        fprintf(stderr, "cannot start %d threads\n", n_threads);
        return 1;
    }
    printf("bench_kernels: %d threads, kernels %s (cpu: %s)\n", n_threads,
           dais_kernels_isa() == DAIS_ISA_AVX2 ? "avx2" : "scalar", dais_kernels_features());
    printf("empty pool run: %.2f us\n", pool_overhead_us(pool));
    dais_membw *probe = dais_membw_new(pool, 256ull << 20);
    if (!probe) return 1;
    (void)dais_membw_measure(probe, pool, 1);
    double bw = dais_membw_measure(probe, pool, 5);
    printf("read bandwidth: %.1f GB/s (256 MiB buffer, %d threads, best of 5)\n\n", bw, n_threads);

    printf("%-5s | matvec: best rate, median %% of bandwidth | GFLOP/s 2048->5632 by n_tok\n",
           "type");
    printf("%-5s | %-17s %-17s | %7s %7s %7s %7s\n", "", "2048->5632", "5632->2048", "1", "4", "16",
           "128");
    char types[256];
    snprintf(types, sizeof(types), "%s", types_arg);
    dais_mm_scratch *s = dais_mm_scratch_new(5632, 128);
    float *x = acts(5632 * 128);
    float *y = malloc(sizeof(float) * 5632 * 128);
    if (!s || !x || !y) return 1;
    for (char *save = NULL, *tn = strtok_r(types, ",", &save); tn;
         tn = strtok_r(NULL, ",", &save)) {
        int type = dais_dtype_from_name(tn);
        if (type < 0) {
            fprintf(stderr, "unknown type %s\n", tn);
            return 2;
        }
        printf("%-5s |", dais_dtype_name((uint32_t)type));
        static const int64_t shape[2][2] = {{2048, 5632}, {5632, 2048}};
        mats ms[2];
        for (int sh = 0; sh < 2; sh++) {
            size_t one = dais_dtype_row_bytes((uint32_t)type, (uint64_t)shape[sh][0], NULL) *
                         (size_t)shape[sh][1];
            int copies = (int)((COPY_BYTES + one - 1) / one);
            if (mats_make(&ms[sh], (uint32_t)type, shape[sh][0], shape[sh][1], copies) != 0)
                return 1;
            /* memory bandwidth varies with what else runs on the machine: alternate a bandwidth
             * probe and a matvec pass, and report the median of the per-round ratios */
            double ratio[ROUNDS], best_gbs = 0;
            for (int rd = 0; rd < ROUNDS; rd++) {
                double bwr = dais_membw_measure(probe, pool, 1);
                uint64_t ns = time_mm(pool, s, &ms[sh], x, y, 1, copies, 1);
                double gbs = (double)one * copies / (double)ns;
                ratio[rd] = gbs / bwr;
                best_gbs = gbs > best_gbs ? gbs : best_gbs;
            }
            printf(" %5.1f GB/s %4.0f%%  ", best_gbs, 100.0 * median(ratio, ROUNDS));
            fflush(stdout);
        }
        printf("|");
        static const int toks[] = {1, 4, 16, 128};
        for (int k = 0; k < 4; k++) {
            /* about 40 ms of work per pass */
            double flop = 2.0 * 2048 * 5632 * toks[k];
            int per = toks[k] == 1 ? ms[0].n : (int)(2e9 / flop) + 1;
            uint64_t ns = time_mm(pool, s, &ms[0], x, y, toks[k], per, 3);
            printf(" %7.1f", flop * per / (double)ns);
            fflush(stdout);
        }
        printf("\n");
        mats_free(&ms[0]);
        mats_free(&ms[1]);
    }
    free(x);
    free(y);
    dais_mm_scratch_free(s);
    dais_membw_free(probe);

    if (model) {
        printf("\nTinyLlama-1.1B-shaped model, matmuls only (22 layers + output 2048->32000):\n");
        static const uint32_t mt[] = {DAIS_Q8_0, DAIS_Q4_0, DAIS_Q4_K};
        for (int i = 0; i < 3; i++) {
            double lms = 0, oms = 0;
            double tps = model_prefill(pool, mt[i], 128, &lms, &oms);
            printf("  %-5s prefill 128 tokens: %6.1f tok/s  (layer %.1f ms, output %.1f ms)\n",
                   dais_dtype_name(mt[i]), tps, lms, oms);
            fflush(stdout);
        }
    }
    dais_pool_free(pool);
    return 0;
}
