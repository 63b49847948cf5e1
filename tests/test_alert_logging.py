"""The operator's story in the logs: each incident and delivery outcome once, failures rarely.

Real local HTTP receivers, the real outbox; the logs are read from ``caplog``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alert_receivers import RecordingReceiver, Reply
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig
from monitor.alerting.engine import AlertService
from monitor.clock import SystemClock
from monitor.signals import EvaluationContext, Signal

DISPATCHER = "monitor.alerting.dispatcher"
ENGINE = "monitor.alerting.engine"


def _service(receivers: dict[str, Any], path: Path, registry: CollectorRegistry) -> AlertService:
    config = AlertingConfig.model_validate(
        {
            "receivers": receivers,
            "rules": [{"resolve_after": 1}],
            "group_interval_seconds": 0,  # each update as it comes: one log line or warning each
            "delivery": {"initial_backoff_seconds": 0.01, "max_backoff_seconds": 0.02},
        }
    )
    return AlertService(
        config,
        registry=registry,
        clock=SystemClock(),
        outbox_path=str(path),
        rng=random.Random(1),
        poll_interval_seconds=0.02,
    )


def _evaluation(seq: int, **severities: str) -> tuple[EvaluationContext, list[Signal]]:
    now = time.time()
    ctx = EvaluationContext("churn", "7", now, now - 600, now, 1000, 9000, seq)
    return ctx, [
        Signal("churn", "drift", f, s, 0.4 if s != "ok" else 0.01, 0.2, "psi", {})  # type: ignore[arg-type]
        for f, s in severities.items()
    ]


async def _until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def _records(caplog: pytest.LogCaptureFixture, logger: str, level: int | None = None) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == logger and (level is None or r.levelno == level)
    ]


async def test_a_failing_receiver_is_logged_once_counted_always_and_its_recovery_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registry = CollectorRegistry()
    async with RecordingReceiver() as rx:
        rx.script(*[Reply(503)] * 6)
        svc = _service({"hook": {"type": "webhook", "url": rx.url}}, tmp_path / "o.db", registry)
        await svc.start()
        try:
            svc.submit(*_evaluation(1, income="warning"))
            await _until(lambda: svc.outbox.counts() == {"delivered": 1})
        finally:
            await svc.stop()
    assert len(rx.requests) == 7
    warnings = _records(caplog, DISPATCHER, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("alert delivery to hook failing (HTTP 503, attempt 1)")
    assert len(_records(caplog, DISPATCHER, logging.DEBUG)) == 5  # the other failed attempts
    infos = _records(caplog, DISPATCHER, logging.INFO)
    assert len(infos) == 2, infos
    assert infos[0].startswith("alert delivery to hook recovered after 6 failed attempts in ")
    assert infos[1].startswith("alert delivered to hook: fire ") and "(attempt 7)" in infos[1]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback for a failing receiver
    assert rx.url not in caplog.text
    failures = registry.get_sample_value(
        "monitor_notification_failures_total", {"receiver": "hook", "reason": "http_5xx"}
    )
    assert failures == 6


async def test_incidents_are_logged_once_each_with_model_severity_and_subjects(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with RecordingReceiver() as rx:
        svc = _service(
            {"hook": {"type": "webhook", "url": rx.url}}, tmp_path / "o.db", CollectorRegistry()
        )
        await svc.start()
        try:
            svc.submit(*_evaluation(1, income="warning", age="critical", city="ok"))
            svc.submit(*_evaluation(2, income="warning", age="critical"))  # nothing new
            svc.submit(*_evaluation(3, income="ok", age="critical"))  # income clears
            svc.submit(*_evaluation(4, income="ok", age="ok", **{"evil\nline": "ok"}))
            await rx.wait_for_requests(3)
        finally:
            await svc.stop()
    assert _records(caplog, ENGINE, logging.INFO) == [
        "alert fire: model churn, severity critical, subjects drift:age, drift:income; to hook",
        "alert update: model churn, severity critical, subjects drift:age; "
        "cleared: drift:income; to hook",
        "alert resolve: model churn, severity critical, subjects drift:age; to hook",
    ]


async def test_a_broken_outbox_is_logged_once_then_counted_and_its_recovery_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registry = CollectorRegistry()
    path = tmp_path / "o.db"
    svc = _service({}, path, registry)
    await svc.start()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("ALTER TABLE outbox RENAME TO outbox_away")
        await _until(lambda: (registry.get_sample_value("monitor_outbox_errors_total") or 0) >= 10)
        other.execute("ALTER TABLE outbox_away RENAME TO outbox")
        await _until(lambda: "alert outbox readable again" in caplog.text)
    finally:
        other.close()
        await svc.stop()
    errors = [r for r in caplog.records if r.name == DISPATCHER and r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # not one traceback per poll
    assert errors[0].exc_info is not None


@pytest.mark.parametrize("reply", [Reply(200), Reply(503), Reply(400)])
async def test_an_outcome_the_outbox_cannot_store_does_not_resend_the_notification(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, reply: Reply
) -> None:
    """The outbox refusing writes (its disk full) while it still reads: the delivered row
    stayed pending and due, so one page went to the receiver again at once, 727 times in
    10 seconds (a Slack channel cannot deduplicate). The attempt's outcome is kept and
    stored once the outbox takes writes again; meanwhile the row is not sent again."""
    caplog.set_level(logging.DEBUG)
    registry = CollectorRegistry()
    path = tmp_path / "o.db"
    async with RecordingReceiver(default=reply) as rx:
        svc = _service({"hook": {"type": "webhook", "url": rx.url}}, path, registry)
        await svc.start()
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute(
                "CREATE TRIGGER full BEFORE UPDATE ON outbox "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
            svc.submit(*_evaluation(1, income="warning"))
            await rx.wait_for_requests(1)
            await asyncio.sleep(0.5)  # 25 polls of the dispatcher
            assert len(rx.requests) == 1
            assert (registry.get_sample_value("monitor_outbox_errors_total") or 0) > 0
            other.execute("DROP TRIGGER full")
            if reply.status == 503:  # the retry is stored, and the row is retried again
                await rx.wait_for_requests(2)
            else:
                done = {"delivered": 1} if reply.status == 200 else {"dead": 1}
                await _until(lambda: svc.outbox.counts() == done)
                await asyncio.sleep(0.2)
                assert len(rx.requests) == 1
        finally:
            other.close()
            await svc.stop()
    assert "alert outbox readable again" in caplog.text
    errors = [r for r in caplog.records if r.name == DISPATCHER and r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "Task exception was never retrieved" not in caplog.text


async def test_each_rejected_notification_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registry = CollectorRegistry()
    async with RecordingReceiver(default=Reply(404, body={"error": "no_service"})) as rx:
        svc = _service({"chat": {"type": "slack", "webhook_url": rx.url}}, tmp_path / "o", registry)
        await svc.start()
        try:
            svc.submit(*_evaluation(1, income="warning"))
            svc.submit(*_evaluation(2, income="warning", age="warning"))  # an update
            await _until(lambda: svc.outbox.counts() == {"dead": 2})
        finally:
            await svc.stop()
    warnings = _records(caplog, DISPATCHER, logging.WARNING)
    assert len(warnings) == 2, warnings
    assert all(
        w.startswith("alert delivery to chat rejected (HTTP 404, attempt 1)") for w in warnings
    )
    assert rx.url not in caplog.text
    assert (
        registry.get_sample_value(
            "monitor_notification_failures_total", {"receiver": "chat", "reason": "http_4xx"}
        )
        == 2
    )


async def test_a_replayed_evaluation_is_not_logged_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a restart the service replays evaluations from its checkpoint: same keys, which
    the outbox drops, and the incident was already told: no second "alert fire" line."""
    caplog.set_level(logging.INFO)
    evaluation = _evaluation(1, income="warning")
    async with RecordingReceiver() as rx:
        for _ in range(2):  # the second run starts from no alert state, as after a rollback
            config = AlertingConfig.model_validate(
                {"receivers": {"hook": {"type": "webhook", "url": rx.url}}}
            )
            svc = AlertService(
                config,
                registry=CollectorRegistry(),
                clock=SystemClock(),
                outbox_path=str(tmp_path / "o.db"),
                persist_state=False,
            )
            await svc.start()
            try:
                assert [n.action for n in svc.submit(*evaluation)] == ["fire"]
            finally:
                await svc.stop()
    assert len([m for m in _records(caplog, ENGINE) if m.startswith("alert fire")]) == 1
