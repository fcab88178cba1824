#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_podlist (tests/fuzz/corpus/podlist/): PodList documents in
the API server's own shape (built by the fake API server used by the discovery tests), with
and without a "#sel:" selector line, plus a few broken ones. Run from the repository root."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "system", "k8s"))
from fake_apiserver import full_pod  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "corpus", "podlist")
W = {"app": "dais-worker", "tier": "cpu"}


def doc(pods, rv="4711"):
    return json.dumps({"kind": "PodList", "apiVersion": "v1",
                       "metadata": {"resourceVersion": rv},
                       "items": [full_pod(p, "dais") for p in pods]}).encode()


def main():
    os.makedirs(OUT, exist_ok=True)
    mixed = [
        {"name": "dais-worker-a", "uid": "3f1c-a", "phase": "Running", "ip": "10.244.0.5", "labels": W},
        {"name": "dais-worker-b", "uid": "3f1c-b", "phase": "Pending", "labels": W},
        {"name": "dais-worker-c", "uid": "3f1c-c", "phase": "Succeeded", "ip": "10.244.0.7", "labels": W},
        {"name": "dais-worker-d", "uid": "3f1c-d", "phase": "Running", "ip": "fd00::d", "labels": W},
        {"name": "dais-worker-e", "uid": "3f1c-e", "phase": "Running", "ip": "10.244.0.9",
         "labels": W, "deleting": True},
        {"name": "dais-worker-f", "uid": "3f1c-f", "phase": "Running", "ip": "10.244.0.10",
         "labels": {"app": "web"}, "ready": False},
        {"name": "dais-worker-g", "uid": "3f1c-g", "phase": "Failed", "labels": W},
    ]
    seeds = {
        "mixed.json": doc(mixed),
        "empty.json": doc([]),
        "one.json": doc(mixed[:1]),
        "selector-eq.txt": b"#sel:app=dais-worker\n" + doc(mixed),
        "selector-set.txt": b"#sel:app in (dais-worker,web),tier notin (gpu),!legacy\n" + doc(mixed),
        "selector-bad.txt": b"#sel:app in (\n" + doc(mixed[:2]),
        "truncated.json": doc(mixed)[:700],
        "wrong-types.json": json.dumps({"kind": "PodList", "items": [
            {"metadata": {"name": 5, "namespace": "dais", "uid": "x"}}]}).encode(),
        "bad-ip.json": doc([dict(mixed[0], ip="10.244.0.500")]),
        "dup-uid.json": doc([mixed[0], dict(mixed[1], uid="3f1c-a")]),
        "status.json": json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "message": "Unauthorized", "code": 401}).encode(),
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
