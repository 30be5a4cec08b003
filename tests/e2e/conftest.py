# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the end-to-end tests: a real inferd daemon on loopback.

The daemon is the binary under test ($INFERD_BIN, default build/inferd) with
the default model. Each server fixture starts its own process on a free port,
waits for /health, and on teardown sends SIGTERM and requires exit status 0
(in the sanitizer build, leaks make the exit status non-zero).
"""
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("INFERD_BIN", os.path.join(ROOT, "build", "inferd"))
MODEL = os.environ.get("INFERD_MODEL", os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
API_KEY = "sk-test-0123456789"
SLOW = float(os.environ.get("INFERD_TEST_TIMEOUT_SCALE", "1"))  # sanitizer builds run slower


_started = []  # every Daemon, so that a test failing before stop() leaves no process behind


def pytest_sessionfinish(session, exitstatus):
    for d in _started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, *extra, api_key=API_KEY, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--model", MODEL,
                "--log-level", "info", "--threads", "2", *extra]
        if api_key:
            args += ["--api-key", api_key]
        self.log_path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"inferd-e2e-{self.port}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        _started.append(self)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            assert self.proc.poll() is None, f"inferd exited early:\n{self.logs()}"
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"inferd not ready after {timeout}s:\n{self.logs()}")

    def logs(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def metrics(self):
        text = requests.get(self.url + "/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def wait_idle(self, timeout=30):
        """Waits until nothing runs and every KV block is back; asserts it (and
        that nothing waits), returning the last metrics."""
        label = '{model_name="SmolLM2-135M-Instruct.Q4_1"}'
        running, waiting = "vllm:num_requests_running" + label, "vllm:num_requests_waiting" + label
        used = 'inferd_kv_cache_blocks{model_name="SmolLM2-135M-Instruct.Q4_1",state="used"}'
        m, deadline = {}, time.time() + timeout * SLOW
        while time.time() < deadline:
            m = self.metrics()
            if m[running] == 0 and m[used] == 0:
                break
            time.sleep(0.2)
        assert m[running] == 0 and m[waiting] == 0, m
        assert m[used] == 0, f"{m[used]} KV blocks still in use"
        return m

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"inferd did not exit after SIGTERM:\n{self.logs()}")
        self.log.close()
        return code


@pytest.fixture(scope="module")
def server():
    d = Daemon().wait_ready()
    yield d
    code = d.stop()
    assert code == 0, f"inferd exited with {code}:\n{d.logs()[-4000:]}"


@pytest.fixture()
def client(server):
    import openai
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120 * SLOW)
