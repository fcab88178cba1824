#!/usr/bin/env bash
# Engine benchmark on synthetic models of TinyLlama-1.1B's shape (dim 2048, 22 layers, FFN 5632,
# 32 heads, 4 KV heads, vocab 32000, context 2048), by the method of issue 2 (see
# bench/bench_engine.c). The models are written once into the build directory (not committed):
# about 1.2 GB (Q8_0) and 0.6 GB (Q4_0, Q4_K) each.
#
#   bench/engine.sh                 # q8_0 q4_0 q4_k, 2 threads, median of 3
#   THREADS=4 RUNS=5 bench/engine.sh q4_k
#   BUILD=build/model bench/engine.sh    # use an existing build directory
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/release}
THREADS=${THREADS:-2}
RUNS=${RUNS:-3}
MODELS=${MODELS:-$BUILD/bench-models}
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q8_0 q4_0 q4_k)

if [ ! -x "$BUILD/dais" ] || [ ! -x "$BUILD/bench_engine" ]; then
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$BUILD" -j2 --target dais bench_engine >/dev/null
fi
mkdir -p "$MODELS"
for t in "${types[@]}"; do
    f="$MODELS/tinyllama-$t.gguf"
    if [ ! -f "$f" ]; then
        "$BUILD/dais" model synth --preset tinyllama --type "$t" -t "$THREADS" -o "$f.tmp"
        mv "$f.tmp" "$f"
    fi
    echo "== $t"
    "$BUILD/bench_engine" -m "$f" -t "$THREADS" -r "$RUNS"
done
