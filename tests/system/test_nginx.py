"""A real nginx in front of the master, as the Kubernetes Ingress puts it (spec step 5).

The test renders deploy/nginx/dais.conf (the plain-nginx twin of deploy/k8s/ingress.yaml) with a
free loopback port and the master's address, starts Debian's nginx with it, and talks to a real
master and two real workers through it:

  - w1 serves stories260K (reference text known, shared/models/README.md);
  - w2 serves a synthetic model made here (random weights, slower per token and, with greedy
    decoding, no early end-of-text), so that a generation lasts long enough to watch it stream
    and to hang up in the middle of it.

Checked: the greedy answer through nginx is the reference; "stream": true arrives as
Server-Sent Events while the generation runs; the master's error statuses and JSON bodies
(400/404/405/413/503 + Retry-After) pass through unchanged; nginx's own errors (body over the
proxy's limit, master unreachable) are JSON too; a client that disconnects through nginx cancels
the request on the worker. Skipped when nginx is not installed.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import (DAIS_BIN, REPO, STORIES, Cluster, free_port, http_request, parse_sse,
                      reference_text, wait_for)

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None)
TEMPLATE = os.path.join(REPO, "deploy", "nginx", "dais.conf")

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (Debian package `nginx`; scripts/setup.sh "
                          "installs it)")

# The slow model: dim 256, 4 layers, f32 (~14 MB); a few hundred tokens/s on one thread.
SLOW_SHAPE = ["--dim", "256", "--layers", "4", "--heads", "4", "--kv-heads", "4", "--ffn", "768",
              "--vocab", "320", "--ctx", "4096"]


# ---- nginx -----------------------------------------------------------------------------------

def render_site(listen_port, upstream_port):
    """deploy/nginx/dais.conf with its `listen 80;` and upstream `server 127.0.0.1:8080;`
    replaced; fails if the template no longer has exactly one of each."""
    with open(TEMPLATE, encoding="utf-8") as f:
        text = f.read()
    text, n_listen = re.subn(r"(?m)^(\s*)listen\s+80\s*;",
                             rf"\g<1>listen 127.0.0.1:{listen_port};", text)
    text, n_up = re.subn(r"(?m)^(\s*server\s+)127\.0\.0\.1:8080(\s*;)",
                         rf"\g<1>127.0.0.1:{upstream_port}\g<2>", text)
    assert n_listen == 1 and n_up == 1, (
        "deploy/nginx/dais.conf should have one `listen 80;` and one upstream "
        "`server 127.0.0.1:8080;` for the test to replace")
    return text


class Nginx:
    """nginx in the foreground with its own prefix, logs and temp paths under `workdir`."""

    def __init__(self, upstream_port, workdir):
        self.dir = workdir
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.error_log = os.path.join(self.dir, "error.log")
        with open(os.path.join(self.dir, "dais.conf"), "w", encoding="utf-8") as f:
            f.write(render_site(self.port, upstream_port))
        tmp = {k: os.path.join(self.dir, k) for k in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
        # As root, nginx's workers would switch to `nobody`, which cannot write the request-body
        # temp files under a 0700 test directory.
        user = "user root root;\n" if os.geteuid() == 0 else ""
        main = (f"{user}worker_processes 1;\npid {self.dir}/nginx.pid;\n"
                f"error_log {self.error_log} info;\n"
                "events { worker_connections 512; }\n"
                "http {\n"
                "    default_type application/octet-stream;\n"
                f"    access_log {self.dir}/access.log;\n"
                f"    client_body_temp_path {tmp['body']};\n"
                f"    proxy_temp_path {tmp['proxy']};\n"
                f"    fastcgi_temp_path {tmp['fastcgi']};\n"
                f"    uwsgi_temp_path {tmp['uwsgi']};\n"
                f"    scgi_temp_path {tmp['scgi']};\n"
                f"    include {self.dir}/dais.conf;\n"
                "}\n")
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(main)
        base = [NGINX, "-p", self.dir + "/", "-c", self.conf, "-e", self.error_log]
        check = subprocess.run(base + ["-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}"
        self.log = open(os.path.join(self.dir, "nginx.out"), "ab")
        self.p = subprocess.Popen(base + ["-g", "daemon off;"], stdout=self.log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(self._listening, 10, what="nginx to listen")
        except BaseException:
            self.stop()
            raise

    def _listening(self):
        if self.p.poll() is not None:
            pytest.fail(f"nginx exited with {self.p.returncode}:\n{self.tail()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def tail(self, n=30):
        try:
            with open(self.error_log, encoding="utf-8", errors="replace") as f:
                return "\n".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        """Fast shutdown (SIGTERM: the master stops its workers), then SIGKILL to the group."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)  # workers left behind, if any
        except (ProcessLookupError, PermissionError):
            pass
        if self.p.poll() is None:
            self.p.wait(5)
        self.log.close()


