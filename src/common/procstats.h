/*
 * Process and system statistics read from /proc (Linux): what the process_* metrics report,
 * and what a worker puts in its heartbeat answers (CPU %, memory, load average).
 *
 * The parsers take the file text, so tests can feed them fixed content; the readers open
 * the real files. Every function is thread-safe and allocation-free.
 */
#ifndef DAIS_COMMON_PROCSTATS_H
#define DAIS_COMMON_PROCSTATS_H

#include <stddef.h>
#include <stdint.h>

typedef struct dais_proc_stats {
    double cpu_seconds;        /* user + system CPU time */
    uint64_t rss_bytes;        /* resident set size */
    uint64_t vsize_bytes;      /* virtual memory size */
    int64_t open_fds;          /* entries in /proc/self/fd, -1 when unknown */
    int64_t max_fds;           /* soft RLIMIT_NOFILE, -1 when unlimited or unknown */
    double start_time_seconds; /* process start, seconds since the Unix epoch */
} dais_proc_stats;

/* Reads this process's statistics. Returns 0 or DAIS_EIO / DAIS_EFORMAT. Any thread. */
int dais_procstats_self(dais_proc_stats *out);

/* Cumulative CPU time counters of the whole machine (the "cpu " line of /proc/stat), in
 * clock ticks. CPU % is the busy share of the ticks between two samples. */
typedef struct dais_cpu_sample {
    uint64_t busy;
    uint64_t total;
} dais_cpu_sample;

typedef struct dais_sys_stats {
    double cpu_percent; /* 0..100 over the interval since the previous sample */
    unsigned n_cpus;    /* online CPUs */
    uint64_t mem_total_bytes;
    uint64_t mem_available_bytes;
    uint64_t mem_used_bytes; /* total - available */
    double load1, load5, load15;
} dais_sys_stats;

/* Reads machine-wide statistics. `prev` (caller-owned, zero-initialised before the first
 * call) holds the previous CPU sample and is updated; the first call reports the average
 * since boot. Returns 0 or DAIS_EIO / DAIS_EFORMAT. Any thread (one `prev` per caller). */
int dais_sysstats_read(dais_cpu_sample *prev, dais_sys_stats *out);

/* ---- parsers of /proc text (`len` bytes, need not be NUL-terminated) ------------------- */

/* /proc/self/stat: utime+stime (ticks), starttime (ticks after boot), vsize, rss (pages). */
int dais_procstats_parse_stat(const char *s, size_t len, uint64_t *cpu_ticks, uint64_t *start_ticks,
                              uint64_t *vsize, uint64_t *rss_pages);

/* /proc/stat: the aggregate "cpu " line into `out`, and "btime" (boot time, epoch seconds)
 * into `*btime` (may be NULL). */
int dais_procstats_parse_cpu(const char *s, size_t len, dais_cpu_sample *out, uint64_t *btime);

/* /proc/meminfo: MemTotal and MemAvailable in bytes. */
int dais_procstats_parse_meminfo(const char *s, size_t len, uint64_t *total, uint64_t *avail);

/* /proc/loadavg: the three load averages. */
int dais_procstats_parse_loadavg(const char *s, size_t len, double load[3]);

/* CPU % of the interval between two samples (0 when no ticks passed). */
double dais_cpu_percent(const dais_cpu_sample *prev, const dais_cpu_sample *now);

#endif
