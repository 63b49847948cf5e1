"""A polled batch travels in columns (``MessageBatch``), not as one object per record.

Issue 19: building a ``RawMessage`` per Kafka record cost about 1 µs per event. The source
now hands the decoder the values (and keys, offsets, record times) as lists per partition,
and a ``RawMessage`` is made only for a message that needs one (the Python full path, a
rejection). These tests hold that: what a poll gives on the real broker, that decoding a
batch gives exactly what decoding its messages one object each gave (rejections with their
partition, offset and key included), and how many message objects are made.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

import monitor.events as events_module
from monitor.config import parse_config
from monitor.errors import MonitorError
from monitor.events import NATIVE_AVAILABLE, DecodedBatch, Decoder, MessageBatch, RawMessage
from monitor.kafka_source import KafkaSource

SCHEMAS = {"m": (("x", "y"), ("c",)), "n": (("x",), ("c",))}


def _event(i: int, model: str = "m", **extra: Any) -> bytes:
    event: dict[str, Any] = {
        "event_id": f"e{i}",
        "model": model,
        "model_version": f"v{i % 2}",
        "timestamp": 1_700_000_000 + i,
        "features": {"x": i * 0.5, "y": i % 7, "c": "abcd"[i % 4]},
        "prediction": i % 3 == 0,
        **extra,
    }
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


def _message(value: bytes | None, i: int, topic: str = "p", partition: int = 0) -> RawMessage:
    return RawMessage(value, 1_790_000_000.0 + i / 8, topic, partition, 1000 + i, b"k%d" % i)


def _as_polled(messages: list[RawMessage]) -> MessageBatch:
    """``messages`` as the source hands them over: columns, one run per partition."""
    batch = MessageBatch()
    order: list[tuple[str, int]] = []
    for m in messages:
        if (m.topic, m.partition) not in order:
            order.append((m.topic, m.partition))
    for topic, partition in order:
        run = [m for m in messages if (m.topic, m.partition) == (topic, partition)]
        batch.add_run(
            topic,
            partition,
            [m.value for m in run],
            [m.timestamp for m in run],
            [m.offset for m in run],
            [m.key for m in run],
        )
    return batch


def _snapshot(out: DecodedBatch) -> dict[str, Any]:
    def cols(g: Any) -> Any:
        c = g.columns
        return None if c is None else (c.numeric.tobytes(), c.categorical, c.unknown)

    return {
        "predictions": {
            name: (
                g.event_ids,
                g.timestamps,
                g.versions,
                g.features,
                g.predictions,
                sorted(g.partitions),
                g.record_time_rows,
                cols(g),
            )
            for name, g in out.predictions.items()
        },
        "labels": {n: (g.event_ids, g.labels, g.timestamps) for n, g in out.labels.items()},
        "rejected": [(r.message, r.reason, r.field, r.error, r.model) for r in out.rejected],
        "counts": (out.native_events, out.python_events, out.native_error),
    }


def _decoder() -> Decoder:
    d = Decoder(max_message_bytes=2_000, labels_topic="labels")
    d.decode([_message(_event(0, model), 0) for model in ("m", "n")])  # the models' verdicts
    return d


def _mixed_stream(seed: int, n: int) -> list[RawMessage]:
    """Good events of two models over three partitions and a labels topic, with every kind
    of message the full path must see: damaged, too large, null, odd but valid."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.05:
            value: bytes | None = rng.choice(
                [
                    b"{not json",
                    b"\xff\xfe",
                    None,
                    b"x" * 3_000,
                    _event(i, features={"x": "1.5"}),  # valid, but not for the columns
                    _event(i, timestamp=None),  # the record time
                    _event(i, event_id=None),  # rejected, field event_id
                    b'{"event_id":"s","model":"m","features":{"c":"\\ud800"},"prediction":1}',
                ]
            )
        else:
            value = _event(i, model=rng.choice("mmmn"))
        topic = "labels" if kind > 0.97 else "p"
        if topic == "labels":
            value = orjson.dumps({"event_id": f"e{i}", "model": "m", "label": 1})
        out.append(_message(value, i, topic, rng.randrange(3)))
    return out


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_batch_decodes_exactly_as_its_messages(native: bool, seed: int) -> None:
    """Columns in, the same out: events, partitions, record times, rejections (the very
    message objects, so partition, offset and key are the polled ones)."""
    if native and not NATIVE_AVAILABLE:
        pytest.skip("monitor_native not installed")
    messages = _mixed_stream(seed, 1_500)
    for size in (1, 7, 500, 1_500):
        for start in range(0, len(messages), size * 37 if size < 500 else size):
            chunk = messages[start : start + size]
            polled = _as_polled(chunk)
            # a poll's order: partition by partition; the list form in that same order
            in_order = list(polled)
            a, b = _decoder(), _decoder()
            a.native = b.native = native
            got = _snapshot(a.decode(polled, SCHEMAS))
            want = _snapshot(b.decode(in_order, SCHEMAS))
            for r, m in zip(got["rejected"], want["rejected"], strict=True):
                assert (r[0].topic, r[0].partition, r[0].offset, r[0].key, r[0].value) == (
                    m[0].topic,
                    m[0].partition,
                    m[0].offset,
                    m[0].key,
                    m[0].value,
                )
            got["rejected"] = [r[1:] for r in got["rejected"]]
            want["rejected"] = [r[1:] for r in want["rejected"]]
            assert got == want


