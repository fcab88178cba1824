/*
 * Compute thread pool (see threadpool.h).
 *
 * A run is published by bumping `gen` (release) after writing fn/arg; workers that see a
 * new generation call fn and decrement `pending`; the caller runs ith 0 itself and then
 * spins until `pending` reaches 0 (acquire), so everything a worker wrote happens-before
 * dais_pool_run returns.
 *
 * Idle workers spin on `gen` for SPIN_NS (a forward pass issues runs microseconds apart, so
 * a spinning worker answers in well under a microsecond), then sleep on a condition
 * variable. The sleep/wake handshake is Dekker-style with sequentially consistent atomics:
 * a worker increments `n_sleeping` and then re-reads `gen` under the mutex; the runner
 * stores `gen` and then reads `n_sleeping`. At least one side sees the other, so a worker
 * never sleeps through a run, and the runner only takes the mutex when someone sleeps.
 * The caller's wait for the last worker is the same pattern in the other direction
 * (`caller_waiting` / `pending`, done_cv), for when a worker is descheduled or has far more
 * work than the caller.
 */
#include "engine/threadpool.h"

#include "common/clock.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

/* How long an idle worker polls before it sleeps. */
#define SPIN_NS 300000ull
/* After this long a spinning thread also yields the CPU at every check, so that on an
 * oversubscribed machine (more runnable threads than cores) the thread it waits for can run. */
#define YIELD_AFTER_NS 20000ull
/* How long the caller polls for the last worker before it sleeps until that worker ends. */
#define CALLER_SPIN_NS 200000ull

struct dais_pool {
    int n;              /* threads in total, including the caller */
    pthread_t *threads; /* (n - 1) workers */
    int n_started;

    /* The current run; written by the caller before `gen` is bumped. */
    dais_pool_fn fn;
    void *arg;

    _Alignas(64) atomic_uint gen; /* run generation; bumped once per run */
    atomic_bool stop;
    _Alignas(64) atomic_int pending; /* workers still inside the current run */
    _Alignas(64) atomic_int n_sleeping;
    atomic_bool caller_waiting; /* the caller sleeps on done_cv until pending is 0 */

    pthread_mutex_t mu;
    pthread_cond_t cv;      /* workers wait here for a run */
    pthread_cond_t done_cv; /* the caller waits here for the last worker */
};

struct worker_arg {
    dais_pool *p;
    int ith;
};

/* Waits for a generation other than `seen`; returns it, or `seen` when the pool stops. */
static unsigned wait_for_run(dais_pool *p, unsigned seen)
{
    uint64_t t0 = 0;
    for (unsigned i = 0;; i++) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&p->stop, memory_order_acquire)) return g;
        cpu_relax();
        if ((i & 255) == 255) {
            uint64_t now = dais_now_ns();
            if (t0 == 0)
                t0 = now;
            else if (now - t0 > SPIN_NS)
                break;
            else if (now - t0 > YIELD_AFTER_NS)
                sched_yield();
        }
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->n_sleeping, 1); /* seq_cst: pairs with the runner's gen store */
    unsigned g;
    while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *varg)
{
    struct worker_arg wa = *(struct worker_arg *)varg;
    free(varg);
    dais_pool *p = wa.p;
    /* Generation 0 is the pool's state at creation: a run published before this thread got
     * here must still be seen as new, so do not read `gen` here. */
    unsigned seen = 0;
    for (;;) {
        unsigned g = wait_for_run(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        seen = g;
        p->fn(p->arg, wa.ith, p->n);
        /* seq_cst: pairs with the caller's store to caller_waiting */
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

dais_pool *dais_pool_new(int n_threads)
{
    if (n_threads < 1 || n_threads > 1024) return NULL;
    dais_pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->n = n_threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->stop, false);
    atomic_init(&p->pending, 0);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->caller_waiting, false);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->done_cv, NULL) != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof(pthread_t));
        if (!p->threads) goto fail;
        for (int i = 1; i < n_threads; i++) {
            struct worker_arg *wa = malloc(sizeof(*wa));
            if (!wa) goto fail;
            wa->p = p;
            wa->ith = i;
            if (pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                goto fail;
            }
            p->n_started++;
        }
    }
    return p;
fail:
    dais_pool_free(p);
    return NULL;
}

void dais_pool_free(dais_pool *p)
{
    if (!p) return;
    atomic_store(&p->stop, true);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int dais_pool_size(const dais_pool *p)
{
    return p ? p->n : 1;
}

void dais_pool_run(dais_pool *p, dais_pool_fn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes fn/arg/pending; pairs with n_sleeping */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    uint64_t t0 = 0;
    for (unsigned i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) != 0; i++) {
        cpu_relax();
        if ((i & 255) == 255) {
            uint64_t now = dais_now_ns();
            if (t0 == 0) {
                t0 = now;
            } else if (now - t0 > CALLER_SPIN_NS) {
                /* a worker is late (descheduled, or much more work): stop taking its CPU */
                pthread_mutex_lock(&p->mu);
                atomic_store(&p->caller_waiting, true); /* seq_cst: pairs with pending */
                while (atomic_load(&p->pending) != 0)
                    pthread_cond_wait(&p->done_cv, &p->mu);
                atomic_store(&p->caller_waiting, false);
                pthread_mutex_unlock(&p->mu);
                break;
            } else if (now - t0 > YIELD_AFTER_NS) {
                sched_yield();
            }
        }
    }
}
