"""The ``monitor`` command: conventions (help, version, exit codes, logging) and the
``reference build`` report. Every test runs the real command in a subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.cli import (
    EXIT_CHECK_FAILED,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    JsonLogFormatter,
    TextLogFormatter,
    with_progress,
)

HEAVY = ("numpy", "aiohttp", "aiokafka", "httpx", "prometheus_client")


def monitor(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    "argv", [["--help"], ["run", "--help"], ["check-config", "--help"], ["reference", "--help"]]
)
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "monitor.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "monitor.errors" in imported  # the check sees monitor's own imports
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert heavy == [], f"`monitor {' '.join(argv)}` imported {heavy[:5]}"


def test_version_help_and_exit_codes(tmp_path: Path) -> None:
    from monitor import __version__

    run = monitor("--version")
    assert run.returncode == EXIT_OK and run.stdout.strip() == f"monitor {__version__}"
    run = monitor("--help")
    assert "exit codes:" in run.stdout and "2  usage, configuration" in run.stdout
    for sub in ("run", "check-config", "simulate", "reference"):
        assert re.search(rf"^    {sub} +\S", run.stdout, re.M), f"no summary for {sub}"
    assert monitor("--no-such-option").returncode == EXIT_USAGE
    assert monitor("run").returncode == EXIT_USAGE  # no configuration given
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: m\n    window: {size: -1}\n")
    # A configuration error is the same exit code, and the same message, in both commands,
    # and both take the file as the argument or as --config.
    outputs = set()
    for argv in (
        ["check-config", str(bad)],
        ["check-config", "--config", str(bad)],
        ["run", str(bad)],
        ["run", "--config", str(bad)],
    ):
        run = monitor(*argv)
        assert run.returncode == EXIT_USAGE, (argv, run.stderr)
        assert "models[0].window.size" in run.stderr and "Traceback" not in run.stderr
        outputs.add(run.stderr)
    assert len(outputs) == 1
    good = tmp_path / "good.yaml"
    good.write_text("log_level: debug\nmodels:\n  - name: m\n")
    run = monitor("--log-level", "Warning", "check-config", "--log-level", "debug", str(good))
    assert run.returncode == EXIT_OK, run.stderr


def test_json_logs_are_one_safe_object_per_line() -> None:
    record = logging.LogRecord(
        "monitor.service", logging.WARNING, __file__, 1, "bad value %s", ("\udc80\n<b>\x00é",), None
    )
    line = JsonLogFormatter().format(record)
    assert "\n" not in line and line.isascii()
    doc = json.loads(line)
    assert doc["message"] == "bad value \udc80\n<b>\x00é"
    assert doc["level"] == "WARNING" and doc["logger"] == "monitor.service"


def test_text_logs_keep_a_hostile_message_on_one_valid_line() -> None:
    hostile = ("\udc80\nFAKE\x00é",)
    record = logging.LogRecord(
        "monitor.service", logging.WARNING, __file__, 1, "bad value %s", hostile, None
    )
    line = TextLogFormatter().format(record)
    assert "\n" not in line and "\x00" not in line
    line.encode("utf-8")  # no lone surrogate left
    assert line.endswith("monitor.service: bad value \\udc80\\x0aFAKE\\x00é")


def test_text_logs_escape_every_line_break_and_terminal_control() -> None:
    """Only C0 controls and DEL were escaped: a model name with NEL (\\x85), a line or
    paragraph separator (\\u2028, \\u2029) split the record for anything that splits lines
    as Python does, and an 8-bit CSI (\\x9b) reached the terminal."""
    hostile = ("a\x85FAKE b\u2028FAKE c\u2029FAKE \x9b31m \x1e\x80é\u202e",)
    record = logging.LogRecord(
        "monitor.service", logging.WARNING, __file__, 1, "bad model %s", hostile, None
    )
    line = TextLogFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert line.endswith(
        "bad model a\\x85FAKE b\\u2028FAKE c\\u2029FAKE \\x9b31m \\x1e\\x80é\u202e"
    )


@contextlib.contextmanager
def _taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 another socket listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_port_in_use_is_one_line_naming_the_key(tmp_path: Path) -> None:
    with _taken_port() as port:
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(
            "kafka: {bootstrap_servers: '127.0.0.1:1'}\n"
            f"http: {{port: {port}}}\nmodels:\n  - name: m\n"
        )
        run = monitor("--log-format", "json", "run", str(cfg))
    assert run.returncode == EXIT_USAGE
    assert f"http.port {port}: address already in use" in run.stderr
    assert "Traceback" not in run.stderr
    logs = [line for line in run.stderr.splitlines() if line.startswith("{")]
    assert logs and all(json.loads(line)["level"] for line in logs)


def test_warnings_of_the_config_load_follow_its_log_format(tmp_path: Path) -> None:
    """A warning written while the config loads (two models whose names differ only in
    case) came out as a text line before the first JSON one, under ``log_format: json``."""
    with _taken_port() as port:
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(
            "log_format: json\nkafka: {bootstrap_servers: '127.0.0.1:1'}\n"
            f"http: {{port: {port}}}\nmodels:\n  - name: Fraud\n  - name: fraud\n"
        )
        run = monitor("run", str(cfg))
    assert run.returncode == EXIT_USAGE, run.stderr
    lines = run.stderr.splitlines()
    problem = [x for x in lines if x.startswith(str(cfg))]
    assert problem and f"http.port {port}" in problem[0]
    logs = [x for x in lines if x not in problem]
    records = [json.loads(x) for x in logs]  # every log line is JSON
    assert any("differ only in case" in r["message"] for r in records), logs


@pytest.mark.parametrize("host", ["256.1.1.1", "192.0.2.1"])
def test_a_host_to_listen_on_that_is_not_here_is_one_line_naming_the_host(
    tmp_path: Path, host: str
) -> None:
    """A name that does not resolve said ``http.port 9108: unknown error -2``: the port
    blamed, the reason a number. An address this machine lacks (TEST-NET 192.0.2.1) blamed
    the port too."""
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"kafka: {{bootstrap_servers: '127.0.0.1:1'}}\nhttp: {{host: {host}, port: 0}}\n"
        "models:\n  - name: m\n"
    )
    run = monitor("run", str(cfg))
    assert run.returncode == EXIT_USAGE, run.stderr
    (line,) = [x for x in run.stderr.splitlines() if x.startswith(str(cfg))]
    assert line.startswith(f"{cfg}: http.host {host}: not an address to listen on here (")
    assert "unknown error" not in line and "Traceback" not in run.stderr


def test_reference_build_reports_each_column(tmp_path: Path) -> None:
    lines = ["customer_id,monthly_spend,plan,prediction,label,event_id,timestamp"]
    lines += [f"{i},{i * 1.5},{'ab'[i % 2]},0.5,1,e{i},{i}" for i in range(1, 3001)]
    lines += ["3001,oops,a,0.5,0,e3001,3001", "3002,n/a,b,0.4,1,e3002,3002"]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    run = monitor(
        "reference", "build", "--model", "m", "--input", "train.csv", "--output", "m.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == EXIT_OK, run.stderr
    assert "monthly_spend: categorical, 3001 values, 1 missing " in run.stdout
    assert "(1 non-numeric value 'oops' at row 3001)" in run.stdout
    assert "customer_id: numeric, 3002 values, 0 missing (every present value is a number)" in (
        run.stdout
    )
    assert "prediction: numeric, 3002 values" in run.stdout
    assert not re.search(r"^\s+(label|event_id|timestamp):", run.stdout, re.M)
    # Forced types: the declared features only, 'oops' counted as missing.
    run = monitor(
        "reference", "build", "--model", "m", "--input", "train.csv", "--output", "m2.json",
        "--features", "monthly_spend:numeric,plan:categorical", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == EXIT_OK, run.stderr
    assert "monthly_spend: numeric, 3001 values, 1 missing (declared; 1 non-numeric" in run.stdout
    assert "customer_id" not in run.stdout
    # ... or the features the config declares for the model.
    (tmp_path / "monitor.yaml").write_text(
        "models:\n  - name: m\n    features: {monthly_spend: numeric}\n"
    )
    run = monitor(
        "reference", "build", "--model", "m", "--input", "train.csv", "--output", "m3.json",
        "--config", "monitor.yaml", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == EXIT_OK, run.stderr
    assert "monthly_spend: numeric" in run.stdout and "plan" not in run.stdout
    run = monitor("check-config", "monitor.yaml", cwd=tmp_path)
    assert run.returncode == EXIT_OK  # (no reference path: nothing to load)


def test_reference_build_input_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("a,b,c\n1,2,3\n4,5\n")
    run = monitor(
        "reference", "build", "--model", "m", "--input", "train.csv", "--output", "o.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == EXIT_USAGE
    assert run.stderr.strip() == "monitor: train.csv:3: expected 3 fields, got 2"
    run = monitor(
        "reference", "build", "--model", "m", "--input", "train.csv", "--output", "o.json",
        "--features", "a:float", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == EXIT_USAGE and "expected name:numeric" in run.stderr


def test_progress_is_reported_every_n_rows_or_seconds() -> None:
    out = io.StringIO()
    ticks = iter(float(t) for t in range(10_000))
    rows = list(
        with_progress(
            range(25_000),
            "train.csv",
            every_rows=10_000,
            every_seconds=5,
            clock=lambda: next(ticks),
        )
    )
    assert rows == list(range(25_000))
    lines = out.getvalue()
    assert lines == ""  # the default stream is stderr, not this one
    out = io.StringIO()
    ticks = iter(float(t) for t in range(10_000))
    list(
        with_progress(
            range(25_000),
            "train.csv",
            every_rows=10_000,
            every_seconds=5,
            clock=lambda: next(ticks),
            out=out,
        )
    )
    assert rows == list(range(25_000))
    got = out.getvalue().splitlines()
    # Every 10000 rows, and whenever 5 (fake) seconds passed: the clock ticks per 1000 rows.
    assert got[0] == "train.csv: 5000 rows read (5.0 s)"
    assert "train.csv: 10000 rows read (10.0 s)" in got
    assert len(got) == 5


@pytest.mark.parametrize(
    ("section", "key"), [("state", "path"), ("alerting", "outbox_path")], ids=["state", "outbox"]
)
def test_an_unusable_file_path_is_one_line_naming_the_key(
    tmp_path: Path, section: str, key: str
) -> None:
    (tmp_path / "afile").write_text("not a folder")
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "kafka: {bootstrap_servers: '127.0.0.1:1'}\nhttp: {port: 0}\n"
        f"{section}: {{{key}: afile/x.sqlite}}\nmodels:\n  - name: m\n"
    )
    run = monitor("run", str(cfg))
    assert run.returncode == EXIT_USAGE
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if f"{section}.{key}" in line]
    assert len(lines) == 1
    # e.g. "file exists (.../afile)": the OS's reason, and the path it is about.
    assert lines[0].startswith(f"{cfg}: {section}.{key} {tmp_path / 'afile/x.sqlite'}: ")
    assert lines[0].endswith(f"({tmp_path / 'afile'})")


def test_run_refuses_what_check_config_reports_from_the_file_alone(tmp_path: Path) -> None:
    """A segment on a feature the model declares numeric, or a constraint on one it does
    not declare: check-config reports them from the file alone, so run refuses to start
    with the same lines (exit 2, no traceback) instead of running with the model's
    segments or rules ignored or disabled later."""
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "kafka: {bootstrap_servers: '127.0.0.1:1'}\n"
        f"state: {{path: {tmp_path / 's.sqlite'}}}\n"
        f"alerting: {{outbox_path: {tmp_path / 'o.sqlite'}}}\n"
        "http: {port: 0}\n"
        "models:\n  - name: m\n    features: {x: numeric, region: categorical}\n"
        "    segments: [x]\n"
        "    validation: {constraints: {agee: {min: 0}}}\n"
    )
    check = monitor("check-config", str(cfg))
    assert check.returncode == EXIT_USAGE
    try:
        run = subprocess.run(
            [sys.executable, "-m", "monitor.cli", "run", str(cfg)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("monitor run started with a configuration check-config rejects")
    assert run.returncode == EXIT_USAGE, run.stderr
    assert "Traceback" not in run.stderr
    for where in ("models[0].segments.by[0]", "models[0].validation.constraints.agee"):
        assert where in run.stderr and where in check.stderr + check.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--events", "-5", "--write-reference", "r.jsonl"], "--events: '-5'"),
        (["simulate", "--drift-size", "nan", "--write-reference", "r.jsonl"], "finite"),
        (["simulate", "--rate", "-1", "--write-reference", "r.jsonl"], "--rate: '-1'"),
        (["simulate", "--drift-start", "-3", "--write-reference", "r.jsonl"], "--drift-start"),
        (
            ["reference", "build", "--model", "m", "--input", "t.csv", "--output", "o.json",
             "--max-sample", "-5"],
            "--max-sample: '-5'",
        ),
        (
            ["reference", "build", "--model", "m", "--input", "t.csv", "--output", "o.json",
             "--max-sample", "0"],
            "--max-sample: '0'",
        ),
    ],
)  # fmt: skip
def test_a_bad_number_argument_is_a_usage_error(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    """A negative --events or --max-sample raised deep inside numpy (a traceback, exit 1);
    --max-sample 0 was silently 10000; --drift-size nan passed. Each is exit 2 naming it."""
    (tmp_path / "t.csv").write_text("a\n1\n2\n")
    run = monitor(*argv, cwd=tmp_path)
    assert run.returncode == EXIT_USAGE, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr


def test_simulate_without_a_broker_is_one_line(tmp_path: Path) -> None:
    """A broker that cannot be reached was a KafkaConnectionError traceback."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = monitor("simulate", "--bootstrap", f"127.0.0.1:{port}", "--events", "1")
    assert run.returncode == EXIT_FAILURE, run.stderr
    assert "Traceback" not in run.stderr
    assert f"monitor: cannot connect to Kafka at 127.0.0.1:{port}" in run.stderr


