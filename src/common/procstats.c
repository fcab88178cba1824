/* Process and system statistics from /proc (see procstats.h). */
#include "common/procstats.h"
#include "common/error.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- small scanners over a bounded text ------------------------------------------------- */

typedef struct scan {
    const char *p, *end;
} scan;

static void skip_spaces(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t'))
        s->p++;
}

/* Reads a decimal unsigned integer (after spaces); false when none or on overflow. */
static bool scan_u64(scan *s, uint64_t *out)
{
    skip_spaces(s);
    uint64_t v = 0;
    const char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
        unsigned d = (unsigned)(*s->p - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
        s->p++;
    }
    if (s->p == start) return false;
    *out = v;
    return true;
}

/* Reads a decimal number with an optional fraction ("0.52"); false when none. */
static bool scan_decimal(scan *s, double *out)
{
    uint64_t ip;
    if (!scan_u64(s, &ip)) return false;
    double v = (double)ip;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        double scale = 0.1;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
            v += (*s->p - '0') * scale;
            scale *= 0.1;
            s->p++;
        }
    }
    *out = v;
    return true;
}

/* Skips one space-separated token (after spaces); false when none. */
static bool skip_token(scan *s)
{
    skip_spaces(s);
    const char *start = s->p;
    while (s->p < s->end && *s->p != ' ' && *s->p != '\t' && *s->p != '\n')
        s->p++;
    return s->p != start;
}

/* Moves to the start of the next line; false at the end. */
static bool next_line(scan *s)
{
    const char *nl = memchr(s->p, '\n', (size_t)(s->end - s->p));
    if (nl == NULL) {
        s->p = s->end;
        return false;
    }
    s->p = nl + 1;
    return s->p < s->end;
}

static bool starts_with(const scan *s, const char *prefix)
{
    size_t n = strlen(prefix);
    return (size_t)(s->end - s->p) >= n && memcmp(s->p, prefix, n) == 0;
}

/* ---- parsers --------------------------------------------------------------------------- */

int dais_procstats_parse_stat(const char *text, size_t len, uint64_t *cpu_ticks,
                              uint64_t *start_ticks, uint64_t *vsize, uint64_t *rss_pages)
{
    /* "pid (comm) state ppid …": comm may hold spaces and ')', so fields start after the
     * last ')'. Then state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24. */
    const char *close = NULL;
    for (size_t i = 0; i < len; i++)
        if (text[i] == ')') close = text + i;
    if (close == NULL) return DAIS_EFORMAT;
    scan s = {close + 1, text + len};
    uint64_t v[25] = {0};
    if (!skip_token(&s)) /* state */
        return DAIS_EFORMAT;
    for (int field = 4; field <= 24; field++) {
        skip_spaces(&s);
        if (s.p < s.end && *s.p == '-') { /* signed fields (priority, nice…) we do not use */
            if (!skip_token(&s)) return DAIS_EFORMAT;
            continue;
        }
        if (!scan_u64(&s, &v[field])) return DAIS_EFORMAT;
    }
    if (v[14] > UINT64_MAX - v[15]) return DAIS_EFORMAT;
    *cpu_ticks = v[14] + v[15];
    *start_ticks = v[22];
    *vsize = v[23];
    *rss_pages = v[24];
    return 0;
}

int dais_procstats_parse_cpu(const char *text, size_t len, dais_cpu_sample *out, uint64_t *btime)
{
    scan s = {text, text + len};
    bool have_cpu = false, have_btime = btime == NULL;
    while (s.p < s.end) {
        if (!have_cpu && starts_with(&s, "cpu ")) {
            /* user nice system idle iowait irq softirq steal [guest guest_nice] */
            s.p += 4;
            uint64_t t[8] = {0};
            int n = 0;
            while (n < 8 && scan_u64(&s, &t[n]))
                n++;
            if (n < 4) return DAIS_EFORMAT;
            uint64_t total = 0;
            for (int i = 0; i < n; i++) {
                if (total > UINT64_MAX - t[i]) return DAIS_EFORMAT;
                total += t[i];
            }
            uint64_t idle = t[3] + t[4]; /* idle + iowait */
            out->total = total;
            out->busy = total - idle;
            have_cpu = true;
        } else if (!have_btime && starts_with(&s, "btime ")) {
            s.p += 6;
            if (!scan_u64(&s, btime)) return DAIS_EFORMAT;
            have_btime = true;
        }
        if ((have_cpu && have_btime) || !next_line(&s)) break;
    }
    return have_cpu && have_btime ? 0 : DAIS_EFORMAT;
}

