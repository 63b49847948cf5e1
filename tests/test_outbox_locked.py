"""An alert outbox locked by another process holds the batch; it does not end the service.

The outbox write (SQLite, on the event loop) failed once another process had held the
file's lock past the busy timeout (5 s): the batch was left half-applied, the state
marked unsafe and ``monitor run`` exited, so a supervisor restarted it into the same lock.
Now the failure is counted, logged and shown on ``/healthz``; the batch is not
acknowledged; the write is tried again with backoff and, once the lock is gone, the page
goes out and the offsets advance.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from alert_receivers import RecordingReceiver
from fault_helpers import eventually

from monitor.alerting import database
from monitor.config import parse_config
from monitor.service import MonitorService
from monitor.simulate import DriftSpec, publish
from monitor.store import SQLiteStateStore

pytestmark = pytest.mark.kafka

#: Another process holding the outbox file's lock until its stdin closes.
_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


def _outbox_errors(service: MonitorService) -> float:
    value = service.registry.get_sample_value(
        "monitor_loop_errors_total", {"stage": "alert_outbox"}
    )
    return value or 0.0


async def test_a_locked_outbox_holds_the_batch_and_retries_without_ending_the_service(
    kafka_bootstrap: str,
    tmp_path: Path,
    topic_factory: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Writes give up on the held lock after 0.3 s instead of 5 s: the same path, sooner.
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 300)
    topic = topic_factory("outbox-lock", partitions=1)
    state = tmp_path / "state.sqlite"
    outbox = tmp_path / "outbox.sqlite"
    caplog.set_level(logging.INFO, logger="monitor.service")
    async with RecordingReceiver() as rx:
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
                "defaults": {
                    "window": {"size": 200, "step": 100},
                    "reference": {"learn_first": 200},
                },
                "alerting": {
                    "receivers": {"hook": {"type": "webhook", "url": rx.url}},
                    "outbox_path": str(outbox),
                },
            }
        )
        service = MonitorService(config)
        await service.start()
        task = asyncio.create_task(service.run())
        holder: asyncio.subprocess.Process | None = None
        try:
            await publish(kafka_bootstrap, topic=topic, model="m", events=300, seed=1)
            await eventually(lambda: "m" in service.models, 30)
            await eventually(lambda: service.models["m"].events_total == 300, 30)
            assert not rx.requests  # no drift yet

            holder = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _HOLDER,
                str(outbox),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert holder.stdin is not None and holder.stdout is not None
            assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"locked\n"
            drift = DriftSpec(kind="mean", features=("income", "credit_score"), size=3.0, start=0)
            await publish(kafka_bootstrap, topic=topic, model="m", events=600, seed=2, drift=drift)
            await eventually(lambda: _outbox_errors(service) >= 1, 30)
            await asyncio.sleep(0.3)
            assert not task.done(), task.exception()
            async with httpx.AsyncClient() as client:
                health = await client.get(f"{service.http.url}/healthz")
            assert health.status_code == 200, health.text  # a restart would meet the same lock
            failing = health.json()["alert_outbox_failing"]
            assert failing["attempts"] >= 1 and "locked" in failing["error"]
            assert service._positions.get((topic, 0), 0) < 900  # the held batch is not acknowledged

            holder.stdin.close()
            await asyncio.wait_for(holder.wait(), 10)
            holder = None
            await rx.wait_for_requests(1, within=30)  # the page goes out after all
            await eventually(lambda: service._positions.get((topic, 0)) == 900, 30)
            assert not task.done()
            async with httpx.AsyncClient() as client:
                health = await client.get(f"{service.http.url}/healthz")
            assert health.status_code == 200 and "alert_outbox_failing" not in health.json()
        finally:
            if holder is not None:
                holder.kill()
                await holder.wait()
            service.request_stop()
            await asyncio.gather(task, return_exceptions=True)  # the defect: it had ended
            await service.stop(grace_seconds=1)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("AlertOutboxFailing" in r.getMessage() for r in errors), errors
    assert any("alert outbox written again" in r.getMessage() for r in caplog.records)
    store = SQLiteStateStore(state)
    try:
        assert store.load_offsets() == {(topic, 0): 900}
    finally:
        store.close()
