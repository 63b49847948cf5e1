"""An outbox write waiting for another process's lock does not stall the event loop.

The alert outbox (SQLite) was written on the event loop: the batch's notifications at
submit, and the dispatcher's claims and outcomes each turn. With another process holding
the file's lock, each write waited there for SQLite's busy timeout (5 s) and the loop
stood still: no Kafka heartbeat or fetch, no HTTP, no delivery. Now the outbox is written
on the alert service's database thread; the loop keeps turning while the write waits, the
batch is acknowledged only once its alert is durable, and the page goes out once when the
lock is released. With ``state.backend: kafka`` the outbox write is the hand-off of the
alerts topic's records (the alert is durable in the topic already): the same.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from alert_receivers import RecordingReceiver
from fault_helpers import eventually

from monitor.config import parse_config
from monitor.service import MonitorService
from monitor.simulate import DriftSpec, publish

pytestmark = pytest.mark.kafka

#: Another process holding the outbox file's write lock until its stdin closes.
_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


class Ticker:
    """A coroutine ticking every ``every`` seconds; the longest gap says how long the loop
    stood still."""

    def __init__(self, every: float = 0.02) -> None:
        self.every = every
        self.ticks = 0
        self.longest_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.every)
            now = loop.time()
            self.longest_gap = max(self.longest_gap, now - last)
            self.ticks += 1
            last = now

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
async def test_a_locked_outbox_does_not_stall_the_loop_and_the_alert_goes_out_once(
    kafka_bootstrap: str, tmp_path: Path, topic_factory: Any, backend: str
) -> None:
    topic = topic_factory("outbox-noblock", partitions=1)
    outbox = tmp_path / "outbox.sqlite"
    state: dict[str, Any] = {"path": str(tmp_path / "state.sqlite")}
    if backend == "kafka":
        state |= {"backend": "kafka", "instance_id": "a", "checkpoint_interval_seconds": 0.5}
    async with RecordingReceiver() as rx:
        config = parse_config(
            {
                "kafka": {
                    "bootstrap_servers": kafka_bootstrap,
                    "group_id": f"g-{topic}",
                    "predictions_topic": topic,
                    "labels_topic": None,
                    "poll_timeout_ms": 100,
                    "metadata_max_age_ms": 1000,
                },
                "http": {"port": 0},
                "state": state,
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
        ticker = Ticker()
        try:
            await publish(kafka_bootstrap, topic=topic, model="m", events=300, seed=1)
            await eventually(lambda: service.models.get("m") is not None, 30)
            await eventually(lambda: service.models["m"].events_total == 300, 30)
            await eventually(lambda: service._positions.get((topic, 0)) == 300, 30)
            await asyncio.sleep(1.0)  # the alerts consumer joined its group (kafka backend)
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
            ticker.start()
            drift = DriftSpec(kind="mean", features=("income", "credit_score"), size=3.0, start=0)
            await publish(kafka_bootstrap, topic=topic, model="m", events=600, seed=2, drift=drift)
            # Drifted events applied: the batch whose evaluation fires waits for the lock.
            await eventually(lambda: service.models["m"].events_total > 300, 30)
            await asyncio.sleep(2.0)
            ticks_while_locked = ticker.ticks
            longest = ticker.longest_gap
            assert not rx.requests
            if backend == "sqlite":  # held: a batch is acknowledged once its alert is durable
                assert service._positions.get((topic, 0), 0) < 900
            assert not task.done()

            holder.stdin.close()
            await asyncio.wait_for(holder.wait(), 10)
            holder = None
            await rx.wait_for_requests(1, within=30)
            await eventually(lambda: service._positions.get((topic, 0)) == 900, 30)
            await asyncio.sleep(1.0)  # a second delivery would come within this
            await ticker.stop()
            # The loop turned throughout: ~50 ticks a second, never a gap of the busy timeout.
            assert longest < 0.5, f"the event loop stood still for {longest:.2f} s"
            assert ticks_while_locked >= 30, ticks_while_locked
            assert len(rx.requests) == 1, [r.json.get("action") for r in rx.requests]
            page = rx.requests[0].json
            assert page["status"] == "firing" and page["model"] == "m"
            assert service.alerts.outbox.counts() == {"delivered": 1}
        finally:
            if holder is not None:
                holder.kill()
                await holder.wait()
            service.request_stop()
            await asyncio.gather(task, return_exceptions=True)
            await service.stop(grace_seconds=1)
