"""Configuration errors never echo a secret: YAML syntax errors, failed checks of secret
options, through the real CLI (``check-config`` and ``run``) in a subprocess.

PyYAML's message quotes the offending line under a caret: a Slack URL on a line with a
stray ``: `` went to the terminal. Pydantic's own text carries ``input_value=...``: only
the per-problem messages (option path and why) may reach the operator.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SECRET = f"SeCrEt{uuid.uuid4().hex}"


def _shows_the_secret(text: str) -> bool:
    """Any 8 characters of it: PyYAML's snippet cuts a long line to its tail (``... <end of
    the secret>: x``), which is as much a leak as the whole."""
    return any(SECRET[i : i + 8] in text for i in range(len(SECRET) - 7))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MONITOR_TEST_SECRET": SECRET}
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


BROKEN = {
    # A pasted URL with ": " in it: "mapping values are not allowed here" at column 71.
    "mapping": (
        "alerting:\n  receivers:\n    s:\n      type: slack\n"
        f"      webhook_url: https://hooks.slack.com/services/T0/B0/{SECRET}: x\n",
        "5:",
        "mapping values are not allowed here",
    ),
    # A token with an unclosed quote: the error is at the end, the context on line 2.
    "unclosed-quote": (
        f'http:\n  admin_token: "{SECRET}\nlog_level: info\n',
        "4:1",
        "found unexpected end of stream (while scanning a quoted scalar at 2:16)",
    ),
    # A tab indenting the line that holds the secret.
    "tab": (
        f"kafka:\n\tsasl_password: {SECRET}\n",
        "2:1",
        "found character '\\t' that cannot start any token",
    ),
    # A bad escape inside a double-quoted secret.
    "escape": (
        "alerting:\n  receivers:\n"
        f'    p: {{type: pagerduty, routing_key: "{SECRET}\\q{SECRET}"}}\n',
        "3:",
        "found unknown escape character 'q'",
    ),
    # A control character in a line with a secret (the reader's error, by position).
    "control": (
        f"kafka:\n  sasl_password: {SECRET}\x01{SECRET}\n",
        "2:",
        "unacceptable character #x0001",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_yaml_syntax_error_names_file_line_and_column_never_the_line(
    tmp_path: Path, case: str
) -> None:
    text, where, what = BROKEN[case]
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={})
    (problem,) = info.value.problems
    assert problem.startswith(f"(file): not valid YAML: {cfg}:{where}"), problem
    assert what in problem
    assert not _shows_the_secret(str(info.value))
    assert info.value.__cause__ is None and info.value.__suppress_context__
    run = _cli("check-config", str(cfg))
    assert run.returncode == 2
    assert run.stderr == f"{cfg}: {problem}\n"
    assert not _shows_the_secret(run.stdout + run.stderr)


def test_run_refuses_a_broken_file_without_echoing_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(BROKEN["mapping"][0])
    run = _cli("run", str(cfg))
    assert run.returncode == 2
    assert "not valid YAML" in run.stderr and f"{cfg}:5:" in run.stderr
    assert not _shows_the_secret(run.stdout + run.stderr)


def test_secret_options_that_fail_validation_are_named_never_shown(tmp_path: Path) -> None:
    """Every secret option failing its own check (and a wrong type), inline and from the
    environment: each is reported by path; neither the value nor pydantic's
    ``input_value=`` appears."""
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "kafka:\n"
        f"  sasl_password: {{a: {SECRET}}}\n"
        "http:\n"
        f"  admin_token: {SECRET[:10]}\n"  # too short
        "alerting:\n"
        "  receivers:\n"
        f"    s: {{type: slack, webhook_url: 'hooks.slack.com/services/{SECRET}'}}\n"
        f"    p: {{type: pagerduty, routing_key: [{SECRET}]}}\n"
        "    w:\n"
        "      type: webhook\n"
        f"      url: 'https://h/x?token=${{MONITOR_TEST_SECRET}} '\n"
        f"      signing_secret: 'whsec_{SECRET}!!'\n"
        f'      headers: {{X-Key: "{SECRET}\\n"}}\n'
        f"    r: {{type: retrain, url: 'ftp://{SECRET}', secret: 12345}}\n"
    )
    for command in ("check-config", "run"):
        run = _cli(command, str(cfg))
        assert run.returncode == 2, run.stderr
        output = run.stdout + run.stderr
        for option in (
            "kafka.sasl_password",
            "http.admin_token",
            "alerting.receivers.s.slack.webhook_url",
            "alerting.receivers.p.pagerduty.routing_key",
            "alerting.receivers.w.webhook.url",
            "alerting.receivers.w.webhook.signing_secret",
            "alerting.receivers.w.webhook.headers",
            "alerting.receivers.r.retrain.url",
            "alerting.receivers.r.retrain.secret",
        ):
            assert f"  {option}: " in run.stderr, (option, run.stderr)
        assert not _shows_the_secret(output)
        assert "input_value" not in output and "Traceback" not in output


def test_a_header_line_written_as_one_key_is_not_shown(tmp_path: Path) -> None:
    """``headers: {"Authorization: Bearer <token>"}`` is a mapping with one key (the whole
    line) and no value: the key was printed as part of the option's path, and a key that
    is no header name was quoted by the header check."""
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "alerting:\n"
        "  receivers:\n"
        "    w:\n"
        "      type: webhook\n"
        "      url: https://hooks.example/x\n"
        f'      headers: {{"Authorization: Bearer {SECRET}"}}\n'
        "    a:\n"
        "      type: alertmanager\n"
        "      url: http://alertmanager:9093\n"
        f'      headers: {{"X-Scope-OrgID {SECRET}": "tenant"}}\n'
    )
    run = _cli("check-config", str(cfg))
    assert run.returncode == 2
    assert run.stderr.splitlines()[1:] == [
        "  alerting.receivers.w.webhook.headers.<not a header name: not shown>: Input should "
        "be a valid string",
        "  alerting.receivers.a.alertmanager.headers: Value error, a header name is not an "
        "HTTP token (letters, digits and !#$%&'*+-.^_`|~; the name is not shown: it may hold "
        "the value, as in 'Authorization: Bearer ...' written as one key)",
    ]
    assert not _shows_the_secret(run.stdout + run.stderr)
