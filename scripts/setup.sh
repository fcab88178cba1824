#!/usr/bin/env bash
# Installs every Debian package dais needs to build, run and test.
# Idempotent: packages already present are skipped. Needs root (or sudo).
set -euo pipefail

PKGS=(
    build-essential cmake pkg-config git clang clang-format clang-tidy
    libevent-dev libjansson-dev libcurl4-openssl-dev libssl-dev libpcre2-dev
    libcmocka-dev python3 python3-pytest curl nftables iproute2 util-linux
    libclang-rt-dev  # libFuzzer runtime for the fuzz preset (only a Recommends of clang)
    prometheus       # system tests: a real server scrapes the nodes; promtool checks /metrics
    nginx python3-yaml  # system tests: nginx in front of the master as the Ingress; manifest checks
    wrk              # bench/gateway.sh: HTTP load for the master's requests/s and latency
)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's prometheus package starts a system service on port 9090 where systemd runs; that is
# every dais node's metrics port, and the tests start their own Prometheus. Stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: stopping the prometheus system service (it holds port 9090)"
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

# Debian's nginx package starts its default site (port 80) as a system service; the tests start
# their own nginx on a free loopback port with their own configuration. Stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: stopping the nginx system service (the tests run their own nginx)"
    $SUDO systemctl disable --now nginx >/dev/null 2>&1 || true
fi
