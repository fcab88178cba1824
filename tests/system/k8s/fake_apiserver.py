#!/usr/bin/env python3
"""A stand-in for the Kubernetes API server, for dais's discovery tests.

It serves GET /api/v1/namespaces/{ns}/pods over HTTPS with a certificate it issues from its
own CA (made with the `openssl` CLI), and answers with real PodList documents, or with one of
the failures a real API server (or the network in front of it) produces.

Everything is controlled through files in --dir, re-read on every request, so a test changes
the server's behaviour between polls by rewriting a file:
  pods.json       [{"name", "uid", "namespace"?, "phase", "ip"?, "labels", "ready"?,
                    "deleting"?}, ...]  expanded into full Pod objects
  mode            ok | 401 | 403 | 500 | 503 | 429 | 404 | hang | truncated | truncated_json |
                  malformed | huge | huge_chunked | wrong_kind | no_items
  expected_token  the bearer token the server accepts (anything else: 401)
Files it writes:
  ca.crt, other-ca.crt    the CA that signed the server certificate, and an unrelated CA
  requests.log            one JSON line per request: path, query, authorization
  port                    the TCP port, written once the server listens (127.0.0.1)
The labelSelector query parameter is honoured (=, ==, !=, in, notin, exists, !exists), as is
the namespace in the path.
"""
import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG_SECONDS = 30


