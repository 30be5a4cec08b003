# SPDX-License-Identifier: Apache-2.0
"""inferd over raw HTTP: bad input gets a clear error and nothing else, the
auxiliary endpoints, disconnects that free KV blocks, and SIGTERM under load."""
import json
import socket
import threading
import time

import pytest
import requests

from conftest import API_KEY, SLOW, Daemon


def post(server, path, body, headers=None, raw=None, **kw):
    h = dict(server.headers, **(headers or {}))
    if raw is None:
        return requests.post(server.url + path, json=body, headers=h, timeout=120 * SLOW, **kw)
    h.setdefault("Content-Type", "application/json")
    return requests.post(server.url + path, data=raw, headers=h, timeout=120 * SLOW, **kw)


def error_of(resp):
    body = resp.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    return body["error"]


def test_health_ping_metrics_are_public(server):
    assert requests.get(server.url + "/health").status_code == 200
    assert requests.get(server.url + "/ping").status_code == 200
    assert requests.post(server.url + "/ping").status_code == 200
    m = requests.get(server.url + "/metrics")
    assert m.status_code == 200
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:prompt_tokens_total",
                 "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:inter_token_latency_seconds_bucket", "vllm:e2e_request_latency_seconds_bucket",
                 "vllm:request_queue_time_seconds_bucket", "vllm:num_preemptions_total",
                 "vllm:request_success_total", "http_requests_total"):
        assert name in m.text, name


def test_kv_pool_size_in_metrics_before_any_request():
    # the pool's size is published at startup, not after the first engine step
    d = Daemon("--kv-cache-memory", "64M").wait_ready()
    try:
        m = d.metrics()
        label = '{model_name="SmolLM2-135M-Instruct.Q4_1",state="total"}'
        per_block = 30 * 2 * 3 * 64 * 2 * 16  # layers x (K, V) x KV heads x head dim x f16 x tokens per block
        assert m["inferd_kv_cache_blocks" + label] == (64 << 20) // per_block, m
    finally:
        assert d.stop() == 0


def test_engine_time_split_in_metrics(server):
    r = requests.post(server.url + "/v1/completions", headers=server.headers,
                      json={"prompt": "Count: one, two,", "max_tokens": 4})
    assert r.status_code == 200
    m = server.metrics()
    label = '{model_name="SmolLM2-135M-Instruct.Q4_1"}'
    step, forward = m["inferd_engine_step_seconds_total" + label], m["inferd_engine_forward_seconds_total" + label]
    assert 0 < forward <= step, (forward, step)


def test_auth(server):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = requests.post(server.url + "/v1/chat/completions", json=body)
    assert r.status_code == 401 and error_of(r)["type"] == "authentication_error"
    r = requests.post(server.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = requests.post(server.url + "/v1/chat/completions", json=body,
                      headers={"Authorization": "Bearer " + API_KEY + "x"})
    assert r.status_code == 401
    assert requests.get(server.url + "/v1/models", headers=server.headers).status_code == 200


def test_malformed_json_and_wrong_types(server):
    r = post(server, "/v1/chat/completions", None, raw=b'{"messages": [')
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_json"
    r = post(server, "/v1/chat/completions", None, raw=b"")
    assert r.status_code == 400
    cases = [({"messages": "hi"}, "messages"), ({"messages": [{"role": "user", "content": 5}]}, "messages[0]"),
             ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
             ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "10"}, "max_tokens"),
             ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
             ({"messages": [{"role": "user", "content": "x"}], "n": 99}, "n"),
             ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
             ({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"abc": 1}}, "logit_bias"),
             ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}, "top_logprobs"),
             ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}},
              "response_format"),
             ({"messages": [{"role": "user", "content": "x"}], "stop": [1, 2]}, "stop"),
             ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages[0]")]
    for body, param in cases:
        r = post(server, "/v1/chat/completions", body)
        assert r.status_code == 400, (body, r.text)
        assert error_of(r)["param"] == param, (body, r.text)
    r = post(server, "/v1/completions", {"prompt": 12})
    assert r.status_code == 400 and error_of(r)["param"] == "prompt"
    r = post(server, "/v1/completions", {"prompt": [1, 2, 10 ** 9]})
    assert r.status_code == 400 and error_of(r)["param"] == "prompt"
    # unknown fields are ignored
    r = post(server, "/v1/completions", {"prompt": "Hi", "max_tokens": 2, "frobnicate": {"x": 1}, "user": "u1"})
    assert r.status_code == 200


def test_invalid_utf8_body(server):
    r = post(server, "/v1/completions", None, raw=b'{"prompt": "\xff\xfe bad", "max_tokens": 2}')
    assert r.status_code == 400
    assert error_of(r)["code"] == "invalid_json"


