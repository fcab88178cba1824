/*
 * Fuzz target for the envelope parser and every typed-payload decoder: the input is the JSON
 * envelope; when it parses, the message is decoded as every message type (with the input's
 * last 64 bytes as a binary payload too, for the token-carrying types) and re-encoded.
 * Seeds: corpus/envelope/.
 */
#include "proto_fuzz_common.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dais_msg *m = NULL;
    dais_err err;
    if (dais_envelope_parse((const char *)data, size, &m, &err) != 0) {
        if (m != NULL) abort();
        return 0;
    }
    fuzz_all_decoders(m);
    size_t tail = size < 64 ? size : 64;
    if (dais_msg_set_bin(m, data + size - tail, tail) == 0) fuzz_all_decoders(m);
    char *s;
    size_t n;
    if (dais_envelope_encode(m, &s, &n) == 0) {
        dais_msg *again = NULL;
        if (dais_envelope_parse(s, n, &again, &err) != 0) abort();
        dais_msg_free(again);
        free(s);
    }
    dais_msg_free(m);
    return 0;
}
