"""The Kafka changelog deleted while the monitor runs is noticed at the next checkpoint.

The running instance went on writing into the topic the broker auto-created for it
(``cleanup.policy=delete``) without a word; the states of models unchanged since the
deletion were never written again, so after a restart those models started fresh. Now a
checkpoint checks the topic, fails with the fix named (an ERROR and ``/healthz`` through the
service's checkpoint-failure path), creates a missing topic again compacted or refuses a
non-compacted one, and the first checkpoint that succeeds after writes every model's
state again. Checked before every checkpoint (it was at most once a minute: up to a minute
of checkpoints went into the auto-created topic), and by the offsets of a checkpoint's
records after the commit (a topic deleted and created again compacted passes the
configuration check). On its own broker: the tests delete topics.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from devtools.local_kafka import LocalKafka, create_topics
from monitor.config import KafkaConfig, StateConfig
from monitor.errors import StateError
from monitor.kafka_store import KafkaStateStore
from monitor.store import SavedModel, SQLiteStateStore, TopicPartition


@pytest.fixture
def own_broker(scratch_kafka: LocalKafka) -> str:
    """The session's ``scratch_kafka`` (conftest.py): these tests delete topics."""
    return scratch_kafka.bootstrap_servers


async def _policy(bootstrap: str, topic: str) -> str | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (resp,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})]
        )
        for code, _msg, _type, _name, entries in resp.resources:
            if code:
                return None
            return next(str(e[1]) for e in entries if e[0] == "cleanup.policy")
        return None
    finally:
        await admin.close()


async def _admin_call(bootstrap: str, what: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if what == "delete":
            await admin.delete_topics([topic])
        else:
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": "compact"})]
            )
    finally:
        await admin.close()


@pytest.mark.kafka
async def test_a_changelog_deleted_while_running_is_refused_then_every_state_written_again(
    own_broker: str,
) -> None:
    topic = f"predictions-{uuid.uuid4().hex[:8]}"  # the broker is the session's
    kafka = KafkaConfig(bootstrap_servers=own_broker, group_id=topic, predictions_topic=topic)
    state = StateConfig(backend="kafka", instance_id="one")

    create_topics(own_broker, [topic], 1)
    store = await asyncio.to_thread(KafkaStateStore, kafka, state)
    changelog = store.topic
    try:
        await asyncio.to_thread(
            store.save, {"quiet": (b"quiet", (topic, 0)), "busy": (b"b1", (topic, 0))}, {}
        )
        assert await _policy(own_broker, changelog) == "compact"

        await _admin_call(own_broker, "delete", changelog)
        await asyncio.sleep(1.0)
        # "busy" changed, "quiet" did not: the service passes only "busy".
        with pytest.raises(StateError) as failed:
            await asyncio.to_thread(store.save, {"busy": (b"b2", (topic, 0))}, {(topic, 0): 5})
        assert "deleted" in str(failed.value) or "compact" in str(failed.value)
        assert store.rewrite_all_pending
        if await _policy(own_broker, changelog) != "compact":  # auto-created in between
            with pytest.raises(StateError, match=r"cleanup\.policy"):
                await asyncio.to_thread(store.save, {"busy": (b"b2", (topic, 0))}, {})
            await _admin_call(own_broker, "compact", changelog)  # the operator's fix
        assert await _policy(own_broker, changelog) == "compact"
        # Now every model (what the service passes while rewrite_all_pending).
        await asyncio.to_thread(
            store.save, {"quiet": (b"quiet", (topic, 0)), "busy": (b"b3", (topic, 0))}, {}
        )
        assert not store.rewrite_all_pending
    finally:
        await asyncio.to_thread(store.close)

    again = await asyncio.to_thread(KafkaStateStore, kafka, StateConfig(backend="kafka"))
    try:
        await asyncio.to_thread(again.prepare, {(topic, 0)})
        assert again.load_model("quiet") == b"quiet" and again.load_model("busy") == b"b3"
    finally:
        await asyncio.to_thread(again.close)


class _RecordingStore(SQLiteStateStore):
    """A real SQLite store that says which models each save wrote, and can ask for them all
    (as :class:`KafkaStateStore` does once its changelog was deleted)."""

    rewrite_all_pending = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.saved: list[set[str]] = []

    def save(self, models: Mapping[str, SavedModel], offsets: Mapping[TopicPartition, int]) -> None:
        self.saved.append(set(models))
        super().save(models, offsets)


