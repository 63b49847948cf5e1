"""Model state kept in Kafka: a compacted changelog topic, written in transactions.

``state.backend: kafka``. Each checkpoint is one Kafka transaction holding, for every
changed model, its encoded state (:mod:`monitor.state_format`) and, for every
partition, the next offset to consume, committed to the consumer group with
``send_offsets_to_transaction``. The transaction is all or nothing, so a model's
stored state and the group's committed offsets can never disagree, on any machine:
the group's committed offsets *are* the stored offsets.

Layout of the changelog topic (compacted; one partition per partition of the
predictions topic): a model's records go to the partition its events come from,
so an instance reads only its assigned partitions' changelog. Keys are JSON arrays
(unambiguous for any model name):

* ``["part", model, i]`` -> ``PART_MAGIC + generation (16 bytes) + bytes``: the
  ``i``-th piece of the state, at most ``state.max_record_bytes`` long;
* ``["model", model]`` -> a JSON manifest ``{"format", "version", "generation",
  "parts", "bytes", "topic", "partition"}``, written last in the transaction.

A reader takes a state only when its manifest names a known version and every
part ``0..parts-1`` carries the manifest's generation; anything else is refused
with a bounded reason (``unknown_version``, ``corrupt``) and the model starts
fresh (the state is never executed, only decoded). A manifest of a *newer* version
(a rollback) is not damage: ``load_model`` raises
:class:`~monitor.state_format.NewerStateError`, and the service leaves that record
untouched (``state.on_newer_state``). Parts a smaller state no
longer uses are deleted (tombstones) in the same transaction, and a deleted state's parts
with its manifest: every part record the store read live for the model (also those of an
unusable manifest, or beyond its count) or wrote since, so that none is left to be read
at every restore (compaction never removes a live key).

On assignment (:meth:`KafkaStateStore.prepare`) the store reads the assigned
changelog partitions from their start to their end with
``isolation_level=read_committed`` (an aborted or still open transaction is
never seen) and fetches the group's committed offsets: no shared filesystem.

Fencing: the producer's ``transactional_id`` is ``<group_id>-state-<instance_id>``.
Starting it bumps the id's epoch, so an earlier incarnation of the *same* instance
(a restart, a process that hung) is fenced: its open transaction is aborted and
its later writes and offset commits are refused. aiokafka 0.14 sends offsets with
TxnOffsetCommit version 0, which carries no group generation (no KIP-447): a
zombie of *another* instance id, whose partitions the group has given away, is not
fenced by the broker; see docs/GUARANTEES.md for what that means and what bounds it.

The :class:`~monitor.store.StateStore` interface is synchronous (the service calls
``save`` from a worker thread); aiokafka is asynchronous, so the store runs its
clients on an event loop of its own, in one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    InvalidPartitionsError,
    InvalidProducerEpoch,
    InvalidTransactionTimeout,
    KafkaError,
    ProducerFenced,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from prometheus_client import CollectorRegistry, Counter

from monitor.config import KafkaConfig, StateConfig
from monitor.errors import ConfigError, StateError
from monitor.kafka_source import security_kwargs
from monitor.state_format import MAX_RAW_BYTES, NewerStateError, StateFormatError, refuse_newer
from monitor.store import FORMAT, SavedModel

log = logging.getLogger("monitor.kafka_store")

TP = tuple[str, int]
T = TypeVar("T")

MANIFEST_VERSION = 1
PART_MAGIC = b"KMMP"
_GEN_BYTES = 16
# How long one store operation (a restore, a checkpoint transaction) may take.
OPERATION_TIMEOUT_SECONDS = 60.0
RESTORE_ATTEMPTS = 3
SOURCE_TOPIC_WAIT_SECONDS = 120.0
# How often a broker looks for timed-out transactions (its default
# transaction.abort.timed.out.transaction.cleanup.interval.ms): an abandoned transaction is
# aborted within the transaction timeout plus this.
BROKER_ABORT_INTERVAL_SECONDS = 10.0
# What a parked state keeps of its blob: the header refuse_newer reads (magic and version).
_HEAD_BYTES = 10
# An alerts topic keeping records for less than this gets a WARNING (see _check_alerts_topic).
ALERTS_MIN_RETENTION_MS = 86_400_000


def model_key(model: str) -> bytes:
    """The manifest key of ``model`` (JSON: any name, surrogates escaped)."""
    return json.dumps(["model", model]).encode()


def part_key(model: str, i: int) -> bytes:
    return json.dumps(["part", model, i]).encode()


def offsets_key(tp: TP) -> bytes:
    """The key of the stored next offset of source partition ``tp`` (written to the
    changelog partition of the same number, with the states it covers)."""
    return json.dumps(["offsets", tp[0], tp[1]]).encode()


def stored_offsets(records: Mapping[bytes, bytes | None]) -> dict[TP, int]:
    """The offsets records among the latest value per key (others ignored)."""
    out: dict[TP, int] = {}
    for key, value in records.items():
        try:
            k = json.loads(key)
            if (
                isinstance(k, list)
                and len(k) == 3
                and k[0] == "offsets"
                and isinstance(k[1], str)
                and isinstance(k[2], int)
                and value is not None
            ):
                out[(k[1], k[2])] = int(value)
        except (ValueError, RecursionError):  # RecursionError: a key nested too deep
            continue
    return out


class ProducerUnusable(KafkaError):
    """The transactional producer is in a state no transaction can start from."""


async def _begin(producer: AIOKafkaProducer) -> None:
    """``begin_transaction``; aiokafka 0.14's transaction manager *asserts* (AssertionError)
    when its producer is in FATAL_ERROR (after a fenced epoch, e.g. a transaction the
    broker aborted on timeout): translated here, so the store recreates the producer."""
    try:
        await producer.begin_transaction()
    except AssertionError as exc:
        raise ProducerUnusable(f"producer in a fatal state: {exc}") from exc


async def _send(
    producer: AIOKafkaProducer, topic: str, value: bytes | None, **kw: Any
) -> asyncio.Future[Any]:
    """``producer.send`` in a transaction: the commit waits for delivery, so the record's
    own future is not awaited (only read after the commit, for the offset it got). When
    the transaction fails (a fenced producer) every such future holds the error, and asyncio
    would log each one at ERROR with a traceback ("Future exception was never retrieved")
    when collected: the one WARNING of :meth:`KafkaStateStore._recreate_producer` says it
    instead."""
    fut = await producer.send(topic, value, **kw)
    fut.add_done_callback(_retrieve)
    return fut


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def _quiet_failed_transaction_futures(
    loop: asyncio.AbstractEventLoop, context: dict[str, Any]
) -> None:
    """The store loop's exception handler: a Kafka error left in a future nobody awaits is
    said at DEBUG, everything else goes to asyncio's default handler.

    A fenced transactional producer (aiokafka 0.14) sets the error on its transaction
    manager's end-of-transaction waiter twice (an abortable error, then the fatal one on a
    new waiter) and keeps no reference to the first; no public call retrieves either once
    the producer is FATAL (``abort_transaction`` asserts before it awaits). When collected,
    asyncio logged each at ERROR with a traceback ("Future exception was never retrieved"),
    after the store had already said it in its one WARNING (``_recreate_producer``) or
    raised it as a StateError: an ERROR that paged nobody but read like a second failure.
    Every Kafka error of a store operation reaches the caller through the calls it awaits
    (``commit_transaction``, ``send_offsets_to_transaction``, ...), so such a leftover is
    only a copy. This loop runs nothing but the store's clients.
    """
    exc = context.get("exception")
    if (
        isinstance(exc, KafkaError)
        and "future" in context
        and not isinstance(context["future"], asyncio.Task)
        and context.get("message", "").startswith("Future exception was never retrieved")
    ):
        log.debug("an unawaited aiokafka future held %s: %s", type(exc).__name__, exc)
        return
    loop.default_exception_handler(context)


async def _abort(producer: AIOKafkaProducer) -> None:
    """``abort_transaction`` after a failed transaction, its own failure ignored: the error
    that matters is the first. A fenced producer (another one took its transactional id) is
    in FATAL_ERROR, where aiokafka 0.14's transaction manager *asserts* on the abort; that
    AssertionError hid the ProducerFenced, so the store did not recreate its producer and
    the checkpoint failed with an AssertionError instead of a StateError."""
    with contextlib.suppress(KafkaError, AssertionError):
        await producer.abort_transaction()


def default_changelog_topic(kafka: KafkaConfig) -> str:
    return f"{kafka.predictions_topic}-monitor-state"


class _Entry:
    """What the changelog holds for one model: its blob, or why it cannot be used.

    ``parts`` are the indices of the model's part records that are live in the changelog
    (read at assignment, or written since), whether or not its manifest is usable: a part
    nobody tombstones never compacts away and is read at every restore, so deleting the
    state tombstones all of them and a smaller state the ones it no longer uses.

    A *parked* entry (:meth:`KafkaStateStore.park`: kept, not restored) holds no blob, only
    ``head``, the blob's first bytes: its format version, which ``delete_model`` checks.
    """

    __slots__ = ("blob", "head", "parked", "parts", "problem", "tp")

    def __init__(
        self,
        blob: bytes | None,
        tp: TP | None,
        problem: tuple[str, str] | None,
        parts: frozenset[int],
    ) -> None:
        self.blob = blob
        self.tp = tp
        self.problem = problem
        self.parts = parts
        self.parked = False
        self.head = b""


def assemble(
    records: Mapping[bytes, bytes | None], source_topic: str, changelog_partition: int
) -> dict[str, _Entry]:
    """The models of one changelog partition from its latest value per key.

    Pure (no I/O), so the rules are tested on their own: a manifest of an unknown
    version, an unreadable manifest or a missing / stale part gives an entry with
    a problem (reason, detail), never an exception.
    """
    parts: dict[tuple[str, int], bytes] = {}
    live: dict[str, set[int]] = {}
    manifests: dict[str, bytes] = {}
    for key, value in records.items():
        try:
            k = json.loads(key)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            continue  # not ours; nothing to restore from it
        if not isinstance(k, list) or value is None:
            continue
        if len(k) == 2 and k[0] == "model" and isinstance(k[1], str):
            manifests[k[1]] = value
        elif len(k) == 3 and k[0] == "part" and isinstance(k[1], str) and isinstance(k[2], int):
            parts[(k[1], k[2])] = value
            live.setdefault(k[1], set()).add(k[2])
    out: dict[str, _Entry] = {}
    fallback_tp = (source_topic, changelog_partition)
    for model, raw in manifests.items():
        stored = frozenset(live.get(model, ()))
        try:
            try:
                m = json.loads(raw)
            except RecursionError:
                raise ValueError("JSON nested too deeply") from None
            if not isinstance(m, dict) or m.get("format") != FORMAT:
                raise ValueError("not a monitor state manifest")
        except ValueError as exc:
            out[model] = _Entry(None, fallback_tp, ("corrupt", f"manifest: {exc}"), stored)
            continue
        topic, partition = m.get("topic"), m.get("partition")
        tp = (
            (topic, partition)
            if isinstance(topic, str) and isinstance(partition, int)
            else fallback_tp
        )
        version = m.get("version")
        if isinstance(version, int) and version > MANIFEST_VERSION:
            # A newer release's record (a rollback): kept apart from damage, see
            # ``NewerStateError``; the detail carries the version for the error.
            out[model] = _Entry(None, tp, ("newer_version", str(version)), stored)
            continue
        if version != MANIFEST_VERSION:
            detail = (
                f"changelog manifest version {m.get('version')!r} is not supported "
                f"(this build reads {MANIFEST_VERSION})"
            )
            out[model] = _Entry(None, tp, ("unknown_version", detail), stored)
            continue
        n, gen, size = m.get("parts"), m.get("generation"), m.get("bytes")
        encoding, raw_size = m.get("encoding"), m.get("raw_bytes")
        if encoding not in (None, "zlib"):
            detail = f"changelog encoding {encoding!r} is not supported"
            out[model] = _Entry(None, tp, ("unknown_version", detail), stored)
            continue
        try:
            if not isinstance(n, int) or n < 1 or not isinstance(gen, str):
                raise ValueError("manifest without parts or generation")
            want = bytes.fromhex(gen)
            pieces = []
            for i in range(n):
                value = parts.get((model, i))
                if value is None:
                    raise ValueError(f"part {i} of {n} is missing")
                if value[:4] != PART_MAGIC or value[4 : 4 + _GEN_BYTES] != want:
                    raise ValueError(f"part {i} of {n} is of another generation")
                pieces.append(value[4 + _GEN_BYTES :])
            blob = b"".join(pieces)
            if blob and size is not None and len(blob) != size:
                raise ValueError(f"{len(blob)} bytes, the manifest says {size}")
            if encoding == "zlib":
                blob = _inflate(blob, raw_size)
        except ValueError as exc:
            out[model] = _Entry(None, tp, ("corrupt", str(exc)), stored)
            continue
        out[model] = _Entry(blob, tp, None, stored)
    return out


def _inflate(data: bytes, raw_size: object) -> bytes:
    """Decompress a zlib state of the size its manifest declares (never more: a record that
    inflates beyond it is refused, not expanded)."""
    if not isinstance(raw_size, int) or raw_size < 0:
        raise ValueError("compressed state without its raw size")
    if raw_size > MAX_RAW_BYTES:  # as for a format-2 state: a forged size allocates nothing
        raise ValueError(f"compressed state declares {raw_size} bytes (limit {MAX_RAW_BYTES})")
    try:
        d = zlib.decompressobj()
        out = d.decompress(data, raw_size + 1)
    except zlib.error as exc:
        raise ValueError(f"compressed state unreadable: {exc}") from exc
    if len(out) != raw_size or not d.eof:
        raise ValueError(f"compressed state is not of its declared {raw_size} bytes")
    return out


class _TopicMissing(StateError):
    """The changelog topic does not exist (deleted while running)."""


class _NotCompacted(StateError):
    """The changelog topic's cleanup policy would delete states."""


