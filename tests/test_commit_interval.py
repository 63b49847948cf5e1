"""Kafka offset commits of the SQLite backend: at most every ``commit_interval_seconds``.

A restart resumes from the offsets stored with the states; Kafka's committed offsets are
for lag tools. Committed after every batch (about 2,000 events), each round trip to the
broker cost end to end throughput about a quarter (BENCHMARKS.md, 2026-12-02 13:40). At
most once per interval, and always at shutdown, so that they still equal the stored ones
after a clean stop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import committed_offsets, eventually

from monitor.clock import ManualClock
from monitor.config import parse_config
from monitor.service import MonitorService
from monitor.simulate import publish
from monitor.store import SQLiteStateStore

pytestmark = pytest.mark.kafka


def _commits(service: MonitorService) -> float:
    value = service.registry.get_sample_value("monitor_offset_commits_total", {"outcome": "ok"})
    return value or 0.0


async def _run(
    kafka_bootstrap: str, topic: str, tmp_path: Path, interval: float
) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """Commits counted over a run of 5 polls of at most 200 events with the clock standing
    still and a clean stop (whose own commit is one of them), then Kafka's committed
    offsets and the stored ones."""
    group = f"g-{topic}-{interval}"
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": group,
                "predictions_topic": topic,
                "labels_topic": None,
                "poll_timeout_ms": 100,
                "max_batch_records": 200,
                "commit_interval_seconds": interval,
            },
            "http": {"port": 0},
            "state": {"path": str(tmp_path / f"state-{interval}.sqlite")},
            "unknown_models": "track",
            "defaults": {"reference": {"learn_first": 100}},
            "alerting": {"outbox_path": str(tmp_path / f"outbox-{interval}.sqlite")},
        }
    )
    clock = ManualClock(1_800_000_000.0)
    service = MonitorService(config, clock=clock)
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        await eventually(lambda: service.models.get("m") is not None, 60)
        await eventually(lambda: service.models["m"].events_total == 1000, 60)
    finally:
        service.request_stop()
        await asyncio.gather(task, return_exceptions=True)
        await service.stop(grace_seconds=1)
    during = _commits(service)
    committed = await committed_offsets(kafka_bootstrap, group, topic)
    store = SQLiteStateStore(tmp_path / f"state-{interval}.sqlite")
    try:
        stored = {f"{t}/{p}": o for (t, p), o in store.load_offsets().items()}
    finally:
        store.close()
    return during, committed, stored


async def test_offsets_are_committed_at_most_once_per_interval_and_at_shutdown(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory("commit-interval", partitions=1)
    await publish(kafka_bootstrap, topic=topic, model="m", events=1000, seed=1)
    # The clock stands still: within one interval, only the first batch commits (and then
    # the shutdown).
    during, committed, stored = await _run(kafka_bootstrap, topic, tmp_path, 60.0)
    assert during == 2, (during, committed, stored)
    assert committed == stored == {f"{topic}/0": 1000}  # the shutdown commits the rest
    # 0: after every batch, as before (at least 5 polls of at most 200 events), and the
    # shutdown.
    during, committed, stored = await _run(kafka_bootstrap, topic, tmp_path, 0.0)
    assert during >= 6, (during, committed, stored)
    assert committed == stored == {f"{topic}/0": 1000}
