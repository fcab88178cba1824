"""Pipeline sharding (spec step 7, docs/sharding.md): workers that hold only a layer range of
the model, a master that chains them into a pipeline and relays hidden states between them, and
the answer that must be exactly the whole model's. Real processes on loopback."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import DAIS_BIN, free_port, http_request, parse_sse, reference_text, wait_for


def start_pipeline(cluster, ranges, *extra, prefix="s", **kw):
    ids = []
    for i, rng in enumerate(ranges):
        wid = f"{prefix}{i}"
        cluster.start_worker(wid, "--layers", rng, *extra, **kw)
        ids.append(wid)
    return ids


def test_three_shards_give_the_whole_models_answer(cluster, stories):
    cluster.start_master()
    ids = start_pipeline(cluster, ["0:2", "2:3", "3:5"])
    cluster.wait_ready()
    view = {w["id"]: w for w in cluster.cluster_view()["workers"]}
    assert [(view[i]["capabilities"]["model"]["layer_first"], view[i]["capabilities"]["model"]["layer_last"]) for i in ids] == \
        [(0, 2), (2, 3), (3, 5)]
    r = cluster.infer("Once upon a time", max_tokens=60, temperature=0)
    assert r.status == 200, r.body
    out = r.json()
    assert out["text"] == reference_text(64)
    assert out["stages"] == ids and out["worker"] == "s2"
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 60, "total_tokens": 65}
    long = cluster.infer("Once upon a time", max_tokens=252, temperature=0).json()
    assert long["text"] == reference_text(256)
    # streamed: the same text, piece by piece
    r = cluster.infer("Once upon a time", max_tokens=60, temperature=0, stream=True)
    events = parse_sse(r.body)
    text = "".join(d["text"] for e, d in events if e == "token")
    assert text == reference_text(64)
    done = [d for e, d in events if e == "done"]
    assert done and done[0]["stages"] == ids
    metrics = http_request(cluster.metrics_port, "GET", "/metrics").body
    values = dict(line.rsplit(" ", 1) for line in metrics.splitlines()
                  if line.startswith(("dais_pipeline_attempts_total", "dais_shard_relays_total")))
    assert float(values["dais_pipeline_attempts_total"]) == 3
    # every request: the prompt chunk and each generated token go round all three stages
    assert float(values["dais_shard_relays_total"]) >= 3 * (60 + 252 + 60)


def test_concurrent_requests_share_the_pipeline(cluster, stories):
    cluster.start_master()
    start_pipeline(cluster, ["0:3", "3:5"], "--slots", "4")
    cluster.wait_ready()
    results = [None] * 8

    def one(i):
        results[i] = cluster.infer("Once upon a time", max_tokens=60, temperature=0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for r in results:
        assert r is not None and r.status == 200, r
        assert r.json()["text"] == reference_text(64)


def test_a_full_stage_queues_requests_instead_of_refusing(cluster, slow_model):
    """Stages with one slot and no worker queue: a second request waits in the master's queue
    until the pipeline is free, then runs (no 503), and both get the whole model's answer."""
    cluster.start_master()
    cluster.start_worker("w", model=slow_model)
    cluster.wait_ready()
    want = cluster.infer("hello", max_tokens=40, temperature=0, timeout=120).json()["text"]
    cluster.workers["w"].stop()
    for wid, rng in (("a", "0:4"), ("b", "4:8")):
        cluster.start_worker(wid, "--layers", rng, "--slots", "1", "--queue", "0",
                             model=slow_model)
    wait_for(lambda: cluster.state("w") in (None, "dead"), 30, what="whole worker gone")
    cluster.wait_ready()
    out = [None, None]

    def one(i):
        out[i] = cluster.infer("hello", max_tokens=40, temperature=0, timeout=120)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    for r in out:
        assert r is not None and r.status == 200, r
        assert r.json()["text"] == want and r.json()["stages"] == ["a", "b"]
    assert max(r.json()["timings"]["queue_ms"] for r in out) > 0


