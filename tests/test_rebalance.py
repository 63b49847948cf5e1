"""A model's state follows its partition to another instance of the consumer group.

Two monitor instances share one state store (the local SQLite file stands in for
the shared backend). The first consumes both partitions alone; when the second
joins, the group moves one partition to it, and the model on that partition must
continue on the new instance from exactly where the first left it: no event
counted twice, none missed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor.config import parse_config
from monitor.service import MonitorService
from monitor.simulate import Simulator

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MODELS = ("model-a", "model-b")  # model-a on partition 0, model-b on partition 1


async def _publish(bootstrap: str, topic: str, n: int, seed: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, model in enumerate(MODELS):
            sim = Simulator(model=model, seed=seed + partition)
            for event, _ in sim.events(n):
                await producer.send(
                    topic, orjson.dumps(event), key=model.encode(), partition=partition
                )
        await producer.flush()
    finally:
        await producer.stop()


async def _eventually(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within}s: {what}")


def _holder(instances: list[MonitorService], model: str) -> list[MonitorService]:
    return [s for s in instances if model in s.models]


async def test_model_state_follows_its_partition_to_a_new_instance(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("rebalance", partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"

    def config(name: str) -> Any:
        return parse_config(
            {
                "kafka": {
                    "bootstrap_servers": kafka_bootstrap,
                    "group_id": group,
                    "predictions_topic": topic,
                    "labels_topic": None,
                    "poll_timeout_ms": 100,
                    "session_timeout_ms": 6000,
                    "heartbeat_interval_ms": 500,
                },
                "http": {"port": 0},
                "state": {"path": str(tmp_path / "shared-state.sqlite")},
                "defaults": {
                    "window": {"size": 500, "step": 250},
                    "reference": {"learn_first": 500},
                },
                "models": [{"name": m} for m in MODELS],
                "alerting": {"outbox_path": str(tmp_path / f"outbox-{name}.sqlite")},
            }
        )

    first = MonitorService(config("first"))
    await first.start()
    tasks = [asyncio.create_task(first.run())]
    second: MonitorService | None = None
    try:
        await _publish(kafka_bootstrap, topic, 1000, seed=1)
        await _eventually(
            lambda: all(m in first.models and first.models[m].events_total == 1000 for m in MODELS),
            "the first instance processed 1000 events of each model",
        )

        second = MonitorService(config("second"))
        await second.start()
        tasks.append(asyncio.create_task(second.run()))
        instances = [first, second]
        await _eventually(
            lambda: len(first.source.assignment()) == 1 and len(second.source.assignment()) == 1,
            "the group split the two partitions between the instances",
        )

        await _publish(kafka_bootstrap, topic, 1000, seed=2)
        await _eventually(
            lambda: all(
                len(_holder(instances, m)) == 1
                and _holder(instances, m)[0].models[m].events_total == 2000
                for m in MODELS
            ),
            "each model processed 2000 events on exactly one instance",
        )
        moved = [m for m in MODELS if m in second.models]
        assert len(moved) == 1, "one model moved to the second instance"
        moved_model = second.models[moved[0]]
        # It continued from the first instance's state: the reference it learned there
        # (first 500 events), and the evaluation made there (at event 1000, when the
        # window was first full), followed by four here (1250, 1500, 1750, 2000).
        assert moved_model.reference is not None
        assert moved_model.reference.source == "first 500 events"
        assert moved_model.evaluations == 1 + 4
        assert moved[0] not in first.models
    finally:
        for s in (first, second):
            if s is not None:
                s.request_stop()
        await asyncio.gather(*tasks)
        for s in (first, second):
            if s is not None:
                await s.stop(grace_seconds=1)
