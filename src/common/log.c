/* Line-oriented structured logging (see log.h). */
#include "common/log.h"
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char g_node[64] = "dais";
static enum dais_log_level g_min = DAIS_LOG_INFO;
static enum dais_log_format g_fmt = DAIS_LOG_TEXT;
static _Thread_local char t_trace[33];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void dais_log_init(const char *node, enum dais_log_level min, enum dais_log_format fmt)
{
    if (node != NULL) snprintf(g_node, sizeof(g_node), "%s", node);
    g_min = min;
    g_fmt = fmt;
}

int dais_log_parse_level(const char *s, enum dais_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum dais_log_level)i;
            return 0;
        }
    }
    return DAIS_EINVAL;
}

int dais_log_parse_format(const char *s, enum dais_log_format *out)
{
    if (strcasecmp(s, "text") == 0)
        *out = DAIS_LOG_TEXT;
    else if (strcasecmp(s, "json") == 0)
        *out = DAIS_LOG_JSON;
    else
        return DAIS_EINVAL;
    return 0;
}

void dais_log_set_trace(const char *trace_id)
{
    if (trace_id == NULL)
        t_trace[0] = '\0';
    else
        snprintf(t_trace, sizeof(t_trace), "%s", trace_id);
}

/* Appends `s` to buf as JSON string contents (no quotes), escaping as needed. */
static size_t json_escape(char *buf, size_t cap, size_t n, const char *s)
{
    for (; *s != '\0' && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    return n;
}

void dais_log(enum dais_log_level lvl, const char *fmt, ...)
{
    if (lvl < g_min) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));

    char line[4096];
    size_t n;
    if (g_fmt == DAIS_LOG_JSON) {
        n = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"node\":\"", ts,
                             level_names[lvl]);
        n = json_escape(line, sizeof(line), n, g_node);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\"");
        if (t_trace[0] != '\0')
            n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"trace_id\":\"%s\"", t_trace);
        n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"msg\":\"");
        n = json_escape(line, sizeof(line), n, msg);
        if (n + 3 > sizeof(line)) n = sizeof(line) - 3;
        line[n++] = '"';
        line[n++] = '}';
    } else {
        n = (size_t)snprintf(line, sizeof(line), "%s %-5s %s%s%s %s", ts, level_names[lvl], g_node,
                             t_trace[0] ? " trace=" : "", t_trace, msg);
        if (n > sizeof(line) - 2) n = sizeof(line) - 2;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
