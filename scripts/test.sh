#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test.sh: the README's second command: every test of the default tier, twice:
# a warnings-as-errors release build, then an AddressSanitizer +
# UndefinedBehaviorSanitizer build. Installs and fetches what the tests need
# first (idempotent).
#
#   scripts/test.sh            default tier (what CI runs)
#   scripts/test.sh --full     also the full tier
set -euo pipefail
cd "$(dirname "$0")/.."
tier=(-LE full)
[ "${1:-}" = "--full" ] && tier=()
scripts/install_deps.sh
scripts/fetch_model.sh
scripts/fetch_model.sh gemma3
scripts/python_env.sh
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DINFERD_WERROR=ON > /dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs" "${tier[@]}")

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DINFERD_SANITIZE=ON -DINFERD_WERROR=ON -DINFERD_CUDA=OFF > /dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j"$jobs" "${tier[@]}")
echo "test.sh: all tests passed (release and ASan+UBSan)"
