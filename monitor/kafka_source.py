"""The Kafka edge: an aiokafka consumer in a group, and the dead-letter producer.

Semantics (see aiokafka's docs on manual commit and rebalance listeners):

* offsets are committed only after the batch that contains them was applied
  (at-least-once), by the service at most every ``commit_interval_seconds``;
  auto-commit is off;
* on revocation, the service checkpoints and commits what it processed of the
  revoked partitions *before* the group moves them (the listener awaits it);
* aiokafka does not call the listener on ``stop()``: the service commits itself
  during its ordered shutdown;
* a broker outage may never raise from ``getmany()``: :meth:`KafkaSource.probe`
  is a cheap metadata request the service's watchdog calls with a timeout.

aiokafka's exceptions are translated to :class:`~monitor.errors.SourceError`
(:class:`~monitor.errors.UndecodableBatchError` for a batch compressed with a codec
whose library is missing). Dead-lettering never raises: every producer error is
translated per record into a bounded reason
(``monitor.service_metrics.DEAD_LETTER_FAILURE_REASONS``) and a fallback (see
:class:`DeadLetterPublisher`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter, truediv
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    InconsistentGroupProtocolError,
    InvalidGroupIdError,
    InvalidSessionTimeoutError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedCodecError,
)

from monitor.config import KafkaConfig
from monitor.errors import (
    GroupRefusedError,
    ServiceStateError,
    SourceError,
    UndecodableBatchError,
)
from monitor.events import MessageBatch, Rejected
from monitor.tls import client_ssl_context

log = logging.getLogger("monitor.kafka")

TP = tuple[str, int]

#: Turns of the event loop given to aiokafka's fetcher after each poll (see :meth:`poll`).
FETCH_YIELDS = 3

#: Errors of a poll that retrying cannot cure (aiokafka marks them not retriable, and the
#: group coordinator stops trying to join after them): the consumer would sit without
#: partitions for ever, healthy to every probe.
_REFUSALS = (
    InvalidSessionTimeoutError,
    InvalidGroupIdError,
    InconsistentGroupProtocolError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)
# Fields of aiokafka's ConsumerRecord (its public API).
_VALUE = attrgetter("value")
_TIMESTAMP = attrgetter("timestamp")
_OFFSET = attrgetter("offset")
_KEY = attrgetter("key")
PartitionCallback = Callable[[set[TP]], Awaitable[None]]


def security_kwargs(config: KafkaConfig) -> dict[str, Any]:
    """aiokafka keyword arguments for SASL/SSL, from config (secrets never logged)."""
    kw: dict[str, Any] = {"security_protocol": config.security_protocol}
    if config.security_protocol in ("SSL", "SASL_SSL"):
        kw["ssl_context"] = client_ssl_context(config)
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


async def connection_error(config: KafkaConfig, exc: KafkaError) -> SourceError:
    """The one error for "the cluster cannot be reached", whichever client met it first.

    The consumer and the dead-letter producer both connect at start; the operator
    should read the same sentence naming Kafka and the address either way.
    """
    why = await diagnose_connection(config)
    return SourceError(f"cannot connect to Kafka at {config.bootstrap_servers}: {exc} ({why})")


# aiokafka's UnsupportedCodecError says "Libraries for snappy compression codec not found".
_CODEC_NAME = re.compile(r"\b(gzip|snappy|lz4|zstd)\b")


def undecodable_batch_error(exc: UnsupportedCodecError) -> UndecodableBatchError:
    """Name the codec and the fix, so the operator is not left with aiokafka's riddle."""
    m = _CODEC_NAME.search(str(exc))
    codec = m.group(1) if m else "unknown"
    fix = (
        "install the codec libraries: pip install 'aiokafka[snappy,lz4,zstd]' "
        "(kafka-model-monitor depends on them; the install is incomplete)"
        if m
        else "the producer used a compression codec this client does not know"
    )
    return UndecodableBatchError(
        codec,
        f"cannot decode a record batch compressed with {codec}: {exc}; {fix}. "
        "The partitions holding such batches do not advance until this is fixed.",
    )


