"""`dais run --metrics-port P`: the master serves /metrics on P and worker i on P+i (a free
port when P+i is taken), and the startup output lists every node's metrics URL (issue 5)."""

import re
import socket

from conftest import http_request
from test_cluster_run import Run


def free_base(n):
    """A port P with P..P+n-1 free on loopback (TCP) right now."""
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
        s.close()
        if base + n > 65535:
            continue
        held = []
        try:
            for p in range(base, base + n):
                t = socket.socket()
                t.bind(("127.0.0.1", p))
                held.append(t)
            return base
        except OSError:
            continue
        finally:
            for t in held:
                t.close()
    raise RuntimeError("no free port range")


def banner_urls(run):
    """{node: metrics port} from the startup output."""
    text = b""
    while b"Ctrl-C stops the cluster" not in text:
        line = run.p.stdout.readline()
        assert line, f"dais run output ended early:\n{text.decode()}"
        text += line
    urls = re.findall(r"http://127\.0\.0\.1:(\d+)/metrics \(([\w-]+)\)", text.decode())
    return {node: int(port) for port, node in urls}


def scrape(port):
    r = http_request(port, "GET", "/metrics", timeout=5)
    assert r.status == 200, (port, r.status)
    body = r.body.decode() if isinstance(r.body, bytes) else r.body
    assert "# TYPE dais_" in body and "process_resident_memory_bytes" in body, body[:400]
    return body


def test_run_metrics_port_serves_every_node(tmp_path, stories):
    base = free_base(3)
    run = Run(["-m", stories, "--workers", "2", "--threads", "1", "--metrics-port", str(base)],
              tmp_path)
    try:
        run.wait_ready()
        nodes = banner_urls(run)
        assert nodes == {"master": base, "worker-1": base + 1, "worker-2": base + 2}, nodes
        master = scrape(base)
        assert "dais_workers" in master
        for port in (base + 1, base + 2):
            scrape(port)
        # /api/cluster lists each worker's metrics address (NODE_DISCOVERY metrics_port);
        # /ready may precede the second worker's registration, so wait for both.
        import json
        import time
        deadline = time.time() + 20
        while True:
            view = json.loads(http_request(run.port, "GET", "/api/cluster", timeout=5).body)
            got = {w["id"]: w.get("metrics_address") for w in view["workers"]}
            if len(got) == 2 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert got == {"worker-1": f"127.0.0.1:{base + 1}",
                       "worker-2": f"127.0.0.1:{base + 2}"}, got
    finally:
        run.close()


def test_run_metrics_port_taken_gives_a_free_one(tmp_path, stories):
    base = free_base(3)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", base + 1))
    blocker.listen(1)
    run = Run(["-m", stories, "--workers", "2", "--threads", "1", "--metrics-port", str(base)],
              tmp_path)
    try:
        run.wait_ready()
        nodes = banner_urls(run)
        assert nodes["master"] == base and nodes["worker-2"] == base + 2, nodes
        assert nodes["worker-1"] not in (base, base + 1, base + 2, run.port), nodes
        for port in nodes.values():
            scrape(port)
    finally:
        run.close()
        blocker.close()
