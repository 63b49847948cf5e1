"""Secrets from files (``${file:PATH}``), as Kubernetes and Docker mount them.

Every secret option takes the file form; the value is the file's content without its
trailing line breaks, and stays a secret (``repr``, errors). A file that cannot be used
is a configuration error naming the option and the file, never the content, whatever
the reason: missing, unreadable (permission denied, run as another user through the
real CLI), a directory, empty, too large, not UTF-8.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitor.config import MAX_SECRET_FILE_BYTES, load_config, parse_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _secret(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:16]}"


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_every_secret_option_reads_a_file_without_its_trailing_newline(tmp_path: Path) -> None:
    secrets = {name: _secret(name) for name in ("admin", "sasl", "sslpw", "slack", "pd", "sign")}
    _write(tmp_path / "admin", secrets["admin"] + "\n")
    _write(tmp_path / "sasl", secrets["sasl"] + "\r\n")
    _write(tmp_path / "sslpw", secrets["sslpw"])
    _write(tmp_path / "slack", f"https://hooks.slack.example/services/T/B/{secrets['slack']}\n")
    _write(tmp_path / "pd", secrets["pd"] + "\n\n")
    _write(tmp_path / "sign", secrets["sign"] + "\n")
    (tmp_path / "run").mkdir()
    _write(tmp_path / "run" / "hdr", "Bearer " + secrets["admin"] + "\n")
    config_file = tmp_path / "monitor.yaml"
    config_file.write_text(
        "kafka:\n"
        "  security_protocol: SASL_SSL\n"
        "  sasl_mechanism: PLAIN\n"
        "  sasl_username: monitor\n"
        "  sasl_password: ${file:sasl}\n"  # relative: against the config file's folder
        f"  ssl_certfile: {tmp_path / 'c.pem'}\n"
        f"  ssl_keyfile: {tmp_path / 'k.pem'}\n"
        f"  ssl_password: ${{file:{tmp_path / 'sslpw'}}}\n"
        "http:\n"
        f"  admin_token: ${{file:{tmp_path / 'admin'}}}\n"
        "alerting:\n"
        "  receivers:\n"
        "    chat: {type: slack, webhook_url: '${file:slack}'}\n"
        "    pager: {type: pagerduty, routing_key: '${file:./pd}'}\n"
        "    hook:\n"
        "      type: webhook\n"
        "      url: https://hooks.example/x\n"
        "      signing_secret: ${file:sign}\n"
        "      headers: {Authorization: '${file:run/hdr}'}\n"
    )
    config = load_config(config_file, env={})
    assert config.http.admin_token is not None
    assert config.http.admin_token.get_secret_value() == secrets["admin"]
    assert config.kafka.sasl_password is not None
    assert config.kafka.sasl_password.get_secret_value() == secrets["sasl"]
    assert config.kafka.ssl_password is not None
    assert config.kafka.ssl_password.get_secret_value() == secrets["sslpw"]
    receivers = config.alerting.receivers
    slack_url = receivers["chat"].webhook_url.get_secret_value()  # type: ignore[union-attr]
    assert slack_url == f"https://hooks.slack.example/services/T/B/{secrets['slack']}"
    assert receivers["pager"].routing_key.get_secret_value() == secrets["pd"]  # type: ignore[union-attr]
    hook = receivers["hook"]
    assert hook.signing_secret.get_secret_value() == secrets["sign"]  # type: ignore[union-attr]
    assert hook.headers["Authorization"].get_secret_value() == f"Bearer {secrets['admin']}"  # type: ignore[union-attr]
    shown = repr(config) + str(config)
    for value in secrets.values():
        assert value not in shown


def test_the_file_form_and_the_environment_combine_in_one_string(tmp_path: Path) -> None:
    _write(tmp_path / "path", "T/B/abc\n")
    raw = {
        "alerting": {
            "receivers": {
                "chat": {"type": "slack", "webhook_url": "https://${HOST}/services/${file:path}"}
            }
        }
    }
    config = parse_config(raw, env={"HOST": "hooks.example"}, base_dir=tmp_path)
    url = config.alerting.receivers["chat"].webhook_url.get_secret_value()  # type: ignore[union-attr]
    assert url == "https://hooks.example/services/T/B/abc"


def test_a_variable_named_file_keeps_its_default_form() -> None:
    # ``${file:-x}`` was, and stays, the variable ``file`` with the default ``x``.
    config = parse_config({"kafka": {"group_id": "${file:-fallback}"}}, env={})
    assert config.kafka.group_id == "fallback"
    config = parse_config({"kafka": {"group_id": "${file:-fallback}"}}, env={"file": "g"})
    assert config.kafka.group_id == "g"


SECRET_TEXT = _secret("neverShown")


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda d: d / "absent", "does not exist"),
        (lambda d: _write(d / "empty", ""), "is empty"),
        (lambda d: _write(d / "newline", "\n\r\n"), "is empty"),
        (lambda d: (d / "dir").mkdir() or d / "dir", "is not a regular file"),
        (
            lambda d: _write(d / "big", SECRET_TEXT * (MAX_SECRET_FILE_BYTES // 20)),
            f"is larger than {MAX_SECRET_FILE_BYTES} bytes",
        ),
        (
            lambda d: _write(d / "latin1", SECRET_TEXT.encode() + b"caf\xe9\n"),
            "is not UTF-8 text",
        ),
    ],
    ids=["missing", "empty", "only-newlines", "directory", "too-large", "not-utf8"],
)
def test_an_unusable_secret_file_names_the_option_and_the_file_not_the_content(
    tmp_path: Path, make: Callable[[Path], Path], why: str
) -> None:
    path: Path = make(tmp_path)
    ref = f"${{file:{path}}}"
    raw = {
        "http": {"admin_token": ref},
        "alerting": {"receivers": {"chat": {"type": "slack", "webhook_url": ref}}},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    # One problem per option (the "" left in its place is not reported a second time).
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"http.admin_token: secret file {path} {why}")
    assert problems[1].startswith(f"alerting.receivers.chat.webhook_url: secret file {path} {why}")
    assert SECRET_TEXT not in str(info.value)


def test_a_value_read_from_a_file_is_masked_in_any_option_s_message(tmp_path: Path) -> None:
    """A file's content is a secret whatever it is given to: a check that quotes a
    non-secret option's value (a topic name) does not show it."""
    _write(tmp_path / "topic", f"bad topic {SECRET_TEXT}\n")
    with pytest.raises(ConfigError) as info:
        parse_config({"kafka": {"predictions_topic": "${file:topic}"}}, base_dir=tmp_path)
    assert [p.split(":", 1)[0] for p in info.value.problems] == ["kafka.predictions_topic"]
    assert SECRET_TEXT not in str(info.value)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can enter (pytest's tmp_path is root's own, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="monitor-secret-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_secret_file_the_monitor_may_not_read_is_one_line_from_check_config(
    shared_dir: Path,
) -> None:
    """A mounted secret with the wrong owner or mode: permission denied, through the real
    CLI. Run as root (which reads any file), the CLI runs as ``nobody``."""
    secret = _write(shared_dir / "slack-url", f"https://hooks.example/{SECRET_TEXT}\n")
    secret.chmod(0o000)
    config_file = shared_dir / "monitor.yaml"
    config_file.write_text(
        "alerting:\n  receivers:\n    chat: {type: slack, webhook_url: '${file:slack-url}'}\n"
    )
    config_file.chmod(0o644)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "monitor.cli", "check-config", str(config_file)]
    if os.geteuid() == 0:
        # setpriv (util-linux) switches user only at exec, so the interpreter may live
        # under /root; subprocess's user= switches before and could not start it.
        setpriv = shutil.which("setpriv")
        assert setpriv, "running as root, this test needs setpriv to become another user"
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/", timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr == (
        f"{config_file}: alerting.receivers.chat.webhook_url: secret file {secret} cannot be "
        "read: Permission denied\n"
    )
    assert SECRET_TEXT not in run.stdout + run.stderr


@pytest.mark.parametrize("token", ["admin", "changeme", "s3cret-token", "x" * 15])
def test_a_short_admin_token_is_refused_without_being_shown(token: str) -> None:
    """A guessable token guards the silences API (whoever holds it mutes any alert): one
    shorter than 16 characters was accepted; it is refused, with how to make a good one."""
    with pytest.raises(ConfigError) as info:
        parse_config({"http": {"admin_token": token}})
    assert info.value.problems == [
        "http.admin_token: Value error, is too short to guard the admin API: at least 16 "
        "characters (the value is a secret: not shown); generate one with "
        'python -c "import secrets; print(secrets.token_urlsafe(32))"'
    ]


def test_a_generated_admin_token_is_accepted(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    _write(tmp_path / "token", token + "\n")
    config = parse_config({"http": {"admin_token": "${file:token}"}}, base_dir=tmp_path)
    assert config.http.admin_token is not None
    assert config.http.admin_token.get_secret_value() == token
    assert parse_config({"http": {"admin_token": "x" * 16}}).http.admin_token is not None
    assert parse_config({"http": {"admin_token": "${UNSET:-}"}}).http.admin_token is None
