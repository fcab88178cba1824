#!/usr/bin/env python3
"""Writes the seed corpora of the protocol fuzz targets (frame, envelope, dgram) from an
independent Python encoding of docs/protocol.md: one valid message of each type, plus a few
malformed ones (MODEL_SYNC_* included). Run from the repository root; the output is committed under
tests/fuzz/corpus/{frame,envelope,dgram}/."""
import hashlib
import hmac
import json
import os
import struct

ID = "2c5ea4c0-4067-4a1b-9c4e-3f1c1b2d5e6f"
KEY = b"0123456789abcdef0123456789abcdef"  # fuzz_dgram.c's key


def env(mtype, data, src="worker-1", dst="master", meta=None):
    return json.dumps({"message_id": ID, "message_type": mtype, "source_node": src,
                       "target_node": dst,
                       "payload": {"data": data, "timestamp": 1700000000.5,
                                   "metadata": meta or {}},
                       "timestamp": 1700000000.5}, separators=(",", ":")).encode()


def frame(j, b=b"", version=1, flags=0):
    return b"DAIS" + bytes([version, flags, 0, 0]) + struct.pack(">II", len(j), len(b)) + j + b


def toks(ids):
    return b"".join(struct.pack("<i", i) for i in ids)


discovery = {"node_id": "worker-1", "protocol_version": 1, "addr": "", "heartbeat_port": 8889,
             "capabilities": {"cores": 2, "threads": 2, "memory_total": 8 << 30,
                              "memory_available": 4 << 30, "simd": ["avx2", "fma", "f16c"],
                              "model": {"name": "stories260K", "hash": "27" * 32, "n_vocab": 512,
                                        "n_layers": 5, "layer_first": 0, "layer_last": 5,
                                        "n_ctx_train": 2048},
                              "n_ctx": 512, "slots": 4, "batch": 512, "queue": 16},
             "auth": {"timestamp_ms": 1700000000000, "nonce": "00" * 16, "hmac": "ab" * 32}}
