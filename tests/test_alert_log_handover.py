"""A revocation or a stop of the alerts-topic consumer in the middle of a hand-off.

``test_kafka_scale.py`` once saw one alert key delivered by two instances around a
rebalance of the alerts group. The window: a polled batch is written to the outbox on
the database thread, one partition after another. A revocation that ran while such a
write waited (the listener runs in aiokafka's coordinator task, beside the poll loop)
found none of the batch's records queued, committed nothing for them and gave the
partitions away; the records of the batch's next partition were then handed off
anyway, to a queue made afresh, and delivered here while the partition's new owner
delivered them too from the committed offset. ``stop()`` cancelled the poll loop in
the same place: the rows written but never queued were not handed over, and the alert
service's stop delivered them, uncommitted.

Now a batch is handed off whole before a hand-over starts, and a batch polled before a
revocation is dropped (read again from the committed offsets). The tests play the
interleaving with a stand-in consumer (the ``consumer_factory`` seam) and an alert
service whose hand-off waits for the test: no broker, no sleeps to order events; a real
local HTTP receiver and a real SQLite outbox. The invariant checked: no row this
instance has delivered or will deliver belongs to a record left uncommitted when its
partition went away (its new owner would deliver it again).
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError
from alert_receivers import Hold, RecordingReceiver
from prometheus_client import CollectorRegistry

from monitor.alerting.alert_log import AlertLogConsumer, encode_record
from monitor.alerting.config import AlertingConfig
from monitor.alerting.engine import AlertService
from monitor.alerting.notification import Notification
from monitor.clock import SystemClock
from monitor.config import parse_config
from tests.test_outbox import note

TOPIC = "alerts"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def _record(tp: TopicPartition, offset: int, key: str) -> ConsumerRecord[bytes, bytes]:
    value = encode_record(("churn", "hook", note(key, fp=f"fp-{key}")))[1]
    return ConsumerRecord(TOPIC, tp.partition, offset, 0, 0, None, value, None, 0, len(value), ())


class FakeConsumer:
    """Stands in for ``AIOKafkaConsumer``: one polled batch, then empty polls; records the
    commits; its assignment is what the test says (aiokafka keeps the revoked partitions
    assigned while the listener runs)."""

    def __init__(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.batches = deque([batch])
        self.assigned = set(batch)
        self.committed: dict[TopicPartition, int] = {}
        self.listener: ConsumerRebalanceListener | None = None
        self.polled = asyncio.Event()  # an empty poll: the loop finished its previous turn
        self.hold_commit: asyncio.Event | None = None  # the next commit waits for it
        self.committing = asyncio.Event()  # a held commit is under way

    async def start(self) -> None:
        return None

    def subscribe(self, topics: Sequence[str], listener: ConsumerRebalanceListener) -> None:
        self.listener = listener

    async def getmany(self, timeout_ms: int = 0) -> dict[TopicPartition, Any]:
        if self.batches:
            return self.batches.popleft()
        self.polled.set()
        await asyncio.sleep(timeout_ms / 1000)  # the poll's own wait, as aiokafka's
        return {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        hold, self.hold_commit = self.hold_commit, None
        if hold is not None:  # the round trip to the group coordinator, as long as the test says
            self.committing.set()
            await hold.wait()
        self.committed.update(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        return None

    async def stop(self) -> None:
        return None


class HeldHandOff(AlertService):
    """An alert service whose first hand-off waits for ``go`` (as behind another process's
    lock on the outbox file), before or after its write (``written_first``)."""

    def __init__(self, *args: Any, written_first: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written_first = written_first
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()
        self._held = False

    async def hand_off_async(self, items: Sequence[tuple[str, Notification]]) -> list[bool]:
        if self._held:
            return await super().hand_off_async(items)
        self._held = True
        if self.written_first:
            inserted = await super().hand_off_async(items)
        self.waiting.set()
        await self.go.wait()
        if not self.written_first:
            inserted = await super().hand_off_async(items)
        return inserted


def _spooling_alerts(url: str, tmp_path: Path, registry: CollectorRegistry) -> AlertService:
    """An alert service that delivers the alerts topic's records to one webhook at ``url``."""
    config = AlertingConfig.model_validate({"receivers": {"hook": {"type": "webhook", "url": url}}})
    return AlertService(
        config,
        registry=registry,
        clock=SystemClock(),
        outbox_path=str(tmp_path / "outbox.sqlite"),
        rng=random.Random(1),
        poll_interval_seconds=0.05,
        spool=True,
        persist_state=False,
    )


