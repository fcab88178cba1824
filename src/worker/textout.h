/*
 * Output text of one sequence: stop strings and the token/text alignment that makes failover
 * exact (docs/protocol.md, INFERENCE_RESPONSE).
 *
 * The scheduler pushes each sampled token with the bytes the detokenizer produced for it and
 * whether the detokenizer is "clean" after it (holds no bytes of an unfinished UTF-8
 * sequence). Text stays pending while it might still become a stop string, and a token stays
 * pending while its bytes are not complete; everything else is *committed*: handed out as
 * (text, tokens) where text is exactly the decoded text of those tokens. When a stop string
 * appears, the text before it and every pending token are handed out and the sequence ends.
 *
 * Memory: buffers are sized at init for the usual worst case (a held stop prefix plus a few
 * pieces); they grow only for unusual streams (very long pieces, many empty control tokens
 * behind a held prefix), so the token loop normally does not allocate. One sequence, one
 * thread.
 */
#ifndef DAIS_WORKER_TEXTOUT_H
#define DAIS_WORKER_TEXTOUT_H

#include "proto/messages.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DAIS_TEXTOUT_PIECE_MAX 256

typedef struct dais_textout {
    int n_stop;
    char stop[DAIS_STOP_MAX][DAIS_STOP_LEN_MAX + 1];
    size_t stop_len[DAIS_STOP_MAX];
    size_t max_stop; /* longest stop string */
    /* pending text and the tokens that produced it */
    char *text; /* (text_cap) */
    size_t text_len, text_cap;
    int32_t *tok;    /* (tok_cap) */
    size_t *tok_end; /* (tok_cap) offset in `text` where each token's bytes end */
    bool *tok_clean; /* (tok_cap) detokenizer clean after this token */
    int32_t n_tok, tok_cap;
    char *out_text;   /* (text_cap) what the last push handed out */
    int32_t *out_tok; /* (tok_cap) */
    bool stopped;
} dais_textout;

/* What one push hands out; the pointers are valid until the next push/finish/close. */
typedef struct dais_textout_commit {
    const char *text;
    size_t text_len;
    const int32_t *tokens;
    int32_t n_tokens;
    bool stop; /* a stop string matched: the sequence is over */
} dais_textout_commit;

/* Sets up for the stop strings of `p` (copied). 0 or DAIS_ENOMEM. */
int dais_textout_init(dais_textout *to, const dais_infer_params *p);
void dais_textout_close(dais_textout *to); /* accepts a zeroed struct */

/* Pushes one token with its `n` bytes of text. Fills `out` with what becomes committed (maybe
 * nothing). After a stop, further pushes are ignored. 0 or DAIS_ENOMEM. */
int dais_textout_push(dais_textout *to, int32_t token, const char *bytes, size_t n, bool clean,
                      dais_textout_commit *out);

/* End of the sequence for another reason (EOS, length, cancel): appends `n` final bytes
 * (the detokenizer's flush) to the pending text and hands out everything pending. */
int dais_textout_finish(dais_textout *to, const char *bytes, size_t n, dais_textout_commit *out);

#endif
