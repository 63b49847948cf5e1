"""Alerts that survive the loss of a host (``state.backend: kafka``): notifications go to
the alerts topic in the checkpoint's transaction and are delivered by whichever instance
holds the alerts topic's partition, through the real HTTP receiver.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from alert_receivers import Hang, RecordingReceiver
from fault_helpers import MonitorProcess, committed_offsets, eventually, write_config

from devtools.local_kafka import create_topics
from monitor.alerting.alert_log import decode_record
from monitor.config import parse_config
from monitor.errors import MonitorError
from monitor.service import MonitorService
from monitor.simulate import DriftSpec, publish

pytestmark = pytest.mark.kafka

DRIFT = DriftSpec(kind="mean", features=("income", "credit_score"), size=3.0, start=400)


def _raw(
    bootstrap: str, topic: str, group: str, home: Path, url: str, name: str, interval: float = 3600
) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "predictions_topic": topic,
            "labels_topic": None,
            "poll_timeout_ms": 100,
            "metadata_max_age_ms": 1000,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
        },
        "http": {"port": 0},
        "state": {
            "backend": "kafka",
            "instance_id": name,
            "path": str(home / name / "unused.sqlite"),
            "checkpoint_interval_seconds": interval,
        },
        "unknown_models": "track",
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 200}},
        "alerting": {
            "receivers": {"hook": {"type": "webhook", "url": url, "timeout_seconds": 120}},
            "outbox_path": str(home / name / "outbox.sqlite"),
        },
    }


async def _alert_records(bootstrap: str, topic: str) -> list[tuple[str, str]]:
    """(receiver, idempotency key) of every committed record of the alerts topic."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        out: list[tuple[str, str]] = []
        while batches := await consumer.getmany(timeout_ms=1000):
            for records in batches.values():
                for r in records:
                    try:
                        receiver, n = decode_record(r.value)
                    except MonitorError:
                        continue  # the hostile records the test wrote itself
                    out.append((receiver, n.idempotency_key))
        return out
    finally:
        await consumer.stop()


async def test_a_drift_notification_reaches_the_receiver_through_the_alerts_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic = f"alog-{suffix}"
    alerts_topic = f"{topic}-monitor-state-alerts"
    create_topics(kafka_bootstrap, [topic, alerts_topic], 1)
    # Hostile records already in the alerts topic: skipped and counted, never a crash.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for value in (
            b"\xff\xfe not json",
            b'{"version": 99, "receiver": "hook", "notification": "{}"}',
            b'{"version": 1, "receiver": "hook", "notification": "{\\"x\\": 1}"}',
            None,
        ):
            await producer.send_and_wait(alerts_topic, value, key=b"\xed\xa0\x80")
    finally:
        await producer.stop()
    async with RecordingReceiver() as rx:
        raw = _raw(kafka_bootstrap, topic, f"g-{suffix}", tmp_path, rx.url, "one")
        service = MonitorService(parse_config(raw))
        await service.start()
        task = asyncio.create_task(service.run())
        try:
            assert service.alert_log is not None
            await publish(kafka_bootstrap, topic=topic, model="m", events=1200, drift=DRIFT)
            await rx.wait_for_requests(1, within=60)
            await eventually(lambda: service._positions.get((topic, 0)) == 1200, 60)
            await asyncio.sleep(2.0)  # let any straggler arrive
            records = await _alert_records(kafka_bootstrap, alerts_topic)
            ids = [r.headers["webhook-id"] for r in rx.requests]
            # Every delivery came from a committed record of the alerts topic, once.
            assert records and {("hook", i) for i in ids} <= set(records), (ids, records)
            assert len(records) == len(set(records)), records
            assert Counter(ids).most_common(1)[0][1] == 1, ids
            handed = service.registry.get_sample_value(
                "monitor_alert_log_records_total", {"outcome": "handed_off"}
            )
            assert handed == len(records)
            invalid = service.registry.get_sample_value(
                "monitor_alert_log_records_total", {"outcome": "invalid"}
            )
            assert invalid == 4
        finally:
            service.request_stop()
            await task
            await service.stop(grace_seconds=5)


