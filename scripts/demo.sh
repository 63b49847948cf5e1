#!/usr/bin/env bash
# THE demo command: bash scripts/demo.sh
# Sets up the checkout (.venv, packages, Kafka jars), then runs `monitor demo`: a local
# Kafka broker on 127.0.0.1, the monitor, a webhook receiver, and a simulated stream in
# which two features drift half-way; alerts are printed as they arrive, then a summary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/monitor demo "$@"
