"""Event times before 1970 in RFC 3339 are rejected, as epoch numbers below 0 are."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from test_future_timestamps import MODEL, NOW, PATHS, _event, _messages

from monitor.clock import ManualClock
from monitor.events import Decoder, FutureBound


@pytest.mark.parametrize("path", PATHS)
def test_a_time_before_1970_is_rejected_as_an_epoch_below_0_is(path: str) -> None:
    """An epoch number below 0 was rejected, the same instant written in RFC 3339 was not:
    an unset time (Go's zero time ``0001-01-01T00:00:00Z``) was taken as the event's, so the
    window started in the year 1 (every notification's window, its dashboard link from
    -62135596800000 ms, events per second near 0) while it held that event."""
    decoder = Decoder(
        max_message_bytes=10_000,
        labels_topic="l",
        native=path == "native",
        future=FutureBound(ManualClock(NOW), 3600),
    )
    schemas = {MODEL: (("x",), ("c",))}
    decoder.decode(_messages([_event(0, NOW)]), schemas)  # the model accepted once
    values = [
        _event(1, NOW),
        _event(2, "0001-01-01T00:00:00Z"),
        _event(3, "1969-12-31T23:59:59+00:00"),
        _event(4, "1970-01-01T01:00:00+01:00"),  # the epoch itself: an unset time, as 0 is
        _event(5, 0),
        _event(6, NOW + 1),
        _event(7, 0.0),
        _event(8, 1),  # the first second after it is a time
    ]
    out = decoder.decode(_messages(values), schemas)
    assert out.predictions[MODEL].event_ids == ["e1", "e6", "e8"]
    assert out.predictions[MODEL].timestamps == [NOW, NOW + 1, 1.0]
    assert [(r.message.offset, r.reason, r.field) for r in out.rejected] == [
        (1, "invalid_timestamp", "timestamp"),
        (2, "invalid_timestamp", "timestamp"),
        (3, "invalid_timestamp", "timestamp"),
        (4, "invalid_timestamp", "timestamp"),
        (6, "invalid_timestamp", "timestamp"),
    ]
    assert "epoch 0 (1970-01-01T00:00:00Z) is an unset time" in out.rejected[2].error
    assert "before 1970-01-01T00:00:00Z" in out.rejected[0].error
    label = orjson.dumps(
        {"event_id": "e1", "model": MODEL, "label": 1, "timestamp": "0001-01-01T00:00:00Z"}
    )
    assert [r.reason for r in decoder.decode(_messages([label], topic="l")).rejected] == [
        "invalid_timestamp"
    ]


def _time_model_events(times: list[float], start: int = 0) -> Any:
    from monitor.events import ModelEvents

    events = ModelEvents(MODEL)
    for i, t in enumerate(times, start):
        events.event_ids.append(f"e{i}")
        events.timestamps.append(t)
        events.versions.append(None)
        events.features.append({"x": float(i % 7)})
        events.predictions.append(0.5)
    return events


def test_a_frozen_event_time_is_said_not_silently_never_evaluated() -> None:
    """A producer that stamps every event with one time: a time window evaluates when event
    time crosses a step boundary, so on main the model never evaluated and nothing said
    why. A full window's worth of events at one instant is now named in the model's status
    (``event_time_frozen``; the service logs a WARNING once); a moving clock clears it."""
    from monitor.config import parse_config
    from monitor.model_monitor import ModelMonitor
    from monitor.status import model_status

    cfg = parse_config(
        {
            "models": [
                {
                    "name": MODEL,
                    "reference": {"learn_first": 100},
                    "window": {"type": "time", "seconds": 60, "step_seconds": 10, "size": 200},
                }
            ]
        }
    )
    mm = ModelMonitor(cfg.model(MODEL), cfg.limits)  # type: ignore[arg-type]
    mm.ingest(_time_model_events([NOW + i for i in range(100)]), now=NOW)  # the reference
    assert mm.ready
    frozen = NOW + 130  # within a window of the clock (NOW + 99): credible, not held
    assert mm.ingest(_time_model_events([frozen] * 150, 100), now=NOW) == []
    status = model_status(MODEL, mm, {}, {})
    assert status["event_time_frozen"] is None  # 150 < a window (200): a burst, not frozen
    assert mm.ingest(_time_model_events([frozen] * 60, 250), now=NOW) == []
    assert mm.cadence.same_time_events == 210
    assert model_status(MODEL, mm, {}, {})["event_time_frozen"] == "2025-12-02T12:02:10Z"
    # Time moves again: cleared, and the model evaluates at the boundary it crosses.
    assert mm.ingest(_time_model_events([frozen + 30.0], 310), now=NOW)
    assert model_status(MODEL, mm, {}, {})["event_time_frozen"] is None


def test_the_service_warns_once_of_a_frozen_event_time(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The service says it: one WARNING naming the model and the time (not one per batch),
    and ``/api/status`` (``service.status()``) carries ``event_time_frozen``."""
    from monitor.config import parse_config
    from monitor.service import MonitorService

    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0},
        "state": {"path": "state.sqlite"},
        "defaults": {
            "window": {"type": "time", "seconds": 60, "step_seconds": 10, "size": 100},
            "reference": {"learn_first": 50},
        },
        "models": [{"name": MODEL}],
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    service = MonitorService(parse_config(raw, base_dir=tmp_path), clock=ManualClock(NOW))
    decoder = Decoder(max_message_bytes=10_000, future=FutureBound(ManualClock(NOW), 3600))
    times = [NOW - 100 + i for i in range(50)] + [NOW - 10] * 250
    for part in range(3):
        values = [_event(i, times[i]) for i in range(part * 100, part * 100 + 100)]
        with caplog.at_level("WARNING", logger="monitor.service"):
            service._apply(decoder.decode(_messages(values)))
    warned = [r.getMessage() for r in caplog.records if "all carry the timestamp" in r.getMessage()]
    assert warned == [
        "model 'm': its last 150 events all carry the timestamp 2025-12-02T11:59:50Z: a time "
        "window evaluates when event time crosses a step boundary, so this model does not "
        "evaluate; check the producer's timestamp (or omit it: record times apply)"
    ]
    models = service.status()["models"]
    assert models[MODEL]["event_time_frozen"] == "2025-12-02T11:59:50Z"
    assert models[MODEL]["evaluations"] == 0
