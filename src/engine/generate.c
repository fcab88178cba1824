/*
 * The single-sequence generation loop (see generate.h): prompt tokenization, chunked prefill,
 * the sample → detokenize → stop-string → decode loop, and its timings.
 */
#include "engine/generate.h"

#include "common/clock.h"

#include <stdlib.h>
#include <string.h>

/* ============================================================================================
 * Prefill and tokenization
 * ========================================================================================== */

int dais_prefill(dais_ctx *c, dais_kv *kv, const int32_t *tokens, int32_t n, float *logits)
{
    const dais_hparams *hp = dais_model_hparams(dais_ctx_model(c));
    if (n < 1 || tokens == NULL || logits == NULL) return DAIS_EINVAL;
    if ((int64_t)dais_kv_len(kv) + n > dais_kv_n_ctx(kv)) return DAIS_ECTXFULL;
    int32_t mb = dais_ctx_max_batch(c);
    int32_t *pos = malloc((size_t)mb * 2 * sizeof(int32_t));
    if (pos == NULL) return DAIS_ENOMEM;
    int32_t *seq = pos + mb;
    memset(seq, 0, (size_t)mb * sizeof(int32_t));
    int rc = 0;
    for (int32_t done = 0; done < n && rc == 0;) {
        int32_t k = n - done < mb ? n - done : mb;
        int32_t start = dais_kv_len(kv);
        for (int32_t i = 0; i < k; i++)
            pos[i] = start + i;
        dais_batch b = {
            .n_tokens = k,
            .token = tokens + done,
            .pos = pos,
            .seq = seq,
            .logits = NULL,
            .layer_first = 0,
            .layer_last = hp->n_layers,
        };
        rc = dais_forward(c, &b, &kv, 1, logits);
        done += k;
    }
    free(pos);
    return rc;
}

int dais_tokenize_alloc(const dais_tokenizer *t, const char *text, size_t len, bool add_bos,
                        bool parse_special, int32_t **out, int32_t *n, dais_err *err)
{
    *out = NULL;
    *n = 0;
    /* Byte fallback gives at most one token per byte, plus BOS and a space-prefix token. */
    int64_t cap = (int64_t)len + 4;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (cap > INT32_MAX)
            return dais_err_set(err, DAIS_ETOOBIG, "prompt of %zu bytes is too long", len);
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        if (ids == NULL)
            return dais_err_set(err, DAIS_ENOMEM, "out of memory tokenizing the prompt");
        int64_t r = dais_tokenize(t, text, len, add_bos, parse_special, ids, cap);
        if (r < 0) {
            free(ids);
            return dais_err_set(err, (int)r, "tokenizing the prompt: %s", dais_strerror((int)r));
        }
        if (r <= cap) {
            *out = ids;
            *n = (int32_t)r;
            return 0;
        }
        free(ids);
        cap = r;
    }
    return dais_err_set(err, DAIS_EINTERNAL, "tokenizer returned inconsistent lengths");
}

/* ============================================================================================
 * Stop strings
 * ========================================================================================== */

#define STOP_CHUNK 4096

int dais_stopper_init(dais_stopper *s, const char *const *stop, int n_stop)
{
    memset(s, 0, sizeof *s);
    if (n_stop < 0 || (n_stop > 0 && stop == NULL)) return DAIS_EINVAL;
    for (int i = 0; i < n_stop; i++) {
        if (stop[i] == NULL) return DAIS_EINVAL;
        size_t l = strlen(stop[i]);
        if (l == 0) continue;
        if (s->n_stop == DAIS_STOP_MAX || l > DAIS_STOP_MAX_LEN) return DAIS_EINVAL;
        s->stop[s->n_stop] = stop[i];
        s->stop_len[s->n_stop++] = l;
        if (l > s->max_len) s->max_len = l;
    }
    if (s->n_stop > 0) {
        s->cap = s->max_len + STOP_CHUNK;
        s->buf = malloc(s->cap);
        if (s->buf == NULL) return DAIS_ENOMEM;
    }
    return 0;
}

void dais_stopper_free(dais_stopper *s)
{
    free(s->buf);
    s->buf = NULL;
}

/* Scans the buffer: emits up to the first stop string (and reports the hit), or everything
 * except the longest tail that could begin a stop string. */
