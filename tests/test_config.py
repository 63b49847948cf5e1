"""Configuration: every problem reported with its path; secrets only from the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import check_config, load_config, parse_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_example_and_demo_configs_are_valid() -> None:
    cfg = load_config(ROOT / "config" / "monitor.yaml", env={})
    assert cfg.model("credit-risk") is not None
    assert check_config(cfg) == []
    demo = load_config(
        ROOT / "config" / "demo.yaml",
        env={
            "KAFKA_BOOTSTRAP": "127.0.0.1:1",
            "WEBHOOK_URL": "http://127.0.0.1:2/",
            "WEBHOOK_SECRET": "s",
        },
    )
    assert demo.kafka.bootstrap_servers == "127.0.0.1:1"
    assert demo.alerting.receivers["demo-webhook"].signing_secret.get_secret_value() == "s"  # type: ignore[union-attr]


def test_every_problem_is_reported_with_its_path() -> None:
    raw = {
        "kafka": {"max_batch_records": 0, "security_protocol": "SASL_SSL"},
        "models": [
            {"name": "a", "window": {"size": 0}},
            {"name": "b", "window": {"size": 10, "step": 20}},
            {"name": "c", "features": {"x": "text"}},
        ],
        "bogus": 1,
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={})
    problems = err.value.problems
    joined = "\n".join(problems)
    assert "kafka.max_batch_records: Input should be greater than 0" in joined
    assert "models[0].window.size: Input should be greater than 0" in joined
    assert "models[1].window: Value error, step must be <= size" in joined
    assert "models[2].features.x: Input should be 'numeric' or 'categorical'" in joined
    assert "bogus: Extra inputs are not permitted" in joined
    assert len(problems) >= 5


def test_environment_substitution_and_missing_variables() -> None:
    raw = {
        "kafka": {
            "bootstrap_servers": "${BROKERS}",
            "sasl_password": "${NOPE}",
            "client_id": "${ID:-x}",
        }
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={"BROKERS": "h:1"})
    assert err.value.problems == ["kafka.sasl_password: environment variable NOPE is not set"]
    cfg = parse_config(
        {
            **raw,
            "kafka": {
                **raw["kafka"],
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
            },
        },
        env={"BROKERS": "h:1", "NOPE": "hunter2"},
    )
    assert cfg.kafka.client_id == "x"
    assert (
        cfg.kafka.sasl_password is not None
        and cfg.kafka.sasl_password.get_secret_value() == "hunter2"
    )
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "models:\n  - name: m\n    window: {size: -1}\n    reference: {path: nowhere.csv}\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(bad)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "models[0].window.size" in run.stderr
    good = tmp_path / "good.yaml"
    good.write_text("models:\n  - name: m\n    reference: {path: nowhere.csv}\n")
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(good)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "models[0].reference.path: file not found" in run.stderr
    good.write_text("models:\n  - name: m\n")
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check-config", str(good)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
