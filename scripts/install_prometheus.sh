#!/usr/bin/env bash
# Install the Prometheus server and promtool (Debian/Ubuntu package `prometheus`) if either is
# missing; tests/test_observability.py needs both. Safe to run again and again.
set -euo pipefail

say() { printf 'install_prometheus: %s\n' "$*"; }

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    say "prometheus and promtool present ($(prometheus --version 2>&1 | head -n 1))"
    exit 0
fi

# shellcheck source=scripts/lib/apt_install.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt_install.sh"
apt_install install_prometheus prometheus https://prometheus.io/download/
# The package enables a system service on :9090; the tests start their own server on a free
# port and do not need it.
for bin in prometheus promtool; do
    command -v "$bin" >/dev/null 2>&1 || { say "error: $bin still missing" >&2; exit 1; }
done
say "installed $(prometheus --version 2>&1 | head -n 1)"
