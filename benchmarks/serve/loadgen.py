#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""loadgen.py: a serving load generator for any OpenAI-compatible endpoint.

Drives POST /v1/chat/completions (or /v1/completions) with streaming requests
and reports request throughput, input/output tokens/s, TTFT, TPOT, inter-token
latency and end-to-end latency (p50/p90/p99) and errors, as a table and JSON.
Token counts come from the server's usage fields (stream_options.include_usage),
never from guesses; a server that sends no usage makes the run an error, unless
--count-chunks says to count its content chunks instead (for servers that
stream exactly one token per chunk but send no usage, like llama-cpp-python's;
prompt tokens are then unknown and input tok/s is reported as 0).

Workloads (--workload):
  fixed          every request: a prompt of about --prompt-len tokens of random
                 words and exactly --gen-len output tokens (ignore_eos)
  chat-mix       a user message of 16..4*prompt-len words (log-uniform) and an
                 output budget of 8..2*gen-len tokens (ignore_eos), like a chat
                 service's spread
  shared-prefix  one long system prompt (--prefix-len words) shared by every
                 request, plus a short distinct question: what prefix caching
                 is for

Load: --concurrency N closed-loop clients, or --request-rate R Poisson arrivals
per second (open loop, unbounded concurrency). --warmup requests are sent
first and not measured; then --num-requests, or as many as fit in --duration
seconds.

One asyncio thread with plain sockets: the client costs little CPU, which
matters when it shares a 2-core machine with the server.

  python3 benchmarks/serve/loadgen.py --url http://127.0.0.1:8080 --concurrency 32 --num-requests 128
"""
import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import time
import urllib.parse

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact river mountain music garden window paper market city "
         "light water story family system program question night power money game food table road color").split()


# ---- workloads ----

def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_requests(args, n, seed):
    """n request bodies (dicts) for the workload, deterministic in seed."""
    rng = random.Random(seed)
    system = words(random.Random(12345), args.prefix_len) if args.workload == "shared-prefix" else None
    out = []
    for i in range(n):
        if args.workload == "fixed":
            text, max_tokens = words(rng, args.prompt_len), args.gen_len
        elif args.workload == "chat-mix":
            n_words = int(math.exp(rng.uniform(math.log(16), math.log(4 * args.prompt_len))))
            text, max_tokens = words(rng, n_words), rng.randint(8, 2 * args.gen_len)
        else:
            text, max_tokens = f"Question {i}: " + words(rng, 12), args.gen_len
        body = {"model": args.model, "max_tokens": max_tokens, "temperature": args.temperature,
                "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
        if args.endpoint == "chat":
            msgs = [{"role": "system", "content": system}] if system else []
            body["messages"] = msgs + [{"role": "user", "content": text}]
        else:
            body["prompt"] = (system + "\n" if system else "") + text
        out.append(body)
    return out


# ---- one streaming request over a raw HTTP/1.1 connection ----

class Result:
    __slots__ = ("ok", "error", "t_start", "ttft", "e2e", "chunk_times", "prompt_tokens", "completion_tokens")

    def __init__(self):
        self.ok, self.error = False, None
        self.t_start = self.ttft = self.e2e = None
        self.chunk_times = []
        self.prompt_tokens = self.completion_tokens = None


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def body_pieces(reader, headers):
    """Yields the body's bytes as they arrive: chunked, sized, or until close."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                return
            yield await reader.readexactly(size)
            await reader.readexactly(2)
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while True:
            piece = await reader.read(65536)
            if not piece:
                return
            yield piece


def note_event(res, data, now):
    """One SSE data payload: records content timing and usage."""
    try:
        ev = json.loads(data)
    except ValueError:
        return
    if ev.get("usage"):
        res.prompt_tokens = ev["usage"].get("prompt_tokens")
        res.completion_tokens = ev["usage"].get("completion_tokens")
    for ch in ev.get("choices") or []:
        delta = ch.get("delta") or {}
        if delta.get("content") or ch.get("text") or delta.get("reasoning_content"):
            res.chunk_times.append(now)
            if res.ttft is None:
                res.ttft = now - res.t_start


async def one_request(url, headers_extra, body, timeout, count_chunks=False):
    res = Result()
    u = urllib.parse.urlsplit(url)
    payload = json.dumps(body).encode()
    res.t_start = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname, u.port or 80), timeout)
        try:
            head = (f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
                    f"Accept: text/event-stream\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n"
                    + "".join(f"{k}: {v}\r\n" for k, v in headers_extra.items()) + "\r\n")
            writer.write(head.encode() + payload)
            await writer.drain()
            status, headers = await asyncio.wait_for(read_head(reader), timeout)
            buf = b""
            async for piece in body_pieces(reader, headers):
                now = time.perf_counter()
                buf += piece
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    for line in event.split(b"\n"):
                        if line.startswith(b"data:"):
                            data = line[5:].strip()
                            if data != b"[DONE]":
                                note_event(res, data, now)
            if status != 200:
                res.error = f"HTTP {status}: {buf[:200]!r}"
            elif res.completion_tokens is None and count_chunks:
                res.completion_tokens, res.ok = len(res.chunk_times), True
            elif res.completion_tokens is None:
                res.error = "no usage in the stream (stream_options.include_usage unsupported?)"
            else:
                res.ok = True
            res.e2e = time.perf_counter() - res.t_start
        finally:
            writer.close()
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
        res.error = f"{type(e).__name__}: {e}"
    return res