# ---- the cluster behind it -------------------------------------------------------------------

class Stack:
    def __init__(self, cluster, nginx, stories_model, slow_model):
        self.cluster = cluster
        self.nginx = nginx
        self.stories_model = stories_model
        self.slow_model = slow_model

    def via_nginx(self, method, path, body=None, headers=None, timeout=60.0):
        return http_request(self.nginx.port, method, path, body, headers, timeout)

    def direct(self, method, path, body=None, headers=None, timeout=60.0):
        return http_request(self.cluster.http_port, method, path, body, headers, timeout)

    def worker_metric(self, wid, name, labels=""):
        """The value of one sample of worker `wid`'s /metrics; fails the test when absent."""
        args = self.cluster.workers[wid].args
        port = int(args[args.index("--metrics-port") + 1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        for line in text.splitlines():
            if line.startswith(f"{name}{labels} "):
                return float(line.split()[-1])
        pytest.fail(f"worker {wid} exports no {name}{labels}")

    def logs(self):
        return f"{self.cluster.logs()}\n---- nginx error.log ----\n{self.nginx.tail()}"


def synth_slow_model(path):
    r = subprocess.run([DAIS_BIN, "model", "synth", *SLOW_SHAPE, "--type", "f32", "-t", "1",
                        "-o", path], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not os.path.exists(DAIS_BIN):
        pytest.fail(f"dais binary not found at {DAIS_BIN} (set DAIS_BIN)")
    if not os.path.exists(STORIES):
        pytest.fail(f"{STORIES} is missing (set DAIS_SHARED)")
    d = str(tmp_path_factory.mktemp("nginx"))
    slow = synth_slow_model(os.path.join(d, "slow.gguf"))
    cluster = Cluster(d)
    nginx = None
    try:
        cluster.start_master("--body-limit", "64k")
        cluster.start_worker("w1")
        cluster.start_worker("w2", model=slow)
        nginx = Nginx(cluster.http_port, os.path.join(d, "nginx"))
        names = {w["id"]: w["capabilities"]["model"]["name"]
                 for w in cluster.cluster_view()["workers"]}
        assert names["w1"] != names["w2"], names
        yield Stack(cluster, nginx, names["w1"], names["w2"])
    finally:
        if nginx is not None:
            nginx.stop()
        cluster.stop()


@pytest.fixture(autouse=True)
def logs_on_failure(request):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed and "stack" in request.fixturenames:
        print(request.getfixturevalue("stack").logs())


def error_body(r):
    assert r.header("Content-Type").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
    return body["error"]


# ---- answers ---------------------------------------------------------------------------------

def test_greedy_answer_through_nginx_is_the_reference(stack):
    body = {"model": stack.stories_model, "prompt": "Once upon a time", "max_tokens": 60,
            "temperature": 0}
    r = stack.via_nginx("POST", "/api/inference", body)
    assert r.status == 200, r
    out = r.json()
    assert out["text"] == reference_text(64)
    assert out["finish_reason"] == "length" and out["usage"]["completion_tokens"] == 60
    assert out["worker"] == "w1"
    # What the master says about the response reaches the client: every header it sends
    # directly (except hop-by-hop ones nginx rewrites) is there through nginx too.
    d = stack.direct("POST", "/api/inference", body)
    hop = {"connection", "keep-alive", "transfer-encoding", "date", "server", "content-length"}
    direct_names = {k.lower() for k, _ in d.headers} - hop
    proxied_names = {k.lower() for k, _ in r.headers}
    assert direct_names <= proxied_names, (direct_names, proxied_names)


def test_keep_alive_client_connection_through_nginx(stack):
    conn = http.client.HTTPConnection("127.0.0.1", stack.nginx.port, timeout=30)
    try:
        for i in range(10):
            conn.request("POST", "/api/inference",
                         body=json.dumps({"model": stack.stories_model, "prompt": "Hi",
                                          "max_tokens": 2, "seed": i}),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200 and json.loads(r.read())["usage"]["completion_tokens"] >= 1
    finally:
        conn.close()


def test_stream_through_nginx_is_the_reference(stack):
    r = stack.via_nginx("POST", "/api/inference",
                        {"model": stack.stories_model, "prompt": "Once upon a time",
                         "max_tokens": 60, "temperature": 0, "stream": True})
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("text/event-stream")
    events = parse_sse(r.body)
    tokens = [d["text"] for e, d in events if e == "token"]
    assert len(tokens) >= 10
    assert "".join(tokens) == reference_text(64)
    last, done = events[-1]
    assert last == "done" and done["finish_reason"] == "length"
    assert done["usage"]["completion_tokens"] == 60


def test_stream_arrives_incrementally_through_nginx(stack):
    """Each event is forwarded as it is generated: the first token event arrives well before
    the final event (buffered output would arrive all at once at the end)."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.nginx.port, timeout=60)
    try:
        conn.request("POST", "/api/inference",
                     body=json.dumps({"model": stack.slow_model, "prompt": "Once upon a time",
                                      "max_tokens": 300, "temperature": 0, "stream": True}),
                     # as browsers and HTTP client libraries send it: compressing the stream
                     # would hold events back in the compressor
                     headers={"Content-Type": "application/json",
                              "Accept-Encoding": "gzip, deflate"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type").startswith("text/event-stream")
        assert resp.getheader("Content-Length") is None
        assert resp.getheader("Content-Encoding") is None
        t0 = time.monotonic()
        arrivals = []  # (seconds since the head, event name)
        while True:
            line = resp.fp.readline()
            if not line:
                break
            if line.startswith(b"event:"):
                arrivals.append((time.monotonic() - t0, line[6:].strip().decode()))
                if arrivals[-1][1] == "done":
                    break
    finally:
        conn.close()
    tokens = [t for t, e in arrivals if e == "token"]
    assert arrivals and arrivals[-1][1] == "done", arrivals[-3:]
    # (Byte-level pieces of a multi-byte character are held back until the character is whole,
    # so there are fewer events than tokens.)
    assert len(tokens) >= 20, arrivals
    t_first, t_last = tokens[0], arrivals[-1][0]
    assert t_first < 0.5 * t_last, arrivals
    # and the events in between are spread out, not delivered in one burst at the end
    assert tokens[len(tokens) // 2] < 0.9 * t_last, arrivals


# ---- errors ----------------------------------------------------------------------------------

ERROR_CASES = [
    # (id, method, path, body, status)
    ("malformed-json", "POST", "/api/inference", '{"prompt": "a",\n  "max_tokens": 5,,}', 400),
    ("bad-field", "POST", "/api/inference", {"prompt": "a", "temperature": -1}, 400),
    ("unknown-path", "GET", "/api/nothing", None, 404),
    ("unknown-model", "POST", "/api/inference", {"model": "gpt-17", "prompt": "a"}, None),
    ("wrong-method", "GET", "/api/inference", None, 405),
    ("over-master-limit", "POST", "/api/inference", {"prompt": "x" * 70000}, 413),
]


@pytest.mark.parametrize("method,path,body,status", [c[1:] for c in ERROR_CASES],
                         ids=[c[0] for c in ERROR_CASES])
def test_master_errors_pass_through_unchanged(stack, method, path, body, status):
    direct = stack.direct(method, path, body)
    proxied = stack.via_nginx(method, path, body)
    if status is not None:
        assert direct.status == status, direct
    assert direct.status >= 400
    assert proxied.status == direct.status, (proxied, direct)
    assert error_body(proxied) == error_body(direct)
    for name in ("Allow", "Retry-After"):
        assert proxied.header(name) == direct.header(name)


def test_body_over_the_proxy_limit_is_json_413(stack):
    r = stack.via_nginx("POST", "/api/inference", {"prompt": "x" * (3 << 20)})
    assert r.status == 413
    assert error_body(r)["code"] == "body_too_large"


def test_no_worker_503_with_retry_after_passes_through(cluster, tmp_path):
    cluster.start_master()
    nginx = Nginx(cluster.http_port, str(tmp_path / "nginx"))
    try:
        direct = cluster.infer(max_tokens=2)
        r = http_request(nginx.port, "POST", "/api/inference", {"prompt": "a", "max_tokens": 2})
    finally:
        nginx.stop()
    assert direct.status == 503
    assert r.status == 503, r
    assert int(r.header("Retry-After")) >= 1
    assert r.header("Retry-After") == direct.header("Retry-After")
    assert error_body(r) == error_body(direct)
    assert error_body(r)["code"] == "no_worker"


def test_unreachable_master_is_json_502(tmp_path):
    nginx = Nginx(free_port(), str(tmp_path / "nginx"))  # nothing listens there
    try:
        r = http_request(nginx.port, "POST", "/api/inference", {"prompt": "a"})
    finally:
        nginx.stop()
    assert r.status == 502
    assert error_body(r)["code"] == "master_unavailable"
    assert int(r.header("Retry-After")) >= 1


# ---- client disconnect -----------------------------------------------------------------------

def test_client_disconnect_through_nginx_cancels_on_the_worker(stack):
    c = stack.cluster
    name = "dais_worker_requests_total"
    ok_before = stack.worker_metric("w2", name, '{result="ok"}')
    cancelled_before = stack.worker_metric("w2", name, '{result="cancelled"}')

    # A generation of ~2000 tokens (seconds on the slow model); read one event, then hang up.
    body = json.dumps({"model": stack.slow_model, "prompt": "Once upon a time",
                       "max_tokens": 2000, "temperature": 0, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", stack.nginx.port), timeout=10)
    try:
        s.sendall(b"POST /api/inference HTTP/1.1\r\nHost: dais\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        data = b""
        deadline = time.monotonic() + 10
        while b"event: token" not in data and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"event: token" in data, data[:300]
        assert c.cluster_view()["requests"]["in_flight"] == 1
    finally:
        s.close()

    # nginx closes its upstream connection, the master drops the request and sends CANCEL,
    # and the worker frees the sequence: counted as cancelled, not as completed.
    wait_for(lambda: c.cluster_view()["requests"]["in_flight"] == 0, 5,
             what="the request to leave the master")
    wait_for(lambda: stack.worker_metric("w2", name, '{result="cancelled"}')
             == cancelled_before + 1, 5, what="the worker to count the request as cancelled")
    wait_for(lambda: stack.worker_metric("w2", "dais_worker_active_sequences") == 0, 5,
             what="the worker to have no active sequence")
    assert stack.worker_metric("w2", name, '{result="ok"}') == ok_before
