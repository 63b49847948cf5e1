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
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter

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
    except ValueError as exc:
        raise MonitorError(f"alert record is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION:
        raise MonitorError("alert record of an unknown version")
    receiver, body = doc.get("receiver"), doc.get("notification")
    if not isinstance(receiver, str) or not isinstance(body, str):
        raise MonitorError("alert record without receiver or notification")
    return receiver, Notification.decode(body)


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
    ) -> None:
        self.kafka = kafka
        self.topic = topic
        self.group_id = f"{kafka.group_id}-alerts"
        self._alerts = alerts
        self._metrics = AlertLogMetrics(registry)
        self._poll_ms = poll_ms
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        # Per partition, in offset order: (offset, the deliveries that record handed off).
        self._inflight: dict[TopicPartition, deque[tuple[int, set[tuple[str, str]]]]] = {}
        self._log_bad = RateLimitedLogger(log, per_seconds=10.0, clock=clock)

    async def start(self) -> None:
        k = self.kafka
        self._consumer = AIOKafkaConsumer(
            self.topic,
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
        except KafkaError as exc:
            raise MonitorError(f"alerts topic {self.topic}: {type(exc).__name__}: {exc}") from exc
        self._task = asyncio.create_task(self._run(), name="monitor-alert-log")
        log.info("delivering alerts from %s (group %s)", self.topic, self.group_id)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop consuming; for up to ``grace_seconds`` let the outbox deliver what was handed
        off, committing as deliveries finish (what is left is delivered again by the next
        owner of its partition, or by this outbox after a restart: at least once)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            deadline = asyncio.get_running_loop().time() + grace_seconds
            with contextlib.suppress(KafkaError, MonitorError):
                while True:
                    await self._commit_finished()
                    if not any(self._inflight.values()):
                        break
                    if asyncio.get_running_loop().time() >= deadline:
                        break
                    await asyncio.sleep(0.1)
            with contextlib.suppress(KafkaError):
                await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=self._poll_ms)
                for tp, records in batches.items():
                    self._hand_off(tp, records)
                await self._commit_finished()
            except asyncio.CancelledError:
                raise
            except (KafkaError, MonitorError) as exc:
                # Not fatal: the records stay uncommitted and come again (the outbox drops
                # what it already holds).
                log.warning("alerts topic %s: %s", self.topic, exc)
                await asyncio.sleep(1.0)

    def _hand_off(
        self, tp: TopicPartition, records: Iterable[ConsumerRecord[bytes, bytes]]
    ) -> None:
        queue = self._inflight.setdefault(tp, deque())
        for r in records:
            offset = r.offset
            if queue and offset <= queue[-1][0]:
                continue  # fetched again after a reassignment: already handed off here
            try:
                receiver, notification = decode_record(r.value)
            except MonitorError as exc:
                self._metrics.records.labels("invalid").inc()
                self._log_bad.warning(
                    "skipping alert record %s/%d@%d: %s", tp.topic, tp.partition, offset, exc
                )
                queue.append((offset, set()))
                continue
            try:
                (new,) = self._alerts.hand_off([(receiver, notification)])
            except MonitorError:
                # Not in the outbox: read it again from here (nothing after it is queued, so
                # no commit passes it).
                assert self._consumer is not None
                self._consumer.seek(tp, offset)
                raise
            if receiver not in self._alerts.receivers:
                outcome = "unknown_receiver"
            else:
                outcome = "handed_off" if new else "duplicate"
            self._metrics.records.labels(outcome).inc()
            known = outcome != "unknown_receiver"
            queue.append((offset, {(receiver, notification.idempotency_key)} if known else set()))

    async def _commit_finished(self) -> None:
        """Commit, per assigned partition, past the records whose deliveries are finished."""
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        for tp in [tp for tp in self._inflight if tp not in assigned]:
            del self._inflight[tp]  # given away: its new owner delivers from the commit
        commit: dict[TopicPartition, int] = {}
        outbox = self._alerts.outbox
        for tp, queue in self._inflight.items():
            done = None
            while queue:
                offset, keys = queue[0]
                if keys and outbox.pending(keys):
                    break
                queue.popleft()
                done = offset
            if done is not None:
                commit[tp] = done + 1
        if commit:
            await self._consumer.commit(commit)