int dais_procstats_parse_meminfo(const char *text, size_t len, uint64_t *total, uint64_t *avail)
{
    scan s = {text, text + len};
    bool have_total = false, have_avail = false;
    while (s.p < s.end) {
        uint64_t *dst = NULL;
        if (starts_with(&s, "MemTotal:")) {
            s.p += 9;
            dst = total;
            have_total = true;
        } else if (starts_with(&s, "MemAvailable:")) {
            s.p += 13;
            dst = avail;
            have_avail = true;
        }
        if (dst != NULL) {
            uint64_t kb;
            if (!scan_u64(&s, &kb) || kb > UINT64_MAX / 1024) return DAIS_EFORMAT;
            *dst = kb * 1024; /* the kernel always reports kB */
        }
        if ((have_total && have_avail) || !next_line(&s)) break;
    }
    return have_total && have_avail ? 0 : DAIS_EFORMAT;
}

int dais_procstats_parse_loadavg(const char *text, size_t len, double load[3])
{
    scan s = {text, text + len};
    for (int i = 0; i < 3; i++)
        if (!scan_decimal(&s, &load[i])) return DAIS_EFORMAT;
    return 0;
}

double dais_cpu_percent(const dais_cpu_sample *prev, const dais_cpu_sample *now)
{
    if (now->total <= prev->total || now->busy < prev->busy) return 0;
    double pct = 100.0 * (double)(now->busy - prev->busy) / (double)(now->total - prev->total);
    return pct > 100.0 ? 100.0 : pct;
}

/* ---- readers --------------------------------------------------------------------------- */

/* Reads up to cap-1 bytes of `path` into buf (NUL-terminated); returns the length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0) {
            close(fd);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Boot time never changes: read once. /proc/stat can be long (one "intr" line with a count
 * per interrupt), so it is scanned line by line with a bounded line buffer. */
static uint64_t g_btime;
static pthread_once_t g_btime_once = PTHREAD_ONCE_INIT;

static void btime_init(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL) return;
    char line[256];
    bool at_start = true;
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t n = strlen(line);
        bool whole = n > 0 && line[n - 1] == '\n';
        if (at_start && strncmp(line, "btime ", 6) == 0) {
            scan s = {line + 6, line + n};
            uint64_t v;
            if (scan_u64(&s, &v)) g_btime = v;
            break;
        }
        at_start = whole;
    }
    fclose(f);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* not counting the descriptor opendir itself holds */
}

int dais_procstats_self(dais_proc_stats *out)
{
    char buf[2048];
    ssize_t n = read_small("/proc/self/stat", buf, sizeof(buf));
    if (n <= 0) return DAIS_EIO;
    uint64_t cpu, start, vsize, rss;
    int rc = dais_procstats_parse_stat(buf, (size_t)n, &cpu, &start, &vsize, &rss);
    if (rc != 0) return rc;
    long tck = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (tck <= 0) tck = 100;
    if (page <= 0) page = 4096;
    pthread_once(&g_btime_once, btime_init);
    out->cpu_seconds = (double)cpu / (double)tck;
    out->rss_bytes = rss * (uint64_t)page;
    out->vsize_bytes = vsize;
    out->open_fds = count_fds();
    struct rlimit rl;
    out->max_fds = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
                       ? (int64_t)rl.rlim_cur
                       : -1;
    out->start_time_seconds = (double)g_btime + (double)start / (double)tck;
    return 0;
}

int dais_sysstats_read(dais_cpu_sample *prev, dais_sys_stats *out)
{
    char buf[4096];
    /* The aggregate "cpu " line is the first line of /proc/stat. */
    ssize_t n = read_small("/proc/stat", buf, sizeof(buf));
    if (n <= 0) return DAIS_EIO;
    dais_cpu_sample now;
    int rc = dais_procstats_parse_cpu(buf, (size_t)n, &now, NULL);
    if (rc != 0) return rc;
    out->cpu_percent = dais_cpu_percent(prev, &now);
    *prev = now;

    n = read_small("/proc/meminfo", buf, sizeof(buf));
    if (n <= 0) return DAIS_EIO;
    rc = dais_procstats_parse_meminfo(buf, (size_t)n, &out->mem_total_bytes,
                                      &out->mem_available_bytes);
    if (rc != 0) return rc;
    out->mem_used_bytes = out->mem_total_bytes > out->mem_available_bytes
                              ? out->mem_total_bytes - out->mem_available_bytes
                              : 0;

    n = read_small("/proc/loadavg", buf, sizeof(buf));
    if (n <= 0) return DAIS_EIO;
    double load[3];
    rc = dais_procstats_parse_loadavg(buf, (size_t)n, load);
    if (rc != 0) return rc;
    out->load1 = load[0];
    out->load5 = load[1];
    out->load15 = load[2];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    out->n_cpus = cpus > 0 ? (unsigned)cpus : 1;
    return 0;
}