async def _yield_until(task: asyncio.Task[None], turns: int = 20) -> None:
    """Let the loop run ``task`` as far as it goes without waiting on anything outside."""
    for _ in range(turns):
        if task.done():
            return
        await asyncio.sleep(0)


def _delivered_twice(
    alerts: AlertService, consumer: FakeConsumer, offsets: dict[str, tuple[TopicPartition, int]]
) -> list[str]:
    """Keys this outbox delivered or still holds for delivery whose record was not
    committed past: the partition's next owner delivers those again."""
    out = []
    for row in alerts.outbox.rows():
        tp, offset = offsets[str(row["idempotency_key"])]
        if offset >= consumer.committed.get(tp, 0):
            out.append(f"{row['idempotency_key']} ({row['state']})")
    return out


async def _run(tmp_path: Path, *, written_first: bool, stop: bool) -> None:
    batch = {TP0: [_record(TP0, 0, "k-a")], TP1: [_record(TP1, 0, "k-b")]}
    offsets = {"k-a": (TP0, 0), "k-b": (TP1, 0)}
    fake = FakeConsumer(batch)
    registry = CollectorRegistry()
    async with RecordingReceiver() as rx:
        config = AlertingConfig.model_validate(
            {"receivers": {"hook": {"type": "webhook", "url": rx.url}}}
        )
        alerts = HeldHandOff(
            config,
            registry=registry,
            clock=SystemClock(),
            outbox_path=str(tmp_path / "outbox.sqlite"),
            rng=random.Random(1),
            poll_interval_seconds=0.05,
            spool=True,
            persist_state=False,
            written_first=written_first,
        )
        await alerts.start()
        kafka = parse_config({"kafka": {"bootstrap_servers": "127.0.0.1:9", "group_id": "g"}}).kafka
        consumer = AlertLogConsumer(
            kafka,
            TOPIC,
            alerts,
            registry,
            clock=SystemClock(),
            poll_ms=10,
            revoke_grace_seconds=10,
            consumer_factory=lambda **_: fake,
        )
        try:
            await consumer.start()
            await asyncio.wait_for(alerts.waiting.wait(), 10)  # the batch's hand-off is held
            if stop:
                handing_over = asyncio.create_task(consumer.stop(grace_seconds=10))
            else:
                assert fake.listener is not None
                handing_over = asyncio.create_task(
                    fake.listener.on_partitions_revoked({TP0, TP1})  # type: ignore[arg-type]
                )
            await _yield_until(handing_over)
            alerts.go.set()
            await asyncio.wait_for(handing_over, 30)
            fake.assigned = set()  # the partitions now belong to another member
            if not stop:
                fake.polled.clear()
                await asyncio.wait_for(fake.polled.wait(), 10)  # the batch is dealt with
            twice = _delivered_twice(alerts, fake, offsets)
            assert not twice, f"left to the next owner but delivered here too: {twice}"
            # Nothing lost: what was delivered here is committed, the rest left uncommitted.
            delivered = {r.headers["webhook-id"] for r in rx.requests}
            committed = {k for k, (tp, o) in offsets.items() if o < fake.committed.get(tp, 0)}
            assert delivered == committed, (delivered, fake.committed)
        finally:
            await consumer.stop(grace_seconds=0)
            await alerts.stop(grace_seconds=0)


async def test_a_revocation_while_a_batch_is_written_hands_the_whole_batch_over(
    tmp_path: Path,
) -> None:
    await _run(tmp_path, written_first=False, stop=False)


async def test_a_stop_while_a_batch_is_written_hands_the_whole_batch_over(
    tmp_path: Path,
) -> None:
    await _run(tmp_path, written_first=True, stop=True)


