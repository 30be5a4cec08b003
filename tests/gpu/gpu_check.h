/* SPDX-License-Identifier: Apache-2.0
 *
 * gpu_check.h: shared helpers of the GPU check executable (inferd_gpu_check,
 * built when CUDA is on): both backends, buffers on each, NaN poisoning,
 * and the result table every check appends a row to.
 *
 * Layer: tests/gpu (links the compute library only: no server libraries).
 */
#ifndef INFERD_GPU_CHECK_H
#define INFERD_GPU_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "inferd/backend.h"
#include "inferd/rng.h"

struct gc {
    struct backend *cpu, *gpu;
    struct rng rng;
    int quick;
    int n_pass, n_fail;
    FILE *results; /* one line per check, also echoed to stdout */
};

/* Random floats in [-scale, scale). */
void gc_fill(struct gc *g, float *x, size_t n, float scale);
/* Device buffer on the GPU backend holding a copy of host (or NaN poison when host is NULL). */
void *gc_gpu_upload(struct gc *g, const void *host, size_t bytes);
/* Overwrites n floats of a GPU buffer with NaN. */
void gc_poison(struct gc *g, void *dev, size_t n_floats);
/* Downloads bytes of a GPU buffer into a new malloc'd host buffer (after a sync, whose error is returned in *rc). */
void *gc_gpu_download(struct gc *g, const void *dev, size_t bytes, int *rc);
/* Compares got (GPU) with want (reference): passes when every |got - want| <= atol + rtol * scale,
 * scale = rms(want) when rms_scaled else |want|; any NaN/Inf in got fails. Records a row. */
int gc_compare(struct gc *g, const char *op, const char *shape, const float *got, const float *want, size_t n,
               double atol, double rtol, int rms_scaled);
/* Records a row with a free-form verdict. */
void gc_record(struct gc *g, const char *op, const char *shape, int pass, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* model_check.c */
int gc_model_greedy(struct gc *g, const char *preset, const char *type, int n_prompts, int n_gen);
int gc_model_graphs(struct gc *g, const char *preset, const char *type);
int gc_bench(struct gc *g, const char *preset, const char *type, FILE *out);

#endif
