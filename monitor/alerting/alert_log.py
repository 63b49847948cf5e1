"""Alerts that survive the loss of a host: the alerts topic and its delivering consumer.

``state.backend: kafka`` only. The alert engine spools its notifications in
memory (:meth:`~monitor.alerting.engine.AlertService.spooled`); the checkpoint
produces them to the alerts topic (``state.alerts_topic``, keyed by model) in the
SAME Kafka transaction as the model states and consumed offsets that produced them
(:class:`~monitor.kafka_store.KafkaStateStore`). A crash before that commit replays
the evaluations from the stored offsets, with the alert state rolled back with the
model state, so the same notifications with the same idempotency keys are produced
again: the topic holds each once per committed checkpoint, never lost.

Delivery: every instance runs an :class:`AlertLogConsumer`, a member of the
consumer group ``<group_id>-alerts`` reading ``read_committed`` (an aborted
checkpoint's alerts are never seen). Each record is handed to the local SQLite
outbox (:meth:`~monitor.alerting.engine.AlertService.hand_off`), which the existing
dispatcher delivers with its receivers, retries and backoff; its unique (receiver,
idempotency key) drops a record handed off twice. The consumer commits a
partition's offset only past records whose deliveries are all finished (delivered
or given up): a host that dies for good, with its outbox, leaves the undelivered
records uncommitted, and the instance the group moves the partition to delivers
them again. At least once: a record delivered but not yet committed when its host
dies is delivered a second time, with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter

from monitor.alerting.config import AlertingConfig
from monitor.alerting.engine import AlertService, SpooledAlert
from monitor.alerting.notification import Notification
from monitor.clock import Clock
from monitor.config import KafkaConfig
from monitor.errors import MonitorError
from monitor.kafka_source import security_kwargs
from monitor.ratelimit import RateLimitedLogger

log = logging.getLogger("monitor.alert_log")

RECORD_VERSION = 1
#: Outcomes of a consumed alerts-topic record (metric label values, bounded).
OUTCOMES = ("handed_off", "duplicate", "unknown_receiver", "invalid")


def encode_record(alert: SpooledAlert) -> tuple[bytes, bytes]:
    """(key, value) of one spooled notification on the alerts topic."""
    model, receiver, notification = alert
    key = json.dumps(model).encode()
    value = json.dumps(
        {
            "version": RECORD_VERSION,
            "receiver": receiver,
            "notification": notification.encode().decode(),
        }
    ).encode()
    return key, value


def decode_record(value: bytes | None) -> tuple[str, Notification]:
    """(receiver, notification) of one record; :class:`MonitorError` naming the problem."""
    try:
        doc = json.loads(value or b"")
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise MonitorError(f"alert record is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION:
        raise MonitorError("alert record of an unknown version")
    receiver, body = doc.get("receiver"), doc.get("notification")
    if not isinstance(receiver, str) or not isinstance(body, str):
        raise MonitorError("alert record without receiver or notification")
    return receiver, Notification.decode(body)


def handover_seconds(alerting: AlertingConfig) -> float:
    """How long handing a partition over waits for its deliveries under way: the longest
    request timeout of a receiver, plus a second. A request in flight then always ends
    (answered or timed out) before its partition is given up, so a rebalance never lets
    two instances send the same notification at once (the group's other members wait
    for this, on the alerts group only)."""
    timeouts = [float(getattr(rc, "timeout_seconds", 10.0)) for rc in alerting.receivers.values()]
    return max(timeouts, default=0.0) + 1.0


class AlertLogMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "monitor_alert_log_records_total",
            "Records consumed from the alerts topic, by outcome.",
            ["outcome"],
            registry=registry,
        )
        for outcome in OUTCOMES:
            self.records.labels(outcome)
        self.withdrawn = Counter(
            "monitor_alert_log_withdrawn_total",
            "Pending deliveries taken back from the local outbox because their alerts-topic "
            "partition left this instance (rebalance, stop): the new owner delivers them.",
            registry=registry,
        )


class _HandOver(ConsumerRebalanceListener):
    """Finishes and commits a partition's deliveries before the group moves it."""

    def __init__(self, owner: AlertLogConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._owner.release(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        return None


class AlertLogConsumer:
    """Consumes the alerts topic into the local outbox; commits past delivered records."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topic: str,
        alerts: AlertService,
        registry: CollectorRegistry,
        *,
        clock: Clock,
        poll_ms: int = 500,
        revoke_grace_seconds: float = 10.0,
        consumer_factory: Callable[..., AIOKafkaConsumer] = AIOKafkaConsumer,
    ) -> None:
        """``revoke_grace_seconds``: how long a rebalance waits for this instance's deliveries
        of a revoked partition to finish (the whole group waits with it).
        ``consumer_factory``: builds the consumer from aiokafka's keyword arguments (a seam
        for tests that play a rebalance at a chosen moment)."""
        self.kafka = kafka
        self.topic = topic
        self.group_id = f"{kafka.group_id}-alerts"
        self._alerts = alerts
        self._metrics = AlertLogMetrics(registry)
        self._poll_ms = poll_ms
        self._consumer_factory = consumer_factory
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        # Per partition, in offset order: (offset, the deliveries that record handed off).
        self._inflight: dict[TopicPartition, deque[tuple[int, set[tuple[str, str]]]]] = {}
        self._log_bad = RateLimitedLogger(log, per_seconds=10.0, clock=clock)
        self._revoke_grace = revoke_grace_seconds
        self._finished = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._committer: asyncio.Task[None] | None = None
        # Per partition: the offset to commit, until a commit of it succeeded.
        self._to_commit: dict[TopicPartition, int] = {}
        # Held while a polled batch is handed off to the outbox, and by a hand-over
        # (revocation, stop): a revocation that ran while the batch's write waited on the
        # database thread saw none of its records, so gave its partitions away without
        # waiting for them, and the batch's records (of a second partition: all of them)
        # were then delivered here as well as by the partitions' new owner.
        self._handing = asyncio.Lock()
        # Revocations so far: a batch polled before one is dropped, not handed off (its
        # records are uncommitted; the next assignment reads them again, here or elsewhere,
        # from the committed offsets).
        self._revocations = 0

    async def start(self) -> None:
        k = self.kafka
        self._consumer = self._consumer_factory(
            bootstrap_servers=k.bootstrap_servers,
            client_id=k.client_id,
            group_id=self.group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            session_timeout_ms=k.session_timeout_ms,
            heartbeat_interval_ms=k.heartbeat_interval_ms,
            metadata_max_age_ms=k.metadata_max_age_ms,
            **security_kwargs(k),
        )
        try:
            await self._consumer.start()
            self._consumer.subscribe([self.topic], listener=_HandOver(self))
        except KafkaError as exc:
            raise MonitorError(f"alerts topic {self.topic}: {type(exc).__name__}: {exc}") from exc
        self._alerts.on_delivery_finished(self._finished.set)
        self._task = asyncio.create_task(self._run(), name="monitor-alert-log")
        self._committer = asyncio.create_task(self._commit_on_finish(), name="monitor-alert-ack")
        log.info("delivering alerts from %s (group %s)", self.topic, self.group_id)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop consuming and hand every partition over clean, as on a revocation: for up
        to ``grace_seconds`` let the outbox deliver what was handed off, committing as
        deliveries finish; what is left is withdrawn from the outbox, uncommitted, for the
        next owner of its partition (aiokafka does not call the rebalance listener on
        ``stop()``, so this is done here). A batch being handed off is handed off whole
        first, so that its records are handed over too (cancelled halfway, its rows stayed in
        the outbox, delivered at the alert service's stop, uncommitted)."""
        async with self._handing:
            for task in (self._task, self._committer):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        if self._consumer is not None:
            with contextlib.suppress(KafkaError, MonitorError):
                await self._hand_over(set(self._inflight), grace_seconds)
            with contextlib.suppress(KafkaError):
                await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=self._poll_ms)
                # aiokafka returns no records while a rebalance is under way: these are of
                # the assignment in force now, unless a revocation comes before the lock.
                revocations = self._revocations
                async with self._handing:
                    if self._revocations == revocations:
                        for tp, records in batches.items():
                            await self._hand_off(tp, records)
                await self._commit_finished()
            except asyncio.CancelledError:
                raise
            except (KafkaError, MonitorError) as exc:
                # Not fatal: the records stay uncommitted and come again (the outbox drops
                # what it already holds).
                log.warning("alerts topic %s: %s", self.topic, exc)
                await asyncio.sleep(1.0)

    async def _commit_on_finish(self) -> None:
        """Commit as soon as a delivery finishes (the kill -9 window is one commit)."""
        while True:
            await self._finished.wait()
            self._finished.clear()
            try:
                await self._commit_finished()
            except (KafkaError, MonitorError) as exc:
                # Not fatal: the next finished delivery or poll commits again.
                log.warning("alerts topic %s: commit failed: %s", self.topic, exc)

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Hand ``revoked`` over to their next owner (the rebalance listener calls this),
        once the batch being handed off, if any, is in the outbox and queued for commit."""
        async with self._handing:
            self._revocations += 1
            try:
                await self._hand_over(revoked, self._revoke_grace)
            except (KafkaError, MonitorError) as exc:
                # The group moves the partitions anyway: what is uncommitted is delivered
                # again by their new owner (same idempotency keys).
                log.warning("alerts topic %s: handing over %s failed: %s", self.topic, revoked, exc)
            for tp in revoked:
                self._inflight.pop(tp, None)
                # An offset whose commit failed during the hand-over is not ours to commit
                # any more: kept, it was committed once the partition came back here, over
                # what its owner in between had committed (records delivered again).
                self._to_commit.pop(tp, None)

    async def _hand_over(self, tps: set[TopicPartition], grace_seconds: float) -> None:
        """Let the deliveries of records of ``tps`` finish (for up to ``grace_seconds``),
        commit past them, and withdraw from the outbox what is still pending, uncommitted:
        whoever owns the partitions next delivers it, and this instance does not."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while True:
            await self._commit_finished()
            keys = self._keys(tps)
            if not keys or loop.time() >= deadline:
                break
            self._finished.clear()  # before the look: a delivery finishing after it sets it
            if not await self._alerts.pending_async(keys):
                # Finished since the commit above (during its round trip): commit them too.
                # Leaving here gave the partitions away with these delivered, uncommitted:
                # their new owner delivered them again.
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), max(0.0, deadline - loop.time()))
        withdrawn = await self._alerts.withdraw_async(self._keys(tps))
        if withdrawn:
            self._metrics.withdrawn.inc(withdrawn)
            log.info(
                "alerts topic %s: %d undelivered alert(s) left to the next owner of %s",
                self.topic,
                withdrawn,
                ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(tps)),
            )

    def _keys(self, tps: set[TopicPartition]) -> set[tuple[str, str]]:
        """The deliveries of the uncommitted records of ``tps`` handed off here."""
        return {k for tp in tps for _, keys in self._inflight.get(tp, ()) for k in keys}

    async def _hand_off(
        self, tp: TopicPartition, records: Iterable[ConsumerRecord[bytes, bytes]]
    ) -> None:
        """Put one poll's records of ``tp`` in the outbox, in one write on the database
        thread (a locked outbox file stalled the event loop here), then queue them for the
        commit. A failed write queues nothing and seeks back to the first record: read
        again, nothing committed past it."""
        queue = self._inflight.setdefault(tp, deque())
        decoded: list[tuple[int, tuple[str, Notification] | MonitorError]] = []
        for r in records:
            if queue and r.offset <= queue[-1][0]:
                continue  # fetched again after a reassignment: already handed off here
            try:
                decoded.append((r.offset, decode_record(r.value)))
            except MonitorError as exc:
                decoded.append((r.offset, exc))
        if not decoded:
            return
        items = [d for _, d in decoded if not isinstance(d, MonitorError)]
        try:
            new = iter(await self._alerts.hand_off_async(items) if items else [])
        except MonitorError:
            assert self._consumer is not None
            self._consumer.seek(tp, decoded[0][0])
            raise
        if self._inflight.get(tp) is not queue:
            # The partition was handed over while the write ran: its next owner delivers
            # these records (uncommitted here); take back what this outbox has not started.
            await self._alerts.withdraw_async({(r, n.idempotency_key) for r, n in items})
            return
        for offset, d in decoded:
            if isinstance(d, MonitorError):
                self._metrics.records.labels("invalid").inc()
                self._log_bad.warning(
                    "skipping alert record %s/%d@%d: %s", tp.topic, tp.partition, offset, d
                )
                queue.append((offset, set()))
                continue
            receiver, notification = d
            inserted = next(new)
            if receiver not in self._alerts.receivers:
                outcome = "unknown_receiver"
            else:
                outcome = "handed_off" if inserted else "duplicate"
            self._metrics.records.labels(outcome).inc()
            known = outcome != "unknown_receiver"
            queue.append((offset, {(receiver, notification.idempotency_key)} if known else set()))

    async def _commit_finished(self) -> None:
        """Commit, per assigned partition, past the records whose deliveries are finished."""
        assert self._consumer is not None
        async with self._commit_lock:  # commits in order: an older one never lands last
            assigned = self._consumer.assignment()
            for tp in [tp for tp in self._inflight if tp not in assigned]:
                del self._inflight[tp]  # given away: its new owner delivers from the commit
            for tp in [tp for tp in self._to_commit if tp not in assigned]:
                del self._to_commit[tp]
            # Looked up on the database thread (on the loop, a read waited behind a write
            # held up by another process's lock on the outbox file); the queues only grow
            # at their end meanwhile, so the entries looked at stay at their head.
            queues = dict(self._inflight)
            finished = await self._alerts.finished_heads_async(
                {tp: [keys for _, keys in queue] for tp, queue in queues.items() if queue}
            )
            for tp, n in finished.items():
                queue = queues[tp]
                if n == 0 or self._inflight.get(tp) is not queue:
                    continue  # handed over meanwhile: not ours to commit
                for _ in range(n - 1):
                    queue.popleft()
                self._to_commit[tp] = queue.popleft()[0] + 1
            if self._to_commit:
                commit = dict(self._to_commit)
                await self._consumer.commit(commit)
                for tp, offset in commit.items():
                    if self._to_commit.get(tp) == offset:
                        del self._to_commit[tp]
