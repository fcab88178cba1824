"""`dais run`: a master and N workers as processes, ready, answering, and stopped cleanly
(SIGTERM/SIGINT to dais run stops every child; a kill -9 of dais run leaves no orphans)."""

import os
import signal
import subprocess
import time

import pytest

from conftest import DAIS_BIN, free_port, http_request, wait_for


def children(pid):
    """Direct children of pid (from /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(entry))
    return kids


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state == "Z"  # a zombie has exited; its parent (init) reaps it
    except OSError:
        return True


class Run:
    def __init__(self, args, tmp_path, env_extra=None):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DAIS_")}
        env.update(env_extra or {})
        self.log = open(tmp_path / "run.log", "wb")
        self.p = subprocess.Popen([DAIS_BIN, "run", "--port", str(self.port),
                                   "--heartbeat-interval", "200ms", *args],
                                  stdout=subprocess.PIPE, stderr=self.log, env=env,
                                  start_new_session=True)

    def wait_ready(self, timeout=60):
        def ready():
            if self.p.poll() is not None:
                pytest.fail(f"dais run exited with {self.p.returncode}")
            try:
                return http_request(self.port, "GET", "/ready", timeout=1).status == 200
            except OSError:
                return False
        wait_for(ready, timeout, interval=0.1, what="dais run to be ready")

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)
        self.log.close()


def test_run_serves_and_stops_cleanly(tmp_path, stories):
    run = Run(["-m", stories, "--workers", "2", "--threads", "1"], tmp_path)
    try:
        run.wait_ready()
        kids = children(run.p.pid)
        assert len(kids) == 3  # master + 2 workers
        # It prints how to call the API.
        banner = b""
        while b"curl" not in banner:
            line = run.p.stdout.readline()
            assert line, "dais run printed no curl line"
            banner += line
        assert b"/api/inference" in banner and str(run.port).encode() in banner
        r = http_request(run.port, "POST", "/api/inference",
                         {"prompt": "Once upon a time", "max_tokens": 8, "temperature": 0})
        assert r.status == 200 and r.json()["usage"]["completion_tokens"] == 8
        def active():
            view = http_request(run.port, "GET", "/api/cluster").json()
            return sorted(w["id"] for w in view["workers"] if w["state"] == "active")
        wait_for(lambda: active() == ["worker-1", "worker-2"], 10, what="both workers active")
        run.p.send_signal(signal.SIGTERM)
        assert run.p.wait(20) == 0
        for k in kids:
            wait_for(lambda: gone(k), 5, what=f"child {k} to exit")
    finally:
        run.close()


def test_run_sigint_like_ctrl_c(tmp_path, stories):
    run = Run(["-m", stories, "--workers", "1", "--threads", "1"], tmp_path)
    try:
        run.wait_ready()
        kids = children(run.p.pid)
        assert len(kids) == 2
        run.p.send_signal(signal.SIGINT)
        assert run.p.wait(20) == 0
        for k in kids:
            wait_for(lambda: gone(k), 5, what=f"child {k} to exit")
    finally:
        run.close()


def test_run_killed_leaves_no_orphans(tmp_path, stories):
    run = Run(["-m", stories, "--workers", "2", "--threads", "1"], tmp_path)
    try:
        run.wait_ready()
        kids = children(run.p.pid)
        assert len(kids) == 3
        run.p.kill()
        run.p.wait(10)
        for k in kids:
            wait_for(lambda: gone(k), 10, what=f"orphan {k} to exit")
    finally:
        run.close()


def test_run_without_model_uses_the_demo_model(tmp_path):
    cache = tmp_path / "cache"
    run = Run(["--workers", "1", "--threads", "1"], tmp_path,
              {"XDG_CACHE_HOME": str(cache)})
    try:
        run.wait_ready(timeout=120)
        demo = cache / "dais" / "dais-demo-v2.gguf"
        assert demo.exists() and demo.stat().st_size > 1_000_000
        r = http_request(run.port, "POST", "/api/inference", {"prompt": "Hello", "max_tokens": 5})
        assert r.status == 200 and r.json()["usage"]["completion_tokens"] >= 1
        run.p.send_signal(signal.SIGTERM)
        assert run.p.wait(20) == 0
    finally:
        run.close()


def test_run_rejects_bad_options(tmp_path):
    for args in (["--workers", "0"], ["--port", "x"], ["--bogus"], ["-m", "/nonexistent.gguf"]):
        p = subprocess.run([DAIS_BIN, "run", *args], capture_output=True, timeout=10)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr
    p = subprocess.run([DAIS_BIN, "run", "--help"], capture_output=True, timeout=10)
    assert p.returncode == 0 and b"--workers" in p.stdout
