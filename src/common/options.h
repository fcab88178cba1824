/*
 * Command-line options shared by `dais master` and `dais worker`: every setting is one row of
 * a caller's table (flag, DAIS_* variable, kind, where it goes in the caller's config struct,
 * range, default text, help), and one parser reads the variables, then the flags, into that
 * struct. Kinds that only one command has (the master's model list, the worker's --listen)
 * are the caller's own, numbered from DAIS_OPT_CUSTOM, and applied by its hook.
 *
 * Precedence: a flag wins over every variable of its option; the last occurrence of a flag
 * wins. An option's row may be followed by DAIS_OPT_ALT rows (an alias, or another way to
 * give the same value such as --token-file): a flag of any of them overrides the variables of
 * all of them, and of their variables only the first one set is read.
 *
 * Also the value parsers those options use (durations, sizes, integers, ports). Pure apart
 * from reading the environment through the caller's function and a secret file; call from one
 * thread.
 */
#ifndef DAIS_COMMON_OPTIONS_H
#define DAIS_COMMON_OPTIONS_H

#include "common/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum dais_opt_kind {
    DAIS_OPT_STR,        /* char[size]; "" allowed unless DAIS_OPT_NONEMPTY */
    DAIS_OPT_PORT,       /* uint16_t, 0 .. 65535 */
    DAIS_OPT_INT,        /* 4-byte integer (uint32_t, int32_t or int) in [lo, hi] */
    DAIS_OPT_DURATION,   /* uint32_t milliseconds (dais_parse_duration_ms) */
    DAIS_OPT_SIZE,       /* size_t bytes (dais_parse_size) */
    DAIS_OPT_BOOL,       /* bool: a flag without a value sets it; the variable: 1/true/yes/on */
    DAIS_OPT_BOOL_OFF,   /* the same, inverted (--no-metrics clears metrics_enabled) */
    DAIS_OPT_LOG_LEVEL,  /* enum dais_log_level */
    DAIS_OPT_LOG_FORMAT, /* enum dais_log_format */
    DAIS_OPT_HELP,       /* --help (and -h): dais_opt_parse returns 1 */
    DAIS_OPT_CUSTOM,     /* from here on: the caller's kinds, applied by its hook */
};

#define DAIS_OPT_ALT      1u /* another name or source for the value of the row before it */
#define DAIS_OPT_NONEMPTY 2u /* DAIS_OPT_STR: "" is refused */

/* Most rows a table may have. */
#define DAIS_OPT_MAX 64

/* One option. `metavar` NULL: a flag that takes no value (the variable's value is read). */
typedef struct dais_opt {
    const char *flag, *env, *metavar;
    int kind;         /* enum dais_opt_kind, or the caller's own from DAIS_OPT_CUSTOM */
    unsigned flags;   /* DAIS_OPT_ALT, DAIS_OPT_NONEMPTY */
    size_t off, size; /* the field: offsetof and sizeof in the caller's struct (0, 0: none) */
    uint32_t lo, hi;  /* DAIS_OPT_INT range */
    const char *def;  /* default as --help shows it ("" = none) */
    const char *help;
} dais_opt;

/* The rows that end every command's table: --log-level and --log-format into the fields
 * log_level and log_format of `type`, then --help. */
/* clang-format off */
#define DAIS_OPT_TAIL_ROWS(type)                                                                   \
    {"--log-level", "DAIS_LOG_LEVEL", "LEVEL", DAIS_OPT_LOG_LEVEL, 0, offsetof(type, log_level),   \
     sizeof(((type *)0)->log_level), 0, 0, "info", "debug | info | warn | error"},                 \
    {"--log-format", "DAIS_LOG_FORMAT", "FORMAT", DAIS_OPT_LOG_FORMAT, 0,                          \
     offsetof(type, log_format), sizeof(((type *)0)->log_format), 0, 0, "text", "text | json"},    \
    {"--help", NULL, NULL, DAIS_OPT_HELP, 0, 0, 0, 0, 0, "", "show this help"}
/* clang-format on */

/* Looks up an environment variable (getenv in the product; a table in tests). */
typedef const char *(*dais_env_fn)(const char *name);

/* Applies value `v` of a custom-kind row to the struct at `base`; `src` (the flag or the
 * variable) starts every error message. 0 or a DAIS_E… code with err set. */
typedef int (*dais_opt_hook)(void *ctx, void *base, const dais_opt *o, const char *v,
                             const char *src, dais_err *err);

typedef struct dais_opt_spec {
    const dais_opt *opts; /* borrowed; at most DAIS_OPT_MAX rows */
    size_t n;
    const char *see;           /* "unknown option 'X' (see <see>)" */
    const char *const *shorts; /* NULL or {"-h", "--help", …, NULL}: short name, long name */
    dais_env_fn env;           /* NULL: no variables are read */
    dais_opt_hook hook;        /* for kinds >= DAIS_OPT_CUSTOM */
    void *ctx;                 /* passed to hook */
} dais_opt_spec;

/* Reads the variables, then the flags argv[1..argc) (argv[0] is the command name), into the
 * struct at `base`, which holds the defaults. `set` (NULL or n entries) tells which rows gave
 * a value. Returns 0, 1 when --help was given (nothing applied), or a DAIS_E… code with err
 * naming the flag or variable: DAIS_EINVAL for a bad value or an unknown option,
 * DAIS_EINTERNAL for a table whose field size does not fit its kind. */
int dais_opt_parse(const dais_opt_spec *s, void *base, int argc, char **argv, bool *set,
                   dais_err *err);

/* The two --help layouts (the master's and the worker's):
 *   WIDE:    "  FLAG METAVAR  (col 36)  help [default]" then "    env DAIS_X"
 *   NARROW:  "  FLAG METAVAR  (col 28) help"            then "$DAIS_X, default D" */
enum dais_opt_layout { DAIS_OPT_WIDE, DAIS_OPT_NARROW };

/* Writes one entry per row (flags, variables, defaults, help) to `out`. */
void dais_opt_help(FILE *out, const dais_opt *opts, size_t n, enum dais_opt_layout layout);

/* Copies `v` into the row's char[size] field (DAIS_OPT_NONEMPTY honoured); for hooks. */
int dais_opt_set_str(const dais_opt *o, void *base, const char *v, const char *src, dais_err *err);

/* Reads a secret (a token) from `path` into buf[cap], without trailing CR/LF; a file of cap
 * bytes or more reads as cap bytes, so give cap = the longest secret + 2 and check *len. A
 * NUL byte in it is an error. 0 or DAIS_EINVAL with err starting with `src`. */
int dais_opt_read_secret(const char *path, char *buf, size_t cap, size_t *len, const char *src,
                         dais_err *err);

/* ---- value parsers: 0, DAIS_EINVAL (malformed) or DAIS_ERANGE; *out untouched on error -- */

/* "5s", "200ms", "1.5s", "2m", "2h" or a bare number of seconds → milliseconds (1 .. 1 day). */
int dais_parse_duration_ms(const char *s, uint32_t *out);
/* "1048576", "64k", "64KiB", "1m", "1MiB" (binary units) → bytes (1 .. 1 GiB). */
int dais_parse_size(const char *s, size_t *out);
/* Decimal integer in [lo, hi], nothing else. */
int dais_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);
/* A TCP/UDP port: 0 .. 65535. */
int dais_parse_port(const char *s, uint16_t *out);

#endif
