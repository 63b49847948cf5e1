"""The Kafka state backend's transactions when they go wrong, on a broker of our own.

The broker looks for timed-out transactions every half second (instead of every
10 s) and allows transactions of at most 20 s, so a transaction timeout shows in
seconds and a too long one is refused:

* a checkpoint transaction the broker aborted (it outlasted the transaction
  timeout) leaves aiokafka's producer fenced, every later transaction failing: the
  store recreates its producer and writes the checkpoint again (one WARNING, a
  metric), unless another instance wrote the partitions meanwhile;
* the transaction a killed instance left open holds up restoring its partitions
  elsewhere for ``state.transaction_timeout_seconds``, not a minute;
* a transaction timeout above the broker's maximum is refused at start, naming the
  setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from devtools.local_kafka import LocalKafka
from monitor.config import KafkaConfig, StateConfig
from monitor.errors import ConfigError, StateError
from monitor.kafka_store import KafkaStateStore, part_key

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def broker(scratch_kafka: LocalKafka) -> LocalKafka:
    """The session's ``scratch_kafka`` (conftest.py; its settings in own_brokers.py)."""
    return scratch_kafka


def _setup(broker: LocalKafka) -> tuple[str, KafkaConfig]:
    topic = f"txn-{uuid.uuid4().hex[:8]}"
    broker.create_topics([topic], 1)
    kafka = KafkaConfig(
        bootstrap_servers=broker.bootstrap_servers,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        predictions_topic=topic,
    )
    return topic, kafka


async def _open(
    kafka: KafkaConfig,
    name: str,
    txn_timeout: float = 1.0,
    registry: CollectorRegistry | None = None,
) -> KafkaStateStore:
    state = StateConfig(backend="kafka", instance_id=name, transaction_timeout_seconds=txn_timeout)
    return await asyncio.to_thread(KafkaStateStore, kafka, state, registry)


def _leave_open(store: KafkaStateStore, seconds: float) -> None:
    """A checkpoint that stalls ``seconds`` in the middle of its transaction (its thread
    descheduled, a long GC pause, a broker that answers slowly), then tries to commit."""
    producer = store._producer
    assert producer is not None

    async def stalled() -> None:
        await producer.begin_transaction()
        await producer.send_and_wait(store.topic, b"half", key=part_key("stalled", 0), partition=0)
        await asyncio.sleep(seconds)
        with contextlib.suppress(KafkaError):  # fenced: the broker aborted it meanwhile
            await producer.commit_transaction()

    store._run(stalled())


async def test_a_checkpoint_after_a_transaction_the_broker_aborted_recreates_the_producer(
    broker: LocalKafka,
) -> None:
    topic, kafka = _setup(broker)
    registry = CollectorRegistry()
    store = await _open(kafka, "one", registry=registry)
    try:
        await asyncio.to_thread(store.save, {"m": (b"first", (topic, 0))}, {(topic, 0): 10})
        await asyncio.to_thread(_leave_open, store, 4.0)  # timeout 1 s: aborted by the broker
        await asyncio.to_thread(store.save, {"m": (b"second", (topic, 0))}, {(topic, 0): 20})
        await asyncio.to_thread(store.save, {"m": (b"third", (topic, 0))}, {(topic, 0): 30})
        recreated = sum(
            s.value
            for metric in registry.collect()
            if metric.name == "monitor_state_producer_recreated"
            for s in metric.samples
            if s.name.endswith("_total")
        )
        assert recreated == 1
    finally:
        await asyncio.to_thread(store.close)
    reader = await _open(kafka, "reader")
    try:
        await asyncio.to_thread(reader.prepare, {(topic, 0)})
        assert reader.load_offsets() == {(topic, 0): 30}
        assert reader.load_model("m") == b"third"
        assert reader.models() == ["m"]  # nothing of the aborted transaction
    finally:
        await asyncio.to_thread(reader.close)


async def test_a_recreated_producer_does_not_overwrite_the_checkpoint_of_a_new_owner(
    broker: LocalKafka,
) -> None:
    """A zombie: its partition went to another instance, which checkpointed; the zombie's
    transaction then fails. It must not write its stale state over the new owner's."""
    topic, kafka = _setup(broker)
    zombie = await _open(kafka, "zombie")
    owner = await _open(kafka, "owner")
    try:
        await asyncio.to_thread(zombie.save, {"m": (b"old", (topic, 0))}, {(topic, 0): 10})
        await asyncio.to_thread(owner.prepare, {(topic, 0)})
        await asyncio.to_thread(owner.save, {"m": (b"new", (topic, 0))}, {(topic, 0): 50})
        await asyncio.to_thread(_leave_open, zombie, 4.0)
        with pytest.raises(StateError, match="written by another instance"):
            await asyncio.to_thread(zombie.save, {"m": (b"stale", (topic, 0))}, {(topic, 0): 20})
    finally:
        await asyncio.to_thread(zombie.close)
        await asyncio.to_thread(owner.close)
    reader = await _open(kafka, "reader")
    try:
        await asyncio.to_thread(reader.prepare, {(topic, 0)})
        assert reader.load_offsets() == {(topic, 0): 50}
        assert reader.load_model("m") == b"new"
    finally:
        await asyncio.to_thread(reader.close)


async def test_a_transaction_left_open_by_a_killed_instance_delays_a_restore_briefly(
    broker: LocalKafka,
) -> None:
    topic, kafka = _setup(broker)
    killed = await _open(kafka, "killed", txn_timeout=2.0)
    try:
        await asyncio.to_thread(killed.save, {"m": (b"kept", (topic, 0))}, {(topic, 0): 10})
        producer = killed._producer
        assert producer is not None

        async def begin_and_die() -> None:  # the instance is killed mid-checkpoint
            await producer.begin_transaction()
            await producer.send_and_wait(killed.topic, b"half", key=part_key("m", 0), partition=0)

        await asyncio.to_thread(killed._run, begin_and_die())
        other = await _open(kafka, "other", txn_timeout=2.0)
        try:
            t0 = time.monotonic()
            await asyncio.to_thread(other.prepare, {(topic, 0)})
            took = time.monotonic() - t0
            assert other.load_offsets() == {(topic, 0): 10}
            assert other.load_model("m") == b"kept"
            # The 2 s timeout plus the broker's half-second check, not the old minute.
            assert took < 10, took
        finally:
            await asyncio.to_thread(other.close)
    finally:
        await asyncio.to_thread(killed.close)


async def test_a_transaction_timeout_above_the_brokers_maximum_is_refused_at_start(
    broker: LocalKafka,
) -> None:
    _, kafka = _setup(broker)
    with pytest.raises(ConfigError, match=r"transaction_timeout_seconds: 30 .*transaction.max"):
        await _open(kafka, "greedy", txn_timeout=30.0)


def test_the_default_transaction_timeout_is_short() -> None:
    """Ten seconds: a killed instance's partitions are restorable elsewhere within about
    the session timeout, instead of the minute aiokafka's default would hold them."""
    assert StateConfig().transaction_timeout_seconds == 10.0
