"""Shared helpers for the system tests: real `dais` processes on loopback.

Every test gets fresh processes on ports nobody else uses (chosen by binding port 0 and
remembered for the session, so two tests never pick the same one), short heartbeat intervals,
and a random cluster token passed in the environment. Processes log to files; when a test
fails, the tail of each log is printed. Nothing outside 127.0.0.1 is ever contacted.

Environment:
  DAIS_BIN     the dais binary (default: build/release/dais under the repository root)
  DAIS_SHARED  the shared data directory (default: ../shared relative to the repository root)
"""

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAIS_BIN = os.environ.get("DAIS_BIN", os.path.join(REPO, "build", "release", "dais"))
SHARED = os.environ.get("DAIS_SHARED", os.path.join(REPO, "..", "shared"))
STORIES = os.path.join(SHARED, "models", "stories260K.gguf")

# Heartbeats in the tests: 200 ms, dead after 3 misses.
HB_MS = 200
HB_MISSES = 3

_used_ports = set()


def free_port(kind=socket.SOCK_STREAM):
    """A loopback port free for TCP and UDP right now and not handed out before."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port in _used_ports:
            continue
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        t = socket.socket(socket.AF_INET, other)
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            t.close()
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port")


def wait_for(pred, timeout, interval=0.02, what="condition"):
    """Polls pred() until it returns a truthy value; returns it, or fails the test."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.1f} s waiting for {what} (last: {last!r})")


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


def http_request(port, method, path, body=None, headers=None, timeout=30.0):
    """One HTTP request on a new connection; returns a Response (body as text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read().decode("utf-8", errors="replace")
        return Response(r.status, r.getheaders(), data)
    finally:
        conn.close()


def parse_sse(text):
    """[(event, data-as-json)] from a Server-Sent Events body."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        events.append((event, json.loads("\n".join(data))))
    return events


