#!/usr/bin/env bash
# THE demo command: bash scripts/demo.sh [--workdir DIR] [--events N] [--rate R]
# Sets up the checkout (.venv, packages, Kafka jars), then runs the demo from the checkout
# (devtools/demo.py; it is not part of the installed package): a local Kafka broker on
# 127.0.0.1, the monitor, a webhook receiver, and a simulated stream in which two features
# drift half-way; alerts are printed as they arrive, then a summary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec .venv/bin/python -m devtools.demo "$@"
