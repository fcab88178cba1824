/*
 * AVX2/FMA/F16C kernels (compiled with -mavx2 -mfma -mf16c; called only after the run-time
 * check in kernels.c). The scalar twins are in kernels_scalar.c.
 *
 * Every weight type has one tile function body, instantiated for each (rows R, tokens T)
 * shape the driver uses. A tile unpacks each weight block once and multiplies it against T
 * tokens' activations, with its own accumulators per (row, token), so a batch reads the
 * weights once and the arithmetic for one (row, token) pair is the same whatever R and T are
 * (batched and one-token results are bit-identical).
 *
 * What makes the one-token case (decode) run at memory speed: one row per tile, so each
 * thread reads one sequential stream; software prefetch DAIS_PF_DIST bytes ahead on it (the
 * out-of-order window alone keeps too few misses in flight); scales handled 8 blocks at a
 * time (Q4_0/Q8_0) and two accumulators per (row, token) against the FMA latency.
 *
 * Integer dot products follow llama.cpp's technique: maddubs (u8 x s8 -> s16 pairs) then
 * madd against ones or the sub-block scales (-> s32). Unsigned weight levels (Q4_0 nibbles,
 * Q4_K nibbles, Q6_K six-bit levels) go in maddubs' unsigned operand directly and the
 * level offset is removed with the activation block sums computed at quantization time;
 * Q8_0's signed weights use the sign trick (|w| and sign(x, w)).
 */
#if defined(__x86_64__)

#include "engine/kernels.h"
#include "engine/kernels_internal.h"

#include <immintrin.h>
#include <string.h>

#define ALWAYS_INLINE inline __attribute__((always_inline))
#define UNROLL        _Pragma("GCC unroll 8")

/* ---- helpers ------------------------------------------------------------------------------- */

static ALWAYS_INLINE float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static ALWAYS_INLINE int32_t hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

static ALWAYS_INLINE float f16_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

#define ROW(m, r)  ((m)->w + (size_t)(r) * (m)->w_stride)
#define XROW(m, t) ((m)->x + (size_t)(t) * (m)->x_stride)

/* Software prefetch distance on each weight-row stream. A quantized kernel spends a few cycles
 * per block, so the out-of-order window alone keeps too few cache misses in flight to reach
 * DRAM bandwidth; prefetching this far ahead does. Measured with bench_kernels. */
#ifndef DAIS_PF_DIST
#define DAIS_PF_DIST 2048
#endif

/* Prefetches the lines of [p + DAIS_PF_DIST, p + DAIS_PF_DIST + bytes). */
static ALWAYS_INLINE void prefetch_ahead(const uint8_t *p, int bytes)
{
    for (int o = 0; o < bytes; o += 64)
        _mm_prefetch((const char *)(p + DAIS_PF_DIST + o), _MM_HINT_T0);
}

/* ---- activation quantization (bit-identical to the scalar twin) ---------------------------- */

/* Quantizes 32 floats with multiplier id: returns the 32 int8 in order, and in i32lo, i32hi
 * 8-lane int32 partial sums of elements 0..15 and 16..31. */
static ALWAYS_INLINE __m256i q8_32(const float *x, __m256 id, __m256i *i32lo, __m256i *i32hi)
{
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), id));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), id));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), id));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), id));
    *i32lo = _mm256_add_epi32(i0, i1); /* elements 0..15 */
    *i32hi = _mm256_add_epi32(i2, i3); /* elements 16..31 */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static ALWAYS_INLINE __m256 absmax_acc(__m256 acc, const float *x, int n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int i = 0; i < n; i += 8)
        acc = _mm256_max_ps(acc, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    return acc;
}

