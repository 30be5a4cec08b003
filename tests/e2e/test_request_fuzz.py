# SPDX-License-Identifier: Apache-2.0
"""Structure-aware request fuzzing of the real daemon.

For INFERD_FUZZ_SECONDS (20 in the default tier) 8 clients post mutated
bodies to every endpoint that takes one: valid chat and completions requests
with one to three fields (known or not) replaced by values of every JSON type,
extreme numbers, odd strings, nesting and shapes; broken messages; and raw
bytes: truncated JSON, invalid UTF-8, deep nesting, numbers that overflow.
Every answer must be a 2xx or a 4xx that carries OpenAI's error object, a
stream must end with [DONE]; never a 5xx, a dropped connection or a hang.
Afterwards the daemon is healthy, nothing runs or waits, every KV block is
back, and SIGTERM ends it with status 0 (LeakSanitizer checks leaks at exit
in the sanitizer build).

Generation stays short: max_tokens is only ever a small valid value or an
invalid one, so a request that happens to be valid costs a few tokens.
Reproduce a failure with INFERD_FUZZ_SEED (printed)."""
import json
import os
import random
import threading
import time

import requests

from conftest import SLOW, Daemon

SECONDS = float(os.environ.get("INFERD_FUZZ_SECONDS", "20"))
SEED = int(os.environ.get("INFERD_FUZZ_SEED", str(int(time.time()))))
CLIENTS = 8

ODD_VALUES = [None, True, False, 0, -1, 1, 2, 7, 2 ** 31, -2 ** 31 - 1, 2 ** 63, 2 ** 64, 1e308, -1e308, 1e-320, 0.5,
              -0.0, 3.7, "", "x", "\u0000", "caf\u00e9 \u6f22 \U0001f642", "\ud7ff", "a" * 3000, "<|im_end|>", "{{ x }}",
              [], [1], [-5, 70000], ["a", "b"], [[[]]], [None], {}, {"a": 1}, {"type": "text"},
              {"type": "text", "text": 5}, {"role": "user"}]
FIELDS = ["model", "temperature", "top_p", "n", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias",
          "logprobs", "top_logprobs", "user", "top_k", "min_p", "repetition_penalty", "min_tokens", "ignore_eos",
          "stop_token_ids", "priority", "chat_template_kwargs", "stream", "stream_options", "tools", "tool_choice",
          "response_format", "echo", "best_of", "suffix", "add_special_tokens", "frobnicate"]
ROLES = ["system", "user", "assistant", "tool", "developer", "wizard", "", None, 3]
BAD_MAX_TOKENS = [0, -1, 1.5, "8", [], {}, True, 2 ** 40, None]


def odd(rng):
    v = rng.choice(ODD_VALUES)
    return json.loads(json.dumps(v)) if v is not None else None  # a fresh copy


def message(rng):
    if rng.random() < 0.7:
        m = {"role": rng.choice(["system", "user", "assistant"]), "content": rng.choice(["Hi", "Say a word.", ""])}
    else:
        m = {"role": rng.choice(ROLES), "content": rng.choice([odd(rng), [{"type": "text", "text": "hi"}, odd(rng)]])}
    if rng.random() < 0.1:
        m[rng.choice(["name", "tool_calls", "tool_call_id", "content", "role"])] = odd(rng)
    if rng.random() < 0.05:
        del m[rng.choice(list(m))]
    return m


def valid_base(rng, chat):
    body = {"max_tokens": rng.randint(1, 6), "temperature": rng.choice([0, 0.7])}
    if chat:
        body["messages"] = [message(rng) if rng.random() < 0.3 else {"role": "user", "content": "Hello"}
                            for _ in range(rng.randint(1, 4))]
    else:
        body["prompt"] = rng.choice(["Once upon a time", [1, 2, 3], "", "\u00e9\u00e8", ["a", "b"], [[1, 2]]])
    if rng.random() < 0.3:
        body["stream"] = True
        if rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
    return body


