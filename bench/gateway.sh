#!/usr/bin/env bash
# The master's cost (issue 3): requests/s and p50/p99 latency of POST /api/inference with
# max_tokens 1 on stories260K through the master (HTTP, wrk), against the same work sent to
# the same kind of worker directly over the cluster protocol (bench_gateway, no master, no
# HTTP), at 1 and 64 concurrent connections; and the master's own CPU time per request
# (utime + stime from /proc/<pid>/stat, divided by the requests it answered).
#
#   bench/gateway.sh                 # uses build/release/dais and build/release/bench_gateway
#   DUR=20 CONNS="1 16 64" SLOTS=16 bench/gateway.sh
#
# Environment: DAIS_BIN, BENCH_GATEWAY, MODEL (default ../shared/models/stories260K.gguf),
# DUR (seconds per run, 10), CONNS ("1 64"), SLOTS (worker slots, 16), THREADS (worker compute
# threads, 1), WRK_THREADS (1). Everything runs on 127.0.0.1; processes are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DAIS=${DAIS_BIN:-$PWD/build/release/dais}
BENCH=${BENCH_GATEWAY:-$(dirname "$DAIS")/bench_gateway}
MODEL=${MODEL:-${DAIS_SHARED:-$PWD/../shared}/models/stories260K.gguf}
DUR=${DUR:-10}
CONNS=${CONNS:-"1 64"}
SLOTS=${SLOTS:-16}
THREADS=${THREADS:-1}
WRK_THREADS=${WRK_THREADS:-1}
for f in "$DAIS" "$BENCH" "$MODEL"; do
    [ -e "$f" ] || { echo "gateway.sh: $f is missing (build first: cmake --build --preset release)" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "gateway.sh: wrk is missing (scripts/setup.sh installs it)" >&2; exit 2; }

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
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
clk_tck=$(getconf CLK_TCK)

worker_args=(--model "$MODEL" --addr 127.0.0.1 --heartbeat-port 0 --metrics-port 0
             --threads "$THREADS" --slots "$SLOTS" --queue 1024 --log-level warn)

cat > "$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"prompt":"Once upon a time","max_tokens":1,"temperature":0}'
wrk.headers["Content-Type"] = "application/json"
EOF

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "model: $MODEL; worker: $THREADS thread(s), $SLOTS slots; $DUR s per run"
echo

# ---- through the master ---------------------------------------------------------------------
http=$(free_port); cport=$(free_port); hport=$(free_port); mport=$(free_port)
"$DAIS" master --addr 127.0.0.1 --http-port "$http" --cluster-port "$cport" \
    --heartbeat-port "$hport" --metrics-port "$mport" --log-level warn 2>"$tmp/master.log" &
master=$!; pids+=("$master")
"$DAIS" worker "${worker_args[@]}" --master "127.0.0.1:$cport" --id bench-w 2>"$tmp/worker.log" &
pids+=("$!")
for _ in $(seq 1 200); do
    curl -fs "http://127.0.0.1:$http/ready" >/dev/null 2>&1 && break
    sleep 0.05
done
curl -fs "http://127.0.0.1:$http/ready" >/dev/null || { cat "$tmp/master.log" "$tmp/worker.log"; exit 1; }
wrk -t1 -c8 -d2s -s "$tmp/post.lua" "http://127.0.0.1:$http/api/inference" >/dev/null  # warm-up

declare -A m_rps m_p50 m_p99 m_cpu d_rps d_p50 d_p99
to_us() { # wrk latency ("812.00us", "1.23ms", "2.00s") → microseconds
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
                           else if (v ~ /s$/) print n * 1000000; else print n }'
}
for c in $CONNS; do
    t=$WRK_THREADS; [ "$t" -gt "$c" ] && t=$c
    before=$(cpu_ticks "$master")
    wrk -t"$t" -c"$c" -d"${DUR}s" --latency -s "$tmp/post.lua" \
        "http://127.0.0.1:$http/api/inference" > "$tmp/wrk-$c.txt"
    after=$(cpu_ticks "$master")
    reqs=$(awk '/requests in/ {print $1}' "$tmp/wrk-$c.txt")
    bad=$(awk '/Non-2xx/ {print $5}' "$tmp/wrk-$c.txt"); bad=${bad:-0}
    [ "$bad" = 0 ] || echo "warning: $bad non-2xx answers at $c connections" >&2
    m_rps[$c]=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$tmp/wrk-$c.txt")
    m_p50[$c]=$(to_us "$(awk '$1 == "50%" {print $2}' "$tmp/wrk-$c.txt")")
    m_p99[$c]=$(to_us "$(awk '$1 == "99%" {print $2}' "$tmp/wrk-$c.txt")")
    m_cpu[$c]=$(awk -v d=$((after - before)) -v hz="$clk_tck" -v n="$reqs" \
                'BEGIN { printf "%.1f", d * 1e6 / hz / n }')
    echo "master c=$c: $reqs requests, ${m_rps[$c]} req/s, p50 ${m_p50[$c]} us, p99 ${m_p99[$c]} us, master CPU ${m_cpu[$c]} us/request"
done
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()

# ---- the worker alone ---------------------------------------------------------------------------
for c in $CONNS; do
    bport=$(free_port)
    "$BENCH" -p "$bport" -c "$c" -d "$DUR" -w 2 > "$tmp/direct-$c.txt" &
    bench=$!; pids+=("$bench")
    for _ in $(seq 1 100); do grep -q listening "$tmp/direct-$c.txt" 2>/dev/null && break; sleep 0.05; done
    "$DAIS" worker "${worker_args[@]}" --master "127.0.0.1:$bport" --id bench-d 2>>"$tmp/worker.log" &
    w=$!; pids+=("$w")
    wait "$bench"
    kill -TERM "$w" 2>/dev/null || true
    wait "$w" 2>/dev/null || true
    pids=()
    line=$(grep '^direct' "$tmp/direct-$c.txt")
    echo "$line"
    d_rps[$c]=$(echo "$line" | sed -E 's/.* = ([0-9.]+) req\/s.*/\1/')
    d_p50[$c]=$(echo "$line" | sed -E 's/.*p50 ([0-9.]+) us.*/\1/')
    d_p99[$c]=$(echo "$line" | sed -E 's/.*p99 ([0-9.]+) us.*/\1/')
done

echo
echo "| connections | path | requests/s | p50 (us) | p99 (us) | master CPU per request (us) |"
echo "| ---: | --- | ---: | ---: | ---: | ---: |"
for c in $CONNS; do
    echo "| $c | worker alone (cluster protocol) | ${d_rps[$c]} | ${d_p50[$c]} | ${d_p99[$c]} | — |"
    echo "| $c | through the master (HTTP) | ${m_rps[$c]} | ${m_p50[$c]} | ${m_p99[$c]} | ${m_cpu[$c]} |"
    echo "| $c | master adds at p50 | | $(awk -v a="${m_p50[$c]}" -v b="${d_p50[$c]}" 'BEGIN { printf "%.0f", a - b }') | | |"
done