static ALWAYS_INLINE float hmax_ps(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static void quant_q8a(const float *x, int64_t n, int8_t *qs, float *d, float *s, int paired)
{
    const int64_t nb = n / QK8_0;
    for (int64_t b = 0; b < nb; b++) {
        const float *v = x + b * QK8_0;
        float amax = hmax_ps(absmax_acc(_mm256_setzero_ps(), v, QK8_0));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        int64_t pos = paired ? dais__q8p_pos(b) : b;
        d[pos] = amax / 127.0f;
        __m256i lo, hi;
        __m256i q = q8_32(v, _mm256_set1_ps(id), &lo, &hi);
        if (paired) {
            _mm_storeu_si128((__m128i *)(qs + dais__q8p_half(b, nb, 0)), _mm256_castsi256_si128(q));
            _mm_storeu_si128((__m128i *)(qs + dais__q8p_half(b, nb, 1)),
                             _mm256_extracti128_si256(q, 1));
        } else {
            _mm256_storeu_si256((__m256i *)(qs + b * QK8_0), q);
        }
        s[pos] = (paired ? -8.0f * d[pos] : d[pos]) * (float)hsum_epi32(_mm256_add_epi32(lo, hi));
    }
}

static void quant_q8ka(const float *x, int64_t n, int8_t *qs, float *d, int16_t *bsums)
{
    for (int64_t b = 0; b < n / QK_K; b++) {
        const float *v = x + b * QK_K;
        float amax = hmax_ps(absmax_acc(_mm256_setzero_ps(), v, QK_K));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[b] = amax / 127.0f;
        __m256 vid = _mm256_set1_ps(id);
        for (int c = 0; c < QK_K / 32; c++) {
            __m256i lo, hi;
            __m256i q = q8_32(v + 32 * c, vid, &lo, &hi);
            _mm256_storeu_si256((__m256i *)(qs + b * QK_K + 32 * c), q);
            bsums[b * 16 + 2 * c] = (int16_t)hsum_epi32(lo);
            bsums[b * 16 + 2 * c + 1] = (int16_t)hsum_epi32(hi);
        }
    }
}

/* ---- Q4_0 and Q8_0 x Q8A ---------------------------------------------------------------------
 * Blocks go in groups of 8: the 8 weight scales of a row are converted at once (F16C) and
 * multiplied by the 8 activation scales of a token in one instruction, so the per-block work
 * is the integer dot product, one conversion and one FMA. */

static ALWAYS_INLINE uint64_t ld16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

/* The f16 scales of g <= 8 consecutive blocks `stride` bytes apart, in lane order 0..7, or
 * 0 2 4 6 1 3 5 7 when `paired`; missing blocks give 0. For a whole group the halves are
 * assembled in two general-purpose registers (the empty asm statements keep the compiler from
 * turning that into slower vector inserts): the integer ALUs are otherwise idle here, while
 * eight vpinsrw would compete with the dot products for the vector pipes. */
static ALWAYS_INLINE __m256 f16x8_gather(const uint8_t *p, size_t stride, int g, const int paired)
{
    if (g == 8) {
        const size_t o1 = paired ? 2 : 1, o2 = paired ? 4 : 2, o3 = paired ? 6 : 3;
        const size_t o4 = paired ? 1 : 4, o5 = paired ? 3 : 5, o6 = paired ? 5 : 6;
        uint64_t lo = ld16(p), hi = ld16(p + o4 * stride);
        __asm__("" : "+r"(lo), "+r"(hi));
        lo |= ld16(p + o1 * stride) << 16;
        hi |= ld16(p + o5 * stride) << 16;
        __asm__("" : "+r"(lo), "+r"(hi));
        lo |= ld16(p + o2 * stride) << 32;
        hi |= ld16(p + o6 * stride) << 32;
        __asm__("" : "+r"(lo), "+r"(hi));
        lo |= ld16(p + o3 * stride) << 48;
        hi |= ld16(p + 7 * stride) << 48;
        __asm__("" : "+r"(lo), "+r"(hi));
        return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
    }
    uint16_t h[8] = {0};
    for (int j = 0; j < g; j++)
        h[paired ? dais__q8p_pos(j) : j] = (uint16_t)ld16(p + (size_t)j * stride);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* Q4_0: the activations are in the paired layout, so blocks go two at a time: one 32-byte
 * vector holds the nibbles of blocks A and B ([A | B] per 128-bit lane), its low nibbles meet
 * activation bytes A[0..16) B[0..16), its high nibbles A[16..32) B[16..32), and the two
 * products add in 16 bits (at most 2 * 2 * 15 * 127 per lane). The 8 weight scales of a group
 * are loaded in block order 0 2 4 6 1 3 5 7, like the activation scales, so the scales of
 * pair p sit in lane p of each 128-bit half and an in-lane permute broadcasts them. */
/* Blocks b and b + 1 (pair p of their group) for every (row, token) of the tile. */
static ALWAYS_INLINE void q4_0_pair(const uint8_t *const *wr, const uint8_t *const *xr, int64_t b,
                                    const int R, const int T, __m256 acc[][DAIS__TMAX],
                                    __m256 psc[][DAIS__TMAX][4], int p)
{
    const size_t bs = sizeof(dais__blk_q4_0);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    UNROLL for (int i = 0; i < R; i++)
    {
        const uint8_t *blk = wr[i] + (size_t)b * bs + 2;
        __m256i v =
            _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)blk)),
                                    _mm_loadu_si128((const __m128i *)(blk + bs)), 1);
        __m256i lo = _mm256_and_si256(v, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        UNROLL for (int k = 0; k < T; k++)
        {
            const __m256i *y = (const __m256i *)((const int8_t *)xr[k] + b * QK4_0);
            __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_load_si256(y)),
                                           _mm256_maddubs_epi16(hi, _mm256_load_si256(y + 1)));
            __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
            acc[i][k] = _mm256_fmadd_ps(f, psc[i][k][p], acc[i][k]);
        }
    }
}