def test_an_incomplete_pipeline_is_not_ready(cluster, stories):
    cluster.start_master()
    start_pipeline(cluster, ["0:2", "3:5"])
    time.sleep(0.3)
    r = cluster.get("/ready")
    assert r.status == 503
    assert [m["ready"] for m in r.json()["models"]] == [False]
    # /api/cluster shows which layer ranges are covered, and by whom
    stages = cluster.cluster_view()["models"][0]["pipeline_stages"]
    assert stages == [{"layers": [0, 2], "workers": ["s0"]}, {"layers": [3, 5], "workers": ["s1"]}]
    r = cluster.infer("Once upon a time", max_tokens=4)
    assert r.status == 503 and r.header("Retry-After") is not None
    assert r.json()["error"]["code"] == "no_worker"
    cluster.start_worker("mid", "--layers", "2:3")
    cluster.wait_ready()
    r = cluster.infer("Once upon a time", max_tokens=60, temperature=0)
    assert r.status == 200 and r.json()["text"] == reference_text(64)
    assert r.json()["stages"] == ["s0", "mid", "s1"]
    stages = cluster.cluster_view()["models"][0]["pipeline_stages"]
    assert [s["layers"] for s in stages] == [[0, 2], [2, 3], [3, 5]]


def test_a_whole_model_worker_is_preferred(cluster, stories):
    cluster.start_master()
    start_pipeline(cluster, ["0:2", "2:5"])
    cluster.start_worker("whole")
    cluster.wait_ready()
    for _ in range(4):
        out = cluster.infer("Once upon a time", max_tokens=8, temperature=0).json()
        assert out["worker"] == "whole" and "stages" not in out


def test_a_stage_refuses_what_it_cannot_take(cluster, stories):
    """A prompt longer than a middle stage's context ends the request with the stage's reason
    (400), and the pipeline keeps serving."""
    cluster.start_master()
    cluster.start_worker("a", "--layers", "0:2")
    cluster.start_worker("b", "--layers", "2:3", "--ctx", "16")
    cluster.start_worker("c", "--layers", "3:5")
    cluster.wait_ready()
    r = cluster.infer("Once upon a time " * 8, max_tokens=4, temperature=0)
    assert r.status == 400, r.body
    assert r.json()["error"]["code"] == "context_length_exceeded"
    r = cluster.infer("Once upon a time", max_tokens=8, temperature=0)
    assert r.status == 200 and r.json()["text"] == reference_text(64)[:len(r.json()["text"])]


@pytest.mark.parametrize("role", ["last", "first"])
def test_a_killed_stage_fails_over_to_its_replica(cluster, slow_model, role):
    """kill -9 of a stage (the last, or the first) while a greedy request streams: the request
    continues on a pipeline through the stage's replica from prompt + tokens so far, and the
    client gets exactly the undisturbed answer."""
    cluster.start_master("--stall-timeout", "3s")
    cluster.start_worker("whole", model=slow_model)
    cluster.wait_ready()
    want = cluster.infer("hello", max_tokens=300, temperature=0, timeout=120).json()["text"]
    cluster.workers["whole"].stop()
    pair = ("0:4", "4:8") if role == "first" else ("4:8", "0:4")
    cluster.start_worker("rep-a", "--layers", pair[0], model=slow_model)
    cluster.start_worker("rep-b", "--layers", pair[0], model=slow_model)
    cluster.start_worker("other", "--layers", pair[1], model=slow_model)
    wait_for(lambda: cluster.state("whole") in (None, "dead"), 30, what="whole worker gone")
    cluster.wait_ready()
    got = {}

    def stream():
        got["r"] = cluster.infer("hello", max_tokens=300, temperature=0, stream=True,
                                 timeout=120)

    t = threading.Thread(target=stream)
    t.start()

    def serving():
        for w in cluster.cluster_view()["workers"]:
            if w["id"].startswith("rep") and w.get("inflight", 0) > 0:
                return w["id"]
        return None

    victim = wait_for(serving, 20, interval=0.01, what="a replica to take the request")
    time.sleep(0.5)
    cluster.workers[victim].signal(signal.SIGKILL)
    t.join(120)
    r = got["r"]
    assert r.status == 200
    events = parse_sse(r.body)
    text = "".join(d["text"] for e, d in events if e == "token")
    done = [d for e, d in events if e == "done"]
    assert done, events[-3:]
    assert text == want
    assert done[0]["attempts"] >= 2
    survivor = "rep-b" if victim == "rep-a" else "rep-a"
    assert done[0]["stages"] == ([survivor, "other"] if role == "first" else ["other", survivor])


