"""Issue 4's fault tests: a master and three workers as real processes, each worker in its own
network namespace (tests/system/netns.py), a steady load of concurrent requests, and one fault
per scenario. Each scenario counts sent and failed requests and measures the time to detect and
to recover; the numbers go to a JSON file (build/fault-results.json, or $DAIS_FT_RESULTS) from
which `python3 tests/system/test_faults.py --render` writes the results table of
docs/reliability.md.

  1. kill -9 of one worker of three                → zero failed requests
  2. kill -9 in the middle of a long streamed      → one complete answer, identical to the
     greedy generation                                undisturbed one
  3. SIGSTOP of a worker, later SIGCONT            → breaker opens, requests go elsewhere, zero
                                                      failures; it rejoins
  4. partition of one worker (nftables drops all)  → removed within the detector's bound, zero
     then healed                                      failures; it rejoins
  5. 30 % UDP loss + 50 ms delay on heartbeats     → no healthy worker marked dead
  6. all workers gone, then back                   → 503 with Retry-After, then full service
  7. master restart under load                     → workers back by themselves, service resumes

The model is synthesized once per run (`dais model synth`, fixed seed, about 400 tokens/s on one
thread): stories260K generates 30 000 tokens/s, so its requests end before any fault can reach
them. With this model a load request (24 greedy tokens) lasts tens of milliseconds, so every
fault lands on requests in flight, and the long generation of scenario 2 lasts seconds. Every
successful answer is compared with the undisturbed greedy answer for its prompt.

Master features of issue 4 that are not wired yet (GAPS below) turn the assertions they explain
into an expected failure whose reason names the feature; any other violation fails the test.
The detector's flags and the breaker's entry in /api/cluster are detected at run time; mid-stream
failover cannot be, so its entry in STATIC_GAPS must be deleted when the master gains it.

Needs root, `ip netns`, nftables and setpriv; otherwise the module is skipped.
"""

import datetime
import http.client
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAIS_BIN = os.environ.get("DAIS_BIN", os.path.join(REPO, "build", "release", "dais"))
RESULTS = os.environ.get("DAIS_FT_RESULTS", os.path.join(REPO, "build", "fault-results.json"))
DOC = os.path.join(REPO, "docs", "reliability.md")

# ---- the suite's timing ----------------------------------------------------------------------

# Heartbeat interval (T) and the detector's parameters, scaled down from the defaults of
# docs/reliability.md (5 s / 0.5 s / 1 s / k = 20 / 15 s) so that a scenario takes seconds.
# k stays 20: that is what makes 30 % loss harmless.
HB_MS = 250
SUSPECT_MS = 50
ACK_TIMEOUT_MS = 250
DEAD_MISSED = 20
DEAD_AFTER_S = 2.0
# The detector flags docs/reliability.md's parameters need (interval and k exist already as
# --heartbeat-interval and --heartbeat-misses).
DETECTOR_FLAGS = {"suspect_interval": "--heartbeat-suspect-interval",
                  "ack_timeout": "--heartbeat-ack-timeout",
                  "dead_after": "--heartbeat-dead-after"}
# Polling, scheduling on a loaded 2-core machine.
SLACK_S = 1.5
# A hung worker's breaker must open within this (requests time out, N failures in a row).
BREAKER_BOUND_S = 8.0
# A healed or continued worker serves again within this (worker backoff capped at 1 s, the
# breaker's 5 s cool-down, a probe).
REJOIN_BOUND_S = 15.0
# Per-attempt stall timeout (`--stall-timeout`): a request on a hung worker moves elsewhere
# after this much silence. Well above a 24-token answer's gaps on a loaded 2-core machine.
STALL_TIMEOUT = "2s"

WORKERS = 3
CLIENTS = 6
LOAD_TOKENS = 24
LONG_TOKENS = 600
PROMPTS = ["Once upon a time", "The little dog", "In a small town there lived"]

# Gaps that cannot be detected from outside the master (none now: mid-stream failover exists,
# router.c continues a dead worker's request on another one from prompt + tokens so far).
STATIC_GAPS = {}


# ---- environment checks -------------------------------------------------------------------

if __name__ != "__main__":
    _ok, _why = netns.available()
    if not _ok:
        pytest.skip(f"fault tests skipped: {_why}", allow_module_level=True)

_help_cache = {}


def master_help():
    if "text" not in _help_cache:
        p = subprocess.run([DAIS_BIN, "master", "--help"], capture_output=True, text=True,
                           timeout=10)
        _help_cache["text"] = p.stdout + p.stderr
    return _help_cache["text"]


def has_detector_flags():
    return all(f in master_help() for f in DETECTOR_FLAGS.values())


def gaps():
    """feature -> why it is missing, for the features the master lacks now."""
    g = dict(STATIC_GAPS)
    if not has_detector_flags():
        g["detector"] = ("loss-tolerant dead-node detector (docs/reliability.md) not wired: "
                         "`dais master` has no " + ", ".join(DETECTOR_FLAGS.values()) +
                         " and its defaults do not tolerate 30 % heartbeat loss")
    if _BREAKER_SEEN.get("visible") is False:
        g["breaker"] = ("per-worker circuit breaker not wired: no `breaker` state in the "
                        "workers of /api/cluster")
    return g


_BREAKER_SEEN = {}


