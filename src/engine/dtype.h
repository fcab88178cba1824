/*
 * Tensor element types, numbered exactly as GGML/GGUF number them, so a type id read from a
 * GGUF file indexes this table directly. Every type the format defines is described (block
 * size and bytes per block), so the loader can validate the extent of any tensor and
 * `dais model info` can show any file; `compute` marks the ones the engine can run.
 */
#ifndef DAIS_ENGINE_DTYPE_H
#define DAIS_ENGINE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dais_dtype {
    DAIS_F32 = 0,
    DAIS_F16 = 1,
    DAIS_Q4_0 = 2,
    DAIS_Q4_1 = 3,
    DAIS_Q5_0 = 6,
    DAIS_Q5_1 = 7,
    DAIS_Q8_0 = 8,
    DAIS_Q8_1 = 9,
    DAIS_Q2_K = 10,
    DAIS_Q3_K = 11,
    DAIS_Q4_K = 12,
    DAIS_Q5_K = 13,
    DAIS_Q6_K = 14,
    DAIS_Q8_K = 15,
    DAIS_IQ2_XXS = 16,
    DAIS_IQ2_XS = 17,
    DAIS_IQ3_XXS = 18,
    DAIS_IQ1_S = 19,
    DAIS_IQ4_NL = 20,
    DAIS_IQ3_S = 21,
    DAIS_IQ2_S = 22,
    DAIS_IQ4_XS = 23,
    DAIS_I8 = 24,
    DAIS_I16 = 25,
    DAIS_I32 = 26,
    DAIS_I64 = 27,
    DAIS_F64 = 28,
    DAIS_IQ1_M = 29,
    DAIS_BF16 = 30,
    DAIS_TQ1_0 = 34,
    DAIS_TQ2_0 = 35,
    DAIS_MXFP4 = 39,
    DAIS_DTYPE_MAX = 40 /* one past the largest id in the table */
};

typedef struct dais_dtype_info {
    const char *name; /* "q4_K" etc.; NULL for ids the format does not define */
    uint32_t block;   /* elements per block */
    uint32_t bytes;   /* bytes per block */
    bool compute;     /* the engine has kernels for it (weights of this type can run) */
} dais_dtype_info;

/* The table entry for a type id, or NULL when the id is not a defined type. */
const dais_dtype_info *dais_dtype_get(uint32_t type);

/* Name for printing; "unknown" for undefined ids. */
const char *dais_dtype_name(uint32_t type);

/* Type id for a name ("q8_0", "Q4_K", "f16" … case-insensitive); -1 if unknown. */
int dais_dtype_from_name(const char *name);

/* Bytes taken by `n` elements of `type`; 0 if the type is undefined or n is not a whole
 * number of blocks; sets *overflow (when not NULL) if the size does not fit in size_t. */
size_t dais_dtype_row_bytes(uint32_t type, uint64_t n, bool *overflow);

#endif