def mutate(rng, body):
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.6:
            body[rng.choice(FIELDS)] = odd(rng)
        elif r < 0.75:
            body[rng.choice(["max_tokens", "max_completion_tokens"])] = rng.choice(BAD_MAX_TOKENS)
        elif r < 0.9 and "messages" in body:
            body["messages"] = rng.choice([odd(rng), [message(rng) for _ in range(rng.randint(0, 40))]])
        elif "prompt" in body or "messages" in body:
            key = "prompt" if "prompt" in body else "messages"
            body[key] = odd(rng)
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        body["max_tokens"] = 3  # keep a valid request short
    return body


def raw_body(rng):
    good = json.dumps(valid_base(rng, True)).encode()
    choice = rng.randrange(7)
    if choice == 0:
        return good[:rng.randrange(len(good))]
    if choice == 1:
        i = rng.randrange(len(good))
        return good[:i] + bytes([rng.choice([0xff, 0xc3, 0xe2, 0xf0, 0x80, 0x00])]) + good[i:]
    if choice == 2:
        depth = rng.choice([100, 3000, 100000])
        return b'{"messages": ' + b"[" * depth + b"]" * depth + b', "max_tokens": 2}'
    if choice == 3:
        return b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": ' + \
            rng.choice([b"1e999", b"99999999999999999999999999", b"-0", b"1.0", b"0x10", b"NaN", b"Infinity"]) + b"}"
    if choice == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if choice == 5:
        return b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "max_tokens": -4}'
    return json.dumps(rng.choice(ODD_VALUES)).encode()


def request(rng):
    """(path, raw bytes) of one fuzzed request."""
    r = rng.random()
    if r < 0.15:
        return rng.choice(["/v1/chat/completions", "/v1/completions", "/invocations"]), raw_body(rng)
    if r < 0.2:
        path = rng.choice(["/tokenize", "/detokenize"])
        body = {"prompt": odd(rng)} if path == "/tokenize" else {"tokens": odd(rng)}
        if rng.random() < 0.3:
            body = odd(rng)
        return path, json.dumps(body).encode()
    chat = rng.random() < 0.7
    body = valid_base(rng, chat)
    if rng.random() < 0.85:
        body = mutate(rng, body)
    path = ("/v1/chat/completions" if chat else "/v1/completions") if rng.random() < 0.85 else "/invocations"
    return path, json.dumps(body).encode()


def check_response(path, raw, resp):
    what = f"{path} {raw[:300]!r} -> {resp.status_code} {resp.content[:300]!r}"
    assert resp.status_code < 500, what
    if resp.status_code >= 400:
        err = resp.json().get("error")
        assert isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err), what
    elif resp.headers.get("Content-Type", "").startswith("text/event-stream"):
        assert resp.content.endswith(b"data: [DONE]\n\n"), what
    else:
        resp.json()


def test_request_fuzz():
    d = Daemon("--max-num-seqs", "16", "--kv-cache-memory", "32M").wait_ready()
    print(f"fuzz seed {SEED} ({SECONDS:.0f} s, {CLIENTS} clients)")
    stop_at = time.time() + SECONDS
    statuses, errors = {}, []
    lock = threading.Lock()

    def client(i):
        rng = random.Random(SEED * 1000 + i)
        session = requests.Session()
        while time.time() < stop_at and not errors:
            path, raw = request(rng)
            try:
                resp = session.post(d.url + path, data=raw, timeout=60 * SLOW,
                                    headers=dict(d.headers, **{"Content-Type": "application/json"}))
                check_response(path, raw, resp)
            except Exception as e:  # noqa: BLE001 - any failure fails the test, with the request
                with lock:
                    errors.append(f"{type(e).__name__}: {e} [{path} {raw[:200]!r}]")
                return
            with lock:
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"statuses: {dict(sorted(statuses.items()))}")
    assert not errors, errors[:3]
    assert d.proc.poll() is None, "the daemon died"
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0, statuses
    d.wait_idle()
    assert requests.get(d.url + "/health", timeout=10).status_code == 200
    code = d.stop()
    assert code == 0, d.logs()[-3000:]