# ---- load shapes ----

async def run_closed_loop(args, bodies, headers):
    results, queue = [], list(reversed(bodies))

    async def client():
        while queue:
            body = queue.pop()
            results.append(await one_request(args.url + path_of(args), headers, body, args.timeout, args.count_chunks))

    await asyncio.gather(*(client() for _ in range(min(args.concurrency, len(bodies)))))
    return results


async def run_poisson(args, bodies, headers):
    rng = random.Random(args.seed + 1)
    tasks = []
    for body in bodies:
        tasks.append(asyncio.create_task(one_request(args.url + path_of(args), headers, body, args.timeout, args.count_chunks)))
        await asyncio.sleep(rng.expovariate(args.request_rate))
    return list(await asyncio.gather(*tasks))


def path_of(args):
    return "/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions"


async def run(args):
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    if args.warmup:
        warm = make_requests(args, args.warmup, args.seed + 7)
        await asyncio.gather(*(one_request(args.url + path_of(args), headers, b, args.timeout, args.count_chunks) for b in warm))
    n = args.num_requests or 100000
    bodies = make_requests(args, n, args.seed)
    t0 = time.perf_counter()
    if args.duration:  # closed loop until the deadline
        deadline = t0 + args.duration
        results = []

        async def client(i):
            k = i
            while time.perf_counter() < deadline:
                results.append(await one_request(args.url + path_of(args), headers, bodies[k % n], args.timeout, args.count_chunks))
                k += args.concurrency

        await asyncio.gather(*(client(i) for i in range(args.concurrency)))
    elif args.request_rate:
        results = await run_poisson(args, bodies, headers)
    else:
        results = await run_closed_loop(args, bodies, headers)
    return results, time.perf_counter() - t0


# ---- report ----

def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def summarize(args, results, wall):
    ok = [r for r in results if r.ok]
    ttft = [r.ttft for r in ok if r.ttft is not None]
    e2e = [r.e2e for r in ok]
    tpot = [(r.e2e - r.ttft) / (r.completion_tokens - 1) for r in ok if r.ttft is not None and r.completion_tokens > 1]
    itl = [b - a for r in ok for a, b in zip(r.chunk_times, r.chunk_times[1:])]
    ms = lambda xs: {f"p{int(p * 100)}": (1e3 * pct(xs, p) if xs else None) for p in (0.5, 0.9, 0.99)}
    errors = {}
    for r in results:
        if not r.ok:
            errors[r.error] = errors.get(r.error, 0) + 1
    return {
        "workload": args.workload, "endpoint": args.endpoint, "concurrency": None if args.request_rate else args.concurrency,
        "request_rate": args.request_rate, "tokens_counted_from": "usage, else chunks" if args.count_chunks else "usage", "requests": len(results), "completed": len(ok), "errors": errors,
        "wall_s": wall, "request_throughput": len(ok) / wall,
        "input_tok_s": sum(r.prompt_tokens or 0 for r in ok) / wall,
        "output_tok_s": sum(r.completion_tokens for r in ok) / wall,
        "mean_prompt_tokens": statistics.mean([r.prompt_tokens or 0 for r in ok]) if ok else None,
        "mean_completion_tokens": statistics.mean([r.completion_tokens for r in ok]) if ok else None,
        "ttft_ms": ms(ttft), "tpot_ms": ms(tpot), "itl_ms": ms(itl), "e2e_ms": ms(e2e),
    }


def print_table(s, label):
    f = lambda v: "-" if v is None else f"{v:.1f}"
    print(f"{label}: {s['completed']}/{s['requests']} ok in {s['wall_s']:.1f} s, {s['request_throughput']:.2f} req/s, "
          f"in {s['input_tok_s']:.1f} tok/s, out {s['output_tok_s']:.1f} tok/s")
    print(f"  {'ms':<6}{'p50':>10}{'p90':>10}{'p99':>10}")
    for k in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        print(f"  {k[:-3]:<6}" + "".join(f"{f(s[k][p]):>10}" for p in ("p50", "p90", "p99")))
    if s["errors"]:
        print("  errors:", s["errors"])


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--model", default="", help="the request's model field")
    ap.add_argument("--api-key", default="")
    ap.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    ap.add_argument("--workload", choices=("fixed", "chat-mix", "shared-prefix"), default="fixed")
    ap.add_argument("--prompt-len", type=int, default=128, help="words (about tokens) per prompt")
    ap.add_argument("--gen-len", type=int, default=64, help="output tokens per request")
    ap.add_argument("--prefix-len", type=int, default=1000, help="shared-prefix: words of the shared system prompt")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--request-rate", type=float, default=0, help="Poisson arrivals per second instead of --concurrency")
    ap.add_argument("--num-requests", type=int, default=64)
    ap.add_argument("--duration", type=float, default=0, help="seconds of closed-loop load instead of --num-requests")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count-chunks", action="store_true",
                    help="count content chunks as output tokens when the stream has no usage (labelled in the JSON)")
    ap.add_argument("--label", default="run")
    ap.add_argument("--json", help="append the summary as one JSON line to this file")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    results, wall = asyncio.run(run(args))
    s = summarize(args, results, wall)
    s["label"] = args.label
    print_table(s, args.label)
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(s) + "\n")
    return 0 if s["completed"] else 1


if __name__ == "__main__":
    sys.exit(main())