/* Two accumulators per (row, token), even pairs in one and odd pairs in the other, so one
 * row alone is not bound by the FMA latency; every tile shape uses the same order. */
static ALWAYS_INLINE void q4_0_tile(const dais__mm *m, int64_t r, int t, const int R, const int T)
{
    const int64_t nb = m->n_in / QK4_0;
    const size_t bs = sizeof(dais__blk_q4_0);
    const uint8_t *wr[DAIS__RMAX];
    const uint8_t *xr[DAIS__TMAX];
    __m256 acc0[DAIS__RMAX][DAIS__TMAX], acc1[DAIS__RMAX][DAIS__TMAX];
    /* per (row, token) and pair p of the group: [scale of block 2p x4 | of block 2p+1 x4] */
    __m256 psc[DAIS__RMAX][DAIS__TMAX][4];
    UNROLL for (int i = 0; i < R; i++) wr[i] = ROW(m, r + i);
    UNROLL for (int k = 0; k < T; k++) xr[k] = XROW(m, t + k);
    UNROLL for (int i = 0; i < R; i++) UNROLL for (int k = 0; k < T; k++)
    {
        acc0[i][k] = _mm256_setzero_ps();
        acc1[i][k] = _mm256_setzero_ps();
    }
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);

    for (int64_t b0 = 0; b0 < nb; b0 += 8) {
        const int g = nb - b0 < 8 ? (int)(nb - b0) : 8;
        UNROLL for (int i = 0; i < R; i++)
        {
            prefetch_ahead(wr[i] + b0 * bs, 8 * (int)bs);
            __m256 dw = f16x8_gather(wr[i] + b0 * bs, bs, g, 1);
            UNROLL for (int k = 0; k < T; k++)
            {
                __m256 sc =
                    _mm256_mul_ps(dw, _mm256_load_ps((const float *)(xr[k] + m->d_off) + b0));
                /* nibbles are stored +8: s holds -8 * dx * (sum of the block's qs) */
                acc0[i][k] = _mm256_fmadd_ps(
                    dw, _mm256_load_ps((const float *)(xr[k] + m->s_off) + b0), acc0[i][k]);
                psc[i][k][0] = _mm256_permute_ps(sc, 0x00);
                psc[i][k][1] = _mm256_permute_ps(sc, 0x55);
                psc[i][k][2] = _mm256_permute_ps(sc, 0xaa);
                psc[i][k][3] = _mm256_permute_ps(sc, 0xff);
            }
        }
        if (g == 8 && T == 1) { /* decode: unrolled, the pair scales stay in registers */
            q4_0_pair(wr, xr, b0, R, T, acc0, psc, 0);
            q4_0_pair(wr, xr, b0 + 2, R, T, acc1, psc, 1);
            q4_0_pair(wr, xr, b0 + 4, R, T, acc0, psc, 2);
            q4_0_pair(wr, xr, b0 + 6, R, T, acc1, psc, 3);
        } else {
            int p = 0;
            for (; p + 1 < g / 2; p += 2) {
                q4_0_pair(wr, xr, b0 + 2 * p, R, T, acc0, psc, p);
                q4_0_pair(wr, xr, b0 + 2 * p + 2, R, T, acc1, psc, p + 1);
            }
            if (p < g / 2) q4_0_pair(wr, xr, b0 + 2 * p, R, T, acc0, psc, p);
        }
        if (g & 1) { /* the unpaired last block of the row, natural order */
            const int64_t b = b0 + g - 1;
            const __m256i shift = _mm256_set_epi64x(4, 4, 0, 0);
            UNROLL for (int i = 0; i < R; i++)
            {
                const uint8_t *blk = wr[i] + (size_t)b * bs + 2;
                __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)blk));
                __m256i w = _mm256_and_si256(_mm256_srlv_epi64(v, shift), m4);
                UNROLL for (int k = 0; k < T; k++)
                {
                    __m256i x =
                        _mm256_load_si256((const __m256i *)((const int8_t *)xr[k] + b * QK4_0));
                    __m256 f =
                        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones));
                    /* the low half of pair (g-1)/2 holds this block's scale */
                    __m256 s = _mm256_permute2f128_ps(psc[i][k][(g - 1) / 2],
                                                      psc[i][k][(g - 1) / 2], 0x00);
                    acc1[i][k] = _mm256_fmadd_ps(f, s, acc1[i][k]);
                }
            }
        }
    }
    UNROLL for (int i = 0; i < R; i++) UNROLL for (int k = 0; k < T; k++)
        m->y[(int64_t)(t + k) * m->y_stride + r + i] =
        hsum_ps(_mm256_add_ps(acc0[i][k], acc1[i][k]));
}

