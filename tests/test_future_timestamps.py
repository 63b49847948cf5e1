"""Event times far ahead of the monitor's clock: rejected, and a model stuck by one recovers.

One event stamped far in the future (the year 3000, or a unit slip that still reads as
epoch seconds) moved a time-window model's event clock and next boundary there; no later
event crossed it, so the model never evaluated again, also after a restart (both are
checkpointed). Now such an event (or label) is rejected whole as ``timestamp_in_future``
against the monitor's own clock (the injected seam, never the Kafka record time), and a
state saved stuck is brought back at restore.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from fault_helpers import eventually

from monitor import state_format
from monitor.alerting.policy import STATE_VERSION as ALERT_STATE_VERSION
from monitor.alerting.policy import GroupState, ModelAlertState, SignalTrack
from monitor.cadence import Cadence
from monitor.clock import ManualClock
from monitor.config import parse_config
from monitor.events import NATIVE_AVAILABLE, Decoder, FutureBound, ModelEvents, RawMessage
from monitor.model_monitor import ModelMonitor
from monitor.service import MonitorService
from monitor.simulate import publish
from monitor.store import SQLiteStateStore

MODEL = "m"
NOW = 1_764_676_800.0  # 2025-12-02T12:00:00Z: the injected clock of the unit tests
YEAR_3000 = "3000-01-01T00:00:00Z"
# A unit slip that still reads as epoch seconds: the time in deciseconds (epoch
# milliseconds / 100) is below 1e11, so it is taken as seconds: the year 2529. (Epoch
# milliseconds themselves, 1e11 and above, are read as milliseconds by magnitude.)
SLIP = round(NOW * 10)
TIME_WINDOW = {"type": "time", "seconds": 60, "step_seconds": 10, "size": 10_000}
PATHS = [
    "python",
    pytest.param("native", marks=pytest.mark.skipif(not NATIVE_AVAILABLE, reason="no native")),
]


def _event(i: int, ts: Any, model: str = MODEL) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e{i}",
            "model": model,
            "timestamp": ts,
            "features": {"x": float(i % 7), "c": "ab"[i % 2]},
            "prediction": 0.5,
        }
    )


def _messages(values: list[bytes], topic: str = "p") -> list[RawMessage]:
    # Dummy record times, as many tests write: the bound must not depend on them.
    return [RawMessage(v, 1.0, topic, 0, i) for i, v in enumerate(values)]


@pytest.mark.parametrize("path", PATHS)
def test_a_far_future_timestamp_is_rejected_whole_on_both_decoder_paths(path: str) -> None:
    clock = ManualClock(NOW)
    decoder = Decoder(
        max_message_bytes=10_000, native=path == "native", future=FutureBound(clock, 3600)
    )
    schemas = {MODEL: (("x",), ("c",))}
    decoder.decode(_messages([_event(0, NOW)]), schemas)  # the model accepted once
    values = [
        _event(1, NOW - 5),
        _event(2, YEAR_3000),
        _event(3, NOW + 3599),  # clock skew within the bound
        _event(4, SLIP),
        _event(5, round(NOW * 1000)),  # epoch milliseconds: read as such, accepted
        _event(6, None),  # the record time (a dummy 1.0): not the event's, not checked
        _event(7, NOW),
    ]
    out = decoder.decode(_messages(values), schemas)
    good = out.predictions[MODEL]
    assert good.event_ids == ["e1", "e3", "e5", "e6", "e7"]
    assert good.timestamps == [NOW - 5, NOW + 3599, NOW, 1.0, NOW]
    assert [(r.message.offset, r.reason, r.field, r.model) for r in out.rejected] == [
        (1, "timestamp_in_future", "timestamp", None),
        (3, "timestamp_in_future", "timestamp", None),
    ]
    assert out.rejected[0].error == (
        f"timestamp: {YEAR_3000} is 974 years after the monitor's clock; "
        "at most 3600 s ahead is accepted"
    )
    assert out.rejected[1].error.startswith("timestamp: 2529-")
    if path == "native":
        # The compiled decoder accepted both (no bound in native/): the check after it
        # caught them. Without a late event, its columns come through untouched.
        import monitor_native

        fallback, groups = monitor_native.decode_predictions(values, schemas, 256)
        assert 1 not in fallback and 3 not in fallback and groups
        clean = decoder.decode(_messages([values[0], values[2]]), schemas)
        assert clean.predictions[MODEL].columns is not None and clean.native_events == 2
    # The bound follows the injected clock: an hour later the same event is accepted.
    clock.advance(3600)
    later = decoder.decode(_messages([_event(8, NOW + 2 * 3600)]), schemas)
    assert later.rejected == [] and later.predictions[MODEL].event_ids == ["e8"]


@pytest.mark.parametrize("path", PATHS)
def test_a_record_time_standing_in_for_the_event_time_is_held_to_the_bound(path: str) -> None:
    """Without its own ``timestamp`` an event has its Kafka record time, which a producer
    whose clock runs ahead sets far ahead on a broker that does not bound ``CreateTime``.
    Not the event's fault (accepted, not rejected), but held to the bound: unbounded, one
    such record stopped a time-window model's evaluations for good, as the year-3000
    event did."""
    clock = ManualClock(NOW)
    decoder = Decoder(
        max_message_bytes=10_000, native=path == "native", future=FutureBound(clock, 3600)
    )
    schemas = {MODEL: (("x",), ("c",))}
    decoder.decode(_messages([_event(0, NOW)]), schemas)  # the model accepted once
    year_2100 = 4_102_444_800.0
    times = [NOW - 5, year_2100, NOW + 10, NOW + 3599]
    records = [RawMessage(_event(i + 1, None), t, "p", 0, i) for i, t in enumerate(times)]
    out = decoder.decode(records, schemas)
    assert out.rejected == []
    got = out.predictions[MODEL]
    assert got.event_ids == ["e1", "e2", "e3", "e4"] and got.record_time_rows == [0, 1, 2, 3]
    assert list(got.timestamps) == [NOW - 5, NOW + 3600, NOW + 10, NOW + 3599]
    labels = Decoder(max_message_bytes=10_000, labels_topic="l", future=FutureBound(clock, 60))
    label = orjson.dumps({"event_id": "e2", "model": MODEL, "label": 1})
    out = labels.decode([RawMessage(label, year_2100, "l", 0, 0)])
    assert out.labels[MODEL].timestamps == [NOW + 60]


def test_a_time_window_model_timed_by_record_times_evaluates_again_after_a_future_record() -> None:
    """The same through the model: its windows are timed by record times; after one record
    of the year 2100 it evaluates again once the monitor's clock passes the bound."""
    clock = ManualClock(NOW)
    config = parse_config(
        {"models": [{"name": MODEL, "window": TIME_WINDOW, "reference": {"learn_first": 100}}]},
        env={},
    )
    mm = ModelMonitor(config.model(MODEL), config.limits)  # type: ignore[arg-type]
    decoder = Decoder(max_message_bytes=10_000, future=FutureBound(clock, 600))

    def feed(lo: int, hi: int, at: Callable[[int], float]) -> None:
        records = [RawMessage(_event(i, None), at(i), "p", 0, i) for i in range(lo, hi)]
        mm.ingest(decoder.decode(records).predictions[MODEL])

    feed(0, 600, lambda i: NOW - 600 + i)
    assert mm.evaluations > 0
    feed(600, 601, lambda i: 4_102_444_800.0)  # one record of the year 2100
    stopped = mm.evaluations
    clock.advance(1_200)  # an event every second for 20 minutes
    feed(601, 1_801, lambda i: NOW + i - 600)
    assert mm.evaluations > stopped + 30


