#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# test_cli.sh: end-to-end checks of the inferd executable (one CTest per case).
# Each case checks the exit status and the output. In the sanitizer build any
# leak or undefined behaviour makes the process exit non-zero, so "exit 0" also
# means "leaked nothing".
#
#   test_cli.sh CASE INFERD_BINARY REPO_ROOT
set -uo pipefail
case_name=$1 bin=$2 root=$3
model="$root/models/SmolLM2-135M-Instruct.Q4_1.gguf"
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

fail() { echo "FAIL $case_name: $*"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"; exit 1; }
run() { "$bin" "$@" > "$out" 2> "$err"; }
expect_ok() { run "$@" || fail "exit status $? from: inferd $*"; }
expect_fail() { run "$@" && fail "exit status 0 from: inferd $*"; [ $? -eq 1 ] || fail "exit status was not 1"; }
contains() { grep -q -- "$2" "$1" || fail "$(basename "$1") lacks '$2'"; }

prompt_chat=$'<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n'
case "$case_name" in
generate_greedy)
    expect_ok generate --model "$model" -n 16 --prompt "$prompt_chat"
    contains "$out" "Paris"
    contains "$err" "tok/s"
    ;;
generate_default_model)
    (cd "$root" && "$bin" generate -n 4 --prompt "Hello" > "$out" 2> "$err") || fail "default model not found from the checkout"
    ;;
generate_seed_reproducible)
    expect_ok generate --model "$model" -n 24 --temp 0.9 --seed 7 --prompt "Once upon a time"
    first=$(cat "$out")
    expect_ok generate --model "$model" -n 24 --temp 0.9 --seed 7 --prompt "Once upon a time"
    [ "$first" = "$(cat "$out")" ] || fail "same seed, different text"
    expect_ok generate --model "$model" -n 24 --temp 0.9 --seed 8 --prompt "Once upon a time"
    [ "$first" != "$(cat "$out")" ] || fail "different seeds gave identical 24-token samples"
    ;;
generate_corrupt_model)
    expect_fail generate --model "$root/tests/data/gguf_corrupt/bad_magic.gguf" --prompt hi
    contains "$err" "bad magic"
    expect_fail generate --model "$root/tests/data/model_corrupt/missing_tensor.gguf" --prompt hi
    contains "$err" "blk.0.ffn_up.weight"
    expect_fail generate --model /nonexistent.gguf --prompt hi
    contains "$err" "cannot open"
    ;;
bad_arguments)
    expect_fail generate --model "$model" --temp abc --prompt hi
    contains "$err" "not a number"
    expect_fail generate --model "$model" --no-such-flag
    contains "$err" "unknown option"
    expect_fail generate --model "$model" --top-p 2 --prompt hi
    contains "$err" "top-p"
    expect_fail generate --model "$model"
    contains "$err" "needs --prompt"
    expect_fail frobnicate
    contains "$err" "unknown command"
    expect_ok generate --help
    contains "$out" "--prompt"
    expect_ok --version
    contains "$out" "inferd "
    ;;
context_overflow)
    expect_fail generate --model "$model" --ctx-size 8 --prompt "one two three four five six seven eight nine ten eleven"
    contains "$err" "context holds 8"
    ;;
bench_json)
    expect_ok bench --model "$model" -r 1 --prompt-len 16 --gen-len 4 --decode-depth 4 --json
    contains "$out" '"prefill_tok_s"'
    contains "$out" '"peak_rss_mib"'
    ;;
bench_engine)
    expect_ok bench --model "$model" --requests 6 --concurrency 3 --prompt-len 24 --gen-len 8 --mixed --json
    contains "$out" '"output_tok_s"'
    contains "$out" '"ttft_ms"'
    expect_ok bench --model "$model" --requests 4 --concurrency 4 --prompt-len 16 --gen-len 4 --kv-cache-memory 8M
    contains "$out" "KV cache"
    ;;
kv_cache_q8_0)
    # the q8_0 KV cache through generate (engine) and the offline bench (single-sequence runner)
    expect_ok generate --model "$model" -n 16 --kv-cache-dtype q8_0 --prompt "$prompt_chat"
    contains "$out" "Paris"
    expect_ok bench --model "$model" -r 1 --prompt-len 32 --gen-len 8 --kv-cache-dtype q8_0
    contains "$out" "decode"
    expect_ok bench --model "$model" --requests 4 --concurrency 4 --prompt-len 16 --gen-len 4 --kv-cache-memory 8M \
        --kv-cache-dtype q8_0 --log-level info
    contains "$err" "q8_0"
    expect_fail generate --model "$model" --kv-cache-dtype q4_0 --prompt hi
    contains "$err" "kv-cache-dtype"
    ;;
generate_stop)
    expect_ok generate --model "$model" -n 24 --prompt "$prompt_chat" --stop "Paris"
    contains "$err" "finish: stop"
    grep -q "Paris" "$out" && fail "the stop string was printed"
    ;;
bench_dummy)
    expect_ok bench --load-format dummy --dummy-preset tiny --dummy-type Q8_0 -r 1 --prompt-len 16 --gen-len 4
    contains "$out" "decode"
    # an explicit preset wins over a model path from the environment (the GPU host sets INFERD_MODEL)
    INFERD_MODEL="$model" expect_ok bench --load-format dummy --dummy-preset tiny -r 1 --prompt-len 8 --gen-len 2
    contains "$out" "model dummy-tiny,"
    expect_fail bench --load-format dummy --dummy-preset nope
    contains "$err" "unknown dummy preset"
    # the engine benchmark on a dummy model (no tokenizer: token ids only)
    expect_ok bench --load-format dummy --dummy-preset tiny --dummy-type Q4_0 --requests 6 --concurrency 3 \
        --prompt-len 16 --gen-len 5 --json
    contains "$out" '"requests":6'
    contains "$out" '"output_tok_s"'
    ;;
*)
    echo "unknown case $case_name"; exit 2 ;;
esac
echo "PASS $case_name"