def sh(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certs(d):
    """CA, a server certificate for IP:127.0.0.1 signed by it, and an unrelated CA."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    sh("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
       "-subj", "/CN=dais-test-ca", *ca_ext, cwd=d)
    sh("openssl", "req", "-x509", *ec, "-keyout", "other-ca.key", "-out", "other-ca.crt",
       "-days", "2", "-subj", "/CN=dais-other-ca", *ca_ext, cwd=d)
    sh("openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr",
       "-subj", "/CN=kubernetes", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc\n")
    sh("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
       "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext", cwd=d)


def parse_selector(text):
    """Kubernetes label selector → list of (key, op, values)."""
    reqs, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            reqs.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        reqs.append(cur)
    out = []
    for r in reqs:
        r = r.strip()
        for word, op in ((" notin ", "notin"), (" in ", "in")):
            if word in r:
                k, vals = r.split(word, 1)
                vals = vals.strip()
                if not (vals.startswith("(") and vals.endswith(")")):
                    raise ValueError("bad set " + r)
                out.append((k.strip(), op, [v.strip() for v in vals[1:-1].split(",")]))
                break
        else:
            if "!=" in r:
                k, v = r.split("!=", 1)
                out.append((k.strip(), "!=", [v.strip()]))
            elif "==" in r:
                k, v = r.split("==", 1)
                out.append((k.strip(), "=", [v.strip()]))
            elif "=" in r:
                k, v = r.split("=", 1)
                out.append((k.strip(), "=", [v.strip()]))
            elif r.startswith("!"):
                out.append((r[1:].strip(), "!exists", []))
            else:
                out.append((r, "exists", []))
    return out


def matches(reqs, labels):
    for k, op, vals in reqs:
        v = labels.get(k)
        if op in ("=", "in") and v not in vals:
            return False
        if op in ("!=", "notin") and v in vals:
            return False
        if op == "exists" and v is None:
            return False
        if op == "!exists" and v is not None:
            return False
    return True


def full_pod(p, ns):
    """A Pod object shaped like the API server's (the fields a kubelet fills in included)."""
    name = p["name"]
    meta = {
        "name": name,
        "generateName": name.rsplit("-", 1)[0] + "-",
        "namespace": p.get("namespace", ns),
        "uid": p["uid"],
        "resourceVersion": str(1000 + sum(name.encode())),
        "creationTimestamp": "2024-05-01T10:00:00Z",
        "labels": p.get("labels", {}),
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": "dais-worker-7c9f", "uid": "0f0e0d0c-0000-4000-8000-000000000001",
                             "controller": True, "blockOwnerDeletion": True}],
    }
    if p.get("deleting"):
        meta["deletionTimestamp"] = "2024-05-01T10:05:00Z"
        meta["deletionGracePeriodSeconds"] = 30
    phase = p.get("phase", "Running")
    ready = "True" if p.get("ready", phase == "Running") else "False"
    status = {
        "phase": phase,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": "2024-05-01T10:00:01Z"},
            {"type": "Ready", "status": ready, "lastProbeTime": None,
             "lastTransitionTime": "2024-05-01T10:00:05Z"},
            {"type": "ContainersReady", "status": ready, "lastProbeTime": None,
             "lastTransitionTime": "2024-05-01T10:00:05Z"},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": "2024-05-01T10:00:00Z"},
        ],
        "hostIP": "192.0.2.10",
        "qosClass": "Burstable",
        "startTime": "2024-05-01T10:00:00Z",
    }
    if p.get("ip"):
        status["podIP"] = p["ip"]
        status["podIPs"] = [{"ip": p["ip"]}]
    if phase in ("Running", "Succeeded", "Failed"):
        status["containerStatuses"] = [{
            "name": "worker", "ready": ready == "True", "restartCount": 0,
            "image": "dais:latest", "imageID": "docker-pullable://dais@sha256:" + "ab" * 32,
            "containerID": "containerd://" + "cd" * 32, "started": phase == "Running",
            "state": {"running": {"startedAt": "2024-05-01T10:00:02Z"}} if phase == "Running"
            else {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1,
                                 "reason": "Completed" if phase == "Succeeded" else "Error"}},
        }]
    return {
        "metadata": meta,
        "spec": {
            "containers": [{"name": "worker", "image": "dais:latest",
                            "args": ["worker", "--master", "dais-master:8888"],
                            "ports": [{"containerPort": 8889, "protocol": "UDP"}],
                            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}],
            "restartPolicy": "Always", "nodeName": "node-1",
            "serviceAccountName": "dais-worker", "terminationGracePeriodSeconds": 30,
        },
        "status": status,
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-kube-apiserver/1.0"

    def log_message(self, fmt, *args):
        pass

    def read(self, name, default=""):
        try:
            with open(os.path.join(self.server.dir, name)) as f:
                return f.read()
        except FileNotFoundError:
            return default

    def send_body(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def status(self, code, reason, message):
        self.send_body(code, json.dumps({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}).encode())

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        auth = self.headers.get("Authorization", "")
        with self.server.lock:
            with open(os.path.join(self.server.dir, "requests.log"), "a") as f:
                f.write(json.dumps({"path": url.path, "query": url.query,
                                    "authorization": auth}) + "\n")
        parts = url.path.strip("/").split("/")
        if len(parts) != 5 or parts[:3] != ["api", "v1", "namespaces"] or parts[4] != "pods":
            return self.status(404, "NotFound", "the server could not find the requested resource")
        ns = parts[3]
        mode = self.read("mode", "ok").strip()
        expected = self.read("expected_token").strip()
        if mode == "401" or auth != "Bearer " + expected:
            return self.status(401, "Unauthorized", "Unauthorized")
        if mode == "403":
            return self.status(403, "Forbidden", 'pods is forbidden: User "system:serviceaccount:'
                               + ns + ':default" cannot list resource "pods" in API group "" '
                               'in the namespace "' + ns + '"')
        if mode in ("500", "503", "429", "404"):
            return self.status(int(mode), "InternalError" if mode == "500" else "Other",
                               "simulated failure " + mode)
        if mode == "hang":
            time.sleep(HANG_SECONDS)
            return self.status(500, "Timeout", "too late")
        if mode == "huge":
            chunk = b" " * (1 << 20)
            n = 20
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(n * len(chunk) + 2))
            self.end_headers()
            try:
                self.wfile.write(b"{")
                for _ in range(n):
                    self.wfile.write(chunk)
                self.wfile.write(b"}")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                pass
            self.close_connection = True
            return
        if mode == "huge_chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b" " * (1 << 20)
            try:
                self.wfile.write(b"%x\r\n{\r\n" % 1)
                for _ in range(20):
                    self.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                self.wfile.write(b"1\r\n}\r\n0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                pass
            self.close_connection = True
            return
        if mode == "malformed":
            return self.send_body(200, b'{"kind": "PodList", "items": [ {"metadata": oops } ]}')
        if mode == "wrong_kind":
            return self.send_body(200, b'{"kind": "ConfigMapList", "apiVersion": "v1", "items": []}')
        if mode == "no_items":
            return self.send_body(200, b'{"kind": "PodList", "apiVersion": "v1", "metadata": {}}')

        try:
            reqs = parse_selector(query.get("labelSelector", [""])[0])
        except ValueError as e:
            return self.status(400, "BadRequest", "unable to parse requirement: " + str(e))
        pods = json.loads(self.read("pods.json", "[]"))
        items = [full_pod(p, ns) for p in pods
                 if p.get("namespace", ns) == ns and matches(reqs, p.get("labels", {}))]
        body = json.dumps({"kind": "PodList", "apiVersion": "v1",
                           "metadata": {"resourceVersion": "123456"},
                           "items": items}, indent=None).encode()
        if mode == "truncated":
            # Announce the whole length, send half, hang up.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "truncated_json":
            return self.send_body(200, body[: len(body) // 2])
        return self.send_body(200, body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # TLS failures (a client with the wrong CA) are expected


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    args = ap.parse_args()
    make_certs(args.dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(args.dir, "server.crt"), os.path.join(args.dir, "server.key"))
    srv = Server(("127.0.0.1", 0), Handler)
    srv.dir = args.dir
    srv.lock = threading.Lock()
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    port = srv.socket.getsockname()[1]
    tmp = os.path.join(args.dir, "port.tmp")
    with open(tmp, "w") as f:
        f.write(str(port))
    os.rename(tmp, os.path.join(args.dir, "port"))
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
