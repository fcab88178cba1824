"""Observability with real parts: real dais processes on loopback, a real Prometheus server
(Debian's package) scraping them every second, promtool validating every node's /metrics,
and a local OTLP/HTTP receiver (http.server) collecting the spans the nodes export.

Tests that need a worker process start one from the shared stories260K model; they are
skipped (with the reason) while the binary has no `dais worker` command.
"""
import http.server
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DAIS_BIN = os.environ.get("DAIS_BIN", str(ROOT / "build" / "release" / "dais"))
SHARED = pathlib.Path(os.environ.get("DAIS_SHARED", str(ROOT.parent / "shared")))
MODEL = SHARED / "models" / "stories260K.gguf"
DASHBOARD = ROOT / "deploy" / "grafana" / "dais.json"
TOKEN = "observability-test-token-0123456789"
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"


# ---- helpers --------------------------------------------------------------------------------

def free_ports(n):
    """n distinct ports free for both TCP and UDP on 127.0.0.1 right now."""
    socks, ports = [], []
    while len(ports) < n:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            t.close()
            u.close()
            continue
        socks += [t, u]
        ports.append(port)
    for s in socks:
        s.close()
    return ports


def request(method, url, body=None, headers=None, timeout=60):
    """(status, headers, body bytes) of one HTTP request; HTTP errors are answers too."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wait_until(fn, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (OSError, ValueError) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def scrape(port):
    status, headers, body = request("GET", f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return body.decode()


def samples(text):
    """{(name, frozenset(labels)): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$', line)
        assert m, f"unparsable sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                      m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(text, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples(text).items() if n == name and want <= set(ls))


def promtool_check(text):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/setup.sh installs Debian's prometheus package"
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, f"promtool check metrics failed:\n{r.stdout}{r.stderr}"


def declared_families(text):
    return set(re.findall(r"^# TYPE (\S+) \S+$", text, re.M))


def dashboard_metrics():
    dash = json.loads(DASHBOARD.read_text())
    names = set()

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                names.update(re.findall(r"\b((?:dais|process)_[a-z0-9_]+)\b", t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    return names


def family_of(metric, families):
    if metric in families:
        return metric
    for suffix in ("_bucket", "_sum", "_count"):
        if metric.endswith(suffix) and metric[: -len(suffix)] in families:
            return metric[: -len(suffix)]
    return None


# ---- processes ------------------------------------------------------------------------------

class Proc:
    def __init__(self, name, argv, env, logdir):
        self.name = name
        self.log = open(logdir / f"{name}.log", "w+")
        self.p = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def alive(self):
        return self.p.poll() is None

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        p.stop()


def node_env(**extra):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("DAIS_") and k not in ("DAIS_BIN", "DAIS_SHARED"):
            del env[k]
    env["DAIS_CLUSTER_TOKEN"] = TOKEN
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


class Master:
    def __init__(self, procs, tmp_path, trace_endpoint=None):
        assert pathlib.Path(DAIS_BIN).exists(), f"no dais binary at {DAIS_BIN} (set DAIS_BIN)"
        self.http, self.cluster, self.hb, self.metrics = free_ports(4)
        argv = [DAIS_BIN, "master", "--addr", "127.0.0.1", "--http-port", str(self.http),
                "--cluster-port", str(self.cluster), "--heartbeat-port", str(self.hb),
                "--metrics-port", str(self.metrics), "--heartbeat-interval", "1s"]
        if trace_endpoint:
            argv += ["--otlp-endpoint", trace_endpoint]
        self.proc = Proc("master", argv, node_env(), tmp_path)
        procs.append(self.proc)
        wait_until(lambda: self.proc.alive() and scrape(self.metrics), 20, "master /metrics")

    def url(self, path):
        return f"http://127.0.0.1:{self.http}{path}"


def worker_supported():
    if not pathlib.Path(DAIS_BIN).exists():
        return False
    r = subprocess.run([DAIS_BIN, "worker", "--help"], capture_output=True, text=True,
                       timeout=30)
    return r.returncode == 0 and "worker" in (r.stdout + r.stderr)


needs_worker = pytest.mark.skipif(not worker_supported(),
                                  reason="this dais binary has no `dais worker` command yet")


class Worker:
    def __init__(self, procs, tmp_path, master, name, trace_endpoint=None):
        assert MODEL.exists(), f"missing test model {MODEL}"
        self.hb, self.metrics = free_ports(2)
        argv = [DAIS_BIN, "worker", "--model", str(MODEL), "--master",
                f"127.0.0.1:{master.cluster}", "--id", name, "--addr", "127.0.0.1",
                "--heartbeat-port", str(self.hb), "--metrics-port", str(self.metrics),
                "--threads", "1"]
        # the older variable name (an alias of DAIS_OTLP_ENDPOINT) keeps working
        self.proc = Proc(name, argv, node_env(DAIS_TRACE_ENDPOINT=trace_endpoint), tmp_path)
        procs.append(self.proc)
        wait_until(lambda: self.proc.alive() and scrape(self.metrics), 30, f"{name} /metrics")


def wait_ready(master, n_workers):
    def ready():
        status, _, body = request("GET", master.url("/api/cluster"), timeout=10)
        doc = json.loads(body)
        active = doc.get("worker_states", {}).get("active", 0)
        return status == 200 and doc.get("ready") and active >= n_workers
    wait_until(ready, 60, f"{n_workers} active worker(s)")


def infer(master, headers=None, max_tokens=8, model=None):
    """POST /api/inference. Naming a model makes a master without workers route the request
    (and trace it) before answering 503; without one it answers 503 at once."""
    body = {"prompt": "Once upon a time", "max_tokens": max_tokens}
    if model is not None:
        body["model"] = model
    return request("POST", master.url("/api/inference"), body, headers=headers, timeout=120)


# ---- OTLP receiver --------------------------------------------------------------------------

class OtlpReceiver:
    """POST /v1/traces collector: keeps every ExportTraceServiceRequest it receives."""

    def __init__(self):
        self.docs = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                ok = self.path == "/v1/traces" and \
                    self.headers.get("Content-Type", "").startswith("application/json")
                if ok:
                    with outer.lock:
                        outer.docs.append(json.loads(body))
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self):
        """Every span received, each with its resource's service.name added as 'service'."""
        out = []
        with self.lock:
            docs = list(self.docs)
        for doc in docs:
            for rs in doc["resourceSpans"]:
                attrs = {a["key"]: a["value"].get("stringValue")
                         for a in rs["resource"]["attributes"]}
                for ss in rs["scopeSpans"]:
                    for s in ss["spans"]:
                        out.append(dict(s, service=attrs.get("service.name")))
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = OtlpReceiver()
    yield r
    r.close()


def check_span_shape(s):
    assert re.fullmatch(r"[0-9a-f]{32}", s["traceId"]) and s["traceId"] != "0" * 32
    assert re.fullmatch(r"[0-9a-f]{16}", s["spanId"]) and s["spanId"] != "0" * 16
    if "parentSpanId" in s:
        assert re.fullmatch(r"[0-9a-f]{16}", s["parentSpanId"])
    start, end = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
    assert 1_500_000_000 * 10**9 < start <= end, s
    assert end - start < 300 * 10**9, s  # sensible: under the test's own time budget
    assert s["kind"] in (1, 2, 3, 4, 5)
    assert s["name"]


def span_attr(s, key):
    for a in s.get("attributes", []):
        if a["key"] == key:
            v = a["value"]
            return v.get("stringValue", v.get("intValue"))
    return None


# ---- Prometheus -----------------------------------------------------------------------------

class Prometheus:
    def __init__(self, procs, tmp_path, targets):
        binary = shutil.which("prometheus")
        assert binary, "prometheus missing: scripts/setup.sh installs Debian's package"
        (self.port,) = free_ports(1)
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "dais", "static_configs": [
                {"targets": [f"127.0.0.1:{p}"], "labels": {"role": role}}
                for role, p in targets]}],
        }))
        argv = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        self.proc = Proc("prometheus", argv, dict(os.environ), tmp_path)
        procs.append(self.proc)
        wait_until(lambda: self.proc.alive() and
                   request("GET", f"http://127.0.0.1:{self.port}/-/ready", timeout=5)[0] == 200,
                   60, "prometheus ready")

    def query(self, q):
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        status, _, body = request("GET", url, timeout=10)
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", doc
        return doc["data"]["result"]

    def wait_value(self, q, pred, what, timeout=30, count=None):
        """Waits until `q` has results (exactly `count` series when given), all matching."""
        def check():
            res = self.query(q)
            if not res or (count is not None and len(res) != count):
                return None
            return res if all(pred(float(r["value"][1])) for r in res) else None
        return wait_until(check, timeout, what)


