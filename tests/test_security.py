"""Security: SASL/PLAIN from config, secrets only from the environment and never shown,
HTTP on loopback by default, state-changing endpoints behind a bearer token."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_helpers import MonitorProcess, write_config
from own_brokers import SASL_USERS

from devtools.local_kafka import LocalKafka
from monitor.config import HttpConfig, parse_config
from monitor.service import MonitorService
from monitor.simulate import publish

PASSWORD = SASL_USERS["monitor"]
TOKEN = "admin-T0ken-9e8d7c"
WEBHOOK_SECRET = "whsec-never-shown-4b3a"


def _raw(kafka: LocalKafka, tmp: Path) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": kafka.sasl_bootstrap_servers,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "monitor",
            "sasl_password": "${MONITOR_KAFKA_PASSWORD}",
            "predictions_topic": "secure",
            "labels_topic": None,
            "dead_letter_topic": "secure-dlq",
            "poll_timeout_ms": 100,
            "metadata_max_age_ms": 1000,
        },
        "http": {"port": 0, "admin_token": "${MONITOR_ADMIN_TOKEN}"},
        "state": {"path": str(tmp / "state.sqlite")},
        "unknown_models": "track",
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 100}},
        "alerting": {
            "receivers": {
                "hook": {
                    "type": "webhook",
                    "url": "http://127.0.0.1:9/hook",
                    "signing_secret": "${WEBHOOK_SECRET}",
                }
            },
            "outbox_path": str(tmp / "outbox.sqlite"),
        },
        "log_level": "DEBUG",
    }


ENV = {
    "MONITOR_KAFKA_PASSWORD": PASSWORD,
    "MONITOR_ADMIN_TOKEN": TOKEN,
    "WEBHOOK_SECRET": WEBHOOK_SECRET,
}


@pytest.mark.kafka
@pytest.mark.slow
async def test_sasl_consumes_and_secrets_never_leak(sasl_kafka: LocalKafka, tmp_path: Path) -> None:
    p = MonitorProcess(
        write_config(tmp_path / "c.yaml", _raw(sasl_kafka, tmp_path)), tmp_path / "m.log", ENV
    )
    p.start()
    seen: list[str] = []
    try:
        await p.wait_serving()
        await publish(
            sasl_kafka.sasl_bootstrap_servers,
            topic="secure",
            model="credit-risk",
            events=300,
            seed=3,
            producer_kwargs={
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "monitor",
                "sasl_plain_password": PASSWORD,
            },
        )
        await p.wait_positions({"secure/0": 300}, within=60)
        for path in ("/metrics", "/api/status", "/healthz", "/readyz", "/api/silences"):
            seen.append((await p.get(path)).text)
        status = await p.status()
        assert status["models"]["credit-risk"]["events"] == 300
        assert await asyncio.to_thread(p.terminate) == 0, p.tail()
    finally:
        p.ensure_dead()
    text = "\n".join([*seen, p.output()])
    assert "DEBUG" in p.output() or "INFO" in p.output()
    for secret in (PASSWORD, TOKEN, WEBHOOK_SECRET):
        assert secret not in text


@pytest.mark.kafka
async def test_a_wrong_sasl_password_fails_fast_with_a_clear_error(
    sasl_kafka: LocalKafka, tmp_path: Path
) -> None:
    p = MonitorProcess(
        write_config(tmp_path / "c.yaml", _raw(sasl_kafka, tmp_path)),
        tmp_path / "m.log",
        {**ENV, "MONITOR_KAFKA_PASSWORD": "wrong-password-123"},
    ).start()
    t0 = time.monotonic()
    try:
        code = await asyncio.to_thread(p.proc.wait, 30)  # type: ignore[union-attr]
    finally:
        p.ensure_dead()
    assert time.monotonic() - t0 < 30
    assert code == 1
    out = p.output()
    assert "authentication failed" in out and "sasl_password" in out, out[-2000:]
    assert "wrong-password-123" not in out and PASSWORD not in out


def test_http_binds_to_loopback_by_default() -> None:
    assert HttpConfig().host == "127.0.0.1"


@pytest.mark.kafka
async def test_state_changing_endpoints_need_the_token(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "predictions_topic": "tok",
            "labels_topic": None,
        },
        "http": {"port": 0, "admin_token": TOKEN},
        "state": {"path": str(tmp_path / "s.sqlite")},
        "alerting": {"outbox_path": str(tmp_path / "o.sqlite")},
    }
    service = MonitorService(parse_config(raw))
    await service.start()
    try:
        url = service.http.url
        assert url.startswith("http://127.0.0.1:")
        body = {"matchers": {"model": "m"}, "duration_seconds": 60}
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"{url}/api/silences", json=body)).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            r = await client.post(f"{url}/api/silences", json=body, headers=wrong)
            assert r.status_code == 403
            right = {"Authorization": f"Bearer {TOKEN}"}
            r = await client.post(f"{url}/api/silences", json=body, headers=right)
            assert r.status_code == 201
            assert TOKEN not in (await client.get(f"{url}/api/status")).text
    finally:
        await service.stop(grace_seconds=0)


@pytest.mark.kafka
async def test_without_a_token_state_changing_endpoints_are_disabled(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "predictions_topic": "tok",
            "labels_topic": None,
        },
        "http": {"port": 0},
        "state": {"path": str(tmp_path / "s.sqlite")},
        "alerting": {"outbox_path": str(tmp_path / "o.sqlite")},
    }
    service = MonitorService(parse_config(raw))
    await service.start()
    try:
        body = {"matchers": {"model": "m"}, "duration_seconds": 60}
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"{service.http.url}/api/silences", json=body, headers={"Authorization": "Bearer x"}
            )
        assert r.status_code == 403
    finally:
        await service.stop(grace_seconds=0)
