/*
 * Internals shared by kernels.c (dispatch, conversions, reference quantizers, the matmul
 * driver), kernels_scalar.c (the portable twins) and kernels_avx2.c (AVX2/FMA/F16C):
 * the GGML block layouts, the layouts of the activations quantized for a matmul, and the
 * table of functions each instruction set provides. Not part of the engine's API; tests
 * include it to compare the two implementations directly.
 */
#ifndef DAIS_ENGINE_KERNELS_INTERNAL_H
#define DAIS_ENGINE_KERNELS_INTERNAL_H

#include "engine/dtype.h"

#include <stddef.h>
#include <stdint.h>

/* ---- GGML block layouts (bit-exact with ggml-common.h) ----------------------------------- */

#define QK8_0 32
#define QK4_0 32
#define QK_K  256

typedef struct {
    uint16_t d;       /* f16 scale */
    int8_t qs[QK8_0]; /* value = qs[i] * d */
} dais__blk_q8_0;

typedef struct {
    uint16_t d;            /* f16 scale */
    uint8_t qs[QK4_0 / 2]; /* element i < 16: low nibble of qs[i]; i >= 16: high nibble of
                            * qs[i - 16]; value = (nibble - 8) * d */
} dais__blk_q4_0;

typedef struct {
    uint16_t d;           /* f16 super-block scale of the sub-block scales */
    uint16_t dmin;        /* f16 super-block scale of the sub-block mins */
    uint8_t scales[12];   /* 8 six-bit scales and 8 six-bit mins, packed (see q4k_scales) */
    uint8_t qs[QK_K / 2]; /* per 64 elements: 32 bytes, low nibbles = first 32, high = next */
} dais__blk_q4_K;

typedef struct {
    uint8_t ql[QK_K / 2];     /* low 4 bits */
    uint8_t qh[QK_K / 4];     /* high 2 bits */
    int8_t scales[QK_K / 16]; /* one signed scale per 16 elements */
    uint16_t d;               /* f16 super-block scale */
} dais__blk_q6_K;

typedef struct {
    float d;                  /* scale */
    int8_t qs[QK_K];          /* value = qs[i] * d */
    int16_t bsums[QK_K / 16]; /* sum of each 16 consecutive qs */
} dais__blk_q8_K;