/* Q8_0: signed weights, so the sign trick (|w| times x with w's sign). Two accumulators per
 * (row, token), even blocks and odd blocks, as for Q4_0. */
static ALWAYS_INLINE void q8_0_block(const uint8_t *const *wr, const uint8_t *const *xr, int64_t b,
                                     const int R, const int T, __m256 acc[][DAIS__TMAX],
                                     float sc[][DAIS__TMAX][8], int j)
{
    const size_t bs = sizeof(dais__blk_q8_0);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i ws[DAIS__RMAX], wa[DAIS__RMAX];
    UNROLL for (int i = 0; i < R; i++)
    {
        ws[i] = _mm256_loadu_si256((const __m256i *)(wr[i] + (size_t)b * bs + 2));
        wa[i] = _mm256_sign_epi8(ws[i], ws[i]); /* |w| */
    }
    UNROLL for (int k = 0; k < T; k++)
    {
        __m256i xv = _mm256_load_si256((const __m256i *)(xr[k] + b * QK8_0));
        UNROLL for (int i = 0; i < R; i++)
        {
            __m256i p = _mm256_maddubs_epi16(wa[i], _mm256_sign_epi8(xv, ws[i]));
            p = _mm256_madd_epi16(p, ones);
            acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcast_ss(&sc[i][k][j]),
                                        acc[i][k]);
        }
    }
}

static ALWAYS_INLINE void q8_0_tile(const dais__mm *m, int64_t r, int t, const int R, const int T)
{
    const int64_t nb = m->n_in / QK8_0;
    const size_t bs = sizeof(dais__blk_q8_0);
    const uint8_t *wr[DAIS__RMAX];
    const uint8_t *xr[DAIS__TMAX];
    __m256 acc0[DAIS__RMAX][DAIS__TMAX], acc1[DAIS__RMAX][DAIS__TMAX];
    float sc[DAIS__RMAX][DAIS__TMAX][8] __attribute__((aligned(32)));
    UNROLL for (int i = 0; i < R; i++) wr[i] = ROW(m, r + i);
    UNROLL for (int k = 0; k < T; k++) xr[k] = XROW(m, t + k);
    UNROLL for (int i = 0; i < R; i++) UNROLL for (int k = 0; k < T; k++)
    {
        acc0[i][k] = _mm256_setzero_ps();
        acc1[i][k] = _mm256_setzero_ps();
    }
    for (int64_t b0 = 0; b0 < nb; b0 += 8) {
        const int g = nb - b0 < 8 ? (int)(nb - b0) : 8;
        UNROLL for (int i = 0; i < R; i++)
        {
            prefetch_ahead(wr[i] + b0 * bs, 8 * (int)bs);
            __m256 dw = f16x8_gather(wr[i] + b0 * bs, bs, g, 0);
            UNROLL for (int k = 0; k < T; k++) _mm256_store_ps(
                sc[i][k],
                _mm256_mul_ps(dw, _mm256_load_ps((const float *)(xr[k] + m->d_off) + b0)));
        }
        int j = 0;
        for (; j + 1 < g; j += 2) {
            q8_0_block(wr, xr, b0 + j, R, T, acc0, sc, j);
            q8_0_block(wr, xr, b0 + j + 1, R, T, acc1, sc, j + 1);
        }
        if (j < g) q8_0_block(wr, xr, b0 + j, R, T, acc0, sc, j);
    }
    UNROLL for (int i = 0; i < R; i++) UNROLL for (int k = 0; k < T; k++)
        m->y[(int64_t)(t + k) * m->y_stride + r + i] =
        hsum_ps(_mm256_add_ps(acc0[i][k], acc1[i][k]));
}

