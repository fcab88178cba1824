/*
 * Memory read bandwidth probe (see membw.h): each pool thread first-touches and then
 * repeatedly reads its own contiguous share of one large buffer, with the same read loop
 * the kernels' ISA provides (AVX2 loads where available). A plain sequential read is what
 * the hardware prefetchers serve best, so this is the read rate the memory system delivers
 * to these threads, the ceiling for a weight-streaming matrix-vector product.
 */
#include "engine/membw.h"

#include "common/clock.h"
#include "engine/kernels.h"
#include "engine/kernels_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 1024

struct dais_membw {
    uint8_t *buf;
    size_t share; /* bytes per thread, a multiple of 4096 */
    int nth;
    bool fill;
    uint64_t (*read_sum)(const void *p, size_t n);
    uint64_t sink[MAX_THREADS];
};

static void probe_worker(void *arg, int ith, int nth)
{
    dais_membw *pr = arg;
    uint8_t *p = pr->buf + pr->share * (size_t)ith;
    if (pr->fill)
        memset(p, 0x5a + ith, pr->share);
    else
        pr->sink[ith] += pr->read_sum(p, pr->share);
}

static void run_all(dais_membw *pr, dais_pool *pool)
{
    if (pool)
        dais_pool_run(pool, probe_worker, pr);
    else
        probe_worker(pr, 0, 1);
}

dais_membw *dais_membw_new(dais_pool *pool, size_t bytes)
{
    int nth = dais_pool_size(pool);
    if (nth > MAX_THREADS || bytes < (size_t)nth * 4096) return NULL;
    dais_membw *pr = calloc(1, sizeof(*pr));
    if (!pr) return NULL;
    pr->nth = nth;
    pr->share = bytes / (size_t)nth / 4096 * 4096;
    pr->buf = aligned_alloc(4096, pr->share * (size_t)nth);
    if (!pr->buf) {
        free(pr);
        return NULL;
    }
    pr->read_sum = dais__kernels_impl()->read_sum;
    pr->fill = true;
    run_all(pr, pool);
    pr->fill = false;
    return pr;
}

double dais_membw_measure(dais_membw *pr, dais_pool *pool, int reps)
{
    if (!pr || reps < 1 || dais_pool_size(pool) != pr->nth) return 0.0;
    uint64_t best = UINT64_MAX;
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = dais_now_ns();
        run_all(pr, pool);
        uint64_t dt = dais_now_ns() - t0;
        best = dt < best ? dt : best;
    }
    return (double)(pr->share * (size_t)pr->nth) / (double)(best ? best : 1);
}

void dais_membw_free(dais_membw *pr)
{
    if (!pr) return;
    free(pr->buf);
    free(pr);
}

double dais_membw_read_gbs(dais_pool *pool, size_t bytes, int reps)
{
    if (reps < 1) return 0.0;
    dais_membw *pr = dais_membw_new(pool, bytes);
    if (!pr) return 0.0;
    (void)dais_membw_measure(pr, pool, 1); /* warm-up: TLB and page tables */
    double gbs = dais_membw_measure(pr, pool, reps);
    dais_membw_free(pr);
    return gbs;
}
