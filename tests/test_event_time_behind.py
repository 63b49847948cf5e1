"""A time-window model whose events fall behind the step boundary it waits for says so.

A time window evaluates when event time crosses its next step boundary, and a gap skips its
boundaries in one step. One event stamped ahead (a producer's clock: up to
``limits.max_timestamp_ahead_seconds``, an hour by default, is accepted) moved the boundary
there; the events after it were counted, but the model did not evaluate for up to an hour,
and nothing said why. An event's own time that far off the event clock is now held
(``Cadence.event_times``): the model evaluates on, and counts it
(``monitor_event_time_outliers_total``, the status's ``event_time_outliers``). Record times
(events without a timestamp of their own) are not held: one ahead still moves the boundary,
and the monitor says it, once, in the log and the model's status.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import generate_latest

from monitor.clock import ManualClock
from monitor.config import parse_config
from monitor.events import MessageBatch
from monitor.reference import build_profile
from monitor.service import MonitorService
from tests.scale_stream import _NoKafka

T0 = 1_790_000_000.0
WINDOW = {"type": "time", "seconds": 60, "step_seconds": 10, "size": 5000}


def _event(i: int, t: float | None, rng: np.random.Generator) -> bytes:
    event = {
        "event_id": f"e{i}",
        "model": "m",
        "features": {"x": float(rng.normal())},
        "prediction": float(rng.random()),
    }
    if t is not None:
        event["timestamp"] = t
    return orjson.dumps(event)


async def _run(times: list[float], *, own: bool = True) -> tuple[MonitorService, int, list[Any]]:
    """The events at ``times`` through a service, 100 a batch: in their own ``timestamp``, or
    (``own=False``) without one, in their record times. Returns the service, the number of
    evaluations and the model's status after each batch."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(
            {
                "kafka": {
                    "bootstrap_servers": "127.0.0.1:9",
                    "labels_topic": None,
                    "dead_letter_topic": None,
                },
                "http": {"port": 0},
                "state": {"path": str(Path(tmp) / "s.sqlite")},
                "alerting": {"outbox_path": str(Path(tmp) / "o.sqlite")},
                "models": [{"name": "m", "window": WINDOW}],
            }
        )
        # The monitor's clock at the stream's end: every event within the accepted bound.
        svc = MonitorService(config, clock=ManualClock(T0 + len(times)))
        rows = [
            ({"x": float(v)}, float(p))
            for v, p in zip(rng.normal(size=500), rng.random(500), strict=True)
        ]
        svc.references["m"] = build_profile("m", rows)
        svc.source = _NoKafka()  # type: ignore[assignment]
        await svc.alerts.start()
        evaluations, statuses = 0, []
        for start in range(0, len(times), 100):
            batch = MessageBatch([], [], [], [], [])
            part = times[start : start + 100]
            values = [_event(start + k, t if own else None, rng) for k, t in enumerate(part)]
            offsets = range(start, start + len(values))
            record = list(part) if not own else [T0] * len(values)
            batch.add_run("predictions", 0, values, record, offsets, [None] * len(values))
            evaluations += len(await svc.process(batch))
            statuses.append(svc.status()["models"]["m"])
        await svc.alerts.stop(grace_seconds=0)
        return svc, evaluations, statuses


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "before the time window's next step" in r.getMessage()
    ]


async def test_one_event_stamped_ahead_is_held_counted_and_the_model_evaluates_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    times = [T0 + i for i in range(1200)]
    times[150] = T0 + 150 + 3000  # 50 minutes ahead, inside the accepted hour
    svc, evaluations, statuses = await _run(times)
    assert evaluations == 119  # every 10 s step, as without it (before: 15)
    assert _warnings(caplog) == []
    assert [s["event_time_behind"] for s in statuses] == [None] * len(statuses)
    assert statuses[0]["event_time_outliers"] == {"ahead": 0, "behind": 0}
    assert statuses[-1]["event_time_outliers"] == {"ahead": 1, "behind": 0}
    assert statuses[-1]["event_time_held"] is None
    metrics = generate_latest(svc.registry).decode()
    assert 'monitor_event_time_outliers_total{direction="ahead",model="m"} 1.0' in metrics
    assert 'monitor_event_time_outliers_total{direction="behind",model="m"} 0.0' in metrics


async def test_one_record_time_ahead_is_said_once_in_the_log_and_the_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Events without a timestamp of their own, timed by their record times: those are not
    held (no event clock of the model's own), so one ahead still moves the boundary."""
    times = [T0 + i for i in range(1200)]
    times[150] = T0 + 150 + 3000
    _, evaluations, statuses = await _run(times, own=False)
    assert evaluations <= 20  # the model waits for event time to reach it
    (warning,) = _warnings(caplog)
    assert "record times" in warning
    assert "limits.max_timestamp_ahead_seconds" in warning
    assert statuses[0]["event_time_behind"] is None
    behind = statuses[-1]["event_time_behind"]
    assert behind is not None
    assert behind["next_evaluation_at"] > behind["newest_event"]


async def test_an_ordered_stream_and_jitter_say_nothing(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(1)
    times = [T0 + i + float(rng.uniform(-2, 2)) for i in range(1200)]  # out of order by 2 s
    _, evaluations, statuses = await _run(times)
    assert evaluations >= 100
    assert _warnings(caplog) == []
    assert [s["event_time_behind"] for s in statuses] == [None] * len(statuses)
    assert statuses[-1]["event_time_outliers"] == {"ahead": 0, "behind": 0}