def test_the_service_writes_every_model_when_the_store_asks_for_a_full_rewrite(
    tmp_path: Path,
) -> None:
    """The service's half: a model unchanged since the last checkpoint is skipped, unless the
    store asks for every state (its changelog was deleted: the unchanged ones are gone)."""
    from monitor.config import parse_config
    from monitor.events import Decoder, RawMessage
    from monitor.service import MonitorService

    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0},
        "state": {"path": "state.sqlite"},
        "unknown_models": "track",
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 100}},
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    store = _RecordingStore(tmp_path / "state.sqlite")
    service = MonitorService(parse_config(raw, base_dir=tmp_path), store=store)
    service.store = store  # what start() does with a given store
    decoder = Decoder(max_message_bytes=10_000)

    def events(models: tuple[str, ...], start: int) -> None:
        values = [
            orjson.dumps(
                {
                    "event_id": f"{m}{i}",
                    "model": m,
                    "timestamp": 1_780_000_000 + i,
                    "features": {"x": float(i % 7)},
                    "prediction": (i % 10) / 10,
                }
            )
            for m in models
            for i in range(start, start + 50)
        ]
        raw_messages = [
            RawMessage(v, 1_780_000_000.0, "predictions", 0, start * 2 + i)
            for i, v in enumerate(values)
        ]
        service._apply(decoder.decode(raw_messages))

    try:
        events(("quiet", "busy"), 0)
        service.checkpoint()
        events(("busy",), 100)
        service.checkpoint()
        assert store.saved == [{"quiet", "busy"}, {"busy"}]  # unchanged: skipped
        events(("busy",), 200)
        store.rewrite_all_pending = True
        service.checkpoint()
        assert store.saved[-1] == {"quiet", "busy"}
    finally:
        store.close()


async def _recreate_compacted(bootstrap: str, topic: str, partitions: int) -> None:
    """Delete ``topic`` and create it again compacted, as an operator's script might."""
    from aiokafka.admin import NewTopic
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        for _ in range(100):  # the deletion takes a moment to complete
            await asyncio.sleep(0.2)
            try:
                resp = await admin.create_topics(
                    [NewTopic(topic, partitions, 1, topic_configs={"cleanup.policy": "compact"})]
                )
            except KafkaError:
                continue
            if not any(code for _name, code, *_ in resp.topic_errors):
                return
        raise AssertionError(f"{topic} not created again")
    finally:
        await admin.close()


@pytest.mark.kafka
async def test_the_first_checkpoint_after_a_deletion_is_refused_without_waiting_a_minute(
    own_broker: str,
) -> None:
    """The topic checked before every checkpoint: the one right after a deletion fails at
    once, naming the deletion (before, the check waited up to a minute: that checkpoint went
    into the topic the broker auto-created, or here hung until its 60 s timeout)."""
    topic = f"pred-{uuid.uuid4().hex[:8]}"
    kafka = KafkaConfig(bootstrap_servers=own_broker, group_id=topic, predictions_topic=topic)
    create_topics(own_broker, [topic], 1)
    store = await asyncio.to_thread(KafkaStateStore, kafka, StateConfig(backend="kafka"))
    try:
        await asyncio.to_thread(store.save, {"quiet": (b"q", (topic, 0))}, {})
        await _admin_call(own_broker, "delete", store.topic)
        await asyncio.sleep(1.0)
        with pytest.raises(StateError, match=r"deleted|cleanup\.policy"):
            await asyncio.to_thread(store.save, {"busy": (b"b", (topic, 0))}, {(topic, 0): 3})
        assert store.rewrite_all_pending
    finally:
        await asyncio.to_thread(store.close)


@pytest.mark.kafka
async def test_a_changelog_deleted_and_created_again_compacted_is_noticed_by_its_offsets(
    own_broker: str,
) -> None:
    """Deleted and created again compacted between two checkpoints (or by the broker's
    auto-creation in the middle of one): the configuration check passes, but the records
    land below the offsets already seen, so every state is written again."""
    topic = f"pred-{uuid.uuid4().hex[:8]}"
    kafka = KafkaConfig(bootstrap_servers=own_broker, group_id=topic, predictions_topic=topic)
    create_topics(own_broker, [topic], 1)
    store = await asyncio.to_thread(KafkaStateStore, kafka, StateConfig(backend="kafka"))
    try:
        await asyncio.to_thread(store.prepare, {(topic, 0)})
        for i in range(3):
            await asyncio.to_thread(
                store.save, {"quiet": (b"quiet", (topic, 0)), "busy": (b"b%d" % i, (topic, 0))}, {}
            )
        await _recreate_compacted(own_broker, store.topic, 1)
        assert await _policy(own_broker, store.topic) == "compact"
        with pytest.raises(StateError, match="created again"):
            await asyncio.to_thread(store.save, {"busy": (b"b3", (topic, 0))}, {(topic, 0): 7})
        assert store.rewrite_all_pending
        await asyncio.to_thread(
            store.save, {"quiet": (b"quiet", (topic, 0)), "busy": (b"b4", (topic, 0))}, {}
        )
        assert not store.rewrite_all_pending
        # From now on the new topic is the one: an ordinary checkpoint goes through.
        await asyncio.to_thread(store.save, {"busy": (b"b5", (topic, 0))}, {(topic, 0): 9})
        assert not store.rewrite_all_pending
    finally:
        await asyncio.to_thread(store.close)
    again = await asyncio.to_thread(KafkaStateStore, kafka, StateConfig(backend="kafka"))
    try:
        await asyncio.to_thread(again.prepare, {(topic, 0)})
        assert again.load_model("quiet") == b"quiet" and again.load_model("busy") == b"b5"
    finally:
        await asyncio.to_thread(again.close)
