/* SPDX-License-Identifier: Apache-2.0
 *
 * pool.h: a persistent worker pool (the CPU backend's matmul and attention
 * workers; the engine's sampling workers on device backends). The calling
 * thread is worker 0; n-1 threads wait for jobs. A job is one function run on every
 * worker with (ith, nth); inside it, pool_barrier() synchronizes all workers
 * (e.g. "quantize the activations, then everyone multiplies").
 *
 * Workers spin briefly after a job (a forward pass issues hundreds of jobs a
 * few microseconds apart) and then sleep on a futex, so an idle server burns
 * no CPU. No threads are created after pool_init.
 *
 * Layer: util.
 */
#ifndef INFERD_UTIL_POOL_H
#define INFERD_UTIL_POOL_H

#include <stdint.h>

struct pool;
typedef void (*pool_fn)(void *arg, int ith, int nth);

int pool_init(struct pool **out, int n_threads);
/* The same with the idle spin set: jobs milliseconds apart (the engine's
 * sampling, once per step) need no 2 ms of busy waiting after each. */
int pool_init_spin(struct pool **out, int n_threads, uint64_t spin_ns);
void pool_free(struct pool *p);
int pool_size(const struct pool *p);
/* Runs fn on all workers and returns when every one has finished. Not reentrant. */
void pool_run(struct pool *p, pool_fn fn, void *arg);
/* Only valid inside a job: returns when all nth workers have called it. */
void pool_barrier(struct pool *p);

#endif
