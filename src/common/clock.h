/* Time helpers: a monotonic clock for durations and the wall clock for timestamps. */
#ifndef DAIS_COMMON_CLOCK_H
#define DAIS_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic nanoseconds; only differences mean anything. Any thread. */
static inline uint64_t dais_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Seconds since the Unix epoch, with sub-second precision (the envelope's `timestamp`). */
static inline double dais_wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