# ---- tests: the master alone ---------------------------------------------------------------

def test_master_metrics_valid(procs, tmp_path):
    m = Master(procs, tmp_path)
    status, _, _ = infer(m)  # no worker: answered 503, and counted
    assert status == 503
    text = scrape(m.metrics)
    promtool_check(text)
    names = {n for n, _ in samples(text)}
    assert "process_cpu_seconds_total" in names  # may still be 0: 10 ms clock ticks
    for name in ("process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds"):
        assert value(text, name) > 0, name
    build = [ls for (n, ls) in samples(text) if n == "dais_build_info"]
    assert len(build) == 1 and {"version", "commit", "simd"} <= {k for k, _ in build[0]}
    assert value(text, "dais_http_requests_total", route="/api/inference", code="503") == 1
    start = value(text, "process_start_time_seconds")
    assert abs(start - time.time()) < 120
    # not the metrics path / method: 404 / 405
    assert request("GET", f"http://127.0.0.1:{m.metrics}/other")[0] == 404
    assert request("POST", f"http://127.0.0.1:{m.metrics}/metrics", b"x")[0] == 405


def test_prometheus_scrapes_master(procs, tmp_path):
    m = Master(procs, tmp_path)
    prom = Prometheus(procs, tmp_path, [("master", m.metrics)])
    prom.wait_value('up{job="dais"}', lambda v: v == 1, "master target up")
    res = prom.wait_value("dais_build_info", lambda v: v == 1, "dais_build_info")
    assert res[0]["metric"]["role"] == "master"
    for _ in range(3):
        assert infer(m)[0] == 503
    prom.wait_value('dais_http_requests_total{route="/api/inference",code="503"}',
                    lambda v: v == 3, "three 503 answers counted")
    prom.wait_value("process_resident_memory_bytes", lambda v: v > 1e6, "resident memory")


