"""Graceful degradation at the master (issue 4): a full per-model queue answers 429 with
Retry-After, and a request past its deadline answers 504 — nothing waits forever. Real master
and worker processes on loopback; the slow synthetic model keeps requests in flight."""
import threading
import time

from conftest import wait_for


def test_full_queue_gives_429_with_retry_after(cluster, slow_model):
    cluster.start_master("--queue-limit", "1")
    cluster.start_worker("w1", "--slots", "1", "--queue", "0", model=slow_model)
    results = []

    def call():
        results.append(cluster.infer("hello", max_tokens=300, temperature=0, timeout=60))

    first = threading.Thread(target=call)
    first.start()
    wait_for(lambda: cluster.cluster_view()["requests"]["in_flight"] >= 1, 10,
             what="the first request running")
    second = threading.Thread(target=call)
    second.start()
    wait_for(lambda: cluster.cluster_view()["requests"]["queued"] >= 1, 10,
             what="the second request queued at the master")
    r = cluster.infer("hello", max_tokens=1, timeout=10)
    assert r.status == 429, (r.status, r.body)
    assert int(r.header("Retry-After")) >= 1
    assert r.json()["error"]["code"] == "overloaded"
    first.join(60)
    second.join(60)
    # The two that were admitted both complete.
    assert [x.status for x in results] == [200, 200], [x.body for x in results]


def test_request_deadline_gives_504_and_frees_the_worker(cluster, slow_model):
    cluster.start_master("--request-timeout", "1s")
    cluster.start_worker("w1", model=slow_model)
    t0 = time.monotonic()
    r = cluster.infer("hello", max_tokens=2000, temperature=0, timeout=30)
    elapsed = time.monotonic() - t0
    assert r.status == 504, (r.status, r.body)
    assert r.json()["error"]["code"] == "timeout"
    assert elapsed < 20, elapsed  # generous: the point is that it does not run to 2000 tokens
    # The worker was told to stop: nothing stays in flight, and it serves the next request.
    wait_for(lambda: cluster.cluster_view()["requests"]["in_flight"] == 0, 10,
             what="the timed-out request released")
    ok = cluster.infer("hello", max_tokens=2, temperature=0, timeout=30)
    assert ok.status == 200, ok.body