msgs = {
    "discovery": ("NODE_DISCOVERY", discovery, b""),
    "accept": ("NODE_ACCEPT", {"node_id": "worker-1", "session_id": 7, "master_nonce": "11" * 16,
                               "hmac": "cd" * 32, "heartbeat_interval_ms": 200,
                               "heartbeat_port": 8889}, b""),
    "reject": ("NODE_REJECT", {"reason": "bad_token", "message": "no", "retry": False}, b""),
    "heartbeat": ("HEARTBEAT", {"interval_ms": 200, "cluster_state": "ok", "workers_active": 1,
                                "workers_total": 1, "sent_ms": 1700000000000}, b""),
    "heartbeat_ack": ("HEARTBEAT_ACK", {"echo_seq": 3, "echo_sent_ms": 1700000000000,
                                        "health": "ok",
                                        "system": {"cpu_percent": 10.5, "mem_total": 100,
                                                   "mem_used": 50, "load1": 0.1, "load5": 0.2,
                                                   "load15": 0.3},
                                        "load": {"queue_depth": 0, "active": 1, "slots": 4,
                                                 "tokens_per_s": 100.0, "kv_used": 10,
                                                 "kv_total": 2048}}, b""),
    "request_text": ("INFERENCE_REQUEST", {"request_id": "r1", "prompt": "Once upon a time",
                                           "params": {"temperature": 0, "max_tokens": 8,
                                                      "stop": ["\n"]}, "deadline_ms": 1000},
                     b""),
    "request_tokens": ("INFERENCE_REQUEST", {"request_id": "r2", "n_generated": 2,
                                             "params": {"temperature": 0.8, "top_k": 40,
                                                        "top_p": 0.9, "min_p": 0.05,
                                                        "repeat_penalty": 1.1, "seed": 42,
                                                        "max_tokens": 4}},
                       toks([1, 403, 407, 261, 378, 432, 383])),
    "response_partial": ("INFERENCE_RESPONSE", {"request_id": "r1", "index": 1, "final": False,
                                                "text": ", there"}, toks([432, 383])),
    "response_prompt": ("INFERENCE_RESPONSE", {"request_id": "r1", "index": 0, "final": False,
                                               "text": "", "prompt_token_ids": True},
                        toks([1, 403, 407, 261, 378])),
    "response_final": ("INFERENCE_RESPONSE", {"request_id": "r1", "index": 2, "final": True,
                                              "text": "", "finish_reason": "error",
                                              "usage": {"prompt_tokens": 5,
                                                        "completion_tokens": 2},
                                              "timings": {"queue_ms": 0.1, "ttft_ms": 1.0,
                                                          "total_ms": 2.0},
                                              "error": {"code": "internal", "message": "x"}},
                       b""),
    "cancel": ("CANCEL", {"request_id": "r1", "reason": "client_gone"}, b""),
    "drain": ("DRAIN", {"deadline_ms": 1000, "reason": "sigterm"}, b""),
    "error": ("ERROR", {"code": "busy", "message": "full", "request_id": "r1"}, b""),
    # model synchronisation (port 8890): a resumed request, a middle chunk, the empty final
    # chunk a cache check gets, and a refusal
    "sync_request": ("MODEL_SYNC_REQUEST", {"node_id": "worker-1", "protocol_version": 1,
                                            "model": "stories260K", "offset": 4096,
                                            "auth": {"timestamp_ms": 1700000000000,
                                                     "nonce": "22" * 16, "hmac": "ef" * 32}},
                     b""),
    # a stage's shard file only (layers [2, 5))
    "sync_request_layers": ("MODEL_SYNC_REQUEST", {"node_id": "worker-1", "protocol_version": 1,
                                                   "model": "stories260K", "offset": 0,
                                                   "layers": [2, 5],
                                                   "auth": {"timestamp_ms": 1700000000000,
                                                            "nonce": "23" * 16,
                                                            "hmac": "ef" * 32}},
                            b""),
    "sync_chunk": ("MODEL_SYNC_CHUNK", {"model": "stories260K", "sha256": "27" * 32,
                                        "size": 1185376, "offset": 0, "final": False},
                   b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 4),
    "sync_chunk_final": ("MODEL_SYNC_CHUNK", {"model": "stories260K", "sha256": "27" * 32,
                                              "size": 1185376, "offset": 1185376,
                                              "final": True}, b""),
    "sync_error": ("ERROR", {"code": "unknown_model",
                             "message": "unknown model 'x'; served: 'stories260K'",
                             "in_reply_to": ID}, b""),
}


def write(d, name, blob):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def main():
    base = "tests/fuzz/corpus"
    meta = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    stream = b""
    for name, (t, data, b) in msgs.items():
        j = env(t, data, meta=meta if t == "INFERENCE_REQUEST" else None)
        write(f"{base}/envelope", name + ".json", j)
        write(f"{base}/frame", name + ".bin", frame(j, b))
        stream += frame(j, b)
        if not b:
            trailer_head = struct.pack(">QQ", 5, 9)
            body = frame(j) + trailer_head
            mac = hmac.new(KEY, body, hashlib.sha256).digest()
            write(f"{base}/dgram", name + ".raw", b"\x00" + body + mac)
            write(f"{base}/dgram", name + ".env", b"\x01" + j)
    write(f"{base}/frame", "stream.bin", stream)
    good = env("CANCEL", {"request_id": "r1"})
    write(f"{base}/frame", "bad_version.bin", frame(good, version=2))
    write(f"{base}/frame", "bad_flags.bin", frame(good, flags=1))
    write(f"{base}/frame", "truncated.bin", frame(good, b"abcd")[:-3])
    write(f"{base}/frame", "huge_len.bin", b"DAIS\x01\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00")
    write(f"{base}/frame", "http.bin", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    write(f"{base}/envelope", "dup_keys.json", b'{"message_id":"a","message_id":"b"}')
    write(f"{base}/envelope", "bad_uuid.json", good.replace(b"4a1b", b"1a1b"))
    write(f"{base}/dgram", "forged.raw", b"\x00" + frame(good) + bytes(48))


if __name__ == "__main__":
    main()
