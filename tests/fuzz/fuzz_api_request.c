/*
 * Fuzz target for the POST /api/inference body validator (src/master/api_request.c): any
 * bytes must give either a request whose fields are all in range or an error with a status
 * and a code — never a crash, a leak or an out-of-range value.
 */
#include "master/api_request.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const dais_api_limits lim = {.default_max_tokens = 16, .max_tokens_limit = 4096};
    dais_api_request r;
    dais_api_error e;
    int rc = dais_api_request_parse((const char *)data, size, &lim, &r, &e);
    if (rc == 0) {
        if (r.prompt == NULL || strlen(r.prompt) != r.prompt_len) abort();
        if (r.params.max_tokens < 1 || r.params.max_tokens > 4096) abort();
        if (!(r.params.temperature >= 0) || !(r.params.top_p > 0) || r.params.top_p > 1) abort();
        if (r.params.n_stop < 0 || r.params.n_stop > DAIS_STOP_MAX) abort();
        for (int i = 0; i < r.params.n_stop; i++)
            if (strlen(r.params.stop[i]) == 0 || strlen(r.params.stop[i]) > DAIS_STOP_LEN_MAX)
                abort();
        dais_api_request_clear(&r);
    } else {
        if (e.status != 400 || e.code[0] == '\0' || e.message[0] == '\0') abort();
    }
    return 0;
}
