#!/usr/bin/env python3
"""Request-level cost of observability (issue 5's overhead benchmark).

Starts a real cluster on loopback (one master, --workers workers on the stories260K model, or
the master alone with --no-worker) and measures request throughput with closed-loop clients
in three configurations, each for --seconds, median of --rounds (interleaved):

  off       tracing off, nobody scrapes /metrics
  tracing   every node exports spans (OTLP/HTTP JSON) to a local receiver
  scraping  tracing off, a scraper GETs every node's /metrics every 100 ms

and prints requests/s and the loss against `off` (target: under 3 %). With --no-worker each
request names a model no worker serves, so the master routes it, traces it and answers 503
at once: the cheapest request there is, where the relative cost of observability is largest.

  python3 bench/observability_overhead.py --bin build/release/dais [--no-worker]
"""
import argparse
import concurrent.futures
import multiprocessing
import http.client
import http.server
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOKEN = "observability-bench-token-0123456789"


def free_ports(n):
    socks, ports = [], []
    while len(ports) < n:
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", t.getsockname()[1]))
        except OSError:
            t.close()
            u.close()
            continue
        socks += [t, u]
        ports.append(t.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_http(url, timeout=60, ok=lambda body: True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if ok(r.read()):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {url}")


class Receiver:
    """A minimal OTLP/HTTP collector that accepts and counts."""

    def __init__(self):
        self.batches = 0

        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.batches += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Cluster:
    def __init__(self, args, trace_endpoint, logdir):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAIS_")}
        env["DAIS_CLUSTER_TOKEN"] = TOKEN
        if trace_endpoint:
            env["DAIS_TRACE_ENDPOINT"] = trace_endpoint
        self.http, cluster, hb, metrics = free_ports(4)
        self.metrics_ports = [metrics]
        self.procs = []
        log = open(logdir / "master.log", "a")
        self.procs.append(subprocess.Popen(
            [args.bin, "master", "--addr", "127.0.0.1", "--http-port", str(self.http),
             "--cluster-port", str(cluster), "--heartbeat-port", str(hb), "--metrics-port",
             str(metrics), "--log-level", "warn"], env=env, stdout=log, stderr=log))
        wait_http(f"http://127.0.0.1:{metrics}/metrics")
        for i in range(0 if args.no_worker else args.workers):
            whb, wm = free_ports(2)
            self.metrics_ports.append(wm)
            wlog = open(logdir / f"worker-{i + 1}.log", "a")
            self.procs.append(subprocess.Popen(
                [args.bin, "worker", "--model", args.model, "--master", f"127.0.0.1:{cluster}",
                 "--id", f"worker-{i + 1}", "--addr", "127.0.0.1", "--heartbeat-port", str(whb),
                 "--metrics-port", str(wm), "--threads", str(args.threads), "--log-level",
                 "warn"], env=env, stdout=wlog, stderr=wlog))
        if not args.no_worker:
            wait_http(f"http://127.0.0.1:{self.http}/api/cluster",
                      ok=lambda b: json.loads(b).get("worker_states", {}).get("active", 0)
                      >= args.workers)

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def client(port, body, stop_at, traced):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    n = 0
    headers = {"Content-Type": "application/json"}
    if traced:
        headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    while time.monotonic() < stop_at:
        conn.request("POST", "/api/inference", body, headers)
        r = conn.getresponse()
        r.read()
        if r.status not in (200, 503):
            raise RuntimeError(f"unexpected status {r.status}")
        n += 1
    conn.close()
    return n


def scraper(ports, stop):
    while not stop.is_set():
        for p in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5) as r:
                r.read()
        stop.wait(0.1)


def measure(args, mode, logdir):
    """Requests/s of one round in `mode` on a freshly started cluster."""
    recv = Receiver() if mode == "tracing" else None
    cluster = Cluster(args, recv.endpoint if recv else None, logdir)
    try:
        body = {"prompt": "Once upon a time", "max_tokens": args.max_tokens}
        if args.no_worker:
            body["model"] = "no-such-model"
        data = json.dumps(body).encode()
        # the scraper is its own process, so it does not take the clients' interpreter lock
        stop = multiprocessing.Event()
        scr = None
        if mode == "scraping":
            scr = multiprocessing.Process(target=scraper, args=(cluster.metrics_ports, stop))
            scr.start()
        t0 = time.monotonic()
        stop_at = t0 + args.seconds
        with concurrent.futures.ThreadPoolExecutor(args.clients) as ex:
            done = sum(ex.map(lambda _: client(cluster.http, data, stop_at, mode == "tracing"),
                              range(args.clients)))
        rate = done / (time.monotonic() - t0)
        stop.set()
        if scr:
            scr.join()
        if recv is not None and recv.batches == 0:
            raise RuntimeError("tracing mode: the receiver got no spans")
        return rate
    finally:
        cluster.stop()
        if recv:
            recv.server.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=str(ROOT / "build" / "release" / "dais"))
    ap.add_argument("--model", default=str(ROOT.parent / "shared" / "models" /
                                           "stories260K.gguf"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-worker", action="store_true")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    modes = ("off", "tracing", "scraping")
    rates = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as d:
        # rounds interleave the modes, so drift in machine load hits them alike
        for _ in range(args.rounds):
            for m in modes:
                rates[m].append(measure(args, m, pathlib.Path(d)))
    med = {m: statistics.median(r) for m, r in rates.items()}
    print(f"{'mode':10} {'req/s (median)':>15} {'vs off':>8}   rounds")
    for m in modes:
        loss = 100 * (med[m] - med["off"]) / med["off"]
        print(f"{m:10} {med[m]:15.1f} {loss:+7.1f}%   " +
              " ".join(f"{r:.1f}" for r in rates[m]))


if __name__ == "__main__":
    main()
