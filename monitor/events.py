"""The event contract, and the decoder that turns a batch of Kafka messages into columns.

This module is the public API between model-serving services and the monitor
(documented in README.md, "Event contract").

Prediction event (topic ``predictions``, keyed by model name)::

    {"event_id": "b7c1e0a2-...", "model": "credit-risk", "model_version": "2026-11-01",
     "timestamp": "2026-11-26T12:00:00Z",
     "features": {"income": 52000.0, "region": "north", "age": null},
     "prediction": 0.83}

Label event (topic ``labels``)::

    {"event_id": "b7c1e0a2-...", "model": "credit-risk", "label": 1, "timestamp": ...}

Two levels of bad input, both counted by a bounded ``reason``:

* an *event* that breaks the contract (not JSON, not an object, a required field
  missing or mistyped, a timestamp that does not parse or lies too far ahead of the
  monitor's clock, see :class:`FutureBound`) is rejected whole:
  :class:`Rejected` carries the reason, the field and a message; it goes to the
  dead-letter topic when one is configured;
* a single *feature value* of the wrong type or non-finite is recorded as
  missing for that feature and counted (``invalid_values``) while the rest of the
  event is kept: one producer bug in one feature must not blind the monitor to
  all the others.

Decoding is per message (JSON parsing cannot be vectorised); everything after it
is per column: :class:`Decoder` groups events by model and hands the pipeline
lists per field, which become numpy arrays once per batch. Where the compiled
decoder (``native/``, ``monitor_native``) is installed, the events of models whose
schema is settled arrive already in columns (:class:`FeatureColumns`); it decides
nothing the Python path would decide differently (see :meth:`Decoder._decode_native`).

Four JSON parsers, each for one job (all must agree on what they accept):

* **msgspec**, the Python hot path: decodes a well-formed prediction event straight
  into :class:`_FastPrediction`, type checks in C, unknown fields skipped unparsed.
  Anything it refuses takes the full path, so it only ever decides fast acceptance.
* **orjson**, the full path (:func:`parse_json`): the reference semantics of the
  contract (any JSON object to a dict); 3.6 times the stdlib's speed on the
  simulator's events (189k against 52k events/s, one core, this machine, 2026-12).
  It is also the oracle of ``tests/test_native.py`` and ``tests/test_decoder_fast.py``
  and the floor the throughput benchmark measures against (``bench/throughput.py``).
* **json** (stdlib), only after orjson refused a message (:func:`_diagnose`): to say
  why (invalid UTF-8, ``NaN`` literals, or numbers beyond a double, which are kept as
  ``inf`` and counted per value). It accepts lone surrogate escapes, which the others
  refuse, so its result is checked for them (``invalid_unicode``).
* **serde_json** (Rust, ``native/``), the compiled decoder: parses with the GIL
  released and writes columns directly; it takes only what orjson would give exactly.

None can go: msgspec and serde_json are the speed, orjson the semantics (and the
tests' oracle), the stdlib the diagnosis of bad input.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import operator
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import Annotated, Any, overload

import msgspec
import numpy as np
import orjson

from monitor.clock import Clock
from monitor.errors import EventError, InvalidEvent, MalformedEvent, MonitorError

log = logging.getLogger("monitor.events")

try:  # the compiled decoder (native/, Rust): optional, the Python path does the same work
    import monitor_native as _native
except ImportError:  # pragma: no cover - depends on the install
    _native = None

#: Whether the compiled decoder is installed (``pip install ./native``; scripts/setup.sh does).
NATIVE_AVAILABLE = _native is not None

#: The longest ``model_version`` accepted (characters), as for the model's name.
MAX_VERSION_CHARS = 200

# Bounded reasons: these are metric label values.
REASONS = (
    "too_large",
    "invalid_utf8",
    "invalid_unicode",
    "malformed_json",
    "non_finite_number",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_timestamp",
    "timestamp_in_future",
    "unknown_model",
    "too_many_models",
    "invalid_model_name",
    "too_many_features",
    "label_not_for_task",
)


@dataclass(slots=True)
class RawMessage:
    """What the source hands the decoder: bytes plus where they came from."""

    value: bytes | None
    timestamp: float  # record time, epoch seconds (fallback event time)
    topic: str = ""
    partition: int = 0
    offset: int = 0
    key: bytes | None = None


Run = tuple[str, int, int, int]


class MessageBatch:
    """One polled batch, in columns: what the source hands the decoder.

    Why columns and not one :class:`RawMessage` per record: a poll brings thousands of
    records and the decoder needs little of each (the compiled decoder takes the list of
    values as it is), while building an object per record cost about 1 µs per event, a
    fifth of the decode (issue 19). A :class:`RawMessage` is made only for a message that
    needs one: the Python full path, a rejection (dead letters name partition and offset).

    ``values``, ``timestamps`` (record time, epoch seconds), ``offsets`` and ``keys`` are
    aligned by index. ``runs`` says where each message came from: ``(topic, partition,
    start, end)`` covers messages ``start:end``; the runs are in index order and together
    cover the batch (a poll gives one run per partition; a list of messages may give more).
    """

    __slots__ = ("_messages", "_starts", "keys", "offsets", "runs", "timestamps", "values")

    def __init__(
        self,
        values: list[bytes | None] | None = None,
        timestamps: list[float] | None = None,
        offsets: list[int] | None = None,
        keys: list[bytes | None] | None = None,
        runs: list[Run] | None = None,
        *,
        messages: list[RawMessage] | None = None,
    ) -> None:
        self.values: list[bytes | None] = values if values is not None else []
        self.timestamps: list[float] = timestamps if timestamps is not None else []
        self.offsets: list[int] = offsets if offsets is not None else []
        self.keys: list[bytes | None] = keys if keys is not None else []
        self.runs: list[Run] = runs if runs is not None else []
        self._starts: list[int] | None = None
        # When made from RawMessage objects: those, handed back as they are (a rejection
        # names the very message it was given).
        self._messages = messages
        n = len(self.values)
        ends = [0] + [r[3] for r in self.runs]
        if (
            not (len(self.timestamps) == len(self.offsets) == len(self.keys) == n)
            or (messages is not None and len(messages) != n)
            or any(r[2] != e or r[3] < r[2] for r, e in zip(self.runs, ends, strict=False))
            or ends[-1] != n
        ):
            raise MonitorError("MessageBatch: columns and runs do not line up")

    @classmethod
    def of(cls, messages: MessageBatch | Sequence[RawMessage]) -> MessageBatch:
        """``messages`` as a batch (itself when it is one): the decoder's and the service's
        entry points take either, a list being what tests and tools write naturally."""
        if isinstance(messages, MessageBatch):
            return messages
        runs: list[Run] = []
        start = 0
        for (topic, partition), run in groupby(map(_TOPIC_PARTITION, messages)):
            end = start + sum(1 for _ in run)
            runs.append((topic, partition, start, end))
            start = end
        return cls(
            list(map(_VALUE, messages)),
            list(map(_RECORD_TIME, messages)),
            list(map(_OFFSET, messages)),
            list(map(_KEY, messages)),
            runs,
            messages=list(messages),
        )

    def add_run(
        self,
        topic: str,
        partition: int,
        values: Iterable[bytes | None],
        timestamps: Iterable[float],
        offsets: Iterable[int],
        keys: Iterable[bytes | None],
    ) -> None:
        """Append one partition's records (in offset order), column by column."""
        if self._messages is not None:
            raise MonitorError("MessageBatch.add_run: the batch was made from messages")
        start = len(self.values)
        self.values += values
        self.timestamps += timestamps
        self.offsets += offsets
        self.keys += keys
        end = len(self.values)
        if not len(self.timestamps) == len(self.offsets) == len(self.keys) == end:
            raise MonitorError("MessageBatch.add_run: columns of different lengths")
        if end > start:
            self.runs.append((topic, partition, start, end))
            self._starts = None

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[RawMessage]:
        for topic, partition, start, end in self.runs:
            for i in range(start, end):
                yield self.message(i, topic, partition)

    @overload
    def __getitem__(self, i: int) -> RawMessage: ...
    @overload
    def __getitem__(self, i: slice) -> MessageBatch: ...
    def __getitem__(self, i: int | slice) -> RawMessage | MessageBatch:
        """Message ``i`` as a :class:`RawMessage` (made on demand); a slice as a batch."""
        if isinstance(i, slice):
            return self._slice(i)
        if not 0 <= i < len(self.values):
            raise IndexError(i)
        if self._starts is None:
            self._starts = [r[2] for r in self.runs]
        topic, partition, _, _ = self.runs[bisect_right(self._starts, i) - 1]
        return self.message(i, topic, partition)

    def _slice(self, where: slice) -> MessageBatch:
        """Messages ``start:stop`` (lists sliced in C: no work per message)."""
        start, stop, step = where.indices(len(self.values))
        if step != 1:
            raise ValueError("MessageBatch slices take every message (step 1)")
        stop = max(start, stop)
        return MessageBatch(
            self.values[start:stop],
            self.timestamps[start:stop],
            self.offsets[start:stop],
            self.keys[start:stop],
            [
                (topic, partition, max(s, start) - start, min(e, stop) - start)
                for topic, partition, s, e in self.runs
                if s < stop and e > start
            ],
            messages=None if self._messages is None else self._messages[start:stop],
        )

    def without(self, partitions: Collection[tuple[str, int]]) -> MessageBatch:
        """The batch less the messages of ``partitions`` (``(topic, partition)`` pairs):
        what the service drops of a batch polled before those partitions were revoked."""
        if not any((r[0], r[1]) in partitions for r in self.runs):
            return self
        return self.take(
            [i for t, p, s, e in self.runs if (t, p) not in partitions for i in range(s, e)]
        )

    def message(self, i: int, topic: str, partition: int) -> RawMessage:
        """Message ``i`` of a run of ``(topic, partition)``, as a :class:`RawMessage`."""
        if self._messages is not None:
            return self._messages[i]
        return RawMessage(
            self.values[i], self.timestamps[i], topic, partition, self.offsets[i], self.keys[i]
        )

    def topic_counts(self) -> Counter[str]:
        """Messages per topic."""
        counts: Counter[str] = Counter()
        for topic, _, start, end in self.runs:
            counts[topic] += end - start
        return counts

    def offset_ranges(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(lowest, highest) offset per partition; runs of one partition are merged."""
        out: dict[tuple[str, int], tuple[int, int]] = {}
        offsets = self.offsets
        for topic, partition, start, end in self.runs:
            run = offsets[start:end]
            lo, hi = min(run), max(run)
            seen = out.get((topic, partition))
            out[topic, partition] = (
                (lo, hi) if seen is None else (min(seen[0], lo), max(seen[1], hi))
            )
        return out

    def _split(self, rows: list[int]) -> Iterator[tuple[str, int, int, int]]:
        """(topic, partition, k, j) per run holding some of ``rows`` (ascending): rows[k:j]."""
        k = 0
        for topic, partition, _, end in self.runs:
            j = bisect_left(rows, end, k)
            if j > k:
                yield topic, partition, k, j
            k = j

    def partitions_of(self, rows: list[int]) -> set[tuple[str, int]]:
        """The partitions the messages at ``rows`` (ascending) came from.

        A batch of one run (one partition, the usual poll of one consumer of a
        model-keyed topic) answers without splitting: asked once per model per batch,
        the split was a Python pass per model (issue 19, 50 models).
        """
        runs = self.runs
        if len(runs) == 1:
            return {(runs[0][0], runs[0][1])} if rows else set()
        return {(topic, partition) for topic, partition, _, _ in self._split(rows)}

    def take(self, rows: list[int]) -> MessageBatch:
        """The messages at ``rows`` (ascending indices), in order, as a batch of their own."""
        values, stamps, offsets, keys = self.values, self.timestamps, self.offsets, self.keys
        messages = self._messages
        return MessageBatch(
            [values[i] for i in rows],
            [stamps[i] for i in rows],
            [offsets[i] for i in rows],
            [keys[i] for i in rows],
            list(self._split(rows)),
            messages=None if messages is None else [messages[i] for i in rows],
        )


@dataclass(slots=True)
class Rejected:
    """A message that broke the contract; ``reason`` is one of :data:`REASONS`."""

    message: RawMessage
    reason: str
    field: str | None
    error: str
    model: str | None = None


@dataclass(slots=True)
class FeatureColumns:
    """A batch's features already in columns, as the native decoder hands them over.

    Built for one model's schema (the names below, in the model's column order):
    ``numeric[i, j]`` is event ``i``'s value of ``numeric_names[j]`` (NaN where the
    feature is absent or null); ``categorical[j][i]`` is its string for
    ``categorical_names[j]`` (``None`` where absent or null). ``unknown`` counts the
    events carrying a feature outside both lists.
    """

    numeric_names: tuple[str, ...]
    numeric: np.ndarray
    categorical_names: tuple[str, ...]
    categorical: list[list[str | None]]
    unknown: int


@dataclass(slots=True)
class ModelEvents:
    """The valid prediction events of one model in one batch, in arrival order, by field.

    The features come either as one dict per event (``features``) or, from the
    native decoder, already in columns (``columns``; ``features`` is then empty).
    ``record_time_rows`` lists, ascending, the events without a timestamp of their
    own: theirs is the Kafka record time, which must not drive the model's event
    clock (see :meth:`monitor.cadence.Cadence.event_times`).
    """

    model: str
    event_ids: list[str] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    versions: list[str | None] = field(default_factory=list)
    features: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    partitions: set[tuple[str, int]] = field(default_factory=set)
    columns: FeatureColumns | None = None
    record_time_rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.event_ids)

    def slice(self, start: int, end: int) -> ModelEvents:
        """Events ``start:end`` (a model's batch split at a reference switch or after the
        events that complete a learned reference)."""
        if self.columns is not None:  # never: columns only come for a settled schema
            raise MonitorError(f"model {self.model!r}: columnar events cannot be split")
        rows = self.record_time_rows
        return ModelEvents(
            model=self.model,
            event_ids=self.event_ids[start:end],
            timestamps=self.timestamps[start:end],
            versions=self.versions[start:end],
            features=self.features[start:end],
            predictions=self.predictions[start:end],
            partitions=self.partitions,
            record_time_rows=[r - start for r in rows if start <= r < end] if rows else [],
        )

    def take(self, rows: list[int]) -> ModelEvents:
        """The events at ``rows`` (ascending), in order: a batch's sample (monitor/sampling.py).

        Columns are kept (a subset of a settled schema's rows is still in it); their
        ``unknown`` count is of the whole batch and cannot be split, so the subset's is 0
        and the caller counts the batch's.
        """
        cols = self.columns
        if cols is not None:
            cols = FeatureColumns(
                cols.numeric_names,
                cols.numeric[rows],
                cols.categorical_names,
                [[c[i] for i in rows] for c in cols.categorical],
                0,
            )
        feats = self.features
        own = set(self.record_time_rows)
        return ModelEvents(
            model=self.model,
            event_ids=[self.event_ids[i] for i in rows],
            timestamps=[self.timestamps[i] for i in rows],
            versions=[self.versions[i] for i in rows],
            features=[feats[i] for i in rows] if feats else [],
            predictions=[self.predictions[i] for i in rows],
            partitions=self.partitions,
            columns=cols,
            record_time_rows=[j for j, i in enumerate(rows) if i in own] if own else [],
        )

    def extend(self, other: ModelEvents) -> None:
        """Append ``other``'s events after these (same model), keeping arrival order.

        Only events by row can be joined: columns are built for one whole batch.
        """
        if self.columns is not None or other.columns is not None:
            raise MonitorError(f"model {self.model!r}: columnar events cannot be joined")
        self.record_time_rows += [len(self.event_ids) + r for r in other.record_time_rows]
        self.event_ids += other.event_ids
        self.timestamps += other.timestamps
        self.versions += other.versions
        self.features += other.features
        self.predictions += other.predictions
        self.partitions |= other.partitions


@dataclass(slots=True)
class LabelEvents:
    """The valid label events of one model in one batch."""

    model: str
    event_ids: list[str] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    partitions: set[tuple[str, int]] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.event_ids)

    def extend(self, other: LabelEvents) -> None:
        """Append ``other``'s labels after these (same model)."""
        self.event_ids += other.event_ids
        self.labels += other.labels
        self.timestamps += other.timestamps
        self.partitions |= other.partitions


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


def _bounded_int(text: str) -> int | float:
    """Integers beyond 64 bits (which orjson refuses) become floats: past the float range
    that is inf, which the value-level check counts, instead of an OverflowError later."""
    value = int(text)
    return value if -(2**63) <= value < 2**64 else float(text)


def parse_json(value: bytes | None, max_bytes: int) -> dict[str, Any]:
    """Parse one message into a JSON object, or raise :class:`MalformedEvent` saying why."""
    if value is None:
        raise MalformedEvent("malformed_json", "empty message (null value)")
    if len(value) > max_bytes:
        raise MalformedEvent("too_large", f"message of {len(value)} bytes exceeds {max_bytes}")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        obj = _diagnose(value, exc)
    if not isinstance(obj, dict):
        raise MalformedEvent("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _diagnose(value: bytes, exc: Exception) -> Any:
    """Slow path, bad input only: tell apart bad UTF-8, NaN/Infinity literals and
    numbers too large for a double (which the stdlib parses to inf: kept, and the
    value-level check counts them)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEvent("invalid_utf8", "message is not valid UTF-8") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int)
    except ValueError as exc2:
        if "non-finite" in str(exc2):
            raise MalformedEvent("non_finite_number", str(exc2)) from None
        raise MalformedEvent("malformed_json", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedEvent("malformed_json", "JSON nested too deeply") from None
    # The stdlib, unlike orjson, msgspec and the compiled decoder, accepts lone surrogate
    # escapes ("\ud800"): strings that cannot be encoded as UTF-8, so could not be written
    # to Prometheus, SQLite, JSON, logs or Kafka headers. Only events that orjson refused
    # get here, so the walk costs nothing on the hot path.
    _reject_surrogates(obj, None)
    return obj


def printable(text: str, limit: int = 80) -> str:
    """``text`` bounded and safe to write anywhere (logs, headers, metrics): lone surrogates
    as ``\\udXXX`` escapes, so the result is always valid UTF-8."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _reject_surrogates(value: Any, path: str | None) -> None:
    """Raise ``invalid_unicode`` naming the first string (key or value) in ``value`` that
    holds a lone surrogate; ``path`` is where ``value`` sits (``features.region``).

    Iterative: the stdlib parses nesting close to the recursion limit."""
    stack: list[tuple[Any, str | None]] = [(value, path)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _has_surrogate(value):
                raise MalformedEvent(
                    "invalid_unicode",
                    f"string with a lone UTF-16 surrogate escape: {value[:40]!a}",
                    path,
                )
        elif isinstance(value, dict):
            inner = []
            for k, v in value.items():
                where = printable(k, 100) if path is None else f"{path}.{printable(k, 100)}"
                if _has_surrogate(k):
                    raise MalformedEvent(
                        "invalid_unicode",
                        f"key with a lone UTF-16 surrogate escape: {k[:40]!a}",
                        where[:200],
                    )
                inner.append((v, where[:200]))
            stack.extend(reversed(inner))
        elif isinstance(value, list):
            at = "" if path is None else path
            stack.extend((v, f"{at}[{i}]"[:200]) for i, v in reversed(list(enumerate(value))))


#: Epoch numbers from here on are milliseconds, below it seconds. 1e11 seconds is the year
#: 5138, 1e11 milliseconds is March 1973: no real event time is ambiguous, so the two units
#: are told apart by magnitude alone (Java's ``System.currentTimeMillis()`` and JavaScript's
#: ``Date.now()`` send milliseconds; most others send seconds).
EPOCH_MILLIS_FROM = 1e11
#: Epoch milliseconds at and beyond this (the year 5138 again) are out of range: rejected,
#: not guessed (microseconds, nanoseconds or garbage).
EPOCH_MILLIS_UNTIL = 1e14


#: Epoch 0 (1970-01-01T00:00:00Z) is the zero value of a clock never set (a default
#: ``timestamp: 0``, ``new Date(0)``), not when an event happened: a producer sending it
#: stamps every event alike, and a time-window model never evaluated. Rejected as the
#: unset times before 1970 are.
_EPOCH_ZERO = "epoch 0 (1970-01-01T00:00:00Z) is an unset time, as times before 1970 are"


def parse_timestamp(value: Any, fallback: float) -> float:
    """RFC 3339 string, epoch seconds or epoch milliseconds to epoch seconds.

    ``None`` means the record time. A number below :data:`EPOCH_MILLIS_FROM` is
    seconds, one from there below :data:`EPOCH_MILLIS_UNTIL` milliseconds; a larger,
    negative or non-finite number is rejected.
    """
    if value is None:
        return fallback
    if isinstance(value, bool):
        raise InvalidEvent(
            "invalid_timestamp", "must be an RFC 3339 string or epoch seconds", "timestamp"
        )
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise InvalidEvent(
                "invalid_timestamp", "epoch time must be finite and >= 0", "timestamp"
            )
        if value == 0:
            raise InvalidEvent("invalid_timestamp", _EPOCH_ZERO, "timestamp")
        if value < EPOCH_MILLIS_FROM:
            return float(value)
        if value < EPOCH_MILLIS_UNTIL:
            # int / int and float / float are both correctly rounded: the compiled decoder
            # divides the same exact double by 1000.0 and gets the same bits.
            return value / 1000
        raise InvalidEvent(
            "invalid_timestamp",
            "epoch time out of range: neither seconds (< 1e11) nor milliseconds (< 1e14)",
            "timestamp",
        )
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent(
                "invalid_timestamp", "not an RFC 3339 timestamp", "timestamp"
            ) from None
        if dt.tzinfo is None:
            raise InvalidEvent(
                "invalid_timestamp", "RFC 3339 timestamp needs a UTC offset", "timestamp"
            )
        ts = dt.timestamp()
        if ts == 0:
            raise InvalidEvent("invalid_timestamp", _EPOCH_ZERO, "timestamp")
        if ts < 0:
            # As an epoch number below 0 is: an unset time (Go's zero time
            # 0001-01-01T00:00:00Z, .NET's DateTime.MinValue), not when the event happened.
            raise InvalidEvent(
                "invalid_timestamp",
                "before 1970-01-01T00:00:00Z (an unset time?), as epoch times below 0 are",
                "timestamp",
            )
        return ts
    raise InvalidEvent(
        "invalid_timestamp", "must be an RFC 3339 string or epoch seconds", "timestamp"
    )


class FutureBound:
    """How far ahead of the monitor's clock an event's own time may be: ``seconds``.

    Why: a time-window model evaluates when event time crosses its next boundary, and its
    event clock is the newest event time seen (:class:`monitor.cadence.Cadence`). One event
    stamped far ahead (the year 3000, or a unit slip that still reads as epoch seconds)
    moved both there, so no later event crossed a boundary again and the model never
    evaluated again, also after a restart (the clock is checkpointed). Such an event is
    rejected whole (``timestamp_in_future``), as any other broken field. The reference is
    the monitor's own clock (the service's injected one), never the Kafka record time,
    which producers set and tests fill with dummies. Only a ``timestamp`` the event
    carries is checked: without one the event has its record time, which is not the
    event's to answer for (and never moves the model's event clock), so it is not
    rejected for it; but a record time beyond the bound (a producer whose clock runs
    ahead, on a broker that does not bound ``CreateTime``) is taken as the bound: a
    model whose events carry no time is timed by record times alone, and one record
    of the year 2100 stopped its time-window evaluations as the year-3000 event did.
    """

    __slots__ = ("clock", "seconds")

    def __init__(self, clock: Clock, seconds: float) -> None:
        if not seconds > 0:
            raise MonitorError(f"FutureBound: seconds must be > 0, got {seconds!r}")
        self.clock = clock
        self.seconds = float(seconds)

    def latest(self) -> tuple[float, float]:
        """(now, the latest event time accepted now)."""
        now = self.clock.time()
        return now, now + self.seconds

    def check(self, ts: float) -> None:
        """Raise ``timestamp_in_future`` when ``ts`` is beyond now + ``seconds``."""
        now, latest = self.latest()
        if ts > latest:
            raise InvalidEvent(
                "timestamp_in_future",
                f"{utc_text(ts)} is {duration_text(ts - now)} after the monitor's clock; "
                f"at most {self.seconds:g} s ahead is accepted",
                "timestamp",
            )


def utc_text(ts: float) -> str:
    """``ts`` as RFC 3339 UTC (seconds), or as a number where a datetime cannot hold it."""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"epoch {ts:.0f}"


def duration_text(seconds: float) -> str:
    """A rough, readable length: the unit a person would say (973 years, 3 days, 2 h)."""
    for unit, size in (("years", 365.25 * 86_400), ("days", 86_400.0), ("h", 3_600.0)):
        if seconds >= 2 * size:
            return f"{seconds // size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _require_str(obj: dict[str, Any], name: str, max_chars: int) -> str:
    value = obj.get(name)
    if value is None:
        raise InvalidEvent("missing_field", "required field is missing", name)
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"must be a string, got {type(value).__name__}", name)
    if not value or len(value) > max_chars:
        raise InvalidEvent(
            "wrong_type", f"must be a non-empty string of at most {max_chars} characters", name
        )
    return value


def _check_prediction(value: Any) -> None:
    if value is None:
        raise InvalidEvent("missing_field", "required field is missing", "prediction")
    if isinstance(value, bool | str):
        return
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidEvent("non_finite_number", "must be finite", "prediction")
        return
    if isinstance(value, dict):
        if not value:
            raise InvalidEvent("wrong_type", "class scores must not be empty", "prediction")
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise InvalidEvent(
                    "wrong_type", "class scores must be finite numbers", f"prediction.{k}"[:200]
                )
        return
    raise InvalidEvent(
        "wrong_type", "must be a number, a string or an object of class scores", "prediction"
    )


def validate_prediction(
    obj: dict[str, Any], fallback_ts: float, max_id_chars: int, future: FutureBound | None = None
) -> tuple[str, str, float]:
    """Check one prediction event; return (event_id, model, timestamp).

    ``future``: the bound on an own ``timestamp`` ahead of the monitor's clock (none: no bound).
    """
    event_id = _require_str(obj, "event_id", max_id_chars)
    model = _require_str(obj, "model", 200)
    version = obj.get("model_version")
    if version is not None and (not isinstance(version, str) or len(version) > MAX_VERSION_CHARS):
        # Bounded like the model's name: a version is a label of windows, segments, metrics
        # and pages, so a megabyte of it must not travel that far.
        raise InvalidEvent(
            "wrong_type",
            f"must be a string of at most {MAX_VERSION_CHARS} characters",
            "model_version",
        )
    features = obj.get("features")
    if features is None:
        raise InvalidEvent("missing_field", "required field is missing", "features")
    if not isinstance(features, dict):
        raise InvalidEvent(
            "wrong_type", f"must be an object, got {type(features).__name__}", "features"
        )
    _check_prediction(obj.get("prediction"))
    return event_id, model, _event_time(obj.get("timestamp"), fallback_ts, future)


def validate_label(
    obj: dict[str, Any], fallback_ts: float, max_id_chars: int, future: FutureBound | None = None
) -> tuple[str, str, float]:
    """Check one label event; return (event_id, model, timestamp) (``future``: as for
    :func:`validate_prediction`)."""
    event_id = _require_str(obj, "event_id", max_id_chars)
    model = _require_str(obj, "model", 200)
    label = obj.get("label")
    if label is None:
        raise InvalidEvent("missing_field", "required field is missing", "label")
    if isinstance(label, float) and not math.isfinite(label):
        raise InvalidEvent("non_finite_number", "must be finite", "label")
    if not isinstance(label, bool | int | float | str):
        raise InvalidEvent("wrong_type", "must be a number, a string or a boolean", "label")
    return event_id, model, _event_time(obj.get("timestamp"), fallback_ts, future)


def _event_time(value: Any, fallback: float, future: FutureBound | None) -> float:
    """The event's time (:func:`parse_timestamp`); an own one checked against ``future``,
    the record time standing in for a missing one held to it (:class:`FutureBound`)."""
    ts = parse_timestamp(value, fallback)
    if future is not None:
        if value is not None:
            future.check(ts)
        else:
            ts = min(ts, future.latest()[1])
    return ts


# Integers msgspec may hand the fast path: it would keep a literal beyond 64 bits as an
# int, where orjson and the full path's stdlib fallback give a float (or inf), so such
# events must fail here and take the full path. (msgspec bounds must fit in an int64, so
# [2**63, 2**64), which orjson keeps as int, also takes the full path: same result.)
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _FastPrediction(msgspec.Struct, gc=False):
    """The shape of a well-formed prediction event, for the fast path only.

    Narrower than the contract on purpose: what does not fit (a missing or mistyped
    field, a feature value that is an array or an object, class-score predictions,
    a number msgspec would not map exactly as the full path does) fails to decode
    and takes the full path, which accepts or rejects it as it always has. Unknown
    fields are ignored, as in the contract. ``gc=False``: instances hold only
    strings, numbers and a dict of scalars, so they cannot be part of a cycle, and
    are dropped right after decoding.
    """

    event_id: str
    model: str
    features: dict[str, float | _Int64 | str | bool | None]
    prediction: float | _Int64 | str | bool
    model_version: str | None = None
    # A string, parsed by datetime.fromisoformat as on the full path: msgspec's own
    # datetime parsing differs (it accepts "2026-11-26t12:00:00z", rounds a 7th
    # fraction digit where fromisoformat truncates, rejects "20261126T120000Z").
    timestamp: str | float | _Int64 | None = None


_FAST_DECODER = msgspec.json.Decoder(_FastPrediction)

_VALUE = operator.attrgetter("value")
_TOPIC = operator.attrgetter("topic")
_RECORD_TIME = operator.attrgetter("timestamp")
_OFFSET = operator.attrgetter("offset")
_KEY = operator.attrgetter("key")
_TOPIC_PARTITION = operator.attrgetter("topic", "partition")


def _unbound(value: Any) -> None:
    """Placeholder for a group's list appends before the first group is bound."""
    raise AssertionError("no model group bound")


@dataclass(slots=True)
class DecodedBatch:
    """One polled batch after decoding: valid events by model, what was rejected, and how.

    ``native_events`` and ``python_events`` count the valid prediction events each
    decoder produced; ``native_error`` is set (the exception, bounded and printable)
    when the compiled decoder failed on the batch, which the Python path then took whole.
    """

    predictions: dict[str, ModelEvents] = field(default_factory=dict)
    labels: dict[str, LabelEvents] = field(default_factory=dict)
    rejected: list[Rejected] = field(default_factory=list)
    native_events: int = 0
    python_events: int = 0
    native_error: str | None = None

    def merge(self, other: DecodedBatch) -> None:
        """Add ``other`` (decoded from later messages) to this batch, model by model.

        The event counters add up; ``native_error`` is kept from this batch.
        """
        self.rejected.extend(other.rejected)
        for model, ev in other.predictions.items():
            self.predictions.setdefault(model, ModelEvents(model)).extend(ev)
        for model, lab in other.labels.items():
            self.labels.setdefault(model, LabelEvents(model)).extend(lab)
        self.native_events += other.native_events
        self.python_events += other.python_events


#: Model name -> (numeric feature names, categorical feature names), in column order.
ColumnarSchemas = Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]


class Decoder:
    """Decodes messages of both topics; stateless except for its settings.

    ``accept_model`` decides per model name whether events are tracked (it
    enforces the unknown-model policy and the model cap); it returns ``None`` to
    accept or a reason to reject. ``accept_label_model`` (default: the same) decides
    for label events: a label alone must not always make a model (and take a slot of
    the cap), and its verdict is not cached, since a prediction may admit the model.
    ``future`` bounds how far ahead of the monitor's clock an event's own timestamp may be
    (:class:`FutureBound`; the service passes its clock); without it, no bound (a decoder
    of its own, for tools and tests, has no monitor clock to hold times to).
    ``check_label(model, label)`` says why a label value cannot be graded by its model's
    task (a bounded reason) or ``None``: such a label is rejected here
    (``label_not_for_task``), so it is dead-lettered with the reason in its message, not
    only counted later where no message is left to dead-letter.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int,
        max_event_id_chars: int = 256,
        labels_topic: str | None = None,
        accept_model: Any = None,
        accept_label_model: Any = None,
        native: bool = True,
        future: FutureBound | None = None,
        check_label: Callable[[str, Any], str | None] | None = None,
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self._check_label = check_label
        self.max_event_id_chars = max_event_id_chars
        self.labels_topic = labels_topic
        self._accept_model = accept_model or (lambda model: None)
        self._accept_label_model = accept_label_model
        self._accepted: dict[str, str | None] = {}
        self.native = native and _native is not None
        self.future = future

    def _latest(self) -> float:
        """The latest own event time accepted now (inf without a bound)."""
        return math.inf if self.future is None else self.future.latest()[1]

    def _model_verdict(self, model: str) -> str | None:
        verdict = self._accepted.get(model, "?")
        if verdict == "?":
            verdict = self._accept_model(model)
            # Cache accept and the unknown-model verdict (config-driven); a model-cap
            # rejection may change once models are dropped, so it is not cached.
            if verdict in (None, "unknown_model") and len(self._accepted) < 100_000:
                self._accepted[model] = verdict
        return verdict

    def _label_verdict(self, model: str) -> str | None:
        if self._accept_label_model is None or (
            model in self._accepted and self._accepted[model] is None
        ):
            return self._model_verdict(model)
        return self._accept_label_model(model)

    def decode(
        self, messages: MessageBatch | Sequence[RawMessage], schemas: ColumnarSchemas | None = None
    ) -> DecodedBatch:
        """Decode one polled batch; valid events grouped by model, the rest rejected.

        ``schemas`` names the models whose schema is settled (the pipeline's
        :meth:`ModelMonitor.columnar_schema`): where the compiled decoder is
        installed and ``native`` is true, it decodes those models' events straight
        into :class:`FeatureColumns` (:meth:`_decode_native`); everything else
        takes the Python path (:meth:`decode_python`). The batch carries the counts
        of both and the compiled decoder's failure, if any.
        """
        batch = MessageBatch.of(messages)
        out: DecodedBatch | None = None
        error: str | None = None
        if self.native and schemas:
            out, error = self._decode_native(batch, schemas)
        if out is None:
            out = self.decode_python(batch)
        out.native_error = error
        total = native = 0
        for group in out.predictions.values():
            total += len(group)
            if group.columns is not None:
                native += len(group)
        out.native_events = native
        out.python_events = total - native
        return out

    def _decode_native(
        self, batch: MessageBatch, schemas: ColumnarSchemas
    ) -> tuple[DecodedBatch | None, str | None]:
        """The compiled decoder for the models in ``schemas``, Python for the rest.

        ``monitor_native.decode_predictions`` accepts an event only where the
        Python fast path would accept it *and* every known feature has the type
        its column needs (a number or null for a numeric one, a string or null for
        a categorical one); it hands back every other message by index (another
        topic, a model without a schema, a damaged event, a string in a numeric
        feature, ...), alone, and :meth:`decode_python` accepts, counts and rejects
        those as it always has. So one bad message costs the compiled path that
        message only.

        Each model keeps one arrival order: where the Python path *accepts* a
        handed-back event of a model that also has native events in the batch (an
        odd but valid event, e.g. a string in a numeric feature), that model's
        events are decoded together by the Python path, in message order, as if
        the compiled decoder were not installed. Rejected messages, the usual
        handed-back ones, leave the model's columns alone.

        Returns ``(None, None)`` when no event is for the compiled decoder, and
        ``(None, error)`` when it failed (a bug: the caller takes the Python path).
        """
        assert _native is not None
        accepted = self._accepted
        schemas = {m: s for m, s in schemas.items() if accepted.get(m, "?") is None}
        if not schemas:
            return None, None
        n = len(batch)
        if not n:
            return None, None
        labels_topic = self.labels_topic
        max_bytes = self.max_message_bytes
        values: list[Any] = batch.values  # the list as polled: no copy, no object per record
        picked: list[int] | None = None  # None: every message is a candidate
        if (
            set(map(type, values)) != {bytes}
            or max(map(len, values)) > max_bytes
            or (labels_topic is not None and any(r[0] == labels_topic for r in batch.runs))
        ):
            picked = [
                i
                for topic, _, start, end in batch.runs
                if topic != labels_topic
                for i in range(start, end)
                if type(v := values[i]) is bytes and len(v) <= max_bytes
            ]
            values = [values[i] for i in picked]
        try:
            fallback, groups = _native.decode_predictions(values, schemas, self.max_event_id_chars)
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            raise
        except BaseException as exc:  # a Rust panic arrives as a BaseException (PanicException)
            # A bug in the compiled decoder must not stop the service (the batch would fail
            # again after every restart): the caller counts and logs it, Python decodes.
            log.debug("compiled decoder failed on %d messages", len(values), exc_info=True)
            return None, printable(f"{type(exc).__name__}: {exc}", 300)
        if not groups:
            return None, None
        # Events stamped too far ahead of the monitor's clock (FutureBound), before 1970 or
        # at epoch 0 (the compiled decoder bounds none), found on the columns at once: they join
        # the handed-back messages, so the Python path rejects them with its reason and
        # message, and their model's accepted events are decoded by it in message order
        # (as a mixed model's below). Rare: bad input only.
        latest = self._latest()
        late: set[str] = set()
        # One test over every model's times first (a model's part of a batch of many models
        # is ~100 events: a test per model cost more than its rows, issue 19); the models
        # are looked at one by one only when some time is out of bounds.
        every = np.concatenate([g[4] for g in groups]) if len(groups) > 1 else groups[0][4]
        # NaN (no timestamp: the record time) is neither ahead nor at or before epoch 0.
        if ((every > latest) | (every <= 0)).any():
            for g in groups:
                ahead = (g[4] > latest) | (g[4] <= 0)
                if ahead.any():
                    late.add(g[0])
                    fallback = [*fallback, *(g[1][i] for i in np.flatnonzero(ahead).tolist())]
        untimed = bool(np.isnan(every).any())  # some event without a timestamp
        if late:
            fallback = sorted(fallback)
        if picked is not None:
            fallback = [picked[i] for i in fallback]
            groups = [(g[0], [picked[i] for i in g[1]], *g[2:]) for g in groups]
            others = set(range(n)).difference(picked)
            fallback = sorted(others.union(fallback))
        out = self.decode_python(batch.take(fallback)) if fallback else DecodedBatch()
        mixed = [g for g in groups if g[0] in out.predictions or g[0] in late]
        if mixed:
            rows = sorted(set(fallback).union(*(g[1] for g in mixed)))
            again = self.decode_python(batch.take(rows))
            for g in mixed:
                if g[0] in again.predictions:  # none left when all its events were late
                    out.predictions[g[0]] = again.predictions[g[0]]
        record_time = batch.timestamps.__getitem__
        for model, rows, ids, versions, stamps, predictions, num, cat, unknown in groups:
            if model in out.predictions or model in late:
                continue  # mixed: decoded by Python above
            record_rows: list[int] = []
            missing = np.isnan(stamps) if untimed else None
            if missing is not None and missing.any():
                # No timestamp in the event: the record's time, as on the Python path.
                record = np.fromiter(map(record_time, rows), np.float64, len(rows))
                np.minimum(record, latest, out=record)  # never beyond the bound (FutureBound)
                stamps = np.where(missing, record, stamps)
                record_rows = np.flatnonzero(missing).tolist()
            numeric_names, categorical_names = schemas[model]
            out.predictions[model] = ModelEvents(
                model,
                ids,
                stamps.tolist(),
                versions,
                [],
                predictions,
                batch.partitions_of(rows),
                FeatureColumns(numeric_names, num, categorical_names, cat, unknown),
                record_rows,
            )
        return out, None

    def decode_python(self, messages: MessageBatch | Sequence[RawMessage]) -> DecodedBatch:
        """The Python path: every model, every event, dicts of features.

        Hot path: a prediction event is decoded by msgspec straight into
        :class:`_FastPrediction`, which does the type checks in C, then the few
        remaining checks run inline. Any event that fails there, for whatever
        reason, is decoded and validated again by the full path
        (:meth:`_decode_one`), which raises the same reason, field and message as
        it always has. So the fast path only decides *fast acceptance*; every
        rejection is the full path's, and an accepted event is exactly what the
        full path would have produced (``tests/test_decoder_fast.py`` holds both to
        a frozen copy of the previous decoder).
        """
        out = DecodedBatch()
        preds = out.predictions
        labels_topic = self.labels_topic
        max_bytes = self.max_message_bytes
        max_id = self.max_event_id_chars
        accepted = self._accepted
        full_path = self._decode_one
        decode_fast = _FAST_DECODER.decode
        isfinite = math.isfinite
        fromiso = datetime.fromisoformat
        latest = self._latest()  # own event times beyond it take the full path (rejected)
        # Each model's group with its five list appends bound once per batch (``sinks``),
        # not looked up per event; the current model's live in locals. Interleaved models
        # switch every event, so a switch must stay one dict lookup.
        sinks: dict[str, tuple[ModelEvents, Any, Any, Any, Any, Any]] = {}
        group_model: str | None = None
        group: ModelEvents | None = None
        add_id = add_ts = add_version = add_features = add_prediction = _unbound
        group_topic: str | None = None
        group_partition = -1
        batch = MessageBatch.of(messages)
        stamps = batch.timestamps
        runs = iter(batch.runs)
        topic, partition, run_end, ours = "", -1, 0, True
        for i, value in enumerate(batch.values):
            while i == run_end:  # the next partition's records
                topic, partition, _, run_end = next(runs)
                ours = labels_topic is None or topic != labels_topic
            if ours and type(value) is bytes and len(value) <= max_bytes:
                try:
                    # msgspec skips unknown fields without checking their UTF-8: check it
                    # here, where it is cheap (most events are pure ASCII).
                    if not value.isascii():
                        value.decode()
                    event = decode_fast(value)
                except (ValueError, RecursionError):  # msgspec and UTF-8 errors are ValueErrors
                    event = None
                if event is not None:
                    event_id = event.event_id
                    model = event.model
                    prediction = event.prediction
                    stamp = event.timestamp
                    ts: float | None = None
                    if (
                        0 < len(event_id) <= max_id
                        and 0 < len(model) <= 200
                        and (event.model_version is None or len(event.model_version) <= 200)
                        and (type(prediction) is not float or isfinite(prediction))
                        and accepted.get(model, "?") is None
                    ):
                        if type(stamp) is str:
                            try:
                                dt = fromiso(stamp)
                            except ValueError:
                                dt = None
                            if dt is not None and dt.tzinfo is not None:
                                ts = dt.timestamp()
                        elif stamp is None:  # the record time, never beyond the bound
                            ts = min(stamps[i], latest)
                        elif 0 <= stamp < EPOCH_MILLIS_FROM:  # seconds (bools never get here)
                            ts = float(stamp)
                        elif EPOCH_MILLIS_FROM <= stamp < EPOCH_MILLIS_UNTIL:  # milliseconds
                            ts = stamp / 1000
                        # An own time beyond the bound, before 1970 or at epoch 0: the full
                        # path rejects it.
                        if ts is not None and stamp is not None and not 0 < ts <= latest:
                            ts = None
                    if ts is not None:
                        if model != group_model:
                            sink = sinks.get(model)
                            if sink is None:
                                group = preds.get(model)
                                if group is None:
                                    group = preds[model] = ModelEvents(model)
                                sink = sinks[model] = (
                                    group,
                                    group.event_ids.append,
                                    group.timestamps.append,
                                    group.versions.append,
                                    group.features.append,
                                    group.predictions.append,
                                )
                            group, add_id, add_ts, add_version, add_features, add_prediction = sink
                            group_model = model
                            group_topic = None
                        add_id(event_id)
                        add_ts(ts)
                        if stamp is None:
                            group.record_time_rows.append(len(group.event_ids) - 1)  # type: ignore[union-attr]
                        add_version(event.model_version)
                        add_features(event.features)
                        add_prediction(prediction)
                        if partition != group_partition or topic != group_topic:
                            group_topic = topic
                            group_partition = partition
                            group.partitions.add((group_topic, group_partition))  # type: ignore[union-attr]
                        continue
            full_path(batch.message(i, topic, partition), out)
        return out

    def _decode_one(self, msg: RawMessage, out: DecodedBatch) -> None:
        """The full path for one message: every check, every rejection reason."""
        is_label = self.labels_topic is not None and msg.topic == self.labels_topic
        model: str | None = None
        try:
            obj = parse_json(msg.value, self.max_message_bytes)
            if is_label:
                event_id, model, ts = validate_label(
                    obj, msg.timestamp, self.max_event_id_chars, self.future
                )
            else:
                event_id, model, ts = validate_prediction(
                    obj, msg.timestamp, self.max_event_id_chars, self.future
                )
            reason = self._label_verdict(model) if is_label else self._model_verdict(model)
            if reason is not None:
                raise InvalidEvent(
                    reason, f"model {model[:80]!r} is not accepted ({reason})", "model"
                )
            if is_label and self._check_label is not None:
                why = self._check_label(model, obj["label"])
                if why is not None:
                    raise InvalidEvent(
                        "label_not_for_task", f"not a label of the model's task ({why})", "label"
                    )
        except EventError as exc:
            out.rejected.append(Rejected(msg, exc.reason, exc.field, str(exc), model))
            return
        if is_label:
            lab = out.labels.get(model)
            if lab is None:
                lab = out.labels[model] = LabelEvents(model)
            lab.event_ids.append(event_id)
            lab.labels.append(obj["label"])
            lab.timestamps.append(ts)
            lab.partitions.add((msg.topic, msg.partition))
        else:
            group = out.predictions.get(model)
            if group is None:
                group = out.predictions[model] = ModelEvents(model)
            group.event_ids.append(event_id)
            group.timestamps.append(ts)
            group.versions.append(obj.get("model_version"))
            group.features.append(obj["features"])
            group.predictions.append(obj["prediction"])
            group.partitions.add((msg.topic, msg.partition))
            if obj.get("timestamp") is None:
                group.record_time_rows.append(len(group.event_ids) - 1)
