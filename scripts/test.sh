#!/usr/bin/env bash
# THE test command: bash scripts/test.sh [pytest args...]   (default: -q)
# Sets up the checkout, lints, starts one local Kafka broker for the whole run, runs pytest
# against it (MONITOR_TEST_KAFKA_BOOTSTRAP) and stops the broker however the run ends.
# If MONITOR_TEST_KAFKA_BOOTSTRAP is already set, that broker is used and none is started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'test: %s\n' "$*"; }

bash scripts/setup.sh
# Where Rust is installed setup.sh has built the compiled decoder: its tests must then run,
# not skip (tests/test_native*.py).
if command -v cargo >/dev/null || [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export MONITOR_REQUIRE_NATIVE=1
fi
bash scripts/install_prometheus.sh   # a real Prometheus for tests/test_observability.py
bash scripts/install_alertmanager.sh # a real Alertmanager for tests/test_alertmanager.py
bash scripts/install_chromium.sh     # Chromium + Playwright for tests/test_ui_*.py
if [[ -x /usr/bin/chromium ]]; then
    export MONITOR_REQUIRE_BROWSER=1  # installed: the browser tests must run, not skip
fi

say "ruff check, ruff format --check"
.venv/bin/ruff check .
.venv/bin/ruff format --check --quiet monitor tests bench devtools scripts

broker_pid=""
workdir=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        for _ in $(seq 1 300); do  # up to 30 s for a clean broker shutdown
            kill -0 "$broker_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    if [[ -n "$workdir" ]]; then
        if [[ $rc -ne 0 && -f "$workdir/data/broker.log" ]]; then
            say "broker output and log kept in $workdir (run failed)"
        else
            rm -rf "$workdir"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z "${MONITOR_TEST_KAFKA_BOOTSTRAP:-}" ]]; then
    workdir="$(mktemp -d "${TMPDIR:-/tmp}/monitor-test.XXXXXX")"
    say "starting the local Kafka broker"
    .venv/bin/python -m devtools.local_kafka run --data-dir "$workdir/data" \
        >"$workdir/broker.stdout" 2>"$workdir/broker.stderr" </dev/null &
    broker_pid=$!
    bootstrap=""
    for _ in $(seq 1 900); do  # up to 90 s: JVM start, plus the jar fetch if the cache vanished
        bootstrap="$(sed -n 's/^BOOTSTRAP=//p' "$workdir/broker.stdout")"
        [[ -n "$bootstrap" ]] && break
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            say "error: the broker exited before it was ready:" >&2
            cat "$workdir/broker.stderr" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [[ -z "$bootstrap" ]]; then
        say "error: no BOOTSTRAP line from the broker within 90 s:" >&2
        tail -n 40 "$workdir/broker.stderr" >&2
        exit 1
    fi
    export MONITOR_TEST_KAFKA_BOOTSTRAP="$bootstrap"
    say "broker at $bootstrap"
fi

if [[ $# -eq 0 ]]; then
    set -- -q
fi
set +e
.venv/bin/pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    say "error: pytest collected no tests" >&2
fi
exit "$rc"
