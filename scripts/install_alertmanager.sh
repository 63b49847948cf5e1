#!/usr/bin/env bash
# Install Prometheus Alertmanager (Debian/Ubuntu package `prometheus-alertmanager`, which puts
# `prometheus-alertmanager` and `amtool` on PATH) if it is missing; tests/test_alertmanager.py
# starts its own server from it on 127.0.0.1. Safe to run again and again.
set -euo pipefail

say() { printf 'install_alertmanager: %s\n' "$*"; }

if command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1
then
    say "alertmanager present"
    exit 0
fi

# shellcheck source=scripts/lib/apt_install.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt_install.sh"
apt_install install_alertmanager prometheus-alertmanager \
    https://prometheus.io/download/#alertmanager
# The package enables a system service on :9093; the tests start their own server on a free
# port and do not need it.
command -v prometheus-alertmanager >/dev/null 2>&1 || { say "error: still missing" >&2; exit 1; }
say "installed $(prometheus-alertmanager --version 2>&1 | head -n 1)"
