/*
 * Logging. One line per event on stderr: text for a terminal, or JSON objects with
 * --log-format json. Every line carries the level and the node id; a trace id when the
 * calling thread has set one (dais_log_set_trace). Thread-safe: a line is written with one
 * write(2), so lines from different threads never interleave.
 */
#ifndef DAIS_COMMON_LOG_H
#define DAIS_COMMON_LOG_H

enum dais_log_level { DAIS_LOG_DEBUG = 0, DAIS_LOG_INFO, DAIS_LOG_WARN, DAIS_LOG_ERROR };
enum dais_log_format { DAIS_LOG_TEXT = 0, DAIS_LOG_JSON };

/* Process-wide settings; call before other threads start. `node` is copied. */
void dais_log_init(const char *node, enum dais_log_level min, enum dais_log_format fmt);

/* Parses "debug|info|warn|error" / "text|json"; returns 0 or DAIS_EINVAL. */
int dais_log_parse_level(const char *s, enum dais_log_level *out);
int dais_log_parse_format(const char *s, enum dais_log_format *out);

/* Sets (or clears, with NULL) the 32-hex-digit trace id attached to this thread's lines. */
void dais_log_set_trace(const char *trace_id);

void dais_log(enum dais_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define DAIS_DEBUG(...) dais_log(DAIS_LOG_DEBUG, __VA_ARGS__)
#define DAIS_INFO(...)  dais_log(DAIS_LOG_INFO, __VA_ARGS__)
#define DAIS_WARN(...)  dais_log(DAIS_LOG_WARN, __VA_ARGS__)
#define DAIS_ERROR(...) dais_log(DAIS_LOG_ERROR, __VA_ARGS__)

#endif
