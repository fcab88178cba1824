/*
 * Memory read bandwidth probe (see membw.h): each pool thread first-touches and then
 * repeatedly reads its own contiguous share of one large buffer, with the same read loop
 * the kernels' ISA provides (AVX2 loads where available).
 */
#include "engine/membw.h"

#include "common/clock.h"
#include "engine/kernels.h"
#include "engine/kernels_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_THREADS 1024

typedef struct probe {
    uint8_t *buf;
    size_t share; /* bytes per thread, a multiple of 4096 */
    bool fill;
    uint64_t (*read_sum)(const void *p, size_t n);
    uint64_t sink[MAX_THREADS];
} probe;

static void probe_worker(void *arg, int ith, int nth)
{
    probe *pr = arg;
    uint8_t *p = pr->buf + pr->share * (size_t)ith;
    if (pr->fill)
        memset(p, 0x5a + ith, pr->share);
    else
        pr->sink[ith] += pr->read_sum(p, pr->share);
}

double dais_membw_read_gbs(dais_pool *pool, size_t bytes, int reps)
{
    int nth = dais_pool_size(pool);
    if (reps < 1 || nth > MAX_THREADS || bytes < (size_t)nth * 4096)
        return 0.0;
    probe *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return 0.0;
    pr->share = bytes / (size_t)nth / 4096 * 4096;
    pr->buf = aligned_alloc(4096, pr->share * (size_t)nth);
    if (!pr->buf) {
        free(pr);
        return 0.0;
    }
    pr->read_sum = dais__kernels_impl()->read_sum;
    pr->fill = true;
    if (pool)
        dais_pool_run(pool, probe_worker, pr);
    else
        probe_worker(pr, 0, 1);
    pr->fill = false;
    uint64_t best = UINT64_MAX;
    for (int r = 0; r <= reps; r++) {
        uint64_t t0 = dais_now_ns();
        if (pool)
            dais_pool_run(pool, probe_worker, pr);
        else
            probe_worker(pr, 0, 1);
        uint64_t dt = dais_now_ns() - t0;
        if (r > 0 && dt < best) /* pass 0 warms the TLB and the page tables */
            best = dt;
    }
    double gbs = (double)(pr->share * (size_t)nth) / (double)(best ? best : 1);
    free(pr->buf);
    free(pr);
    return gbs;
}
