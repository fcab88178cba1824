/*
 * The sampler (see sampler.h). The RNG, the softmax, sample_mult and the top-p rule are written
 * to make exactly the same float operations in the same order as llama2.c's run.c, so a seeded
 * run reproduces its output; the extra steps (penalty, min-p, top-k) are only taken when set.
 */
#include "engine/sampler.h"

#include "common/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SEED_ZERO_REPLACEMENT 0x9E3779B97F4A7C15ull
#define MAX_REPEAT_LAST_N     (1 << 20)

typedef struct prob_index {
    float prob;
    int32_t index;
} prob_index;

struct dais_sampler {
    dais_sampler_params p;
    int32_t n_vocab;
    uint64_t rng;
    prob_index *cand; /* (n_vocab) candidates */
    prob_index *tmp;  /* (n_vocab) merge-sort scratch */
    int32_t *recent;  /* (repeat_last_n) ring of the last tokens */
    int32_t n_recent; /* filled entries */
    int32_t head;     /* next slot to write */
    uint8_t *seen;    /* (n_vocab) marks so a repeated token is penalised once */
};

void dais_sampler_params_default(dais_sampler_params *p)
{
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0;
}

int dais_sampler_params_check(const dais_sampler_params *p)
{
    if (p == NULL || !isfinite(p->temperature) || p->temperature < 0.0f || p->top_k < 0 ||
        !isfinite(p->top_p) || p->top_p > 1.0f || !(p->min_p >= 0.0f && p->min_p <= 1.0f) ||
        !isfinite(p->repeat_penalty) || p->repeat_penalty <= 0.0f || p->repeat_last_n < 0 ||
        p->repeat_last_n > MAX_REPEAT_LAST_N)
        return DAIS_EINVAL;
    return 0;
}

dais_sampler *dais_sampler_new(const dais_sampler_params *p, int32_t n_vocab)
{
    if (dais_sampler_params_check(p) != 0 || n_vocab < 1) return NULL;
    dais_sampler *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->tmp = malloc((size_t)n_vocab * sizeof *s->tmp);
    s->seen = calloc((size_t)n_vocab, 1);
    s->recent = malloc((size_t)(p->repeat_last_n > 0 ? p->repeat_last_n : 1) * sizeof(int32_t));
    if (s->cand == NULL || s->tmp == NULL || s->seen == NULL || s->recent == NULL) {
        dais_sampler_free(s);
        return NULL;
    }
    dais_sampler_reset(s, p->seed);
    return s;
}

void dais_sampler_free(dais_sampler *s)
{
    if (s == NULL) return;
    free(s->recent);
    free(s->seen);
    free(s->tmp);
    free(s->cand);
    free(s);
}

void dais_sampler_reset(dais_sampler *s, uint64_t seed)
{
    s->rng = seed ? seed : SEED_ZERO_REPLACEMENT;
    s->n_recent = 0;
    s->head = 0;
}

void dais_sampler_accept(dais_sampler *s, int32_t token)
{
    if (s->p.repeat_last_n == 0 || token < 0 || token >= s->n_vocab) return;
    s->recent[s->head] = token;
    s->head = (s->head + 1) % s->p.repeat_last_n;
    if (s->n_recent < s->p.repeat_last_n) s->n_recent++;
}

/* ---- run.c's RNG and helpers ----------------------------------------------------------- */

static uint32_t random_u32(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float random_f32(uint64_t *state)
{
    return (float)(random_u32(state) >> 8) / 16777216.0f;
}

static int32_t argmax(const float *x, int32_t n)
{
    int32_t best = 0;
    float bv = x[0];
    for (int32_t i = 1; i < n; i++)
        if (x[i] > bv) {
            bv = x[i];
            best = i;
        }
    return best;
}

static void softmax(float *x, int32_t n)
{
    float max_val = x[0];
    for (int32_t i = 1; i < n; i++)
        if (x[i] > max_val) max_val = x[i];
    float sum = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max_val);
        sum += x[i];
    }
    for (int32_t i = 0; i < n; i++)
        x[i] /= sum;
}

static int32_t sample_mult(const float *p, int32_t n, float coin)
{
    float cdf = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        cdf += p[i];
        if (coin < cdf) return i;
    }
    return n - 1;
}

/* a ranks before b: higher probability, ties by lower index (the order a stable sort of an
 * index-ordered array gives, as run.c's glibc qsort does). */
static inline bool before(const prob_index *a, const prob_index *b)
{
    return a->prob > b->prob || (a->prob == b->prob && a->index < b->index);
}

/* Bottom-up merge sort of c[0..n) by `before`, with tmp (n) as scratch; no allocation. */
static void sort_desc(prob_index *c, prob_index *tmp, int32_t n)
{
    prob_index *src = c, *dst = tmp;
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n;
            int32_t hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                dst[o++] = before(&src[j], &src[i]) ? src[j++] : src[i++];
            while (i < mid)
                dst[o++] = src[i++];
            while (j < hi)
                dst[o++] = src[j++];
        }
        prob_index *t = src;
        src = dst;
        dst = t;
    }
    if (src != c) memcpy(c, src, (size_t)n * sizeof *c);
}

