"""The Kafka changelog deleted while the monitor runs is noticed at the next checkpoint.

The running instance went on writing into the topic the broker auto-created for it
(``cleanup.policy=delete``) without a word; the states of models unchanged since the
deletion were never written again, so after a restart those models started fresh. Now a
checkpoint checks the topic (at most once a minute, and after any failure: here at every
checkpoint), fails with the fix named (an ERROR and ``/healthz`` through the service's
checkpoint-failure path), creates a missing topic again compacted or refuses a
non-compacted one, and the first checkpoint that succeeds after writes every model's
state again. On its own broker: the test deletes a topic.
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
from monitor import kafka_store
from monitor.config import KafkaConfig, StateConfig
from monitor.errors import StateError
from monitor.kafka_store import KafkaStateStore
from monitor.store import SavedModel, SQLiteStateStore, TopicPartition


@pytest.fixture
def own_broker(scratch_kafka: LocalKafka) -> str:
    """Not the shared broker (a topic is deleted): the session's ``scratch_kafka``."""
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
    own_broker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checked at every checkpoint (at most once a minute in production).
    monkeypatch.setattr(kafka_store, "TOPIC_CHECK_SECONDS", 0.0, raising=False)
    topic = f"predictions-{uuid.uuid4().hex[:10]}"  # the broker is shared with other tests
    kafka = KafkaConfig(
        bootstrap_servers=own_broker, group_id=f"g-{uuid.uuid4().hex[:8]}", predictions_topic=topic
    )
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
