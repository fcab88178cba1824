/*
 * Token sampling: greedy, temperature, top-k, top-p, min-p, repetition penalty, with a seeded
 * xorshift RNG. With only temperature and top-p set, the choice made for a given seed is the
 * same as llama2.c's run.c (same RNG, same cut-off rule), which the tests check.
 * A sampler belongs to one sequence; it keeps the recent tokens for the repetition penalty.
 */
#ifndef DAIS_ENGINE_SAMPLER_H
#define DAIS_ENGINE_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct dais_sampler_params {
    float temperature;     /* 0 = greedy (argmax) */
    int32_t top_k;         /* 0 = off */
    float top_p;           /* 1.0 (or <= 0) = off */
    float min_p;           /* 0 = off */
    float repeat_penalty;  /* 1.0 = off */
    int32_t repeat_last_n; /* window for the penalty (default 64) */
    uint64_t seed;
} dais_sampler_params;

void dais_sampler_params_default(dais_sampler_params *p);

typedef struct dais_sampler dais_sampler;

/* Validates params (returns NULL on a value out of range) and allocates the scratch for a
 * vocabulary of n_vocab tokens. */
dais_sampler *dais_sampler_new(const dais_sampler_params *p, int32_t n_vocab);
void dais_sampler_free(dais_sampler *s);

/* Records a token (prompt or generated) for the repetition penalty. */
void dais_sampler_accept(dais_sampler *s, int32_t token);

/* Picks the next token from `logits` (n_vocab values; modified in place). */
int32_t dais_sampler_sample(dais_sampler *s, float *logits);

#endif
