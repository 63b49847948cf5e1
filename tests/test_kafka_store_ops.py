"""The Kafka state backend under an operator's changes to its topics (real broker).

* partitions added to the predictions topic while instances run (README "Scaling out": "add
  partitions to both together"): a running store grows its changelog to match and keeps
  checkpointing every model, and a store that starts later restores what was written there;
* a changelog topic that exists without compaction (created by hand, or by a broker's
  ``auto.create.topics.enable`` with its delete policy): retention would delete model
  states that did not change for ``retention.ms``, so the store refuses it at start.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from monitor.config import KafkaConfig, StateConfig
from monitor.errors import StateError
from monitor.kafka_store import KafkaStateStore, default_changelog_topic

pytestmark = pytest.mark.kafka


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    return admin


async def _partitions(bootstrap: str, topic: str) -> int:
    admin = await _admin(bootstrap)
    try:
        (meta,) = await admin.describe_topics([topic])
        return len(meta["partitions"])
    finally:
        await admin.close()


async def _grow(bootstrap: str, topic: str, count: int) -> None:
    admin = await _admin(bootstrap)
    try:
        await admin.create_partitions({topic: NewPartitions(count)})
    finally:
        await admin.close()


async def test_partitions_added_to_the_predictions_topic_while_running_are_checkpointed(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("kgrow", partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap, group_id=group, predictions_topic=topic)
    changelog = default_changelog_topic(kafka)
    store = await asyncio.to_thread(
        KafkaStateStore, kafka, StateConfig(backend="kafka", instance_id="one")
    )
    try:
        await asyncio.to_thread(store.prepare, {(topic, 0), (topic, 1)})
        await asyncio.to_thread(store.save, {"a": (b"state-a", (topic, 0))}, {(topic, 0): 5})
        # The operator adds a partition to the predictions topic only; the group assigns it
        # and a model's events arrive there. Every model must still checkpoint (before, each
        # checkpoint failed as a whole, forever, until a restart).
        await _grow(kafka_bootstrap, topic, 3)
        await asyncio.to_thread(store.prepare, {(topic, 2)})
        await asyncio.to_thread(
            store.save,
            {"a": (b"state-a2", (topic, 0)), "c": (b"state-c", (topic, 2))},
            {(topic, 0): 6, (topic, 2): 7},
        )
        assert await _partitions(kafka_bootstrap, changelog) == 3
        # The operator now does as the README says for both topics, while it runs: 4.
        await _grow(kafka_bootstrap, topic, 4)
        await _grow(kafka_bootstrap, changelog, 4)
        await asyncio.to_thread(store.prepare, {(topic, 3)})
        await asyncio.to_thread(store.save, {"d": (b"state-d", (topic, 3))}, {(topic, 3): 9})
    finally:
        await asyncio.to_thread(store.close)

    other = await asyncio.to_thread(
        KafkaStateStore, kafka, StateConfig(backend="kafka", instance_id="two")
    )
    try:
        await asyncio.to_thread(other.prepare, {(topic, p) for p in range(4)})
        assert other.models() == ["a", "c", "d"]
        assert other.load_model("c") == b"state-c" and other.load_model("d") == b"state-d"
        assert other.load_offsets() == {(topic, 0): 6, (topic, 2): 7, (topic, 3): 9}
    finally:
        await asyncio.to_thread(other.close)


async def test_a_store_started_before_the_changelog_grew_restores_the_new_partitions(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """Instance one started at 2 partitions; the operator grows both topics to 3; two,
    started then, writes partition 2; the group then gives partition 2 to one: it must read
    it, not start the model fresh (and overwrite two's state at its next checkpoint)."""
    topic = topic_factory("kgrow2", partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap, group_id=group, predictions_topic=topic)
    one = await asyncio.to_thread(
        KafkaStateStore, kafka, StateConfig(backend="kafka", instance_id="one")
    )
    try:
        await _grow(kafka_bootstrap, topic, 3)
        await _grow(kafka_bootstrap, default_changelog_topic(kafka), 3)
        two = await asyncio.to_thread(
            KafkaStateStore, kafka, StateConfig(backend="kafka", instance_id="two")
        )
        try:
            await asyncio.to_thread(two.prepare, {(topic, 2)})
            await asyncio.to_thread(two.save, {"c": (b"state-c", (topic, 2))}, {(topic, 2): 11})
        finally:
            await asyncio.to_thread(two.close)
        await asyncio.to_thread(one.prepare, {(topic, 2)})
        assert one.models([(topic, 2)]) == ["c"]
        assert one.load_offsets() == {(topic, 2): 11}
    finally:
        await asyncio.to_thread(one.close)


async def test_a_changelog_that_is_not_compacted_is_refused_at_start(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("knocompact", partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap, group_id=group, predictions_topic=topic)
    changelog = default_changelog_topic(kafka)
    admin = await _admin(kafka_bootstrap)
    try:
        # As `kafka-topics --create` or a broker's auto-creation makes it: delete policy.
        await admin.create_topics([NewTopic(changelog, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    with pytest.raises(StateError) as err:
        await asyncio.to_thread(
            KafkaStateStore, kafka, StateConfig(backend="kafka", instance_id="one")
        )
    assert "cleanup.policy" in str(err.value) and changelog in str(err.value)
