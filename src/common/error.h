/*
 * Error codes shared by every module. A fallible function returns 0 or a negative DAIS_E*
 * code; functions that parse outside input also fill a dais_err with a message that names
 * the problem (the key, the field, the offset), so the caller can show it as it is.
 * The table is append-only: codes are part of logs and of the wire protocol.
 */
#ifndef DAIS_COMMON_ERROR_H
#define DAIS_COMMON_ERROR_H

#include <stddef.h>

#define DAIS_ERRNO_MAP(X)                                                                          \
    X(OK, 0, "success")                                                                            \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(IO, -3, "input/output error")                                                                \
    X(FORMAT, -4, "malformed input")                                                               \
    X(UNSUPPORTED, -5, "not supported")                                                            \
    X(RANGE, -6, "value out of range")                                                             \
    X(TOOBIG, -7, "too large")                                                                     \
    X(NOTFOUND, -8, "not found")                                                                   \
    X(AUTH, -9, "authentication failed")                                                           \
    X(TIMEOUT, -10, "timed out")                                                                   \
    X(CLOSED, -11, "connection closed")                                                            \
    X(BUSY, -12, "busy")                                                                           \
    X(AGAIN, -13, "try again")                                                                     \
    X(CANCELLED, -14, "cancelled")                                                                 \
    X(PROTO, -15, "protocol error")                                                                \
    X(CTXFULL, -16, "context length exceeded")                                                     \
    X(INTERNAL, -17, "internal error")

enum {
#define DAIS_ERR_ENUM(name, code, msg) DAIS_E##name = (code),
    DAIS_ERRNO_MAP(DAIS_ERR_ENUM)
#undef DAIS_ERR_ENUM
};

/* A code with a human-readable message. Callers own it (usually on the stack). */
typedef struct dais_err {
    int code;
    char msg[256];
} dais_err;

/* Fills `e` (may be NULL) with `code` and a printf-style message; returns `code`. Called
 * through the dais_err_set() macro below. */
int dais_err_setf(dais_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline int dais_err_code_(int code, int filled)
{
    (void)filled;
    return code;
}

/* Fills `e` (may be NULL) with `code` and a printf-style message; returns `code`, so a
 * function can `return dais_err_set(e, DAIS_EFORMAT, "…")`. A macro around an inline
 * function so that callers, and the static analyzer, see that the result is exactly `code`
 * (after `if (rc != 0) return rc;` a callee's out-parameters are known to be written).
 * `code` is evaluated twice: pass a constant or a plain variable. */
#define dais_err_set(e, code, ...) dais_err_code_((code), dais_err_setf((e), (code), __VA_ARGS__))

/* Clears `e` to success. */
void dais_err_clear(dais_err *e);

/* Static strings for a code: its message and its symbolic name ("EFORMAT"). */
const char *dais_strerror(int code);
const char *dais_errname(int code);

#endif
