"""The Kafka edge under conditions an operator meets: records of every shape, a dead-letter
topic that refuses writes, compressed topics, a broker that lost its data, start-up logs.

Everything runs against the real broker (``kafka_bootstrap``); topics that need special
settings (a small ``max.message.bytes``) are created with aiokafka's admin client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    GroupCoordinatorNotAvailableError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)
from fault_helpers import ROOT, MonitorProcess, eventually, write_config

from devtools.local_kafka import LocalKafka, create_topics, ensure_jars
from monitor.clock import ManualClock
from monitor.config import parse_config
from monitor.errors import SourceError
from monitor.kafka_source import DeadLetterPublisher, StartupNoiseFilter, dead_letter_reason
from monitor.service import MonitorService


def _config(bootstrap: str, tmp: Path, suffix: str, **kafka: Any) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"g-{suffix}",
            "predictions_topic": f"p-{suffix}",
            "labels_topic": None,
            "poll_timeout_ms": 100,
            "metadata_max_age_ms": 1000,
            "max_message_bytes": 20_000,
            **kafka,
        },
        "http": {"port": 0},
        "state": {"path": str(tmp / f"state-{suffix}.sqlite")},
        "unknown_models": "reject",
        "models": [{"name": "m"}],
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 100}},
        "alerting": {"outbox_path": str(tmp / f"outbox-{suffix}.sqlite")},
    }


def _event(i: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e{i}",
            "model": "m",
            "timestamp": 1_700_000_000 + i,
            "features": {"x": float(i % 13)},
            "prediction": 0.5,
        }
    )


async def _create_topic(bootstrap: str, name: str, **configs: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


async def _run(raw: dict[str, Any]) -> tuple[MonitorService, asyncio.Task[None]]:
    service = MonitorService(parse_config(raw))
    await service.start()
    return service, asyncio.create_task(service.run())


async def _stop(service: MonitorService, task: asyncio.Task[None]) -> None:
    service.request_stop()
    await task
    await service.stop(grace_seconds=1)


async def _metrics(service: MonitorService) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{service.http.url}/metrics")).text


def _sample(metrics: str, name: str, **labels: str) -> float:
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if got == labels:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels}")


async def _read_all(bootstrap: str, topic: str, n: int, within: float = 20) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=2_000_000,
    )
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(within):
            while len(got) < n:
                for records in (await consumer.getmany(timeout_ms=300)).values():
                    got.extend(records)
    finally:
        await consumer.stop()
    return got


# --------------------------------------------------------------------------- dead letters


@pytest.mark.kafka
async def test_records_of_every_shape_never_stop_consumption_even_when_the_dlq_refuses_them(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A keyless tombstone used to raise AssertionError out of run() (a crash loop); a
    rejected message too large for the dead-letter topic used to be retried forever."""
    suffix = uuid.uuid4().hex[:10]
    source, dlq = f"p-{suffix}", f"dlq-{suffix}"
    await _create_topic(kafka_bootstrap, source)
    await _create_topic(kafka_bootstrap, dlq, **{"max.message.bytes": "4000"})
    raw = _config(kafka_bootstrap, tmp_path, suffix, dead_letter_topic=dlq)
    # (key, value, headers): what the dead-letter topic should hold for each.
    shapes: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = [
        (None, None, []),  # a keyless tombstone
        (b"k", None, []),  # a tombstone
        (None, b"{not json", [("h", b"\xff\xfe")]),  # no key, hostile header
        (b"\xff\xfe\xed", b"[1, 2]", []),  # invalid UTF-8 key
        (b"k", b"{" + b"x" * 10_000, []),  # fits the source topic, not the DLQ
        (b"k", b"{" + b"x" * 30_000, []),  # too_large: its truncated copy is still too big
        (b"K" * 2000, b"{" + b"y" * 900_000, []),  # near the broker's size limit, long key
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=2_000_000)
    await producer.start()
    try:
        await (await producer.send(source, _event(0), key=b"m"))
        for key, value, headers in shapes:
            # send_batch: aiokafka's send() refuses a record with neither key nor value.
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=headers)
            await (await producer.send_batch(batch, source, partition=0))
        for i in range(1, 150):
            await producer.send(source, _event(i), key=b"m")
        await producer.flush()
    finally:
        await producer.stop()

    service, task = await _run(raw)
    try:

        def consumed() -> bool:
            if task.done():
                task.result()  # raise what killed the loop
            mm = service.models.get("m")
            return mm is not None and mm.events_total >= 150

        await eventually(consumed, 30)
        assert service.models["m"].events_total == 150
        metrics = await _metrics(service)
    finally:
        await _stop(service, task)

    assert (
        _sample(
            metrics, "monitor_dead_letter_failures_total", reason="too_large", fallback="marker"
        )
        == 3
    )
    # Written in full: the two tombstones and "{not json" (malformed_json), "[1, 2]".
    assert _sample(metrics, "monitor_dead_letter_messages_total", reason="malformed_json") == 3
    assert _sample(metrics, "monitor_dead_letter_messages_total", reason="not_an_object") == 1
    got = await _read_all(kafka_bootstrap, dlq, len(shapes))
    assert len(got) == len(shapes)
    by_offset = {int(dict(r.headers)["monitor.source"].decode().rsplit("/", 1)[1]): r for r in got}
    assert sorted(by_offset) == list(range(1, 1 + len(shapes)))
    keyless = by_offset[1]
    assert (keyless.key, keyless.value) == (None, b"")
    assert dict(keyless.headers)["monitor.value_null"] == b"1"
    assert (by_offset[2].key, by_offset[2].value) == (b"k", None)
    assert (by_offset[3].key, by_offset[3].value) == (None, b"{not json")
    assert (by_offset[4].key, by_offset[4].value) == (b"\xff\xfe\xed", b"[1, 2]")
    for offset, size in ((5, 10_001), (6, 30_001), (7, 900_001)):
        marker = by_offset[offset]
        headers = dict(marker.headers)
        assert (marker.key, marker.value) == (None, b"")
        assert headers["monitor.fallback"] == b"too_large"
        assert headers["monitor.original_bytes"] == str(size).encode()
        assert headers["monitor.reason"] in (b"malformed_json", b"too_large")


