/*
 * Exponential backoff with full or decorrelated jitter (see backoff.h). All arithmetic on
 * delays saturates instead of overflowing: a large attempt count or multiplier simply stays
 * at max_ns.
 */
#include "common/backoff.h"

#include <math.h>
#include <stdint.h>

#include "common/clock.h"

#define MS 1000000ull

void dais_backoff_config_default(dais_backoff_config *cfg)
{
    cfg->base_ns = 100 * MS;
    cfg->max_ns = 5000 * MS;
    cfg->multiplier = 2.0;
    cfg->max_attempts = 5;
    cfg->deadline_ns = 0;
    cfg->jitter = DAIS_BACKOFF_FULL;
}

int dais_backoff_config_check(const dais_backoff_config *cfg, dais_err *err)
{
    if (cfg == NULL) return dais_err_set(err, DAIS_EINVAL, "backoff: no configuration");
    if (cfg->base_ns == 0) return dais_err_set(err, DAIS_EINVAL, "backoff: base delay must be > 0");
    if (cfg->max_ns < cfg->base_ns)
        return dais_err_set(err, DAIS_EINVAL, "backoff: max delay %llu ns < base %llu ns",
                            (unsigned long long)cfg->max_ns, (unsigned long long)cfg->base_ns);
    if (!(cfg->multiplier >= 1.0 && cfg->multiplier <= 16.0))
        return dais_err_set(err, DAIS_EINVAL, "backoff: multiplier must be in [1, 16]");
    if (cfg->jitter != DAIS_BACKOFF_FULL && cfg->jitter != DAIS_BACKOFF_DECORRELATED &&
        cfg->jitter != DAIS_BACKOFF_NONE)
        return dais_err_set(err, DAIS_EINVAL, "backoff: unknown jitter mode %d", (int)cfg->jitter);
    return 0;
}

/* splitmix64: small, fast, and every seed (0 included) gives a full-period sequence. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform integer in [lo, hi] (lo <= hi). The 53-bit double keeps the bias below 2^-53 of the
 * range, far below anything a retry schedule can notice. */
static uint64_t uniform(uint64_t *s, uint64_t lo, uint64_t hi)
{
    if (hi <= lo) return lo;
    double u = (double)(rng_next(s) >> 11) * 0x1.0p-53; /* [0, 1) */
    double span = (double)(hi - lo) + 1.0;
    double v = (double)lo + floor(u * span);
    if (v >= (double)hi) return hi;
    return (uint64_t)v;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int dais_backoff_init(dais_backoff *b, const dais_backoff_config *cfg, uint64_t now_ns,
                      uint64_t seed)
{
    int rc = dais_backoff_config_check(cfg, NULL);
    if (rc != 0) return rc;
    b->cfg = *cfg;
    if (seed == 0) seed = dais_now_ns() ^ ((uint64_t)(uintptr_t)b * 0x9e3779b97f4a7c15ull);
    b->rng = seed;
    dais_backoff_reset(b, now_ns);
    return 0;
}

void dais_backoff_reset(dais_backoff *b, uint64_t now_ns)
{
    b->start_ns = now_ns;
    b->prev_ns = b->cfg.base_ns;
    b->attempts = 1;
}

/* Exponential ceiling for retry number n (0-based): min(max, base * multiplier^n). */
static uint64_t ceiling(const dais_backoff_config *c, uint32_t n)
{
    double v = (double)c->base_ns * pow(c->multiplier, (double)n);
    if (!(v < (double)c->max_ns)) return c->max_ns;
    return (uint64_t)v;
}

int dais_backoff_next(dais_backoff *b, uint64_t now_ns, uint64_t *delay_ns)
{
    *delay_ns = 0;
    /* b->attempts is the attempt that just failed (1 = the first). */
    if (b->cfg.max_attempts != 0 && b->attempts >= b->cfg.max_attempts) return DAIS_ERANGE;
    if (b->attempts == UINT32_MAX) return DAIS_ERANGE;

    uint64_t d;
    uint32_t n = b->attempts - 1;
    switch (b->cfg.jitter) {
    case DAIS_BACKOFF_DECORRELATED: {
        uint64_t hi = b->prev_ns > UINT64_MAX / 3 ? UINT64_MAX : b->prev_ns * 3;
        if (hi > b->cfg.max_ns) hi = b->cfg.max_ns;
        d = uniform(&b->rng, b->cfg.base_ns, hi);
        b->prev_ns = d;
        break;
    }
    case DAIS_BACKOFF_NONE:
        d = ceiling(&b->cfg, n);
        break;
    case DAIS_BACKOFF_FULL:
    default:
        d = uniform(&b->rng, 0, ceiling(&b->cfg, n));
        break;
    }

    if (b->cfg.deadline_ns != 0) {
        uint64_t end = sat_add(b->start_ns, b->cfg.deadline_ns);
        if (now_ns >= end || sat_add(now_ns, d) >= end) return DAIS_ETIMEOUT;
    }
    b->attempts++;
    *delay_ns = d;
    return 0;
}

uint64_t dais_backoff_remaining_ns(const dais_backoff *b, uint64_t now_ns)
{
    if (b->cfg.deadline_ns == 0) return UINT64_MAX;
    uint64_t end = sat_add(b->start_ns, b->cfg.deadline_ns);
    return now_ns >= end ? 0 : end - now_ns;
}

uint32_t dais_backoff_attempts(const dais_backoff *b)
{
    return b->attempts;
}