def test_master_span_continues_client_trace(procs, tmp_path, receiver):
    m = Master(procs, tmp_path, trace_endpoint=receiver.endpoint)
    assert infer(m, headers={"traceparent": TRACEPARENT}, model="stories260K")[0] == 503
    spans = wait_until(lambda: [s for s in receiver.spans() if s["traceId"] == CLIENT_TRACE],
                       15, "the master's span")
    root = [s for s in spans if s.get("parentSpanId") == CLIENT_SPAN]
    assert len(root) == 1, spans
    r = root[0]
    check_span_shape(r)
    assert r["kind"] == 2  # SERVER
    assert r["service"] and "master" in r["service"]
    assert r["status"]["code"] == 2  # ERROR: no worker
    # without a traceparent, or with a malformed one, each request starts a new trace
    assert infer(m, model="stories260K")[0] == 503
    assert infer(m, headers={"traceparent": "00-zz-bad-01"}, model="stories260K")[0] == 503

    def new_roots():
        roots = [s for s in receiver.spans()
                 if s["traceId"] != CLIENT_TRACE and "parentSpanId" not in s]
        return roots if len({s["traceId"] for s in roots}) == 2 else None
    for s in wait_until(new_roots, 15, "two new traces"):
        check_span_shape(s)
        assert s["name"] == r["name"]


def test_collector_down_master(procs, tmp_path):
    (dead,) = free_ports(1)
    m = Master(procs, tmp_path, trace_endpoint=f"http://127.0.0.1:{dead}")
    t0 = time.monotonic()
    for _ in range(5):
        assert infer(m, headers={"traceparent": TRACEPARENT}, model="stories260K")[0] == 503
    assert time.monotonic() - t0 < 10  # never waits for the collector
    wait_until(lambda: value(scrape(m.metrics), "dais_trace_spans_dropped_total") >= 5, 20,
               "dropped spans counted")


# ---- tests: a cluster (master + workers) -----------------------------------------------------