@pytest.mark.kafka
async def test_a_dlq_that_refuses_everything_does_not_hold_up_consumption_and_lag_is_real(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Even the marker copy is refused (max.message.bytes below any record): counted as
    dropped, consumption goes on, and the lag gauge reads the real lag meanwhile."""
    suffix = uuid.uuid4().hex[:10]
    source, dlq = f"p-{suffix}", f"dlq-{suffix}"
    await _create_topic(kafka_bootstrap, source)
    await _create_topic(kafka_bootstrap, dlq, **{"max.message.bytes": "10"})
    raw = _config(kafka_bootstrap, tmp_path, suffix, dead_letter_topic=dlq)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(100):
            await producer.send(source, _event(i) if i % 10 else b"{bad", key=b"m")
        await producer.flush()
    finally:
        await producer.stop()
    service, task = await _run(raw)
    try:

        def consumed() -> bool:
            if task.done():
                task.result()
            mm = service.models.get("m")
            return mm is not None and mm.events_total >= 90

        await eventually(consumed, 30)
        metrics = await _metrics(service)
    finally:
        await _stop(service, task)
    assert (
        _sample(
            metrics, "monitor_dead_letter_failures_total", reason="too_large", fallback="dropped"
        )
        == 10
    )
    assert _sample(metrics, "monitor_consumer_lag_messages", topic=source, partition="0") == 0


# --------------------------------------------------------------------------- compression

JAVA_PRODUCER = Path(__file__).parent / "java" / "CompressedProducer.java"
CODECS = ("gzip", "snappy", "lz4", "zstd")


def _java_produce(bootstrap: str, topic: str, per_codec: int, codecs: tuple[str, ...]) -> None:
    """Publish with Kafka's Java producer; fails (never skips) without java: CI has it."""
    java = shutil.which("java")
    assert java is not None, "java is needed for this test (CI has it): install a JDK >= 17"
    libs = ensure_jars()
    subprocess.run(
        [java, "-cp", f"{libs}/*", str(JAVA_PRODUCER), bootstrap, topic, str(per_codec), *codecs],
        check=True,
        timeout=120,
        capture_output=True,
    )


PER_CODEC = 50


@pytest.fixture(scope="module")
def every_codec_topic(kafka_bootstrap: str) -> str:
    """One topic written once by Kafka's Java producer: PER_CODEC events compressed with each
    of CODECS in turn (gzip first). A JVM start that compiles the producer's source costs
    seconds, so the tests below share it, each reading it with a group of its own."""
    topic = f"codecs-{uuid.uuid4().hex[:10]}"
    create_topics(kafka_bootstrap, [topic], 1)
    _java_produce(kafka_bootstrap, topic, PER_CODEC, CODECS)
    return topic


@pytest.mark.kafka
async def test_events_from_a_java_producer_with_every_codec_are_consumed(
    kafka_bootstrap: str, tmp_path: Path, every_codec_topic: str
) -> None:
    """snappy, lz4 and zstd batches used to stop their partition for good (codecs missing)."""
    suffix = uuid.uuid4().hex[:10]
    raw = _config(kafka_bootstrap, tmp_path, suffix, predictions_topic=every_codec_topic)
    service, task = await _run(raw)
    try:

        def consumed() -> bool:
            mm = service.models.get("m")
            return mm is not None and mm.events_total >= PER_CODEC * len(CODECS)

        await eventually(consumed, 30)
        assert service.models["m"].events_total == PER_CODEC * len(CODECS)
        assert service.status()["positions"] == {f"{every_codec_topic}/0": PER_CODEC * len(CODECS)}
    finally:
        await _stop(service, task)


@pytest.mark.kafka
async def test_a_missing_codec_library_is_one_clear_error_a_metric_and_a_503(
    kafka_bootstrap: str, tmp_path: Path, every_codec_topic: str
) -> None:
    """The codec library made unimportable in the monitor's process (a ``cramjam`` module
    that raises ImportError first on the path), as in an install without the extras:
    one ERROR naming the codec and the fix, not a WARNING a second; /healthz says why.
    (The gzip batches come first and decode with the standard library; snappy stops it.)"""
    suffix = uuid.uuid4().hex[:10]
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "cramjam.py").write_text('raise ImportError("cramjam hidden by the test")\n')
    raw = _config(kafka_bootstrap, tmp_path, suffix, predictions_topic=every_codec_topic)
    config = write_config(tmp_path / "monitor.yaml", raw)
    env = {"PYTHONPATH": os.pathsep.join([str(hide), str(ROOT)])}
    proc = MonitorProcess(config, tmp_path / "monitor.log", env=env).start()
    try:
        await proc.wait_serving()

        async def unhealthy() -> bool:
            return (await proc.get("/healthz")).status_code == 503

        await eventually(unhealthy, 20)
        health = (await proc.get("/healthz")).json()
        await asyncio.sleep(3)  # several more failed polls
        metrics = (await proc.get("/metrics")).text
    finally:
        proc.terminate()
    assert health["undecodable_batch"]["codec"] == "snappy", health
    assert "aiokafka[snappy,lz4,zstd]" in health["undecodable_batch"]["error"]
    assert _sample(metrics, "monitor_undecodable_batch_errors_total", codec="snappy") >= 3
    out = proc.output()
    errors = [line for line in out.splitlines() if "compressed with snappy" in line]
    assert len(errors) == 1, errors
    assert "ERROR" in errors[0] and "pip install 'aiokafka[snappy,lz4,zstd]'" in errors[0]


