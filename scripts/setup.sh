#!/usr/bin/env bash
# Prepare a checkout for development and tests; safe to run again and again.
#   1. .venv with Python >= 3.11 (created if missing)
#   2. pip install -e '.[test]' (skipped while pyproject.toml is unchanged and imports work)
#   3. the compiled decoder, native/ (when cargo is there; see below)
#   4. the Kafka broker jars for the local test broker (cached per user; needs java + mvn)
# Override the interpreter with PYTHON=/path/to/python3.x.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*"; }

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

if [[ ! -x .venv/bin/python ]]; then
    python=""
    for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
        if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null && python_ok "$candidate"; then
            python="$candidate"
            break
        fi
    done
    if [[ -z "$python" ]]; then
        say "error: need Python >= 3.11 (set PYTHON=/path/to/python3.x)" >&2
        exit 1
    fi
    say "creating .venv with $("$python" --version 2>&1) ($(command -v "$python"))"
    "$python" -m venv .venv || {
        say "error: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    }
elif ! python_ok .venv/bin/python; then
    say "error: .venv has $(.venv/bin/python --version 2>&1); need >= 3.11 (remove .venv)" >&2
    exit 1
fi

# The stamp holds a hash of what the install depends on; an import check catches a venv
# that was changed behind our back.
stamp=.venv/.monitor-install-stamp
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(.venv/bin/python -V 2>&1)"
if [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]] \
    && .venv/bin/python -c 'import monitor, aiokafka, pytest' 2>/dev/null; then
    say "python packages up to date"
else
    say "installing the package and test dependencies into .venv"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    .venv/bin/python -m pip install -q -e '.[test]'
    printf '%s\n' "$want" >"$stamp"
fi

# The compiled decoder (native/, Rust, built by maturin through pip): optional at run time,
# the Python path does the same work more slowly. Built when cargo is there; a failed build
# with cargo present is an error, not a silent fallback.
native_stamp=.venv/.monitor-native-stamp
native_want="$(cat native/Cargo.toml native/Cargo.lock native/pyproject.toml native/src/*.rs \
    | sha256sum | cut -d' ' -f1) $(.venv/bin/python -V 2>&1)"
cargo_bin="$(command -v cargo || true)"
if [[ -z "$cargo_bin" && -x "$HOME/.cargo/bin/cargo" ]]; then
    cargo_bin="$HOME/.cargo/bin/cargo"
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if [[ "$(cat "$native_stamp" 2>/dev/null)" == "$native_want" ]] \
    && .venv/bin/python -c 'import monitor_native' 2>/dev/null; then
    say "compiled decoder up to date"
elif [[ -n "$cargo_bin" ]]; then
    say "building the compiled decoder (native/, Rust; a minute or two the first time)"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    .venv/bin/python -m pip install -q ./native
    printf '%s\n' "$native_want" >"$native_stamp"
else
    say "warning: no cargo (Rust): the compiled decoder is not built; the slower Python" \
        "decoder is used (install Rust from rustup.rs and run this again to build it)" >&2
fi

say "checking the Kafka broker jars"
.venv/bin/python -m devtools.local_kafka fetch >/dev/null
say "checking the web UI's chart library"
bash scripts/fetch_ui_assets.sh || say "warning: could not fetch uPlot; the web UI shows tables only"
say "done"
