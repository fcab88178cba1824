/*
 * Micro-benchmark of the observability hot paths: what one counter increment, histogram
 * observation and span start/end cost on the request path, and what rendering a registry
 * costs a scrape. Run: build/release/bench_observability [iterations]. Prints one line per
 * measurement (ns per operation, or ms per render). The request-level overhead benchmark
 * (throughput with tracing on/off and a 100 ms scraper) is in docs/benchmarks.md.
 */
#include "common/clock.h"
#include "common/metrics.h"
#include "common/trace.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct job {
    long iters;
    dais_counter *c;
    dais_histogram *h;
} job;

static void *inc_loop(void *arg)
{
    job *j = arg;
    for (long i = 0; i < j->iters; i++)
        dais_counter_inc(j->c);
    return NULL;
}

static void *observe_loop(void *arg)
{
    job *j = arg;
    for (long i = 0; i < j->iters; i++)
        dais_histogram_observe(j->h, (double)(i & 1023) * 0.001);
    return NULL;
}

/* Runs fn on n threads, each doing iters operations; returns ns per operation per thread. */
static double run_threads(void *(*fn)(void *), job *j, int n)
{
    pthread_t th[8];
    uint64_t t0 = dais_now_ns();
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, fn, j);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    return (double)(dais_now_ns() - t0) / (double)j->iters;
}

static double spans(dais_tracer *t, long iters)
{
    dais_trace_ctx parent, ctx;
    dais_trace_ctx_child(NULL, &parent);
    uint64_t t0 = dais_now_ns();
    for (long i = 0; i < iters; i++) {
        dais_span *s = dais_span_start(t, "worker.decode", DAIS_SPAN_INTERNAL, &parent, &ctx);
        dais_span_set_int(s, "tokens", i);
        dais_span_end(s);
    }
    return (double)(dais_now_ns() - t0) / (double)iters;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 5000000;
    if (iters <= 0) iters = 5000000;
    dais_metrics_registry *r = dais_metrics_registry_new();
    job j = {.iters = iters,
             .c = dais_counter_new(r, "dais_bench_total", "bench"),
             .h = dais_histogram_new(r, "dais_bench_seconds", "bench", dais_buckets_latency_n,
                                     dais_buckets_latency)};
    printf("counter inc, 1 thread:        %6.1f ns/op\n", run_threads(inc_loop, &j, 1));
    printf("counter inc, 2 threads, same: %6.1f ns/op\n", run_threads(inc_loop, &j, 2));
    printf("histogram observe, 1 thread:  %6.1f ns/op\n", run_threads(observe_loop, &j, 1));
    printf("histogram observe, 2 threads: %6.1f ns/op\n", run_threads(observe_loop, &j, 2));

    dais_tracer *off = dais_tracer_new(&(dais_tracer_config){0}, NULL);
    printf("span start+attr+end, off:     %6.1f ns/op\n", spans(off, iters / 10));
    dais_tracer_free(off);

    /* on, with a collector that refuses connections: measures the request path only */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(a);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &sl);
    close(fd);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    dais_tracer *on = dais_tracer_new(
        &(dais_tracer_config){.endpoint = ep, .queue_max = 4096, .metrics = r}, NULL);
    if (on != NULL) {
        printf("span start+attr+end, on:      %6.1f ns/op\n", spans(on, iters / 50));
        dais_tracer_free(on);
    }

    /* a scrape: a node-sized registry (a few dozen families, 2000 labelled histogram series) */
    static const char *const lbl[] = {"worker"};
    dais_metric_family *f =
        dais_metrics_family_new(r, DAIS_METRIC_HISTOGRAM, "dais_big_seconds", "big", 1, lbl,
                                dais_buckets_latency_n, dais_buckets_latency);
    for (int i = 0; i < 2000; i++) {
        char v[32];
        snprintf(v, sizeof(v), "worker-%d", i);
        dais_histogram_observe(dais_histogram_child(f, (const char *[]){v}), i * 0.01);
    }
    dais_metrics_register_standard(r, "bench");
    uint64_t t0 = dais_now_ns();
    size_t len = 0;
    int rounds = 20;
    for (int i = 0; i < rounds; i++)
        free(dais_metrics_render_string(r, 0, &len, NULL));
    printf("render %zu bytes:         %6.2f ms/scrape\n", len,
           (double)(dais_now_ns() - t0) / rounds / 1e6);
    dais_metrics_registry_free(r);
    return 0;
}