# --------------------------------------------------------------------------- start-up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_broker_is_named_as_kafka_also_with_a_dead_letter_topic(
    tmp_path: Path,
) -> None:
    """It used to say "cannot start the dead-letter producer", which sends the operator
    looking at the dead-letter topic instead of the broker address."""
    suffix = uuid.uuid4().hex[:10]
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    raw = _config(address, tmp_path, suffix, dead_letter_topic=f"dlq-{suffix}")
    service = MonitorService(parse_config(raw))
    try:
        with pytest.raises(SourceError) as caught:
            await asyncio.wait_for(service.start(), 60)
    finally:
        await service.stop(grace_seconds=1)
    message = str(caught.value)
    assert message.startswith(f"cannot connect to Kafka at {address}: "), message
    assert "dead-letter" not in message
    assert f"{address}: " in message.split("(", 1)[1]  # the per-address diagnosis


# --------------------------------------------------------------------------- lost broker data


async def _produce(bootstrap: str, topic: str, ids: range) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in ids:
            await producer.send(topic, _event(i), key=b"m")
        await producer.flush()
    finally:
        await producer.stop()


async def _consume_all(raw: dict[str, Any], events: int) -> tuple[MonitorService, str]:
    """Run a service until model ``m`` holds ``events`` events; return it stopped, and
    its /metrics text from before the stop."""
    service, task = await _run(raw)
    try:
        await eventually(
            lambda: "m" in service.models and service.models["m"].events_total >= events, 30
        )
        metrics = await _metrics(service)
    finally:
        await _stop(service, task)
    return service, metrics


