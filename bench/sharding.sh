#!/usr/bin/env bash
# Pipeline sharding's cost and memory (docs/sharding.md): the same synthetic model served by one
# whole-model worker, then split into 2 pipeline stages on two workers, through the master on
# loopback. Prints decode tokens/s for 1 and 4 concurrent greedy requests, time to first
# token, and each worker's resident memory (VmRSS) after serving — a shard holds only its own
# layers' weights and KV cache.
#
#   bench/sharding.sh                       # dim 1024, 16 layers, q8_0 (~270 MB, made on demand)
#   DIM=2048 LAYERS=22 TYPE=q4_0 TOKENS=64 bench/sharding.sh
#
# Environment: DAIS_BIN (build/release/dais), MODEL (an existing GGUF; else one is synthesized
# into $TMPDIR and deleted at the end), DIM, LAYERS, TYPE, TOKENS (per request, 128), THREADS
# (compute threads per worker, 1). Everything runs on 127.0.0.1; processes stop on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DAIS=${DAIS_BIN:-$PWD/build/release/dais}
DIM=${DIM:-1024}
LAYERS=${LAYERS:-16}
TYPE=${TYPE:-q8_0}
TOKENS=${TOKENS:-128}
THREADS=${THREADS:-1}
[ -x "$DAIS" ] || { echo "sharding.sh: $DAIS is missing (build first)" >&2; exit 2; }

tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
export DAIS_CLUSTER_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

MODEL=${MODEL:-}
if [ -z "$MODEL" ]; then
    MODEL=$tmp/bench.gguf
    echo "synthesizing dim $DIM, $LAYERS layers, $TYPE ..."
    "$DAIS" model synth --dim "$DIM" --layers "$LAYERS" --heads $((DIM / 64)) \
        --kv-heads $((DIM / 256 > 0 ? DIM / 256 : 1)) --ffn $((DIM * 8 / 3 / 32 * 32)) \
        --vocab 32000 --ctx 2048 --type "$TYPE" -o "$MODEL" >/dev/null
fi
n_layers=$("$DAIS" model info "$MODEL" 2>/dev/null | awk -F'[ ,=]+' '/block_count/ && !n {n = $NF} END {print n}')
n_layers=${n_layers:-$LAYERS}
half=$((n_layers / 2))

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "model: $MODEL ($(du -m "$MODEL" | cut -f1) MB, $n_layers layers); $TOKENS tokens per request, $THREADS thread(s) per worker"
echo

cat > "$tmp/load.py" <<'PY'
import json, sys, threading, time, urllib.request
port, n, tokens = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = [None] * n
def one(i):
    body = json.dumps({"prompt": "Once upon a time", "max_tokens": tokens, "temperature": 0,
                       "stop": []}).encode()
    t0 = time.time()
    with urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/api/inference", body,
            {"Content-Type": "application/json"}), timeout=600) as r:
        out[i] = (json.loads(r.read()), time.time() - t0)
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
t0 = time.time()
for t in ts: t.start()
for t in ts: t.join()
wall = time.time() - t0
toks = sum(o[0]["usage"]["completion_tokens"] for o in out)
ttft = sorted(o[0]["timings"]["ttft_ms"] for o in out)[len(out) // 2]
print(f"{toks / wall:.1f} {ttft:.1f} {out[0][0]['text'][:40]!r}")
PY

rss_mb() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

run_case() { # name, then worker specs "id:layers" (layers "" = whole)
    local name=$1; shift
    local http cport hport
    http=$(free_port); cport=$(free_port); hport=$(free_port)
    "$DAIS" master --addr 127.0.0.1 --http-port "$http" --cluster-port "$cport" \
        --heartbeat-port "$hport" --metrics-port 0 --log-level warn 2>"$tmp/master-$name.log" &
    pids+=("$!")
    local wp=()
    for spec in "$@"; do
        local id=${spec%%:*} layers=${spec#*:}
        local extra=()
        [ -n "$layers" ] && extra=(--layers "$layers")
        "$DAIS" worker --model "$MODEL" --master "127.0.0.1:$cport" --id "$id" --addr 127.0.0.1 \
            --heartbeat-port 0 --metrics-port 0 --threads "$THREADS" --slots 4 \
            --log-level warn "${extra[@]}" 2>"$tmp/worker-$id.log" &
        pids+=("$!"); wp+=("$!")
    done
    for _ in $(seq 1 600); do
        curl -fs "http://127.0.0.1:$http/ready" >/dev/null 2>&1 && break
        sleep 0.1
    done
    python3 "$tmp/load.py" "$http" 1 8 >/dev/null # warm-up (page faults)
    read -r tps1 ttft1 text1 < <(python3 "$tmp/load.py" "$http" 1 "$TOKENS")
    read -r tps4 ttft4 _ < <(python3 "$tmp/load.py" "$http" 4 "$TOKENS")
    local mem=""
    for p in "${wp[@]}"; do mem+="$(rss_mb "$p") "; done
    echo "| $name | $tps1 | $ttft1 | $tps4 | $ttft4 | ${mem% } |"
    echo "$text1" > "$tmp/text-$name"
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}

echo "| setup | tok/s, 1 request | TTFT ms | tok/s, 4 requests | TTFT ms (median) | worker RSS MB |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
run_case "whole model, 1 worker" "w:"
run_case "2 pipeline stages" "s0:0:$half" "s1:$half:$n_layers"
if cmp -s "$tmp/text-whole model, 1 worker" "$tmp/text-2 pipeline stages"; then
    echo; echo "greedy output: identical"
else
    echo; echo "greedy output: DIFFERS"; exit 1
fi
