"""Event times before 1970 in RFC 3339 are rejected, as epoch numbers below 0 are."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from monitor.clock import ManualClock
from monitor.events import NATIVE_AVAILABLE, Decoder, FutureBound, RawMessage

MODEL = "m"
NOW = 1_764_676_800.0  # 2025-12-02T12:00:00Z: the injected clock
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
    return [RawMessage(v, 1.0, topic, 0, i) for i, v in enumerate(values)]


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
        _event(4, "1970-01-01T01:00:00+01:00"),  # the epoch itself: accepted, as 0 is
        _event(5, 0),
        _event(6, NOW + 1),
    ]
    out = decoder.decode(_messages(values), schemas)
    assert out.predictions[MODEL].event_ids == ["e1", "e4", "e5", "e6"]
    assert out.predictions[MODEL].timestamps == [NOW, 0.0, 0.0, NOW + 1]
    assert [(r.message.offset, r.reason, r.field) for r in out.rejected] == [
        (1, "invalid_timestamp", "timestamp"),
        (2, "invalid_timestamp", "timestamp"),
    ]
    assert "before 1970-01-01T00:00:00Z" in out.rejected[0].error
    label = orjson.dumps(
        {"event_id": "e1", "model": MODEL, "label": 1, "timestamp": "0001-01-01T00:00:00Z"}
    )
    assert [r.reason for r in decoder.decode(_messages([label], topic="l")).rejected] == [
        "invalid_timestamp"
    ]