async def test_a_delivery_finishing_while_the_hand_over_commits_is_committed_too(
    tmp_path: Path,
) -> None:
    """The hand-over committed what had finished, then looked whether anything was still
    pending, and left if not. A delivery that finished during the commit's round trip was
    neither: delivered, never committed, so the partition's next owner delivered it again
    (``test_kafka_scale.py``: three pages released together at a rebalance). Played at a
    stop, where the hand-over is the only committer left; a revocation runs the same
    hand-over."""
    batch = {TP0: [_record(TP0, 0, "k-a")], TP1: [_record(TP1, 0, "k-b")]}
    offsets = {"k-a": (TP0, 0), "k-b": (TP1, 0)}
    fake = FakeConsumer(batch)
    go = asyncio.Event()
    fake.hold_commit = go
    registry = CollectorRegistry()
    first, second = asyncio.Event(), asyncio.Event()
    async with RecordingReceiver() as rx:
        rx.script(Hold(first), Hold(second))
        alerts = _spooling_alerts(rx.url, tmp_path, registry)
        await alerts.start()
        loop = asyncio.get_running_loop()
        both_finished, finished = asyncio.Event(), [0]

        def on_finished() -> None:
            finished[0] += 1
            if finished[0] == 2:
                both_finished.set()

        alerts.on_delivery_finished(on_finished)
        # The hand-over's look at the whole partition set (the commit looks one record at a
        # time): seen "still pending", the hand-over waits for a delivery to finish.
        outbox = alerts.outbox
        pending = outbox.pending
        looked = asyncio.Event()

        def watched(keys: Any) -> set[tuple[str, str]]:
            keys = set(keys)
            out = pending(keys)
            if len(keys) > 1 and out:
                loop.call_soon_threadsafe(looked.set)
            return out

        outbox.pending = watched  # type: ignore[method-assign]
        kafka = parse_config({"kafka": {"bootstrap_servers": "127.0.0.1:9", "group_id": "g"}}).kafka
        consumer = AlertLogConsumer(
            kafka, TOPIC, alerts, registry, clock=SystemClock(), poll_ms=10,
            consumer_factory=lambda **_: fake,
        )  # fmt: skip
        try:
            await consumer.start()
            await rx.wait_for_requests(2)  # both deliveries in flight
            stopping = asyncio.create_task(consumer.stop(grace_seconds=10))
            await asyncio.wait_for(looked.wait(), 10)  # the hand-over waits for deliveries
            first.set()  # one finishes: the hand-over commits it...
            await asyncio.wait_for(fake.committing.wait(), 10)
            second.set()  # ...and the other finishes during that commit's round trip
            await asyncio.wait_for(both_finished.wait(), 10)
            go.set()
            await asyncio.wait_for(stopping, 30)
            fake.assigned = set()
            twice = _delivered_twice(alerts, fake, offsets)
            assert not twice, f"left to the next owner but delivered here too: {twice}"
            assert fake.committed == {TP0: 1, TP1: 1}
        finally:
            first.set()
            second.set()
            go.set()
            await consumer.stop(grace_seconds=0)
            await alerts.stop(grace_seconds=0)


class FailingCommits(FakeConsumer):
    """A stand-in consumer whose commits fail while ``failing`` is set (the group is
    rebalancing: aiokafka raises ``CommitFailedError``)."""

    def __init__(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        super().__init__(batch)
        self.failing = False
        self.failed = asyncio.Event()
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.failing:
            self.failed.set()
            raise CommitFailedError("rebalance in progress")
        self.commits.append(dict(offsets))
        await super().commit(offsets)


async def test_an_offset_whose_commit_failed_is_not_committed_after_the_partition_moved(
    tmp_path: Path,
) -> None:
    """A delivery finished, its commit failed (the group was rebalancing), and the
    partition was revoked with the offset still queued for commit. The partition's next
    owner delivered further and committed past it; when the partition came back, this
    instance committed the queued offset: the group's offset went back, and the records
    in between were delivered a second time by whoever read them next. A revocation now
    forgets the offsets of the partitions it gives away."""
    fake = FailingCommits({TP0: [_record(TP0, 0, "k-a")]})
    go = asyncio.Event()
    registry = CollectorRegistry()
    async with RecordingReceiver() as rx:
        rx.script(Hold(go))
        alerts = _spooling_alerts(rx.url, tmp_path, registry)
        await alerts.start()
        kafka = parse_config({"kafka": {"bootstrap_servers": "127.0.0.1:9", "group_id": "g"}}).kafka
        # A poll waits 5 s for records: after the batch, the poll loop commits nothing
        # more during the test; the commits are those of finished deliveries and hand-overs.
        consumer = AlertLogConsumer(
            kafka, TOPIC, alerts, registry, clock=SystemClock(), poll_ms=5000,
            consumer_factory=lambda **_: fake,
        )  # fmt: skip
        try:
            await consumer.start()
            await rx.wait_for_requests(1)  # handed off, being delivered
            fake.failing = True
            go.set()  # delivered: its commit fails
            await asyncio.wait_for(fake.failed.wait(), 10)
            assert fake.listener is not None
            await asyncio.wait_for(
                fake.listener.on_partitions_revoked({TP0}),  # type: ignore[arg-type]
                10,
            )
            # The next owner delivered records 1..4 and committed 5; the partition is back.
            fake.failing = False
            fake.committed[TP0] = 5
            await asyncio.wait_for(consumer.stop(grace_seconds=1), 10)
            assert fake.committed[TP0] == 5, f"committed back to {fake.commits}"
        finally:
            go.set()
            await consumer.stop(grace_seconds=0)
            await alerts.stop(grace_seconds=0)
