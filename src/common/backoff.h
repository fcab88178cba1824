/*
 * Exponential backoff with jitter, a bounded number of attempts and a total deadline.
 *
 * One dais_backoff value follows one operation that may be retried (a request sent to a
 * worker, a Kubernetes API poll, a worker's DNS lookup of the master). The caller makes the
 * first attempt right away; after each failed attempt it asks dais_backoff_next() how long to
 * wait before the next one, or whether to give up. The object is a pure function of the
 * timestamps the caller passes and of its seed: no clock is read and nothing is allocated,
 * so tests can replay exact sequences (a fixed seed gives a fixed sequence of delays).
 *
 * Jitter (see docs/reliability.md, "Backoff"):
 *   - FULL:         delay_n = uniform(0, min(max, base * multiplier^n))      (n = 0, 1, ...)
 *   - DECORRELATED: delay_n = min(max, uniform(base, 3 * delay_{n-1})),  delay_{-1} = base
 *   - NONE:         delay_n = min(max, base * multiplier^n)   (tests, and fixed schedules)
 * Full jitter spreads synchronised clients best; decorrelated jitter keeps a floor of `base`
 * between attempts while still spreading them.
 *
 * Threads: a dais_backoff belongs to the thread that uses it (no locking).
 */
#ifndef DAIS_COMMON_BACKOFF_H
#define DAIS_COMMON_BACKOFF_H

#include <stdint.h>

#include "common/error.h"

enum dais_backoff_jitter {
    DAIS_BACKOFF_FULL = 0,
    DAIS_BACKOFF_DECORRELATED,
    DAIS_BACKOFF_NONE,
};

typedef struct dais_backoff_config {
    uint64_t base_ns;      /* first delay (upper bound for FULL, floor for DECORRELATED); > 0 */
    uint64_t max_ns;       /* cap on any one delay; >= base_ns */
    double multiplier;     /* growth per attempt for FULL and NONE; in [1, 16] */
    uint32_t max_attempts; /* attempts in all, the first one included; 0 = unbounded */
    uint64_t deadline_ns;  /* total budget measured from dais_backoff_init(); 0 = none */
    enum dais_backoff_jitter jitter;
} dais_backoff_config;

typedef struct dais_backoff {
    dais_backoff_config cfg;
    uint64_t start_ns; /* the time given to _init / _reset */
    uint64_t prev_ns;  /* previous delay (DECORRELATED) */
    uint32_t attempts; /* attempts started so far: 1 after _init, +1 per granted retry */
    uint64_t rng;      /* splitmix64 state */
} dais_backoff;

/* Defaults: base 100 ms, max 5 s, multiplier 2, 5 attempts, no deadline, full jitter. */
void dais_backoff_config_default(dais_backoff_config *cfg);

/* Checks a configuration; returns 0 or DAIS_EINVAL with a message in `err` (may be NULL). */
int dais_backoff_config_check(const dais_backoff_config *cfg, dais_err *err);

/* Starts following an operation whose first attempt begins at `now_ns` (any monotonic clock,
 * e.g. dais_now_ns()). `cfg` is copied. `seed` fixes the jitter sequence; 0 picks a seed from
 * the clock and the object's address. Returns 0 or DAIS_EINVAL (bad configuration). */
int dais_backoff_init(dais_backoff *b, const dais_backoff_config *cfg, uint64_t now_ns,
                      uint64_t seed);

/* Records that an attempt failed at `now_ns` and decides about the next one:
 *   0              another attempt may start after `*delay_ns` (always > 0 unless base is 0);
 *   DAIS_ERANGE    the attempt budget (max_attempts) is used up;
 *   DAIS_ETIMEOUT  the deadline has passed, or the next attempt could not start before it.
 * `*delay_ns` is set to 0 on the error returns. */
int dais_backoff_next(dais_backoff *b, uint64_t now_ns, uint64_t *delay_ns);

/* Nanoseconds left before the deadline at `now_ns` (0 when passed; UINT64_MAX without a
 * deadline). Use it to cap the timeout of the attempt itself. */
uint64_t dais_backoff_remaining_ns(const dais_backoff *b, uint64_t now_ns);

/* Attempts started so far: 1 after _init/_reset, +1 each time dais_backoff_next() granted a
 * retry (not when it gave up). What a response reports as "attempts". */
uint32_t dais_backoff_attempts(const dais_backoff *b);

/* Starts over after a success: attempt count, delay growth and deadline restart at `now_ns`.
 * The random sequence continues (not reseeded). */
void dais_backoff_reset(dais_backoff *b, uint64_t now_ns);

#endif
