# SPDX-License-Identifier: Apache-2.0
"""inferd as an operator sees it: configuration from the environment a
SageMaker/LMI container sets, /health while loading and draining, 429 when
the queue is full, SSE keep-alives during a long prefill, prefix-cache usage
fields, JSON logs with request ids, SIGHUP log reopening, and connection and
header limits."""
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import requests

from conftest import API_KEY, BIN, MODEL, SLOW, Daemon, free_port

MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1"


def chat(d, content, **extra):
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}
    return requests.post(d.url + "/v1/chat/completions", json=body, headers=d.headers, timeout=120 * SLOW)


def wait_until_running(d):
    """Returns once the engine reports a running request (or after 30 s)."""
    running = 'vllm:num_requests_running{model_name="%s"}' % MODEL_NAME
    deadline = time.time() + 30 * SLOW
    while time.time() < deadline and d.metrics().get(running, 0) < 1:
        time.sleep(0.02)


def test_health_is_503_while_loading():
    # A dummy model generated at start-up keeps the server in "loading" long
    # enough to see it; the listener is open before the model loads.
    d = Daemon("--load-format", "dummy")
    seen = []
    deadline = time.time() + 60 * SLOW
    while time.time() < deadline and (not seen or seen[-1] != 200):
        try:
            r = requests.get(d.url + "/health", timeout=5)
            seen.append(r.status_code)
            if r.status_code == 503:
                assert r.json()["error"]["code"] == "loading"
        except requests.ConnectionError:
            time.sleep(0.005)
    assert d.stop() == 0
    assert 503 in seen and seen[-1] == 200, seen


def test_sagemaker_environment(tmp_path):
    # HF_MODEL_ID may name a directory holding the GGUF; SAGEMAKER_BIND_TO_PORT
    # picks the port; OPTION_* are the LMI names for engine limits.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    os.symlink(MODEL, model_dir / os.path.basename(MODEL))
    port = free_port()
    env = dict(os.environ, HF_MODEL_ID=str(model_dir), SAGEMAKER_BIND_TO_PORT=str(port), OPTION_MAX_MODEL_LEN="512",
               OPTION_MAX_ROLLING_BATCH_SIZE="4", SERVED_MODEL_NAME="smol")
    log = open(tmp_path / "log", "w")
    proc = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60 * SLOW
        while time.time() < deadline:
            try:
                if requests.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        models = requests.get(url + "/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["smol"]
        assert models[0]["max_model_len"] == 512
        r = requests.post(url + "/invocations", json={"prompt": "x " * 600, "max_tokens": 2})
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        r = requests.post(url + "/invocations", json={"model": "smol", "prompt": "Hi", "max_tokens": 2})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60 * SLOW) == 0, open(tmp_path / "log").read()[-3000:]


def test_queue_full_is_429_with_retry_after():
    d = Daemon("--max-num-seqs", "1", "--max-queued-requests", "1").wait_ready()
    codes, retry_after = [], []

    def worker():
        r = requests.post(d.url + "/v1/completions", headers=d.headers, timeout=120 * SLOW,
                          json={"prompt": "Count:", "max_tokens": 48, "ignore_eos": True})
        codes.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["error"]["type"] == "rate_limit_error" or r.json()["error"]["code"]
            retry_after.append(r.headers.get("Retry-After"))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert d.stop() == 0
    assert codes.count(200) >= 2 and codes.count(429) >= 1, codes
    assert all(v is not None and int(v) >= 1 for v in retry_after)


def test_draining_health_is_503_and_inflight_finishes():
    d = Daemon("--shutdown-timeout", "20").wait_ready()
    s = requests.Session()  # a kept-alive connection survives the closed listener
    assert s.get(d.url + "/health").status_code == 200
    result = {}

    def long_request():
        r = requests.post(d.url + "/v1/completions", headers=d.headers, timeout=120 * SLOW,
                          json={"prompt": "Once", "max_tokens": 64, "ignore_eos": True})
        result["status"] = r.status_code
        result["tokens"] = r.json()["usage"]["completion_tokens"]

    t = threading.Thread(target=long_request)
    t.start()
    wait_until_running(d)
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    r = s.get(d.url + "/health")
    assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
    t.join()
    assert result == {"status": 200, "tokens": 64}
    assert d.stop() == 0


