"""The HTTP API's contract, with real processes: every bad input gets its status and a JSON
error body; keep-alive connections; a client that hangs up cancels its work."""

import http.client
import json
import socket
import time

import pytest

from conftest import wait_for


def error_of(r):
    body = r.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    return body["error"]


@pytest.fixture
def served(cluster, stories):
    cluster.start_master("--body-limit", "64k", "--max-tokens-limit", "1000")
    cluster.start_worker("w1")
    return cluster


def test_malformed_json_names_line_and_column(served):
    r = served.request("POST", "/api/inference", '{"prompt": "a",\n  "max_tokens": 5,,}')
    assert r.status == 400
    e = error_of(r)
    assert e["code"] == "invalid_json"
    assert e["line"] == 2 and e["column"] > 0
    assert r.header("Content-Type") == "application/json"


@pytest.mark.parametrize("body,field", [
    ({"prompt": 5}, "prompt"),
    ({}, "prompt"),
    ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "a", "max_tokens": 1001}, "max_tokens"),
    ({"prompt": "a", "max_tokens": "8"}, "max_tokens"),
    ({"prompt": "a", "temperature": -1}, "temperature"),
    ({"prompt": "a", "top_k": 1.5}, "top_k"),
    ({"prompt": "a", "top_p": 0}, "top_p"),
    ({"prompt": "a", "min_p": 1.5}, "min_p"),
    ({"prompt": "a", "repeat_penalty": 0}, "repeat_penalty"),
    ({"prompt": "a", "seed": -3}, "seed"),
    ({"prompt": "a", "stop": [1]}, "stop"),
    ({"prompt": "a", "stream": "yes"}, "stream"),
    ({"prompt": "a", "n": 2}, "n"),
])
def test_wrong_type_or_range_names_the_field(served, body, field):
    r = served.request("POST", "/api/inference", body)
    assert r.status == 400
    e = error_of(r)
    assert e["field"] == field
    assert field in e["message"]


def test_body_over_the_limit_is_413(served):
    r = served.request("POST", "/api/inference", {"prompt": "x" * 70000})
    assert r.status == 413
    assert error_of(r)["code"] == "body_too_large"
    # chunked bodies are counted as they arrive
    conn = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=10)
    conn.putrequest("POST", "/api/inference")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"x" * 16384
    try:
        for _ in range(5):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["error"]["code"] == "body_too_large"
    conn.close()


def test_unknown_path_and_wrong_method(served):
    r = served.get("/api/nothing")
    assert r.status == 404 and error_of(r)["code"] == "not_found"
    r = served.request("GET", "/api/inference")
    assert r.status == 405 and r.header("Allow") == "POST"
    assert error_of(r)["code"] == "method_not_allowed"
    r = served.request("POST", "/health", "{}")
    assert r.status == 405 and "GET" in r.header("Allow")
    r = served.request("PUT", "/api/cluster", "{}")
    assert r.status == 405


def test_unknown_model_is_404(served):
    r = served.infer(model="gpt-17", max_tokens=2)
    assert r.status in (404, 503)
    assert error_of(r)["code"] in ("model_not_found", "no_worker")


def test_malformed_request_head_gets_json(served):
    s = socket.create_connection(("127.0.0.1", served.http_port), timeout=5)
    s.sendall(b"POST /api/inference HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_keep_alive_serves_many_requests_on_one_connection(served):
    conn = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=30)
    for i in range(20):
        conn.request("POST", "/api/inference", body='{"prompt":"Hi","max_tokens":2,"seed":%d}' % i)
        r = conn.getresponse()
        body = json.loads(r.read())
        assert r.status == 200 and body["usage"]["completion_tokens"] >= 1
        conn.request("GET", "/health")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    conn.close()


def test_client_disconnect_cancels_the_work(cluster, slow_model):
    cluster.start_master()
    cluster.start_worker("w1", model=slow_model)
    # A long streamed generation (many seconds on this model); read one event, then hang up.
    s = socket.create_connection(("127.0.0.1", cluster.http_port), timeout=30)
    # Greedy, so that it cannot end early (this model never emits EOS from "hello" in 2000).
    body = b'{"prompt":"hello","max_tokens":2000,"temperature":0,"stream":true}'
    s.sendall(b"POST /api/inference HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    data = b""
    while b"event: token" not in data:
        data += s.recv(4096)

    def worker_active():
        m = cluster.worker_view("w1")["metrics"]
        return m is not None and m["load"]["active"] == 1
    wait_for(worker_active, 5, what="the worker to report the sequence")
    assert cluster.cluster_view()["requests"]["in_flight"] == 1
    t0 = time.monotonic()
    s.close()
    # The master forgets it at once and the worker frees the slot (CANCEL), long before the
    # 2000 tokens could have been generated (7 s on an idle machine).
    wait_for(lambda: cluster.cluster_view()["requests"]["in_flight"] == 0, 5,
             what="the request to leave the master")

    def worker_idle():
        m = cluster.worker_view("w1")["metrics"]
        return m["load"]["active"] == 0 and m["load"]["queue_depth"] == 0
    wait_for(worker_idle, 2, what="the worker to report no active sequence")
    assert time.monotonic() - t0 < 2
    # The worker is free for the next request.
    assert cluster.infer("hello", max_tokens=2).status == 200


def test_no_worker_is_503_with_retry_after(cluster):
    cluster.start_master()
    r = cluster.infer(max_tokens=2)
    assert r.status == 503
    assert int(r.header("Retry-After")) >= 1
    assert error_of(r)["code"] == "no_worker"
    r = cluster.get("/ready")
    assert r.status == 503 and r.json()["ready"] is False


def test_health_and_cluster_views(served):
    h = served.get("/health")
    assert h.status == 200 and h.json()["status"] == "ok"
    ready = served.get("/ready").json()
    assert ready["ready"] is True and ready["models"][0]["active_workers"] == 1
    view = served.cluster_view()
    assert view["cluster_state"] == "ok"
    assert view["worker_states"]["active"] == 1
    w = view["workers"][0]
    for key in ("id", "state", "address", "capabilities", "metrics", "inflight", "rtt_ms"):
        assert key in w
    caps = w["capabilities"]
    for key in ("cores", "threads", "memory_total", "simd", "model", "n_ctx", "slots", "batch"):
        assert key in caps
    assert time.time() - w["registered_at"] < 600