def test_huge_body_is_413(server):
    r = post(server, "/v1/completions", None, raw=b'{"prompt": "' + b"a" * (10 * 1024 * 1024) + b'"}')
    assert r.status_code == 413
    assert error_of(r)["code"] == "request_too_large"
    assert requests.get(server.url + "/health").status_code == 200


def test_many_messages(server):
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(1000)]
    msgs.append({"role": "user", "content": "hi"})
    r = post(server, "/v1/chat/completions", {"messages": msgs, "max_tokens": 2})
    # a clean answer either way: served, or refused as longer than the context
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert error_of(r)["code"] == "context_length_exceeded"


def test_not_found_and_method(server):
    r = requests.get(server.url + "/v1/nope", headers=server.headers)
    assert r.status_code == 404 and "error" in r.json()
    r = requests.get(server.url + "/v1/chat/completions", headers=server.headers)
    assert r.status_code == 405 and "error" in r.json()


def test_tokenize_detokenize(server):
    r = post(server, "/tokenize", {"prompt": "Hello world"})
    assert r.status_code == 200
    toks = r.json()["tokens"]
    assert r.json()["count"] == len(toks) > 0
    d = post(server, "/detokenize", {"tokens": toks})
    assert d.json()["prompt"] == "Hello world"
    assert post(server, "/detokenize", {"tokens": [-1]}).status_code == 400


def test_invocations_dispatch_and_custom_attributes(server):
    h = {"X-Amzn-SageMaker-Custom-Attributes": "trace=abc123"}
    r = post(server, "/invocations", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}, headers=h)
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    assert r.headers["X-Amzn-SageMaker-Custom-Attributes"] == "trace=abc123"
    r = post(server, "/invocations", {"prompt": "hi", "max_tokens": 2})
    assert r.status_code == 200 and r.json()["object"] == "text_completion"
    r = post(server, "/invocations", {"inputs": "hi"})
    assert r.status_code == 400


def test_slow_trickled_body(server):
    body = json.dumps({"prompt": "Hello", "max_tokens": 2}).encode()
    s = socket.create_connection(("127.0.0.1", server.port))
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    s.sendall(head)
    for i in range(0, len(body), 4):
        s.sendall(body[i:i + 4])
        time.sleep(0.05)
    s.settimeout(60 * SLOW)
    status, body = read_response(s)
    s.close()
    assert status == 200, body[:200]
    assert json.loads(body)["object"] == "text_completion"


def read_response(sock):
    """Reads one HTTP/1.1 response with a Content-Length body; returns (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the headers"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    length = next(int(l.split(":", 1)[1]) for l in lines if l.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return int(lines[0].split()[1]), body[:length]


def wait_for(pred, timeout):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_disconnect_mid_stream_frees_blocks(server):
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": 2000, "stream": True,
                       "ignore_eos": True}).encode()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    got = b""
    while got.count(b"data:") < 5:
        got += s.recv(4096)
    running = lambda: server.metrics().get('vllm:num_requests_running{model_name="SmolLM2-135M-Instruct.Q4_1"}', 0)
    assert running() == 1
    s.close()
    used = lambda: server.metrics()['inferd_kv_cache_blocks{model_name="SmolLM2-135M-Instruct.Q4_1",state="used"}']
    assert wait_for(lambda: running() == 0 and used() == 0, 10), server.metrics()
    aborted = server.metrics()['vllm:request_success_total{model_name="SmolLM2-135M-Instruct.Q4_1",finished_reason="abort"}']
    assert aborted >= 1


def test_disconnect_while_waiting_non_streaming(server):
    body = json.dumps({"prompt": "Tell me everything", "max_tokens": 3000, "ignore_eos": True}).encode()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    running = lambda: server.metrics().get('vllm:num_requests_running{model_name="SmolLM2-135M-Instruct.Q4_1"}', 0)
    assert wait_for(lambda: running() == 1, 10)
    s.close()
    assert wait_for(lambda: running() == 0, 10), "the abandoned request kept running"


def test_sigterm_under_load_drains_and_exits_zero():
    d = Daemon("--shutdown-timeout", "20").wait_ready()
    results = []

    def worker(i):
        try:
            r = requests.post(d.url + "/v1/completions", headers=d.headers, timeout=120 * SLOW,
                              json={"prompt": f"Story number {i}:", "max_tokens": 24, "ignore_eos": True})
            # a request still being read when SIGTERM came is refused with 503 and an error object
            results.append(r.status_code if r.status_code != 503 else "503:" + r.json()["error"]["type"])
        except requests.RequestException as e:  # refused after the listener closed: a clean error
            results.append(type(e).__name__)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    code = d.stop(timeout=60)
    for t in threads:
        t.join()
    assert code == 0, d.logs()[-3000:]
    assert len(results) == 12
    # every accepted request completed; anything else is a clean refusal
    assert all(r in (200, "ConnectionError") or str(r).startswith("503:") for r in results), results
    assert results.count(200) >= 1