class _LoggersFilter(logging.Filter):
    """A filter installed on the aiokafka loggers named in ``LOGGERS``, and removed again."""

    LOGGERS: tuple[str, ...] = ()

    def install(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)

    def remove(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


class StartupNoiseFilter(_LoggersFilter):
    """Turns aiokafka's ERROR lines about a normal start into one INFO line of ours.

    On a fresh broker or for a new group, aiokafka logs "Group Coordinator Request
    failed: GroupCoordinatorNotAvailableError" at ERROR until the coordinator is
    elected, and "Topic X not found in cluster metadata" at ERROR until the topic is
    created. Neither is an error for the operator. The record goes to DEBUG (it is
    still there when debugging aiokafka); what is going on is said once, at INFO.
    Installed by :class:`KafkaSource` on aiokafka's loggers, removed at ``stop()``.
    """

    LOGGERS = ("aiokafka.consumer.group_coordinator", "aiokafka.cluster")

    def __init__(self, group_id: str | None) -> None:
        super().__init__()
        self._group_id = group_id
        self._said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.args:
            return True
        arg = record.args[0] if isinstance(record.args, tuple) else None
        if record.msg == "Group Coordinator Request failed: %s":
            if not (isinstance(arg, KafkaError) and arg.retriable):
                return True
            said = f"waiting for the group coordinator of group {self._group_id}"
            why = "(normal right after the broker started or for a new group)"
        elif record.msg == "Topic %s not found in cluster metadata":
            said = f"waiting for topic {arg} to be created"
            why = "(by its first producer when the broker auto-creates topics)"
        else:
            return True
        origin = logging.getLogger(record.name)
        if origin.isEnabledFor(logging.DEBUG):
            origin.debug(record.msg, *record.args)  # below WARNING: passes this filter
        if said not in self._said:
            self._said.add(said)
            log.info("%s %s", said, why)
        return False


class RepeatedLogThrottle(_LoggersFilter):
    """Lets each of aiokafka's WARNING/ERROR lines through once a minute, not every time.

    While the broker is down, aiokafka logs "Unable connect to node", "Unable to update
    metadata", "Failed fetch messages" at ERROR on every retry of every client: a
    40-second outage wrote 7,000 lines (an hour would write more than half a million),
    burying the monitor's own lines and filling the log volume. Lines are told apart by
    logger and message template (a code constant, so the table stays small); the first
    passes, repeats within ``per_seconds`` are counted, and the next one after passes
    with how many were left out. Below WARNING nothing is touched. The monitor says the
    outage in its own words once (``MonitorService._watchdog``).
    """

    LOGGERS = (
        "aiokafka",
        "aiokafka.admin.client",
        "aiokafka.cluster",
        "aiokafka.conn",
        "aiokafka.consumer.consumer",
        "aiokafka.consumer.fetcher",
        "aiokafka.consumer.group_coordinator",
        "aiokafka.producer.producer",
        "aiokafka.producer.sender",
    )
    #: Templates remembered at most (then the oldest window is forgotten): bounded memory.
    MAX_TEMPLATES = 256

    def __init__(self, per_seconds: float = 60.0, monotonic: Callable[[], float] | None = None):
        super().__init__()
        self._per = per_seconds
        self._monotonic = monotonic or time.monotonic
        # (logger, template) -> (when the last line passed, lines left out since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()  # the Kafka state store logs from its own thread

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = self._monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self._per:
                self._seen[key] = (seen[0], seen[1] + 1)
                return False
            if len(self._seen) >= self.MAX_TEMPLATES and key not in self._seen:
                self._seen.pop(next(iter(self._seen)))
            self._seen[key] = (now, 0)
        if seen is not None and seen[1]:
            record.msg = f"{record.msg} (and {seen[1]} more like it in {now - seen[0]:.0f} s)"
        return True


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
        self._noise = StartupNoiseFilter(config.group_id)
        self._throttle = RepeatedLogThrottle()

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
        self._noise.install()
        self._throttle.install()  # after the noise filter, which reads the template as logged
        try:
            await consumer.start()
            consumer.subscribe(self.topics, listener=self._listener)
        except KafkaError as exc:
            await consumer.stop()
            self._noise.remove()
            self._throttle.remove()
            raise await connection_error(c, exc) from exc
        self._consumer = consumer

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise ServiceStateError("KafkaSource is not started")
        return self._consumer

    def _refusal(self, exc: KafkaError) -> str:
        """What a refusal that retrying cannot cure means here, and what to change."""
        c = self.config
        name = type(exc).__name__
        if isinstance(exc, InvalidSessionTimeoutError):
            why = (
                f"kafka.session_timeout_ms ({c.session_timeout_ms}) is outside the broker's "
                "group.min.session.timeout.ms .. group.max.session.timeout.ms (6000 .. "
                "1800000 by default)"
            )
        elif isinstance(exc, InconsistentGroupProtocolError):
            why = (
                f"another member of group {c.group_id!r} uses another partition assignment "
                "protocol: give this service a group_id of its own"
            )
        elif isinstance(exc, InvalidGroupIdError):
            why = f"the broker refuses the group id {c.group_id!r}"
        else:  # an authorization failure
            why = (
                f"this principal may not read group {c.group_id!r} or its topics: grant "
                "READ on the group and the topics (Kafka ACLs)"
            )
        return f"the broker refused this instance in consumer group {c.group_id!r} ({name}): {why}"

    async def poll(self) -> MessageBatch:
        """One ``getmany()``: the records of every partition, each partition in order.

        Taken column by column (C-level ``map`` over each partition's records), not as one
        object per record: that cost about 1 µs per event (issue 19).
        """
        try:
            batches = await self.consumer.getmany(
                timeout_ms=self.config.poll_timeout_ms, max_records=self.config.max_batch_records
            )
            # The fetcher sends its next request only when the loop runs it: let it, before
            # the batch is processed (CPU-bound, no await), so that the next records travel
            # meanwhile instead of after (BENCHMARKS.md, 2026-12-02 13:40).
            for _ in range(FETCH_YIELDS):
                await asyncio.sleep(0)
        except UnsupportedCodecError as exc:
            raise undecodable_batch_error(exc) from exc
        except _REFUSALS as exc:
            raise GroupRefusedError(self._refusal(exc)) from exc
        except KafkaError as exc:
            raise SourceError(f"poll failed: {exc}") from exc
        out = MessageBatch()
        for tp, records in batches.items():
            out.add_run(
                tp.topic,
                tp.partition,
                map(_VALUE, records),
                map(truediv, map(_TIMESTAMP, records), repeat(1000.0)),  # ms -> epoch seconds
                map(_OFFSET, records),
                map(_KEY, records),
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

    def pause(self, tps: set[TP]) -> None:
        """Fetch nothing from ``tps`` (and return nothing of them) until :meth:`resume`."""
        self.consumer.pause(*(TopicPartition(*tp) for tp in tps))

    def resume(self, tps: set[TP]) -> None:
        """Undo :meth:`pause` for those of ``tps`` still assigned (a rebalance may intervene)."""
        assigned = self.assignment()
        self.consumer.resume(*(TopicPartition(*tp) for tp in tps if tp in assigned))

    async def offset_bounds(self, tps: set[TP]) -> dict[TP, tuple[int, int]]:
        """(log start, log end) per partition, from the broker (ListOffsets).

        Called at assignment to check stored offsets against what the broker
        still holds. Raises :class:`SourceError` when the broker cannot answer.
        """
        if not tps:
            return {}
        parts = [TopicPartition(*tp) for tp in tps]
        try:
            starts = await self.consumer.beginning_offsets(parts)
            ends = await self.consumer.end_offsets(parts)
        except KafkaError as exc:
            raise SourceError(f"cannot read the offset range of {sorted(tps)}: {exc}") from exc
        return {(tp.topic, tp.partition): (starts[tp], ends[tp]) for tp in parts}

    async def probe(self, timeout_seconds: float) -> bool:
        """A metadata round trip to the cluster; False if it fails or times out."""
        if self._consumer is None:
            return False
        try:
            await asyncio.wait_for(self._consumer.topics(), timeout_seconds)
        except (TimeoutError, KafkaError, OSError):
            return False
        return True

    async def stop(self) -> None:
        """Leave the group and close; idempotent. Commit before calling this."""
        self._stopped = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()
        self._noise.remove()
        self._throttle.remove()


# Bounds on the free-form header values, so a marker copy stays far below any broker limit.
_HEADER_ERROR_CHARS = 500
_MARKER_ERROR_CHARS = 200
_HEADER_FIELD_CHARS = 200


@dataclass
class DeadLetterFailure:
    """One rejected message whose full copy was not written, and what happened instead."""

    rejected: Rejected
    reason: str  # too_large, unavailable, refused or invalid
    fallback: str  # marker or dropped
    error: str  # the producer's error, for the log


@dataclass
class DeadLetterResult:
    """What one :meth:`DeadLetterPublisher.publish` did with each message given.

    ``retry`` holds messages that failed with a retriable error (the broker is
    briefly unavailable): the caller decides whether to try again.
    """

    written: list[Rejected] = field(default_factory=list)
    failed: list[DeadLetterFailure] = field(default_factory=list)
    retry: list[tuple[Rejected, str]] = field(default_factory=list)


def dead_letter_reason(exc: BaseException) -> str:
    """A producer error as a bounded reason; ``unavailable`` is the only retriable one."""
    if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError | RecordTooLargeError):
        return "too_large"
    if isinstance(exc, KafkaTimeoutError):
        return "unavailable"  # what an unreachable broker gives (aiokafka: not "retriable")
    if isinstance(exc, KafkaError):
        return "unavailable" if exc.retriable else "refused"
    return "invalid"  # the client refused the record itself (e.g. no key and no value)


class DeadLetterPublisher:
    """Copies rejected messages, untouched, to the dead-letter topic with the reason in headers.

    The service awaits :meth:`publish` before committing the batch's offsets, so
    a rejected message is never lost between the source and the dead-letter topic
    *as long as the topic accepts it*. When it does not, consumption must not stop
    (a message that fits the source topic may not fit the dead-letter topic, and a
    restart would not change that), so :meth:`publish` never raises:

    * a record with neither key nor value (a keyless tombstone) is written with an
      empty value and the header ``monitor.value_null: 1`` (Kafka clients refuse to
      send a record with neither);
    * a record that fails alone with a non-retriable error (``MessageSizeTooLarge``,
      authorization, ...) is replaced by a *marker copy*: no key, empty value, the
      usual headers plus ``monitor.fallback`` (the reason) and
      ``monitor.original_bytes``; if even that fails, nothing is written;
    * a retriable error (broker briefly unavailable) is handed back in
      :attr:`DeadLetterResult.retry`; with ``final=True`` it is given up instead.

    Every record that was not written in full is reported with a reason from
    :data:`monitor.service_metrics.DEAD_LETTER_FAILURE_REASONS` and a fallback from
    :data:`monitor.service_metrics.DEAD_LETTER_FALLBACKS`.
    """

    def __init__(self, config: KafkaConfig, *, request_timeout_ms: int = 10_000) -> None:
        self.config = config
        self.topic = config.dead_letter_topic
        # Bounds one attempt: a write the broker has not acknowledged by then fails with
        # KafkaTimeoutError (reason "unavailable"), and the caller decides about retrying.
        self.request_timeout_ms = request_timeout_ms
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if not self.topic:
            return
        c = self.config
        producer = AIOKafkaProducer(
            bootstrap_servers=c.bootstrap_servers,
            client_id=f"{c.client_id}-dlq",
            acks="all",
            # Not idempotent: after the broker refuses one batch (MessageSizeTooLarge), an
            # idempotent producer's sequence numbers no longer line up and every later write
            # fails with OutOfOrderSequenceNumber. The dead-letter topic is at-least-once.
            enable_idempotence=False,
            max_request_size=max(1_048_576, c.max_message_bytes + 4096),
            request_timeout_ms=self.request_timeout_ms,
            **security_kwargs(c),
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise await connection_error(c, exc) from exc
        self._producer = producer

    def _headers(self, r: Rejected, error_chars: int) -> list[tuple[str, bytes]]:
        m = r.message
        return [
            ("monitor.reason", r.reason.encode()),
            ("monitor.field", (r.field or "")[:_HEADER_FIELD_CHARS].encode("utf-8", "replace")),
            ("monitor.error", r.error[:error_chars].encode("utf-8", "replace")),
            ("monitor.source", f"{m.topic}/{m.partition}/{m.offset}".encode("utf-8", "replace")),
        ]

    async def _send_full(self, r: Rejected) -> asyncio.Future[Any]:
        assert self._producer is not None
        m = r.message
        headers = self._headers(r, _HEADER_ERROR_CHARS)
        value = m.value
        if value is not None and len(value) > self.config.max_message_bytes:
            value = value[: self.config.max_message_bytes]
        if value is None and m.key is None:
            value = b""
            headers.append(("monitor.value_null", b"1"))
        return await self._producer.send(self.topic, value=value, key=m.key, headers=headers)

    async def _send_marker(self, r: Rejected, reason: str) -> None:
        assert self._producer is not None
        m = r.message
        headers = [
            *self._headers(r, _MARKER_ERROR_CHARS),
            ("monitor.fallback", reason.encode()),
            ("monitor.original_bytes", str(len(m.value or b"")).encode()),
        ]
        await (await self._producer.send(self.topic, value=b"", key=None, headers=headers))

    async def _send_alone(self, r: Rejected) -> BaseException | None:
        """Send one record and wait for it, so that it travels in a batch of its own."""
        try:
            await (await self._send_full(r))
        except Exception as exc:
            return exc
        return None

    async def publish(self, rejected: list[Rejected], *, final: bool = False) -> DeadLetterResult:
        """Write each message (see the class docstring); never raises."""
        result = DeadLetterResult()
        if self._producer is None or not rejected:
            return result
        # All at once first (one round trip); the broker rejects a produce batch whole, so
        # whatever failed in company is tried again alone before it is judged.
        outcomes: list[BaseException | None] = []
        futures: list[asyncio.Future[Any] | None] = []
        unreachable: BaseException | None = None
        for r in rejected:
            if unreachable is not None:  # each send would wait for metadata until it times out
                futures.append(None)
                outcomes.append(unreachable)
                continue
            try:
                futures.append(await self._send_full(r))
            except Exception as exc:
                futures.append(None)
                outcomes.append(exc)
                if dead_letter_reason(exc) == "unavailable":
                    unreachable = exc
            else:
                outcomes.append(None)
        done = await asyncio.gather(*(f for f in futures if f is not None), return_exceptions=True)
        it = iter(done)
        for i, f in enumerate(futures):
            if f is not None:
                got = next(it)
                outcomes[i] = got if isinstance(got, BaseException) else None
        for r, exc in zip(rejected, outcomes, strict=True):
            # Alone again only if refused: an unreachable broker would cost one timeout each.
            if exc is not None and len(rejected) > 1 and dead_letter_reason(exc) != "unavailable":
                exc = await self._send_alone(r)
            if exc is None:
                result.written.append(r)
                continue
            reason = dead_letter_reason(exc)
            error = f"{type(exc).__name__}: {exc}"
            if reason == "unavailable":
                if not final:
                    result.retry.append((r, error))
                    continue
                fallback = "dropped"  # the broker is still unavailable: a marker would fail too
            else:
                try:
                    await self._send_marker(r, reason)
                    fallback = "marker"
                except Exception as marker_exc:
                    fallback = "dropped"
                    error += f" (marker copy: {type(marker_exc).__name__}: {marker_exc})"
            result.failed.append(DeadLetterFailure(r, reason, fallback, error))
        return result

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
