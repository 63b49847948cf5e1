"""No part record of a model's state is left live in the compacted changelog.

A state is a manifest plus parts ``["part", model, i]``. A part nobody tombstones never
compacts away and is read at every restore of its partition, forever. The store knew the
part count only from a *readable* manifest, and updated it before the transaction was
committed: a state deleted after it was found damaged, a damaged state replaced by a
smaller one, and a smaller state written again after a failed (fenced) transaction each
left parts behind. Read back here with a plain consumer of the real changelog.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from monitor.config import KafkaConfig, StateConfig
from monitor.kafka_store import PART_MAGIC, KafkaStateStore, assemble, model_key, part_key
from monitor.state_format import StateFormatError
from monitor.store import FORMAT


async def _live_parts(bootstrap: str, topic: str) -> dict[str, set[int]]:
    """Per model, the part indices whose latest record in the changelog is not a tombstone."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        latest: dict[bytes, bytes | None] = {}
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.key is not None:
                        latest[r.key] = r.value
    finally:
        await consumer.stop()
    out: dict[str, set[int]] = {}
    for key, value in latest.items():
        k = json.loads(key)
        if k[0] == "part" and value is not None:
            out.setdefault(k[1], set()).add(k[2])
    return out


def _config(bootstrap: str, topic: str, instance: str) -> tuple[KafkaConfig, StateConfig]:
    kafka = KafkaConfig(
        bootstrap_servers=bootstrap, group_id=f"g-{uuid.uuid4().hex[:8]}", predictions_topic=topic
    )
    return kafka, StateConfig(backend="kafka", instance_id=instance, max_record_bytes=1024)


@pytest.mark.kafka
async def test_damaged_states_deleted_or_replaced_leave_no_part_behind(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("korph", partitions=1)
    kafka, state = _config(kafka_bootstrap, topic, "one")
    blob = bytes(range(256)) * 12  # 3072 bytes: three parts of 1024
    tp = (topic, 0)
    store = await asyncio.to_thread(KafkaStateStore, kafka, state)
    try:
        models = {m: (blob, tp) for m in ("deleted", "damaged", "replaced", "shrunk")}
        await asyncio.to_thread(store.save, models, {tp: 1})
        changelog = store.topic
    finally:
        await asyncio.to_thread(store.close)
    # Part 1 of two of them overwritten by another generation: their manifests are refused.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for m in ("damaged", "replaced"):
            value = PART_MAGIC + b"x" * 16 + b"stale"
            await producer.send_and_wait(changelog, value, key=part_key(m, 1), partition=0)
    finally:
        await producer.stop()
    assert await _live_parts(kafka_bootstrap, changelog) == {m: {0, 1, 2} for m in models}

    store = await asyncio.to_thread(KafkaStateStore, kafka, state)
    try:
        await asyncio.to_thread(store.prepare, {tp})
        await asyncio.to_thread(store.delete_model, "deleted")  # readable: as before
        await asyncio.to_thread(store.delete_model, "damaged")  # unusable, deleted
        with pytest.raises(StateFormatError):
            await asyncio.to_thread(store.load_model, "replaced")
        # The model started fresh; its first state is smaller than the damaged one.
        await asyncio.to_thread(store.save, {"replaced": (b"fresh", tp)}, {tp: 2})
        await asyncio.to_thread(store.save, {"shrunk": (blob[:1500], tp)}, {tp: 3})
    finally:
        await asyncio.to_thread(store.close)
    assert await _live_parts(kafka_bootstrap, changelog) == {"replaced": {0}, "shrunk": {0, 1}}


@pytest.mark.kafka
async def test_a_smaller_state_written_again_after_a_fenced_transaction_deletes_the_rest(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    """The first transaction fails (a second store with the same instance id fences it), the
    store recreates its producer and writes the checkpoint again: with the old part count
    counted as already replaced, that second transaction tombstoned nothing."""
    topic = topic_factory("korphf", partitions=1)
    kafka, state = _config(kafka_bootstrap, topic, "twin")
    tp = (topic, 0)
    blob = bytes(range(256)) * 20  # five parts
    first = await asyncio.to_thread(KafkaStateStore, kafka, state)
    second = None
    try:
        await asyncio.to_thread(first.save, {"m": (blob, tp)}, {tp: 1})
        second = await asyncio.to_thread(KafkaStateStore, kafka, state)  # fences the first
        await asyncio.to_thread(first.save, {"m": (blob[:1500], tp)}, {tp: 2})
        changelog = first.topic
    finally:
        await asyncio.to_thread(first.close)
        if second is not None:
            await asyncio.to_thread(second.close)
    assert await _live_parts(kafka_bootstrap, changelog) == {"m": {0, 1}}


def test_every_live_part_of_a_model_is_known_whatever_its_manifest() -> None:
    """Parts beyond the manifest's count, and the parts of an unreadable manifest, are
    the model's too: deleting or shrinking its state must tombstone them."""
    gen = b"g" * 16
    manifest = json.dumps(
        {"format": FORMAT, "version": 1, "generation": gen.hex(), "parts": 1, "bytes": 3}
    ).encode()
    got = assemble(
        {
            model_key("m"): manifest,
            part_key("m", 0): PART_MAGIC + gen + b"abc",
            part_key("m", 4): PART_MAGIC + gen + b"stray",
            part_key("m", 5): None,
            model_key("bad"): b"{not json",
            part_key("bad", 0): PART_MAGIC + gen + b"abc",
            part_key("bad", 1): PART_MAGIC + gen + b"def",
        },
        "t",
        0,
    )
    assert got["m"].blob == b"abc" and got["m"].parts == {0, 4}
    assert got["bad"].problem is not None and got["bad"].parts == {0, 1}