/* ---- Q4_K x Q8KA ----------------------------------------------------------------------------- */

/* pshufb controls that broadcast 16-bit lane j of each 128-bit half */
static const uint8_t bcast16_ctl[8][32] __attribute__((aligned(32))) = {
#define C(j)                                                                                       \
    {                                                                                              \
        2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1,  \
            2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j,         \
            2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1, 2 * j, 2 * j + 1,     \
            2 * j, 2 * j + 1, 2 * j, 2 * j + 1                                                     \
    }
    C(0), C(1), C(2), C(3), C(4),
    C(5), C(6), C(7)
#undef C
};

static ALWAYS_INLINE __m256i bcast16(__m256i v, int j)
{
    return _mm256_shuffle_epi8(v, _mm256_load_si256((const __m256i *)bcast16_ctl[j]));
}

static ALWAYS_INLINE uint32_t le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static ALWAYS_INLINE void q4_K_tile(const dais__mm *m, int64_t r, int t, const int R, const int T)
{
    const int64_t nb = m->n_in / QK_K;
    const uint8_t *wr[DAIS__RMAX];
    const uint8_t *xr[DAIS__TMAX];
    __m256 acc[DAIS__RMAX][DAIS__TMAX];
    UNROLL for (int i = 0; i < R; i++) wr[i] = ROW(m, r + i);
    UNROLL for (int k = 0; k < T; k++) xr[k] = XROW(m, t + k);
    UNROLL for (int i = 0; i < R; i++) UNROLL for (int k = 0; k < T; k++) acc[i][k] =
        _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f);

    for (int64_t b = 0; b < nb; b++) {
        __m256i scv[DAIS__RMAX], mnv[DAIS__RMAX];
        float dd[DAIS__RMAX], dm[DAIS__RMAX];
        __m256i iacc[DAIS__RMAX][DAIS__TMAX];
        UNROLL for (int i = 0; i < R; i++)
        {
            const dais__blk_q4_K *blk = (const dais__blk_q4_K *)wr[i] + b;
            prefetch_ahead((const uint8_t *)blk, (int)sizeof(*blk));
            uint32_t a0 = le32(blk->scales), a1 = le32(blk->scales + 4), a2 = le32(blk->scales + 8);
            uint32_t s03 = a0 & 0x3f3f3f3fu;
            uint32_t s47 = (a2 & 0x0f0f0f0fu) | ((a0 >> 6) & 0x03030303u) << 4;
            uint32_t m03 = a1 & 0x3f3f3f3fu;
            uint32_t m47 = ((a2 >> 4) & 0x0f0f0f0fu) | ((a1 >> 6) & 0x03030303u) << 4;
            __m128i sc8 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)s47, (int)s03));
            scv[i] = _mm256_broadcastsi128_si256(sc8);
            __m128i mn8 = _mm_set_epi32(0, 0, (int)m47, (int)m03);
            mnv[i] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8)); /* m0 m0 m1 m1 .. */
            dd[i] = _cvtsh_ss(blk->d);
            dm[i] = _cvtsh_ss(blk->dmin);
            UNROLL for (int k = 0; k < T; k++) iacc[i][k] = _mm256_setzero_si256();
        }
        UNROLL for (int c = 0; c < 4; c++)
        {
            UNROLL for (int i = 0; i < R; i++)
            {
                const dais__blk_q4_K *blk = (const dais__blk_q4_K *)wr[i] + b;
                __m256i q = _mm256_loadu_si256((const __m256i *)(blk->qs + 32 * c));
                __m256i lo = _mm256_and_si256(q, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                __m256i slo = bcast16(scv[i], 2 * c), shi = bcast16(scv[i], 2 * c + 1);
                UNROLL for (int k = 0; k < T; k++)
                {
                    const int8_t *y = (const int8_t *)xr[k] + b * QK_K + 64 * c;
                    __m256i plo = _mm256_maddubs_epi16(lo, _mm256_load_si256((const __m256i *)y));
                    __m256i phi =
                        _mm256_maddubs_epi16(hi, _mm256_load_si256((const __m256i *)(y + 32)));
                    __m256i s =
                        _mm256_add_epi32(_mm256_madd_epi16(plo, slo), _mm256_madd_epi16(phi, shi));
                    iacc[i][k] = _mm256_add_epi32(iacc[i][k], s);
                }
            }
        }
        UNROLL for (int k = 0; k < T; k++)
        {
            float dx = ((const float *)(xr[k] + m->d_off))[b];
            __m256i bs = _mm256_load_si256((const __m256i *)(xr[k] + m->s_off) + b);
            UNROLL for (int i = 0; i < R; i++)
            {
                __m256i mins = _mm256_madd_epi16(bs, mnv[i]);
                acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iacc[i][k]),
                                            _mm256_set1_ps(dd[i] * dx), acc[i][k]);
                acc[i][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(-dm[i] * dx),
                                            acc[i][k]);
            }
        }
    }
    UNROLL for (int i = 0; i < R; i++) UNROLL for (int k = 0; k < T; k++)
        m->y[(int64_t)(t + k) * m->y_stride + r + i] = hsum_ps(acc[i][k]);
}

