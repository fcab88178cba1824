/*
 * Attention for one (token, head) pair: the inner loop of the forward pass's attention step.
 * out = softmax(scale · q·K[p], p < n_pos) · V, computed with an online (chunked) softmax so
 * it needs no scratch sized by the context length. A portable scalar version and an
 * AVX2/FMA version (attn_avx2.c) that agree within float rounding (tests/unit/engine/
 * test_attn.c states the tolerance); dais_attn_select picks one for an ISA.
 */
#ifndef DAIS_ENGINE_ATTN_H
#define DAIS_ENGINE_ATTN_H

#include "engine/kernels.h"

#include <stdint.h>

/* q: (hd); k, v: n_pos rows of hd floats, row p starting at k + p*stride (and v + p*stride);
 * out: (hd), written (may not alias q, k or v). n_pos >= 1, hd >= 1. */
typedef void (*dais_attn_fn)(const float *q, const float *k, const float *v, int64_t stride,
                             int32_t n_pos, int32_t hd, float scale, float *out);

void dais_attn_head_scalar(const float *q, const float *k, const float *v, int64_t stride,
                           int32_t n_pos, int32_t hd, float scale, float *out);
void dais_attn_head_avx2(const float *q, const float *k, const float *v, int64_t stride,
                         int32_t n_pos, int32_t hd, float scale, float *out);

/* The implementation for `isa` (the scalar one when the ISA has none). */
dais_attn_fn dais_attn_select(enum dais_isa isa);

#endif
