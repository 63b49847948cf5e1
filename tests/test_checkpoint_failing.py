"""A periodic checkpoint that fails does not end the service.

The state file locked by another process (a backup, an operator's ``sqlite3``
shell in a transaction, a second monitor on the same file) made the checkpoint
fail after SQLite's busy timeout; the error left the consume loop and ``monitor
run`` exited, so a supervisor restarted it into the same lock: a crash loop, and
``CheckpointFailing`` (which needs the errors counted over minutes) never fired.
Now the failure is counted and logged, consumption goes on, and the checkpoint
is tried again at the next interval; once the lock is gone it catches up.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_helpers import eventually

from monitor.config import parse_config
from monitor.service import MonitorService
from monitor.simulate import publish
from monitor.store import SQLiteStateStore

pytestmark = pytest.mark.kafka


def _checkpoints(service: MonitorService, outcome: str) -> float:
    value = service.registry.get_sample_value("monitor_checkpoints_total", {"outcome": outcome})
    return value or 0.0


async def test_a_locked_state_file_fails_checkpoints_without_ending_the_service(
    kafka_bootstrap: str, tmp_path: Path, topic_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_factory("ckpt-lock", partitions=1)
    state = tmp_path / "state.sqlite"
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"g-{topic}",
                "predictions_topic": topic,
                "labels_topic": None,
                "poll_timeout_ms": 100,
            },
            "http": {"port": 0},
            "state": {"path": str(state), "checkpoint_interval_seconds": 0.5},
            "unknown_models": "track",
            "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 200}},
            "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
        }
    )
    caplog.set_level(logging.INFO, logger="monitor.service")
    service = MonitorService(config)
    await service.start()
    task = asyncio.create_task(service.run())
    other: sqlite3.Connection | None = None
    try:
        await publish(kafka_bootstrap, topic=topic, model="m", events=300, seed=1)
        await eventually(lambda: _checkpoints(service, "ok") >= 1 and "m" in service.models, 30)
        await eventually(lambda: service.models["m"].events_total == 300, 30)

        other = sqlite3.connect(state, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the file
        await publish(kafka_bootstrap, topic=topic, model="m", events=300, seed=2)
        await eventually(lambda: _checkpoints(service, "error") >= 1, 30)
        await asyncio.sleep(0.5)
        assert not task.done(), task.exception()
        await eventually(lambda: service.models["m"].events_total == 600, 30)
        async with httpx.AsyncClient() as client:
            health = await client.get(f"{service.http.url}/healthz")
        assert health.status_code == 200  # alive and consuming: a restart would not help
        failing = health.json()["checkpoint_failing"]
        assert failing["attempts"] >= 1 and "database is locked" in failing["error"]

        other.execute("ROLLBACK")
        other.close()
        other = None
        await eventually(
            lambda: any("checkpoint written again" in r.getMessage() for r in caplog.records), 30
        )
        assert not task.done()
        async with httpx.AsyncClient() as client:
            health = await client.get(f"{service.http.url}/healthz")
        assert health.status_code == 200 and "checkpoint_failing" not in health.json()
    finally:
        if other is not None:
            other.close()
        service.request_stop()
        await asyncio.gather(task, return_exceptions=True)  # the defect: it had ended
        await service.stop(grace_seconds=1)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("checkpoint failed" in r.getMessage() for r in errors), errors
    store = SQLiteStateStore(state)
    try:
        assert store.load_offsets() == {(topic, 0): 600}
    finally:
        store.close()
