/* SPDX-License-Identifier: Apache-2.0
 *
 * ik_host_device.h: IK_HOST_DEVICE marks the small plain-C helpers that
 * kernels share with host code (kernels/attention/attn_split.h,
 * kernels/rope/rope_pairs.h), so that the CPU unit tests check the same
 * index arithmetic the kernels run.
 *
 * Layer: kernels.
 */
#ifndef INFERD_IK_HOST_DEVICE_H
#define INFERD_IK_HOST_DEVICE_H

#ifdef __CUDACC__
#define IK_HOST_DEVICE __host__ __device__
#else
#define IK_HOST_DEVICE
#endif

#endif
