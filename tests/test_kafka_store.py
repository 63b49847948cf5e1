"""The Kafka state backend: a compacted changelog topic, checkpoints and offsets in one
transaction, restored on another "machine" (no shared file) after a rebalance.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor.config import KafkaConfig, StateConfig, parse_config
from monitor.kafka_store import (
    MANIFEST_VERSION,
    PART_MAGIC,
    KafkaStateStore,
    assemble,
    model_key,
    part_key,
)
from monitor.service import MonitorService
from monitor.simulate import Simulator
from monitor.store import FORMAT
from tests.fault_helpers import committed_offsets, eventually

MODELS = ("model-a", "model-b")  # model-a on partition 0, model-b on partition 1


def _manifest(gen: bytes, parts: int, size: int, version: int = MANIFEST_VERSION) -> bytes:
    doc = {
        "format": FORMAT,
        "version": version,
        "generation": gen.hex(),
        "parts": parts,
        "bytes": size,
        "topic": "t",
        "partition": 0,
    }
    return json.dumps(doc).encode()


def test_a_state_is_taken_only_when_every_part_of_its_generation_is_there() -> None:
    gen, old = b"g" * 16, b"o" * 16
    good = {
        model_key("m"): _manifest(gen, 2, 6),
        part_key("m", 0): PART_MAGIC + gen + b"abc",
        part_key("m", 1): PART_MAGIC + gen + b"def",
        model_key("stale"): _manifest(gen, 2, 6),
        part_key("stale", 0): PART_MAGIC + gen + b"abc",
        part_key("stale", 1): PART_MAGIC + old + b"def",
        model_key("missing"): _manifest(gen, 2, 6),
        part_key("missing", 0): PART_MAGIC + gen + b"abc",
        model_key("future"): _manifest(gen, 1, 3, version=99),
        part_key("future", 0): PART_MAGIC + gen + b"abc",
        model_key("garbage"): b"\xff{not json",
        b"not-json-key": b"whatever",
        model_key("deleted"): None,
    }
    state = b"state bytes " * 100
    packed = zlib.compress(state, 1)
    zdoc = json.loads(_manifest(gen, 1, len(packed)))
    good[model_key("z")] = json.dumps(
        {**zdoc, "encoding": "zlib", "raw_bytes": len(state)}
    ).encode()
    good[part_key("z", 0)] = PART_MAGIC + gen + packed
    bomb = zlib.compress(b"\0" * 10_000_000, 9)  # declares 10 bytes, inflates to 10 MB
    bdoc = json.loads(_manifest(gen, 1, len(bomb)))
    good[model_key("bomb")] = json.dumps({**bdoc, "encoding": "zlib", "raw_bytes": 10}).encode()
    good[part_key("bomb", 0)] = PART_MAGIC + gen + bomb
    good[model_key("lz")] = json.dumps({**zdoc, "encoding": "lz4", "raw_bytes": 1}).encode()
    got = assemble(good, "t", 0)
    assert got["z"].blob == state
    assert got["bomb"].problem is not None and got["bomb"].problem[0] == "corrupt"
    assert got["lz"].problem is not None and got["lz"].problem[0] == "unknown_version"
    assert got["m"].blob == b"abcdef" and got["m"].problem is None and got["m"].parts == {0, 1}
    assert got["stale"].problem is not None and got["stale"].problem[0] == "corrupt"
    assert got["missing"].problem is not None and "missing" in got["missing"].problem[1]
    assert got["future"].problem is not None and got["future"].problem[0] == "newer_version"
    assert got["garbage"].problem is not None and got["garbage"].problem[0] == "corrupt"
    assert "deleted" not in got


@pytest.mark.kafka
async def test_a_split_state_and_its_offsets_are_restored_by_another_instance(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("kstore", partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    kafka = KafkaConfig(bootstrap_servers=kafka_bootstrap, group_id=group, predictions_topic=topic)
    state = StateConfig(backend="kafka", instance_id="one", max_record_bytes=1024)
    blob = bytes(range(256)) * 20  # 5120 bytes: five records of 1024
    first = await asyncio.to_thread(KafkaStateStore, kafka, state)
    try:
        await asyncio.to_thread(first.save, {"m": (blob, (topic, 1))}, {(topic, 1): 42})
        # A smaller state later: its unused parts are deleted, the new generation is read.
        await asyncio.to_thread(first.save, {"m": (blob[:1500], (topic, 1))}, {(topic, 1): 50})
    finally:
        await asyncio.to_thread(first.close)
    assert (await committed_offsets(kafka_bootstrap, group, topic))[f"{topic}/1"] == 50

    other = StateConfig(backend="kafka", instance_id="two", max_record_bytes=1024)
    second = await asyncio.to_thread(KafkaStateStore, kafka, other)
    try:
        await asyncio.to_thread(second.prepare, {(topic, 0)})
        assert second.models() == [] and second.load_offsets() == {}
        await asyncio.to_thread(second.prepare, {(topic, 1)})
        assert second.models([(topic, 1)]) == ["m"]
        assert second.load_offsets() == {(topic, 1): 50}
        assert second.load_model("m") == blob[:1500]
    finally:
        await asyncio.to_thread(second.close)


def _config(bootstrap: str, topic: str, group: str, home: Path, name: str) -> Any:
    """One instance's config: its own directory, as if on its own machine."""
    return parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": group,
                "predictions_topic": topic,
                "labels_topic": None,
                "poll_timeout_ms": 100,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500,
            },
            "http": {"port": 0},
            "state": {
                "backend": "kafka",
                "instance_id": name,
                "path": str(home / name / "unused.sqlite"),
                "checkpoint_interval_seconds": 3600,
            },
            "defaults": {"window": {"size": 500, "step": 250}, "reference": {"learn_first": 500}},
            "models": [{"name": m} for m in MODELS],
            "alerting": {"outbox_path": str(home / name / "outbox.sqlite")},
        }
    )


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


