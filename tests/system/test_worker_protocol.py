"""System tests of `dais worker` against a small fake master written here in Python from
docs/protocol.md (frames, envelope, HMAC registration, sealed heartbeat datagrams), so the
worker is checked against an independent implementation of the protocol.

Covered: registration and the master's proof, heartbeats both ways with metrics, one streamed
greedy inference on stories260K equal to the reference text, continuation from tokens
(failover), cancel, busy, a wrong token (permanent reject → exit 1), a transient reject
(retried), a master that is not up yet (DNS name, backoff), a master that goes away and comes
back (re-registration without restart, in-flight work cancelled), silent heartbeats
(re-registration), malformed frames and forged datagrams (connection closed / dropped and
counted, never a crash), SIGTERM drain.
"""
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import time
import urllib.request
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("DAIS_BIN", os.path.join(ROOT, "build", "release", "dais"))
SHARED = os.environ.get("DAIS_SHARED", os.path.join(ROOT, "..", "shared"))
MODEL = os.path.join(SHARED, "models", "stories260K.gguf")
TOKEN = "test-cluster-token"

REF_IDS = [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410,
           408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370,
           432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337, 335, 312, 432, 398, 312, 286,
           267, 414, 270, 333, 415, 426, 13, 438, 310]
REF_TEXT = ("Once upon a time, there was a little girl named Lily. She loved to play outside in "
            "the park. One day, she saw a big, red ball. She wanted to play with it, but it was "
            "too high.\nLily")
PROMPT = "Once upon a time"

pytestmark = pytest.mark.skipif(not (os.access(BIN, os.X_OK) and os.path.exists(MODEL)),
                                reason="needs the dais binary (DAIS_BIN) and stories260K")


# ---- protocol, written from docs/protocol.md ----------------------------------------------

def envelope(mtype, data, src="master", dst="w1", meta=None):
    now = time.time()
    return json.dumps({"message_id": str(uuid.uuid4()), "message_type": mtype,
                       "source_node": src, "target_node": dst,
                       "payload": {"data": data, "timestamp": now, "metadata": meta or {}},
                       "timestamp": now}).encode()


def frame(j, b=b""):
    return b"DAIS\x01\x00\x00\x00" + struct.pack(">II", len(j), len(b)) + j + b


def ids_bin(ids):
    return b"".join(struct.pack("<i", i) for i in ids)