def detector_args(dead_after_s=DEAD_AFTER_S, fallback_misses=DEAD_MISSED):
    """Master flags for the detector and the bound (s) within which a silent worker is dead."""
    args = ["--heartbeat-interval", f"{HB_MS}ms"]
    t = HB_MS / 1000
    if has_detector_flags():
        args += ["--heartbeat-misses", str(DEAD_MISSED),
                 DETECTOR_FLAGS["suspect_interval"], f"{SUSPECT_MS}ms",
                 DETECTOR_FLAGS["ack_timeout"], f"{ACK_TIMEOUT_MS}ms",
                 DETECTOR_FLAGS["dead_after"], f"{dead_after_s}s"]
        a, s = ACK_TIMEOUT_MS / 1000, SUSPECT_MS / 1000
        bound = max(dead_after_s, t + 2 * a + (DEAD_MISSED - 2) * s)
    else:
        # Today's master: a miss per unanswered interval, dead at `misses` in a row.
        args += ["--heartbeat-misses", str(fallback_misses)]
        bound = (fallback_misses + 2) * t
    if "--stall-timeout" in master_help():
        args += ["--stall-timeout", STALL_TIMEOUT]
    return args, bound


# ---- results file -------------------------------------------------------------------------

TITLES = {
    1: "`kill -9` of one worker of three",
    2: "`kill -9` during a long streamed generation (failover)",
    3: "SIGSTOP of a worker, then SIGCONT",
    4: "network partition of one worker, then healed",
    5: "30 % UDP loss and 50 ms delay on heartbeats",
    6: "all workers gone, then back",
    7: "master restart under load",
}