class _AlertsCompacted(StateError):
    """The alerts topic is compacted: notifications of one model would replace each other."""


class KafkaStateStore:
    """A :class:`~monitor.store.StateStore` in a compacted Kafka changelog topic."""

    #: The store commits the consumer group's offsets itself (in its transactions).
    commits_offsets = True

    def __init__(
        self,
        kafka: KafkaConfig,
        state: StateConfig,
        registry: CollectorRegistry | None = None,
        *,
        stop: threading.Event | None = None,
    ) -> None:
        self.kafka = kafka
        # Set by the service on SIGTERM: the start stops waiting for the predictions topic.
        self._stop_asked = stop or threading.Event()
        self.state = state
        self.topic = state.changelog_topic or default_changelog_topic(kafka)
        self.alerts_topic = state.alerts_topic or f"{self.topic}-alerts"
        self.instance_id = state.instance_id or socket.gethostname()
        self.transactional_id = f"{kafka.group_id}-state-{self.instance_id}"
        self.discarded_legacy = 0
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._offsets: dict[TP, int] = {}
        # Per owned partition: the stored offset as this instance last read or wrote it.
        self._owned: dict[TP, int] = {}
        self._recreated = Counter(
            "monitor_state_producer_recreated_total",
            "Checkpoint producers recreated after a failed transaction (timed out, fenced "
            "or in a fatal state), by the error.",
            ["error"],
            registry=registry if registry is not None else CollectorRegistry(),
        )
        self._partitions = 0
        # Whether every model's state must be written again (the changelog was deleted,
        # recreated or lost its compaction while running: see ``_verify_topic``), and per
        # changelog partition the end offset it had at least when last read or written: the
        # log of a topic never shrinks, so a record of ours landing below it was written
        # into another topic of the same name (``_check_identity``).
        self._rewrite_all = False
        self._high: dict[int, int] = {}
        self._short_retention_said = False
        self._unreadable_said: set[str] = set()
        # DescribeConfigs answers fetched together and not read yet (see _verify_topic).
        self._described: dict[str, list[tuple[int, str, Any]]] = {}
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet_failed_transaction_futures)
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="monitor-kafka-store", daemon=True
        )
        self._thread.start()
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._probe: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        try:
            self._run(self._start(), timeout=SOURCE_TOPIC_WAIT_SECONDS + OPERATION_TIMEOUT_SECONDS)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- plumbing

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = OPERATION_TIMEOUT_SECONDS) -> T:
        if threading.current_thread() is self._thread:
            raise StateError("KafkaStateStore called from its own loop")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError as exc:
            fut.cancel()
            raise StateError(f"state topic {self.topic}: no answer within {timeout:.0f} s") from exc

    async def _start(self) -> None:
        k = self.kafka
        sec = security_kwargs(k)
        try:
            self._admin = AIOKafkaAdminClient(
                bootstrap_servers=k.bootstrap_servers, client_id=k.client_id, **sec
            )
            await self._admin.start()
            await self._ensure_topic()
            await self._ensure_alerts_topic()
            await self._start_producer()  # InitProducerId: fences an earlier incarnation
            await self._await_partitions()
            self._probe = AIOKafkaConsumer(
                bootstrap_servers=k.bootstrap_servers, client_id=k.client_id, group_id=None, **sec
            )
            await self._probe.start()
            self._reader = AIOKafkaConsumer(
                bootstrap_servers=k.bootstrap_servers,
                client_id=k.client_id,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=max(1_048_576, self.state.max_record_bytes * 2),
                **sec,
            )
            await self._reader.start()
        except KafkaError as exc:
            raise StateError(f"state topic {self.topic}: {type(exc).__name__}: {exc}") from exc
        log.info(
            "state backend kafka: changelog %s (%d partitions), transactional.id %s",
            self.topic,
            self._partitions,
            self.transactional_id,
        )

    async def _start_producer(self) -> None:
        k = self.kafka
        self._producer = AIOKafkaProducer(
            bootstrap_servers=k.bootstrap_servers,
            client_id=k.client_id,
            transactional_id=self.transactional_id,
            enable_idempotence=True,
            acks="all",
            max_request_size=self.state.max_record_bytes + 65_536,
            transaction_timeout_ms=int(self.state.transaction_timeout_seconds * 1000),
            **security_kwargs(k),
        )
        try:
            await self._producer.start()
        except InvalidTransactionTimeout as exc:
            # A setting that fails when applied, like a port in use: a configuration error
            # (exit 2 from `monitor run`), named by its path.
            raise ConfigError(
                [
                    f"state.transaction_timeout_seconds: "
                    f"{self.state.transaction_timeout_seconds:g} is above the broker's "
                    "transaction.max.timeout.ms: lower it (or raise the broker's limit)"
                ]
            ) from exc

    async def _cover(self, partition: int) -> None:
        """Make sure the changelog has ``partition``: grow it, like the predictions topic.

        Partitions added to the predictions topic while instances run are assigned to them
        at the next rebalance. A changelog partition is chosen by number (not by hashing
        the key), so adding partitions moves no stored state: the changelog is grown to the
        predictions topic's count here, once, by whichever instance needs it first (the
        others see it grown). Without this, one model on a new partition failed every
        checkpoint of the instance, for every model, until a restart; and a partition
        another instance had grown the changelog for was not read at assignment, so its
        models started fresh and overwrote the stored states at the next checkpoint.
        """
        if partition < self._partitions:
            return
        have = await self._grow(partition + 1)
        if partition >= have:
            raise StateError(
                f"partition {partition} has no changelog partition: {self.topic} has "
                f"{have} partitions; add partitions to it"
            )
        self._partitions = have
        await self._await_partitions()

    async def _grow(self, at_least: int) -> int:
        """Grow the changelog to the predictions topic's partition count (and to
        ``at_least``) if it has fewer; its partition count after."""
        assert self._admin is not None
        source = self.kafka.predictions_topic
        meta = {t["topic"]: t for t in await self._admin.describe_topics([self.topic, source])}
        have = len(meta.get(self.topic, {}).get("partitions", []))
        src = meta.get(source, {})
        n_source = len(src.get("partitions", [])) if not src.get("error_code") else 0
        wanted = max(n_source, at_least)
        if have < wanted:
            try:
                await self._admin.create_partitions({self.topic: NewPartitions(wanted)})
                log.info(
                    "grew the state changelog %s from %d to %d partitions (as %s)",
                    self.topic,
                    have,
                    wanted,
                    source,
                )
            except InvalidPartitionsError:
                pass  # another instance grew it meanwhile (to at least as many)
            (after,) = await self._admin.describe_topics([self.topic])
            have = len(after["partitions"])
        return have

    async def _await_partitions(self) -> None:
        """Wait until the producer's metadata knows every changelog partition (a topic just
        created is seen with fewer for a moment)."""
        assert self._producer is not None
        deadline = time.monotonic() + OPERATION_TIMEOUT_SECONDS
        while len(await self._producer.partitions_for(self.topic)) < self._partitions:
            if time.monotonic() > deadline:
                raise StateError(f"state topic {self.topic}: partitions not visible")
            await asyncio.sleep(0.2)
            await self._producer.client.force_metadata_update()

    async def _ensure_topic(self) -> None:
        """Create the changelog (compacted, as many partitions as the predictions topic)."""
        assert self._admin is not None
        source = self.kafka.predictions_topic
        # All topics (a metadata request naming a missing topic may auto-create it). The
        # predictions topic sizes the changelog: wait a while for it (a producer that
        # auto-creates it may start after the monitor, as in the compose stack).
        deadline = time.monotonic() + SOURCE_TOPIC_WAIT_SECONDS
        said = False
        while True:
            meta = {t["topic"]: t for t in await self._admin.describe_topics(None)}
            src = meta.get(source)
            n_source = len(src["partitions"]) if src and not src.get("error_code") else 0
            if n_source or self.topic in meta or time.monotonic() > deadline:
                break
            if not said:
                log.info("waiting for the predictions topic %s to exist", source)
                said = True
            for _ in range(20):
                if self._stop_asked.is_set():
                    raise StateError(
                        f"state topic {self.topic}: stopped while waiting for the predictions "
                        f"topic {source} to exist"
                    )
                await asyncio.sleep(0.1)
        have = meta.get(self.topic)
        if have is None:
            if n_source == 0:
                raise StateError(
                    f"state topic {self.topic}: the predictions topic {source} does not exist "
                    f"(waited {SOURCE_TOPIC_WAIT_SECONDS:.0f} s); create it first (its "
                    "partition count sizes the changelog)"
                )
            brokers = (await self._admin.describe_cluster()).get("brokers", [])
            topic = NewTopic(
                self.topic,
                num_partitions=n_source,
                replication_factor=max(1, min(3, len(brokers))),
                topic_configs={"cleanup.policy": "compact"},
            )
            try:
                resp = await self._admin.create_topics([topic])
                for _name, code, *_ in resp.topic_errors:
                    if code and code != TopicAlreadyExistsError.errno:
                        raise StateError(f"state topic {self.topic}: not created (error {code})")
            except TopicAlreadyExistsError:
                pass
            log.info("created the state changelog %s (%d partitions)", self.topic, n_source)
            self._partitions = n_source
            return
        await self._check_compacted()
        self._partitions = len(have["partitions"])
        if self._partitions < n_source:
            self._partitions = await self._grow(n_source)

    async def _describe(self, topics: Sequence[str]) -> dict[str, list[tuple[int, str, Any]]]:
        """The cleanup settings of ``topics`` in one DescribeConfigs request: per topic, the
        (error code, message, entries) the broker answered."""
        assert self._admin is not None
        wanted = {"cleanup.policy": None, "retention.ms": None, "retention.bytes": None}
        out: dict[str, list[tuple[int, str, Any]]] = {t: [] for t in topics}
        for resp in await self._admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, wanted) for t in topics]
        ):
            for code, message, _type, name, entries in resp.resources:
                out.setdefault(name, []).append((code, message, entries))
        return out

    async def _topic_config(self, topic: str, what: str) -> dict[str, str] | None:
        """The cleanup settings of ``topic`` (one DescribeConfigs); None when this principal
        may not read them (the checks are advice, not worth refusing a deployment that
        works: one WARNING per topic instead, not one per checkpoint);
        :class:`_TopicMissing` when it does not exist."""
        described = self._described.pop(topic, None)
        if described is None:
            described = (await self._describe([topic]))[topic]
        settings: dict[str, str] = {}
        for code, message, entries in described:
            if code == TopicAuthorizationFailedError.errno:
                if topic in self._unreadable_said:
                    return None
                self._unreadable_said.add(topic)
                log.warning(
                    "%s %s: not allowed to read its configuration; make sure it has the "
                    "cleanup.policy docs/GUARANTEES.md asks for",
                    what,
                    topic,
                )
                return None
            if code == UnknownTopicOrPartitionError.errno:
                raise _TopicMissing(f"{what} {topic} does not exist")
            if code:
                raise StateError(
                    f"{what} {topic}: cannot read its configuration (error {code}: {message})"
                )
            settings.update({str(e[0]): str(e[1]) for e in entries})
        return settings

    async def _check_compacted(self) -> None:
        """Refuse a changelog whose records retention may delete.

        A model's state is written again only when it changes, and the offsets records
        only when their partition advances: under ``cleanup.policy=delete`` (what
        ``kafka-topics --create`` or a broker's topic auto-creation gives) the states of
        quiet models disappear after ``retention.ms`` (7 days by default), and the next
        restore starts them fresh, from the group's offsets, without a word.
        """
        settings = await self._topic_config(self.topic, "state topic")
        if settings is None:
            return
        policy = {p.strip() for p in settings.get("cleanup.policy", "delete").split(",")}
        kept = all(settings.get(k, "-1") == "-1" for k in ("retention.ms", "retention.bytes"))
        if "compact" not in policy or ("delete" in policy and not kept):
            raise _NotCompacted(
                f"state topic {self.topic} has cleanup.policy="
                f"{settings.get('cleanup.policy', 'delete')}: retention would delete the "
                "states of models that have not changed for retention.ms; set "
                "cleanup.policy=compact on it (kafka-configs --alter --entity-type topics "
                f"--entity-name {self.topic} --add-config cleanup.policy=compact)"
            )

    async def _check_alerts_topic(self) -> None:
        """Refuse an alerts topic that compaction would take notifications from.

        Its records are keyed by model, and a record is needed until it is delivered
        (the delivering consumer commits only past delivered ones; a host lost with its
        outbox leaves them to be read again elsewhere). Compaction keeps only the latest
        record of a key: a model's "firing" followed by its "resolved", or two incidents,
        would lose the earlier one before its delivery, silently. The delete policy (what
        the store creates) keeps each until ``retention.ms``: a retention shorter than a
        day is said in a WARNING (a receiver down for longer, with its host lost, loses
        the records), not refused.
        """
        settings = await self._topic_config(self.alerts_topic, "alerts topic")
        if settings is None:
            return
        policy = {p.strip() for p in settings.get("cleanup.policy", "delete").split(",")}
        if "compact" in policy:
            raise _AlertsCompacted(
                f"alerts topic {self.alerts_topic} has cleanup.policy="
                f"{settings.get('cleanup.policy')}: compaction keeps one record per model and "
                "would drop notifications not yet delivered; set cleanup.policy=delete on it "
                f"(kafka-configs --alter --entity-type topics --entity-name {self.alerts_topic} "
                "--add-config cleanup.policy=delete)"
            )
        retention = settings.get("retention.ms", "-1")
        short = retention.isdigit() and int(retention) < ALERTS_MIN_RETENTION_MS
        if short and not self._short_retention_said:
            self._short_retention_said = True
            log.warning(
                "alerts topic %s has retention.ms=%s (under a day): a notification not "
                "delivered within it (receivers down) is lost if its host is lost too",
                self.alerts_topic,
                retention,
            )

    async def _ensure_alerts_topic(self) -> None:
        """Create the alerts topic if missing (delete policy: a record is needed only until
        it is delivered; as many partitions as the changelog, so deliveries spread out)."""
        assert self._admin is not None
        meta = {t["topic"]: t for t in await self._admin.describe_topics(None)}
        if self.alerts_topic in meta:
            await self._check_alerts_topic()
            return
        brokers = (await self._admin.describe_cluster()).get("brokers", [])
        topic = NewTopic(
            self.alerts_topic,
            num_partitions=max(1, self._partitions),
            replication_factor=max(1, min(3, len(brokers))),
        )
        try:
            resp = await self._admin.create_topics([topic])
            for _name, code, *_ in resp.topic_errors:
                if code and code != TopicAlreadyExistsError.errno:
                    raise StateError(
                        f"alerts topic {self.alerts_topic}: not created (error {code})"
                    )
        except TopicAlreadyExistsError:
            pass
        log.info("created the alerts topic %s", self.alerts_topic)

    # ----------------------------------------------------------------- assignment

    def prepare(self, partitions: Iterable[TP]) -> None:
        """Read the changelog and the committed offsets of newly assigned partitions."""
        tps = set(partitions)
        last: Exception | None = None
        for attempt in range(RESTORE_ATTEMPTS):
            try:
                entries, offsets = self._run(self._read(tps))
                break
            except (StateError, KafkaError) as exc:
                last = exc
                log.warning("restore from %s failed (attempt %d): %s", self.topic, attempt + 1, exc)
                time.sleep(1.0 * (attempt + 1))
        else:
            raise StateError(f"state topic {self.topic}: restore failed: {last}")
        with self._lock:
            self._entries.update(entries)
            self._offsets.update(offsets)
            for tp in tps:
                self._owned[tp] = offsets.get(tp, -1)
        log.info(
            "read %d model state(s) and %d offset(s) of %d assigned partition(s) from %s",
            len(entries),
            len(offsets),
            len(tps),
            self.topic,
        )

    def release(self, partitions: Iterable[TP]) -> None:
        """Forget what was read for partitions this instance no longer owns."""
        gone = set(partitions)
        with self._lock:
            for m in [m for m, e in self._entries.items() if e.tp in gone]:
                del self._entries[m]
            for tp in gone:
                self._offsets.pop(tp, None)
                self._owned.pop(tp, None)
                if tp[0] == self.kafka.predictions_topic:
                    self._high.pop(tp[1], None)

    async def _read(self, tps: set[TP]) -> tuple[dict[str, _Entry], dict[TP, int]]:
        assert self._reader is not None and self._admin is not None
        source = self.kafka.predictions_topic
        await self._cover(max((p for t, p in tps if t == source), default=-1))
        wanted = sorted({p for t, p in tps if t == source and p < self._partitions})
        entries: dict[str, _Entry] = {}
        offsets: dict[TP, int] = {}
        if wanted:
            changelog = [TopicPartition(self.topic, p) for p in wanted]
            self._reader.assign(changelog)
            await self._reader.seek_to_beginning(*changelog)
            ends = await self._stable_ends(changelog)
            for tp, end in ends.items():
                self._high[tp.partition] = max(self._high.get(tp.partition, 0), end)
            latest: dict[int, dict[bytes, bytes | None]] = {p: {} for p in wanted}
            todo = {tp for tp in changelog if await self._reader.position(tp) < ends[tp]}
            deadline = time.monotonic() + OPERATION_TIMEOUT_SECONDS
            while todo:
                if time.monotonic() > deadline:
                    raise StateError(f"state topic {self.topic}: restore did not reach the end")
                batches = await self._reader.getmany(*todo, timeout_ms=500)
                for tp, records in batches.items():
                    for r in records:
                        if r.offset < ends[tp] and r.key is not None:
                            latest[tp.partition][r.key] = r.value
                for tp in list(todo):
                    if await self._reader.position(tp) >= ends[tp]:
                        todo.discard(tp)
            for p in wanted:
                entries.update(assemble(latest[p], source, p))
                offsets.update(stored_offsets(latest[p]))
        return entries, {tp: o for tp, o in offsets.items() if tp in tps and o >= 0}

    async def _stable_ends(self, changelog: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where to read the changelog to: its end once no transaction is open on it.

        A transaction's commit markers reach its partitions a moment after the
        commit returns; the previous owner's last checkpoint (committed in its
        revocation) may still be in that state. Reading only to the last stable
        offset would then restore the checkpoint before it, and that one's later
        arrival would put states ahead of the offsets we continue from. So wait
        until the last stable offset is the end of the log (a transaction left
        open by a killed instance is aborted by the broker after the
        transaction timeout), then read to it.
        """
        assert self._reader is not None and self._probe is not None
        deadline = (
            time.monotonic()
            + self.state.transaction_timeout_seconds
            + BROKER_ABORT_INTERVAL_SECONDS
            + 5
        )
        while True:
            stable = await self._reader.end_offsets(changelog)  # read_committed: the LSO
            end = await self._probe.end_offsets(changelog)  # read_uncommitted: the end
            if stable == end or time.monotonic() > deadline:
                if stable != end:
                    log.warning(
                        "a transaction on %s stays open; restoring to its start", self.topic
                    )
                return stable
            log.debug("waiting for open transactions on %s: %s < %s", self.topic, stable, end)
            await asyncio.sleep(0.1)

    # ----------------------------------------------------------------- StateStore

    def load_model(self, model: str) -> bytes | None:
        """The restored blob of ``model`` (taken once); raises StateFormatError if unusable."""
        self._unpark(model)
        with self._lock:
            entry = self._entries.get(model)
            if entry is None:
                return None
            if entry.problem is not None:
                reason, detail = entry.problem
                if reason == "newer_version":  # kept: never deleted, refused again
                    raise NewerStateError("changelog manifest", int(detail), MANIFEST_VERSION)
                # Taken (the model starts fresh); its parts stay known, to be tombstoned.
                self._entries[model] = _Entry(b"", entry.tp, None, entry.parts)
                raise StateFormatError(reason, detail)
            blob, entry.blob = entry.blob, b""  # the service holds it now; free the memory
        return blob if blob else None

    def peek_model(self, model: str) -> bytes | None:
        """The held blob of ``model``, left held (:meth:`load_model` takes it); None when
        absent, unusable, taken or parked (a parked one is not read again for a look)."""
        with self._lock:
            entry = self._entries.get(model)
            if entry is None or entry.problem is not None or not entry.blob:
                return None
            return bytes(entry.blob)

    def park(self, model: str) -> None:
        """Drop the blob of a state kept but not restored (``state.unlisted_models: keep``).

        Read at assignment with every other state of its partition, it was held until the
        partition was revoked: memory growing with states nobody uses. Only what listing,
        deleting or refusing it needs stays (its partition, parts and header);
        :meth:`load_model` reads it again if it is restored after all.
        """
        with self._lock:
            entry = self._entries.get(model)
            if entry is not None and entry.blob:  # not a refused, taken or parked one
                entry.head, entry.blob, entry.parked = entry.blob[:_HEAD_BYTES], None, True

    def _unpark(self, model: str) -> None:
        """A parked model's state read again from its changelog partition (the whole
        partition, from its start: once, when the service restores it after all)."""
        with self._lock:
            entry = self._entries.get(model)
            if entry is None or not entry.parked or entry.tp is None:
                return
            partition = entry.tp[1]
        entries, _ = self._run(self._read({(self.kafka.predictions_topic, partition)}))
        with self._lock:
            if self._entries.get(model) is entry:  # not deleted or written meanwhile
                fresh = entries.get(model)
                if fresh is None:
                    del self._entries[model]
                else:
                    self._entries[model] = fresh

    def load_offsets(self) -> dict[TP, int]:
        with self._lock:
            return dict(self._offsets)

    def models(self, partitions: Iterable[TP] | None = None) -> list[str]:
        with self._lock:
            if partitions is None:
                return sorted(self._entries)
            wanted = set(partitions)
            return sorted(m for m, e in self._entries.items() if e.tp in wanted)

    def save(
        self,
        models: Mapping[str, SavedModel],
        offsets: Mapping[TP, int],
        alerts: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """One checkpoint transaction: the states, the offsets and ``alerts`` (key, value
        records for the alerts topic, :func:`monitor.alerting.alert_log.encode_record`)."""
        for name, (blob, _) in models.items():
            if not isinstance(blob, bytes | bytearray | memoryview):
                raise StateError(f"state of model {name!r} is not an encoded blob")
        # A large checkpoint takes a while on the wire: about one round trip per MB written.
        size = sum(len(b) for b, _ in models.values())
        self._run(self._save(models, offsets, alerts), OPERATION_TIMEOUT_SECONDS + size / 1e6 * 2)

    def delete_model(self, model: str) -> None:
        """Tombstone ``model``'s records; :class:`NewerStateError`, and nothing removed, when
        a newer release wrote them (a manifest or a state format of a newer version): this
        release cannot read them, and the newer one needs them when rolled forward again."""
        with self._lock:
            entry = self._entries.get(model)
            if entry is None:
                return
            if entry.problem is not None and entry.problem[0] == "newer_version":
                raise NewerStateError("changelog manifest", int(entry.problem[1]), MANIFEST_VERSION)
            if entry.blob or entry.head:
                refuse_newer(entry.head if entry.parked else entry.blob)
            del self._entries[model]
        if entry.tp is None:
            return
        self._run(self._delete(model, entry))

    def close(self) -> None:
        if not self._loop.is_closed() and self._thread.is_alive():
            try:
                self._run(self._stop(), timeout=30.0)
            except StateError as exc:
                log.warning("%s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()

    # ----------------------------------------------------------------- transactions

    def _partition_of(self, name: str, tp: TP | None) -> int:
        p = tp[1] if tp is not None else 0
        if p >= self._partitions:
            raise StateError(
                f"model {name!r} is on partition {p}, but the changelog {self.topic} has "
                f"{self._partitions} partitions; add partitions to it"
            )
        return p

    async def _save(
        self,
        models: Mapping[str, SavedModel],
        offsets: Mapping[TP, int],
        alerts: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """The checkpoint transaction; after a failure, once more with a new producer.

        A transaction the broker aborted (it outlasted ``transaction_timeout_seconds``),
        a fenced epoch or any other error leaves aiokafka's transactional producer in a
        state where every later transaction fails too: the instance could never
        checkpoint again. So the producer is recreated (InitProducerId under the same
        transactional.id: the broker aborts whatever it left open) and, once the stored
        offsets show nobody else wrote these partitions meanwhile
        (:meth:`_recreate_producer`), the same checkpoint is written again: the states,
        offsets and alerts in memory are still the ones the failed transaction held.
        """
        await self._verify_topic()
        try:
            await self._transaction(models, offsets, alerts)
            self._rewrite_all = False
            return
        except KafkaError as exc:
            await self._verify_topic()  # a produce error: is the changelog still there?
            await self._recreate_producer(exc)
        try:
            await self._transaction(models, offsets, alerts)
            self._rewrite_all = False
        except KafkaError as exc:
            raise StateError(
                f"checkpoint transaction on {self.topic} failed: {type(exc).__name__}: {exc}"
            ) from exc

    @property
    def rewrite_all_pending(self) -> bool:
        """Whether the next checkpoint must write every model's state, changed or not.

        Set when the changelog was found deleted or no longer compacted while running;
        cleared by the first checkpoint that succeeds after (the service passes it every
        model once it sees this, see ``MonitorService._checkpoint``).
        """
        return self._rewrite_all

    async def _verify_topic(self) -> None:
        """The changelog and the alerts topic, checked before a checkpoint (one request)."""
        try:
            await self._verify_topics()
        finally:
            self._described = {}  # never an answer of this check read by a later one

    async def _verify_topics(self) -> None:
        """Refuse to write into a changelog that was deleted or lost its compaction.

        Deleted while running, the changelog came back as the broker's auto-creation
        made it (``cleanup.policy=delete``), and this instance went on writing into it
        without a word: the states of models unchanged since then were never written
        again, so retention took the rest and a restart started those models fresh.
        Checked before every checkpoint (one DescribeConfigs: a few milliseconds, against
        a checkpoint every ``state.checkpoint_interval_seconds``; once a minute, as it was,
        let up to a minute of checkpoints into an auto-created topic), and after any
        failure. A missing topic is created again, compacted; a topic that is not
        compacted is refused, with the fix. Either way the checkpoint fails (an ERROR and
        ``/healthz`` through the service's checkpoint-failure path) and every model's
        state is written again in the first checkpoint that succeeds after. A topic
        deleted and created again *compacted* between two checkpoints, or in the middle
        of one, passes this check: :meth:`_check_identity` catches it after the commit.
        """
        try:
            # Both topics in one request (the alerts topic's answer waits in _described).
            self._described = await self._describe([self.topic, self.alerts_topic])
        except KafkaError as exc:
            raise StateError(
                f"state topic {self.topic}: cannot read its configuration: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            await self._check_compacted()
        except _TopicMissing:
            self._rewrite_all = True
            try:
                await self._ensure_topic()
                await self._start_producer_again()
            except KafkaError as exc:
                raise StateError(
                    f"state topic {self.topic} was deleted while running and could not be "
                    f"created again ({type(exc).__name__}: {exc}); create it with "
                    "cleanup.policy=compact"
                ) from exc
            raise StateError(
                f"state topic {self.topic} was deleted while running: created it again "
                "(compacted); every model's state is written again at the next checkpoint"
            ) from None
        except _NotCompacted as exc:
            self._rewrite_all = True
            raise StateError(
                f"{exc}. It was compacted when this instance started: it was deleted (and "
                "auto-created by the broker) or reconfigured while running; nothing more is "
                "written into it until it is compacted again, then every model's state is "
                "written again at the next checkpoint"
            ) from None
        except KafkaError as exc:
            raise StateError(
                f"state topic {self.topic}: cannot read its configuration: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        await self._verify_alerts_topic()

    async def _verify_alerts_topic(self) -> None:
        """The alerts topic, checked with the changelog before every checkpoint.

        Deleted while running, it came back only through the broker's auto-creation (with
        the broker's partition count), and where that is off every checkpoint's
        transaction waited for it and failed: no state was checkpointed again until a
        restart. Now a missing alerts topic is created again (delete policy), with one
        WARNING (what it held undelivered is gone with it), and the checkpoint goes on; one
        made compacted is refused like a non-compacted changelog (the checkpoint fails
        with the fix, nothing more is written into it).
        """
        try:
            await self._check_alerts_topic()
        except _TopicMissing:
            try:
                await self._ensure_alerts_topic()
                await self._start_producer_again()
            except KafkaError as exc:
                raise StateError(
                    f"alerts topic {self.alerts_topic} was deleted while running and could "
                    f"not be created again ({type(exc).__name__}: {exc}); create it with "
                    "cleanup.policy=delete"
                ) from exc
            log.warning(
                "alerts topic %s was deleted while running: created it again (delete policy); "
                "notifications it held and had not delivered yet are lost",
                self.alerts_topic,
            )
        except KafkaError as exc:
            raise StateError(
                f"alerts topic {self.alerts_topic}: cannot read its configuration: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    async def _check_identity(self, written: Sequence[asyncio.Future[Any]]) -> None:
        """After a commit: were this checkpoint's records written into *our* changelog?

        A topic deleted and created again (by hand, compacted, or by the broker's
        auto-creation in the moment between :meth:`_verify_topic` and the transaction)
        starts its partitions at offset 0; the topic we read and wrote is at least at
        ``self._high``. A record of ours below that mark went into the new topic, which
        holds none of the states of the models this checkpoint did not change: every
        state must be written again; unless this checkpoint wrote them all already
        (``rewrite_all_pending``: the service passed every model). Costs no request (the
        offsets are the records' own, from the produce responses). aiokafka 0.14 speaks
        Metadata v5, which has no topic ids, so the offsets are the identity.
        """
        lowest: dict[int, int] = {}
        highest: dict[int, int] = {}
        for result in await asyncio.gather(*written, return_exceptions=True):
            if isinstance(result, BaseException):
                continue  # committed, so delivered; nothing to learn from an odd future
            p, o = result.partition, result.offset
            lowest[p] = min(lowest.get(p, o), o)
            highest[p] = max(highest.get(p, o), o)
        if self._rewrite_all:  # every state written, wherever the topic came from: complete
            moved = []
            self._high.update({p: o + 1 for p, o in highest.items()})  # this topic's marks
        else:
            moved = sorted(p for p, o in lowest.items() if o < self._high.get(p, 0))
            for p, o in highest.items():
                self._high[p] = o + 1 if p in moved else max(self._high.get(p, 0), o + 1)
        if moved:
            self._rewrite_all = True
            raise StateError(
                f"state topic {self.topic} was deleted and created again while running "
                f"(partition(s) {', '.join(map(str, moved))} restarted below the offsets this "
                "instance had seen): this checkpoint went into the new topic, which lacks the "
                "states of unchanged models; every model's state is written again at the "
                "next checkpoint"
            )

    async def _start_producer_again(self) -> None:
        """A new producer, for a topic created again (the old one's metadata is stale)."""
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                await self._producer.stop()
        await self._start_producer()

    def _fenced_hint(self, exc: KafkaError) -> str:
        """What a fenced producer most likely means: another live instance took the same
        transactional id, i.e. runs with the same ``state.instance_id``; each then fences
        the other at every checkpoint. (Also seen once after a transaction that outlasted
        ``state.transaction_timeout_seconds``.) Names the setting, never a credential."""
        if not isinstance(exc, ProducerFenced | InvalidProducerEpoch):
            return ""
        return (
            ". The producer was fenced: another live instance may be running with the same "
            f"state.instance_id ({self.instance_id!r}); every instance needs its own (e.g. "
            "the host name). Repeated recreations mean two instances fence each other at "
            "every checkpoint; a single one can follow a transaction that outlasted "
            "state.transaction_timeout_seconds"
        )

    async def _recreate_producer(self, exc: KafkaError) -> None:
        """Replace the producer after a failed transaction (one WARNING line, counted)."""
        log.warning(
            "checkpoint transaction on %s failed (%s: %s); recreating the transactional "
            "producer %s and writing the checkpoint again%s",
            self.topic,
            type(exc).__name__,
            str(exc),  # not the exception: a record kept by a handler would keep its frames
            self.transactional_id,
            self._fenced_hint(exc),
        )
        self._recreated.labels(type(exc).__name__[:64]).inc()
        if self._producer is not None:
            try:
                await self._producer.stop()
            except KafkaError as stop_exc:
                log.debug("failed producer did not stop cleanly: %s", stop_exc)
        try:
            await self._start_producer()
            with self._lock:
                owned = dict(self._owned)
            if owned:
                _, stored = await self._read(set(owned))
                moved = sorted(
                    f"{t}/{p}" for (t, p), o in owned.items() if stored.get((t, p), -1) != o
                )
                if moved:
                    raise StateError(
                        f"state topic {self.topic}: the stored offsets of {', '.join(moved)} "
                        "were written by another instance since this one last wrote them; "
                        "not overwriting its checkpoint"
                    )
        except KafkaError as exc2:
            raise StateError(
                f"state topic {self.topic}: recreating the producer failed: "
                f"{type(exc2).__name__}: {exc2}"
            ) from exc2

    async def _transaction(
        self,
        models: Mapping[str, SavedModel],
        offsets: Mapping[TP, int],
        alerts: Sequence[tuple[bytes, bytes]],
    ) -> None:
        source = self.kafka.predictions_topic
        needed = [tp[1] for _, tp in models.values() if tp is not None]
        needed += [p for t, p in offsets if t == source]
        await self._cover(max(needed, default=-1))
        producer = self._producer
        assert producer is not None
        size = self.state.max_record_bytes
        written: list[asyncio.Future[Any]] = []  # the changelog's records
        now_live: dict[str, frozenset[int]] = {}  # per model, its parts once committed
        await _begin(producer)
        try:
            for name, (blob, tp) in models.items():
                # The state (format 2) is compressed already; the manifest's "zlib"
                # encoding is still read, for records written before it.
                data = bytes(blob)
                p = self._partition_of(name, tp)
                gen = uuid.uuid4().bytes
                chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
                for i, chunk in enumerate(chunks):
                    fut = await _send(
                        producer,
                        self.topic,
                        PART_MAGIC + gen + chunk,
                        key=part_key(name, i),
                        partition=p,
                    )
                    written.append(fut)
                new = frozenset(range(len(chunks)))
                with self._lock:
                    entry = self._entries.get(name)
                    if entry is None:
                        entry = self._entries[name] = _Entry(b"", tp, None, frozenset())
                    before = entry.parts
                    # Until the commit, either set may be the live one: a transaction written
                    # again after a failure (or a later checkpoint) still tombstones the old.
                    entry.parts = before | new
                now_live[name] = new
                for i in sorted(before - new):  # parts the smaller state no longer uses
                    written.append(
                        await _send(producer, self.topic, None, key=part_key(name, i), partition=p)
                    )
                manifest = {
                    "format": FORMAT,
                    "version": MANIFEST_VERSION,
                    "generation": gen.hex(),
                    "parts": len(chunks),
                    "bytes": len(data),
                    "encoding": None,
                    "raw_bytes": len(data),
                    "topic": tp[0] if tp else None,
                    "partition": tp[1] if tp else None,
                    "saved_at": time.time(),
                }
                fut = await _send(
                    producer,
                    self.topic,
                    json.dumps(manifest).encode(),
                    key=model_key(name),
                    partition=p,
                )
                written.append(fut)
            for key, value in alerts:
                await _send(producer, self.alerts_topic, value, key=key)
            for tp, offset in sorted(offsets.items()):
                if tp[1] < self._partitions:
                    fut = await _send(
                        producer,
                        self.topic,
                        str(offset).encode(),
                        key=offsets_key(tp),
                        partition=tp[1],
                    )
                    written.append(fut)
            if offsets:
                await producer.send_offsets_to_transaction(
                    {TopicPartition(t, p): o for (t, p), o in offsets.items()},
                    self.kafka.group_id,
                )
        except BaseException:
            await _abort(producer)
            raise
        await producer.commit_transaction()
        with self._lock:
            for tp, offset in offsets.items():
                self._owned[tp] = offset
            for name, live in now_live.items():
                entry = self._entries.get(name)
                if entry is not None:  # the state now stored is the caller's, readable
                    entry.parts, entry.problem, entry.blob = live, None, b""
                    entry.parked, entry.head = False, b""
                    entry.tp = models[name][1] or entry.tp
        await self._check_identity(written)

    async def _delete(self, model: str, entry: _Entry) -> None:
        producer = self._producer
        assert producer is not None and entry.tp is not None
        p = self._partition_of(model, entry.tp)
        try:
            await _begin(producer)
            try:
                for i in sorted(entry.parts):
                    await _send(producer, self.topic, None, key=part_key(model, i), partition=p)
                await _send(producer, self.topic, None, key=model_key(model), partition=p)
            except BaseException:
                await _abort(producer)
                raise
            await producer.commit_transaction()
        except KafkaError as exc:
            raise StateError(f"deleting the state of {model!r} failed: {exc}") from exc

    async def _stop(self) -> None:
        for client in (self._reader, self._probe, self._producer):
            if client is not None:
                try:
                    await client.stop()
                except KafkaError as exc:
                    log.warning("state store client did not stop cleanly: %s", exc)
        if self._admin is not None:
            await self._admin.close()
