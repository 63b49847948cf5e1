"""The consume loop polls the next batch while one is decoded (issue 19), against a real broker.

The compiled decoder releases the GIL while it scans; decoding on a worker thread lets
that scan run on a second core while the loop polls the next batch (aiokafka's parsing of
its records). What must not change: batches applied one at a time, in order and whole,
every message decoded once; a failed batch still ends :meth:`MonitorService.run`.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from fault_helpers import eventually

from monitor.clock import ManualClock
from monitor.config import parse_config
from monitor.service import MonitorService
from monitor.simulate import publish

pytestmark = pytest.mark.kafka


def _service(kafka_bootstrap: str, topic: str, tmp_path: Path) -> MonitorService:
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"g-{topic}",
                "predictions_topic": topic,
                "labels_topic": None,
                "poll_timeout_ms": 100,
                "max_batch_records": 200,
            },
            "http": {"port": 0},
            "state": {"path": str(tmp_path / "state.sqlite")},
            "unknown_models": "track",
            "defaults": {"reference": {"learn_first": 100}, "window": {"size": 200, "step": 100}},
            "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
        }
    )
    return MonitorService(config, clock=ManualClock(1_800_000_000.0))


async def test_the_loop_runs_while_a_batch_decodes(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory("overlap", partitions=1)
    await publish(kafka_bootstrap, topic=topic, model="m", events=1000, seed=1)
    service = _service(kafka_bootstrap, topic, tmp_path)
    await service.start()
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    loop_ran = threading.Event()  # set by the loop while the first batch decodes
    calls: list[tuple[int, list[int]]] = []
    real_decode = service.decoder.decode

    def decode(messages: Any, schemas: Any = None) -> Any:
        calls.append((threading.get_ident(), [m.offset for m in messages]))
        if len(calls) == 1:
            # The loop (which polls the next batch, serves HTTP, sends heartbeats) runs
            # this at once when the decode is off it; on the loop's own thread it could
            # not before the decode returned.
            loop.call_soon_threadsafe(loop_ran.set)
            loop_ran.wait(5)
        return real_decode(messages, schemas)

    service.decoder.decode = decode  # type: ignore[method-assign]
    task = asyncio.create_task(service.run())
    try:
        await eventually(
            lambda: "m" in service.models and service.models["m"].events_total == 1000, 60
        )
    finally:
        service.request_stop()
        await asyncio.gather(task, return_exceptions=True)
        await service.stop(grace_seconds=1)
    assert task.exception() is None
    assert loop_ran.is_set(), "the loop stood still while the batch decoded"
    assert all(ident != loop_thread for ident, _ in calls)
    # Every message decoded once, batches in offset order, applied as one by one.
    offsets = [o for _, batch in calls for o in batch]
    assert offsets == list(range(1000))
    assert service.models["m"].evaluations == (1000 - 100 - 200) // 100 + 1


async def test_a_failed_batch_still_ends_the_loop(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory("overlap-fail", partitions=1)
    await publish(kafka_bootstrap, topic=topic, model="m", events=600, seed=2)
    service = _service(kafka_bootstrap, topic, tmp_path)
    await service.start()
    real_apply = service._apply
    applied: list[int] = []

    def apply(batch: Any) -> Any:
        if applied:
            raise RuntimeError("boom")
        applied.append(1)
        return real_apply(batch)

    service._apply = apply  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError, match="boom"):
            await asyncio.wait_for(service.run(), 60)
    finally:
        await service.stop(grace_seconds=1)
    # The state is unsafe: never checkpointed; only the first batch was applied.
    assert service.models["m"].events_total == 200
