#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# setup.sh: the README's first command. On a fresh Debian 12 machine it
# installs what is missing, builds inferd, fetches the default model and
# serves it on port 8080 (extra arguments go to `inferd serve`). Every step is
# skipped when already done, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)"
scripts/fetch_model.sh
exec ./build/inferd serve --port 8080 "$@"