async def _recreate_topic(bootstrap: str, topic: str) -> None:
    """Delete and create ``topic`` again, as a broker without a volume does on restart."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        async with asyncio.timeout(30):
            while True:
                try:
                    await admin.create_topics([NewTopic(topic, 1, 1)])
                    return
                except TopicAlreadyExistsError:  # the deletion is still under way
                    await asyncio.sleep(0.2)
    finally:
        await admin.close()


@pytest.mark.kafka
async def test_a_stored_offset_beyond_a_recreated_log_restarts_at_its_start(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """It used to seek past the new log's end, let the client reset silently, and show the
    stale stored offset in /api/status."""
    suffix = uuid.uuid4().hex[:10]
    topic = f"p-{suffix}"
    raw = _config(kafka_bootstrap, tmp_path, suffix)
    await _create_topic(kafka_bootstrap, topic)
    await _produce(kafka_bootstrap, topic, range(60))
    await _consume_all(raw, 60)
    await _recreate_topic(kafka_bootstrap, topic)
    await _produce(kafka_bootstrap, topic, range(1000, 1020))
    with caplog.at_level(logging.WARNING, logger="monitor.service"):
        service, metrics = await _consume_all(raw, 80)
    assert service.models["m"].events_total == 80
    assert service.status()["positions"] == {f"{topic}/0": 20}
    assert _sample(metrics, "monitor_offset_resets_total", reason="beyond_end") == 1
    warnings = [
        r.getMessage() for r in caplog.records if "outside the partition's log" in r.message
    ]
    assert warnings == [
        f"stored offset 60 of {topic}/0 is outside the partition's log [0, 20] (beyond_end): "
        "the partition was recreated or the broker lost its data (e.g. a broker without a "
        "persistent volume); consuming the new log from its start, offset 0"
    ]


@pytest.mark.kafka
async def test_a_stored_offset_before_the_log_start_resumes_there_and_counts_the_gap(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic = f"p-{suffix}"
    raw = _config(kafka_bootstrap, tmp_path, suffix)
    await _create_topic(kafka_bootstrap, topic)
    await _produce(kafka_bootstrap, topic, range(30))
    await _consume_all(raw, 30)
    await _produce(kafka_bootstrap, topic, range(30, 100))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:  # what retention does, now
        await admin.delete_records({TopicPartition(topic, 0): RecordsToDelete(60)})
    finally:
        await admin.close()
    service, metrics = await _consume_all(raw, 70)
    assert service.models["m"].events_total == 70  # 30 before, 40 after the deleted 30
    assert service.status()["positions"] == {f"{topic}/0": 100}
    assert _sample(metrics, "monitor_offset_resets_total", reason="before_start") == 1
    assert _sample(metrics, "monitor_offset_reset_skipped_messages_total") == 30


@pytest.mark.kafka
async def test_a_normal_start_on_a_fresh_topic_logs_no_error_and_says_what_it_waits_for(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """aiokafka logged GroupCoordinatorNotAvailableError and "Topic ... not found in cluster
    metadata" at ERROR on every start of a new group or before the topic existed."""
    suffix = uuid.uuid4().hex[:10]
    topic = f"p-{suffix}"  # not created: the first producer creates it
    with caplog.at_level(logging.INFO):
        service, task = await _run(_config(kafka_bootstrap, tmp_path, suffix))
        try:
            await asyncio.sleep(2)  # a few metadata refreshes without the topic
            await _produce(kafka_bootstrap, topic, range(5))
            await eventually(
                lambda: "m" in service.models and service.models["m"].events_total == 5, 30
            )
        finally:
            await _stop(service, task)
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    said = [r.getMessage() for r in caplog.records if r.name == "monitor.kafka"]
    assert (
        said.count(
            f"waiting for topic {topic} to be created "
            "(by its first producer when the broker auto-creates topics)"
        )
        == 1
    ), said