def ids_from(b):
    return [struct.unpack_from("<i", b, 4 * i)[0] for i in range(len(b) // 4)]


def hmac_hex(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()


def seal(j, session, seq, key):
    body = frame(j) + struct.pack(">QQ", session, seq)
    return body + hmac.new(key, body, hashlib.sha256).digest()


class Conn:
    """One accepted cluster connection, speaking frames."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.stash = []  # frames read while waiting for another request's frames

    def read_frame(self, timeout=10.0):
        self.sock.settimeout(timeout)
        end = time.time() + timeout
        while True:
            if len(self.buf) >= 16:
                assert self.buf[:5] == b"DAIS\x01", self.buf[:16]
                jl, bl = struct.unpack(">II", self.buf[8:16])
                if len(self.buf) >= 16 + jl + bl:
                    j = json.loads(self.buf[16:16 + jl])
                    b = self.buf[16 + jl:16 + jl + bl]
                    self.buf = self.buf[16 + jl + bl:]
                    return j, b
            if time.time() > end:
                raise TimeoutError("no frame")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def send(self, mtype, data, b=b"", dst="w1", meta=None):
        self.sock.sendall(frame(envelope(mtype, data, dst=dst, meta=meta), b))

    def closed(self, timeout=5.0):
        """True when the peer closes within timeout (frames in between are discarded)."""
        self.sock.settimeout(timeout)
        end = time.time() + timeout
        try:
            while time.time() < end:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionError, OSError):
            return True
        return False

    def close(self):
        self.sock.close()


class FakeMaster:
    def __init__(self, token=TOKEN, port=0):
        self.token = token.encode()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.seq = 0

    def accept(self, timeout=15.0):
        self.lsock.settimeout(timeout)
        s, _ = self.lsock.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return Conn(s)

    def register(self, timeout=15.0, interval_ms=200):
        """Accepts a worker, checks its NODE_DISCOVERY and answers NODE_ACCEPT."""
        c = self.accept(timeout)
        j, b = c.read_frame()
        assert j["message_type"] == "NODE_DISCOVERY", j
        d = j["payload"]["data"]
        a = d["auth"]
        want = hmac_hex(self.token, "dais-v1-discovery\n%s\n%d\n%s"
                        % (d["node_id"], a["timestamp_ms"], a["nonce"]))
        c.discovery = d
        c.auth_ok = hmac.compare_digest(want, a["hmac"])
        c.node = d["node_id"]
        if not c.auth_ok:
            return c
        mnonce = secrets.token_hex(16)
        self.session = secrets.randbelow(1 << 40) + 1
        c.send("NODE_ACCEPT", {
            "node_id": c.node, "session_id": self.session, "master_nonce": mnonce,
            "hmac": hmac_hex(self.token, "dais-v1-accept\n%s\n%s\n%s"
                             % (c.node, a["nonce"], mnonce)),
            "heartbeat_interval_ms": interval_ms, "heartbeat_port": self.udp.getsockname()[1]},
            dst=c.node)
        self.key = hmac.new(self.token, ("dais-v1-heartbeat\n%s\n%s\n%s"
                                         % (c.node, mnonce, a["nonce"])).encode(),
                            hashlib.sha256).digest()
        self.hb_addr = ("127.0.0.1", d["heartbeat_port"])
        self.rx_seq = 0
        return c

    def heartbeat(self, node="w1", key=None, session=None, seq=None, timeout=2.0):
        """Sends one HEARTBEAT; returns the verified HEARTBEAT_ACK payload or None."""
        self.seq += 1
        j = envelope("HEARTBEAT", {"interval_ms": 200, "cluster_state": "ok",
                                   "workers_active": 1, "workers_total": 1,
                                   "sent_ms": int(time.time() * 1000)}, dst=node)
        self.udp.sendto(seal(j, session or self.session, seq or self.seq, key or self.key),
                        self.hb_addr)
        self.udp.settimeout(timeout)
        try:
            dgram, _ = self.udp.recvfrom(65536)
        except socket.timeout:
            return None
        body, tag = dgram[:-32], dgram[-32:]
        assert hmac.compare_digest(hmac.new(self.key, body, hashlib.sha256).digest(), tag)
        jl, bl = struct.unpack(">II", body[8:16])
        assert bl == 0 and len(body) == 16 + jl + 16
        session, seq = struct.unpack(">QQ", body[16 + jl:])
        assert session == self.session and seq > self.rx_seq
        self.rx_seq = seq
        env = json.loads(body[16:16 + jl])
        assert env["message_type"] == "HEARTBEAT_ACK"
        return env["payload"]["data"]

    def close(self):
        self.lsock.close()
        self.udp.close()


def infer(c, rid, prompt=None, ids=None, n_generated=0, max_tokens=60, stop=None,
          temperature=0.0, timeout=30.0):
    """Sends INFERENCE_REQUEST and collects its frames until the final one."""
    data = {"request_id": rid, "params": {"temperature": temperature, "max_tokens": max_tokens,
                                          "stop": stop or []}}
    if prompt is not None:
        data["prompt"] = prompt
    else:
        data["n_generated"] = n_generated
    c.send("INFERENCE_REQUEST", data, ids_bin(ids) if ids else b"",
           meta={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    return collect(c, rid, timeout)


def collect(c, rid, timeout=30.0):
    """Frames of request `rid` until its final frame (or ERROR); frames of other requests
    read meanwhile are kept for their own collect()."""
    out = {"text": "", "ids": [], "prompt_ids": None, "frames": 0, "final": None, "error": None}
    end = time.time() + timeout
    while time.time() < end:
        mine = [f for f in c.stash if f[0]["payload"]["data"].get("request_id") == rid]
        if mine:
            c.stash.remove(mine[0])
            j, b = mine[0]
        else:
            j, b = c.read_frame(timeout=max(0.1, end - time.time()))
        d = j["payload"]["data"]
        if d.get("request_id") != rid:
            if j["message_type"] in ("INFERENCE_RESPONSE", "ERROR"):
                c.stash.append((j, b))
            continue
        if j["message_type"] == "ERROR":
            out["error"] = d
            return out
        if j["message_type"] != "INFERENCE_RESPONSE":
            continue
        assert d["index"] == out["frames"], (d["index"], out["frames"])
        out["frames"] += 1
        if d.get("prompt_token_ids"):
            out["prompt_ids"] = ids_from(b)
            continue
        out["text"] += d["text"]
        out["ids"] += ids_from(b)
        if d["final"]:
            out["final"] = d
            return out
    raise TimeoutError("no final frame for " + rid)


# ---- process helpers -----------------------------------------------------------------------

def start_worker(master_port, tmp_path, *extra, token=TOKEN, host="127.0.0.1", name="w1"):
    log = open(tmp_path / ("%s.log" % name), "w+")
    env = dict(os.environ, DAIS_CLUSTER_TOKEN=token)
    args = [BIN, "worker", "--model", MODEL, "--master", "%s:%d" % (host, master_port),
            "--id", name, "--addr", "127.0.0.1", "--heartbeat-port", "0", "--metrics-port", "0",
            "--threads", "1", "--retry-base", "50ms", "--retry-max", "300ms",
            # the fake master heartbeats only when a test asks; tests that check the
            # silence timeout pass their own (a later flag wins)
            "--master-timeout", "60s", "--log-level", "debug"] + list(extra)
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    p.logfile = log
    return p


def log_text(p):
    p.logfile.flush()
    p.logfile.seek(0)
    return p.logfile.read()


def wait_log(p, pattern, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        m = re.search(pattern, log_text(p))
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError("log never matched %r:\n%s" % (pattern, log_text(p)[-3000:]))


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    p.logfile.close()


def metrics(p):
    port = int(wait_log(p, r"metrics 127\.0\.0\.1:(\d+)").group(1))
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        return r.read().decode()


@pytest.fixture
def master():
    m = FakeMaster()
    yield m
    m.close()


# ---- tests -------------------------------------------------------------------------------

def test_register_heartbeat_and_reference_inference(master, tmp_path):
    w = start_worker(master.port, tmp_path)
    try:
        c = master.register()
        assert c.auth_ok
        d = c.discovery
        assert d["protocol_version"] == 1 and d["node_id"] == "w1"
        caps = d["capabilities"]
        assert caps["model"]["hash"] == \
            "270cba1bd5109f42d03350f60406024560464db173c0e387d91f0426d3bd256d"
        assert caps["model"]["n_vocab"] == 512 and caps["model"]["n_layers"] == 5
        assert caps["slots"] == 4 and caps["cores"] >= 1 and caps["memory_total"] > 0
        wait_log(w, r"registered with master master")
        ack = master.heartbeat()
        assert ack is not None, log_text(w)
        assert ack["health"] == "ok" and ack["echo_seq"] == master.seq
        assert 0 <= ack["system"]["cpu_percent"] <= 100
        assert ack["system"]["mem_total"] >= ack["system"]["mem_used"] > 0
        assert ack["load"]["slots"] == 4 and ack["load"]["active"] == 0

        r = infer(c, "req-1", prompt=PROMPT, max_tokens=60)
        assert r["error"] is None
        assert r["prompt_ids"] == [1, 403, 407, 261, 378]
        assert r["ids"] == REF_IDS
        assert PROMPT + r["text"] == REF_TEXT
        assert r["frames"] > 30  # streamed
        f = r["final"]
        assert f["finish_reason"] == "length"
        assert f["usage"] == {"prompt_tokens": 5, "completion_tokens": 60}
        assert 0 < f["timings"]["ttft_ms"] <= f["timings"]["total_ms"]

        ack = master.heartbeat()
        assert ack["load"]["requests_total"] == 1 and ack["load"]["tokens_total"] == 60
        # A replayed heartbeat (same seq) is dropped silently and counted.
        assert master.heartbeat(seq=master.seq) is None
        # A forged one (wrong key) too.
        assert master.heartbeat(key=b"k" * 32) is None
        text = metrics(w)
        assert 'dais_worker_heartbeats_total{result="replay"} 1' in text
        assert 'dais_worker_heartbeats_total{result="bad_mac"} 1' in text
        assert 'dais_worker_requests_total{result="ok"} 1' in text
        assert "dais_worker_decode_tokens_total 60" in text
        assert "dais_worker_master_connected 1" in text
        assert w.poll() is None
    finally:
        stop(w)


def test_failover_continuation_and_stop_and_busy(master, tmp_path):
    w = start_worker(master.port, tmp_path, "--slots", "1", "--queue", "0")
    try:
        c = master.register()
        wait_log(w, r"registered with master")
        k = 17
        r = infer(c, "cont", ids=[1, 403, 407, 261, 378] + REF_IDS[:k], n_generated=k,
                  max_tokens=60 - k)
        assert r["ids"] == REF_IDS[k:]
        assert REF_TEXT.endswith(r["text"]) and len(r["text"]) < len(REF_TEXT) - len(PROMPT)
        r = infer(c, "stop", prompt=PROMPT, max_tokens=60, stop=["girl"])
        assert r["text"] == ", there was a little "
        assert r["final"]["finish_reason"] == "stop"
        # One slot, no queue: a second request while the first runs is refused as busy.
        c.send("INFERENCE_REQUEST", {"request_id": "long", "prompt": PROMPT,
                                     "params": {"temperature": 0, "max_tokens": 400}})
        c.send("INFERENCE_REQUEST", {"request_id": "extra", "prompt": PROMPT,
                                     "params": {"temperature": 0, "max_tokens": 5}})
        r = collect(c, "extra")
        assert r["error"]["code"] == "busy"
        c.send("CANCEL", {"request_id": "long", "reason": "client_gone"})
        r = collect(c, "long")
        assert r["final"]["finish_reason"] == "cancelled"
        n = len(r["ids"])
        assert n < 400 and r["ids"][:min(n, 60)] == REF_IDS[:min(n, 60)]
        # Unknown model and an out-of-range token id are refused per request.
        c.send("INFERENCE_REQUEST", {"request_id": "m", "model": "gpt-9", "prompt": "x"})
        assert collect(c, "m")["error"]["code"] == "unknown_model"
        r = infer(c, "badtok", ids=[1, 9999])
        assert r["error"]["code"] == "bad_request"
        # A reserved message type is answered, the connection stays.
        c.send("MODEL_UPDATE", {})
        j, _ = c.read_frame()
        assert j["message_type"] == "ERROR" and j["payload"]["data"]["code"] == "unsupported"
        assert infer(c, "again", prompt=PROMPT, max_tokens=3)["ids"] == REF_IDS[:3]
    finally:
        stop(w)


def test_wrong_token_is_rejected_and_worker_exits(master, tmp_path):
    w = start_worker(master.port, tmp_path, token="not-the-token")
    try:
        c = master.register()
        assert not c.auth_ok
        c.send("NODE_REJECT", {"reason": "bad_token", "message": "token mismatch",
                               "retry": False}, dst="w1")
        assert w.wait(10) == 1
        assert re.search(r"rejected this worker: bad_token \(token mismatch\); not retrying",
                         log_text(w))
    finally:
        stop(w)


def test_transient_reject_then_accept(master, tmp_path):
    w = start_worker(master.port, tmp_path)
    try:
        c = master.accept()
        j, _ = c.read_frame()
        nonce1 = j["payload"]["data"]["auth"]["nonce"]
        c.send("NODE_REJECT", {"reason": "overloaded", "message": "busy", "retry": True,
                               "retry_after_ms": 200}, dst="w1")
        t0 = time.time()
        c2 = master.register()
        assert time.time() - t0 >= 0.15  # honoured retry_after_ms
        assert c2.auth_ok and c2.discovery["auth"]["nonce"] != nonce1
        wait_log(w, r"registered with master")
    finally:
        stop(w)


def test_master_not_up_yet_dns_name_and_restart(tmp_path):
    # Reserve a port, start the worker against "localhost" before anyone listens.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    w = start_worker(port, tmp_path, host="localhost")
    try:
        wait_log(w, r"cannot register with the master at localhost")
        time.sleep(0.5)
        m = FakeMaster(port=port)
        c = m.register()
        assert c.auth_ok
        wait_log(w, r"registered with master")
        c.send("INFERENCE_REQUEST", {"request_id": "inflight", "prompt": PROMPT,
                                     "params": {"temperature": 0, "max_tokens": 2000}})
        c.read_frame()  # prompt ids: the request is running
        # The master goes away (process restart): the worker cancels and re-registers.
        c.close()
        m.close()
        # The close reads as EOF, or as a reset when the worker still had frames in flight
        # (the fake master leaves them unread); "; cancelled the requests it had sent" follows
        # when the generation was still running, which on a fast machine it may not be
        # (test_failover_continuation_and_stop_and_busy covers CANCEL itself).
        wait_log(w, r"lost the master: (the master closed the connection|connection error)")
        m2 = FakeMaster(port=port)
        c2 = m2.register()
        assert c2.auth_ok
        wait_log(w, r"(?s)lost the master.*registered with master")
        assert m2.heartbeat() is not None
        assert infer(c2, "after", prompt=PROMPT, max_tokens=5)["ids"] == REF_IDS[:5]
        assert w.poll() is None
        m2.close()
    finally:
        stop(w)


def test_silent_master_and_malformed_frames(master, tmp_path):
    w = start_worker(master.port, tmp_path, "--master-timeout", "600ms")
    try:
        c = master.register()
        wait_log(w, r"registered with master")
        # No heartbeats: the worker gives up on this session and registers again.
        c2 = master.register(timeout=10)
        assert c2.auth_ok
        assert re.search(r"no heartbeat for", log_text(w))
        # Garbage instead of a frame: connection closed with a logged reason, then re-register.
        assert master.heartbeat() is not None
        c2.sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c2.closed()
        wait_log(w, r"malformed frame: bad magic .*\(first bytes 474554")
        c3 = master.register()
        for bad in (
            frame(b"{not json"),
            frame(envelope("HEARTBEAT", {}, dst="someone-else")),
            b"DAIS\x01\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00",
            frame(envelope("INFERENCE_REQUEST", {"request_id": "x", "prompt": "a",
                                                 "params": {"top_p": 7}})),
        ):
            assert master.heartbeat() is not None
            c3.sock.sendall(bad)
            assert c3.closed()
            c3 = master.register()
        assert w.poll() is None
        text = metrics(w)
        assert re.search(r'dais_worker_protocol_errors_total\{reason="frame"\} [2-9]', text)
        assert 'dais_worker_registrations_total{result="accepted"}' in text
    finally:
        stop(w)


def test_sigterm_drains(master, tmp_path):
    w = start_worker(master.port, tmp_path)
    try:
        c = master.register()
        wait_log(w, r"registered with master")
        c.send("INFERENCE_REQUEST", {"request_id": "d1", "prompt": PROMPT,
                                     "params": {"temperature": 0, "max_tokens": 200}})
        c.read_frame()
        w.send_signal(signal.SIGTERM)
        seen_drain = False
        final = None
        while final is None:
            j, b = c.read_frame()
            d = j["payload"]["data"]
            if j["message_type"] == "DRAIN":
                seen_drain = True
                assert d["reason"] == "shutdown"
            elif j["message_type"] == "INFERENCE_RESPONSE" and d["final"]:
                final = d
        assert seen_drain
        assert final["finish_reason"] in ("length", "stop")
        assert w.wait(10) == 0
    finally:
        stop(w)
