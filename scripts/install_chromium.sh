#!/usr/bin/env bash
# Debian's Chromium and Playwright for Python, for the browser tests (tests/test_ui_*.py).
# Never `playwright install`: Playwright drives the system browser (/usr/bin/chromium).
# Safe to run again. Skipped (with a note) where apt-get is not available or not root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf 'install_chromium: %s\n' "$*"; }
if [[ ! -x /usr/bin/chromium ]]; then
    if command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
        say "installing Debian's chromium"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
            >/dev/null; } || say "warning: apt-get could not install chromium"
    else
        say "no /usr/bin/chromium and cannot apt-get it: the browser tests will skip"
    fi
fi
py="${PYTHON_FOR_TESTS:-.venv/bin/python}"
if ! "$py" -c 'import playwright' 2>/dev/null; then
    "$py" -m pip install -q 'playwright>=1.40' || say "warning: could not install playwright"
fi
