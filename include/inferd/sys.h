/* SPDX-License-Identifier: Apache-2.0
 *
 * sys.h: the few facts every layer asks the OS for: a monotonic clock and
 * values from /proc files (MemAvailable, VmHWM). One copy, so timings taken
 * in the server, the engine and the CLI are on the same clock.
 *
 * Layer: util.
 */
#ifndef INFERD_SYS_H
#define INFERD_SYS_H

#include <stddef.h>

/* Seconds on CLOCK_MONOTONIC. */
double ifd_now(void);
/* The "KEY: N kB" line of a /proc file (e.g. "/proc/meminfo", "MemAvailable"),
 * in bytes; 0 when the file or key is missing. */
size_t ifd_proc_bytes(const char *path, const char *key);

#endif