/* ---- Q6_K x Q8KA ----------------------------------------------------------------------------- */

static ALWAYS_INLINE void q6_K_tile(const dais__mm *m, int64_t r, int t, const int R, const int T)
{
    const int64_t nb = m->n_in / QK_K;
    const uint8_t *wr[DAIS__RMAX];
    const uint8_t *xr[DAIS__TMAX];
    __m256 acc[DAIS__RMAX][DAIS__TMAX];
    UNROLL for (int i = 0; i < R; i++) wr[i] = ROW(m, r + i);
    UNROLL for (int k = 0; k < T; k++) xr[k] = XROW(m, t + k);
    UNROLL for (int i = 0; i < R; i++) UNROLL for (int k = 0; k < T; k++) acc[i][k] =
        _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    /* even scales to the low half, odd to the high half: piece j of 32 elements then takes
     * scale 2j in its low 16 elements and 2j+1 in its high 16 from 16-bit lane j */
    const __m128i eo = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);

    for (int64_t b = 0; b < nb; b++) {
        __m256i scp[DAIS__RMAX], sc16[DAIS__RMAX];
        float dd[DAIS__RMAX];
        __m256i iacc[DAIS__RMAX][DAIS__TMAX];
        UNROLL for (int i = 0; i < R; i++)
        {
            const dais__blk_q6_K *blk = (const dais__blk_q6_K *)(wr[i] + b * 210);
            prefetch_ahead((const uint8_t *)blk, (int)sizeof(*blk));
            __m128i s = _mm_loadu_si128((const __m128i *)blk->scales);
            sc16[i] = _mm256_cvtepi8_epi16(s);
            scp[i] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s, eo));
            dd[i] = f16_at((const uint8_t *)&blk->d);
            UNROLL for (int k = 0; k < T; k++) iacc[i][k] = _mm256_setzero_si256();
        }
        UNROLL for (int h = 0; h < 2; h++)
        {
            UNROLL for (int i = 0; i < R; i++)
            {
                const dais__blk_q6_K *blk = (const dais__blk_q6_K *)(wr[i] + b * 210);
                __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h));
                __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h + 32));
                __m256i qh = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * h));
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
                                       _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
                q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                       _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                       _mm256_and_si256(qh, m30));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
                UNROLL for (int p = 0; p < 4; p++)
                {
                    __m256i s = bcast16(scp[i], 4 * h + p);
                    UNROLL for (int k = 0; k < T; k++)
                    {
                        const int8_t *y = (const int8_t *)xr[k] + b * QK_K + 128 * h + 32 * p;
                        __m256i v =
                            _mm256_maddubs_epi16(q[p], _mm256_load_si256((const __m256i *)y));
                        iacc[i][k] = _mm256_add_epi32(iacc[i][k], _mm256_madd_epi16(v, s));
                    }
                }
            }
        }
        UNROLL for (int k = 0; k < T; k++)
        {
            float dx = ((const float *)(xr[k] + m->d_off))[b];
            __m256i bs = _mm256_load_si256((const __m256i *)(xr[k] + m->s_off) + b);
            UNROLL for (int i = 0; i < R; i++)
            {
                /* levels are stored +32: subtract 32 * sum(scale * block sum) */
                __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16[i]), 5);
                __m256i v = _mm256_sub_epi32(iacc[i][k], off);
                acc[i][k] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_set1_ps(dd[i] * dx), acc[i][k]);
            }
        }
    }
    UNROLL for (int i = 0; i < R; i++) UNROLL for (int k = 0; k < T; k++)
        m->y[(int64_t)(t + k) * m->y_stride + r + i] = hsum_ps(acc[i][k]);
}

