"""The per-batch Kafka commit runs beside the next batch, not in its way (issue 19).

A commit is a round trip to the group coordinator; the loop used to wait for it after
every batch. Now one commit is in flight at a time and the batches processed meanwhile
are covered by one more commit of the newest positions. What must hold: ``process``
returns while a commit is pending, commits never overlap (an older one could land
after a newer one), the last commit carries the newest positions, and on a real broker
the group's committed offsets reach the end of what was processed without a shutdown.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from fault_helpers import committed_offsets

from monitor.config import parse_config
from monitor.events import MessageBatch
from monitor.service import MonitorService
from monitor.simulate import Simulator, publish

MODEL = "credit-risk"
TOPIC = "predictions"


class GatedCommits:
    """A source whose commits wait for the test to open a gate, recording each call."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[dict[Any, int]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.calls.append(dict(offsets))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1

    def lag(self, positions: dict[Any, int]) -> dict[Any, int]:
        return {}


def _batch(first_offset: int, n: int, sim: Simulator) -> MessageBatch:
    values = [orjson.dumps(e) for e, _ in sim.events(n)]
    offsets = list(range(first_offset, first_offset + n))
    batch = MessageBatch()
    batch.add_run(TOPIC, 0, values, [1.79e9 + o for o in offsets], offsets, [None] * n)
    return batch


def _config(tmp_path: Path, bootstrap: str = "127.0.0.1:9", **kafka: Any) -> Any:
    return parse_config(
        {
            "kafka": {"bootstrap_servers": bootstrap, "labels_topic": None, **kafka},
            "http": {"port": 0},
            "state": {"path": str(tmp_path / "state.sqlite")},
            "models": [
                {
                    "name": MODEL,
                    "window": {"size": 200, "step": 100},
                    "reference": {"learn_first": 300},
                }
            ],
            "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
        }
    )


async def test_batches_go_on_while_a_commit_is_pending_and_the_last_commit_is_the_newest(
    tmp_path: Path,
) -> None:
    service = MonitorService(_config(tmp_path))
    source = GatedCommits()
    service.source = source  # type: ignore[assignment]
    await service.alerts.start()
    sim = Simulator(model=MODEL, seed=7)
    try:
        # Three batches while the first commit cannot return: none of them may wait for it.
        for k in range(3):
            await asyncio.wait_for(service.process(_batch(k * 250, 250, sim)), timeout=5)
        assert source.calls == [{(TOPIC, 0): 250}]  # the first; the newest waits for it
    finally:
        source.gate.set()  # on a failure too: nothing left pending
        await service.alerts.stop(grace_seconds=0)
    assert service.models[MODEL].events_total == 750
    assert service._commit_task is not None
    await asyncio.wait_for(service._commit_task, timeout=10)  # ends after the second commit
    # One more commit covers the two batches processed meanwhile; never two at once.
    assert source.calls == [{(TOPIC, 0): 250}, {(TOPIC, 0): 750}]
    assert source.most_in_flight == 1


@pytest.mark.kafka
async def test_committed_offsets_reach_the_processed_end_while_the_service_runs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic, group = f"predictions-{suffix}", f"monitor-{suffix}"
    await publish(kafka_bootstrap, topic=topic, model=MODEL, events=3_000, seed=3)
    service = MonitorService(
        _config(
            tmp_path,
            kafka_bootstrap,
            predictions_topic=topic,
            group_id=group,
            poll_timeout_ms=100,
            max_batch_records=400,  # several batches, so several commits
        )
    )
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        deadline = time.monotonic() + 60
        committed: dict[str, int | None] = {}
        while time.monotonic() < deadline:
            mm = service.models.get(MODEL)
            if mm is not None and mm.events_total >= 3_000:
                committed = await committed_offsets(kafka_bootstrap, group, topic)
                if committed == {f"{topic}/0": 3_000}:
                    break
            await asyncio.sleep(0.1)
        assert committed == {f"{topic}/0": 3_000}
        ok = service.registry.get_sample_value("monitor_offset_commits_total", {"outcome": "ok"})
        assert ok is not None and ok >= 2
    finally:
        service.request_stop()
        await task
        await service.stop(grace_seconds=1)