def _git_commit():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def write_result(n, entry):
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    try:
        with open(RESULTS, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        doc = {}
    doc.setdefault("scenarios", {})[str(n)] = entry
    doc["updated"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tmp = RESULTS + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.replace(tmp, RESULTS)


class Verdict:
    """Collects a scenario's numbers and violated expectations, writes the result, and ends
    the test: pass, xfail (every violation explained by a missing master feature) or fail."""

    def __init__(self, n):
        self.n = n
        self.problems = []  # (gap or None, message)
        self.numbers = {"requests": 0, "failed": 0, "detect_s": None, "recover_s": None}
        self.notes = []
        self.t0 = time.monotonic()

    def expect(self, cond, message, gap=None):
        if not cond:
            self.problems.append((gap, message))
        return cond

    def settle(self):
        missing = gaps()
        explained = bool(self.problems) and all(g is not None and g in missing
                                                for g, _ in self.problems)
        outcome = "pass" if not self.problems else ("xfail" if explained else "fail")
        needed = sorted({g for g, _ in self.problems if g is not None})
        write_result(self.n, {
            "title": TITLES[self.n], **self.numbers, "outcome": outcome,
            "gaps": needed if outcome == "xfail" else [],
            "problems": [m + (f" [{g}]" if g else "") for g, m in self.problems],
            "notes": self.notes, "duration_s": round(time.monotonic() - self.t0, 1),
            "commit": _git_commit(),
            "detector_flags": has_detector_flags(),
        })
        if outcome == "pass":
            if self.n == 2 and "failover" in STATIC_GAPS:
                warnings.warn("scenario 2 passed: the master has mid-stream failover; delete "
                              "'failover' from STATIC_GAPS in tests/system/test_faults.py")
            return
        text = "\n".join(f"  - {m}" + (f" [{g}]" if g else "") for g, m in self.problems)
        if outcome == "xfail":
            pytest.xfail("needs master features not wired yet: " +
                         "; ".join(missing[g] for g in needed) + "\n" + text)
        pytest.fail(f"scenario {self.n} ({TITLES[self.n]}):\n{text}")


# ---- the cluster ----------------------------------------------------------------------------

def free_port(kind=socket.SOCK_STREAM):
    """A loopback port free for TCP and UDP now."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        t = socket.socket(socket.AF_INET, other)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
    raise RuntimeError("no free port")


def http_json(port, method, path, body=None, timeout=5.0):
    """(status, headers dict lower-cased, parsed body or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body) if body is not None else None
        conn.request(method, path, body=data,
                     headers={"Content-Type": "application/json"} if data else {})
        r = conn.getresponse()
        raw = r.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed
    finally:
        conn.close()


class FaultCluster:
    """A master in the root namespace (cluster and heartbeat ports on the bridge address, HTTP
    and metrics on loopback) and workers w1..w3, one per namespace."""

    def __init__(self, net, model, logdir):
        self.net = net
        self.logdir = logdir
        self.model = model
        self.token = secrets.token_hex(16)
        self.http_port = free_port()
        self.cluster_port = free_port()
        self.hb_port = free_port(socket.SOCK_DGRAM)
        self.metrics_port = free_port()
        self.master = None
        self.master_extra = []
        self.workers = {}
        self.relays = {}
        self.procs = []
        self.n_started = 0

    def env(self):
        e = {k: v for k, v in os.environ.items() if not k.startswith("DAIS_")}
        e["DAIS_CLUSTER_TOKEN"] = self.token
        return e

    def _spawn(self, name, args, i=None):
        self.n_started += 1
        p = self.net.spawn(f"{name}-{self.n_started}", args, env=self.env(), i=i,
                           logdir=self.logdir)
        self.procs.append(p)
        return p

    def start_master(self, extra=None):
        if extra is not None:
            self.master_extra = list(extra)
        h = self.net.host_ip
        args = [DAIS_BIN, "master", "--addr", "127.0.0.1", "--cluster-addr", h,
                "--heartbeat-addr", h, "--http-port", str(self.http_port),
                "--cluster-port", str(self.cluster_port), "--heartbeat-port", str(self.hb_port),
                "--metrics-port", str(self.metrics_port), "--shutdown-grace", "1s",
                "--request-timeout", "60s", *self.master_extra]
        self.master = self._spawn("master", args)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self.master.alive():
                pytest.fail(f"master exited:\n{self.master.tail()}")
            try:
                if http_json(self.http_port, "GET", "/health", timeout=1)[0] == 200:
                    return self.master
            except OSError:
                pass
            time.sleep(0.02)
        pytest.fail(f"master did not answer /health:\n{self.master.tail()}")

    def start_worker(self, i, advertise=None):
        args = [DAIS_BIN, "worker", "--model", self.model,
                "--master", f"{self.net.host_ip}:{self.cluster_port}", "--id", f"w{i}",
                "--addr", self.net.ns_ip(i), "--heartbeat-port", "8889", "--metrics-port", "9090",
                "--threads", "1", "--retry-max", "1s", "--register-timeout", "2s",
                "--drain-timeout", "1s"]
        if advertise is not None:
            args += ["--advertise", advertise]
        p = self._spawn(f"w{i}", args, i=i)
        self.workers[i] = p
        return p

    def start_relay(self, i, delay_ms):
        p = self.net.start_relay(i, 8889, delay_ms, logdir=self.logdir)
        self.procs.append(p)
        self.relays[i] = p
        return p

    def view(self, timeout=2.0):
        try:
            st, _, body = http_json(self.http_port, "GET", "/api/cluster", timeout=timeout)
            return body if st == 200 else None
        except OSError:
            return None

    def wait_active(self, ids, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.view()
            if v is not None and all(state(v, w) == "active" for w in ids):
                if "breaker" not in _BREAKER_SEEN and v["workers"]:
                    _BREAKER_SEEN["visible"] = "breaker" in v["workers"][0]
                return time.monotonic()
            for i, p in self.workers.items():
                if f"w{i}" in ids and not p.alive():
                    pytest.fail(f"worker w{i} exited:\n{p.tail()}")
            time.sleep(0.05)
        pytest.fail(f"workers {ids} not all active after {timeout} s: {self.view()}\n"
                    f"{self.logs()}")

    def start_all(self, master_extra, advertise_relay=False):
        self.start_master(master_extra)
        for i in range(1, WORKERS + 1):
            self.start_worker(i, advertise=self.net.relay_ip(i) if advertise_relay else None)
        self.wait_active([f"w{i}" for i in range(1, WORKERS + 1)])

    def infer(self, prompt, max_tokens, timeout=60.0):
        return http_json(self.http_port, "POST", "/api/inference",
                         {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0},
                         timeout=timeout)

    def stop(self):
        """Workers and relays first (they exit at once while a master is there), then masters."""
        order = [p for p in self.procs if p not in self.masters()] + self.masters()
        for p in order:
            self.net.forget(p)
        self.procs = []

    def masters(self):
        return [p for p in self.procs if p.name.startswith("master-")]

    def logs(self):
        return "\n".join(f"---- {p.name} ----\n{p.tail(20)}" for p in self.procs)


def worker_of(view, wid):
    for w in (view or {}).get("workers", []):
        if w.get("id") == wid:
            return w
    return None


def state(view, wid):
    """The worker's state, or None once it is no longer in the registry."""
    w = worker_of(view, wid)
    return w.get("state") if w is not None else None


def breaker(view, wid):
    """The worker's breaker state from /api/cluster ("closed", "open", "half_open"), whether
    the master shows it as a string or as an object with a `state`; None when not shown."""
    w = worker_of(view, wid)
    b = w.get("breaker") if w is not None else None
    if isinstance(b, dict):
        b = b.get("state")
    return b if isinstance(b, str) else None


def gone(view, wid):
    return state(view, wid) in (None, "dead")


def busiest_worker(fc, timeout=5.0):
    """(i, in flight) of the worker with the most requests in flight now (at least one), so
    that a fault hits work in progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = fc.view()
        busy = max(((worker_of(view, f"w{i}") or {}).get("inflight", 0), i)
                   for i in range(1, WORKERS + 1))
        if busy[0] >= 1:
            return busy[1], busy[0]
    pytest.fail("no worker ever had a request in flight")


# ---- load and observation -------------------------------------------------------------------

class Rec:
    __slots__ = ("prompt", "t0", "t1", "status", "code", "retry_after", "worker", "attempts",
                 "ok", "err")

    def __init__(self, prompt, t0):
        self.prompt, self.t0, self.t1 = prompt, t0, None
        self.status = self.code = self.retry_after = self.worker = self.attempts = None
        self.ok, self.err = False, None

    def outcome(self):
        if self.ok:
            return "ok"
        if self.err is not None:
            return self.err
        if self.status == 200:
            return "200 with a wrong answer"
        return f"{self.status} {self.code}"

    def gap(self):
        """The missing master feature a failure is explained by, if any."""
        if self.status == 502 and self.code == "worker_failed":
            return "failover"
        return None


class Load:
    """`clients` threads, each sending greedy requests one after another (new connection each),
    recording every request's outcome and timing. Bounded by count and time."""

    def __init__(self, fc, expected, clients=CLIENTS, max_tokens=LOAD_TOKENS, timeout=30.0,
                 max_requests=20000, max_seconds=120.0):
        self.fc = fc
        self.expected = expected
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.records = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(k,), daemon=True)
                        for k in range(clients)]

    def _client(self, k):
        i = k
        while not self.stop_flag.is_set() and time.monotonic() < self.deadline:
            prompt = PROMPTS[i % len(PROMPTS)]
            i += 1
            rec = Rec(prompt, time.monotonic())
            with self.lock:
                if len(self.records) >= self.max_requests:
                    return
                self.records.append(rec)
            conn = http.client.HTTPConnection("127.0.0.1", self.fc.http_port,
                                              timeout=self.timeout)
            try:
                conn.request("POST", "/api/inference",
                             body=json.dumps({"prompt": prompt, "max_tokens": self.max_tokens,
                                              "temperature": 0}),
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                raw = r.read()
                rec.status = r.status
                rec.retry_after = r.getheader("Retry-After")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                if r.status == 200 and isinstance(body, dict):
                    rec.worker = body.get("worker")
                    rec.attempts = body.get("attempts")
                    rec.ok = body.get("text") == self.expected[prompt]
                elif isinstance(body, dict) and isinstance(body.get("error"), dict):
                    rec.code = body["error"].get("code")
            except socket.timeout:
                rec.err = "client timeout"
            except OSError as e:
                rec.err = f"connection: {type(e).__name__}"
            except http.client.HTTPException as e:
                rec.err = f"http: {type(e).__name__}"
            finally:
                conn.close()
                rec.t1 = time.monotonic()
            if not rec.ok:
                time.sleep(0.1)  # a client backs off after an error instead of spinning

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(self.timeout + 5)

    def snapshot(self):
        with self.lock:
            return list(self.records)

    def done_after(self, t):
        return [r for r in self.snapshot() if r.t1 is not None and r.t0 >= t]

    def wait_done(self, n, after=0.0, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.done_after(after)) >= n:
                return True
            time.sleep(0.02)
        return False

    def in_flight_at(self, t):
        return [r for r in self.snapshot() if r.t0 <= t and (r.t1 is None or r.t1 > t)]


class Monitor:
    """Polls /api/cluster every `period` s in a thread; keeps (time of the answer, view)."""

    def __init__(self, fc, period=0.05):
        self.fc = fc
        self.period = period
        self.samples = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_flag.is_set():
            v = self.fc.view(timeout=1.0)
            with self.lock:
                self.samples.append((time.monotonic(), v))
            self.stop_flag.wait(self.period)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(5)

    def first(self, pred, after=0.0):
        with self.lock:
            samples = list(self.samples)
        for t, v in samples:
            if t >= after and v is not None and pred(v):
                return t
        return None

    def wait(self, pred, after, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            t = self.first(pred, after)
            if t is not None:
                return t
            time.sleep(0.02)
        return None

    def views(self, after=0.0, before=math.inf):
        with self.lock:
            return [(t, v) for t, v in self.samples if after <= t <= before and v is not None]


def count_failures(v, records, expected_bad=lambda r: False, what="request"):
    """Adds one problem per kind of failed request (tagged with the gap that explains it)."""
    bad = [r for r in records if not r.ok and not expected_bad(r)]
    kinds = {}
    for r in bad:
        kinds.setdefault((r.gap(), r.outcome()), []).append(r)
    for (gap, outcome), rs in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        v.expect(False, f"{len(rs)} {what}(s) failed: {outcome}", gap)
    return len(bad)


def sec(x):
    return None if x is None else round(x, 3)


# ---- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def net(tmp_path_factory):
    if not os.path.exists(DAIS_BIN):
        pytest.fail(f"dais binary not found at {DAIS_BIN} (set DAIS_BIN)")
    n = netns.Network(WORKERS, str(tmp_path_factory.mktemp("faultnet")))
    try:
        n.up()
        yield n
    finally:
        n.down()
        assert n.leftovers() == [], f"fault network not torn down: {n.leftovers()}"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ftmodel") / "ft-mid-q8_0.gguf")
    p = subprocess.run([DAIS_BIN, "model", "synth", "--dim", "384", "--layers", "6",
                        "--heads", "6", "--kv-heads", "2", "--ffn", "1024", "--vocab", "2048",
                        "--ctx", "1024", "--type", "q8_0", "--seed", "7", "-t", "1",
                        "-o", path], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return path


@pytest.fixture
def fc(request, net, model, tmp_path):
    c = FaultCluster(net, model, str(tmp_path))
    try:
        yield c
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(c.logs())
        c.stop()
        for i in range(1, WORKERS + 1):
            net.clear_faults(i)


_EXPECTED = {}


def expected_answers(fc):
    """The undisturbed greedy answer for each load prompt (the same on every run: the model is
    fixed, and the engine's greedy output does not depend on batching)."""
    for p in PROMPTS:
        st, _, body = fc.infer(p, LOAD_TOKENS)
        assert st == 200, body
        if p in _EXPECTED:
            assert body["text"] == _EXPECTED[p], "the undisturbed answer changed between runs"
        _EXPECTED[p] = body["text"]
    return dict(_EXPECTED)


# ---- scenarios ----------------------------------------------------------------------------

def test_1_kill9_one_worker_of_three(fc):
    v = Verdict(1)
    args, bound = detector_args()
    fc.start_all(args)
    expected = expected_answers(fc)
    with Monitor(fc) as mon, Load(fc, expected) as load:
        assert load.wait_done(30), "load did not start"
        victim, hit = busiest_worker(fc)
        t_kill = fc.workers[victim].kill9()
        in_flight = load.in_flight_at(t_kill)
        t_dead = mon.wait(lambda vw: gone(vw, f"w{victim}"), t_kill, bound + SLACK_S)
        load.wait_done(40, after=t_kill + 0.5, timeout=30)
    records = load.snapshot()
    v.numbers["requests"] = len(records)
    v.numbers["failed"] = count_failures(v, records)
    v.numbers["detect_s"] = sec(t_dead - t_kill) if t_dead else None
    ends = [r.t1 for r in in_flight]
    v.numbers["recover_s"] = sec(max(ends) - t_kill) if ends and None not in ends else None
    v.notes.append(f"w{victim} had {hit} request(s) in flight just before the kill; "
                   f"{len(in_flight)} load requests were in flight")
    v.expect(t_dead is not None, f"w{victim} not removed within {bound + SLACK_S:.1f} s "
             "of kill -9 (its TCP connection closed at once)")
    v.expect(len(load.done_after(t_kill + 0.5)) >= 40, "service did not continue after the kill")
    v.settle()


class Stream(threading.Thread):
    """One streamed request, read event by event: (arrival time, event, data)."""

    def __init__(self, port, prompt, max_tokens, timeout=90.0):
        super().__init__(daemon=True)
        self.port, self.prompt, self.max_tokens, self.timeout = port, prompt, max_tokens, timeout
        self.events = []
        self.status = None
        self.error = None
        self.final = None
        self.t_final = None

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            conn.request("POST", "/api/inference", body=json.dumps(
                {"prompt": self.prompt, "max_tokens": self.max_tokens, "temperature": 0,
                 "stream": True}), headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            self.status = r.status
            if r.status != 200:
                self.error = r.read().decode("utf-8", "replace")
                return
            event, data = "message", []
            while True:
                line = r.readline()
                if not line:
                    break
                line = line.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if data:
                        obj = json.loads("\n".join(data))
                        self.events.append((time.monotonic(), event, obj))
                        if event in ("done", "error"):
                            self.final, self.t_final = (event, obj), time.monotonic()
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.error = f"{type(e).__name__}: {e}"
        finally:
            conn.close()

    def tokens(self):
        return sum(1 for _, e, _ in self.events if e == "token")

    def text(self):
        return "".join(o.get("text", "") for _, e, o in self.events if e == "token")


def test_2_kill9_during_long_streamed_generation(fc):
    v = Verdict(2)
    args, bound = detector_args()
    fc.start_all(args)
    expected = expected_answers(fc)
    prompt = PROMPTS[0]
    ref = Stream(fc.http_port, prompt, LONG_TOKENS)
    ref.run()  # undisturbed, in this thread
    assert ref.final is not None and ref.final[0] == "done", (ref.status, ref.error, ref.final)
    ref_text, ref_usage = ref.text(), ref.final[1].get("usage")

    s = Stream(fc.http_port, prompt, LONG_TOKENS)
    s.start()
    deadline = time.monotonic() + 20
    while s.tokens() < 1 and time.monotonic() < deadline and s.is_alive():
        time.sleep(0.005)
    # Only this request is running: the worker with one in flight serves it.
    view = fc.view()
    serving = [i for i in range(1, WORKERS + 1)
               if (worker_of(view, f"w{i}") or {}).get("inflight", 0) >= 1]
    assert len(serving) == 1, f"cannot tell which worker serves the stream: {view}"
    victim = serving[0]
    with Monitor(fc) as mon, Load(fc, expected, clients=2) as load:
        kill_at = LONG_TOKENS // 5
        while s.tokens() < kill_at and s.final is None and time.monotonic() < deadline:
            time.sleep(0.002)
        got_before = s.tokens()
        assert s.final is None, "the generation ended before the kill; make it longer"
        t_kill = fc.workers[victim].kill9()
        t_dead = mon.wait(lambda vw: gone(vw, f"w{victim}"), t_kill, bound + SLACK_S)
        s.join(90)
        load.wait_done(10, after=t_kill, timeout=20)
    records = load.snapshot()
    v.numbers["requests"] = len(records) + 1
    failed = count_failures(v, records, what="load request")
    final = s.final
    complete = (final is not None and final[0] == "done" and s.text() == ref_text and
                final[1].get("usage", {}).get("completion_tokens") ==
                (ref_usage or {}).get("completion_tokens"))
    if not complete:
        failed += 1
        if final is not None and final[0] == "error":
            code = final[1].get("error", {}).get("code")
            v.expect(False, f"the stream ended with an error event ({code}) after "
                     f"{s.tokens()} token events", "failover" if code == "worker_failed" else None)
        elif final is None:
            v.expect(False, f"the stream ended without a final event ({s.error})")
        else:
            v.expect(False, "the streamed answer differs from the undisturbed greedy one "
                     f"({len(s.text())} vs {len(ref_text)} characters; "
                     f"usage {final[1].get('usage')} vs {ref_usage})")
    v.numbers["failed"] = failed
    v.numbers["detect_s"] = sec(t_dead - t_kill) if t_dead else None
    v.numbers["recover_s"] = sec(s.t_final - t_kill) if complete else None
    v.notes.append(f"{LONG_TOKENS}-token greedy stream; w{victim} killed after "
                   f"{got_before} token events had reached the client")
    v.expect(t_dead is not None, f"w{victim} not removed within {bound + SLACK_S:.1f} s")
    v.settle()


def test_3_sigstop_then_sigcont(fc):
    v = Verdict(3)
    # Hung, not dead: the detector's bound is long here (20 s), so routing around the worker
    # is the breaker's job (and, as a hint, the suspect state's).
    args, bound = detector_args(dead_after_s=20.0, fallback_misses=80)
    fc.start_all(args)
    expected = expected_answers(fc)
    breaker_visible = breaker(fc.view(), "w1") is not None
    with Monitor(fc) as mon, Load(fc, expected) as load:
        assert load.wait_done(30), "load did not start"
        vi, hit = busiest_worker(fc)
        victim = f"w{vi}"
        t_stop = time.monotonic()
        fc.workers[vi].signal(signal.SIGSTOP)
        # Without a breaker to watch there is nothing to wait for: hold the worker 3 s.
        t_open = mon.wait(lambda vw: breaker(vw, victim) in ("open", "half_open"), t_stop,
                          BREAKER_BOUND_S if breaker_visible else 0.0)
        hold_until = (t_open + 1.0) if t_open is not None else t_stop + 3.0
        while time.monotonic() < hold_until:
            time.sleep(0.02)
        t_suspect = mon.first(lambda vw: state(vw, victim) in ("suspect", "dead", None), t_stop)
        excluded = [t for t in (t_open, t_suspect) if t is not None]
        t_excl = min(excluded) if excluded else None
        served_elsewhere = [r for r in load.snapshot() if r.ok and t_excl is not None and
                            r.t0 >= t_excl and r.t1 is not None and r.t1 < hold_until]
        vw = fc.view()
        stopped_inflight = (worker_of(vw, victim) or {}).get("inflight")
        t_cont = time.monotonic()
        fc.workers[vi].signal(signal.SIGCONT)
        t_back = None
        deadline = t_cont + REJOIN_BOUND_S
        while t_back is None and time.monotonic() < deadline:
            for r in load.snapshot():
                if r.ok and r.worker == victim and r.t0 > t_cont:
                    t_back = r.t1
                    break
            time.sleep(0.05)
        load.wait_done(20, after=(t_back or time.monotonic()), timeout=15)
    records = load.snapshot()
    v.numbers["requests"] = len(records)
    v.numbers["failed"] = count_failures(v, records)
    v.numbers["detect_s"] = sec(t_excl - t_stop) if t_excl else None
    v.numbers["recover_s"] = sec(t_back - t_cont) if t_back else None
    seen_states = sorted({state(x, victim) or "removed" for _, x in mon.views(t_stop, t_cont)})
    v.notes.append(f"{victim} stopped with {hit} request(s) in flight, for "
                   f"{t_cont - t_stop:.1f} s; states while stopped: "
                   f"{', '.join(seen_states)}; breaker opened after "
                   f"{'%.2f s' % (t_open - t_stop) if t_open else 'never'}; "
                   f"{len(served_elsewhere)} requests served by the others meanwhile; "
                   f"{stopped_inflight} left waiting on {victim}")
    if v.expect(breaker_visible, "no breaker state for the workers in /api/cluster",
                "breaker"):
        v.expect(t_open is not None, f"{victim}'s breaker did not open within "
                 f"{BREAKER_BOUND_S} s of SIGSTOP", "breaker")
    v.expect(t_excl is not None, f"{victim} was never taken out of rotation (breaker or "
             "suspect) while stopped")
    v.expect(len(served_elsewhere) >= 5, "requests did not go elsewhere while "
             f"{victim} was stopped ({len(served_elsewhere)} served)")
    v.expect(t_back is not None, f"{victim} served nothing within {REJOIN_BOUND_S} s of SIGCONT")
    v.settle()


def test_4_partition_then_heal(fc, net):
    v = Verdict(4)
    args, bound = detector_args()
    fc.start_all(args)
    expected = expected_answers(fc)
    regs0 = fc.view()["registrations"]["accepted"]
    with Monitor(fc) as mon, Load(fc, expected) as load:
        assert load.wait_done(30), "load did not start"
        vi, hit = busiest_worker(fc)
        victim = f"w{vi}"
        t_part = time.monotonic()
        net.partition(vi)
        t_dead = mon.wait(lambda vw: gone(vw, victim), t_part, bound + SLACK_S)
        t_wait = time.monotonic() + 1.0
        while time.monotonic() < t_wait:
            time.sleep(0.02)
        t_heal = time.monotonic()
        net.heal(vi)
        t_active = mon.wait(lambda vw: state(vw, victim) == "active" and
                            vw["registrations"]["accepted"] > regs0, t_heal, REJOIN_BOUND_S)
        t_back = None
        deadline = t_heal + REJOIN_BOUND_S
        while t_back is None and time.monotonic() < deadline:
            for r in load.snapshot():
                if r.ok and r.worker == victim and r.t0 > t_heal:
                    t_back = r.t1
                    break
            time.sleep(0.05)
        load.wait_done(20, after=time.monotonic(), timeout=15)
    records = load.snapshot()
    v.numbers["requests"] = len(records)
    v.numbers["failed"] = count_failures(v, records)
    v.numbers["detect_s"] = sec(t_dead - t_part) if t_dead else None
    v.numbers["recover_s"] = sec(t_back - t_heal) if t_back else None
    v.notes.append(f"all packets of {victim}'s namespace dropped (nftables), {hit} "
                   f"request(s) in flight on it, for "
                   f"{t_heal - t_part:.1f} s; detector bound {bound:.2f} s; re-registered "
                   f"{'%.2f s' % (t_active - t_heal) if t_active else 'never'} after the heal")
    v.expect(t_dead is not None, f"{victim} not removed within the bound "
             f"({bound:.2f} s + {SLACK_S} s slack)")
    v.expect(t_active is not None, f"{victim} did not re-register within {REJOIN_BOUND_S} s")
    v.expect(t_back is not None, f"{victim} served nothing within {REJOIN_BOUND_S} s of the heal")
    v.settle()


def _defaults_false_removals_per_hour(loss=0.30):
    """False removals per worker-hour that the master's *default* detector gives a healthy
    worker with `loss` heartbeat loss: probes per hour × loss^k (docs/reliability.md)."""
    text = master_help()
    m_int = re.search(r"--heartbeat-interval\s+\S+\s+.*?\[([0-9.]+)(ms|s|m)?\]", text)
    m_k = re.search(r"--heartbeat-misses\s+\S+\s+.*?\[(\d+)\]", text)
    if not m_int or not m_k:
        return None, "cannot read the defaults of --heartbeat-interval/--heartbeat-misses"
    t = float(m_int.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m_int.group(2)]
    k = int(m_k.group(1))
    return 3600.0 / t * loss ** k, f"defaults T = {t:g} s, k = {k}"


def test_5_heartbeat_loss_and_delay(fc, net):
    v = Verdict(5)
    args, bound = detector_args()
    fc.start_master(args)
    for i in range(1, WORKERS + 1):
        fc.start_relay(i, delay_ms=50)
        fc.start_worker(i, advertise=net.relay_ip(i))
    ids = [f"w{i}" for i in range(1, WORKERS + 1)]
    fc.wait_active(ids)
    expected = expected_answers(fc)
    regs0 = fc.view()["registrations"]["accepted"]
    window = 12.0
    with Monitor(fc, period=0.1) as mon, Load(fc, expected, clients=3) as load:
        t_on = time.monotonic()
        for i in range(1, WORKERS + 1):
            net.udp_loss(i, 8889, 30)
        while time.monotonic() < t_on + window:
            time.sleep(0.05)
        t_off = time.monotonic()
        counters = [net.loss_counters(i) for i in range(1, WORKERS + 1)]
        end_view = fc.view()
    records = [r for r in load.snapshot()]
    views = mon.views(t_on, t_off)
    dead_seen = sorted({w for _, x in views for w in ids if gone(x, w)})
    states_seen = sorted({state(x, w) or "removed" for _, x in views for w in ids})
    v.numbers["requests"] = len(records)
    v.numbers["failed"] = count_failures(v, records)
    v.numbers["detect_s"] = None
    v.numbers["recover_s"] = None
    seen = sum(c[0] for c in counters)
    dropped = sum(c[1] for c in counters)
    rtts = [(worker_of(end_view, w) or {}).get("rtt_ms") for w in ids]
    v.notes.append(f"{window:.0f} s; {dropped} of {seen} heartbeats dropped "
                   f"({100.0 * dropped / max(seen, 1):.0f} %); RTT {rtts} ms; states seen: "
                   f"{', '.join(states_seen)}; false removals: {len(dead_seen)}")
    # The fault was really there: about 30 % dropped, about 100 ms round trip.
    v.expect(seen >= 30 and 0.18 <= dropped / max(seen, 1) <= 0.42,
             f"the loss rule did not act as configured ({dropped}/{seen})")
    v.expect(all(r is not None and r >= 90 for r in rtts),
             f"heartbeat RTT does not show the 2 × 50 ms relay delay: {rtts}")
    # Today's master probes at a fixed cadence, so a worker's own --master-timeout (8
    # heartbeats) can run out under loss (0.3^8 per heartbeat) and it registers again; the
    # detector of docs/reliability.md probes every S after a miss, which makes that
    # impossible. So with the fallback settings a removal is the detector's gap.
    fallback_gap = None if has_detector_flags() else "detector"
    v.expect(not dead_seen, f"healthy workers marked dead under 30 % loss: {dead_seen}",
             fallback_gap)
    v.expect(end_view["registrations"]["accepted"] == regs0,
             "workers had to register again during the loss", fallback_gap)
    # "With the defaults": the master's default detector, at 30 % loss.
    rate, what = _defaults_false_removals_per_hour()
    v.notes.append(f"master {what}: {rate:.2g} false removals per worker-hour at 30 % loss"
                   if rate is not None else what)
    v.expect(rate is not None and rate <= 1e-3,
             f"with its defaults ({what}) the master would remove a healthy worker "
             f"{'?' if rate is None else '%.3g' % rate} times per hour at 30 % heartbeat loss",
             "detector")
    v.settle()


def test_6_all_workers_gone_then_back(fc):
    v = Verdict(6)
    args, bound = detector_args()
    fc.start_all(args)
    expected = expected_answers(fc)
    ids = [f"w{i}" for i in range(1, WORKERS + 1)]
    ready_during = None
    with Monitor(fc) as mon, Load(fc, expected) as load:
        assert load.wait_done(30), "load did not start"
        t_kill = time.monotonic()
        for i in range(1, WORKERS + 1):
            fc.workers[i].kill9()
        t_killed = time.monotonic()
        t_none = mon.wait(lambda vw: all(gone(vw, w) for w in ids), t_kill, bound + SLACK_S)
        deadline = time.monotonic() + 5
        t_503 = None
        while t_503 is None and time.monotonic() < deadline:
            for r in load.snapshot():
                if r.t0 >= t_killed and r.status == 503 and r.t1 is not None:
                    t_503 = r.t1
                    break
            time.sleep(0.02)
        ready_during = http_json(fc.http_port, "GET", "/ready")
        t_wait = time.monotonic() + 1.0
        while time.monotonic() < t_wait:
            time.sleep(0.02)
        t_back = time.monotonic()
        for i in range(1, WORKERS + 1):
            fc.start_worker(i)
        t_all = fc.wait_active(ids)
        t_ok = None
        deadline = time.monotonic() + 10
        while t_ok is None and time.monotonic() < deadline:
            for r in load.snapshot():
                if r.ok and r.t0 > t_back:
                    t_ok = r.t1
                    break
            time.sleep(0.02)
        load.wait_done(40, after=t_all, timeout=20)
    ready_after = http_json(fc.http_port, "GET", "/ready")
    records = load.snapshot()

    def unavailable(r):  # the right answer while no worker is there (or not back yet)
        return (r.status == 503 and r.retry_after is not None and r.retry_after.isdigit() and
                int(r.retry_after) >= 1 and r.t0 < t_all)

    v.numbers["requests"] = len(records)
    v.numbers["failed"] = count_failures(v, records, expected_bad=unavailable)
    v.numbers["detect_s"] = sec(t_503 - t_kill) if t_503 else None
    v.numbers["recover_s"] = sec(t_ok - t_back) if t_ok else None
    n503 = sum(1 for r in records if unavailable(r))
    v.numbers["expected_errors"] = n503
    v.numbers["expected_errors_what"] = "503 + Retry-After, by design"
    v.notes.append(f"{n503} answers 503 with Retry-After while no worker was there; workers "
                   f"restarted after {t_back - t_kill:.1f} s, all active "
                   f"{t_all - t_back:.2f} s later")
    v.expect(t_none is not None, "the killed workers were not all removed")
    v.expect(t_503 is not None, "no 503 with Retry-After while no worker was there")
    st, hdr, _ = ready_during
    v.expect(st == 503 and "retry-after" in hdr, f"/ready with no worker: {st} {hdr}")
    v.expect(ready_after[0] == 200, f"/ready after the workers came back: {ready_after[0]}")
    v.expect(t_ok is not None, "no successful request after the workers came back")
    v.settle()


def test_7_master_restart_under_load(fc):
    v = Verdict(7)
    args, bound = detector_args()
    fc.start_all(args)
    expected = expected_answers(fc)
    ids = [f"w{i}" for i in range(1, WORKERS + 1)]
    pids = {i: p.pid for i, p in fc.workers.items()}
    with Load(fc, expected) as load:
        assert load.wait_done(30), "load did not start"
        t_kill = fc.master.kill9()
        time.sleep(0.5)
        t_restart = time.monotonic()
        fc.start_master()
        t_up = time.monotonic()
        t_all = fc.wait_active(ids, timeout=REJOIN_BOUND_S)
        t_ok = None
        deadline = time.monotonic() + 10
        while t_ok is None and time.monotonic() < deadline:
            for r in load.snapshot():
                if r.ok and r.t0 > t_restart:
                    t_ok = r.t1
                    break
            time.sleep(0.02)
        load.wait_done(40, after=t_all, timeout=20)
    records = load.snapshot()

    def during_outage(r):  # requests that met the dead master, or the new one before workers
        return r.t0 < t_all and (r.t1 is None or r.t1 >= t_kill) and (
            r.err is not None or (r.status == 503 and r.retry_after is not None))

    v.numbers["requests"] = len(records)
    outage = sum(1 for r in records if not r.ok and during_outage(r))
    failed_after = count_failures(v, records, expected_bad=during_outage)
    v.numbers["failed"] = failed_after
    v.numbers["expected_errors"] = outage
    v.numbers["expected_errors_what"] = "while the master was down"
    v.numbers["detect_s"] = sec(t_all - t_up)
    v.numbers["recover_s"] = sec(t_ok - t_kill) if t_ok else None
    v.notes.append(f"master down {t_restart - t_kill:.1f} s (kill -9, same ports); {outage} "
                   "requests met the dead master (connection refused/reset) or a master "
                   f"without workers yet (503); {failed_after} failed otherwise")
    v.expect(all(fc.workers[i].alive() and fc.workers[i].pid == pids[i] for i in pids),
             "a worker restarted or died (they must re-register by themselves)")
    v.expect(t_ok is not None, "no successful request after the restart")
    v.settle()


# ---- the results table --------------------------------------------------------------------

TABLE_HEADING = "## Fault-test results"


def _fmt_s(x):
    if x is None:
        return "—"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def render_table(results):
    """The markdown section for docs/reliability.md from the results document."""
    sc = results.get("scenarios", {})
    lines = [
        TABLE_HEADING,
        "",
        "Written by `python3 tests/system/test_faults.py --render` from the JSON file that "
        "`tests/system/test_faults.py` leaves in `build/fault-results.json` (real processes; "
        "three workers, each in its own network namespace; six clients sending 24-token greedy "
        "requests; heartbeats every 250 ms; every answer compared with the undisturbed one). "
        f"Last run: {results.get('updated', '?')}.",
        "",
        "| scenario | requests sent | failed | time to detect | time to recover | result |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n in range(1, 8):
        e = sc.get(str(n))
        if e is None:
            lines.append(f"| {n}. {TITLES[n]} | not run | | | | |")
            continue
        result = e["outcome"]
        if result == "xfail":
            result = "expected failure: master lacks " + ", ".join(e.get("gaps", []))
        failed = str(e["failed"])
        if e.get("expected_errors"):
            failed += f" (+{e['expected_errors']} {e.get('expected_errors_what', '')})"
        lines.append(f"| {n}. {TITLES[n]} | {e['requests']} | {failed} | "
                     f"{_fmt_s(e.get('detect_s'))} | {_fmt_s(e.get('recover_s'))} | {result} |")
    lines += [
        "",
        "What the times measure: (1) kill → the worker leaves `/api/cluster`; kill → the last "
        "request that was in flight at the kill has its answer. (2) kill → removal; kill → the "
        "stream's final event. (3) SIGSTOP → the worker is out of rotation (breaker open, or "
        "suspect); SIGCONT → it serves a request again. (4) partition → removal; heal → it "
        "serves a request again. (5) nothing to detect: the check is that no healthy worker is "
        "removed. (6) kill → first 503 with Retry-After; workers restarted → first success. "
        "(7) new master up → all workers registered again; master killed → first success.",
        "",
    ]
    for n in range(1, 8):
        e = sc.get(str(n))
        if e is None:
            continue
        detail = "; ".join(e.get("notes", []))
        lines.append(f"- **{n}.** {detail} (commit {e.get('commit', '?')}, "
                     f"{e.get('duration_s', '?')} s)")
        for p in e.get("problems", []):
            lines.append(f"  - {p}")
    return "\n".join(_wrap(line) for line in lines) + "\n"


def _wrap(line, width=96):
    """Wraps prose and list items to the doc's width; table rows stay on one line."""
    import textwrap
    if line.startswith("|") or len(line) <= width:
        return line
    indent = len(line) - len(line.lstrip(" "))
    sub = " " * (indent + 2) if line.lstrip().startswith("- ") else " " * indent
    return textwrap.fill(line, width=width, subsequent_indent=sub, break_long_words=False,
                         break_on_hyphens=False)


def render_into_doc(results_path=RESULTS, doc_path=DOC):
    with open(results_path, encoding="utf-8") as f:
        results = json.load(f)
    with open(doc_path, encoding="utf-8") as f:
        doc = f.read()
    start = doc.index(TABLE_HEADING)
    nxt = doc.find("\n## ", start + len(TABLE_HEADING))
    end = len(doc) if nxt < 0 else nxt + 1
    section = render_table(results)
    if nxt >= 0:
        section += "\n"
    new = doc[:start] + section + doc[end:]
    with open(doc_path, "w", encoding="utf-8") as f:
        f.write(new)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="render the fault-test results table")
    ap.add_argument("--render", action="store_true", help="rewrite the table in the doc")
    ap.add_argument("--results", default=RESULTS)
    ap.add_argument("--doc", default=DOC)
    a = ap.parse_args()
    if a.render:
        render_into_doc(a.results, a.doc)
    else:
        with open(a.results, encoding="utf-8") as f:
            sys.stdout.write(render_table(json.load(f)))
