/*
 * Compute thread pool. dais_pool_run(pool, fn, arg) calls fn(arg, ith, nth) once for every
 * ith in [0, nth) — the calling thread runs ith 0 — and returns when all have finished.
 * Kernels split their work by (ith, nth) into disjoint rows, so no locks are needed inside.
 * Workers spin briefly between runs (a forward pass issues hundreds of runs back to back)
 * and then sleep, so an idle node does not burn CPU.
 * A pool is used by one thread at a time (the thread that drives a forward pass).
 */
#ifndef DAIS_ENGINE_THREADPOOL_H
#define DAIS_ENGINE_THREADPOOL_H

typedef struct dais_pool dais_pool;
typedef void (*dais_pool_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (total, including the caller). Returns NULL on failure. */
dais_pool *dais_pool_new(int n_threads);
void dais_pool_free(dais_pool *p); /* accepts NULL */
int dais_pool_size(const dais_pool *p);
void dais_pool_run(dais_pool *p, dais_pool_fn fn, void *arg);

#endif
