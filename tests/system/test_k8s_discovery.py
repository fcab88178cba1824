"""Kubernetes discovery wired into `dais master` (docs/reliability.md, "Kubernetes discovery").

A fake API server (tests/system/k8s/fake_apiserver.py: HTTPS with its own CA made by the openssl
CLI, PodList documents from files it re-reads on every request) and a master pointed at it with
--k8s-api-server/--k8s-token-file/--k8s-ca-file and a short --k8s-interval; a real worker
(stories260K) on 127.0.0.1, whose address is listed as a Running pod. When the pod leaves the
list (or stops Running) the worker is removed from /api/cluster within about two intervals,
without waiting for heartbeats; a failing API (500) changes nothing.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO, wait_for

FAKE = os.path.join(REPO, "tests", "system", "k8s", "fake_apiserver.py")
NS = "dais-test"
INTERVAL_MS = 300


def pod(name, uid, phase="Running", ip="127.0.0.1", labels=None):
    d = {"name": name, "uid": uid, "namespace": NS, "phase": phase,
         "labels": labels if labels is not None else {"app": "dais-worker"}}
    if ip is not None:
        d["ip"] = ip
    return d


def write(d, name, text):
    tmp = os.path.join(d, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(d, name))  # the server never reads half a file


@pytest.fixture
def apiserver(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not available (the fake API server needs it)")
    if not sys.executable:
        pytest.skip("python3 is not available")
    d = str(tmp_path / "apiserver")
    os.makedirs(d)
    write(d, "expected_token", "test-sa-token")
    write(d, "token", "test-sa-token\n")
    write(d, "mode", "ok")
    write(d, "pods.json", "[]")
    p = subprocess.Popen([sys.executable, FAKE, "--dir", d], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(d, "server.log"), "w"))
    try:
        def started():
            if p.poll() is not None:
                with open(os.path.join(d, "server.log")) as f:
                    pytest.skip(f"the fake API server exited ({p.returncode}): {f.read()[-500:]}")
            return os.path.exists(os.path.join(d, "port"))
        wait_for(started, 30, interval=0.1, what="fake API server")
        with open(os.path.join(d, "port")) as f:
            port = int(f.read().strip())
        yield {"dir": d, "url": f"https://127.0.0.1:{port}"}
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def start(cluster, api, *extra):
    d = api["dir"]
    return cluster.start_master(
        "--k8s-discovery", "--k8s-api-server", api["url"],
        "--k8s-token-file", os.path.join(d, "token"), "--k8s-ca-file", os.path.join(d, "ca.crt"),
        "--k8s-namespace", NS, "--k8s-selector", "app=dais-worker",
        "--k8s-interval", f"{INTERVAL_MS}ms", *extra)


def k8s_view(cluster):
    return cluster.cluster_view()["k8s_discovery"]


def requests_made(api):
    try:
        with open(os.path.join(api["dir"], "requests.log")) as f:
            return len(f.readlines())
    except FileNotFoundError:
        return 0


def test_help_lists_the_k8s_flags():
    from conftest import DAIS_BIN
    r = subprocess.run([DAIS_BIN, "master", "--help"], capture_output=True, text=True, timeout=30)
    for flag in ("--k8s-discovery", "--k8s-namespace", "--k8s-selector", "--k8s-interval",
                 "--k8s-api-server", "--k8s-token-file", "--k8s-ca-file"):
        assert flag in r.stdout, flag


def test_pod_gone_removes_worker_and_api_failure_keeps_it(cluster, stories, apiserver):
    d = apiserver["dir"]
    write(d, "pods.json", json.dumps([pod("w1", "uid-w1"),
                                      pod("other", "uid-other", ip="10.9.9.9")]))
    start(cluster, apiserver)
    wait_for(lambda: k8s_view(cluster).get("successes", 0) >= 1, 10, what="a first pod list")
    v = k8s_view(cluster)
    assert v["enabled"] and v["active"] and v["pods_seen"] == 2 and v["last_error"] is None
    assert v["last_success_unix"] and abs(v["last_success_unix"] - time.time()) < 30

    cluster.start_worker("w1")
    # Listed as a Running pod: several lists later it is still there.
    n0 = k8s_view(cluster)["successes"]
    wait_for(lambda: k8s_view(cluster)["successes"] >= n0 + 3, 10, what="more lists")
    assert cluster.state("w1") == "active"

    # The API fails: the pool is kept, the error is shown.
    write(d, "mode", "500")
    f0 = k8s_view(cluster)["failures"]
    wait_for(lambda: k8s_view(cluster)["failures"] >= f0 + 1, 10, what="a failed list")
    v = k8s_view(cluster)
    assert v["last_error"] and "server" in v["last_error"], v
    assert cluster.state("w1") == "active"

    # Back to ok, then the pod is marked Succeeded: removed within ~2 intervals of the list
    # (the backoff after the failure may delay the next list a little).
    write(d, "mode", "ok")
    n1 = k8s_view(cluster)["successes"]
    wait_for(lambda: k8s_view(cluster)["successes"] >= n1 + 1, 40, what="lists resume")
    assert cluster.state("w1") == "active"
    write(d, "pods.json", json.dumps([pod("w1", "uid-w1", phase="Succeeded"),
                                      pod("other", "uid-other", ip="10.9.9.9")]))
    t0 = time.monotonic()
    wait_for(lambda: cluster.worker_view("w1") is None, 10, what="w1 removed")
    took = time.monotonic() - t0
    assert took < 2 * INTERVAL_MS / 1000 + 1.5, took  # not the heartbeat bound
    assert k8s_view(cluster)["workers_removed"] >= 1


def test_pod_dropped_from_list_removes_worker(cluster, stories, apiserver):
    d = apiserver["dir"]
    write(d, "pods.json", json.dumps([pod("w1", "uid-w1")]))
    start(cluster, apiserver)
    cluster.start_worker("w1")
    n0 = k8s_view(cluster)["successes"]
    wait_for(lambda: k8s_view(cluster)["successes"] >= n0 + 2, 10, what="more lists")
    assert cluster.state("w1") == "active"
    write(d, "pods.json", "[]")
    t0 = time.monotonic()
    wait_for(lambda: cluster.worker_view("w1") is None, 10, what="w1 removed")
    assert time.monotonic() - t0 < 2 * INTERVAL_MS / 1000 + 1.5
    assert requests_made(apiserver) >= 3


def test_discovery_off_by_default(cluster):
    cluster.start_master()
    v = k8s_view(cluster)
    assert v["enabled"] is False


def test_admission_only_lets_listed_pods_register(cluster, stories, apiserver):
    """--k8s-admit: a worker whose address is not a Running pod is refused (not_a_pod, retried);
    once its pod is listed it joins; when its pod leaves, it is removed and stays out although
    its process lives on."""
    d = apiserver["dir"]
    write(d, "pods.json", json.dumps([pod("other", "uid-other", ip="10.9.9.9")]))
    start(cluster, apiserver, "--k8s-admit")
    wait_for(lambda: k8s_view(cluster).get("successes", 0) >= 1, 10, what="a first pod list")
    cluster.start_worker("w1", wait=False)
    wait_for(lambda: cluster.cluster_view()["registrations"].get("not_a_pod", 0) >= 1, 10,
             what="a not_a_pod rejection")
    assert cluster.worker_view("w1") is None
    assert cluster.workers["w1"].alive()  # a transient reason: it keeps trying
    write(d, "pods.json", json.dumps([pod("w1", "uid-w1"),
                                      pod("other", "uid-other", ip="10.9.9.9")]))
    cluster.wait_state("w1", "active", timeout=15)
    write(d, "pods.json", json.dumps([pod("other", "uid-other", ip="10.9.9.9")]))
    wait_for(lambda: cluster.worker_view("w1") is None, 10, what="w1 removed")
    refused = cluster.cluster_view()["registrations"]["not_a_pod"]
    n0 = k8s_view(cluster)["successes"]
    wait_for(lambda: k8s_view(cluster)["successes"] >= n0 + 4, 15, what="more lists")
    assert cluster.worker_view("w1") is None  # its re-registrations are refused
    assert cluster.workers["w1"].alive()
    assert cluster.cluster_view()["registrations"]["not_a_pod"] > refused


def test_admission_needs_discovery(cluster):
    from conftest import DAIS_BIN
    r = subprocess.run([DAIS_BIN, "master", "--k8s-admit"], capture_output=True, text=True,
                       timeout=30, env={"DAIS_CLUSTER_TOKEN": "x" * 32})
    assert r.returncode != 0 and "--k8s-admit needs --k8s-discovery" in r.stderr