def test_each_help_states_the_exit_code_its_command_returns() -> None:
    """`validate --help` said "exit 1 if any rule is breached"; it exits 3 (EXIT_CHECK_FAILED)."""
    run = monitor("validate", "--help")
    text = " ".join(run.stdout.split())
    assert f"exit {EXIT_CHECK_FAILED} if any rule is breached" in text
    assert "exit 1 if any rule" not in text


def test_only_run_promises_the_configs_log_level() -> None:
    """Every command's --help said "(default: the config's log_level, INFO)", but only
    `run` applies the config's log_level and log_format; check-config, validate, report
    and the rest log at INFO/text unless told."""
    for argv in (["check-config"], ["validate"], ["report"], ["reference", "build"]):
        text = " ".join(monitor(*argv, "--help").stdout.split())
        assert "(default: INFO)" in text and "the config's log_level" not in text, argv
    text = " ".join(monitor("run", "--help").stdout.split())
    assert "(default: the config's log_level, INFO)" in text


def _report_files(tmp_path: Path) -> list[str]:
    # 40 columns: the JSON document (about 500 kB) is far larger than a pipe's buffer.
    rows = "\n".join(
        json.dumps({**{f"x{j}": (i * (j + 1)) % 97 for j in range(40)}, "c": "ab"[i % 2]})
        for i in range(400)
    )
    (tmp_path / "r.jsonl").write_text(rows)
    return ["report", "--reference", "r.jsonl", "--current", "r.jsonl", "--json", "-"]


