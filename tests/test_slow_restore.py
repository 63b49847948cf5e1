"""A restore longer than the consumer group's session timeout (real broker, Kafka backend).

A killed instance leaves its checkpoint transaction open on the changelog; the next owner's
restore waits for it (up to ``state.transaction_timeout_seconds`` plus the broker's abort
interval plus 5 s) before reading. aiokafka sends no heartbeat while a rebalance listener
runs, so a restore done inside the listener that outlived ``session_timeout_ms`` got the
member expelled (found at its first heartbeat after the restore), the group rebalanced and
the restore ran again: as long as restores take longer than the session (a slow changelog,
many models to fit), a loop of restores with a few seconds of consumption between them,
while ``/healthz`` and ``/readyz`` said all was well. The restore now runs in the consume loop
(the partitions paused meanwhile): one restore, then consumption; ``/healthz`` stays 200
and ``/readyz`` is 503 with the partitions under ``restoring`` until it is done.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from monitor.config import parse_config
from monitor.service import MonitorService
from monitor.simulate import Simulator

pytestmark = pytest.mark.kafka

EVENTS = 600


async def test_a_restore_longer_than_the_session_timeout_is_done_once_then_consumes(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("slowrestore", partitions=1)
    changelog = f"{topic}-monitor-state"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(changelog, 1, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    # "A killed instance": a transaction on the changelog that stays open for two minutes.
    zombie = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap,
        transactional_id=f"zombie-{uuid.uuid4().hex[:8]}",
        transaction_timeout_ms=120_000,
    )
    await zombie.start()
    await zombie.begin_transaction()
    await zombie.send_and_wait(changelog, b"never committed", key=b"x", partition=0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for event, _ in Simulator(model="m", seed=3).events(EVENTS):
            await producer.send(topic, orjson.dumps(event), key=b"m", partition=0)
        await producer.flush()
    finally:
        await producer.stop()

    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "group_id": f"g-{uuid.uuid4().hex[:8]}",
            "predictions_topic": topic,
            "labels_topic": None,
            "poll_timeout_ms": 100,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "stall_seconds": 3,
        },
        "http": {"port": 0},
        # The restore waits 1 + 10 + 5 = 16 s for the open transaction: > the 6 s session.
        "state": {"backend": "kafka", "instance_id": "one", "transaction_timeout_seconds": 1},
        "models": [{"name": "m", "reference": {"learn_first": 100}}],
        "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
    }
    service = MonitorService(parse_config(raw))
    await service.start()
    run = asyncio.create_task(service.run())

    def count(name: str, labels: dict[str, str]) -> float:
        return service.registry.get_sample_value(name, labels) or 0.0

    unhealthy: list[dict[str, object]] = []
    restoring_seen = False
    try:
        deadline = time.monotonic() + 40
        while count("monitor_events_processed_total", {"model": "m"}) < EVENTS:
            assert time.monotonic() < deadline, "not consumed within 40 s: " + str(
                count("monitor_rebalances_total", {"kind": "assigned"})
            )
            ok, detail = service.health()
            if not ok:
                unhealthy.append(detail)
            ready, rdetail = service.readiness()
            restoring_seen |= not ready and bool(rdetail.get("restoring"))
            await asyncio.sleep(0.5)
        # An expelled member learns it at its first heartbeat after the listener: look a
        # few heartbeat intervals past the restore.
        await asyncio.sleep(5)
        assigned = service.registry.get_sample_value(
            "monitor_rebalances_total", {"kind": "assigned"}
        )
        assert assigned == 1, "the group rebalanced during the restore"
        assert unhealthy == []
        assert restoring_seen
        assert service.readiness()[0]
    finally:
        service.request_stop()
        await run
        await service.stop(grace_seconds=0)
        await zombie.abort_transaction()
        await zombie.stop()