def test_dais_run_shards(tmp_path, stories):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAIS_")}
    log = open(tmp_path / "run.log", "wb")
    p = subprocess.Popen([DAIS_BIN, "run", "--port", str(port), "-m", stories, "--shards", "2",
                          "--threads", "1", "--heartbeat-interval", "200ms"],
                         stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
    try:
        def ready():
            assert p.poll() is None, "dais run exited"
            try:
                return http_request(port, "GET", "/ready", timeout=1).status == 200
            except OSError:
                return False
        wait_for(ready, 60, interval=0.1, what="dais run --shards 2 to be ready")
        r = http_request(port, "POST", "/api/inference",
                         {"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0})
        assert r.status == 200 and r.json()["text"] == reference_text(64)
        assert r.json()["stages"] == ["worker-1", "worker-2"]
        view = http_request(port, "GET", "/api/cluster").json()
        ranges = sorted((w["capabilities"]["model"]["layer_first"], w["capabilities"]["model"]["layer_last"])
                        for w in view["workers"])
        assert ranges == [(0, 2), (2, 5)]
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        log.close()


# ---- shard files (`dais model shard`): stages that hold only their own tensors ----------------

def make_shard(src, rng, out):
    r = subprocess.run([DAIS_BIN, "model", "shard", src, "--layers", rng, "-o", out],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return out


def test_shard_files_chain_into_the_whole_models_answer(cluster, stories, tmp_path):
    a = make_shard(stories, "0:2", str(tmp_path / "a.gguf"))
    b = make_shard(stories, "2:5", str(tmp_path / "b.gguf"))
    whole = os.path.getsize(stories)
    assert os.path.getsize(a) < 0.6 * whole and os.path.getsize(b) < 0.7 * whole
    info = subprocess.run([DAIS_BIN, "model", "info", b], capture_output=True, text=True).stdout
    assert '"dais.shard.layer_first" u32 = 2' in info and "shard file: layers [2, 5) of 5" in info
    cluster.start_master()
    cluster.start_worker("s0", model=a)          # no --layers: the file's own range
    cluster.start_worker("s1", "--layers", "2:5", model=b)
    cluster.wait_ready()
    view = {w["id"]: w["capabilities"]["model"] for w in cluster.cluster_view()["workers"]}
    src_hash = subprocess.run(["sha256sum", stories], capture_output=True,
                              text=True).stdout.split()[0]
    # Both stages report the SOURCE file's hash, so the master chains them.
    assert view["s0"]["hash"] == src_hash and view["s1"]["hash"] == src_hash
    assert (view["s0"]["layer_first"], view["s0"]["layer_last"]) == (0, 2)
    assert (view["s1"]["layer_first"], view["s1"]["layer_last"]) == (2, 5)
    r = cluster.infer("Once upon a time", max_tokens=60, temperature=0)
    assert r.status == 200, r.body
    assert r.json()["text"] == reference_text(64)
    assert r.json()["stages"] == ["s0", "s1"]


def test_a_shard_file_chains_with_a_whole_file_stage(cluster, stories, tmp_path):
    b = make_shard(stories, "3:5", str(tmp_path / "b.gguf"))
    cluster.start_master()
    cluster.start_worker("w0", "--layers", "0:3")     # the whole file, first three layers
    cluster.start_worker("s1", model=b)              # a shard file of the rest
    cluster.wait_ready()
    r = cluster.infer("Once upon a time", max_tokens=60, temperature=0)
    assert r.status == 200, r.body
    assert r.json()["text"] == reference_text(64)
    assert r.json()["stages"] == ["w0", "s1"]


def test_a_shard_file_refuses_another_range_and_whole_model_use(cluster, stories, tmp_path):
    a = make_shard(stories, "0:2", str(tmp_path / "a.gguf"))
    cluster.start_master()
    w = cluster.start_worker("bad", "--layers", "0:3", model=a, wait=False)
    wait_for(lambda: not w.alive(), 15, what="the worker to exit")
    assert "shard file holding only layers 0:2" in w.tail()
    r = subprocess.run([DAIS_BIN, "generate", "-m", a, "-p", "Once", "-n", "4"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "shard file" in r.stderr and "[0, 2)" in r.stderr
