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

#endif
