"""``monitor_labels_total`` tells what became of every label, including those that came early.

A label polled before its prediction is counted ``early`` when it arrives. What happens to it
later happens while the *predictions* are processed: its prediction comes and it joins, or
predictions age it out (TTL) or push the oldest waiting prediction out (cap). Those outcomes
were dropped: a labels topic consumed ahead of the predictions showed ``early`` rising and
``matched`` at zero while the metrics were computed from those very labels.

In process (the service without its Kafka source, as ``tests/scale_stream.py``): what is
checked is the service's counting, not the transport.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from monitor.clock import ManualClock
from monitor.config import parse_config
from monitor.events import MessageBatch
from monitor.reference import build_profile
from monitor.service import MonitorService
from tests.scale_stream import _NoKafka

T0 = 1_790_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + 3600)


@pytest.fixture
async def service(clock: ManualClock) -> AsyncIterator[MonitorService]:
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(
            {
                "kafka": {
                    "bootstrap_servers": "127.0.0.1:9",
                    "group_id": "label-outcomes",
                    "labels_topic": "labels",
                    "dead_letter_topic": None,
                },
                "http": {"port": 0},
                "state": {"path": str(Path(tmp) / "state.sqlite")},
                "alerting": {"outbox_path": str(Path(tmp) / "outbox.sqlite")},
                "models": [
                    {
                        "name": "m",
                        "window": {"size": 100, "step": 50},
                        "performance": {
                            "task": "binary",
                            "window_size": 100,
                            "join_max_pending": 20,
                            "early_label_ttl_seconds": 60,
                        },
                    }
                ],
            }
        )
        svc = MonitorService(config, clock=clock)
        rows = [({"x": float(i % 7)}, (i % 10) / 10) for i in range(200)]
        svc.references["m"] = build_profile("m", rows)
        svc.source = _NoKafka()  # type: ignore[assignment]
        await svc.alerts.start()
        try:
            yield svc
        finally:
            await svc.alerts.stop(grace_seconds=0)


class _Feed:
    """Batches to the service, one partition per topic, offsets counted on."""

    def __init__(self, svc: MonitorService) -> None:
        self.svc = svc
        self.offsets: dict[str, int] = {}

    async def send(self, topic: str, events: Sequence[dict[str, Any]]) -> None:
        batch = MessageBatch([], [], [], [], [])
        offset = self.offsets.get(topic, 0)
        batch.add_run(
            topic,
            0,
            [orjson.dumps(e) for e in events],
            [e["timestamp"] for e in events],
            range(offset, offset + len(events)),
            [None] * len(events),
        )
        self.offsets[topic] = offset + len(events)
        await self.svc.process(batch)


def _prediction(i: int) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "model": "m",
        "features": {"x": float(i % 7)},
        "prediction": (i % 10) / 10,
        "timestamp": T0 + i,
    }


def _label(i: int) -> dict[str, Any]:
    return {"event_id": f"e{i}", "model": "m", "label": i % 2, "timestamp": T0 + i + 1}


def _outcomes(svc: MonitorService) -> dict[str, float]:
    return {
        s.labels["outcome"]: s.value
        for family in svc.registry.collect()
        for s in family.samples
        if s.name == "monitor_labels_total" and s.labels.get("model") == "m"
    }


async def test_early_labels_that_join_later_and_evictions_by_predictions_are_counted(
    service: MonitorService, clock: ManualClock
) -> None:
    feed = _Feed(service)
    await feed.send("labels", [_label(i) for i in range(10)])
    assert _outcomes(service) == {"early": 10}
    # Their predictions come: the ten held labels join.
    await feed.send("predictions", [_prediction(i) for i in range(10)])
    assert service.models["m"].performance is not None
    assert service.models["m"].performance.snapshot()["window_labels"] == 10
    assert _outcomes(service) == {"early": 10, "early_matched": 10}
    # Five more early labels, then predictions of other events past their TTL: the labels
    # expire, and thirty waiting predictions push ten out of a store of twenty.
    await feed.send("labels", [_label(i) for i in range(100, 105)])
    clock.advance(61)
    await feed.send("predictions", [_prediction(i) for i in range(10, 40)])
    assert _outcomes(service) == {
        "early": 15,
        "early_matched": 10,
        "early_expired": 5,
        "pending_evicted": 10,
    }
