/*
 * Token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty, with a seeded
 * xorshift RNG. With only temperature and top-p set, the choice made for a given seed is the
 * same as llama2.c's run.c (same RNG, same softmax, same top-p cut-off rule, and plain
 * multinomial sampling when top-p is off), which the tests check on stories260K.
 * A sampler belongs to one sequence (one thread at a time); it keeps the recent tokens for the
 * repetition penalty. Sampling never allocates: all scratch is sized at dais_sampler_new.
 *
 * Order of the steps: repetition penalty on the logits (each distinct token among the last
 * repeat_last_n: positive logits divided by the penalty, negative ones multiplied); then
 * greedy argmax when temperature is 0; else logits / temperature, softmax, min-p (keep tokens
 * with p >= min_p * p_max), top-k, top-p over what is left (renormalised), and one draw.
 */
#ifndef DAIS_ENGINE_SAMPLER_H
#define DAIS_ENGINE_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct dais_sampler_params {
    float temperature;     /* 0 = greedy (argmax); default 0.8 */
    int32_t top_k;         /* 0 = off; default 40 */
    float top_p;           /* 1.0 (or <= 0) = off; default 0.95 */
    float min_p;           /* 0 = off; default 0.05 */
    float repeat_penalty;  /* 1.0 = off (the default) */
    int32_t repeat_last_n; /* window for the penalty (default 64; 0 = off) */
    uint64_t seed;         /* RNG seed; 0 is replaced by a fixed non-zero constant (xorshift
                              cannot leave state 0), so every seed is reproducible */
} dais_sampler_params;

/* Fills p with the defaults above (seed 0). */
void dais_sampler_params_default(dais_sampler_params *p);

/* Checks ranges: temperature finite >= 0, top_k >= 0, top_p finite <= 1, min_p in [0, 1],
 * repeat_penalty finite > 0, repeat_last_n in [0, 1 << 20]. 0 or DAIS_EINVAL. */
int dais_sampler_params_check(const dais_sampler_params *p);

typedef struct dais_sampler dais_sampler;

/* Validates params (returns NULL on a value out of range) and allocates the scratch for a
 * vocabulary of n_vocab >= 1 tokens. Returns an owned sampler (free with dais_sampler_free). */
dais_sampler *dais_sampler_new(const dais_sampler_params *p, int32_t n_vocab);
void dais_sampler_free(dais_sampler *s); /* accepts NULL */

/* Forgets the recent tokens and restarts the RNG from `seed` (same rule for 0 as above). */
void dais_sampler_reset(dais_sampler *s, uint64_t seed);

/* Records a token (prompt or generated) for the repetition penalty. Ids outside the
 * vocabulary are ignored. */
void dais_sampler_accept(dais_sampler *s, int32_t token);

/* Picks the next token from `logits` (n_vocab values; modified in place: they end as
 * penalised logits when greedy, else as probabilities). */
int32_t dais_sampler_sample(dais_sampler *s, float *logits);

#endif
