/*
 * Numeric kernels for the engine: conversion of every compute type to and from f32, the
 * dot-product kernels (a scalar reference and an AVX2/FMA version of each, selected once at
 * run time from the CPU's features), and the matrix multiplication used by the forward pass.
 *
 * Weight layout follows GGUF: a weight tensor W with ne = {n_in, n_out} stores n_out rows of
 * n_in elements, each row dais_dtype_row_bytes(type, n_in) bytes. Activations are f32.
 * Quantized weights are multiplied against activations quantized on the fly (8-bit blocks of
 * 32 with an f32 scale for Q4_0/Q8_0, Q8_K-style blocks of 256 for the K-quants), as llama.cpp
 * does; F32/F16/BF16 weights use f32 activations directly.
 *
 * Guarantees (tested in tests/unit/engine/test_kernels.c):
 *  - scalar and AVX2 results differ by at most 2e-6 * sum_i |w_i * x_i| (same integer block
 *    sums, different float summation order); against dais_dot_ref the quantized types are
 *    within 4e-3 * |w| * |x| (the 8-bit activations), the float types within 1e-6 * |w| * |x|;
 *  - within one ISA, results are bit-identical whatever the batch size, the position of a
 *    token in the batch and the number of threads.
 * Reference quantizer RMS error / RMS on N(0,1) data: q8_0 0.0053, q4_0 0.086, q4_K 0.072,
 * q6_K 0.017, f16 0.0002, bf16 0.0017.
 */
#ifndef DAIS_ENGINE_KERNELS_H
#define DAIS_ENGINE_KERNELS_H

#include "engine/dtype.h"
#include "engine/threadpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* IEEE half / bfloat16 conversions. */
float dais_f16_to_f32(uint16_t h);
uint16_t dais_f32_to_f16(float f);
float dais_bf16_to_f32(uint16_t h);
uint16_t dais_f32_to_bf16(float f); /* round to nearest even */

/* Converts n elements (a whole number of blocks) of a compute type to f32. */
void dais_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Reference quantizer: f32 → type (any compute type, plus Q8_K). Used to write synthetic
 * models and in tests; not on the hot path. n is a whole number of blocks. */
void dais_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* Which implementation the dispatcher uses. */
enum dais_isa { DAIS_ISA_SCALAR = 0, DAIS_ISA_AVX2 = 1 };
enum dais_isa dais_kernels_isa(void); /* detected once, at first use */
/* Tests and benchmarks: pin an ISA for the whole process (AVX2 is refused, leaving scalar,
 * when the CPU lacks avx2, fma or f16c). Not meant to be called while matmuls run. */
void dais_kernels_force_isa(enum dais_isa isa);
const char *dais_kernels_features(void); /* e.g. "avx2 fma f16c" for logs and metrics */

/* A weight matrix as the kernels see it. */
typedef struct dais_matrix {
    uint32_t type;    /* enum dais_dtype, a compute type */
    int64_t n_in;     /* elements per row (ne[0]) */
    int64_t n_out;    /* rows (ne[1]) */
    const void *data; /* n_out rows of dais_dtype_row_bytes(type, n_in) bytes */
} dais_matrix;

/* Scratch for matmul (the quantized copy of the activations). Sized once for the largest
 * n_in and batch; reused so the token loop never allocates. */
typedef struct dais_mm_scratch dais_mm_scratch;
dais_mm_scratch *dais_mm_scratch_new(int64_t max_n_in, int max_tokens);
void dais_mm_scratch_free(dais_mm_scratch *s);

/* y = x · Wᵀ for a batch: for t < n_tok, r < n_out: y[t*n_out + r] = dot(W row r, x[t*n_in ..]).
 * x: (n_tok, n_in) f32; y: (n_tok, n_out) f32 (no alignment needed; y must not overlap x).
 * Work is split over the pool (NULL: the calling thread alone) by contiguous shares of the
 * rows of W, so each thread streams its own part of the weights; a batch is blocked so that
 * each weight block is used for every token while it is in cache, so a batch reads the
 * weights once. Call from the thread that drives the pool; `s` belongs to that caller.
 * Returns 0, or DAIS_EINVAL if an argument is NULL, n_tok is < 1 or exceeds the scratch,
 * n_in exceeds the scratch or is not a whole number of blocks, or the type has no kernel. */
int dais_matmul(dais_pool *pool, dais_mm_scratch *s, const dais_matrix *w, const float *x, float *y,
                int n_tok);

/* Dot product of one weight row (n elements of `type`) with an f32 vector — the plain
 * reference path (dequantize then multiply in double), used by tests as the oracle. */
double dais_dot_ref(uint32_t type, const void *row, const float *x, int64_t n);

#endif