def test_a_full_standard_output_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """``--json -`` into a full disk (``/dev/full``) died with an ``OSError`` traceback."""
    with open("/dev/full", "w") as full:
        run = subprocess.run(
            [sys.executable, "-m", "monitor.cli", *_report_files(tmp_path)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    assert run.returncode == EXIT_FAILURE
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr
    assert "monitor: cannot write to standard output: No space left on device" in run.stderr


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """``monitor report --json - | head -c 10`` died with a ``BrokenPipeError`` traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", *_report_files(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1) == b"{"
    proc.stdout.close()  # the reader leaves after one byte of a large document
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_FAILURE
    assert "Traceback" not in err and "Exception ignored" not in err


def test_a_profile_output_that_cannot_be_written_names_it_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """``--output`` naming a folder said "cannot write out.json.tmp" and left that file."""
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps({"x": i}) for i in range(50)))
    (tmp_path / "out.json").mkdir()
    run = monitor(
        "reference", "build", "--model", "m", "--input", "r.jsonl", "--output", "out.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == EXIT_FAILURE
    assert "monitor: cannot write out.json: Is a directory" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "r.jsonl"]


@pytest.mark.parametrize(
    ("model", "why"),
    [
        ("A" * 201, "String should have at most 200 characters"),
        ("\udcff", "Input should be a valid string"),  # argv byte 0xff
    ],
)
def test_report_refuses_a_bad_model_name_as_usage(tmp_path: Path, model: str, why: str) -> None:
    """A ``--model`` the config would refuse (too long; a byte that is not UTF-8 in argv)
    died with pydantic's ``ValidationError`` traceback and exit 1."""
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps({"x": i}) for i in range(50)))
    argv = [sys.executable, "-m", "monitor.cli", "report", "--reference", "r.jsonl"]
    run = subprocess.run(
        [*argv, "--current", "r.jsonl", "--model", model],
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
    )
    err = run.stderr.decode("utf-8", "replace")
    assert run.returncode == EXIT_USAGE, err
    assert "Traceback" not in err and f"error: --model: {why}" in err
