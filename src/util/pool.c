/* SPDX-License-Identifier: Apache-2.0
 *
 * pool.c: the worker pool declared in pool.h.
 *
 * Synchronization is two counters, both spun on with a pause instruction:
 *   gen   - bumped by pool_run to publish a job; workers wait for a new value
 *   done  - counts workers that finished the current job
 * and a sense-reversing barrier for pool_barrier. After SPIN_NS without a job
 * a worker sleeps in futex_wait on gen; pool_run wakes sleepers only when
 * some exist (the common, hot case costs no syscall).
 */
#include "pool.h"
#include "inferd/error.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define SPIN_NS 2000000 /* 2 ms of spinning before a worker sleeps */
#define SPINS_BEFORE_YIELD 2048 /* with more threads than cores, spinning alone would starve the thread we wait for */

/* One step of a busy wait: pause, and after a while also yield the core. */
static inline void spin_step(unsigned *spins)
{
    if (++*spins < SPINS_BEFORE_YIELD) cpu_relax();
    else sched_yield();
}

struct pool {
    int n;
    pthread_t *threads;
    pool_fn fn;
    void *arg;
    _Alignas(64) _Atomic uint32_t gen;
    _Alignas(64) _Atomic int done;
    _Alignas(64) _Atomic int sleepers;
    _Alignas(64) _Atomic int barrier_count;
    _Atomic uint32_t barrier_sense;
    _Atomic int quit;
    uint64_t spin_ns;            /* busy-wait this long for the next job before sleeping */
};

struct worker_arg {
    struct pool *p;
    int ith;
};

static long futex(_Atomic uint32_t *addr, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, NULL, NULL, 0);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Waits until gen differs from seen; returns the new value. */
static uint32_t wait_for_job(struct pool *p, uint32_t seen)
{
    uint64_t start = 0;
    for (unsigned spins = 0, waited = 0;; waited++) {
        uint32_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        spin_step(&spins);
        if ((waited & 1023) != 1023) continue;
        uint64_t t = now_ns();
        if (!start) start = t;
        if (t - start < p->spin_ns) continue;
        atomic_fetch_add(&p->sleepers, 1);
        /* re-check after announcing ourselves so a concurrent pool_run cannot be missed */
        if (atomic_load(&p->gen) == seen) futex(&p->gen, FUTEX_WAIT_PRIVATE, seen);
        atomic_fetch_sub(&p->sleepers, 1);
        start = 0;
        spins = 0;
    }
}

static void *worker_main(void *varg)
{
    struct worker_arg *wa = varg;
    struct pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    uint32_t seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load(&p->quit)) break;
        p->fn(p->arg, ith, p->n);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
    return NULL;
}

int pool_init(struct pool **out, int n_threads) { return pool_init_spin(out, n_threads, SPIN_NS); }

int pool_init_spin(struct pool **out, int n_threads, uint64_t spin_ns)
{
    *out = NULL;
    if (n_threads < 1) return IFD_ERR_INVALID;
    struct pool *p = aligned_alloc(64, (sizeof *p + 63) & ~(size_t)63);
    if (!p) return IFD_ERR_NOMEM;
    *p = (struct pool){ .n = n_threads, .spin_ns = spin_ns };
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) { free(p); return IFD_ERR_NOMEM; }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (struct worker_arg){ .p = p, .ith = i };
        if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n = i; /* stop the ones already started */
            pool_free(p);
            return IFD_ERR_NOMEM;
        }
    }
    *out = p;
    return 0;
}

void pool_free(struct pool *p)
{
    if (!p) return;
    atomic_store(&p->quit, 1);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    futex(&p->gen, FUTEX_WAKE_PRIVATE, INT32_MAX);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    free(p);
}

int pool_size(const struct pool *p) { return p->n; }

void pool_run(struct pool *p, pool_fn fn, void *arg)
{
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: pairs with the sleepers check in wait_for_job */
    if (atomic_load(&p->sleepers) > 0) futex(&p->gen, FUTEX_WAKE_PRIVATE, INT32_MAX);
    fn(arg, 0, p->n);
    unsigned spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) != p->n - 1) spin_step(&spins);
}

void pool_barrier(struct pool *p)
{
    if (p->n == 1) return;
    uint32_t sense = atomic_load_explicit(&p->barrier_sense, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&p->barrier_count, 1, memory_order_acq_rel) == p->n - 1) {
        atomic_store_explicit(&p->barrier_count, 0, memory_order_relaxed);
        atomic_store_explicit(&p->barrier_sense, sense + 1, memory_order_release);
        return;
    }
    unsigned spins = 0;
    while (atomic_load_explicit(&p->barrier_sense, memory_order_acquire) == sense) spin_step(&spins);
}