def test_sse_keepalive_during_long_prefill():
    # A long prompt prefilled in small chunks: no token for several seconds, so
    # the stream must carry SSE comments before its first data line.
    d = Daemon("--keepalive", "1", "--max-num-batched-tokens", "32", "--max-num-seqs", "4").wait_ready()
    body = json.dumps({"prompt": "word " * 1200, "max_tokens": 1, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=120 * SLOW)
    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    data = b""
    while b"data: [DONE]" not in data:
        chunk = s.recv(65536)
        assert chunk, data[-500:]
        data += chunk
    s.close()
    assert d.stop() == 0
    head, stream = data.split(b"\r\n\r\n", 1)
    assert b" 200 " in head.split(b"\r\n")[0]
    assert b"text/event-stream" in head
    first_data = stream.index(b"data:")
    assert b": keep-alive" in stream[:first_data], stream[:300]


def test_cached_tokens_in_usage():
    d = Daemon().wait_ready()
    prompt = "You are a meticulous assistant. " * 20
    first = chat(d, prompt).json()
    second = chat(d, prompt).json()
    assert d.stop() == 0
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    # every full 16-token block of the prompt but the last token's is reused
    assert cached >= second["usage"]["prompt_tokens"] - 16 and cached % 16 == 0, second["usage"]


def test_message_shapes():
    d = Daemon().wait_ready()
    msgs = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}, {"type": "text", "text": "In Paris."}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                   "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "user", "content": "So?"}]
    r = requests.post(d.url + "/v1/chat/completions", headers=d.headers, json={"messages": msgs, "max_tokens": 4})
    assert d.stop() == 0
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["role"] == "assistant"


def test_json_logs_request_ids_and_sighup_reopen(tmp_path):
    log_file = tmp_path / "inferd.log"
    d = Daemon("--log-format", "json", "--log-file", str(log_file)).wait_ready()
    assert chat(d, "hi").status_code == 200
    rotated = tmp_path / "inferd.log.1"
    shutil.move(log_file, rotated)
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10 * SLOW
    while time.time() < deadline and not log_file.exists():
        time.sleep(0.02)
    assert chat(d, "hello").status_code == 200
    assert d.stop() == 0
    old = [json.loads(line) for line in rotated.read_text().splitlines()]
    new = [json.loads(line) for line in log_file.read_text().splitlines()]
    access = [e for e in old + new if e.get("tag") == "access"]
    chats = [e for e in access if "/v1/chat/completions" in e["msg"]]
    assert len(chats) == 2, access
    assert all(e.get("req") for e in chats)
    assert chats[0]["req"] != chats[1]["req"]
    assert any("/v1/chat/completions" in e["msg"] for e in new if e.get("tag") == "access")
    assert all({"ts", "level", "tag", "req", "msg"} <= set(e) for e in old + new)


def test_header_and_connection_limits():
    d = Daemon("--max-connections", "8", "--max-header-size", "16K").wait_ready()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30 * SLOW)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    reply = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    # MHD answers an oversized header block with 431 (or just closes)
    assert reply == b"" or reply.split(b" ")[1] in (b"413", b"431"), reply[:200]
    # more idle connections than allowed: the extra ones are refused, the
    # server stays healthy and serves again once they close
    idle = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(20)]
    time.sleep(0.2)
    for c in idle:
        c.close()
    deadline = time.time() + 10 * SLOW
    ok = False
    while time.time() < deadline and not ok:
        try:
            ok = requests.get(d.url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            time.sleep(0.1)
    assert ok
    assert d.stop() == 0


def test_sigint_drains_like_sigterm():
    d = Daemon().wait_ready()
    result = {}

    def request():
        r = requests.post(d.url + "/v1/completions", headers=d.headers, timeout=120 * SLOW,
                          json={"prompt": "Once", "max_tokens": 32, "ignore_eos": True})
        result["status"], result["tokens"] = r.status_code, r.json()["usage"]["completion_tokens"]

    t = threading.Thread(target=request)
    t.start()
    wait_until_running(d)
    d.proc.send_signal(signal.SIGINT)
    t.join()
    assert d.proc.wait(timeout=60 * SLOW) == 0, d.logs()[-3000:]
    assert result == {"status": 200, "tokens": 32}
    assert "SIGINT" in d.logs()
