# SPDX-License-Identifier: Apache-2.0
"""inferd_server.py: starting, stopping and streaming from `inferd serve` for the
benchmark scripts (engine_bench.py, http_bench.py), so they share one start-up
wait and one SSE client."""
import json
import signal
import socket
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, model, threads, port, extra=(), timeout=300):
    """Starts `inferd serve` on 127.0.0.1:port; returns (process, seconds from start to the first GET /health 200).
    Exits the script if inferd dies or is not ready within timeout seconds."""
    cmd = [binary, "serve", "--host", "127.0.0.1", "--port", str(port), "--model", model, "--threads", str(threads),
           "--log-level", "warn", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"inferd exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc, time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.002)
    proc.kill()
    sys.exit(f"inferd was not ready within {timeout} s: {' '.join(cmd)}")


def stop(proc):
    """SIGTERM, then exits the script unless inferd drained and exited 0."""
    proc.send_signal(signal.SIGTERM)
    if proc.wait(timeout=60) != 0:
        sys.exit(f"inferd exited with {proc.returncode}")


def stream(port, prompt, gen_len):
    """One streaming /v1/completions request (greedy, ignore_eos) over a raw socket, parsing nothing
    but the SSE framing; returns (ttft_s, [inter-event gaps], events)."""
    body = json.dumps({"prompt": prompt, "max_tokens": gen_len, "ignore_eos": True, "temperature": 0,
                       "stream": True}).encode()
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body)
    buf, events, times = b"", 0, []
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        now = time.perf_counter()
        buf += chunk
        while b"data: " in buf:
            i = buf.index(b"data: ")
            j = buf.find(b"\n\n", i)
            if j < 0:
                break
            if buf[i + 6:j] != b"[DONE]":
                events += 1
                times.append(now)
            buf = buf[j + 2:]
    s.close()
    if not times:
        raise RuntimeError("no tokens streamed")
    # one event per token, except where the detokenizer holds back half a
    # UTF-8 character; throughput counts the requested tokens, not events
    gaps = [b - a for a, b in zip(times, times[1:])]
    return times[0] - t0, gaps, events