def _gauges_of(service: MonitorService, model: str) -> set[str]:
    """Names of the gauge samples ``service`` exports for ``model``."""
    return {
        sample.name
        for family in service.registry.collect()
        if family.type == "gauge"
        for sample in family.samples
        if sample.labels.get("model") == model
    }


@pytest.mark.kafka
@pytest.mark.slow
async def test_model_state_follows_its_partition_to_another_machine(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """No shared file: the moved model continues from the changelog on the new instance,
    the group's offsets move only with checkpoints, and the old owner stops showing it."""
    topic = topic_factory("kstate", partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = MonitorService(_config(kafka_bootstrap, topic, group, tmp_path, "first"))
    await first.start()
    tasks = [asyncio.create_task(first.run())]
    second: MonitorService | None = None
    try:
        await _publish(kafka_bootstrap, topic, 1000, seed=1)
        try:
            await eventually(
                lambda: all(
                    m in first.models and first.models[m].events_total == 1000 for m in MODELS
                ),
                60,
            )
        except AssertionError:
            seen = {m: mm.events_total for m, mm in first.models.items()}
            raise AssertionError(f"events: {seen} at {first._positions}") from None
        # No per-batch commit: nothing is committed before a checkpoint.
        before = await committed_offsets(kafka_bootstrap, group, topic)
        assert before[f"{topic}/0"] in (None, 0), before

        second = MonitorService(_config(kafka_bootstrap, topic, group, tmp_path, "second"))
        await second.start()
        tasks.append(asyncio.create_task(second.run()))
        await eventually(
            lambda: len(first.source.assignment()) == 1 and len(second.source.assignment()) == 1,
            60,
        )
        # The revocation's checkpoint committed the offsets with the states.
        after = await committed_offsets(kafka_bootstrap, group, topic)
        assert after == {f"{topic}/0": 1000, f"{topic}/1": 1000}, after

        await _publish(kafka_bootstrap, topic, 1000, seed=2)
        instances = [first, second]

        def holders(m: str) -> list[MonitorService]:
            return [s for s in instances if m in s.models]

        try:
            await eventually(
                lambda: all(
                    len(holders(m)) == 1 and holders(m)[0].models[m].events_total == 2000
                    for m in MODELS
                ),
                60,
            )
        except AssertionError:
            seen = [{m: mm.events_total for m, mm in s.models.items()} for s in instances]
            raise AssertionError(f"events per instance: {seen}") from None
        moved = [m for m in MODELS if m in second.models]
        assert len(moved) == 1
        mm = second.models[moved[0]]
        assert mm.reference is not None and mm.reference.source == "first 500 events"
        assert mm.evaluations == 1 + 4
        # Shown by exactly one instance: the old owner reports it as not held.
        shown = first.status()["models"][moved[0]]
        assert shown["state"] == "waiting" and shown["events"] == 0
        assert second.status()["models"][moved[0]]["events"] == 2000
        # /metrics: no gauge of the moved model on its old owner, some on the new one.
        assert _gauges_of(first, moved[0]) == set()
        assert "monitor_event_lag_seconds" in _gauges_of(second, moved[0])
    finally:
        for s in (first, second):
            if s is not None:
                s.request_stop()
        await asyncio.gather(*tasks)
        for s in (first, second):
            if s is not None:
                await s.stop(grace_seconds=1)
    # The shutdown checkpoints committed everything consumed.
    final = await committed_offsets(kafka_bootstrap, group, topic)
    assert final == {f"{topic}/0": 2000, f"{topic}/1": 2000}, final


@pytest.mark.kafka
async def test_a_changelog_record_of_an_unknown_version_starts_the_model_fresh(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """With ``state.on_newer_state: start_fresh``: without it a newer release's record is
    refused and kept (tests/test_state_rollback.py)."""
    topic = topic_factory("kbad", partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    config = _config(kafka_bootstrap, topic, group, tmp_path, "solo")
    state = config.state.model_copy(update={"on_newer_state": "start_fresh"})
    config = config.model_copy(update={"state": state})
    # The changelog exists (created by a first start), then gets a record from the future.
    store = await asyncio.to_thread(KafkaStateStore, config.kafka, config.state)
    changelog = store.topic
    await asyncio.to_thread(store.close)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        gen = uuid.uuid4().bytes
        await producer.send_and_wait(
            changelog, PART_MAGIC + gen + b"\x00" * 10, key=part_key("model-a", 0), partition=0
        )
        await producer.send_and_wait(
            changelog, _manifest(gen, 1, 10, version=99), key=model_key("model-a"), partition=0
        )
    finally:
        await producer.stop()
    service = MonitorService(config)
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        await _publish(kafka_bootstrap, topic, 600, seed=3)
        await eventually(
            lambda: all(
                m in service.models and service.models[m].events_total == 600 for m in MODELS
            ),
            60,
        )
        value = service.registry.get_sample_value(
            "monitor_state_restore_failures_total", {"reason": "newer_version"}
        )
        assert value == 1
    finally:
        service.request_stop()
        await task
        await service.stop(grace_seconds=1)


@pytest.mark.kafka
@pytest.mark.slow
async def test_a_rebalance_in_the_middle_of_a_checkpoint_loses_and_doubles_nothing(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """The second instance joins while the first one's checkpoint transaction is being
    written (slowed to 2 s): the revocation waits for it, checkpoints again, and the moved
    model continues on the new owner with every event counted once."""
    topic = topic_factory("kmid", partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = MonitorService(_config(kafka_bootstrap, topic, group, tmp_path, "first"))
    await first.start()
    tasks = [asyncio.create_task(first.run())]
    second: MonitorService | None = None
    try:
        await _publish(kafka_bootstrap, topic, 1000, seed=1)
        await eventually(
            lambda: all(m in first.models and first.models[m].events_total == 1000 for m in MODELS),
            60,
        )
        assert first.store is not None
        real_save = first.store.save
        writing = asyncio.Event()
        loop = asyncio.get_running_loop()

        def slow_save(models: Any, offsets: Any) -> None:
            loop.call_soon_threadsafe(writing.set)
            time.sleep(2.0)
            real_save(models, offsets)

        first.store.save = slow_save  # type: ignore[method-assign]

        async def checkpoint() -> None:
            async with first._lock:
                first._dirty.update(first.models)
                await first._checkpoint()

        in_flight = asyncio.create_task(checkpoint())
        await writing.wait()
        second = MonitorService(_config(kafka_bootstrap, topic, group, tmp_path, "second"))
        await second.start()
        tasks.append(asyncio.create_task(second.run()))
        await in_flight
        await eventually(
            lambda: len(first.source.assignment()) == 1 and len(second.source.assignment()) == 1,
            60,
        )
        await _publish(kafka_bootstrap, topic, 1000, seed=2)
        instances = [first, second]
        await eventually(
            lambda: all(
                sum(m in s.models for s in instances) == 1
                and next(s for s in instances if m in s.models).models[m].events_total == 2000
                for m in MODELS
            ),
            60,
        )
        for m in MODELS:
            owner = next(s for s in instances if m in s.models)
            assert owner.models[m].evaluations == 1 + 4
    finally:
        for s in (first, second):
            if s is not None:
                s.request_stop()
        await asyncio.gather(*tasks)
        for s in (first, second):
            if s is not None:
                await s.stop(grace_seconds=1)


@pytest.mark.kafka
async def test_an_unlisted_tracked_model_keeps_its_state_on_another_machine(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """unknown_models: track. The next owner learns which unlisted models were admitted from
    the changelog it reads at assignment, so it restores their states (not deletes them)."""
    topic = topic_factory("kunlisted", partitions=2)
    group = f"g-{uuid.uuid4().hex[:8]}"

    def config(name: str) -> Any:
        raw = _config(kafka_bootstrap, topic, group, tmp_path, name)
        return raw.model_copy(update={"unknown_models": "track"})

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for event, _ in Simulator(model="unlisted", seed=5).events(600):
            await producer.send(topic, orjson.dumps(event), key=b"unlisted", partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    for name, check in (("first", False), ("second", True)):
        service = MonitorService(config(name))
        await service.start()
        task = asyncio.create_task(service.run())
        try:
            await eventually(
                lambda s=service: (
                    "unlisted" in s.models  # type: ignore[misc]
                    and s.models["unlisted"].events_total == 600
                ),
                60,
            )
        finally:
            service.request_stop()
            await task
            await service.stop(grace_seconds=1)
        if check:  # restored, not started over: nothing was consumed again
            processed = service.registry.get_sample_value(
                "monitor_events_processed_total", {"model": "unlisted"}
            )
            assert processed in (None, 0.0)


def test_changelog_records_nested_too_deep_or_declaring_too_much_are_refused() -> None:
    """A key or manifest on the changelog nested deeper than the JSON parser recurses
    raised RecursionError out of the restore (the instance could not start its partitions);
    a zlib record declaring more than a state may hold is refused before it is inflated."""
    import tracemalloc

    from monitor.kafka_store import stored_offsets
    from monitor.state_format import MAX_RAW_BYTES

    gen = b"g" * 16
    deep = b"[" * 100_000
    records = {
        deep: b"whatever",
        model_key("m"): deep,
        model_key("ok"): _manifest(gen, 1, 3),
        part_key("ok", 0): PART_MAGIC + gen + b"abc",
    }
    got = assemble(records, "t", 0)
    assert got["ok"].blob == b"abc"
    assert got["m"].problem == ("corrupt", "manifest: JSON nested too deeply")
    assert stored_offsets({deep: b"5", json.dumps(["offsets", "t", 0]).encode(): b"7"}) == {
        ("t", 0): 7
    }
    bomb = zlib.compress(b"\0" * 50_000_000, 9)
    doc = json.loads(_manifest(gen, 1, len(bomb)))
    huge = {
        model_key("b"): json.dumps(
            {**doc, "encoding": "zlib", "raw_bytes": MAX_RAW_BYTES + 1}
        ).encode(),
        part_key("b", 0): PART_MAGIC + gen + bomb,
    }
    tracemalloc.start()
    try:
        got = assemble(huge, "t", 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got["b"].problem is not None and got["b"].problem[0] == "corrupt"
    assert "limit" in got["b"].problem[1] and peak < 5_000_000  # nothing inflated


@pytest.mark.kafka
async def test_two_live_instances_with_one_instance_id_are_named_as_the_likely_cause(
    kafka_bootstrap: str, topic_factory: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    """Two stores with the same ``state.instance_id`` (one transactional id) fence each other
    at every checkpoint: each checkpoint still lands (the producer is recreated), and the
    WARNING names the setting as the likely cause."""
    topic = topic_factory("kfence", partitions=1)
    kafka = KafkaConfig(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        predictions_topic=topic,
    )
    state = StateConfig(backend="kafka", instance_id="twin")
    caplog.set_level(logging.WARNING, logger="monitor.kafka_store")
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
        # aiokafka's internal futures of the fenced producer hold the error: collected now
        # rather than during a later import (CPython 3.11.7's ast.parse fails on a __del__
        # that logs while it runs: "AST constructor recursion depth mismatch").
        gc.collect()
    fenced = [r.getMessage() for r in caplog.records if "recreating the transactional" in r.msg]
    assert len(fenced) == 1, fenced
    assert "ProducerFenced" in fenced[0]
    assert "another live instance may be running with the same state.instance_id" in fenced[0]
    assert "'twin'" in fenced[0]
