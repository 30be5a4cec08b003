#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/gpu/run.sh: the one-shot GPU check of the CUDA backend, for a host with
# an NVIDIA GPU (H100/H200 first), no network, and possibly none of the
# server's -dev libraries. One command, under 6 minutes:
#
#   tests/gpu/run.sh [OUT_DIR]        (or INFERD_GPU_OUT=DIR; default $OUT, else ./gpu-out)
#
# With INFERD_GPU_PREBUILT=DIR (made by scripts/gpu_bundle.sh on a CPU machine:
# DIR/bin/{inferd,inferd_gpu_check}, DIR/lib/*.so) nothing is configured or
# built here, and the daemon stages run even without the -dev libraries.
#
# Stages (each independent: a failing stage is reported and the next runs):
#   env        GPU model, driver, toolkit
#   configure  cmake with CUDA on; compute-only (no jansson/libuv/pcre2/mhd) when those are missing
#   build      the kernel check (inferd_gpu_check); then the daemon binary if it can be built
#   ops        every backend op on the GPU against the CPU backend, fresh random inputs, several shapes
#   memcheck   compute-sanitizer memcheck over the kernel check (quick shapes)
#   greedy     dummy models on both backends: 5 prompts x 32 greedy tokens must agree (near-ties excepted);
#              decode steps replayed from CUDA graphs against the same steps run eagerly
#   daemon     `inferd generate` CPU vs CUDA on a real GGUF, if one is present (models/ or $INFERD_MODEL)
#   cpu-isa    the CPU kernel sets this host has and the dev VM lacks (AVX-512 VNNI): the CPU unit tests
#              that compare every set with the scalar reference, then greedy output avx512 == avx2
#   bench      decode/prefill on a Llama-3-8B-shaped bf16 dummy model, HBM roofline, GEMM vs cuBLAS
#   cli-bench  `inferd bench --load-format dummy --dummy-preset llama3-8b --dummy-type BF16 --device cuda`
#   load64     the same model through the engine: 128 requests at concurrency 64 (output tokens/s)
#   profile    Nsight Compute (ncu), if present, on one split decode attention launch: where its time goes
# Full logs go to OUT_DIR/<stage>.log (packed into OUT_DIR/logs.tar.gz with
# INFERD_GPU_PACK=1), check rows to OUT_DIR/results.tsv, and the results
# table (printed last) to OUT_DIR/summary.txt. Exit status: 0 when
# every stage that ran passed. See tests/gpu/README.md.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUTDIR=${1:-${INFERD_GPU_OUT:-${OUT:-$ROOT/gpu-out}}}
BUILD=${INFERD_GPU_BUILD:-$ROOT/build-gpu}
BUDGET=${INFERD_GPU_BUDGET_S:-345}   # seconds for everything; later stages are skipped past it
JOBS=$(nproc 2>/dev/null || echo 8)
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
RESULTS=$OUTDIR/results.tsv
: >"$RESULTS"
T0=$(date +%s)
ROWS=()
FAILED=0
CHECK=$BUILD/inferd_gpu_check
INFERD=$BUILD/inferd
TESTS=$BUILD/inferd_tests

elapsed() { echo $(($(date +%s) - T0)); }

# record NAME STATUS SECONDS NOTE
record() {
    ROWS+=("$(printf '%-10s %-8s %5ss  %s' "$1" "$2" "$3" "$4")")
    case $2 in FAIL | TIMEOUT) FAILED=1 ;; esac
    printf '[%4ss] %-10s %s %s\n' "$(elapsed)" "$1" "$2" "$4"
}