_Static_assert(sizeof(dais__blk_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(dais__blk_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(dais__blk_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(dais__blk_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(dais__blk_q8_K) == 292, "q8_K block");

/* Unpacks the 8 six-bit scales and 8 six-bit mins of a Q4_K block (ggml's
 * get_scale_min_k4 for j = 0..7, done four at a time on 32-bit words). */
static inline void dais__q4k_scales(const uint8_t s[12], uint8_t sc[8], uint8_t mn[8])
{
    uint32_t a0 =
        (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
    uint32_t a1 =
        (uint32_t)s[4] | (uint32_t)s[5] << 8 | (uint32_t)s[6] << 16 | (uint32_t)s[7] << 24;
    uint32_t a2 =
        (uint32_t)s[8] | (uint32_t)s[9] << 8 | (uint32_t)s[10] << 16 | (uint32_t)s[11] << 24;
    uint32_t w[4];
    w[0] = a0 & 0x3f3f3f3fu;                                           /* scales 0..3 */
    w[1] = (a2 & 0x0f0f0f0fu) | ((a0 >> 6) & 0x03030303u) << 4;        /* scales 4..7 */
    w[2] = a1 & 0x3f3f3f3fu;                                           /* mins 0..3 */
    w[3] = ((a2 >> 4) & 0x0f0f0f0fu) | ((a1 >> 6) & 0x03030303u) << 4; /* mins 4..7 */
    for (int i = 0; i < 4; i++) {
        sc[i] = (uint8_t)(w[0] >> (8 * i));
        sc[i + 4] = (uint8_t)(w[1] >> (8 * i));
        mn[i] = (uint8_t)(w[2] >> (8 * i));
        mn[i + 4] = (uint8_t)(w[3] >> (8 * i));
    }
}

/* ---- activations quantized for a matmul ---------------------------------------------------
 * One row per token, `x_stride` bytes apart (a multiple of 64), n_in elements each:
 *   Q8A (for Q4_0/Q8_0 weights), nb = n_in/32 blocks, nb8 = nb rounded up to 8:
 *       int8 qs[n_in] | float d[nb8] at +d_off | float s[nb8] at +s_off
 *       (s = d * sum of the block's qs, times -8 in the paired layout; entries for blocks
 *       nb..nb8-1 are zero, so kernels can load the scales of 8 blocks at a time)
 *     For Q4_0 weights the row is "paired" so that one 32-byte load of weight nibbles serves
 *     two blocks: the qs of blocks 2p and 2p+1 (A, B) take bytes 64p.. as A[0..16) B[0..16)
 *     A[16..32) B[16..32) (a last unpaired block stays in natural order), and d/s of each
 *     group of 8 blocks are stored in block order 0 2 4 6 1 3 5 7 (see dais__q8p_*).
 *   Q8KA (for Q4_K/Q6_K weights), nb = n_in/256 blocks:
 *       int8 qs[n_in] | float d[nb] at +d_off | int16 bsums[16*nb] at +s_off (sums of 16)
 * value = qs[i] * d[i / block]. Both ISAs produce these bytes identically
 * (round to nearest even of x * (127 / amax)).
 * F32/F16/BF16 weights read the caller's f32 activations directly (x_stride = 4 * n_in). */

/* Paired layout: byte offset of half h (elements 16h..16h+15) of block b in a row of nb. */
static inline int64_t dais__q8p_half(int64_t b, int64_t nb, int h)
{
    if ((nb & 1) && b == nb - 1) return 32 * b + 16 * h; /* the unpaired last block */
    return 64 * (b / 2) + 16 * (b & 1) + 32 * h;
}

/* Paired layout: index of block b's entry in the d and s arrays. */
static inline int64_t dais__q8p_pos(int64_t b)
{
    int64_t k = b & 7;
    return (b & ~(int64_t)7) + ((k & 1) ? 4 + (k >> 1) : (k >> 1));
}

/* Quantizes one token row of n elements (a multiple of 32 / 256). `paired` selects the
 * paired Q8A layout; a row may be quantized in pieces that start at multiples of 64 blocks. */
typedef void (*dais__quant_q8a_fn)(const float *x, int64_t n, int8_t *qs, float *d, float *s,
                                   int paired);
typedef void (*dais__quant_q8ka_fn)(const float *x, int64_t n, int8_t *qs, float *d,
                                    int16_t *bsums);

/* One matmul as the per-ISA kernels see it. */
typedef struct dais__mm {
    int64_t n_in;
    const uint8_t *w; /* (n_out, w_stride bytes) weight rows */
    size_t w_stride;
    const uint8_t *x; /* (n_tok, x_stride bytes) activations, layout by weight type */
    size_t x_stride;
    size_t d_off, s_off; /* offsets of the scale and sum arrays inside a quantized row */
    float *y;            /* (n_tok, y_stride) outputs */
    int64_t y_stride;
    int n_tok;
} dais__mm;

/* Computes rows [r, r + nr) for tokens [t, t + nt). nr <= DAIS__RMAX, nt <= DAIS__TMAX.
 * Every (row, token) output is computed by the same sequence of operations whatever nr and
 * nt are, so batched and one-token results are bit-identical. */
typedef void (*dais__tile_fn)(const dais__mm *m, int64_t r, int t, int nr, int nt);

#define DAIS__RMAX 4
#define DAIS__TMAX 4

/* The tiles of one weight type: rb x tb is the tile used for batches, rd x 1 for one token;
 * fn[nr][nt] must exist for nr in {1, rb, rd} and nt in 1..tb. */
typedef struct dais__tiles {
    int rb, tb, rd;
    dais__tile_fn fn[DAIS__RMAX + 1][DAIS__TMAX + 1];
} dais__tiles;

/* What one instruction set provides. */
typedef struct dais__isa_impl {
    const char *name;
    dais__quant_q8a_fn quant_q8a;
    dais__quant_q8ka_fn quant_q8ka;
    const dais__tiles *tiles[DAIS_DTYPE_MAX]; /* NULL: no kernel for that weight type */
    /* Reads n bytes (a multiple of 128, 32-byte aligned) and returns a value that depends on
     * all of them, so the reads cannot be optimised away. Used by the bandwidth probe. */
    uint64_t (*read_sum)(const void *p, size_t n);
    /* Row conversions (tests compare them with the scalar ones). */
    void (*f16_to_f32_row)(const uint16_t *src, float *dst, int64_t n);
    void (*f32_to_f16_row)(const float *src, uint16_t *dst, int64_t n);
} dais__isa_impl;

extern const dais__isa_impl dais__impl_scalar;
extern const dais__isa_impl dais__impl_avx2; /* only on x86-64 builds */

/* The implementation in use (after detection or dais_kernels_force_isa). */
const dais__isa_impl *dais__kernels_impl(void);

/* Byte sizes of one quantized activation row (multiple of 64) and the offsets inside it
 * (qs and d at 64 bytes, s at 32 bytes alignment). */
void dais__q8a_layout(int64_t n_in, size_t *stride, size_t *d_off, size_t *s_off);
void dais__q8ka_layout(int64_t n_in, size_t *stride, size_t *d_off, size_t *s_off);

#endif
