#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""http_bench.py: the server's numbers from issue 4, measured against the
engine's own offline benchmark on the same machine.

  1. throughput: C concurrent streaming /v1/completions clients, each request
     a prompt of P random token ids and G generated tokens (ignore_eos), the
     same workload `inferd bench --requests N --concurrency C --prompt-len P
     --gen-len G` runs without HTTP; output tokens/s through HTTP over offline,
     TTFT p50/p99 and inter-token latency as the clients see them;
  2. start-up: process start to the first GET /health 200 (page cache warm);
  3. GET /health per second (wrk) while C streaming clients keep the model busy.

Medians of --runs repetitions. Run from the repository root after a release
build:

  python3 benchmarks/http_bench.py --runs 3 [--json benchmarks/results/http.json]

The clients are raw sockets in threads of this process: they parse nothing but
the SSE framing, so that the 2 cores are left to the server as far as possible
(the offline benchmark has no client at all; the ratio includes what the
clients cost).
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time

import inferd_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_http(args, port, vocab):
    rng = random.Random(4321)
    prompts = [[rng.randrange(vocab) for _ in range(args.prompt_len)] for _ in range(args.requests)]
    lock = threading.Lock()
    todo = list(range(args.requests))
    ttfts, gaps = [], []

    def client():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            ttft, g, _ = inferd_server.stream(port, prompts[i], args.gen_len)
            with lock:
                ttfts.append(ttft)
                gaps.extend(g)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttfts.sort()
    gaps.sort()
    return {"output_tok_s": args.requests * args.gen_len / wall, "wall_s": wall,
            "ttft_p50_ms": 1e3 * ttfts[len(ttfts) // 2], "ttft_p99_ms": 1e3 * ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.99))],
            "itl_p50_ms": 1e3 * gaps[len(gaps) // 2], "itl_p99_ms": 1e3 * gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]}


def run_offline(args):
    out = subprocess.run([args.bin, "bench", "--model", args.model, "--threads", str(args.threads), "--requests",
                          str(args.requests), "--concurrency", str(args.concurrency), "--prompt-len",
                          str(args.prompt_len), "--gen-len", str(args.gen_len), "--max-num-seqs",
                          str(max(64, args.concurrency)), "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def health_rps(args, port):
    """wrk on GET /health for --health-seconds while streaming clients keep the engine busy."""
    stop = threading.Event()
    rng = random.Random(1)

    def busy():
        while not stop.is_set():
            inferd_server.stream(port, [rng.randrange(1000, 2000) for _ in range(64)], 256)

    threads = [threading.Thread(target=busy) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    time.sleep(1)
    out = subprocess.run(["wrk", "-t1", "-c16", f"-d{args.health_seconds}s", f"http://127.0.0.1:{port}/health"],
                         check=True, capture_output=True, text=True).stdout
    stop.set()
    for t in threads:
        t.join()
    rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec:")).split()[1])
    non2xx = [l for l in out.splitlines() if "Non-2xx" in l or "Socket errors" in l]
    if non2xx:
        sys.exit(f"http_bench: /health errors under load: {non2xx}")
    return rps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "inferd"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--health-seconds", type=int, default=5)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("http_bench: needs wrk (apt-get install wrk)")
    vocab = 49152

    startups, http_runs, offline_runs, rps_runs = [], [], [], []
    for run in range(args.runs):
        offline_runs.append(run_offline(args))
        port = inferd_server.free_port()
        proc, startup = inferd_server.start(args.bin, args.model, args.threads, port,
                                            ["--max-num-seqs", str(max(64, args.concurrency))])
        startups.append(startup)
        http_runs.append(run_http(args, port, vocab))
        rps_runs.append(health_rps(args, port))
        inferd_server.stop(proc)
        print(f"run {run + 1}: offline {offline_runs[-1]['output_tok_s']:.1f} tok/s, http "
              f"{http_runs[-1]['output_tok_s']:.1f} tok/s, ttft p50 {http_runs[-1]['ttft_p50_ms']:.0f} ms, "
              f"start-up {1e3 * startup:.0f} ms, /health {rps_runs[-1]:.0f}/s", flush=True)

    med = lambda xs: statistics.median(xs)
    res = {
        "workload": {"concurrency": args.concurrency, "requests": args.requests, "prompt_len": args.prompt_len,
                     "gen_len": args.gen_len, "threads": args.threads, "runs": args.runs},
        "offline_output_tok_s": med([r["output_tok_s"] for r in offline_runs]),
        "http_output_tok_s": med([r["output_tok_s"] for r in http_runs]),
        "offline_ttft_p50_ms": med([r["ttft_ms"]["p50"] for r in offline_runs]),
        "offline_ttft_p99_ms": med([r["ttft_ms"]["p99"] for r in offline_runs]),
        "ttft_p50_ms": med([r["ttft_p50_ms"] for r in http_runs]),
        "ttft_p99_ms": med([r["ttft_p99_ms"] for r in http_runs]),
        "itl_p50_ms": med([r["itl_p50_ms"] for r in http_runs]),
        "itl_p99_ms": med([r["itl_p99_ms"] for r in http_runs]),
        "startup_to_health_ms": 1e3 * med(startups),
        "health_rps_while_busy": med(rps_runs),
    }
    res["http_over_offline"] = res["http_output_tok_s"] / res["offline_output_tok_s"]
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
