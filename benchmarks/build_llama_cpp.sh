#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# build_llama_cpp.sh: builds llama.cpp's llama-bench and llama-server, the peers
# inferd is measured against, from the llama.cpp sources vendored in the
# llama-cpp-python source distribution on PyPI (the one route to llama.cpp that
# works offline here). Output: benchmarks/.peers/llama.cpp/bin/ (git-ignored).
# Nothing of llama.cpp is committed.
set -euo pipefail
cd "$(dirname "$0")"
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
dest=.peers/llama.cpp
[ -x "$dest/bin/llama-bench" ] && [ -x "$dest/bin/llama-server" ] && exit 0
mkdir -p .peers && cd .peers
[ -f "llama_cpp_python-$version.tar.gz" ] ||
    python3 -m pip download --quiet --no-deps --no-binary :all: --disable-pip-version-check -d . "llama-cpp-python==$version"
rm -rf src && mkdir src && tar xzf "llama_cpp_python-$version.tar.gz" -C src
cmake -S "src/llama_cpp_python-$version/vendor/llama.cpp" -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF > /dev/null
cmake --build build -j"$(nproc)" --target llama-bench llama-server
mkdir -p llama.cpp/bin && cp build/bin/llama-bench build/bin/llama-server llama.cpp/bin/
echo "build_llama_cpp: $(pwd)/llama.cpp/bin"
