#!/usr/bin/env bash
# Builds dais (release preset) after installing what the build needs. Prints the binary path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release >&2
echo "$PWD/build/release/dais"
