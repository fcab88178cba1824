/*
 * Fuzz target for the TCP frame decoder: the input is a byte stream that may hold several
 * frames. It is decoded twice — from a flat buffer (dais_frame_decode_msg) and through a
 * libevent evbuffer fed in uneven chunks (dais_frame_read) — and both must agree frame by
 * frame. Every decoded message goes through every typed decoder and is re-encoded; the
 * re-encoded frame must decode again. Seeds: corpus/frame/.
 */
#include "proto_fuzz_common.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Small limits so the fuzzer reaches the "too big" paths too. */
    dais_frame_limits lim = {.max_json = 64 * 1024, .max_bin = 64 * 1024};
    struct evbuffer *in = evbuffer_new();
    if (in == NULL) return 0;
    size_t off = 0, fed = 0, chunk = 1;
    for (int frames = 0; frames < 64; frames++) {
        dais_msg *a = NULL, *b = NULL;
        size_t used = 0;
        dais_err err;
        int ra = dais_frame_decode_msg(data + off, size - off, &lim, &a, &used, &err);
        int rb;
        /* Feed the evbuffer in growing chunks until it decides. */
        for (;;) {
            rb = dais_frame_read(in, &lim, &b, &err);
            if (rb != DAIS_FRAME_NEED_MORE || fed == size) break;
            size_t n = size - fed < chunk ? size - fed : chunk;
            evbuffer_add(in, data + fed, n);
            fed += n;
            chunk = chunk * 2 + 1;
        }
        if (ra != rb && !(ra < 0 && rb < 0)) abort();
        if (ra != 0) {
            dais_msg_free(a);
            dais_msg_free(b);
            break;
        }
        if (strcmp(a->id, b->id) != 0 || a->bin_len != b->bin_len || a->type != b->type ||
            (a->bin_len > 0 && memcmp(a->bin, b->bin, a->bin_len) != 0))
            abort();
        fuzz_all_decoders(a);
        uint8_t *f;
        size_t flen, used2;
        if (dais_frame_encode(a, &lim, &f, &flen) == 0) {
            dais_msg *c = NULL;
            if (dais_frame_decode_msg(f, flen, &lim, &c, &used2, &err) != 0 || used2 != flen)
                abort();
            dais_msg_free(c);
            free(f);
        }
        dais_msg_free(a);
        dais_msg_free(b);
        off += used;
    }
    evbuffer_free(in);
    return 0;
}
