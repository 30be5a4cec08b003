/* SPDX-License-Identifier: Apache-2.0
 *
 * inferd_kernels.h: the flat C ABI of every CUDA kernel in kernels/. One
 * folder per op family (.cu + this header's section); CUDA types never cross
 * this boundary: streams are passed as void * (cudaStream_t), results are
 * cudaError_t values returned as int (0 = success).
 *
 * Layer: kernels (called only from backend/cuda).
 */
#ifndef INFERD_KERNELS_H
#define INFERD_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dequant/: GGUF blocks -> bf16 rows (for cuBLAS GEMMs in prefill) ----
 * src: n_rows rows of n_cols elements in ggml type `type` (Q4_0, Q4_1, Q8_0, F16);
 * dst: (n_rows, n_cols) bf16, row-major. n_cols must be a multiple of the block size.
 * Returns 0 or a cudaError_t (cudaErrorInvalidValue for an unsupported type). */
int ik_dequant_to_bf16(const void *src, uint16_t *dst, int type, int64_t n_rows, int64_t n_cols, void *stream);

#ifdef __cplusplus
}
#endif

#endif
