/*
 * Memory read bandwidth probe. The engine benchmark divides the weight bytes a decode step
 * reads by this figure to report decode speed as a fraction of what the memory can deliver,
 * measured on the same machine with the same threads.
 */
#ifndef DAIS_ENGINE_MEMBW_H
#define DAIS_ENGINE_MEMBW_H

#include "engine/threadpool.h"

#include <stddef.h>

/* Reads a buffer of `bytes` (choose it much larger than the last-level cache; 256 MiB is a
 * good default) with every thread of `pool` (NULL = the calling thread alone), each thread
 * streaming its own contiguous share with the widest loads the CPU has, `reps` times after
 * one warm-up pass. Returns the best rate in GB/s (1e9 bytes per second), or 0.0 when the
 * buffer cannot be allocated or the arguments are invalid. Allocates and frees the buffer;
 * call from the thread that drives the pool. */
double dais_membw_read_gbs(dais_pool *pool, size_t bytes, int reps);

/* The same probe with a buffer kept between measurements, for benchmarks that measure the
 * bandwidth many times (interleaved with the work they compare it to). dais_membw_new
 * allocates `bytes` and first-touches it with the pool's threads (NULL on failure);
 * dais_membw_measure runs `reps` timed passes (no warm-up) with `pool`, which must have the
 * same number of threads, and returns the best GB/s (0.0 on invalid arguments). */
typedef struct dais_membw dais_membw;
dais_membw *dais_membw_new(dais_pool *pool, size_t bytes);
double dais_membw_measure(dais_membw *m, dais_pool *pool, int reps);
void dais_membw_free(dais_membw *m); /* accepts NULL */

#endif