async def test_an_alert_of_a_host_lost_before_delivery_is_delivered_by_another(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """kill -9 after the checkpoint that produced the alert, while its delivery hangs; its
    directory (outbox included) deleted: the instance that takes the partitions over
    delivers the same notification (same webhook-id)."""
    suffix = uuid.uuid4().hex[:10]
    topic = f"alog-{suffix}"
    group = f"g-{suffix}"
    create_topics(kafka_bootstrap, [topic], 1)
    async with RecordingReceiver() as rx:
        rx.script(Hang(60.0))  # the lost host's delivery never completes
        first_dir = tmp_path / "first"
        first_dir.mkdir()
        first = MonitorProcess(
            write_config(
                first_dir / "c.yaml",
                _raw(kafka_bootstrap, topic, group, tmp_path, rx.url, "first", interval=1),
            ),
            tmp_path / "m1.log",
        ).start()
        second: MonitorProcess | None = None
        try:
            await first.wait_serving()
            await publish(kafka_bootstrap, topic=topic, model="m", events=1200, drift=DRIFT)
            await rx.wait_for_requests(1, within=60)  # in flight on the first host, hanging
            lost = rx.requests[0].headers["webhook-id"]
            # The checkpoint covering the alert's evaluation (and every event) is committed:
            # the next owner resumes after it and will not decide the alert again.
            for _ in range(300):
                committed = await committed_offsets(kafka_bootstrap, group, topic)
                if committed.get(f"{topic}/0") == 1200:
                    break
                await asyncio.sleep(0.1)
            assert committed.get(f"{topic}/0") == 1200, committed
            first.kill()
            shutil.rmtree(first_dir)  # the host is gone for good, with its outbox
            second_dir = tmp_path / "second"
            second_dir.mkdir()
            second = MonitorProcess(
                write_config(
                    second_dir / "c.yaml",
                    _raw(kafka_bootstrap, topic, group, tmp_path, rx.url, "second"),
                ),
                tmp_path / "m2.log",
            ).start()
            await second.wait_serving()
            await eventually(
                lambda: lost in {r.headers["webhook-id"] for r in rx.requests[1:]}, within=45
            )
            assert await asyncio.to_thread(second.terminate) == 0, second.tail()
        finally:
            first.ensure_dead()
            if second is not None:
                second.ensure_dead()


async def test_poison_records_on_the_alerts_topic_are_skipped_and_the_next_is_delivered(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    """A record nested too deep for the JSON parser, or whose notification holds a lone
    surrogate escape, raised RecursionError / UnicodeEncodeError out of the consumer's loop:
    its task died, and every restart died on the same uncommitted record (no alert of the
    partition delivered again). Both are invalid records, counted, and consumption goes on."""
    import random

    from prometheus_client import CollectorRegistry

    from monitor.alerting.alert_log import AlertLogConsumer, encode_record
    from monitor.alerting.config import AlertingConfig
    from monitor.alerting.engine import AlertService
    from monitor.alerting.notification import Notification, SignalEvidence
    from monitor.clock import SystemClock

    topic = topic_factory("alerts", partitions=1)
    good = Notification(
        idempotency_key="k-1",
        fingerprint="f",
        action="fire",
        status="firing",
        model="m",
        model_version=None,
        group={"model": "m"},
        severity="critical",
        started_at=1.0,
        evaluated_at=1.0,
        window_start=0.0,
        window_end=1.0,
        window_events=1,
        signals=(SignalEvidence("drift", "x", "critical", 0.4, 0.2, "psi"),),
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for value in (
            b"[" * 100_000,
            b'{"version": 1, "receiver": "hook", "notification": "\\"\\\\ud800\\""}',
            encode_record(("m", "hook", good))[1],
        ):
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    registry = CollectorRegistry()
    async with RecordingReceiver() as rx:
        cfg = AlertingConfig.model_validate(
            {"receivers": {"hook": {"type": "webhook", "url": rx.url}}}
        )
        alerts = AlertService(
            cfg,
            registry=registry,
            clock=SystemClock(),
            outbox_path=str(tmp_path / "outbox.sqlite"),
            rng=random.Random(1),
            poll_interval_seconds=0.05,
        )
        await alerts.start()
        kafka = parse_config(
            {"kafka": {"bootstrap_servers": kafka_bootstrap, "group_id": f"g-{topic}"}}
        ).kafka
        consumer = AlertLogConsumer(
            kafka, topic, alerts, registry, clock=SystemClock(), poll_ms=100
        )
        await consumer.start()
        try:
            (req,) = await rx.wait_for_requests(1, within=15)
            assert req.headers["webhook-id"] == "k-1"
            sample = registry.get_sample_value
            assert sample("monitor_alert_log_records_total", {"outcome": "invalid"}) == 2
            assert sample("monitor_alert_log_records_total", {"outcome": "handed_off"}) == 1
        finally:
            await consumer.stop(grace_seconds=2)
            await alerts.stop()
