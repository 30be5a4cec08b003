/* SPDX-License-Identifier: Apache-2.0
 *
 * cpu_features.h: runtime detection of the x86 SIMD extensions the CPU kernels
 * can use (checked with CPUID *and* XGETBV, so a kernel is only picked when the
 * OS also saves the wide registers). Layer: backend/cpu.
 */
#ifndef INFERD_CPU_FEATURES_H
#define INFERD_CPU_FEATURES_H

struct cpu_features {
    int avx2, fma, f16c;               /* the AVX2 kernel set needs all three */
    int avx512f, avx512bw, avx512vl;   /* the AVX-512 kernel set needs these */
    int avx512vnni, avx_vnni;          /* int8 dot-product instructions */
};

void cpu_features_detect(struct cpu_features *f);
/* "avx512 avx2 fma f16c ..." into buf. */
const char *cpu_features_str(const struct cpu_features *f, char *buf, int cap);
/* Online cores this process may run on. */
int cpu_count_available(void);

#endif