/* ---- F32 / F16 / BF16 x f32 ------------------------------------------------------------------ */

static ALWAYS_INLINE __m256 load8(const uint8_t *row, int64_t e, uint32_t type)
{
    if (type == DAIS_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * e)));
    if (type == DAIS_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * e))), 16));
    return _mm256_loadu_ps((const float *)(row + 4 * e));
}

static ALWAYS_INLINE float load1(const uint8_t *row, int64_t e, uint32_t type)
{
    uint16_t h;
    if (type == DAIS_F16) return f16_at(row + 2 * e);
    if (type == DAIS_BF16) {
        memcpy(&h, row + 2 * e, 2);
        return dais_bf16_to_f32(h);
    }
    float f;
    memcpy(&f, row + 4 * e, 4);
    return f;
}

/* Two accumulators per (row, token), for even and odd 8-element steps, so that one row is
 * not bound by the FMA latency; the same order in every tile shape. */
static ALWAYS_INLINE void float_tile(const dais__mm *m, int64_t r, int t, const int R, const int T,
                                     const uint32_t type)
{
    const int64_t n = m->n_in, n8 = n & ~(int64_t)7, n16 = n & ~(int64_t)15;
    const int esz = type == DAIS_F32 ? 4 : 2;
    const uint8_t *wr[DAIS__RMAX];
    const float *xr[DAIS__TMAX];
    __m256 acc0[DAIS__RMAX][DAIS__TMAX], acc1[DAIS__RMAX][DAIS__TMAX];
    UNROLL for (int i = 0; i < R; i++) wr[i] = ROW(m, r + i);
    UNROLL for (int k = 0; k < T; k++) xr[k] = (const float *)XROW(m, t + k);
    UNROLL for (int i = 0; i < R; i++) UNROLL for (int k = 0; k < T; k++)
    {
        acc0[i][k] = _mm256_setzero_ps();
        acc1[i][k] = _mm256_setzero_ps();
    }
    for (int64_t e = 0; e < n16; e += 16) {
        __m256 w0[DAIS__RMAX], w1[DAIS__RMAX];
        UNROLL for (int i = 0; i < R; i++)
        {
            prefetch_ahead(wr[i] + e * esz, 16 * esz);
            w0[i] = load8(wr[i], e, type);
            w1[i] = load8(wr[i], e + 8, type);
        }
        UNROLL for (int k = 0; k < T; k++)
        {
            __m256 x0 = _mm256_loadu_ps(xr[k] + e), x1 = _mm256_loadu_ps(xr[k] + e + 8);
            UNROLL for (int i = 0; i < R; i++)
            {
                acc0[i][k] = _mm256_fmadd_ps(w0[i], x0, acc0[i][k]);
                acc1[i][k] = _mm256_fmadd_ps(w1[i], x1, acc1[i][k]);
            }
        }
    }
    if (n8 > n16) {
        UNROLL for (int i = 0; i < R; i++)
        {
            __m256 w0 = load8(wr[i], n16, type);
            UNROLL for (int k = 0; k < T; k++) acc0[i][k] =
                _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[k] + n16), acc0[i][k]);
        }
    }
    UNROLL for (int i = 0; i < R; i++) UNROLL for (int k = 0; k < T; k++)
    {
        float s = hsum_ps(_mm256_add_ps(acc0[i][k], acc1[i][k]));
        for (int64_t e = n8; e < n; e++)
            s += load1(wr[i], e, type) * xr[k][e];
        m->y[(int64_t)(t + k) * m->y_stride + r + i] = s;
    }
}

