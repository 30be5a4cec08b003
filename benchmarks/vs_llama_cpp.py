#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Offline single-sequence speed, inferd vs llama.cpp, side by side on the same
machine, model file and thread count. Runs alternate (inferd, llama.cpp,
inferd, ...) so that drifting machine load hits both; each reported number is
the median of --runs runs.

Measures (as llama-bench names them):
  pp<P>          prefill tokens/s of a P-token prompt
  tg<G>@d<D>     decode tokens/s for G tokens after D tokens of context
  peak RSS       inferd's VmHWM at --ctx tokens of context (llama-bench does not report RSS)

Usage: benchmarks/vs_llama_cpp.py [--model FILE] [--threads 2] [--runs 5]
       [--llama-bench PATH] [--json OUT]
llama-bench comes from benchmarks/build_llama_cpp.sh.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_inferd(a):
    cmd = [a.inferd, "bench", "--model", a.model, "-t", str(a.threads), "-r", "1", "--json",
           "--prompt-len", str(a.prompt), "--gen-len", str(a.gen), "--decode-depth", str(a.depth),
           "--ctx-size", str(a.ctx)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    return r["prefill_tok_s"], r["decode_tok_s"], r["peak_rss_mib"]


def run_llama(a):
    def one(extra):
        cmd = [a.llama_bench, "-m", a.model, "-t", str(a.threads), "-r", "1", "-o", "json"] + extra
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out)[0]["avg_ts"]
    pp = one(["-p", str(a.prompt), "-n", "0"])
    tg = one(["-p", "0", "-n", str(a.gen), "-d", str(a.depth)])
    return pp, tg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--depth", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--inferd", default=os.path.join(ROOT, "build/inferd"))
    ap.add_argument("--llama-bench", default=os.path.join(ROOT, "benchmarks/.peers/llama.cpp/bin/llama-bench"))
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    ours, theirs = [], []
    for i in range(a.runs):
        ours.append(run_inferd(a))
        theirs.append(run_llama(a))
        print(f"run {i + 1}: inferd pp {ours[-1][0]:.1f} tg {ours[-1][1]:.1f} | llama.cpp pp {theirs[-1][0]:.1f} "
              f"tg {theirs[-1][1]:.1f}", file=sys.stderr)
    med = lambda rows, k: statistics.median(r[k] for r in rows)
    res = {
        "model": os.path.basename(a.model), "threads": a.threads, "runs": a.runs,
        f"pp{a.prompt}": {"inferd": med(ours, 0), "llama.cpp": med(theirs, 0)},
        f"tg{a.gen}@d{a.depth}": {"inferd": med(ours, 1), "llama.cpp": med(theirs, 1)},
        "inferd_peak_rss_mib": med(ours, 2), "ctx": a.ctx,
        "model_file_mib": os.path.getsize(a.model) / 2**20,
    }
    print(f"{'test':<14} {'inferd tok/s':>13} {'llama.cpp tok/s':>16} {'ratio':>7}")
    for k in (f"pp{a.prompt}", f"tg{a.gen}@d{a.depth}"):
        r = res[k]
        print(f"{k:<14} {r['inferd']:>13.1f} {r['llama.cpp']:>16.1f} {r['inferd'] / r['llama.cpp']:>6.2f}x")
    print(f"inferd peak RSS at ctx {a.ctx}: {res['inferd_peak_rss_mib']:.1f} MiB "
          f"(model file {res['model_file_mib']:.1f} MiB, budget file + 64 MiB = {res['model_file_mib'] + 64:.1f} MiB)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
