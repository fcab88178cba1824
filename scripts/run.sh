#!/usr/bin/env bash
# The main job in one command: installs what dais needs, builds it, starts a local cluster
# (one master and N workers as separate processes on loopback), sends it one inference
# request, prints the answer, and keeps serving until Ctrl-C.
#
#   ./scripts/run.sh                      # demo model (synthesized on first use), 2 workers
#   ./scripts/run.sh -m model.gguf        # your own GGUF Llama model
#   ./scripts/run.sh --workers 3 --port 8080
#
# Every option is passed to `dais run` (see `dais run --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
DAIS=$(bash scripts/build.sh)

port=8080
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --port) port="${args[$((i + 1))]}" ;;
        --port=*) port="${args[$i]#--port=}" ;;
    esac
done

"$DAIS" run "$@" &
cluster=$!
trap 'kill -TERM $cluster 2>/dev/null; wait $cluster 2>/dev/null' INT TERM

for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    kill -0 $cluster 2>/dev/null || { wait $cluster; exit $?; }
    sleep 0.2
done

echo
echo "== POST /api/inference"
curl -sS "http://127.0.0.1:$port/api/inference" -H 'Content-Type: application/json' \
    -d '{"prompt": "Once upon a time", "max_tokens": 48, "temperature": 0}'
echo
echo "== the cluster keeps serving on http://127.0.0.1:$port (Ctrl-C stops it)"
wait $cluster