# --------------------------------------------------------------------------- shutdown


@pytest.mark.kafka
async def test_each_shutdown_step_is_logged_once_in_order(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic = f"p-{suffix}"
    await _create_topic(kafka_bootstrap, topic)
    await _produce(kafka_bootstrap, topic, range(5))
    raw = _config(kafka_bootstrap, tmp_path, suffix, dead_letter_topic=f"dlq-{suffix}")
    service, task = await _run(raw)
    await eventually(lambda: "m" in service.models and service.models["m"].events_total == 5, 30)
    with caplog.at_level(logging.INFO, logger="monitor.service"):
        await _stop(service, task)
        await service.stop()  # idempotent: says nothing more
    steps = [
        r.getMessage()
        for r in caplog.records
        if r.name == "monitor.service" and r.getMessage().startswith("shutdown: ")
    ]
    assert steps == [
        "shutdown: finishing the batch in hand",
        f"shutdown: checkpointed 1 model(s) at {topic}/0=5",
        "shutdown: committed the offsets to Kafka",
        "shutdown: left the consumer group",
        "shutdown: stopped the dead-letter producer",
        "shutdown: alert outbox flushed (for at most 1 s)",
        "shutdown: HTTP server stopped",
        "shutdown: state store closed; stopped",
    ]


# --------------------------------------------------------------------------- unit level


def test_repeated_identical_poll_errors_are_counted_and_logged_at_a_bounded_rate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The poll loop logged a WARNING a second, forever, for the same error."""
    clock = ManualClock(1_000.0)
    raw = _config("127.0.0.1:9", tmp_path, uuid.uuid4().hex[:10])
    service = MonitorService(parse_config(raw), clock=clock)
    with caplog.at_level(logging.WARNING, logger="monitor.service"):
        for _ in range(120):  # two minutes of a poll failing once a second: two lines
            service._poll_failed(SourceError("poll failed: NodeNotReadyError"))
            clock.advance(1.0)
        service._poll_failed(SourceError("poll failed: something else"))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "poll failed: NodeNotReadyError; retrying (counted in monitor_loop_errors_total)",
        "poll failed: NodeNotReadyError; retrying (counted in monitor_loop_errors_total)"
        " (59 similar messages suppressed)",
        "poll failed: something else; retrying (counted in monitor_loop_errors_total)",
    ]
    assert service.metrics.loop_errors.labels("poll")._value.get() == 121


def test_dead_letter_producer_errors_map_to_bounded_reasons() -> None:
    """Only a retriable error is retried; every other one goes straight to the fallback."""
    assert dead_letter_reason(MessageSizeTooLargeError()) == "too_large"
    assert dead_letter_reason(RecordTooLargeError()) == "too_large"
    assert dead_letter_reason(NotEnoughReplicasError()) == "unavailable"
    assert dead_letter_reason(KafkaTimeoutError()) == "unavailable"
    assert dead_letter_reason(TopicAuthorizationFailedError()) == "refused"
    assert dead_letter_reason(AssertionError("Need at least one: key or value")) == "invalid"


@pytest.mark.kafka
@pytest.mark.slow
async def test_an_unreachable_dead_letter_broker_gets_bounded_retries_then_consumption_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The dead-letter producer talks to a broker of our own, which we kill: the retriable
    path (producer timeouts). It used to retry once a second forever, the lag gauge unset."""
    suffix = uuid.uuid4().hex[:10]
    source = f"p-{suffix}"
    await _create_topic(kafka_bootstrap, source)
    raw = _config(kafka_bootstrap, tmp_path, suffix, dead_letter_topic=f"dlq-{suffix}")
    service = MonitorService(parse_config(raw))
    with LocalKafka() as dlq_broker:
        dlq_config = parse_config(
            {**raw, "kafka": {**raw["kafka"], "bootstrap_servers": dlq_broker.bootstrap_servers}}
        ).kafka
        # The seam: the dead-letter producer alone goes to the broker we are about to kill,
        # each attempt bounded at 1 s instead of 10 s.
        service.dead_letters = DeadLetterPublisher(dlq_config, request_timeout_ms=1000)
        await service.start()
        task = asyncio.create_task(service.run())
        try:
            dlq_broker.kill()
            await _produce_raw(kafka_bootstrap, source, [b"{bad", *(_event(i) for i in range(50))])
            lag_seen: list[float] = []

            async def consumed() -> bool:
                if task.done():
                    task.result()
                metrics = await _metrics(service)
                with contextlib.suppress(AssertionError):
                    lag_seen.append(
                        _sample(
                            metrics, "monitor_consumer_lag_messages", topic=source, partition="0"
                        )
                    )
                mm = service.models.get("m")
                return mm is not None and mm.events_total >= 50

            await eventually(consumed, 40, every=0.5)
            metrics = await _metrics(service)
        finally:
            await _stop(service, task)
    assert (
        _sample(
            metrics, "monitor_dead_letter_failures_total", reason="unavailable", fallback="dropped"
        )
        == 1
    )
    assert _sample(metrics, "monitor_loop_errors_total", stage="dead_letter") == 3
    assert max(lag_seen) == 51  # the real lag while the batch waited for the dead-letter topic
    assert _sample(metrics, "monitor_consumer_lag_messages", topic=source, partition="0") == 0


async def _produce_raw(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for v in values:
            await producer.send(topic, v, key=b"m")
        await producer.flush()
    finally:
        await producer.stop()


def test_the_startup_filter_demotes_exactly_aiokafkas_transient_coordinator_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The coordinator line does not come on every start of the shared test broker, so its
    filtering is also shown here, with aiokafka's own logger and message."""
    noise = StartupNoiseFilter("g-1")
    noise.install()
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(3):
                coordinator.error(
                    "Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError()
                )
            coordinator.error(
                "Group Coordinator Request failed: %s", GroupAuthorizationFailedError()
            )
    finally:
        noise.remove()
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "monitor.kafka",
            "INFO",
            "waiting for the group coordinator of group g-1 "
            "(normal right after the broker started or for a new group)",
        ),
        (  # not transient: stays an ERROR
            "aiokafka.consumer.group_coordinator",
            "ERROR",
            "Group Coordinator Request failed: [Error 30] GroupAuthorizationFailedError",
        ),
    ]