static int stopper_scan(dais_stopper *s, dais_text_fn emit, void *user)
{
    size_t first = SIZE_MAX;
    for (int i = 0; i < s->n_stop; i++) {
        const char *p = memmem(s->buf, s->n_buf, s->stop[i], s->stop_len[i]);
        if (p != NULL && (size_t)(p - s->buf) < first) first = (size_t)(p - s->buf);
    }
    if (first != SIZE_MAX) {
        s->hit = true;
        s->n_buf = 0;
        if (first > 0 && emit != NULL) {
            int rc = emit(user, s->buf, first);
            if (rc) return rc;
        }
        return 1;
    }
    size_t hold = 0;
    for (int i = 0; i < s->n_stop; i++) {
        size_t k = s->stop_len[i] - 1 < s->n_buf ? s->stop_len[i] - 1 : s->n_buf;
        for (; k > hold; k--)
            if (memcmp(s->buf + s->n_buf - k, s->stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    size_t out = s->n_buf - hold;
    int rc = 0;
    if (out > 0 && emit != NULL) rc = emit(user, s->buf, out);
    memmove(s->buf, s->buf + out, hold);
    s->n_buf = hold;
    return rc;
}

int dais_stopper_push(dais_stopper *s, const char *text, size_t len, dais_text_fn emit, void *user)
{
    if (s->hit) return 1;
    if (s->n_stop == 0) return (len > 0 && emit != NULL) ? emit(user, text, len) : 0;
    while (len > 0) {
        size_t k = s->cap - s->n_buf < len ? s->cap - s->n_buf : len;
        memcpy(s->buf + s->n_buf, text, k);
        s->n_buf += k;
        text += k;
        len -= k;
        int rc = stopper_scan(s, emit, user);
        if (rc) return rc;
    }
    return 0;
}

int dais_stopper_finish(dais_stopper *s, dais_text_fn emit, void *user)
{
    if (s->hit || s->n_buf == 0) return 0;
    int rc = emit != NULL ? emit(user, s->buf, s->n_buf) : 0;
    s->n_buf = 0;
    return rc;
}

/* ============================================================================================
 * The loop
 * ========================================================================================== */

const char *dais_gen_stop_name(int stop)
{
    switch (stop) {
    case DAIS_GEN_STOP_LIMIT:
        return "limit";
    case DAIS_GEN_STOP_EOS:
        return "eos";
    case DAIS_GEN_STOP_STRING:
        return "stop";
    case DAIS_GEN_STOP_CTX:
        return "context";
    case DAIS_GEN_STOP_CANCELLED:
        return "cancelled";
    default:
        return "unknown";
    }
}

void dais_gen_params_default(dais_gen_params *p)
{
    memset(p, 0, sizeof *p);
    p->n_predict = 128;
    dais_sampler_params_default(&p->sampling);
    p->add_bos = -1;
}

static double secs(uint64_t a, uint64_t b)
{
    return (double)(b - a) * 1e-9;
}

int dais_generate(dais_ctx *c, dais_kv *kv, const char *prompt, size_t len,
                  const dais_gen_params *p, const dais_gen_callbacks *cb, dais_gen_stats *st,
                  dais_err *err)
{
    dais_err_clear(err);
    uint64_t t0 = dais_now_ns();
    const dais_model *m = dais_ctx_model(c);
    const dais_hparams *hp = dais_model_hparams(m);
    const dais_tokenizer *tok = dais_model_tokenizer(m);
    dais_gen_callbacks none = {0};
    dais_gen_stats stats = {0};
    if (cb == NULL) cb = &none;
    if (st == NULL) st = &stats;
    memset(st, 0, sizeof *st);
    if (p == NULL || (prompt == NULL && len > 0) || kv == NULL)
        return dais_err_set(err, DAIS_EINVAL, "missing argument");
    if (dais_sampler_params_check(&p->sampling) != 0)
        return dais_err_set(err, DAIS_EINVAL, "sampling parameter out of range");

    int32_t *ids = NULL, n_ids = 0;
    float *logits = NULL;
    char *piece = NULL;
    dais_sampler *smp = NULL;
    dais_stopper stopper;
    int rc = dais_stopper_init(&stopper, p->stop, p->n_stop);
    if (rc) {
        dais_err_set(err, rc,
                     rc == DAIS_EINVAL ? "at most %d stop strings of at most %d bytes"
                                       : "out of memory",
                     DAIS_STOP_MAX, DAIS_STOP_MAX_LEN);
        goto out;
    }
    bool add_bos = p->add_bos < 0 ? dais_tokenizer_add_bos(tok) : p->add_bos != 0;
    if ((rc = dais_tokenize_alloc(tok, prompt ? prompt : "", len, add_bos, p->parse_special, &ids,
                                  &n_ids, err)))
        goto out;
    st->n_prompt = n_ids;
    if (n_ids == 0) {
        rc = dais_err_set(err, DAIS_EINVAL, "the prompt is empty and the model adds no BOS token");
        goto out;
    }
    if (dais_kv_n_ctx(kv) <= n_ids) {
        rc = dais_err_set(err, DAIS_ECTXFULL,
                          "the prompt is %d tokens; the context holds %d (one more is needed to "
                          "generate)",
                          n_ids, dais_kv_n_ctx(kv));
        goto out;
    }
    size_t piece_cap = 3 * dais_tokenizer_max_token_len(tok) + 16;
    logits = malloc((size_t)hp->n_vocab * sizeof *logits);
    piece = malloc(piece_cap);
    smp = dais_sampler_new(&p->sampling, hp->n_vocab);
    if (logits == NULL || piece == NULL || smp == NULL) {
        rc = dais_err_set(err, DAIS_ENOMEM, "out of memory");
        goto out;
    }

    /* The prompt: through the detokenizer (so the first generated piece is decoded in
     * context), into the sampler's history, then one prefill. */
    dais_detok dt;
    dais_detok_init(&dt, tok, true);
    bool cancelled = false;
    for (int32_t i = 0; i < n_ids; i++) {
        dais_sampler_accept(smp, ids[i]);
        int k = dais_detok_push(&dt, ids[i], piece, piece_cap);
        if (k > 0 && p->echo_prompt && cb->on_text != NULL &&
            cb->on_text(cb->user, piece, (size_t)k))
            cancelled = true;
    }
    dais_kv_truncate(kv, 0);
    uint64_t t1 = dais_now_ns();
    if (!cancelled && (rc = dais_prefill(c, kv, ids, n_ids, logits))) {
        dais_err_set(err, rc, "prefill failed: %s", dais_strerror(rc));
        goto out;
    }
    uint64_t t2 = dais_now_ns();
    st->prefill_s = secs(t1, t2);

    int32_t bos = dais_tokenizer_bos(tok);
    int stop = cancelled ? DAIS_GEN_STOP_CANCELLED : DAIS_GEN_STOP_LIMIT;
    int32_t seq0 = 0;
    while (!cancelled) {
        if (p->n_predict > 0 && st->n_gen >= p->n_predict) {
            stop = DAIS_GEN_STOP_LIMIT;
            break;
        }
        int32_t next = dais_sampler_sample(smp, logits);
        if (!p->ignore_eos && (dais_tokenizer_is_eog(tok, next) || next == bos)) {
            stop = DAIS_GEN_STOP_EOS;
            break;
        }
        st->n_gen++;
        dais_sampler_accept(smp, next);
        if (cb->on_token != NULL && cb->on_token(cb->user, next)) {
            stop = DAIS_GEN_STOP_CANCELLED;
            break;
        }
        int k = dais_detok_push(&dt, next, piece, piece_cap);
        if (k > 0) {
            int r = dais_stopper_push(&stopper, piece, (size_t)k, cb->on_text, cb->user);
            if (r == 1) {
                stop = DAIS_GEN_STOP_STRING;
                break;
            }
            if (r != 0) {
                stop = DAIS_GEN_STOP_CANCELLED;
                break;
            }
        }
        if (p->n_predict > 0 && st->n_gen >= p->n_predict) {
            stop = DAIS_GEN_STOP_LIMIT;
            break;
        }
        int32_t pos = dais_kv_len(kv);
        if (pos >= dais_kv_n_ctx(kv)) {
            stop = DAIS_GEN_STOP_CTX;
            break;
        }
        dais_batch b = {
            .n_tokens = 1,
            .token = &next,
            .pos = &pos,
            .seq = &seq0,
            .logits = NULL,
            .layer_first = 0,
            .layer_last = hp->n_layers,
        };
        if ((rc = dais_forward(c, &b, &kv, 1, logits))) {
            dais_err_set(err, rc, "decode step at position %d failed: %s", pos, dais_strerror(rc));
            goto out;
        }
        st->n_decode++;
    }
    if (stop != DAIS_GEN_STOP_STRING && stop != DAIS_GEN_STOP_CANCELLED) {
        int k = dais_detok_flush(&dt, piece, piece_cap);
        int r = k > 0 ? dais_stopper_push(&stopper, piece, (size_t)k, cb->on_text, cb->user) : 0;
        if (r == 1)
            stop = DAIS_GEN_STOP_STRING;
        else if (r != 0 || dais_stopper_finish(&stopper, cb->on_text, cb->user) != 0)
            stop = DAIS_GEN_STOP_CANCELLED; /* the callback refused text, now or at the end */
    }
    st->stop = stop;
    st->decode_s = secs(t2, dais_now_ns());
    rc = 0;
out:
    st->total_s = secs(t0, dais_now_ns());
    dais_sampler_free(smp);
    free(piece);
    free(logits);
    free(ids);
    dais_stopper_free(&stopper);
    return rc;
}