# stage NAME LIMIT_S NEEDS_S CMD...: runs CMD with a timeout into NAME.log, unless fewer than NEEDS_S seconds are left.
stage() {
    local name=$1 limit=$2 needs=$3
    shift 3
    local left=$((BUDGET - $(elapsed)))
    if [ "$left" -lt "$needs" ]; then
        record "$name" SKIP 0 "time budget spent ($(elapsed)s of ${BUDGET}s)"
        return 3
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    local s=$(date +%s) rc
    # through bash -c so that stages may be the shell functions below (exported)
    timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" >"$OUTDIR/$name.log" 2>&1
    rc=$?
    local d=$(($(date +%s) - s))
    if [ $rc -eq 0 ]; then
        record "$name" PASS "$d" "$(tail -n 1 "$OUTDIR/$name.log" | cut -c1-110)"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        record "$name" TIMEOUT "$d" "killed after ${limit}s (see $name.log)"
    else
        local why
        why=$(grep -m1 -E 'FAIL|error|Error' "$OUTDIR/$name.log" || tail -n 1 "$OUTDIR/$name.log")
        record "$name" FAIL "$d" "exit $rc: $(echo "$why" | cut -c1-100)"
    fi
    return $rc
}

export ROOT OUTDIR BUILD RESULTS CHECK INFERD TESTS

# ---- env ----
env_info() {
    echo "date: $(date -u)"
    echo "host: $(uname -a)"
    nvidia-smi || echo "nvidia-smi not found"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true
    command -v nvcc >/dev/null && nvcc --version || ls /usr/local/cuda*/bin/nvcc 2>/dev/null
    command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null || true
    cmake --version | head -n 1
    git -C "$ROOT" log --oneline -1 2>/dev/null || true
    echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-<unset>}"
}
export -f env_info
stage env 30 5 env_info
GPU=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
ARCH=${INFERD_CUDA_ARCH:-${ARCH:-90}}
for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do [ -d "$d" ] && PATH=$PATH:$d; done

# ---- configure + build ----
have_server_libs() {
    command -v pkg-config >/dev/null && pkg-config --exists libpcre2-8 jansson libuv libmicrohttpd
}
configure() {
    local extra=()
    if ! have_server_libs; then
        echo "server libraries missing: configuring the compute-only build (no daemon)"
        extra=(-DINFERD_COMPUTE_ONLY=ON)
    fi
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DINFERD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
        "${extra[@]}" ||
        { echo "full configure failed: retrying compute-only" &&
          cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DINFERD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
              -DINFERD_COMPUTE_ONLY=ON; }
}
export ARCH PATH
export -f have_server_libs configure

