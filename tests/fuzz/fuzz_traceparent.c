/*
 * Fuzz target for the W3C Trace Context parsers (src/common/trace.c): traceparent and
 * tracestate values arrive in HTTP headers and in cluster envelope metadata from peers.
 * Checks that a parsed traceparent formats back to a string that parses to the same context,
 * and that the version-00 form round-trips byte for byte.
 */
#include "common/trace.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    dais_trace_ctx c;
    if (dais_traceparent_parse(s, size, &c) == 0) {
        char out[DAIS_TRACEPARENT_LEN + 1];
        if (!c.valid || dais_traceparent_format(&c, out) != 0) abort();
        dais_trace_ctx back;
        if (dais_traceparent_parse(out, strlen(out), &back) != 0 ||
            memcmp(&back, &c, sizeof(c)) != 0)
            abort();
        /* a version-00 header with only the sampled bit (or none) comes back unchanged */
        if (size == DAIS_TRACEPARENT_LEN && s[0] == '0' && s[1] == '0' &&
            (s[54] == '0' || s[54] == '1') && s[53] == '0' &&
            memcmp(out, s, DAIS_TRACEPARENT_LEN) != 0)
            abort();
    } else if (c.valid) {
        abort();
    }
    (void)dais_tracestate_valid(s, size);
    return 0;
}
