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

if ! command -v apt-get >/dev/null 2>&1; then
    say "error: no apt-get; install Alertmanager (alertmanager on PATH) by hand:" >&2
    say "       https://prometheus.io/download/#alertmanager" >&2
    exit 1
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        say "error: need root (or sudo) to apt-get install prometheus-alertmanager" >&2
        exit 1
    fi
fi

say "installing the Debian package prometheus-alertmanager"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq prometheus-alertmanager >/dev/null
# The package enables a system service on :9093; the tests start their own server on a free
# port and do not need it.
command -v prometheus-alertmanager >/dev/null 2>&1 || { say "error: still missing" >&2; exit 1; }
say "installed $(prometheus-alertmanager --version 2>&1 | head -n 1)"