class Proc:
    """A dais process with its log in a file."""

    def __init__(self, name, args, env, logdir):
        self.name = name
        self.args = args
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.p.pid, sig)

    def stop(self, timeout=10):
        """SIGTERM (SIGCONT first, in case it is stopped), then SIGKILL; returns the status."""
        if self.alive():
            try:
                os.kill(self.p.pid, signal.SIGCONT)
                os.kill(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()
        return self.p.returncode

    def tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""


class Cluster:
    """A master and workers started on demand; every process is stopped at the end."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.token = secrets.token_hex(16)
        self.procs = []
        self.master = None
        self.workers = {}
        self.http_port = self.cluster_port = self.hb_port = self.metrics_port = None

    def env(self, token=None):
        e = dict(os.environ)
        e["DAIS_CLUSTER_TOKEN"] = token if token is not None else self.token
        for k in list(e):
            # A developer's own DAIS_* settings must not leak into the processes under test.
            if k.startswith("DAIS_") and k not in ("DAIS_CLUSTER_TOKEN",):
                del e[k]
        return e

    # ---- master ----
    def start_master(self, *extra, wait=True, reuse_ports=False):
        if not reuse_ports or self.http_port is None:
            self.http_port = free_port()
            self.cluster_port = free_port()
            self.hb_port = free_port(socket.SOCK_DGRAM)
            self.metrics_port = free_port()
        args = [DAIS_BIN, "master", "--addr", "127.0.0.1",
                "--http-port", str(self.http_port), "--cluster-port", str(self.cluster_port),
                "--heartbeat-port", str(self.hb_port), "--metrics-port", str(self.metrics_port),
                "--heartbeat-interval", f"{HB_MS}ms", "--heartbeat-misses", str(HB_MISSES),
                "--shutdown-grace", "2s", *extra]
        self.master = Proc(f"master-{len(self.procs)}", args, self.env(), self.logdir)
        self.procs.append(self.master)
        if wait:
            wait_for(lambda: self._health(), 10, what="master /health")
        return self.master

    def _health(self):
        if not self.master.alive():
            pytest.fail(f"master exited:\n{self.master.tail()}")
        try:
            return self.get("/health", timeout=1).status == 200
        except OSError:
            return False

    # ---- workers ----
    def start_worker(self, wid, *extra, model=STORIES, token=None, wait=True, threads=1):
        hb = free_port(socket.SOCK_DGRAM)
        mp = free_port()
        args = [DAIS_BIN, "worker", "--model", model,
                "--master", f"127.0.0.1:{self.cluster_port}", "--id", wid,
                "--addr", "127.0.0.1", "--heartbeat-port", str(hb), "--metrics-port", str(mp),
                "--threads", str(threads), *extra]
        w = Proc(wid, args, self.env(token), self.logdir)
        self.procs.append(w)
        self.workers[wid] = w
        if wait:
            self.wait_state(wid, "active", timeout=30)
        return w

    # ---- HTTP ----
    def request(self, method, path, body=None, headers=None, timeout=30.0):
        return http_request(self.http_port, method, path, body, headers, timeout)

    def get(self, path, timeout=10.0):
        return self.request("GET", path, timeout=timeout)

    def infer(self, prompt="Once upon a time", timeout=60.0, **params):
        body = {"prompt": prompt}
        body.update(params)
        return self.request("POST", "/api/inference", body, timeout=timeout)

    def cluster_view(self):
        return self.get("/api/cluster").json()

    def worker_view(self, wid):
        for w in self.cluster_view()["workers"]:
            if w["id"] == wid:
                return w
        return None

    def state(self, wid):
        w = self.worker_view(wid)
        return w["state"] if w is not None else None

    def wait_state(self, wid, state, timeout=10.0):
        def check():
            proc = self.workers.get(wid)
            if proc is not None and not proc.alive() and state not in (None, "dead"):
                pytest.fail(f"worker {wid} exited:\n{proc.tail()}")
            return self.state(wid) == state
        return wait_for(check, timeout, what=f"worker {wid} to be {state}")

    def wait_ready(self, timeout=30.0):
        wait_for(lambda: self.get("/ready").status == 200, timeout, what="/ready")

    def stop(self):
        for p in reversed(self.procs):
            p.stop()

    def logs(self):
        return "\n".join(f"---- {p.name} ({' '.join(p.args[1:3])}) ----\n{p.tail()}"
                         for p in self.procs)


@pytest.fixture
def cluster(request, tmp_path):
    if not os.path.exists(DAIS_BIN):
        pytest.fail(f"dais binary not found at {DAIS_BIN} (set DAIS_BIN)")
    c = Cluster(str(tmp_path))
    yield c
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    c.stop()
    if failed:
        print(c.logs())


@pytest.fixture
def stories():
    if not os.path.exists(STORIES):
        pytest.fail(f"{STORIES} is missing (set DAIS_SHARED)")
    return STORIES


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory):
    """A synthetic model (random weights, f32, 118 MB) on which one thread decodes about 100
    tokens/s, and whose greedy continuation of "hello" is visible text that runs to 2000 tokens
    without an end-of-text token: for tests that need a request to stay in flight."""
    path = str(tmp_path_factory.mktemp("models") / "slow.gguf")
    subprocess.run([DAIS_BIN, "model", "synth", "--dim", "512", "--layers", "8", "--heads", "8",
                    "--kv-heads", "8", "--ffn", "1536", "--vocab", "2048", "--ctx", "2048",
                    "--type", "f32", "-t", "1", "-o", path], check=True, capture_output=True,
                   timeout=120)
    return path


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def reference_text(n):
    """The reference greedy continuation of "Once upon a time" on stories260K (README in
    shared/models), without the prompt and without run.c's final newline."""
    with open(os.path.join(SHARED, "models", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    marker = {64: "**`-n 64`**", 256: "**`-n 256`**"}[n]
    start = readme.index("```text\n", readme.index(marker)) + len("```text\n")
    end = readme.index("\n```", start)
    full = readme[start:end]
    assert full.startswith("Once upon a time")
    return full[len("Once upon a time"):]


def tempdir():
    return tempfile.mkdtemp(prefix="dais-test-")