@pytest.mark.parametrize("native", [True, False])
def test_decoding_makes_a_message_object_only_for_what_needs_one(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 good events and 4 messages for the full path: 4 message objects, not 1,004."""
    if native and not NATIVE_AVAILABLE:
        pytest.skip("monitor_native not installed")
    made: list[RawMessage] = []

    class Counted(RawMessage):
        __slots__ = ()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    decoder = _decoder()
    decoder.native = native
    batch = MessageBatch()
    good = [_event(i, model="mn"[i % 2]) for i in range(1_000)]
    batch.add_run("p", 0, good[:600], [1.0] * 600, range(600), [None] * 600)
    batch.add_run("p", 1, [b"{bad", *good[600:], None], [1.0] * 402, range(402), [None] * 402)
    label = orjson.dumps({"event_id": "e1", "model": "m", "label": 1})
    batch.add_run("labels", 0, [label, b"[]"], [1.0, 1.0], [7, 8], [b"k", None])
    monkeypatch.setattr(events_module, "RawMessage", Counted)
    out = decoder.decode(batch, SCHEMAS)
    assert sum(map(len, out.predictions.values())) == 1_000
    assert out.native_events == (1_000 if native else 0)
    assert [(r.message.topic, r.message.partition, r.message.offset) for r in out.rejected] == [
        ("p", 1, 0),
        ("p", 1, 401),
        ("labels", 0, 8),
    ]
    assert len(made) == 4  # the three rejected and the label


def test_batch_views() -> None:
    messages = [_message(b"a", 0, "p", 1), _message(b"b", 1, "p", 1), _message(None, 2, "q", 0)]
    messages.append(_message(b"d", 3, "p", 1))
    batch = MessageBatch.of(messages)
    assert MessageBatch.of(batch) is batch
    assert len(batch) == 4 and list(batch) == messages
    assert [batch[i] for i in range(4)] == messages
    assert batch.runs == [("p", 1, 0, 2), ("q", 0, 2, 3), ("p", 1, 3, 4)]
    assert batch.offset_ranges() == {("p", 1): (1000, 1003), ("q", 0): (1002, 1002)}
    assert batch.topic_counts() == {"p": 3, "q": 1}
    assert batch.partitions_of([0, 3]) == {("p", 1)}
    assert batch.partitions_of([1, 2]) == {("p", 1), ("q", 0)}
    sub = batch.take([1, 2])
    assert list(sub) == messages[1:3] and sub.runs == [("p", 1, 0, 1), ("q", 0, 1, 2)]
    assert batch.without({("x", 9)}) is batch
    less = batch.without({("q", 0)})
    assert list(less) == [messages[0], messages[1], messages[3]]
    assert less.runs == [("p", 1, 0, 2), ("p", 1, 2, 3)] and less.offset_ranges() == {
        ("p", 1): (1000, 1003)
    }
    assert len(batch.without({("q", 0), ("p", 1)})) == 0
    columns = MessageBatch()
    columns.add_run("p", 0, [b"a", b"b"], [1.0, 2.0], [5, 6], [None, b"k"])
    columns.add_run("q", 1, [b"c"], [3.0], [7], [None])
    kept = columns.without([("p", 0)])
    assert (kept.values, kept.offsets, kept.runs) == ([b"c"], [7], [("q", 1, 0, 1)])
    with pytest.raises(IndexError):
        batch[4]
    with pytest.raises(MonitorError):
        MessageBatch([b"a"], [1.0], [0], [None], [("p", 0, 0, 2)])
    with pytest.raises(MonitorError):
        MessageBatch([b"a", b"b"], [1.0, 2.0], [0, 1], [None, None], [("p", 0, 1, 2)])
    made = MessageBatch()
    made.add_run("p", 0, [], [], [], [])
    assert made.runs == [] and len(made) == 0 and made.offset_ranges() == {}


async def _poll_all(source: KafkaSource, n: int) -> list[MessageBatch]:
    got: list[MessageBatch] = []
    deadline = time.monotonic() + 60
    while sum(map(len, got)) < n and time.monotonic() < deadline:
        got.append(await source.poll())
    return got


def test_a_poll_hands_over_the_records_in_columns(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    """On the real broker: each partition one run; values, keys, offsets and record
    times exactly as produced (tombstones included)."""
    topic = topic_factory("columns", partitions=2)
    sent: list[tuple[int, bytes | None, bytes | None, int]] = []

    async def main() -> list[MessageBatch]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for i in range(40):
                value = None if i == 13 else _event(i)
                key = None if i % 5 == 0 else b"k%d" % i
                stamp = 1_790_000_000_123 + i
                await (await producer.send(topic, value, key, i % 2, stamp))
                sent.append((i % 2, key, value, stamp))
        finally:
            await producer.stop()
        cfg = parse_config(
            {
                "kafka": {
                    "bootstrap_servers": kafka_bootstrap,
                    "group_id": f"g-{topic}",
                    "predictions_topic": topic,
                    "labels_topic": None,
                    "poll_timeout_ms": 200,
                },
                "state": {"path": str(tmp_path / "s.sqlite")},
            }
        )

        async def nothing(_: set[tuple[str, int]]) -> None:
            return None

        source = KafkaSource(cfg.kafka, on_revoked=nothing, on_assigned=nothing)
        await source.start()
        try:
            return await _poll_all(source, 40)
        finally:
            await source.stop()

    batches = asyncio.run(main())
    assert all(type(b) is MessageBatch for b in batches)
    got = []
    for b in batches:
        assert len({r[:2] for r in b.runs}) == len(b.runs)  # one run per partition
        got += [(m.partition, m.key, m.value, m.timestamp, m.offset) for m in b]
    for partition in (0, 1):
        mine = [g for g in got if g[0] == partition]
        want = [s for s in sent if s[0] == partition]
        assert [g[4] for g in mine] == list(range(20))
        assert [g[:3] for g in mine] == [s[:3] for s in want]
        assert [g[3] for g in mine] == [s[3] / 1000.0 for s in want]


def test_repeated_strings_are_one_object_per_batch() -> None:
    """The compiled decoder makes one Python string per distinct category and version in a
    batch (issue 19: reuse strings), and a stream of distinct strings still decodes."""
    if not NATIVE_AVAILABLE:
        pytest.skip("monitor_native not installed")
    batch = MessageBatch.of([_message(_event(i), i) for i in range(400)])
    out = _decoder().decode(batch, SCHEMAS)
    group = out.predictions["m"]
    assert group.columns is not None and len(group) == 400
    (cats,) = group.columns.categorical
    assert len(set(map(id, cats))) == 4 == len(set(cats))
    assert len(set(map(id, group.versions))) == 2
    unique = [_event(i, features={"c": f"c{i}"}, model_version=f"v{i}") for i in range(400)]
    out = _decoder().decode(
        MessageBatch.of([_message(v, i) for i, v in enumerate(unique)]), SCHEMAS
    )
    group = out.predictions["m"]
    assert group.columns is not None
    assert group.columns.categorical[0] == [f"c{i}" for i in range(400)]
    assert group.versions == [f"v{i}" for i in range(400)]
