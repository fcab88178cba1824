/* The one table that names every error code (see error.h). */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int dais_err_setf(dais_err *e, int code, const char *fmt, ...)
{
    if (e == NULL) return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return code;
}

void dais_err_clear(dais_err *e)
{
    if (e == NULL) return;
    e->code = 0;
    e->msg[0] = '\0';
}

const char *dais_strerror(int code)
{
    switch (code) {
#define DAIS_ERR_MSG(name, c, msg)                                                                 \
    case c:                                                                                        \
        return msg;
        DAIS_ERRNO_MAP(DAIS_ERR_MSG)
#undef DAIS_ERR_MSG
    }
    return "unknown error";
}

const char *dais_errname(int code)
{
    switch (code) {
#define DAIS_ERR_NAME(name, c, msg)                                                                \
    case c:                                                                                        \
        return "E" #name;
        DAIS_ERRNO_MAP(DAIS_ERR_NAME)
#undef DAIS_ERR_NAME
    }
    return "EUNKNOWN";
}
