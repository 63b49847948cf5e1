"""A rollback does not destroy the state a newer release stored.

A model's state written by a newer release (a state format, or a changelog manifest, of a
version above this release's) was treated like damage: the model started fresh, and the
next checkpoint wrote that fresh state over the newer one, so rolling forward again found
nothing of it. Now the model is refused (disabled: ``state_newer``, its events skipped,
``/readyz`` not ready, one ERROR naming the model and both versions) and its stored record is
left as it is; ``state.on_newer_state: start_fresh`` is the operator's opt-in to discard it.
"""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from monitor import state_format
from monitor.config import parse_config
from monitor.events import Decoder, RawMessage
from monitor.kafka_store import MANIFEST_VERSION, PART_MAGIC, KafkaStateStore, model_key, part_key
from monitor.service import MonitorService
from monitor.simulate import Simulator
from monitor.store import FORMAT, SQLiteStateStore
from tests.fault_helpers import eventually

FIXTURE = Path(__file__).parent / "fixtures" / "model-state-v2.bin"


def _future_blob() -> bytes:
    """A real checkpoint with the format version of a release after this one."""
    blob = bytearray(FIXTURE.read_bytes())
    struct.pack_into("<H", blob, 8, state_format.FORMAT_VERSION + 1)
    return bytes(blob)


def _manifest(gen: bytes, size: int, partition: int, topic: str, version: int) -> bytes:
    doc = {
        "format": FORMAT,
        "version": version,
        "generation": gen.hex(),
        "parts": 1,
        "bytes": size,
        "topic": topic,
        "partition": partition,
    }
    return json.dumps(doc).encode()


def _raw(models: dict[str, Any], home: Path, bootstrap: str = "127.0.0.1:1") -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "labels_topic": None,
            "poll_timeout_ms": 100,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 500,
        },
        "http": {"port": 0},
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 100}},
        "models": [{"name": m} for m in models],
        "alerting": {"outbox_path": str(home / "outbox.sqlite")},
        "state": {"path": str(home / "state.sqlite")},
    }


def _events(service: MonitorService, model: str, start: int, n: int) -> None:
    values = [
        orjson.dumps(
            {
                "event_id": f"{model}{i}",
                "model": model,
                "timestamp": 1_780_000_000 + i,
                "features": {"x": float(i % 7)},
                "prediction": (i % 10) / 10,
            }
        )
        for i in range(start, start + n)
    ]
    raw = [
        RawMessage(v, 1_780_000_000.0, "predictions", 0, start + i) for i, v in enumerate(values)
    ]
    service._apply(Decoder(max_message_bytes=10_000).decode(raw))


@pytest.mark.parametrize("opt_in", [False, True])
def test_a_newer_state_in_sqlite_is_refused_and_kept_unless_the_operator_opts_in(
    tmp_path: Path, opt_in: bool
) -> None:
    raw = _raw({"newer": 1, "other": 1}, tmp_path)
    if opt_in:
        raw["state"]["on_newer_state"] = "start_fresh"
    future = _future_blob()
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    store.save({"newer": (future, ("predictions", 0))}, {})
    service = MonitorService(parse_config(raw, base_dir=tmp_path), store=store)
    service.store = store  # what start() does with a given store
    try:
        _events(service, "newer", 0, 150)
        _events(service, "other", 1000, 150)
        service.checkpoint()
        assert service.models["other"].events_total == 150
        failures = service.registry.get_sample_value(
            "monitor_state_restore_failures_total", {"reason": "newer_version"}
        )
        if opt_in:  # discarded on purpose: fresh, counted, and written over at the checkpoint
            assert service.models["newer"].events_total == 150
            assert failures == 1
            assert store.load_model("newer") != future
            return
        assert "newer" not in service.models
        reason, error = service.disabled["newer"]
        assert reason == "state_newer"
        v = state_format.FORMAT_VERSION
        assert "'newer'" in error and f"version {v + 1}" in error and f"version {v}" in error
        assert "state.on_newer_state" in error
        assert store.load_model("newer") == future  # untouched by the checkpoint
        assert not failures
        assert (
            service.registry.get_sample_value(
                "monitor_model_disabled", {"model": "newer", "reason": "state_newer"}
            )
            == 1
        )
        assert (
            service.registry.get_sample_value(
                "monitor_events_skipped_total", {"model": "newer", "reason": "state_newer"}
            )
            == 150
        )
        ok, detail = service.readiness()
        assert not ok and detail["models_disabled"]["newer"]["reason"] == "state_newer"
    finally:
        store.close()


async def _latest(bootstrap: str, topic: str, partitions: int) -> dict[bytes, bytes | None]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: dict[bytes, bytes | None] = {}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if r.key is not None:
                        out[r.key] = r.value
        return out
    finally:
        await consumer.stop()


