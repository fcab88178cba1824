/* Stop strings and token/text alignment of one output stream (textout.h). */
#include "worker/textout.h"

#include <stdlib.h>
#include <string.h>

/* Usually pending text is at most a held-back stop prefix (< max_stop) plus the bytes of the
 * few tokens of one unfinished UTF-8 sequence plus the newest piece, and the initial
 * capacities cover that. Anything more grows the buffers (doubling, so amortised). */
static int grow(dais_textout *to, size_t need_text, int32_t need_tok)
{
    if (need_text > to->text_cap) {
        if (need_text > SIZE_MAX / 4) return DAIS_ENOMEM;
        size_t cap = need_text * 2;
        char *t = realloc(to->text, cap);
        if (t == NULL) return DAIS_ENOMEM;
        to->text = t;
        char *o = realloc(to->out_text, cap);
        if (o == NULL) return DAIS_ENOMEM;
        to->out_text = o;
        to->text_cap = cap;
    }
    if (need_tok > to->tok_cap) {
        if (need_tok > INT32_MAX / 4) return DAIS_ENOMEM;
        int32_t cap = need_tok * 2;
        int32_t *a = realloc(to->tok, (size_t)cap * sizeof(*a));
        if (a == NULL) return DAIS_ENOMEM;
        to->tok = a;
        size_t *b = realloc(to->tok_end, (size_t)cap * sizeof(*b));
        if (b == NULL) return DAIS_ENOMEM;
        to->tok_end = b;
        bool *c = realloc(to->tok_clean, (size_t)cap * sizeof(*c));
        if (c == NULL) return DAIS_ENOMEM;
        to->tok_clean = c;
        int32_t *o = realloc(to->out_tok, (size_t)cap * sizeof(*o));
        if (o == NULL) return DAIS_ENOMEM;
        to->out_tok = o;
        to->tok_cap = cap;
    }
    return 0;
}

int dais_textout_init(dais_textout *to, const dais_infer_params *p)
{
    memset(to, 0, sizeof(*to));
    to->n_stop = p->n_stop < 0 ? 0 : p->n_stop > DAIS_STOP_MAX ? DAIS_STOP_MAX : p->n_stop;
    for (int i = 0; i < to->n_stop; i++) {
        memcpy(to->stop[i], p->stop[i], sizeof(to->stop[i]));
        to->stop[i][DAIS_STOP_LEN_MAX] = '\0';
        to->stop_len[i] = strlen(to->stop[i]);
        if (to->stop_len[i] > to->max_stop) to->max_stop = to->stop_len[i];
    }
    if (grow(to, 2 * (to->max_stop + DAIS_TEXTOUT_PIECE_MAX + 16), 64) != 0) {
        dais_textout_close(to);
        return DAIS_ENOMEM;
    }
    return 0;
}

void dais_textout_close(dais_textout *to)
{
    free(to->text);
    free(to->tok);
    free(to->tok_end);
    free(to->tok_clean);
    free(to->out_text);
    free(to->out_tok);
    memset(to, 0, sizeof(*to));
}

/* Earliest match of any stop string in text[0..len): its offset, or -1. A stop string with
 * empty text cannot exist (lengths are 1..128). */
static long find_stop(const dais_textout *to)
{
    long best = -1;
    for (int i = 0; i < to->n_stop; i++) {
        size_t sl = to->stop_len[i];
        if (sl == 0 || sl > to->text_len) continue;
        const char *hit = memmem(to->text, to->text_len, to->stop[i], sl);
        if (hit != NULL && (best < 0 || hit - to->text < best)) best = hit - to->text;
    }
    return best;
}

/* Length of the longest suffix of the pending text that is a proper prefix of a stop
 * string: those bytes may yet become a stop string and are held back. */
static size_t held_suffix(const dais_textout *to)
{
    size_t best = 0;
    for (int i = 0; i < to->n_stop; i++) {
        size_t sl = to->stop_len[i];
        size_t k = sl - 1 < to->text_len ? sl - 1 : to->text_len;
        for (; k > best; k--) {
            if (memcmp(to->text + to->text_len - k, to->stop[i], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

/* Moves pending tokens [0, n_tok) and text [0, text_len) out to `out`, keeping the rest. */
static void hand_out(dais_textout *to, int32_t n_tok, size_t text_len, dais_textout_commit *out)
{
    memcpy(to->out_text, to->text, text_len);
    out->text = to->out_text;
    out->text_len = text_len;
    memcpy(to->out_tok, to->tok, (size_t)n_tok * sizeof(int32_t));
    out->tokens = to->out_tok;
    out->n_tokens = n_tok;
    size_t rest = to->text_len - text_len;
    memmove(to->text, to->text + text_len, rest);
    to->text_len = rest;
    int32_t keep = to->n_tok - n_tok;
    memmove(to->tok, to->tok + n_tok, (size_t)keep * sizeof(*to->tok));
    memmove(to->tok_clean, to->tok_clean + n_tok, (size_t)keep * sizeof(*to->tok_clean));
    for (int32_t i = 0; i < keep; i++)
        to->tok_end[i] = to->tok_end[i + n_tok] - text_len;
    to->n_tok = keep;
}

static void commit_empty(dais_textout *to, dais_textout_commit *out)
{
    out->text = to->out_text;
    out->text_len = 0;
    out->tokens = to->out_tok;
    out->n_tokens = 0;
    out->stop = false;
}

int dais_textout_push(dais_textout *to, int32_t token, const char *bytes, size_t n, bool clean,
                      dais_textout_commit *out)
{
    commit_empty(to, out);
    if (to->stopped) return 0;
    if (n > SIZE_MAX / 4 - to->text_len || grow(to, to->text_len + n, to->n_tok + 1) != 0)
        return DAIS_ENOMEM;
    memcpy(to->text + to->text_len, bytes, n);
    to->text_len += n;
    to->tok[to->n_tok] = token;
    to->tok_end[to->n_tok] = to->text_len;
    to->tok_clean[to->n_tok] = clean;
    to->n_tok++;
    long at = find_stop(to);
    if (at >= 0) {
        /* Text up to the stop string, and every pending token (the last one completed it). */
        hand_out(to, to->n_tok, to->text_len, out);
        out->text_len = (size_t)at;
        to->stopped = true;
        out->stop = true;
        return 0;
    }
    size_t safe = to->text_len - held_suffix(to);
    int32_t k = -1;
    for (int32_t i = 0; i < to->n_tok; i++)
        if (to->tok_clean[i] && to->tok_end[i] <= safe) k = i;
    if (k >= 0) hand_out(to, k + 1, to->tok_end[k], out);
    return 0;
}

int dais_textout_finish(dais_textout *to, const char *bytes, size_t n, dais_textout_commit *out)
{
    commit_empty(to, out);
    if (to->stopped) return 0;
    if (n > SIZE_MAX / 4 - to->text_len || grow(to, to->text_len + n, to->n_tok) != 0)
        return DAIS_ENOMEM;
    memcpy(to->text + to->text_len, bytes, n);
    to->text_len += n;
    hand_out(to, to->n_tok, to->text_len, out);
    to->stopped = true;
    return 0;
}