# cuBLAS and cudart for prebuilt binaries: the toolkit's lib64, else the pip wheels'
cuda_lib_path() {
    local d dirs=()
    for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -e "$d/libcublas.so.13" ] && dirs+=("$d")
    done
    if [ ${#dirs[@]} = 0 ]; then
        while read -r f; do dirs+=("$(dirname "$f")"); done < <(find / -xdev -name 'libcublas.so.13' -path '*nvidia*' 2>/dev/null | head -n 2)
        while read -r f; do dirs+=("$(dirname "$f")"); done < <(find / -xdev -name 'libcudart.so.13' -path '*nvidia*' 2>/dev/null | head -n 1)
    fi
    local IFS=:
    echo "${dirs[*]}"
}

PREBUILT=${INFERD_GPU_PREBUILT:-}
[ -n "$PREBUILT" ] && PREBUILT=$(cd "$PREBUILT" 2>/dev/null && pwd)
DAEMON=0
if [ -n "$PREBUILT" ] && [ -x "$PREBUILT/bin/inferd_gpu_check" ]; then
    if [ "$(cat "$PREBUILT/ARCH" 2>/dev/null)" != "$ARCH" ]; then
        echo "note: bundle built for sm_$(cat "$PREBUILT/ARCH" 2>/dev/null), this GPU is sm_$ARCH (PTX JIT may apply)"
    fi
    CHECK=$PREBUILT/bin/inferd_gpu_check
    INFERD=$PREBUILT/bin/inferd
    TESTS=$PREBUILT/bin/inferd_tests
    LD_LIBRARY_PATH=$PREBUILT/lib:$(cuda_lib_path)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export CHECK INFERD TESTS LD_LIBRARY_PATH
    record build SKIP 0 "prebuilt bundle $(cat "$PREBUILT/COMMIT" 2>/dev/null | cut -c1-60)"
    if "$INFERD" --version >"$OUTDIR/bundle-ldd.log" 2>&1; then
        DAEMON=1
    else
        ldd "$INFERD" >>"$OUTDIR/bundle-ldd.log" 2>&1
        record build-cli FAIL 0 "bundled daemon does not start (see bundle-ldd.log)"
    fi
else
    stage configure 60 20 configure
    stage build 180 60 cmake --build "$BUILD" -j"$JOBS" --target inferd_gpu_check
    if grep -q '^INFERD_COMPUTE_ONLY:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
        record build-cli SKIP 0 "server libraries not installed: no daemon binary on this host"
    elif stage build-cli 120 60 cmake --build "$BUILD" -j"$JOBS" --target inferd inferd_tests; then
        DAEMON=1
    fi
fi

# ---- checks ----
MODEL_FILE=${INFERD_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
export MODEL_FILE
if [ -x "$CHECK" ]; then
    stage ops 120 30 "$CHECK" --ops --results "$RESULTS"
    SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -n 1)
    if [ -n "$SAN" ]; then
        stage memcheck 120 40 "$SAN" --tool memcheck --error-exitcode 86 --print-limit 20 "$CHECK" --ops --quick
    else
        record memcheck SKIP 0 "compute-sanitizer not found"
    fi
    # the real GGUF too, when the host has one: the same near-tie rule the daemon stage leans on
    GGUF_GREEDY=()
    [ -f "$MODEL_FILE" ] && GGUF_GREEDY=(--greedy "$MODEL_FILE")
    stage greedy 100 30 "$CHECK" --greedy tiny:Q4_0 --greedy smollm2-135m:Q8_0 --greedy smollm2-135m:BF16 \
        --greedy tinyllama-1.1b:Q4_K "${GGUF_GREEDY[@]}" --graphs smollm2-135m:Q8_0 \
        --results "$RESULTS"
else
    record ops SKIP 0 "no kernel check binary (build failed)"
fi

# the daemon's own greedy path on a real model, when the host has one (the GPU host has no network)
daemon_greedy() {
    local model=$MODEL_FILE
    local prompts=("The capital of France is" "Write a haiku about the sea." "def fibonacci(n):"
                   "List three prime numbers:" "Once upon a time")
    local bad=0 differ=0 i=0 gen=(generate --model "$model" -n 32 --temp 0)
    for p in "${prompts[@]}"; do
        "$INFERD" "${gen[@]}" --prompt "$p" --device cpu >"$OUTDIR/daemon_cpu_$i.txt" 2>"$OUTDIR/daemon_cpu_$i.err"
        if ! "$INFERD" "${gen[@]}" --prompt "$p" --device cuda >"$OUTDIR/daemon_cuda_$i.txt" 2>"$OUTDIR/daemon_cuda_$i.err"
        then
            echo "prompt $i: the CUDA run FAILED: $(head -c 300 "$OUTDIR/daemon_cuda_$i.err")"; bad=1
        elif cmp -s "$OUTDIR/daemon_cpu_$i.txt" "$OUTDIR/daemon_cuda_$i.txt"; then
            echo "prompt $i: equal"
        else
            differ=$((differ + 1))
            echo "prompt $i: DIFFERENT from byte $(cmp "$OUTDIR/daemon_cpu_$i.txt" "$OUTDIR/daemon_cuda_$i.txt" | awk '{print $5}')"
            diff "$OUTDIR/daemon_cpu_$i.txt" "$OUTDIR/daemon_cuda_$i.txt"
            # the same prompt without CUDA graphs tells a graph problem from a numeric one
            "$INFERD" "${gen[@]}" --prompt "$p" --device cuda --enforce-eager >"$OUTDIR/daemon_eager_$i.txt" 2>/dev/null
            if cmp -s "$OUTDIR/daemon_cuda_$i.txt" "$OUTDIR/daemon_eager_$i.txt"; then
                echo "prompt $i: CUDA graphs and --enforce-eager agree: a numeric divergence, not a graph one"
            else
                echo "prompt $i: CUDA graphs and --enforce-eager DIFFER"; bad=1
            fi
        fi
        i=$((i + 1))
    done
    # A greedy divergence is legitimate only at a near-tie, which the text cannot show; the
    # greedy stage checked exactly that on this file's logits (CPU margin < 5x the backends' gap).
    if [ $bad = 0 ] && [ $differ -gt 0 ]; then
        if grep -q "^ok	greedy	$model" "$RESULTS"; then
            echo "greedy daemon output: $((5 - differ)) of 5 prompts equal; the rest diverge where the logit-level" \
                 "check on the same file found only near-ties"
            return 0
        fi
        echo "greedy daemon output: $differ of 5 prompts differ and the logit-level check on this file did not pass"
        return 1
    fi
    echo "greedy daemon output: $([ $bad = 0 ] && echo 'equal on 5 prompts x 32 tokens' || echo 'FAILED')"
    return $bad
}
export -f daemon_greedy
if [ $DAEMON = 1 ] && [ -f "$MODEL_FILE" ]; then
    stage daemon 90 30 daemon_greedy
else
    record daemon SKIP 0 "needs the daemon binary and a GGUF ($MODEL_FILE); model-level greedy ran instead"
fi

# The AVX-512 kernel set never runs on the dev VM (AVX2 only); GPU hosts have had
# AVX-512 VNNI. Its X8 matmuls claim bit-identical results to the AVX2 set's
# (exact integer sums, the same float steps), so greedy text must be equal too.
cpu_isa() {
    local log=$OUTDIR/cpu-isa-tests.log
    "$TESTS" cpu_matmul_all_types_vs_reference cpu_ffn_swiglu_vs_reference cpu_attention_vs_reference \
        cpu_attention_tiled_kernel_matches_single_rows cpu_attention_tiled_backend_matches_single_rows >"$log" 2>&1
    local rc=$?
    grep -E 'note:|PASS|FAIL|run,' "$log"
    [ $rc = 0 ] || { echo "cpu-isa: unit tests FAILED (see cpu-isa-tests.log)"; return 1; }
    if grep -q 'kernel set avx512: not available' "$log"; then
        echo "cpu-isa: this CPU has no AVX-512 VNNI; scalar and AVX2 sets pass"
        return 0
    fi
    if [ "$DAEMON" = 1 ] && [ -f "$MODEL_FILE" ]; then
        local isa gen=(generate --model "$MODEL_FILE" -n 32 --temp 0 --device cpu --prompt "The capital of France is")
        for isa in avx2 avx512; do
            "$INFERD" "${gen[@]}" --isa $isa >"$OUTDIR/isa_$isa.txt" 2>"$OUTDIR/isa_$isa.err" ||
                { echo "cpu-isa: generate --isa $isa FAILED: $(head -c 300 "$OUTDIR/isa_$isa.err")"; return 1; }
        done
        cmp -s "$OUTDIR/isa_avx2.txt" "$OUTDIR/isa_avx512.txt" ||
            { echo "cpu-isa: greedy text DIFFERS between --isa avx2 and --isa avx512"; return 1; }
        echo "cpu-isa: avx512 set passes the unit tests; greedy text equal to avx2's ($(wc -c <"$OUTDIR/isa_avx2.txt") bytes)"
    else
        echo "cpu-isa: avx512 set passes the unit tests (no daemon or GGUF for the greedy comparison)"
    fi
}
export -f cpu_isa
export DAEMON # 1: the daemon binary starts (a bundle's may lack a library)
if [ -x "$TESTS" ]; then
    stage cpu-isa 60 15 cpu_isa
else
    record cpu-isa SKIP 0 "no inferd_tests binary (compute-only build, or a bundle made before it carried one)"
fi

[ -x "$CHECK" ] && stage bench 150 60 "$CHECK" --bench llama3-8b:BF16 --results "$RESULTS"
if [ $DAEMON = 1 ]; then
    stage cli-bench 110 60 "$INFERD" bench --load-format dummy --dummy-preset llama3-8b --dummy-type BF16 \
        --device cuda -r 3 --prompt-len 512 --gen-len 64
    # the engine under load: 64 concurrent requests, token ids only (dummy models have no tokenizer);
    # no --kv-cache-memory, so the device memory plan sizes the pool (its line is in load64.log)
    stage load64 150 60 "$INFERD" bench --load-format dummy --dummy-preset llama3-8b --dummy-type BF16 \
        --device cuda --max-num-seqs 64 --requests 128 --concurrency 64 \
        --prompt-len 128 --gen-len 64 --log-level info
fi

# ---- profile: informational, run last ----
# bench/ops times attention per launch but cannot say why it takes what it
# takes; ncu's stall reasons can. The kernel check's second attention launch
# is "decode b1 ctx4100 (split)" (Llama-3-8B heads, 33 splits). Hosts that
# do not let users read the GPU's counters (ERR_NVGPUCTRPERM) say so and pass.
profile_attention() {
    local report rc
    report=$("$NCU" --kernel-name regex:attn_kernel --launch-skip 1 --launch-count 1 \
        --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
        --section MemoryWorkloadAnalysis "$CHECK" --ops --quick 2>&1)
    rc=$?
    echo "$report"
    if grep -q ERR_NVGPUCTRPERM <<<"$report"; then
        echo "profile: this host does not let users read GPU performance counters (ERR_NVGPUCTRPERM)"
        return 0
    fi
    [ $rc -eq 0 ] && echo "profile: ncu report of one split decode attention launch above"
    return $rc
}
export -f profile_attention
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
export NCU
if [ -x "$CHECK" ] && [ -n "$NCU" ]; then
    stage profile 60 40 profile_attention
else
    record profile SKIP 0 "ncu not found (or no kernel check)"
fi

# ---- results table ----
{
    echo
    echo "==== inferd GPU check: ${GPU:-unknown GPU}, sm_$ARCH, $(elapsed)s ===="
    printf '%-10s %-8s %6s  %s\n' stage status time note
    for r in "${ROWS[@]}"; do echo "$r"; done
    if grep -q . "$RESULTS" 2>/dev/null; then
        echo "---- checks: $(grep -c '^ok' "$RESULTS") ok, $(grep -c '^FAIL' "$RESULTS") failed ----"
        grep '^FAIL' "$RESULTS" | head -n 20
        grep -E '^ok	(bench|greedy|graphs)' "$RESULTS" | cut -f2- | sed 's/\t/  /g'
        grep -E '^FAIL	(bench|greedy|graphs)' "$RESULTS" | cut -f2- | sed 's/\t/  /g'
        grep '^metric' "$RESULTS" | cut -f2- | sed 's/\t/ = /'
    fi
    [ -f "$OUTDIR/cli-bench.log" ] && grep -E 'prefill|decode' "$OUTDIR/cli-bench.log" | head -n 4
    [ -f "$OUTDIR/load64.log" ] && grep -E 'memory plan|requests,|throughput|TTFT|ITL|engine ' "$OUTDIR/load64.log" | head -n 6
    echo "logs: $OUTDIR"
} | tee "$OUTDIR/summary.txt"
# INFERD_GPU_PACK=1: every log in one logs.tar.gz next to summary.txt and
# results.tsv, for hosts that hand back only a few files (the device tool)
if [ -n "${INFERD_GPU_PACK:-}" ]; then
    (cd "$OUTDIR" && find . -maxdepth 1 -type f ! -name summary.txt ! -name results.tsv ! -name logs.tar.gz \
        -printf '%P\n' | tar -czf logs.tar.gz -T - --remove-files)
fi
exit $FAILED
