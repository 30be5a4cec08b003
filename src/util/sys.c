/* SPDX-License-Identifier: Apache-2.0
 * sys.c: monotonic clock and /proc values (util layer; see inferd/sys.h). */
#include "inferd/sys.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

double ifd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

size_t ifd_proc_bytes(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0, klen = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':' && sscanf(line + klen + 1, "%zu", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}