@needs_worker
def test_cluster_metrics_prometheus_and_dashboard(procs, tmp_path, receiver):
    # tracing on, so that the tracer's metrics (a dashboard panel) are registered too
    m = Master(procs, tmp_path, trace_endpoint=receiver.endpoint)
    workers = [Worker(procs, tmp_path, m, f"worker-{i}", trace_endpoint=receiver.endpoint)
               for i in (1, 2)]
    wait_ready(m, 2)
    for _ in range(3):
        status, _, body = infer(m)
        assert status == 200, body
    texts = {"master": scrape(m.metrics)}
    for w in workers:
        texts[w.proc.name] = scrape(w.metrics)
    for name, text in texts.items():
        promtool_check(text)
        assert value(text, "process_resident_memory_bytes") > 0, name
        assert any(n == "dais_build_info" for n, _ in samples(text)), name
    # every metric the dashboard queries is exported by some node
    families = set().union(*(declared_families(t) for t in texts.values()))
    missing = sorted(n for n in dashboard_metrics() if family_of(n, families) is None)
    assert not missing, f"dashboard metrics no node exports: {missing}"
    # the workers did the work
    assert sum(value(texts[w.proc.name], "dais_worker_decode_tokens_total")
               for w in workers) > 0

    prom = Prometheus(procs, tmp_path, [("master", m.metrics)] +
                      [("worker", w.metrics) for w in workers])
    up = prom.wait_value('up{job="dais"}', lambda v: v == 1, "every target up", count=3)
    assert sorted(r["metric"]["role"] for r in up) == ["master", "worker", "worker"]
    prom.wait_value('sum(dais_http_requests_total{route="/api/inference",code="200"})',
                    lambda v: v == 3, "three answered requests")
    prom.wait_value('sum(dais_worker_decode_tokens_total)', lambda v: v > 0, "decode tokens")
    prom.wait_value('dais_workers{state="active"}', lambda v: v == 2, "two active workers")
    prom.wait_value('dais_request_duration_seconds_count', lambda v: v == 3,
                    "request duration histogram")


@needs_worker
def test_trace_through_master_and_worker(procs, tmp_path, receiver):
    m = Master(procs, tmp_path, trace_endpoint=receiver.endpoint)
    Worker(procs, tmp_path, m, "worker-1", trace_endpoint=receiver.endpoint)
    wait_ready(m, 1)
    status, headers, body = infer(m, headers={"traceparent": TRACEPARENT})
    assert status == 200, body
    # the trace id comes back to the client
    returned = " ".join(v for k, v in headers.items()
                        if k.lower() in ("traceresponse", "traceparent", "x-trace-id"))
    assert CLIENT_TRACE in returned, dict(headers)

    def complete():
        spans = [s for s in receiver.spans() if s["traceId"] == CLIENT_TRACE]
        services = {s["service"] for s in spans}
        return spans if len(services) >= 2 else None
    spans = wait_until(complete, 20, "spans from master and worker")
    time.sleep(2)  # let late batches arrive, then look at the whole trace
    spans = [s for s in receiver.spans() if s["traceId"] == CLIENT_TRACE]
    for s in spans:
        check_span_shape(s)
    by_id = {s["spanId"]: s for s in spans}
    assert len(by_id) == len(spans), "span ids must be unique"
    roots = [s for s in spans if s.get("parentSpanId") == CLIENT_SPAN]
    assert len(roots) == 1 and "master" in roots[0]["service"], roots
    root = roots[0]
    for s in spans:
        if s is root:
            continue
        parent = by_id.get(s.get("parentSpanId"))
        assert parent is not None, f"span {s['name']} has no parent in the trace"
        # a child lies within its parent (same machine, same clock; 5 ms slack)
        slack = 5_000_000
        assert int(s["startTimeUnixNano"]) >= int(parent["startTimeUnixNano"]) - slack, s
        assert int(s["endTimeUnixNano"]) <= int(parent["endTimeUnixNano"]) + slack, s
    worker_spans = [s for s in spans if "worker" in (s["service"] or "")]
    assert worker_spans, "no worker span"
    # the worker's top span hangs off a master span: the context crossed the envelope
    assert any(by_id[s["parentSpanId"]]["service"] == root["service"] for s in worker_spans)


@needs_worker
def test_collector_down_requests_succeed(procs, tmp_path):
    (dead,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{dead}"
    m = Master(procs, tmp_path, trace_endpoint=endpoint)
    w = Worker(procs, tmp_path, m, "worker-1", trace_endpoint=endpoint)
    wait_ready(m, 1)
    for _ in range(3):
        status, _, body = infer(m, headers={"traceparent": TRACEPARENT})
        assert status == 200, body
    wait_until(lambda: value(scrape(m.metrics), "dais_trace_spans_dropped_total") >= 3, 20,
               "master counts dropped spans")
    wait_until(lambda: value(scrape(w.metrics), "dais_trace_spans_dropped_total") >= 1, 20,
               "worker counts dropped spans")
