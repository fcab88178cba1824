/*
 * Fuzz target for the heartbeat datagram verifier. The first input byte picks a mode:
 *   even: the rest is a raw datagram, opened with a fixed key (forgeries must never pass);
 *   odd:  the rest is an envelope that, when it parses, is sealed with the key and opened, so the
 * code behind the MAC check (window, envelope, typed decoders) is reached as well; the same
 * datagram opened twice must be refused as a replay the second time. Seeds: corpus/dgram/.
 */
#include "proto/dgram.h"
#include "proto/frame.h"
#include "proto_fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t key[DAIS_SESSION_KEY_LEN] = "0123456789abcdef0123456789abcdef";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    dais_seq_window w = {0};
    dais_msg *m = NULL;
    if ((mode & 1) == 0) {
        uint64_t sid, seq;
        dais_dgram_peek(data, size, &sid, &seq);
        enum dais_dgram_verdict v = dais_dgram_open(data, size, key, &w, &m, NULL, NULL);
        if (v != DAIS_DGRAM_OK && m != NULL) abort();
        if (m != NULL) fuzz_all_decoders(m);
        dais_msg_free(m);
        return 0;
    }
    if (size > DAIS_DGRAM_MAX) return 0;
    uint8_t *buf = malloc(DAIS_DGRAM_MAX);
    if (buf == NULL) return 0;
    dais_msg *env = NULL;
    dais_err err;
    if (dais_envelope_parse((const char *)data, size, &env, &err) == 0) {
        size_t n = 0;
        if (dais_dgram_seal(env, 5, 9, key, buf, DAIS_DGRAM_MAX, &n) == 0) {
            if (dais_dgram_open(buf, n, key, &w, &m, NULL, NULL) != DAIS_DGRAM_OK) abort();
            fuzz_all_decoders(m);
            dais_msg_free(m);
            m = NULL;
            if (dais_dgram_open(buf, n, key, &w, &m, NULL, NULL) != DAIS_DGRAM_REPLAY) abort();
        }
        dais_msg_free(env);
    }
    free(buf);
    return 0;
}
