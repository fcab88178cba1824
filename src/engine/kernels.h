/*
 * Numeric kernels for the engine: conversion of every compute type to and from f32, the
 * dot-product kernels (a scalar reference and an AVX2/FMA version of each, selected once at
 * run time from the CPU's features), and the matrix multiplication used by the forward pass.
 *
 * Weight layout follows GGUF: a weight tensor W with ne = {n_in, n_out} stores n_out rows of
 * n_in elements, each row dais_dtype_row_bytes(type, n_in) bytes. Activations are f32.
 * Quantized weights are multiplied against activations quantized on the fly (Q8_0 blocks for
 * Q4_0/Q8_0, Q8_K blocks for the K-quants), as llama.cpp does; F32/F16/BF16 weights use f32
 * activations directly.
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
enum dais_isa dais_kernels_isa(void);      /* detected once, at first use */
void dais_kernels_force_isa(enum dais_isa isa); /* tests and benchmarks: pin an ISA */
const char *dais_kernels_features(void);   /* e.g. "avx2 fma f16c" for logs and metrics */

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
 * x: (n_tok, n_in) f32; y: (n_tok, n_out) f32. Work is split over the pool by rows of W,
 * and each weight row is used for every token while it is in cache, so a batch reads the
 * weights once. Returns 0, or DAIS_EINVAL if n_tok or n_in exceed the scratch size or the
 * type has no kernel. */
int dais_matmul(dais_pool *pool, dais_mm_scratch *s, const dais_matrix *w, const float *x,
                float *y, int n_tok);

/* Dot product of one weight row (n elements of `type`) with an f32 vector — the plain
 * reference path (dequantize then multiply in double), used by tests as the oracle. */
double dais_dot_ref(uint32_t type, const void *row, const float *x, int64_t n);

#endif