@pytest.mark.kafka
@pytest.mark.parametrize("unlisted", ["keep", "delete"])
async def test_a_newer_release_s_changelog_records_survive_a_rollback(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path, unlisted: str
) -> None:
    """Real changelog records of a newer release: a state of a future format (under a
    manifest this release reads) and a manifest of a future version. Both models are
    refused, the third runs, and after the shutdown checkpoint both records are still there.

    The same records of models the config does not list (the newer release's config listed
    them) were deleted at assignment: now they are kept even with ``state.unlisted_models:
    delete``, and an unlisted model's readable state is kept unless that is set."""
    topic = topic_factory("kroll", partitions=2)
    models = {"model-a": 0, "model-b": 1, "model-c": 1}
    raw = _raw(models, tmp_path, kafka_bootstrap)
    raw["kafka"].update({"group_id": f"g-{uuid.uuid4().hex[:8]}", "predictions_topic": topic})
    raw["state"].update(
        {"backend": "kafka", "instance_id": "solo", "checkpoint_interval_seconds": 3600}
    )
    if unlisted == "delete":  # "keep" is the default
        raw["state"]["unlisted_models"] = "delete"
    config = parse_config(raw, base_dir=tmp_path)
    store = await asyncio.to_thread(KafkaStateStore, config.kafka, config.state)
    changelog = store.topic
    await asyncio.to_thread(store.close)
    future = _future_blob()
    gen_a, gen_b = uuid.uuid4().bytes, uuid.uuid4().bytes
    written = {
        part_key("model-a", 0): PART_MAGIC + gen_a + future,
        model_key("model-a"): _manifest(gen_a, len(future), 0, topic, MANIFEST_VERSION),
        part_key("model-b", 0): PART_MAGIC + gen_b + b"a layout of the future",
        model_key("model-b"): _manifest(gen_b, 23, 1, topic, MANIFEST_VERSION + 1),
    }
    # Unlisted: as model-a and model-b, and a readable state (of the current format).
    gen_d, gen_e, gen_f = uuid.uuid4().bytes, uuid.uuid4().bytes, uuid.uuid4().bytes
    current = FIXTURE.read_bytes()
    unlisted_newer = {
        part_key("model-d", 0): PART_MAGIC + gen_d + future,
        model_key("model-d"): _manifest(gen_d, len(future), 0, topic, MANIFEST_VERSION),
        part_key("model-e", 0): PART_MAGIC + gen_e + b"a layout of the future",
        model_key("model-e"): _manifest(gen_e, 23, 1, topic, MANIFEST_VERSION + 1),
    }
    unlisted_readable = {
        part_key("model-f", 0): PART_MAGIC + gen_f + current,
        model_key("model-f"): _manifest(gen_f, len(current), 0, topic, MANIFEST_VERSION),
    }
    written.update(unlisted_newer)
    written.update(unlisted_readable)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in written.items():
            partition = 0 if b"model-a" in key or b"model-d" in key or b"model-f" in key else 1
            await producer.send_and_wait(changelog, value, key=key, partition=partition)
        for model, partition in models.items():
            for event, _ in Simulator(model=model, seed=partition).events(300):
                await producer.send(
                    topic, orjson.dumps(event), key=model.encode(), partition=partition
                )
        await producer.flush()
    finally:
        await producer.stop()

    service = MonitorService(config)
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        await eventually(
            lambda: "model-c" in service.models and service.models["model-c"].events_total == 300,
            60,
        )
        assert service.disabled.keys() == {"model-a", "model-b"}
        error_a, error_b = service.disabled["model-a"][1], service.disabled["model-b"][1]
        fv = state_format.FORMAT_VERSION
        assert "'model-a'" in error_a and f"format version {fv + 1}" in error_a
        assert "'model-b'" in error_b
        assert f"manifest version {MANIFEST_VERSION + 1}" in error_b
        assert f"version {MANIFEST_VERSION} " in error_b
        assert not service.readiness()[0]
        kept = ["model-d", "model-e"] + (["model-f"] if unlisted == "keep" else [])
        assert service.status()["stored_unlisted"] == kept
    finally:
        service.request_stop()
        await task
        await service.stop(grace_seconds=1)
    latest = await _latest(kafka_bootstrap, changelog, 2)
    kept = written if unlisted == "keep" else {**written, **dict.fromkeys(unlisted_readable)}
    for key, value in kept.items():
        assert latest[key] == value, key  # the newer release's records, untouched
    assert model_key("model-c") in latest  # the shutdown checkpoint did write
    assert not {"model-d", "model-e", "model-f"} & (service.models.keys() | service.disabled.keys())


@pytest.mark.parametrize("unlisted", ["keep", "delete"])
async def test_an_unlisted_model_s_state_is_kept_and_a_newer_one_never_deleted(
    tmp_path: Path, unlisted: str
) -> None:
    """A model the config no longer lists (a rollback to the previous release's config, a
    model dropped by mistake): its stored state was deleted at assignment, also one a newer
    release wrote. Now it is kept unless ``state.unlisted_models: delete``, and never when a
    newer release wrote it; kept, it is restored when the model is listed again."""
    tp = ("predictions", 0)
    first = MonitorService(parse_config(_raw({"gone": 1, "other": 1}, tmp_path), base_dir=tmp_path))
    first.store = SQLiteStateStore(tmp_path / "state.sqlite")
    _events(first, "gone", 0, 150)
    first.checkpoint()
    first.store.close()
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    readable = store.load_model("gone")
    future = _future_blob()
    store.save({"newer": (future, tp)}, {})
    raw = _raw({"other": 1}, tmp_path)  # the config of the release rolled back to
    if unlisted == "delete":  # "keep" is the default
        raw["state"]["unlisted_models"] = unlisted
    service = MonitorService(parse_config(raw, base_dir=tmp_path), store=store)
    service.store = store
    try:
        await service._load_assigned({tp})
        service.checkpoint()
        assert "gone" not in service.models and "newer" not in service.models
        assert store.load_model("newer") == future  # a newer release's: never deleted
        kept = service.status()["stored_unlisted"]
        if unlisted == "delete":
            assert store.load_model("gone") is None
            assert kept == ["newer"]
            return
        assert kept == ["gone", "newer"]
        assert store.load_model("gone") == readable
    finally:
        store.close()
    # Listed again: restored as it was stored.
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    again = MonitorService(
        parse_config(_raw({"gone": 1, "other": 1}, tmp_path), base_dir=tmp_path), store=store
    )
    again.store = store
    try:
        await again._load_assigned({tp})
        assert again.models["gone"].events_total == 150
    finally:
        store.close()