def test_labels_with_a_future_time_are_rejected() -> None:
    decoder = Decoder(
        max_message_bytes=10_000, labels_topic="l", future=FutureBound(ManualClock(NOW), 60)
    )
    labels = [
        orjson.dumps({"event_id": "a", "model": MODEL, "label": 1, "timestamp": NOW + 30}),
        orjson.dumps({"event_id": "b", "model": MODEL, "label": 0, "timestamp": YEAR_3000}),
        orjson.dumps({"event_id": "c", "model": MODEL, "label": 1, "timestamp": SLIP}),
        orjson.dumps({"event_id": "d", "model": MODEL, "label": 1}),
    ]
    out = decoder.decode(_messages(labels, topic="l"))
    assert out.labels[MODEL].event_ids == ["a", "d"]
    assert [(r.message.offset, r.reason, r.field, r.model) for r in out.rejected] == [
        (1, "timestamp_in_future", "timestamp", None),
        (2, "timestamp_in_future", "timestamp", None),
    ]
    assert "at most 60 s ahead is accepted" in out.rejected[0].error


def test_the_bound_is_a_positive_number_of_seconds_in_limits() -> None:
    assert parse_config({}, env={}).limits.max_timestamp_ahead_seconds == 3600
    limits = parse_config({"limits": {"max_timestamp_ahead_seconds": 60}}, env={}).limits
    assert limits.max_timestamp_ahead_seconds == 60
    for bad in (0, -1, True, "soon"):
        with pytest.raises(Exception, match="max_timestamp_ahead_seconds"):
            parse_config({"limits": {"max_timestamp_ahead_seconds": bad}}, env={})


# ----------------------------------------------------------------- the real broker


