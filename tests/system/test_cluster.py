"""The cluster core with real processes: registration, heartbeats, routing, exact output.

A master and `dais worker` processes on loopback serving stories260K (shared/models).
"""

import concurrent.futures
import http.client
import socket
import threading
import time

from conftest import HB_MS, parse_sse, reference_text, wait_for


def test_registration_and_wrong_token_rejected(cluster, stories):
    # stories260K's GGUF names its model "llama" (general.name), which workers advertise.
    cluster.start_master("--model", "llama")
    cluster.start_worker("w1")
    view = cluster.cluster_view()
    (w,) = [w for w in view["workers"] if w["id"] == "w1"]
    assert w["state"] == "active"
    assert w["capabilities"]["model"]["name"] == "llama"
    assert w["capabilities"]["model"]["n_layers"] == 5
    assert w["capabilities"]["slots"] >= 1
    assert len(w["capabilities"]["model"]["hash"]) == 64
    assert view["registrations"]["accepted"] == 1
    assert cluster.get("/ready").status == 200

    bad = cluster.start_worker("intruder", token="not-the-token", wait=False)
    wait_for(lambda: cluster.cluster_view()["registrations"]["bad_token"] >= 1, 15,
             what="the bad-token registration to be counted")
    # A permanent rejection: the worker gives up and exits with status 1 (docs/protocol.md).
    wait_for(lambda: not bad.alive(), 15, what="the rejected worker to exit")
    assert bad.p.returncode == 1
    assert cluster.state("intruder") is None


def test_unserved_model_rejected(cluster, stories):
    cluster.start_master("--model", "some-other-model")
    w = cluster.start_worker("w1", wait=False)
    wait_for(lambda: cluster.cluster_view()["registrations"]["unknown_model"] >= 1, 15,
             what="the unknown-model rejection")
    wait_for(lambda: not w.alive(), 15, what="the rejected worker to exit")
    assert cluster.get("/ready").status == 503


def test_heartbeats_both_ways_with_metrics(cluster, stories):
    cluster.start_master()
    cluster.start_worker("w1")
    first = cluster.worker_view("w1")
    time.sleep(5 * HB_MS / 1000)
    w = cluster.worker_view("w1")
    assert w["heartbeats_answered"] >= first["heartbeats_answered"] + 3
    assert w["heartbeats_sent"] >= w["heartbeats_answered"]
    assert w["last_heard_ms_ago"] < 3 * HB_MS
    m = w["metrics"]
    assert m is not None and m["health"] == "ok"
    assert m["system"]["mem_total"] > 0
    assert 0 <= m["system"]["cpu_percent"] <= 100
    assert m["system"]["process_rss"] > 0
    assert m["load"]["slots"] == w["capabilities"]["slots"]
    assert m["age_ms"] < 3 * HB_MS
    assert w["rtt_ms"] >= 0
    # The master's own metrics count them too.
    conn = http.client.HTTPConnection("127.0.0.1", cluster.metrics_port, timeout=5)
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    answered = [line for line in body.splitlines()
                if line.startswith("dais_heartbeats_answered_total ")]
    assert answered and float(answered[0].split()[1]) >= 3
    assert 'dais_workers{state="active"} 1' in body


def test_greedy_output_is_the_reference(cluster, stories):
    cluster.start_master()
    cluster.start_worker("w1")
    r = cluster.infer("Once upon a time", max_tokens=60, temperature=0)
    assert r.status == 200, r
    out = r.json()
    assert out["text"] == reference_text(64)
    assert out["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 60
    assert out["usage"]["prompt_tokens"] == 5
    assert out["worker"] == "w1"
    t = out["timings"]
    assert 0 <= t["queue_ms"] <= t["ttft_ms"] <= t["total_ms"]
    r = cluster.infer("Once upon a time", max_tokens=252, temperature=0)
    assert r.json()["text"] == reference_text(256)


def test_streaming_matches_the_plain_answer(cluster, stories):
    cluster.start_master()
    cluster.start_worker("w1")
    plain = cluster.infer("Once upon a time", max_tokens=40, temperature=0).json()
    r = cluster.infer("Once upon a time", max_tokens=40, temperature=0, stream=True)
    assert r.status == 200
    assert r.header("Content-Type").startswith("text/event-stream")
    events = parse_sse(r.body)
    tokens = [d["text"] for e, d in events if e == "token"]
    assert len(tokens) >= 10  # one event per piece as it is generated
    assert "".join(tokens) == plain["text"]
    last_event, done = events[-1]
    assert last_event == "done"
    assert done["finish_reason"] == "length"
    assert done["usage"]["completion_tokens"] == 40
    assert done["worker"] == "w1"
    assert "ttft_ms" in done["timings"]


def test_streaming_arrives_incrementally(cluster, stories):
    """The first event reaches the client long before the generation ends."""
    cluster.start_master()
    cluster.start_worker("w1")
    body = b'{"prompt":"Once upon a time","max_tokens":400,"temperature":0,"stream":true}'
    s = socket.create_connection(("127.0.0.1", cluster.http_port), timeout=30)
    s.sendall(b"POST /api/inference HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    t0 = time.monotonic()
    data = b""
    t_first = None
    while b"event: done" not in data or not data.endswith(b"0\r\n\r\n"):
        chunk = s.recv(65536)
        assert chunk, data[-200:]
        data += chunk
        if t_first is None and b"event: token" in data:
            t_first = time.monotonic() - t0
    t_all = time.monotonic() - t0
    s.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert b"Transfer-Encoding: chunked" in data
    # Buffered output would arrive all at once at the end.
    assert t_first < 0.5 * t_all, (t_first, t_all)


def test_many_concurrent_clients_all_complete(cluster, stories):
    cluster.start_master()
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    n_clients, per_client = 200, 2
    barrier = threading.Barrier(n_clients)

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=120)
        statuses = []
        barrier.wait()
        for k in range(per_client):
            conn.request("POST", "/api/inference",
                         body='{"prompt":"Once upon a time","max_tokens":4,"seed":%d}' % (i + k))
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
        conn.close()
        return statuses

    with concurrent.futures.ThreadPoolExecutor(n_clients) as ex:
        results = list(ex.map(client, range(n_clients)))
    flat = [s for r in results for s in r]
    assert flat.count(200) == n_clients * per_client, sorted(set(flat))
    view = cluster.cluster_view()
    served = {w["id"]: w["requests_total"] for w in view["workers"]}
    assert served["w1"] > 0 and served["w2"] > 0  # both workers took a share
    assert view["requests"]["in_flight"] == 0 and view["requests"]["queued"] == 0
