/*
 * The Llama forward pass: loading and validating a GGUF model, the per-sequence KV cache, and
 * dais_forward, which runs a batch of tokens from one or more sequences through a range of
 * layers. All matrix products go through dais_matmul (one call per weight matrix for the
 * whole batch, so each weight row is read once per batch); the rest of the pass (embedding,
 * RMSNorm, RoPE, attention, SwiGLU) is split over the thread pool by (ith, nth) here.
 *
 * Layout of one layer for a batch of n tokens (shapes are (rows, columns), f32):
 *   xb = rmsnorm(x) * attn_norm               x: (n, dim) residual stream
 *   q, k, v = xb·Wqᵀ, xb·Wkᵀ, xb·Wvᵀ          (n, q_dim), (n, kv_dim), (n, kv_dim)
 *   rope(q, k); cache[seq][pos] = k, v
 *   att = softmax(q·Kᵀ/√hd)·V per head        (n, q_dim), grouped-query: head h reads kv head
 *                                             h / (n_heads / n_kv_heads)
 *   x += att·Woᵀ
 *   xb = rmsnorm(x) * ffn_norm
 *   x += (silu(xb·Wgateᵀ) ⊙ xb·Wupᵀ)·Wdownᵀ
 * and after the last layer: logits = rmsnorm(x) * output_norm · Woutᵀ for the rows that ask.
 */
#include "engine/model.h"

#include "engine/attn.h"
#include "engine/shard.h"

#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <limits.h>
#include <sys/stat.h>

/* ============================================================================================
 * Structures
 * ========================================================================================== */

typedef struct layer {
    const float *attn_norm; /* (dim) */
    const float *ffn_norm;  /* (dim) */
    dais_matrix wq;         /* (q_dim rows, dim) */
    dais_matrix wk;         /* (kv_dim rows, dim) */
    dais_matrix wv;         /* (kv_dim rows, dim) */
    dais_matrix wo;         /* (dim rows, q_dim) */
    dais_matrix w_gate;     /* (ffn_dim rows, dim) */
    dais_matrix w_up;       /* (ffn_dim rows, dim) */
    dais_matrix w_down;     /* (dim rows, ffn_dim) */
} layer;

/* What the hash cache keys a file by (see dais_model_hash). */
typedef struct file_id {
    bool ok;
    uint64_t dev, ino, size;
    int64_t mtime_s, mtime_ns;
} file_id;

static void file_id_of(const struct stat *st, file_id *id)
{
    id->ok = true;
    id->dev = (uint64_t)st->st_dev;
    id->ino = (uint64_t)st->st_ino;
    id->size = (uint64_t)st->st_size;
    id->mtime_s = (int64_t)st->st_mtim.tv_sec;
    id->mtime_ns = (int64_t)st->st_mtim.tv_nsec;
}

struct dais_model {
    dais_gguf *g;
    dais_tokenizer *tok;
    dais_hparams hp;
    int32_t q_dim;    /* n_heads * head_dim */
    int32_t kv_dim;   /* n_kv_heads * head_dim */
    dais_matrix embd; /* (n_vocab rows, dim) token_embd.weight */
    size_t embd_row_bytes;
    dais_matrix output;    /* (n_vocab rows, dim) output.weight, or embd when tied */
    float *norms;          /* (2 * n_layers + 1, dim) owned f32 copies of every norm vector */
    const float *out_norm; /* (dim) into norms */
    float *inv_freq;       /* (rope_dim / 2) RoPE frequencies after any scaling */
    layer *layers;         /* (n_layers) */
    uint64_t weight_bytes;
    /* The layers the file holds: [0, n_layers) for a whole model; a shard file's range (its
     * tensors outside the range are absent, their fields in `layers` NULL). */
    int32_t layer_first, layer_last;
    bool is_shard;
    char source_hash[65]; /* a shard file's dais.shard.source_sha256 */
    pthread_mutex_t hash_mu;
    bool hash_done;
    char hash[65];
    /* The file's identity when it was mapped (stat before and after the open agreed), for the
     * hash cache; fid.ok false: unknown, the cache is not used. */
    file_id fid;
};

struct dais_kv {
    int32_t n_ctx;
    int32_t len;
    int32_t layer_first, layer_last;
    int32_t kv_dim;
    float *k; /* (layer_last - layer_first, n_ctx, kv_dim) */
    float *v; /* (layer_last - layer_first, n_ctx, kv_dim) */
};

struct dais_ctx {
    const dais_model *m;
    dais_pool *pool;
    dais_mm_scratch *mm;
    int32_t max_batch;
    float *x;          /* (max_batch, dim) residual stream */
    float *xb;         /* (max_batch, dim) normed block input; rows gathered for the logits */
    float *delta;      /* (max_batch, dim) output of attn_output / ffn_down, added to x */
    float *q;          /* (max_batch, q_dim) */
    float *k;          /* (max_batch, kv_dim) */
    float *v;          /* (max_batch, kv_dim) */
    float *att;        /* (max_batch, q_dim) attention output */
    float *hb;         /* (max_batch, ffn_dim) gate, then silu(gate) * up */
    float *hb2;        /* (max_batch, ffn_dim) up */
    float *rope;       /* (max_batch, rope_dim / 2, 2) cos and sin of each token's angles */
    int32_t *out_rows; /* (max_batch) batch index of each row that wants logits */

    /* State of the call in progress, read by the pool functions. */
    const dais_batch *b;
    dais_kv *const *kvs;
    dais_attn_fn attn;
    int32_t layer;       /* absolute layer index */
    const float *norm_w; /* (dim) weight of the norm op_norm applies */
    bool add_delta;      /* op_norm / op_final first add delta into x */
    int32_t n_out;       /* rows that want logits */
};

/* ============================================================================================
 * Metadata helpers
 * ========================================================================================== */

