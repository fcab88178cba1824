#!/usr/bin/env bash
# Runs every test dais has, on a fresh Debian 12 machine: installs the packages it needs,
# builds the release, address+undefined-sanitizer and clang presets, runs the unit tests and
# fuzz-corpus replays (CTest) in each, then the system tests (pytest, real processes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

for preset in release asan clang; do
    echo "== build: $preset"
    cmake --preset "$preset" >/dev/null
    cmake --build --preset "$preset"
    echo "== unit tests: $preset"
    ctest --preset "$preset" -j2
done

if ls tests/system/test_*.py >/dev/null 2>&1; then
    echo "== system tests"
    # Debian's interpreter: python3-pytest and python3-yaml are installed for it (a python3
    # earlier on PATH, e.g. from pyenv, may lack them).
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    DAIS_BIN="$PWD/build/release/dais" "$py" -m pytest -q tests/system
fi
