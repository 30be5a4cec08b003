/* SPDX-License-Identifier: Apache-2.0
 *
 * test_backend.h: CPU backends forced to one kernel set, for the tests that
 * run every kernel set this CPU can run (test_cpu.c, test_attention_tiled.c).
 */
#ifndef INFERD_TEST_BACKEND_H
#define INFERD_TEST_BACKEND_H

#include "inferd/backend.h"

static const char *k_isas[] = { "scalar", "avx2", "avx512" };

/* Creates a backend forcing an ISA; returns NULL when this CPU cannot run it. */
static inline struct backend *make_backend(const char *isa, int threads)
{
    struct backend *be;
    char err[256];
    struct backend_opts o = { .device = "cpu", .n_threads = threads, .isa = isa };
    return backend_create(&be, &o, err, sizeof err) == 0 ? be : NULL;
}

#endif
