#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""plot.py: PNGs from a compare.py results folder (matplotlib, headless).

  throughput.png  output tokens/s vs concurrency, one line per server
  ttft.png        TTFT p50 (solid) and p99 (dashed) vs concurrency
  itl.png         inter-token latency p50 (solid) and p99 (dashed) vs concurrency
  prefix.png      shared-prefix workload: TTFT p50/p99 per server

Values are medians over rounds. Usage: plot.py RESULTS_DIR
"""
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


# vLLM's CPU build cannot run the GGUF here; it serves a bf16 checkpoint of the same weights
DISPLAY = {"vllm": "vllm-cpu (bf16)"}


def load(folder):
    """{server: {workload label: [summaries]}}"""
    data = {}
    for line in open(os.path.join(folder, "results.jsonl")):
        s = json.loads(line)
        server, label, _ = s["label"].split("|")
        data.setdefault(DISPLAY.get(server, server), {}).setdefault(label, []).append(s)
    return data


def med(ss, get):
    xs = [get(s) for s in ss if get(s) is not None]
    return statistics.median(xs) if xs else None


def fixed_points(runs, get):
    pts = sorted((int(label.split("-c")[1]), med(ss, get)) for label, ss in runs.items() if label.startswith("fixed-"))
    return [p[0] for p in pts], [p[1] for p in pts]


def line_plot(data, title, ylabel, path, series, log_y=False):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (server, runs) in enumerate(sorted(data.items())):
        color = f"C{i}"
        for get, style, suffix in series:
            xs, ys = fixed_points(runs, get)
            ax.plot(xs, ys, style, color=color, marker="o", label=f"{server}{suffix}")
    ax.set_xscale("log", base=2)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("concurrent streaming clients")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prefix_plot(data, path):
    servers = [s for s in sorted(data) if any(l.startswith("shared-prefix") for l in data[s])]
    if not servers:
        return
    p50 = [med(next(v for l, v in data[s].items() if l.startswith("shared-prefix")), lambda s: s["ttft_ms"]["p50"])
           for s in servers]
    p99 = [med(next(v for l, v in data[s].items() if l.startswith("shared-prefix")), lambda s: s["ttft_ms"]["p99"])
           for s in servers]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = range(len(servers))
    ax.bar([x - 0.2 for x in xs], p50, 0.4, label="TTFT p50")
    ax.bar([x + 0.2 for x in xs], p99, 0.4, label="TTFT p99")
    ax.set_xticks(list(xs), servers)
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_title("shared 1,000-word system prompt: time to first token")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(folder):
    data = load(folder)
    line_plot(data, "output throughput", "output tokens/s", os.path.join(folder, "throughput.png"),
              [(lambda s: s["output_tok_s"], "-", "")])
    line_plot(data, "time to first token", "ms (log)", os.path.join(folder, "ttft.png"),
              [(lambda s: s["ttft_ms"]["p50"], "-", " p50"), (lambda s: s["ttft_ms"]["p99"], "--", " p99")], log_y=True)
    line_plot(data, "inter-token latency", "ms (log)", os.path.join(folder, "itl.png"),
              [(lambda s: s["itl_ms"]["p50"], "-", " p50"), (lambda s: s["itl_ms"]["p99"], "--", " p99")], log_y=True)
    prefix_plot(data, os.path.join(folder, "prefix.png"))
    print(f"plot: PNGs in {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/serve")
