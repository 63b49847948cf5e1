#!/usr/bin/env bash
# Install the Prometheus server and promtool (Debian/Ubuntu package `prometheus`) if either is
# missing; tests/test_observability.py needs both. Safe to run again and again.
set -euo pipefail

say() { printf 'install_prometheus: %s\n' "$*"; }

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    say "prometheus and promtool present ($(prometheus --version 2>&1 | head -n 1))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    say "error: no apt-get; install Prometheus (prometheus + promtool on PATH) by hand:" >&2
    say "       https://prometheus.io/download/" >&2
    exit 1
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        say "error: need root (or sudo) to apt-get install prometheus" >&2
        exit 1
    fi
fi

say "installing the Debian package prometheus"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq prometheus >/dev/null
# The package enables a system service on :9090; the tests start their own server on a free
# port and do not need it.
for bin in prometheus promtool; do
    command -v "$bin" >/dev/null 2>&1 || { say "error: $bin still missing" >&2; exit 1; }
done
say "installed $(prometheus --version 2>&1 | head -n 1)"
