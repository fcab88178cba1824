"""Model synchronisation on port 8890 with real processes (docs/protocol.md, "Model
synchronisation"; docs/operations.md, "Workers without the model file").

A master with --model-dir serves GGUF files; workers started with --pull-model NAME and no
model of their own download, verify and load it, register, and answer exactly like a worker
started with --model. Then: a warm cache is not downloaded again, a wrong token and an unknown
name stop the worker with a clear reason, a download killed half-way resumes from its .part
file, and a corrupted .part is caught by the hash and downloaded again.
"""

import hashlib
import http.client
import os
import re
import shutil
import signal
import socket

from conftest import DAIS_BIN, Proc, free_port, reference_text, wait_for

MB = 1 << 20


def sha256_of(path, limit=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = limit
        while True:
            block = f.read(4 * MB if left is None else min(4 * MB, left))
            if not block:
                break
            h.update(block)
            if left is not None:
                left -= len(block)
                if left == 0:
                    break
    return h.hexdigest()


def scrape(cluster):
    conn = http.client.HTTPConnection("127.0.0.1", cluster.metrics_port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def metric(cluster, name):
    """The value of one series, e.g. 'dais_model_sync_requests_total{result="ok"}' (0 if absent)."""
    for line in scrape(cluster).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def sync_bytes(cluster):
    return metric(cluster, "dais_model_sync_bytes_total")


def sync_result(cluster, result):
    return metric(cluster, f'dais_model_sync_requests_total{{result="{result}"}}')


def start_sync_master(cluster, model_dir, *extra):
    cluster.sync_port = free_port()
    cluster.start_master("--model-dir", model_dir, "--sync-port", str(cluster.sync_port), *extra)


def start_pull_worker(cluster, wid, name, cache, *extra, token=None, wait=True):
    """A worker with no model file of its own: --pull-model NAME into the cache directory."""
    hb = free_port(socket.SOCK_DGRAM)
    mp = free_port()
    args = [DAIS_BIN, "worker", "--pull-model", name, "--model-cache", cache,
            "--master", f"127.0.0.1:{cluster.cluster_port}", "--sync-port", str(cluster.sync_port),
            "--id", wid, "--addr", "127.0.0.1", "--heartbeat-port", str(hb),
            "--metrics-port", str(mp), "--threads", "1", "--retry-base", "50ms",
            "--retry-max", "500ms", *extra]
    w = Proc(wid, args, cluster.env(token), cluster.logdir)
    cluster.procs.append(w)
    cluster.workers[wid] = w
    if wait:
        cluster.wait_state(wid, "active", timeout=90)
    return w


def log_of(proc):
    with open(proc.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def models_dir(tmp_path, **files):
    """A --model-dir holding NAME.gguf -> a copy (or a link, for big files) of each path."""
    d = tmp_path / "models"
    d.mkdir()
    for name, src in files.items():
        if os.path.getsize(src) > 16 * MB:
            os.symlink(src, d / f"{name}.gguf")
        else:
            shutil.copyfile(src, d / f"{name}.gguf")
    return str(d)


def test_pull_verify_serve_then_warm_cache(cluster, stories, tmp_path):
    mdir = models_dir(tmp_path, stories260K=stories)
    cache = str(tmp_path / "cache")  # does not exist yet: the worker creates it
    start_sync_master(cluster, mdir)
    size = os.path.getsize(stories)

    w1 = start_pull_worker(cluster, "w1", "stories260K", cache)
    pulled = os.path.join(cache, "stories260K.gguf")
    assert sha256_of(pulled) == sha256_of(stories)
    assert not os.path.exists(pulled + ".part")
    r = cluster.infer("Once upon a time", max_tokens=60, temperature=0)
    assert r.status == 200, r
    assert r.json()["text"] == reference_text(64)
    assert r.json()["worker"] == "w1"
    assert sync_bytes(cluster) == size
    assert sync_result(cluster, "ok") == 1
    assert re.search(r"downloaded 'stories260K' into .*MB/s\), sha256 [0-9a-f]{64} verified",
                     log_of(w1))
    assert "model sync: sent 'stories260K' to w1" in log_of(cluster.master)

    # A second start on the warm cache: the master sends nothing (one answer: size + hash).
    assert w1.stop() == 0
    w2 = start_pull_worker(cluster, "w2", "stories260K", cache)
    assert "not downloading" in log_of(w2)
    assert sync_bytes(cluster) == size
    assert sync_result(cluster, "ok") == 2
    r = cluster.infer("Once upon a time", max_tokens=60, temperature=0)
    assert r.json()["text"] == reference_text(64)
    assert r.json()["worker"] == "w2"


def test_wrong_token_stops_the_worker(cluster, stories, tmp_path):
    mdir = models_dir(tmp_path, stories260K=stories)
    cache = tmp_path / "cache"
    start_sync_master(cluster, mdir)
    w = start_pull_worker(cluster, "intruder", "stories260K", str(cache), token="not-the-token",
                          wait=False)
    wait_for(lambda: not w.alive(), 15, what="the worker with the wrong token to exit")
    assert w.p.returncode == 1
    assert "bad_token" in log_of(w) and "cluster token" in log_of(w)
    assert sync_result(cluster, "bad_token") == 1
    assert sync_bytes(cluster) == 0  # nothing served
    assert not any(p.name.endswith((".gguf", ".part")) for p in cache.iterdir())
    assert cluster.cluster_view()["workers"] == []


def test_unknown_model_lists_served_names(cluster, stories, tmp_path):
    mdir = models_dir(tmp_path, stories260K=stories)
    start_sync_master(cluster, mdir)
    w = start_pull_worker(cluster, "w1", "no-such-model", str(tmp_path / "cache"), wait=False)
    wait_for(lambda: not w.alive(), 15, what="the worker to exit")
    assert w.p.returncode == 1
    log = log_of(w)
    assert "does not serve 'no-such-model'" in log
    assert "served: 'stories260K'" in log
    assert sync_result(cluster, "unknown_model") == 1


def test_interrupted_download_resumes_from_the_part_file(cluster, slow_model, tmp_path):
    size = os.path.getsize(slow_model)
    mdir = models_dir(tmp_path, big=slow_model)
    cache = str(tmp_path / "cache")
    part = os.path.join(cache, "big.gguf.part")
    # Paced so that the download can be killed half-way (118 MB at 40 MiB/s: ~3 s).
    start_sync_master(cluster, mdir, "--sync-rate-limit", "40MiB", "--sync-chunk", "1MiB")

    w1 = start_pull_worker(cluster, "w1", "big", cache, wait=False)
    wait_for(lambda: os.path.exists(part) and os.path.getsize(part) > 24 * MB, 30,
             what="the first 24 MB")
    w1.signal(signal.SIGKILL)
    wait_for(lambda: not w1.alive(), 10, what="the killed worker to be gone")
    have = os.path.getsize(part)
    assert 0 < have < size
    wait_for(lambda: sync_result(cluster, "aborted") == 1, 10, what="the master to see the end")
    first = sync_bytes(cluster)
    assert first >= have

    w2 = start_pull_worker(cluster, "w2", "big", cache)
    assert f"resuming 'big' at {have / 1e6:.1f}" in log_of(w2)
    second = sync_bytes(cluster) - first
    assert second == size - have  # only what was missing
    pulled = os.path.join(cache, "big.gguf")
    assert not os.path.exists(part)
    assert sha256_of(pulled) == sha256_of(slow_model)
    r = cluster.infer("hello", max_tokens=4, temperature=0)
    assert r.status == 200 and r.json()["worker"] == "w2"


def test_corrupted_part_is_caught_by_the_hash_and_downloaded_again(cluster, slow_model,
                                                                   tmp_path):
    size = os.path.getsize(slow_model)
    mdir = models_dir(tmp_path, big=slow_model)
    cache = tmp_path / "cache"
    cache.mkdir()
    # A .part of the first 30 MB with a few bytes flipped in the middle.
    keep = 30 * MB
    with open(slow_model, "rb") as f:
        head = bytearray(f.read(keep))
    for i in range(10 * MB, 10 * MB + 16):
        head[i] ^= 0xFF
    (cache / "big.gguf.part").write_bytes(head)
    start_sync_master(cluster, mdir)

    w = start_pull_worker(cluster, "w1", "big", str(cache))
    log = log_of(w)
    assert "resuming 'big' at" in log
    assert "hash mismatch for 'big'" in log
    assert re.search(r"downloaded 'big' into .*: 117\.5 MB in [0-9.]+ s \(([0-9.]+) MB/s\)", log)
    assert sync_bytes(cluster) == (size - keep) + size
    assert sha256_of(str(cache / "big.gguf")) == sha256_of(slow_model)
    assert not (cache / "big.gguf.part").exists()
    speed = re.search(r"117\.5 MB in [0-9.]+ s \(([0-9.]+) MB/s\)", log).group(1)
    print(f"loopback download of the 118 MB model: {speed} MB/s")


def test_pull_only_a_stages_tensors(cluster, stories, tmp_path):
    """--pull-model NAME --layers A:B asks for the shard file of those layers (`layers` in
    MODEL_SYNC_REQUEST): the master makes it once outside its --model-dir and sends it, so each
    stage downloads less than the whole file, and the two stages still give the whole model's
    answer."""
    mdir = models_dir(tmp_path, stories260K=stories)
    size = os.path.getsize(stories)
    start_sync_master(cluster, mdir)
    c0, c1 = str(tmp_path / "cache0"), str(tmp_path / "cache1")
    start_pull_worker(cluster, "s0", "stories260K", c0, "--layers", "0:2")
    after_first = sync_bytes(cluster)
    assert 0 < after_first < 0.6 * size
    start_pull_worker(cluster, "s1", "stories260K", c1, "--layers", "2:5")
    second = sync_bytes(cluster) - after_first
    assert 0 < second < 0.7 * size
    p0 = os.path.join(c0, "stories260K.layers-0-2.gguf")
    assert os.path.getsize(p0) == after_first
    assert os.listdir(mdir) == ["stories260K.gguf"]   # nothing generated in --model-dir
    cluster.wait_ready()
    view = {w["id"]: w["capabilities"]["model"] for w in cluster.cluster_view()["workers"]}
    assert view["s0"]["hash"] == view["s1"]["hash"] == sha256_of(stories)
    r = cluster.infer("Once upon a time", max_tokens=60, temperature=0)
    assert r.status == 200, r.body
    assert r.json()["text"] == reference_text(64) and r.json()["stages"] == ["s0", "s1"]
    # A third stage of an existing range is served the file made for the first (made once).
    start_pull_worker(cluster, "s0b", "stories260K", str(tmp_path / "cache2"), "--layers", "0:2")
    assert sync_bytes(cluster) - after_first - second == after_first
    assert log_of(cluster.master).count("made the shard file of layers [0, 2)") == 1
    # A range beyond the model is refused for good, with the reason.
    w = start_pull_worker(cluster, "bad", "stories260K", str(tmp_path / "cache3"),
                          "--layers", "3:9", wait=False)
    wait_for(lambda: not w.alive(), 30, what="the worker to give up")
    assert "has 5 layers" in log_of(w)
