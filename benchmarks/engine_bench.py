#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""engine_bench.py: the engine's numbers from issue 3, medians of --runs.

  1. batching: output tok/s of `inferd bench --requests 96 --concurrency 32
     --prompt-len 256 --gen-len 128` over the batch-1 decode rate of the same
     build (`inferd bench --prompt-len 256 --gen-len 128 --decode-depth 256`);
  2. engine overhead: the share of step time outside model_forward
     (scheduling, sampling, stop checks, streams) in that concurrency-32 run;
  3. prefix cache: TTFT of a request whose 1,000-token prefix is cached over
     the same request uncached. Through `inferd serve`: each run sends a
     fresh 1,000-word prefix + question A (nothing cached), then the same
     prefix + question B (prefix cached), streaming, one at a time.

  python3 benchmarks/engine_bench.py --runs 5 [--json benchmarks/results/engine.json]
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys

import inferd_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "time person year way day thing world life hand part child eye place work week case point river music".split()


def bench_json(a, *extra):
    cmd = [a.bin, "bench", "--model", a.model, "-t", str(a.threads), "--json", *extra]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def ttft_ms(port, prompt):
    return inferd_server.stream(port, prompt, 2)[0] * 1e3


def prefix_runs(a):
    port = inferd_server.free_port()
    proc, _ = inferd_server.start(a.bin, a.model, a.threads, port)
    try:
        rng, out = random.Random(7), []
        ttft_ms(port, "warm up")
        for i in range(a.runs):
            prefix = " ".join(rng.choice(WORDS) for _ in range(a.prefix_words))
            cold = ttft_ms(port, f"{prefix}\nQuestion {i}a: what comes next?")
            warm = ttft_ms(port, f"{prefix}\nQuestion {i}b: and after that?")
            print(f"prefix run {i + 1}: uncached {cold:.0f} ms, cached {warm:.0f} ms ({warm / cold:.1%})", flush=True)
            out.append((cold, warm))
        return out
    finally:
        inferd_server.stop(proc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "inferd"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--prefix-words", type=int, default=900, help="about 1,000 tokens")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()

    batch1, serving = [], []
    for i in range(a.runs):  # alternate, so drifting load hits both alike
        b1 = bench_json(a, "-r", "1", "--prompt-len", "256", "--gen-len", "128", "--decode-depth", "256")
        c32 = bench_json(a, "--requests", "96", "--concurrency", "32", "--prompt-len", "256", "--gen-len", "128")
        print(f"run {i + 1}: batch-1 decode {b1['decode_tok_s']:.1f} tok/s, concurrency 32 output "
              f"{c32['output_tok_s']:.1f} tok/s, engine overhead {c32['engine_overhead_pct']:.2f}%", flush=True)
        batch1.append(b1["decode_tok_s"])
        serving.append(c32)
    prefix = prefix_runs(a)

    med = statistics.median
    res = {
        "threads": a.threads, "runs": a.runs,
        "batch1_decode_tok_s": med(batch1),
        "c32_output_tok_s": med(s["output_tok_s"] for s in serving),
        "c32_over_batch1": med(s["output_tok_s"] for s in serving) / med(batch1),
        "c32_engine_overhead_pct": med(s["engine_overhead_pct"] for s in serving),
        "c32_ttft_p50_ms": med(s["ttft_ms"]["p50"] for s in serving),
        "c32_itl_p50_ms": med(s["itl_ms"]["p50"] for s in serving),
        "prefix_uncached_ttft_ms": med(c for c, _ in prefix),
        "prefix_cached_ttft_ms": med(w for _, w in prefix),
        "prefix_cached_over_uncached": med(w / c for c, w in prefix),
    }
    print(json.dumps(res, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
