"""Segments through a real broker: a shift in one region (10% of the traffic) pages, naming
the segment, at a real local HTTP receiver; /metrics carries the segment gauges."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from test_end_to_end import metric_value, stack_factory

from monitor.simulate import Simulator

pytestmark = pytest.mark.kafka

__all__ = ["stack_factory"]  # the fixture, shared with the drift end-to-end tests


async def test_a_shift_in_one_region_pages_naming_the_segment(
    stack_factory: Any, tmp_path: Any
) -> None:
    from monitor.simulate import write_reference

    reference = write_reference(tmp_path / "segments-reference.jsonl", 5000)
    stack = await stack_factory(
        models=[
            {
                "name": "credit-risk",
                "reference": {"path": str(reference)},
                "window": {"size": 2000, "step": 500},
                "segments": {"by": ["region"], "min_window_rows": 100},
            }
        ]
    )
    events = [e for e, _ in Simulator(seed=31).events(5000)]
    shifted = 0
    for e in events[3000:]:  # from event 3000 on, west's incomes triple
        if e["features"].get("region") == "west":
            e["features"]["income"] = e["features"]["income"] * 3
            shifted += 1
    assert 100 < shifted < 300  # west holds about a tenth of the traffic
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        for e in events:
            await producer.send(stack.topics["predictions"], orjson.dumps(e), key=b"credit-risk")
        await producer.flush()
    finally:
        await producer.stop()
    await stack.wait_processed("credit-risk", 5000)
    await stack.receiver.wait_for_requests(1, within=15)
    await asyncio.sleep(1.0)  # anything else that was coming has arrived by now
    firing = [r.json for r in stack.receiver.requests if r.json["status"] == "firing"]
    assert firing, [r.json["summary"] for r in stack.receiver.requests]
    signals = [s for n in firing for s in n["signals"]]
    named = [s for s in signals if s.get("segment") is not None]
    assert {(s["subject"], s["segment"]) for s in named} == {("income", "region=west")}
    # The whole traffic's income may page first (a tripled tenth moves it too); the
    # notification that carries the segment says where.
    with_segment = [n for n in firing if any(s.get("segment") for s in n["signals"])]
    assert "income drifted in region=west" in with_segment[0]["summary"]
    west = named[0]
    assert west["detector"] == "ks" and west["p_value"] < west["threshold"]
    # The reference is a data file: each region is compared with its own reference rows.
    last = stack.service.models["credit-risk"].last
    assert {s.segment: s.reference for s in last.segments}["region=west"] == "segment"
    metrics = await stack.metrics()
    assert metric_value(
        metrics, "monitor_segment_drift_severity", model="credit-risk", segment="region=west",
        feature="income",
    ) >= 1  # fmt: skip
    assert metric_value(
        metrics, "monitor_segment_drift_severity", model="credit-risk", segment="region=north",
        feature="income",
    ) == 0  # fmt: skip
    assert (
        metric_value(
            metrics, "monitor_segment_window_events", model="credit-risk", segment="region=west"
        )
        > 100
    )
