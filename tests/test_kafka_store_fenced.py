"""A fenced checkpoint producer leaves no "Future exception was never retrieved" behind.

aiokafka 0.14 puts the ProducerFenced of a fenced transactional producer into futures
nobody can await (its transaction manager's waiters); when they were collected, asyncio
logged each at ERROR with a traceback, after the store had already said it in one
WARNING. Real broker: a second store with the same instance id fences the first.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import Callable

import pytest

from monitor.config import KafkaConfig, StateConfig
from monitor.kafka_store import KafkaStateStore


@pytest.mark.kafka
async def test_a_fenced_producer_logs_one_warning_and_no_unretrieved_future(
    kafka_bootstrap: str, topic_factory: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_factory("kfut", partitions=1)
    kafka = KafkaConfig(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        predictions_topic=topic,
    )
    state = StateConfig(backend="kafka", instance_id="twin")
    caplog.set_level(logging.WARNING)
    first = await asyncio.to_thread(KafkaStateStore, kafka, state)
    second = None
    try:
        await asyncio.to_thread(first.save, {"m": (b"a1", (topic, 0))}, {(topic, 0): 1})
        second = await asyncio.to_thread(KafkaStateStore, kafka, state)  # fences the first
        await asyncio.to_thread(first.save, {"m": (b"a2", (topic, 0))}, {(topic, 0): 2})
    finally:
        await asyncio.to_thread(first.close)
        if second is not None:
            await asyncio.to_thread(second.close)
        gc.collect()  # the abandoned futures are collected (and reported) here
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert not [r for r in records if "never retrieved" in r[2]], records
    fenced = [r for r in records if "recreating the transactional" in r[2]]
    assert len(fenced) == 1 and fenced[0][1] == logging.WARNING, records
    assert not [r for r in records if r[1] >= logging.ERROR], records