/* Copies a file string for messages and names: at most cap-1 bytes, non-printable bytes as '?'. */
static void copy_printable(char *dst, size_t cap, dais_gguf_str s)
{
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        dst[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    dst[n] = '\0';
}

static int get_int(const dais_gguf *g, const char *key, bool required, int64_t def, int64_t lo,
                   int64_t hi, int32_t *out, dais_err *err)
{
    int64_t v = def;
    int rc = dais_gguf_get_i64(g, key, &v, err);
    if (rc == DAIS_ENOTFOUND) {
        if (required) return dais_err_set(err, DAIS_EFORMAT, "missing metadata key %s", key);
        v = def;
    } else if (rc < 0) {
        return rc;
    }
    if (v < lo || v > hi)
        return dais_err_set(err, DAIS_EFORMAT, "metadata %s = %lld is out of range [%lld, %lld]",
                            key, (long long)v, (long long)lo, (long long)hi);
    *out = (int32_t)v;
    return 0;
}

static int get_float(const dais_gguf *g, const char *key, float def, float lo, float hi, float *out,
                     dais_err *err)
{
    float v = def;
    int rc = dais_gguf_get_f32(g, key, &v, err);
    if (rc == DAIS_ENOTFOUND)
        v = def;
    else if (rc < 0)
        return rc;
    if (!(v >= lo && v <= hi)) /* also rejects NaN */
        return dais_err_set(err, DAIS_EFORMAT, "metadata %s = %g is out of range [%g, %g]", key,
                            (double)v, (double)lo, (double)hi);
    *out = v;
    return 0;
}

static bool str_eq(dais_gguf_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static int read_hparams(const dais_gguf *g, dais_hparams *hp, dais_err *err)
{
    dais_gguf_str s;
    int rc = dais_gguf_get_str(g, "general.architecture", &s, err);
    if (rc == DAIS_ENOTFOUND)
        return dais_err_set(err, DAIS_EFORMAT, "missing metadata key general.architecture");
    if (rc < 0) return rc;
    copy_printable(hp->arch, sizeof hp->arch, s);
    if (!str_eq(s, "llama"))
        return dais_err_set(err, DAIS_EUNSUPPORTED,
                            "unsupported architecture '%s' (this engine runs 'llama' models)",
                            hp->arch);
    if (dais_gguf_get_str(g, "general.name", &s, NULL) == 0)
        copy_printable(hp->name, sizeof hp->name, s);

    if ((rc =
             get_int(g, "llama.embedding_length", true, 0, 1, DAIS_MODEL_MAX_DIM, &hp->dim, err)) ||
        (rc = get_int(g, "llama.block_count", true, 0, 1, DAIS_MODEL_MAX_LAYERS, &hp->n_layers,
                      err)) ||
        (rc = get_int(g, "llama.attention.head_count", true, 0, 1, DAIS_MODEL_MAX_HEADS,
                      &hp->n_heads, err)) ||
        (rc = get_int(g, "llama.feed_forward_length", true, 0, 1, DAIS_MODEL_MAX_FFN, &hp->ffn_dim,
                      err)) ||
        (rc = get_int(g, "llama.context_length", true, 0, 1, DAIS_MODEL_MAX_CTX, &hp->n_ctx_train,
                      err)) ||
        (rc = get_int(g, "llama.attention.head_count_kv", false, hp->n_heads, 1, hp->n_heads,
                      &hp->n_kv_heads, err)))
        return rc;
    if (hp->n_heads % hp->n_kv_heads != 0)
        return dais_err_set(err, DAIS_EFORMAT,
                            "llama.attention.head_count (%d) is not a multiple of "
                            "llama.attention.head_count_kv (%d)",
                            hp->n_heads, hp->n_kv_heads);
    if (dais_gguf_find(g, "llama.attention.key_length") == NULL && hp->dim % hp->n_heads != 0)
        return dais_err_set(err, DAIS_EFORMAT,
                            "llama.embedding_length (%d) is not a multiple of "
                            "llama.attention.head_count (%d)",
                            hp->dim, hp->n_heads);
    if ((rc = get_int(g, "llama.attention.key_length", false, hp->dim / hp->n_heads, 1,
                      DAIS_MODEL_MAX_HEAD_DIM, &hp->head_dim, err)))
        return rc;
    int32_t vlen;
    if ((rc = get_int(g, "llama.attention.value_length", false, hp->head_dim, 1,
                      DAIS_MODEL_MAX_HEAD_DIM, &vlen, err)))
        return rc;
    if (vlen != hp->head_dim)
        return dais_err_set(err, DAIS_EUNSUPPORTED,
                            "llama.attention.value_length (%d) differs from key_length (%d)", vlen,
                            hp->head_dim);
    if (hp->head_dim % 2 != 0)
        return dais_err_set(err, DAIS_EFORMAT, "head dimension %d is odd (RoPE needs pairs)",
                            hp->head_dim);
    if ((rc = get_int(g, "llama.rope.dimension_count", false, hp->head_dim, 2, hp->head_dim,
                      &hp->rope_dim, err)))
        return rc;
    if (hp->rope_dim % 2 != 0)
        return dais_err_set(err, DAIS_EFORMAT, "llama.rope.dimension_count (%d) is odd",
                            hp->rope_dim);
    if ((rc = get_float(g, "llama.attention.layer_norm_rms_epsilon", 1e-5f, 1e-12f, 1.0f,
                        &hp->rms_eps, err)) ||
        (rc = get_float(g, "llama.rope.freq_base", 10000.0f, 1.0f, 1e12f, &hp->rope_base, err)))
        return rc;

    /* RoPE scaling. */
    hp->rope_scaling = DAIS_ROPE_SCALING_NONE;
    hp->rope_scale_factor = 1.0f;
    hp->rope_low_freq_factor = 1.0f;
    hp->rope_high_freq_factor = 4.0f;
    hp->rope_orig_ctx = hp->n_ctx_train;
    rc = dais_gguf_get_str(g, "llama.rope.scaling.type", &s, err);
    if (rc < 0 && rc != DAIS_ENOTFOUND) return rc;
    if (rc == 0 && !str_eq(s, "none")) {
        char ty[32];
        copy_printable(ty, sizeof ty, s);
        if (str_eq(s, "linear"))
            hp->rope_scaling = DAIS_ROPE_SCALING_LINEAR;
        else if (str_eq(s, "llama3"))
            hp->rope_scaling = DAIS_ROPE_SCALING_LLAMA3;
        else
            return dais_err_set(err, DAIS_EUNSUPPORTED,
                                "llama.rope.scaling.type '%s' is not supported "
                                "(none, linear, llama3 are)",
                                ty);
        if ((rc = get_float(g, "llama.rope.scaling.factor", 1.0f, 1e-3f, 1e6f,
                            &hp->rope_scale_factor, err)))
            return rc;
    } else {
        /* Older files: llama.rope.scale_linear. */
        float lin = 1.0f;
        if ((rc = get_float(g, "llama.rope.scale_linear", 1.0f, 1e-3f, 1e6f, &lin, err))) return rc;
        if (lin != 1.0f) {
            hp->rope_scaling = DAIS_ROPE_SCALING_LINEAR;
            hp->rope_scale_factor = lin;
        }
    }
    if (hp->rope_scaling == DAIS_ROPE_SCALING_LLAMA3) {
        if ((rc = get_float(g, "llama.rope.scaling.low_freq_factor", 1.0f, 1e-6f, 1e6f,
                            &hp->rope_low_freq_factor, err)) ||
            (rc = get_float(g, "llama.rope.scaling.high_freq_factor", 4.0f, 1e-6f, 1e6f,
                            &hp->rope_high_freq_factor, err)) ||
            (rc = get_int(g, "llama.rope.scaling.original_context_length", false, hp->n_ctx_train,
                          1, DAIS_MODEL_MAX_CTX, &hp->rope_orig_ctx, err)))
            return rc;
        if (!(hp->rope_high_freq_factor > hp->rope_low_freq_factor))
            return dais_err_set(err, DAIS_EFORMAT,
                                "llama.rope.scaling.high_freq_factor (%g) must exceed "
                                "low_freq_factor (%g)",
                                (double)hp->rope_high_freq_factor,
                                (double)hp->rope_low_freq_factor);
    }
    return 0;
}

/* ============================================================================================
 * Tensor validation
 * ========================================================================================== */

static void fmt_shape(char *buf, size_t cap, uint32_t n_dims, const uint64_t *ne)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (uint32_t i = 0; i < n_dims && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? ", " : "", (unsigned long long)ne[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Finds tensor `name` and checks its type and shape (ne0, ne1; ne1 = 0 for a vector). Returns 0
 * with *out set, DAIS_ENOTFOUND (err filled) when absent, or DAIS_EFORMAT / DAIS_EUNSUPPORTED. */
static int find_tensor(const dais_gguf *g, const char *name, uint64_t ne0, uint64_t ne1,
                       const dais_gguf_tensor **out, dais_err *err)
{
    uint64_t want[DAIS_GGUF_MAX_DIMS] = {ne0, ne1 ? ne1 : 1, 1, 1};
    uint32_t want_dims = ne1 ? 2 : 1;
    char ws[64], fs[96];
    fmt_shape(ws, sizeof ws, want_dims, want);
    const dais_gguf_tensor *t = dais_gguf_find_tensor(g, name);
    if (t == NULL)
        return dais_err_set(err, DAIS_ENOTFOUND, "missing tensor %s (expected shape %s)", name, ws);
    /* Compare the full shape with unused dimensions as 1, so [64] and [64, 1] are the same. */
    for (int i = 0; i < DAIS_GGUF_MAX_DIMS; i++) {
        uint64_t have = i < (int)t->n_dims ? t->ne[i] : 1;
        if (have != want[i]) {
            fmt_shape(fs, sizeof fs, t->n_dims, t->ne);
            return dais_err_set(err, DAIS_EFORMAT, "tensor %s: expected shape %s, found %s", name,
                                ws, fs);
        }
    }
    const dais_dtype_info *ti = dais_dtype_get(t->type);
    if (ti == NULL || !ti->compute)
        return dais_err_set(err, DAIS_EUNSUPPORTED,
                            "tensor %s has type %s, which the engine cannot compute "
                            "(f32, f16, bf16, q8_0, q4_0, q4_K, q6_K are supported)",
                            name, dais_dtype_name(t->type));
    size_t row = dais_dtype_row_bytes(t->type, ne0, NULL);
    if (row == 0)
        return dais_err_set(err, DAIS_EFORMAT,
                            "tensor %s: rows of %llu elements are not a whole number of %s blocks",
                            name, (unsigned long long)ne0, ti->name);
    uint64_t rows = ne1 ? ne1 : 1;
    if (rows > SIZE_MAX / row || t->nbytes < row * rows || t->data == NULL)
        return dais_err_set(err, DAIS_EFORMAT, "tensor %s: %zu bytes of data, %llu expected", name,
                            t->nbytes, (unsigned long long)row * rows);
    *out = t;
    return 0;
}

static int find_matrix(const dais_gguf *g, const char *name, int64_t n_in, int64_t n_out,
                       dais_matrix *mx, uint64_t *bytes, dais_err *err)
{
    const dais_gguf_tensor *t;
    int rc = find_tensor(g, name, (uint64_t)n_in, (uint64_t)n_out, &t, err);
    if (rc) return rc;
    mx->type = t->type;
    mx->n_in = n_in;
    mx->n_out = n_out;
    mx->data = t->data;
    *bytes += dais_dtype_row_bytes(t->type, (uint64_t)n_in, NULL) * (uint64_t)n_out;
    return 0;
}

/* Reads a vector of n values of any compute type into dst as f32. */
static int read_vector(const dais_gguf *g, const char *name, int64_t n, float *dst, uint64_t *bytes,
                       dais_err *err)
{
    const dais_gguf_tensor *t;
    int rc = find_tensor(g, name, (uint64_t)n, 0, &t, err);
    if (rc) return rc;
    dais_dequantize_row(t->type, t->data, dst, n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return dais_err_set(err, DAIS_EFORMAT, "tensor %s: element %lld is not finite", name,
                                (long long)i);
    if (bytes) *bytes += dais_dtype_row_bytes(t->type, (uint64_t)n, NULL);
    return 0;
}

/* RoPE frequencies: θ_i = base^(-2i/rope_dim), computed in float as llama2.c does, then the
 * rope_freqs.weight factors (when present) or the scaling from the metadata. */
static int rope_setup(dais_model *m, dais_err *err)
{
    dais_hparams *hp = &m->hp;
    int32_t n = hp->rope_dim / 2;
    for (int32_t i = 0; i < n; i++)
        m->inv_freq[i] = 1.0f / powf(hp->rope_base, (float)(2 * i) / (float)hp->rope_dim);
    if (dais_gguf_find_tensor(m->g, "rope_freqs.weight") != NULL) {
        float *f = malloc((size_t)n * sizeof *f);
        if (f == NULL) return dais_err_set(err, DAIS_ENOMEM, "out of memory");
        int rc = read_vector(m->g, "rope_freqs.weight", n, f, NULL, err);
        for (int32_t i = 0; rc == 0 && i < n; i++) {
            if (!(f[i] > 0.0f))
                rc = dais_err_set(err, DAIS_EFORMAT,
                                  "tensor rope_freqs.weight: factor %d (%g) is not positive", i,
                                  (double)f[i]);
            else
                m->inv_freq[i] /= f[i];
        }
        free(f);
        hp->rope_freqs_tensor = true;
        return rc;
    }
    if (hp->rope_scaling == DAIS_ROPE_SCALING_LINEAR) {
        for (int32_t i = 0; i < n; i++)
            m->inv_freq[i] /= hp->rope_scale_factor;
    } else if (hp->rope_scaling == DAIS_ROPE_SCALING_LLAMA3) {
        /* Llama 3.1: wavelengths longer than orig_ctx/low are slowed by the factor, shorter
         * than orig_ctx/high kept, and the band between interpolated smoothly. */
        const float two_pi = 6.28318530717958647692f;
        float lo_wl = (float)hp->rope_orig_ctx / hp->rope_low_freq_factor;
        float hi_wl = (float)hp->rope_orig_ctx / hp->rope_high_freq_factor;
        for (int32_t i = 0; i < n; i++) {
            float f = m->inv_freq[i];
            float wl = two_pi / f;
            if (wl < hi_wl) continue;
            if (wl > lo_wl) {
                m->inv_freq[i] = f / hp->rope_scale_factor;
            } else {
                float smooth = ((float)hp->rope_orig_ctx / wl - hp->rope_low_freq_factor) /
                               (hp->rope_high_freq_factor - hp->rope_low_freq_factor);
                m->inv_freq[i] = (1.0f - smooth) * f / hp->rope_scale_factor + smooth * f;
            }
        }
    }
    return 0;
}

/* ============================================================================================
 * Loading
 * ========================================================================================== */

static dais_model *load(const char *path, bool allow_shard, dais_err *err)
{
    dais_err_clear(err);
    dais_model *m = calloc(1, sizeof *m);
    if (m == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&m->hash_mu, NULL);
    struct stat before, after;
    bool stat_ok = stat(path, &before) == 0;
    m->g = dais_gguf_open(path, err);
    if (m->g == NULL) goto fail;
    if (stat_ok && stat(path, &after) == 0 && before.st_dev == after.st_dev &&
        before.st_ino == after.st_ino && before.st_size == after.st_size &&
        before.st_mtim.tv_sec == after.st_mtim.tv_sec &&
        before.st_mtim.tv_nsec == after.st_mtim.tv_nsec &&
        (uint64_t)after.st_size == dais_gguf_file_size(m->g))
        file_id_of(&after, &m->fid);
    dais_hparams *hp = &m->hp;
    if (read_hparams(m->g, hp, err)) goto fail;
    m->q_dim = hp->n_heads * hp->head_dim;
    m->kv_dim = hp->n_kv_heads * hp->head_dim;
    m->layer_first = 0;
    m->layer_last = hp->n_layers;
    dais_shard_info si;
    int src = dais_shard_read(m->g, hp->n_layers, &si, err);
    if (src == 0) {
        if (!allow_shard) {
            dais_err_set(err, DAIS_EUNSUPPORTED,
                         "%s is a shard file: it holds only layers [%d, %d) of a %d-layer model "
                         "(source sha256 %.12s…), so it can only serve that layer range",
                         path, si.layer_first, si.layer_last, hp->n_layers, si.source_sha256);
            goto fail;
        }
        m->is_shard = true;
        m->layer_first = si.layer_first;
        m->layer_last = si.layer_last;
        memcpy(m->source_hash, si.source_sha256, sizeof(m->source_hash));
    } else if (src != DAIS_ENOTFOUND) {
        goto fail;
    }
    bool first_stage = m->layer_first == 0, last_stage = m->layer_last == hp->n_layers;

    m->tok = dais_tokenizer_from_gguf(m->g, err);
    if (m->tok == NULL) goto fail;
    hp->n_vocab = dais_tokenizer_n_vocab(m->tok);
    int32_t vs;
    if (get_int(m->g, "llama.vocab_size", false, hp->n_vocab, 1, INT32_MAX, &vs, err)) goto fail;
    if (vs != hp->n_vocab) {
        dais_err_set(err, DAIS_EFORMAT,
                     "llama.vocab_size (%d) differs from the tokenizer's %d tokens", vs,
                     hp->n_vocab);
        goto fail;
    }

    int64_t dim = hp->dim, L = hp->n_layers;
    uint64_t wb = 0, embd_bytes = 0;
    /* Only what the layer range uses: the embedding for the first stage, the output norm and
     * matrix (the embedding again when tied) for the last. */
    int rc =
        last_stage ? find_matrix(m->g, "output.weight", dim, hp->n_vocab, &m->output, &wb, err) : 0;
    if (rc == DAIS_ENOTFOUND) {
        dais_err_clear(err);
        hp->tied_output = true;
    } else if (rc) {
        goto fail;
    }
    if (first_stage || hp->tied_output) {
        if (find_matrix(m->g, "token_embd.weight", dim, hp->n_vocab, &m->embd, &embd_bytes, err))
            goto fail;
        m->embd_row_bytes = dais_dtype_row_bytes(m->embd.type, (uint64_t)dim, NULL);
    }
    if (first_stage) wb += m->embd_row_bytes;
    if (hp->tied_output) {
        m->output = m->embd;
        wb += embd_bytes;
    }

    m->norms = malloc((size_t)(2 * L + 1) * (size_t)dim * sizeof(float));
    m->inv_freq = malloc((size_t)(hp->rope_dim / 2) * sizeof(float));
    m->layers = calloc((size_t)L, sizeof(layer));
    if (m->norms == NULL || m->inv_freq == NULL || m->layers == NULL) {
        dais_err_set(err, DAIS_ENOMEM, "out of memory");
        goto fail;
    }
    float *on = m->norms + (size_t)(2 * L) * (size_t)dim;
    if (last_stage) {
        if (read_vector(m->g, "output_norm.weight", dim, on, &wb, err)) goto fail;
        m->out_norm = on;
    }

    for (int64_t l = m->layer_first; l < m->layer_last; l++) {
        layer *ly = &m->layers[l];
        char nm[96];
        float *an = m->norms + (size_t)(2 * l) * (size_t)dim, *fn = an + dim;
#define NAME(s) (snprintf(nm, sizeof nm, "blk.%lld." s, (long long)l), nm)
        if (read_vector(m->g, NAME("attn_norm.weight"), dim, an, &wb, err) ||
            read_vector(m->g, NAME("ffn_norm.weight"), dim, fn, &wb, err) ||
            find_matrix(m->g, NAME("attn_q.weight"), dim, m->q_dim, &ly->wq, &wb, err) ||
            find_matrix(m->g, NAME("attn_k.weight"), dim, m->kv_dim, &ly->wk, &wb, err) ||
            find_matrix(m->g, NAME("attn_v.weight"), dim, m->kv_dim, &ly->wv, &wb, err) ||
            find_matrix(m->g, NAME("attn_output.weight"), m->q_dim, dim, &ly->wo, &wb, err) ||
            find_matrix(m->g, NAME("ffn_gate.weight"), dim, hp->ffn_dim, &ly->w_gate, &wb, err) ||
            find_matrix(m->g, NAME("ffn_up.weight"), dim, hp->ffn_dim, &ly->w_up, &wb, err) ||
            find_matrix(m->g, NAME("ffn_down.weight"), hp->ffn_dim, dim, &ly->w_down, &wb, err))
            goto fail;
#undef NAME
        ly->attn_norm = an;
        ly->ffn_norm = fn;
    }
    if (rope_setup(m, err)) goto fail;
    m->weight_bytes = wb;
    return m;
fail:
    dais_model_free(m);
    return NULL;
}

dais_model *dais_model_load(const char *path, dais_err *err)
{
    return load(path, false, err);
}

dais_model *dais_model_load_any(const char *path, dais_err *err)
{
    return load(path, true, err);
}

bool dais_model_layer_range(const dais_model *m, int32_t *first, int32_t *last)
{
    if (first != NULL) *first = m->layer_first;
    if (last != NULL) *last = m->layer_last;
    return m->is_shard;
}

const char *dais_model_source_hash(const dais_model *m)
{
    return m->is_shard ? m->source_hash : dais_model_hash(m);
}

void dais_model_free(dais_model *m)
{
    if (m == NULL) return;
    free(m->layers);
    free(m->inv_freq);
    free(m->norms);
    dais_tokenizer_free(m->tok);
    dais_gguf_free(m->g);
    pthread_mutex_destroy(&m->hash_mu);
    free(m);
}

const dais_hparams *dais_model_hparams(const dais_model *m)
{
    return &m->hp;
}
const dais_tokenizer *dais_model_tokenizer(const dais_model *m)
{
    return m->tok;
}
const dais_gguf *dais_model_gguf(const dais_model *m)
{
    return m->g;
}
uint64_t dais_model_weight_bytes(const dais_model *m)
{
    return m->weight_bytes;
}

/* The whole file, as mapped: tensor data pointers are the mapping's base plus the data
 * section's offset plus the tensor's offset. */
static const uint8_t *file_base(const dais_model *m)
{
    const dais_gguf_tensor *t = dais_gguf_tensor_at(m->g, 0);
    return (const uint8_t *)t->data - t->offset - dais_gguf_data_offset(m->g);
}

/* ---- the hash cache ------------------------------------------------------------------------
 * Hashing a model file costs about 0.6 s per GB at every start. The result is kept in
 * $XDG_CACHE_HOME/dais/hashes (or ~/.cache/dais/hashes), one small file per model file named by
 * its device and inode, holding its size, modification time and SHA-256: the hash is reused
 * only while all of them still match (the quick check rsync and make rely on). Best effort: a
 * cache that cannot be read or written is simply not used. DAIS_HASH_CACHE=0 turns it off. */

static bool hash_cache_path(const file_id *id, char *out, size_t cap, bool make_dirs)
{
    const char *off = getenv("DAIS_HASH_CACHE");
    if (!id->ok || (off != NULL && strcmp(off, "0") == 0)) return false;
    char dir[PATH_MAX];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(dir, sizeof(dir), "%s/dais/hashes", xdg);
    else if (home != NULL && home[0] == '/')
        n = snprintf(dir, sizeof(dir), "%s/.cache/dais/hashes", home);
    else
        return false;
    if (n < 0 || (size_t)n >= sizeof(dir)) return false;
    if (make_dirs) {
        /* each missing component, 0700 */
        for (char *q = dir + 1; *q != '\0'; q++) {
            if (*q != '/') continue;
            *q = '\0';
            mkdir(dir, 0700);
            *q = '/';
        }
        mkdir(dir, 0700);
    }
    n = snprintf(out, cap, "%s/%llx-%llx", dir, (unsigned long long)id->dev,
                 (unsigned long long)id->ino);
    return n > 0 && (size_t)n < cap;
}

static bool hash_cache_get(const file_id *id, char hex[65])
{
    char path[PATH_MAX + 64];
    if (!hash_cache_path(id, path, sizeof(path), false)) return false;
    FILE *f = fopen(path, "r");
    if (f == NULL) return false;
    unsigned long long size = 0;
    long long ms = 0, mns = 0;
    char h[80];
    bool ok = fscanf(f, "%llu %lld %lld %70s", &size, &ms, &mns, h) == 4;
    fclose(f);
    if (!ok || size != id->size || ms != id->mtime_s || mns != id->mtime_ns || strlen(h) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f'))) return false;
    memcpy(hex, h, 65);
    return true;
}

static void hash_cache_put(const file_id *id, const char hex[65])
{
    char path[PATH_MAX + 64], tmp[PATH_MAX + 96];
    if (!hash_cache_path(id, path, sizeof(path), true)) return;
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL) return;
    bool ok = fprintf(f, "%llu %lld %lld %s\n", (unsigned long long)id->size,
                      (long long)id->mtime_s, (long long)id->mtime_ns, hex) > 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) unlink(tmp);
}

bool dais_model_hash_cache_lookup(const char *path, char hex[65])
{
    struct stat st;
    file_id id = {0};
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    file_id_of(&st, &id);
    return hash_cache_get(&id, hex);
}

void dais_model_hash_cache_store(const char *path, const char hex[65])
{
    struct stat st;
    file_id id = {0};
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return;
    file_id_of(&st, &id);
    hash_cache_put(&id, hex);
}

const char *dais_model_hash(const dais_model *m)
{
    /* The cache fields are logically const: written once, under the mutex. */
    dais_model *mm = (dais_model *)m;
    const char *res = NULL;
    pthread_mutex_lock(&mm->hash_mu);
    if (!mm->hash_done && hash_cache_get(&m->fid, mm->hash)) mm->hash_done = true;
    if (!mm->hash_done) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char dg[EVP_MAX_MD_SIZE];
        unsigned int dl = 0;
        const uint8_t *p = file_base(m);
        size_t left = dais_gguf_file_size(m->g);
        bool ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
        while (ok && left > 0) {
            size_t n = left < ((size_t)16 << 20) ? left : ((size_t)16 << 20);
            ok = EVP_DigestUpdate(md, p, n) == 1;
            /* Hand the pages back: a pipeline shard then keeps only its own layers resident
             * (what it uses is faulted in again from the page cache). */
            madvise((void *)(uintptr_t)p, n, MADV_DONTNEED);
            p += n;
            left -= n;
        }
        ok = ok && EVP_DigestFinal_ex(md, dg, &dl) == 1 && dl == 32;
        EVP_MD_CTX_free(md);
        if (ok) {
            for (unsigned i = 0; i < 32; i++)
                snprintf(mm->hash + 2 * i, 3, "%02x", dg[i]);
            mm->hash_done = true;
            hash_cache_put(&m->fid, mm->hash);
        }
    }
    if (mm->hash_done) res = mm->hash;
    pthread_mutex_unlock(&mm->hash_mu);
    return res;
}

/* ============================================================================================
 * KV cache
 * ========================================================================================== */

dais_kv *dais_kv_new(const dais_model *m, int32_t n_ctx, int32_t layer_first, int32_t layer_last)
{
    if (m == NULL || n_ctx < 1 || n_ctx > DAIS_MODEL_MAX_CTX || layer_first < 0 ||
        layer_first >= layer_last || layer_last > m->hp.n_layers || layer_first < m->layer_first ||
        layer_last > m->layer_last)
        return NULL;
    uint64_t n = (uint64_t)(layer_last - layer_first) * (uint64_t)n_ctx * (uint64_t)m->kv_dim;
    if (n > SIZE_MAX / sizeof(float)) return NULL;
    dais_kv *kv = calloc(1, sizeof *kv);
    if (kv == NULL) return NULL;
    kv->n_ctx = n_ctx;
    kv->layer_first = layer_first;
    kv->layer_last = layer_last;
    kv->kv_dim = m->kv_dim;
    /* Not zeroed: only positions below len are ever read. */
    kv->k = malloc((size_t)n * sizeof(float));
    kv->v = malloc((size_t)n * sizeof(float));
    if (kv->k == NULL || kv->v == NULL) {
        dais_kv_free(kv);
        return NULL;
    }
    return kv;
}

void dais_kv_free(dais_kv *kv)
{
    if (kv == NULL) return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

int32_t dais_kv_n_ctx(const dais_kv *kv)
{
    return kv->n_ctx;
}
int32_t dais_kv_len(const dais_kv *kv)
{
    return kv->len;
}

void dais_kv_truncate(dais_kv *kv, int32_t len)
{
    if (len >= 0 && len < kv->len) kv->len = len;
}

uint64_t dais_kv_bytes(const dais_kv *kv)
{
    return 2ull * (uint64_t)(kv->layer_last - kv->layer_first) * (uint64_t)kv->n_ctx *
           (uint64_t)kv->kv_dim * sizeof(float);
}

/* ============================================================================================
 * Forward context
 * ========================================================================================== */

static float *alloc_f32(int64_t rows, int64_t cols)
{
    return malloc((size_t)rows * (size_t)cols * sizeof(float));
}

dais_ctx *dais_ctx_new(const dais_model *m, int n_threads, int32_t max_batch, dais_err *err)
{
    dais_err_clear(err);
    if (m == NULL || n_threads < 1 || n_threads > 1024 || max_batch < 1 || max_batch > 65536) {
        dais_err_set(err, DAIS_EINVAL, "bad context parameters (threads %d, batch %d)", n_threads,
                     max_batch);
        return NULL;
    }
    const dais_hparams *hp = &m->hp;
    dais_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) goto nomem;
    c->m = m;
    c->max_batch = max_batch;
    int64_t max_in = hp->dim;
    if (m->q_dim > max_in) max_in = m->q_dim;
    if (hp->ffn_dim > max_in) max_in = hp->ffn_dim;
    c->pool = dais_pool_new(n_threads);
    c->mm = dais_mm_scratch_new(max_in, max_batch);
    c->x = alloc_f32(max_batch, hp->dim);
    c->xb = alloc_f32(max_batch, hp->dim);
    c->delta = alloc_f32(max_batch, hp->dim);
    c->q = alloc_f32(max_batch, m->q_dim);
    c->k = alloc_f32(max_batch, m->kv_dim);
    c->v = alloc_f32(max_batch, m->kv_dim);
    c->att = alloc_f32(max_batch, m->q_dim);
    c->hb = alloc_f32(max_batch, hp->ffn_dim);
    c->hb2 = alloc_f32(max_batch, hp->ffn_dim);
    c->rope = alloc_f32(max_batch, hp->rope_dim);
    c->out_rows = malloc((size_t)max_batch * sizeof(int32_t));
    if (c->pool == NULL || c->mm == NULL || c->x == NULL || c->xb == NULL || c->delta == NULL ||
        c->q == NULL || c->k == NULL || c->v == NULL || c->att == NULL || c->hb == NULL ||
        c->hb2 == NULL || c->rope == NULL || c->out_rows == NULL)
        goto nomem;
    return c;
nomem:
    dais_ctx_free(c);
    dais_err_set(err, DAIS_ENOMEM, "out of memory for the forward buffers");
    return NULL;
}

void dais_ctx_free(dais_ctx *c)
{
    if (c == NULL) return;
    free(c->out_rows);
    free(c->rope);
    free(c->hb2);
    free(c->hb);
    free(c->att);
    free(c->v);
    free(c->k);
    free(c->q);
    free(c->delta);
    free(c->xb);
    free(c->x);
    dais_mm_scratch_free(c->mm);
    dais_pool_free(c->pool);
    free(c);
}

dais_pool *dais_ctx_pool(dais_ctx *c)
{
    return c->pool;
}
int32_t dais_ctx_max_batch(const dais_ctx *c)
{
    return c->max_batch;
}
const dais_model *dais_ctx_model(const dais_ctx *c)
{
    return c->m;
}

/* ============================================================================================
 * Forward: the per-row operations, each split over the pool by (ith, nth)
 * ========================================================================================== */

static void split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

static void rmsnorm(float *o, const float *x, const float *w, int32_t n, float eps)
{
    double ss = 0.0;
    for (int32_t i = 0; i < n; i++)
        ss += (double)x[i] * (double)x[i];
    float r = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int32_t i = 0; i < n; i++)
        o[i] = w[i] * (r * x[i]);
}

/* x[t] = embedding of token t (or act_in[t]); rope[t] = cos/sin of its angles. */
static void op_embed(void *arg, int ith, int nth)
{
    dais_ctx *c = arg;
    const dais_model *m = c->m;
    const dais_batch *b = c->b;
    int32_t dim = m->hp.dim, nf = m->hp.rope_dim / 2;
    int64_t lo, hi;
    split(b->n_tokens, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        float *x = c->x + t * dim;
        if (b->layer_first == 0) {
            const uint8_t *row =
                (const uint8_t *)m->embd.data + (size_t)b->token[t] * m->embd_row_bytes;
            dais_dequantize_row(m->embd.type, row, x, dim);
        } else {
            memcpy(x, b->act_in + t * dim, (size_t)dim * sizeof(float));
        }
        float *r = c->rope + t * m->hp.rope_dim;
        float pos = (float)b->pos[t];
        for (int32_t i = 0; i < nf; i++) {
            float a = pos * m->inv_freq[i];
            r[2 * i] = cosf(a);
            r[2 * i + 1] = sinf(a);
        }
    }
}

/* x[t] += delta[t] (after the first block), xb[t] = rmsnorm(x[t]) * norm_w. */
static void op_norm(void *arg, int ith, int nth)
{
    dais_ctx *c = arg;
    int32_t dim = c->m->hp.dim;
    int64_t lo, hi;
    split(c->b->n_tokens, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        float *x = c->x + t * dim;
        if (c->add_delta) {
            const float *d = c->delta + t * dim;
            for (int32_t i = 0; i < dim; i++)
                x[i] += d[i];
        }
        rmsnorm(c->xb + t * dim, x, c->norm_w, dim, c->m->hp.rms_eps);
    }
}

/* Rotates adjacent pairs (2i, 2i+1) of the first rope_dim dimensions of each head
 * (GGUF/llama.cpp "normal" RoPE, as llama2.c). */
static void rope_rotate(float *v, int32_t n_heads, int32_t hd, int32_t nf, const float *r)
{
    for (int32_t h = 0; h < n_heads; h++) {
        float *p = v + (int64_t)h * hd;
        for (int32_t i = 0; i < nf; i++) {
            float c = r[2 * i], s = r[2 * i + 1];
            float a = p[2 * i], b = p[2 * i + 1];
            p[2 * i] = a * c - b * s;
            p[2 * i + 1] = a * s + b * c;
        }
    }
}

/* RoPE on q[t] and k[t]; k[t], v[t] stored into the token's cache at its position. */
static void op_rope_store(void *arg, int ith, int nth)
{
    dais_ctx *c = arg;
    const dais_model *m = c->m;
    const dais_hparams *hp = &m->hp;
    const dais_batch *b = c->b;
    int32_t kvd = m->kv_dim, nf = hp->rope_dim / 2;
    int64_t lo, hi;
    split(b->n_tokens, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        const float *r = c->rope + t * hp->rope_dim;
        float *k = c->k + t * kvd;
        rope_rotate(c->q + t * m->q_dim, hp->n_heads, hp->head_dim, nf, r);
        rope_rotate(k, hp->n_kv_heads, hp->head_dim, nf, r);
        dais_kv *kv = c->kvs[b->seq[t]];
        size_t off =
            ((size_t)(c->layer - kv->layer_first) * (size_t)kv->n_ctx + (size_t)b->pos[t]) *
            (size_t)kvd;
        memcpy(kv->k + off, k, (size_t)kvd * sizeof(float));
        memcpy(kv->v + off, c->v + t * kvd, (size_t)kvd * sizeof(float));
    }
}

/* Attention for every (token, head) pair. Pairs are dealt round-robin (pair i to thread
 * i mod nth) so that each thread gets a share of every token's heads: a prefill's later tokens
 * attend over more positions, and a contiguous split would give one thread all of them. */
static void op_attn(void *arg, int ith, int nth)
{
    dais_ctx *c = arg;
    const dais_model *m = c->m;
    const dais_hparams *hp = &m->hp;
    const dais_batch *b = c->b;
    int32_t hd = hp->head_dim, group = hp->n_heads / hp->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t n_pairs = (int64_t)b->n_tokens * hp->n_heads;
    for (int64_t i = ith; i < n_pairs; i += nth) {
        int64_t t = i / hp->n_heads;
        int32_t h = (int32_t)(i % hp->n_heads);
        const dais_kv *kv = c->kvs[b->seq[t]];
        size_t base =
            (size_t)(c->layer - kv->layer_first) * (size_t)kv->n_ctx * (size_t)kv->kv_dim +
            (size_t)(h / group) * (size_t)hd;
        c->attn(c->q + t * m->q_dim + (int64_t)h * hd, kv->k + base, kv->v + base, kv->kv_dim,
                b->pos[t] + 1, hd, scale, c->att + t * m->q_dim + (int64_t)h * hd);
    }
}

/* hb = silu(hb) * hb2, split by elements (a decode step has one row). */
static void op_swiglu(void *arg, int ith, int nth)
{
    dais_ctx *c = arg;
    int64_t lo, hi;
    split((int64_t)c->b->n_tokens * c->m->hp.ffn_dim, ith, nth, &lo, &hi);
    float *g = c->hb;
    const float *u = c->hb2;
    for (int64_t i = lo; i < hi; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* After the last layer of the range: x += delta; then either the output norm of the rows that
 * want logits, gathered into xb rows 0..n_out-1, or x copied to act_out. */
static void op_final(void *arg, int ith, int nth)
{
    dais_ctx *c = arg;
    const dais_batch *b = c->b;
    int32_t dim = c->m->hp.dim;
    bool to_logits = b->layer_last == c->m->hp.n_layers;
    int64_t lo, hi;
    split(to_logits ? c->n_out : b->n_tokens, ith, nth, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        int64_t t = to_logits ? c->out_rows[r] : r;
        float *x = c->x + t * dim;
        const float *d = c->delta + t * dim;
        for (int32_t i = 0; i < dim; i++)
            x[i] += d[i];
        if (to_logits)
            rmsnorm(c->xb + r * dim, x, c->m->out_norm, dim, c->m->hp.rms_eps);
        else
            memcpy(b->act_out + t * dim, x, (size_t)dim * sizeof(float));
    }
}

/* ============================================================================================
 * Forward: validation and the layer loop
 * ========================================================================================== */

static int check_batch(const dais_ctx *c, const dais_batch *b, dais_kv *const *kvs, int32_t n_kv,
                       const float *logits)
{
    const dais_hparams *hp = &c->m->hp;
    if (b == NULL || b->n_tokens < 1 || b->n_tokens > c->max_batch || b->pos == NULL ||
        b->seq == NULL || kvs == NULL || n_kv < 1)
        return DAIS_EINVAL;
    if (b->layer_first < 0 || b->layer_first >= b->layer_last || b->layer_last > hp->n_layers)
        return DAIS_EINVAL;
    if ((b->layer_first == 0 && b->token == NULL) || (b->layer_first > 0 && b->act_in == NULL))
        return DAIS_EINVAL;
    /* A shard file has no weights outside its range. */
    if (b->layer_first < c->m->layer_first || b->layer_last > c->m->layer_last) return DAIS_ERANGE;
    bool to_logits = b->layer_last == hp->n_layers;
    if (!to_logits && b->act_out == NULL) return DAIS_EINVAL;
    if (to_logits && logits == NULL) {
        bool any = b->logits == NULL;
        for (int32_t i = 0; !any && i < b->n_tokens; i++)
            any = b->logits[i];
        if (any) return DAIS_EINVAL;
    }
    for (int32_t i = 0; i < b->n_tokens; i++) {
        if (b->layer_first == 0 && (b->token[i] < 0 || b->token[i] >= hp->n_vocab))
            return DAIS_EINVAL;
        int32_t s = b->seq[i];
        if (s < 0 || s >= n_kv || kvs[s] == NULL) return DAIS_EINVAL;
        const dais_kv *kv = kvs[s];
        if (kv->layer_first != b->layer_first || kv->layer_last != b->layer_last ||
            kv->kv_dim != c->m->kv_dim)
            return DAIS_EINVAL;
        int32_t j = i - 1;
        while (j >= 0 && b->seq[j] != s)
            j--;
        if (j >= 0) {
            if (b->pos[i] != b->pos[j] + 1) return DAIS_EINVAL;
        } else {
            if (b->pos[i] != kv->len) return DAIS_EINVAL;
            /* The first token of this sequence: no other sequence index may share its cache. */
            for (int32_t k = 0; k < i; k++)
                if (b->seq[k] != s && kvs[b->seq[k]] == kv) return DAIS_EINVAL;
        }
        if (b->pos[i] >= kv->n_ctx) return DAIS_ECTXFULL;
    }
    return 0;
}

int dais_forward(dais_ctx *c, const dais_batch *b, dais_kv *const *kvs, int32_t n_kv, float *logits)
{
    int rc = check_batch(c, b, kvs, n_kv, logits);
    if (rc) return rc;
    const dais_model *m = c->m;
    int32_t n = b->n_tokens;
    c->b = b;
    c->kvs = kvs;
    c->attn = dais_attn_select(dais_kernels_isa());
    c->n_out = 0;
    for (int32_t i = 0; i < n; i++)
        if (b->logits ? b->logits[i] : i == n - 1) c->out_rows[c->n_out++] = i;

    dais_pool_run(c->pool, op_embed, c);
    c->add_delta = false;
    for (int32_t l = b->layer_first; l < b->layer_last; l++) {
        const layer *ly = &m->layers[l];
        c->layer = l;
        c->norm_w = ly->attn_norm;
        dais_pool_run(c->pool, op_norm, c);
        c->add_delta = true;
        if ((rc = dais_matmul(c->pool, c->mm, &ly->wq, c->xb, c->q, n)) ||
            (rc = dais_matmul(c->pool, c->mm, &ly->wk, c->xb, c->k, n)) ||
            (rc = dais_matmul(c->pool, c->mm, &ly->wv, c->xb, c->v, n)))
            goto fail;
        dais_pool_run(c->pool, op_rope_store, c);
        dais_pool_run(c->pool, op_attn, c);
        if ((rc = dais_matmul(c->pool, c->mm, &ly->wo, c->att, c->delta, n))) goto fail;
        c->norm_w = ly->ffn_norm;
        dais_pool_run(c->pool, op_norm, c);
        if ((rc = dais_matmul(c->pool, c->mm, &ly->w_gate, c->xb, c->hb, n)) ||
            (rc = dais_matmul(c->pool, c->mm, &ly->w_up, c->xb, c->hb2, n)))
            goto fail;
        dais_pool_run(c->pool, op_swiglu, c);
        if ((rc = dais_matmul(c->pool, c->mm, &ly->w_down, c->hb, c->delta, n))) goto fail;
    }
    dais_pool_run(c->pool, op_final, c);
    if (b->layer_last == m->hp.n_layers && c->n_out > 0 &&
        (rc = dais_matmul(c->pool, c->mm, &m->output, c->xb, logits, c->n_out)))
        goto fail;

    /* Positions are consecutive from each cache's len, so its new len is its last pos + 1. */
    for (int32_t i = 0; i < n; i++) {
        dais_kv *kv = kvs[b->seq[i]];
        if (b->pos[i] + 1 > kv->len) kv->len = b->pos[i] + 1;
    }
    c->b = NULL;
    c->kvs = NULL;
    return 0;
fail:
    /* Only positions at or past each cache's len were written, and len is unchanged, so the
     * caches still hold exactly what they held before the call. */
    c->b = NULL;
    c->kvs = NULL;
    return rc;
}