/* Heap of candidates ordered so that the root ranks last (the worst kept so far). */
static void sift_down(prob_index *c, int32_t k, int32_t r)
{
    for (;;) {
        int32_t ch = 2 * r + 1;
        if (ch >= k) return;
        if (ch + 1 < k && before(&c[ch], &c[ch + 1])) ch++;
        if (!before(&c[r], &c[ch])) return;
        prob_index t = c[r];
        c[r] = c[ch];
        c[ch] = t;
        r = ch;
    }
}

/* Moves the k best of c[0..n) into c[0..k) (unordered) in O(n log k). 0 < k < n. */
static void select_top_k(prob_index *c, int32_t n, int32_t k)
{
    for (int32_t r = k / 2 - 1; r >= 0; r--)
        sift_down(c, k, r);
    for (int32_t i = k; i < n; i++) {
        if (before(&c[i], &c[0])) {
            c[0] = c[i];
            sift_down(c, k, 0);
        }
    }
}

/* run.c's sample_topp: drop tokens below (1 - topp) / (n - 1) (they cannot be in the
 * nucleus), sort, cut where the cumulative probability first exceeds topp, draw. */
static int32_t sample_topp(dais_sampler *s, const float *p, float topp, float coin)
{
    int32_t n = s->n_vocab, n0 = 0;
    const float cutoff = (1.0f - topp) / (float)(n - 1);
    for (int32_t i = 0; i < n; i++)
        if (p[i] >= cutoff) {
            s->cand[n0].index = i;
            s->cand[n0].prob = p[i];
            n0++;
        }
    if (n0 == 0) /* only when topp < 1/n and all tokens are nearly equal */
        return argmax(p, n);
    sort_desc(s->cand, s->tmp, n0);
    float cumulative = 0.0f;
    int32_t last = n0 - 1;
    for (int32_t i = 0; i < n0; i++) {
        cumulative += s->cand[i].prob;
        if (cumulative > topp) {
            last = i;
            break;
        }
    }
    float r = coin * cumulative;
    float cdf = 0.0f;
    for (int32_t i = 0; i <= last; i++) {
        cdf += s->cand[i].prob;
        if (r < cdf) return s->cand[i].index;
    }
    return s->cand[last].index;
}

/* min-p, top-k and top-p together: the candidates left after min-p, the best top_k of them,
 * then the nucleus of that renormalised set. */
static int32_t sample_filtered(dais_sampler *s, const float *p, float coin)
{
    int32_t n = s->n_vocab, n0 = 0;
    float pmax = p[argmax(p, n)];
    float thr = s->p.min_p > 0.0f ? s->p.min_p * pmax : -1.0f;
    for (int32_t i = 0; i < n; i++)
        if (p[i] >= thr) {
            s->cand[n0].index = i;
            s->cand[n0].prob = p[i];
            n0++;
        }
    if (n0 == 0) /* NaN probabilities */
        return argmax(p, n);
    if (s->p.top_k > 0 && s->p.top_k < n0) {
        select_top_k(s->cand, n0, s->p.top_k);
        n0 = s->p.top_k;
    }
    sort_desc(s->cand, s->tmp, n0);
    float mass = 0.0f;
    for (int32_t i = 0; i < n0; i++)
        mass += s->cand[i].prob;
    int32_t last = n0 - 1;
    float cumulative = 0.0f;
    bool topp = s->p.top_p > 0.0f && s->p.top_p < 1.0f;
    for (int32_t i = 0; i < n0; i++) {
        cumulative += s->cand[i].prob;
        if (topp && cumulative > s->p.top_p * mass) {
            last = i;
            break;
        }
    }
    float r = coin * cumulative;
    float cdf = 0.0f;
    for (int32_t i = 0; i <= last; i++) {
        cdf += s->cand[i].prob;
        if (r < cdf) return s->cand[i].index;
    }
    return s->cand[last].index;
}

static void apply_penalty(dais_sampler *s, float *logits)
{
    float pen = s->p.repeat_penalty;
    for (int32_t i = 0; i < s->n_recent; i++) {
        int32_t t = s->recent[i];
        if (s->seen[t]) continue;
        s->seen[t] = 1;
        logits[t] = logits[t] > 0.0f ? logits[t] / pen : logits[t] * pen;
    }
    for (int32_t i = 0; i < s->n_recent; i++)
        s->seen[s->recent[i]] = 0;
}

int32_t dais_sampler_sample(dais_sampler *s, float *logits)
{
    int32_t n = s->n_vocab;
    if (s->p.repeat_penalty != 1.0f && s->n_recent > 0) apply_penalty(s, logits);
    if (s->p.temperature == 0.0f || n == 1) return argmax(logits, n);
    for (int32_t q = 0; q < n; q++)
        logits[q] /= s->p.temperature;
    softmax(logits, n);
    float coin = random_f32(&s->rng);
    bool topp = s->p.top_p > 0.0f && s->p.top_p < 1.0f;
    if ((s->p.top_k == 0 || s->p.top_k >= n) && s->p.min_p == 0.0f) {
        if (!topp) return sample_mult(logits, n, coin);
        return sample_topp(s, logits, s->p.top_p, coin);
    }
    return sample_filtered(s, logits, coin);
}
