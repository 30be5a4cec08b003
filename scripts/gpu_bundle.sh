#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# scripts/gpu_bundle.sh: builds the CUDA binaries HERE (nvcc and the CUDA
# toolkit compile and link on this CPU-only machine) and packs them for a GPU
# host that has no network and maybe none of the server's -dev libraries:
#
#   .gpu-bundle/bin/inferd             the daemon, CUDA backend included
#   .gpu-bundle/bin/inferd_gpu_check   the kernel / model check of tests/gpu
#   .gpu-bundle/bin/inferd_tests       the unit tests (run.sh's cpu-isa stage runs
#                                      the CPU kernel-set ones on the host's CPU)
#   .gpu-bundle/lib/*.so*              the non-system libraries they load
#                                      (microhttpd, jansson, libuv, pcre2 and
#                                      what gnutls pulls in), copied as ldd
#                                      resolves them here
#
# tests/gpu/run.sh uses the bundle when INFERD_GPU_PREBUILT points at it (no
# configure or build on the GPU host: the lease's minutes go to the checks).
# CUDA's own libraries (cudart, cuBLAS) are not bundled: they are hundreds of
# MB and the GPU host's toolkit has them.
#
#   scripts/gpu_bundle.sh [ARCH]     (default 90: H100/H200)
#
# Then, with the device tool (all carried paths together under 64 MiB):
#   command: INFERD_GPU_PACK=1 INFERD_GPU_PREBUILT=.gpu-bundle INFERD_MODEL=models/smollm2-cut4.gguf tests/gpu/run.sh "$OUT"
#   carry:   [".gpu-bundle", "models/smollm2-cut4.gguf"]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ARCH=${1:-90}
BUILD=$ROOT/build-gpu-bundle
OUT=$ROOT/.gpu-bundle
for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do [ -d "$d" ] && PATH=$PATH:$d; done
command -v nvcc >/dev/null || { echo "gpu_bundle: nvcc not found (install the CUDA toolkit)" >&2; exit 1; }

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DINFERD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target inferd inferd_gpu_check inferd_tests

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
cp "$BUILD/inferd" "$BUILD/inferd_gpu_check" "$BUILD/inferd_tests" "$OUT/bin/"
strip --strip-debug "$OUT/bin/"*

# Every library ldd resolves, except the C runtime and CUDA's (both on any GPU host).
system_lib() {
    case $1 in
    linux-vdso* | ld-linux* | libc.so* | libm.so* | libpthread* | libdl.so* | librt.so* | libgcc_s* | libstdc++*) return 0 ;;
    libcuda.so* | libcudart* | libcublas* | libnccl* | libnvidia*) return 0 ;;
    esac
    return 1
}
for bin in "$OUT/bin/"*; do
    ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
        system_lib "$name" || cp -L "$path" "$OUT/lib/$name"
    done
done
echo "$ARCH" >"$OUT/ARCH"
git -C "$ROOT" log --oneline -1 >"$OUT/COMMIT" 2>/dev/null || true
du -sh "$OUT"
ls -l "$OUT/bin" "$OUT/lib"
