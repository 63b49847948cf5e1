"""The alerts topic is checked like the changelog: at start and before every checkpoint.

It was only created when missing. A compacted alerts topic keeps one record per key (the
model), so a model's earlier notifications not yet delivered (a "firing" before its
"resolved") were dropped without a word; and deleted while running on a broker that does
not auto-create topics, it made every later checkpoint's transaction fail: no state was
checkpointed again until a restart. Real brokers: the shared one for configurations, an
own one (``auto.create.topics.enable=false``) to delete the topic.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from devtools.local_kafka import LocalKafka, create_topics
from monitor.config import KafkaConfig, StateConfig
from monitor.errors import StateError
from monitor.kafka_store import KafkaStateStore


async def _admin(bootstrap: str, what: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if what == "create_compacted":
            await admin.create_topics(
                [NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})]
            )
        elif what == "compact":
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": "compact"})]
            )
        else:
            await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _exists(bootstrap: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return topic in await admin.list_topics()
    finally:
        await admin.close()


def _configs(bootstrap: str, topic: str) -> tuple[KafkaConfig, StateConfig]:
    kafka = KafkaConfig(
        bootstrap_servers=bootstrap, group_id=f"g-{uuid.uuid4().hex[:8]}", predictions_topic=topic
    )
    state = StateConfig(backend="kafka", alerts_topic=f"{topic}-alerts", instance_id="one")
    return kafka, state


@pytest.mark.kafka
async def test_a_compacted_alerts_topic_is_refused_at_start(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("kalc", partitions=1)
    kafka, state = _configs(kafka_bootstrap, topic)
    await _admin(kafka_bootstrap, "create_compacted", f"{topic}-alerts")
    with pytest.raises(StateError) as refused:
        await asyncio.to_thread(KafkaStateStore, kafka, state)
    text = str(refused.value)
    assert f"alerts topic {topic}-alerts has cleanup.policy=compact" in text
    assert "--add-config cleanup.policy=delete" in text


@pytest.mark.kafka
async def test_an_alerts_topic_made_compacted_while_running_stops_the_checkpoints(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("kalr", partitions=1)
    kafka, state = _configs(kafka_bootstrap, topic)
    store = await asyncio.to_thread(KafkaStateStore, kafka, state)
    try:
        alert = [(b'"m"', b'{"version": 1}')]
        await asyncio.to_thread(store.save, {"m": (b"s1", (topic, 0))}, {(topic, 0): 1}, alert)
        await _admin(kafka_bootstrap, "compact", f"{topic}-alerts")
        with pytest.raises(StateError, match=r"alerts topic .* cleanup\.policy=compact"):
            await asyncio.to_thread(store.save, {"m": (b"s2", (topic, 0))}, {(topic, 0): 2}, alert)
    finally:
        await asyncio.to_thread(store.close)


@pytest.fixture(scope="module")
def broker_without_auto_creation() -> Iterator[str]:
    with LocalKafka(extra_properties={"auto.create.topics.enable": "false"}) as kafka:
        yield kafka.bootstrap_servers


@pytest.mark.kafka
async def test_an_alerts_topic_deleted_while_running_is_created_again(
    broker_without_auto_creation: str, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = broker_without_auto_creation
    topic = f"pred-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [topic], 1)
    kafka, state = _configs(bootstrap, topic)
    caplog.set_level(logging.WARNING, logger="monitor.kafka_store")
    store = await asyncio.to_thread(KafkaStateStore, kafka, state)
    try:
        alert = [(b'"m"', b'{"version": 1}')]
        await asyncio.to_thread(store.save, {"m": (b"s1", (topic, 0))}, {(topic, 0): 1}, alert)
        await _admin(bootstrap, "delete", f"{topic}-alerts")
        for _ in range(50):  # the deletion completes
            if not await _exists(bootstrap, f"{topic}-alerts"):
                break
            await asyncio.sleep(0.1)
        await asyncio.wait_for(
            asyncio.to_thread(store.save, {"m": (b"s2", (topic, 0))}, {(topic, 0): 2}, alert),
            30,
        )
        assert await _exists(bootstrap, f"{topic}-alerts")
    finally:
        await asyncio.to_thread(store.close)
    said = [r.getMessage() for r in caplog.records if "alerts topic" in r.getMessage()]
    assert any("was deleted while running: created it again" in m for m in said), said