static ALWAYS_INLINE void f32_tile(const dais__mm *m, int64_t r, int t, const int R, const int T)
{
    float_tile(m, r, t, R, T, DAIS_F32);
}

static ALWAYS_INLINE void f16_tile(const dais__mm *m, int64_t r, int t, const int R, const int T)
{
    float_tile(m, r, t, R, T, DAIS_F16);
}

static ALWAYS_INLINE void bf16_tile(const dais__mm *m, int64_t r, int t, const int R, const int T)
{
    float_tile(m, r, t, R, T, DAIS_BF16);
}

/* ---- instantiation ----------------------------------------------------------------------------
 */

#define INST(ty, R, T)                                                                             \
    static void ty##_##R##x##T(const dais__mm *m, int64_t r, int t, int nr, int nt)                \
    {                                                                                              \
        ty##_tile(m, r, t, R, T);                                                                  \
    }
#define INST_R(ty, R) INST(ty, R, 1) INST(ty, R, 2) INST(ty, R, 3) INST(ty, R, 4)
#define INST_ALL(ty)  INST_R(ty, 1) INST_R(ty, 2) INST_R(ty, 4)
#define ROWFNS(ty, R)                                                                              \
    {                                                                                              \
        NULL, ty##_##R##x1, ty##_##R##x2, ty##_##R##x3, ty##_##R##x4                               \
    }
#define TILES(ty, rb, tb, rd)                                                                      \
    static const dais__tiles tiles_##ty = {                                                        \
        rb, tb, rd, {[1] = ROWFNS(ty, 1), [2] = ROWFNS(ty, 2), [4] = ROWFNS(ty, 4)}};

INST_ALL(q4_0)
INST_ALL(q8_0)
INST_ALL(q4_K)
INST_ALL(q6_K)
INST_ALL(f32)
INST_ALL(f16)
INST_ALL(bf16)

/* Tile shapes: rows x tokens for batches, rows for one token. One token reads one row at a
 * time: a single sequential stream per thread is what the prefetchers (hardware and
 * software) keep ahead of best, and it beat 2 and 4 rows by 1.5-2x from DRAM. For batches,
 * the shapes below were the fastest in thread-CPU-time runs on Zen 4 (2048x5632, 1 thread,
 * GFLOP/s): q4_0 1x4 131; q8_0 2x4 89-97; q4_K 2x4 122; q6_K 2x4 127; f16 2x2 52. */
TILES(q4_0, 1, 4, 1)
TILES(q8_0, 2, 4, 1)
TILES(q4_K, 2, 4, 1)
TILES(q6_K, 2, 4, 1)
TILES(f32, 2, 2, 1)
TILES(f16, 2, 2, 1)
TILES(bf16, 2, 2, 1)

/* ---- memory probe and row conversions ----------------------------------------------------------
 */

static uint64_t read_sum(const void *p, size_t n)
{
    const __m256i *v = p;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 4 <= n / 32; i += 4) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + i));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256(v + i + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + i + 2));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256(v + i + 3));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, s);
    return out[0] + out[1] + out[2] + out[3];
}

static void f16_to_f32_row(const uint16_t *src, float *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++)
        dst[i] = _cvtsh_ss(src[i]);
}

static void f32_to_f16_row(const float *src, uint16_t *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}

const dais__isa_impl dais__impl_avx2 = {
    .name = "avx2",
    .quant_q8a = quant_q8a,
    .quant_q8ka = quant_q8ka,
    .tiles =
        {
            [DAIS_F32] = &tiles_f32,
            [DAIS_F16] = &tiles_f16,
            [DAIS_BF16] = &tiles_bf16,
            [DAIS_Q8_0] = &tiles_q8_0,
            [DAIS_Q4_0] = &tiles_q4_0,
            [DAIS_Q4_K] = &tiles_q4_K,
            [DAIS_Q6_K] = &tiles_q6_K,
        },
    .read_sum = read_sum,
    .f16_to_f32_row = f16_to_f32_row,
    .f32_to_f16_row = f32_to_f16_row,
};

#endif