def _config(
    bootstrap: str, tmp_path: Path, topic: str, dlq: str | None, group: str
) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "predictions_topic": topic,
            "labels_topic": None,
            "dead_letter_topic": dlq,
            "poll_timeout_ms": 100,
            "metadata_max_age_ms": 1000,
        },
        "http": {"port": 0},
        "state": {"path": str(tmp_path / "state.sqlite")},
        "models": [{"name": MODEL, "window": TIME_WINDOW, "reference": {"learn_first": 50}}],
        "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
    }


async def _send(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for v in values:
            await producer.send(topic, v, key=MODEL.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _run(raw: dict[str, Any]) -> tuple[MonitorService, asyncio.Task[None]]:
    service = MonitorService(parse_config(raw))
    await service.start()
    return service, asyncio.create_task(service.run())


async def _stop(service: MonitorService, task: asyncio.Task[None]) -> None:
    service.request_stop()
    await task
    await service.stop(grace_seconds=1)


@pytest.mark.kafka
@pytest.mark.parametrize("path", PATHS)
async def test_one_event_from_the_year_3000_no_longer_stops_a_time_window_model(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    monkeypatch.setenv("MONITOR_NATIVE_DECODER", "1" if path == "native" else "0")
    topic, dlq = topic_factory("future"), topic_factory("future-dlq")
    raw = _config(kafka_bootstrap, tmp_path, topic, dlq, topic_factory("g"))
    base = time.time() - 3_000.0  # one event a second, in the recent past
    service, task = await _run(raw)
    try:
        await _send(kafka_bootstrap, topic, [_event(i, base + i) for i in range(300)])
        await eventually(
            lambda: MODEL in service.models and service.models[MODEL].events_total == 300, 30
        )
        mm = service.models[MODEL]
        before = mm.evaluations
        assert before > 0
        # Then (the schema settled: the compiled decoder's turn) one bad event, and more.
        await _send(
            kafka_bootstrap,
            topic,
            [_event(300, YEAR_3000), _event(301, SLIP)]
            + [_event(i, base + i) for i in range(302, 600)],
        )
        await eventually(lambda: mm.events_total >= 598, 30)
        await asyncio.sleep(0.3)  # nothing more arrives
        # It kept evaluating, on event time: the last boundary crossed is base + 590.
        assert mm.last is not None
        assert base + 580 <= mm.last.context.evaluated_at < base + 600
        assert mm.evaluations >= before + 25
        assert mm.events_total == 598  # the two bad events are not in the window
        assert mm.cadence.event_clock == base + 599
        invalid = service.metrics.events_invalid.labels(topic, "timestamp_in_future")
        assert invalid._value.get() == 2
        native = service.metrics.events_decoded.labels("native")._value.get()
        assert (native > 0) == (path == "native")
    finally:
        await _stop(service, task)
    consumer = AIOKafkaConsumer(
        dlq, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(20):
            while len(got) < 2:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(records)
    finally:
        await consumer.stop()
    headers = [dict(r.headers) for r in got]
    assert [h["monitor.reason"] for h in headers] == [b"timestamp_in_future"] * 2
    assert [h["monitor.field"] for h in headers] == [b"timestamp"] * 2
    assert YEAR_3000 in headers[0]["monitor.error"].decode()
    assert [r.value for r in got] == [_event(300, YEAR_3000), _event(301, SLIP)]


@pytest.mark.kafka
async def test_a_state_saved_stuck_in_the_future_is_brought_back_at_restore(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = topic_factory("stuck", partitions=1)
    raw = _config(kafka_bootstrap, tmp_path, topic, None, topic_factory("g"))
    config = parse_config(raw)
    base = time.time() - 3_000.0
    # The state an earlier release checkpointed: 300 events, then one from the year 3000
    # (which it accepted), then 100 more that never crossed the boundary it set.
    mm = ModelMonitor(config.model(MODEL), config.limits)  # type: ignore[arg-type]
    year_3000 = 32_503_680_000.0

    def events(lo: int, hi: int, at: Callable[[int], float]) -> ModelEvents:
        n = hi - lo
        return ModelEvents(
            MODEL,
            [f"s{i}" for i in range(lo, hi)],
            [at(i) for i in range(lo, hi)],
            [None] * n,
            [{"x": float(i % 7), "c": "ab"[i % 2]} for i in range(lo, hi)],
            [0.5] * n,
        )

    def unheld(cadence: Cadence, own: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """That release's event clock: every own time moved it (none was held)."""
        start = own[0] if cadence.event_clock is None else cadence.event_clock
        after = np.maximum.accumulate(np.maximum(own, start))
        cadence.event_clock = float(after[-1])
        return own, after

    with pytest.MonkeyPatch.context() as release:
        release.setattr(Cadence, "_judge", unheld)
        mm.ingest(events(0, 300, lambda i: base + i))
        mm.ingest(events(300, 301, lambda i: year_3000))
        stuck_at = mm.evaluations
        assert mm.ingest(events(301, 400, lambda i: base + i)) == []  # the defect, in the core
    assert mm.cadence.next_eval_time > year_3000
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    blob = state_format.encode(mm.export_state())
    store.save({MODEL: (blob, (topic, 0))}, {(topic, 0): 0})
    store.close()

    with caplog.at_level(logging.WARNING, logger="monitor.service"):
        service, task = await _run(raw)
        try:
            await eventually(lambda: MODEL in service.models, 30)
            restored = service.models[MODEL]
            assert restored.cadence.event_clock is None
            assert restored.cadence.next_eval_time is None
            assert restored.window.timestamps().max() == base + 399  # the row brought back
            await _send(kafka_bootstrap, topic, [_event(i, base + i) for i in range(400, 600)])
            await eventually(lambda: restored.events_total == 600, 30)
            assert restored.evaluations >= stuck_at + 15  # evaluating again
            assert restored.last is not None
            assert base + 580 <= restored.last.context.evaluated_at < base + 600
        finally:
            await _stop(service, task)
    warnings = [r.getMessage() for r in caplog.records if "from the future" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "3000-01-01T00:00:" in warnings[0] and "3600 s" in warnings[0]


@pytest.mark.kafka
async def test_the_simulator_at_full_speed_stamps_its_stream_up_to_now_not_ahead(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    # 1000 events a second of event time from now, published in seconds: 3.6 million events
    # ran an hour ahead of the monitor's clock (20,000 here: 20 s ahead).
    topic = topic_factory("sim")
    started = time.time()
    await publish(kafka_bootstrap, topic=topic, events=20_000, chunk=5_000)
    done = time.time()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    stamps: list[float] = []
    try:
        async with asyncio.timeout(30):
            while len(stamps) < 20_000:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    stamps += [orjson.loads(r.value)["timestamp"] for r in records]
    finally:
        await consumer.stop()
    times = [datetime.fromisoformat(t).timestamp() for t in stamps]
    assert max(times) <= done
    assert started - 21 <= min(times) and times == sorted(times)


@pytest.mark.kafka
async def test_alert_times_saved_in_the_future_are_brought_back_at_restore(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A saved alert state with times far ahead (an earlier release's year-3000 event, or a
    window timed by record times of a producer whose clock ran ahead): restored as it was,
    no later evaluation was past the last retraining or the last notification, so the model
    was never retrained again and its open incident never reminded."""
    topic = topic_factory("stuck-alerts", partitions=1)
    raw = _config(kafka_bootstrap, tmp_path, topic, None, topic_factory("g"))
    config = parse_config(raw)
    base = time.time() - 3_000.0
    year_3000 = 32_503_680_000.0
    mm = ModelMonitor(config.model(MODEL), config.limits)  # type: ignore[arg-type]
    mm.ingest(
        ModelEvents(
            MODEL,
            [f"s{i}" for i in range(300)],
            [base + i for i in range(300)],
            [None] * 300,
            [{"x": float(i % 7), "c": "ab"[i % 2]} for i in range(300)],
            [0.5] * 300,
        )
    )
    track = SignalTrack(firing=True, active_streak=3, severity="warning", since=year_3000)
    group = GroupState(
        labels={"model": MODEL},
        fingerprint="fp",
        tracks={"drift:x": track},
        incident_started_at=year_3000,
        notified=True,
        last_notified_at=year_3000,
    )
    alerts = ModelAlertState(MODEL, groups={"fp": group}, last_retrain_at=year_3000)
    doc = {"version": ALERT_STATE_VERSION, "models": {MODEL: alerts.to_json()}}
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    blob = state_format.encode(mm.export_state(json.dumps(doc)))
    store.save({MODEL: (blob, (topic, 0))}, {(topic, 0): 0})
    store.close()

    with caplog.at_level(logging.WARNING, logger="monitor.service"):
        before = time.time()
        service, task = await _run(raw)
        try:
            await eventually(lambda: MODEL in service.models, 30)
            restored = service.alerts.get_state([MODEL])["models"][MODEL]
        finally:
            await _stop(service, task)
        after = time.time()
    state = ModelAlertState.from_json(restored)
    (g,) = state.groups.values()
    for t in (state.last_retrain_at, g.incident_started_at, g.last_notified_at):
        assert t is not None and before <= t <= after, t
    assert g.tracks["drift:x"].since is not None and g.tracks["drift:x"].since <= after
    assert g.tracks["drift:x"].firing  # only the times move: the incident stays open
    warnings = [r.getMessage() for r in caplog.records if "from the future" in r.getMessage()]
    assert len(warnings) == 1 and "4 alert time(s)" in warnings[0], warnings
