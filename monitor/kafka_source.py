"""The Kafka edge: an aiokafka consumer in a group, and the dead-letter producer.

Semantics (see aiokafka's docs on manual commit and rebalance listeners):

* offsets are committed only after the batch that contains them was applied
  (at-least-once); auto-commit is off;
* on revocation, the service checkpoints and commits what it processed of the
  revoked partitions *before* the group moves them (the listener awaits it);
* aiokafka does not call the listener on ``stop()``: the service commits itself
  during its ordered shutdown;
* a broker outage may never raise from ``getmany()``: :meth:`KafkaSource.probe`
  is a cheap metadata request the service's watchdog calls with a timeout.

aiokafka's exceptions are translated to :class:`~monitor.errors.SourceError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import AuthenticationFailedError, KafkaError, SaslAuthenticationFailed
from aiokafka.helpers import create_ssl_context

from monitor.config import KafkaConfig
from monitor.errors import ServiceStateError, SourceError
from monitor.events import RawMessage, Rejected

TP = tuple[str, int]
PartitionCallback = Callable[[set[TP]], Awaitable[None]]


def security_kwargs(config: KafkaConfig) -> dict[str, Any]:
    """aiokafka keyword arguments for SASL/SSL, from config (secrets never logged)."""
    kw: dict[str, Any] = {"security_protocol": config.security_protocol}
    if config.security_protocol in ("SSL", "SASL_SSL"):
        kw["ssl_context"] = create_ssl_context(
            cafile=config.ssl_cafile, certfile=config.ssl_certfile, keyfile=config.ssl_keyfile
        )
    if config.sasl_mechanism:
        kw["sasl_mechanism"] = config.sasl_mechanism
        kw["sasl_plain_username"] = config.sasl_username
        kw["sasl_plain_password"] = (
            config.sasl_password.get_secret_value() if config.sasl_password else None
        )
    return kw


async def diagnose_connection(config: KafkaConfig, timeout_seconds: float = 10.0) -> str:
    """Why the cluster cannot be reached, as one sentence (never containing a secret).

    aiokafka reports a failed bootstrap only as "Unable to bootstrap"; the real
    reason (above all a refused SASL password) goes to its log. One direct
    connection per bootstrap address, with the same security settings, tells
    them apart so the operator reads "authentication failed", not a riddle.
    """
    reasons: list[str] = []
    for address in config.bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host or "localhost",
                    int(port),
                    client_id=config.client_id,
                    request_timeout_ms=int(timeout_seconds * 1000),
                    **security_kwargs(config),
                ),
                timeout_seconds,
            )
        except (AuthenticationFailedError, SaslAuthenticationFailed):
            return (
                f"authentication failed at {address.strip()} "
                f"({config.sasl_mechanism} as user {config.sasl_username!r}): "
                "check kafka.sasl_username and kafka.sasl_password"
            )
        except (TimeoutError, KafkaError, OSError, ValueError) as exc:
            reasons.append(f"{address.strip()}: {type(exc).__name__}: {exc}")
            continue
        conn.close()
        reasons.append(f"{address.strip()}: reachable")
    return "; ".join(reasons)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, on_revoked: PartitionCallback, on_assigned: PartitionCallback) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._on_revoked({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._on_assigned({(tp.topic, tp.partition) for tp in assigned})


class KafkaSource:
    """Consumes the prediction and label topics in a consumer group."""

    def __init__(
        self,
        config: KafkaConfig,
        *,
        on_revoked: PartitionCallback,
        on_assigned: PartitionCallback,
    ) -> None:
        self.config = config
        self.topics = [t for t in (config.predictions_topic, config.labels_topic) if t]
        self._listener = _Listener(on_revoked, on_assigned)
        self._consumer: AIOKafkaConsumer | None = None
        self._stopped = False

    async def start(self) -> None:
        if self._stopped:
            raise ServiceStateError("KafkaSource cannot be restarted after stop()")
        c = self.config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=c.bootstrap_servers,
            group_id=c.group_id,
            client_id=c.client_id,
            enable_auto_commit=False,
            auto_offset_reset=c.auto_offset_reset,
            session_timeout_ms=c.session_timeout_ms,
            metadata_max_age_ms=c.metadata_max_age_ms,
            heartbeat_interval_ms=c.heartbeat_interval_ms,
            max_poll_interval_ms=c.max_poll_interval_ms,
            fetch_max_bytes=max(52_428_800, c.max_message_bytes * 2),
            max_partition_fetch_bytes=max(1_048_576, c.max_message_bytes + 1024),
            # Range assignment gives partition i of every topic to the same instance, so a
            # model's predictions and labels (same key, same partition count) meet.
            partition_assignment_strategy=(RangePartitionAssignor,),
            **security_kwargs(c),
        )
        try:
            await consumer.start()
            consumer.subscribe(self.topics, listener=self._listener)
        except KafkaError as exc:
            await consumer.stop()
            why = await diagnose_connection(c)
            raise SourceError(
                f"cannot connect to Kafka at {c.bootstrap_servers}: {exc} ({why})"
            ) from exc
        self._consumer = consumer

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise ServiceStateError("KafkaSource is not started")
        return self._consumer

    async def poll(self) -> list[RawMessage]:
        """One ``getmany()``: the records of every partition, each partition in order."""
        try:
            batches = await self.consumer.getmany(
                timeout_ms=self.config.poll_timeout_ms, max_records=self.config.max_batch_records
            )
        except KafkaError as exc:
            raise SourceError(f"poll failed: {exc}") from exc
        out: list[RawMessage] = []
        for tp, records in batches.items():
            topic, partition = tp.topic, tp.partition
            out.extend(
                RawMessage(r.value, r.timestamp / 1000.0, topic, partition, r.offset, r.key)
                for r in records
            )
        return out

    def assignment(self) -> set[TP]:
        if self._consumer is None:
            return set()
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def seek(self, tp: TP, offset: int) -> None:
        self.consumer.seek(TopicPartition(*tp), offset)

    async def commit(self, offsets: dict[TP, int]) -> None:
        if not offsets:
            return
        assigned = self.assignment()
        owned = {TopicPartition(*tp): off for tp, off in offsets.items() if tp in assigned}
        if not owned:
            return
        try:
            await self.consumer.commit(owned)
        except KafkaError as exc:
            raise SourceError(f"offset commit failed: {exc}") from exc

    def lag(self, positions: dict[TP, int]) -> dict[TP, int]:
        """Messages behind the high watermark per assigned partition (from the last fetch)."""
        out: dict[TP, int] = {}
        for tp in self.assignment():
            hw = self.consumer.highwater(TopicPartition(*tp))
            if hw is None:
                continue
            pos = positions.get(tp)
            if pos is None:
                continue
            out[tp] = max(0, hw - pos)
        return out

    async def probe(self, timeout_seconds: float) -> bool:
        """A metadata round trip to the cluster; False if it fails or times out."""
        if self._consumer is None:
            return False
        try:
            await asyncio.wait_for(self._consumer._client.fetch_all_metadata(), timeout_seconds)
        except (TimeoutError, KafkaError, OSError):
            return False
        return True

    async def stop(self) -> None:
        """Leave the group and close; idempotent. Commit before calling this."""
        self._stopped = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


class DeadLetterPublisher:
    """Copies rejected messages, untouched, to the dead-letter topic with the reason in headers.

    The service awaits :meth:`publish` before committing the batch's offsets, so
    a rejected message is never lost between the source and the dead-letter topic.
    """

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self.topic = config.dead_letter_topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if not self.topic:
            return
        c = self.config
        producer = AIOKafkaProducer(
            bootstrap_servers=c.bootstrap_servers,
            client_id=f"{c.client_id}-dlq",
            acks="all",
            enable_idempotence=True,
            max_request_size=max(1_048_576, c.max_message_bytes + 4096),
            **security_kwargs(c),
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            why = await diagnose_connection(c)
            raise SourceError(f"cannot start the dead-letter producer: {exc} ({why})") from exc
        self._producer = producer

    async def publish(self, rejected: list[Rejected]) -> int:
        if self._producer is None or not rejected:
            return 0
        futures = []
        for r in rejected:
            m = r.message
            headers = [
                ("monitor.reason", r.reason.encode()),
                ("monitor.field", (r.field or "").encode()),
                ("monitor.error", r.error[:500].encode("utf-8", "replace")),
                ("monitor.source", f"{m.topic}/{m.partition}/{m.offset}".encode()),
            ]
            value = (
                m.value
                if m.value is None or len(m.value) <= self.config.max_message_bytes
                else m.value[: self.config.max_message_bytes]
            )
            futures.append(
                await self._producer.send(self.topic, value=value, key=m.key, headers=headers)
            )
        try:
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise SourceError(f"dead-letter publish failed: {exc}") from exc
        return len(futures)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
