"""Data validation through a real broker: a sentinel value pages as data_quality, named."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from test_end_to_end import metric_value, stack_factory

from monitor.simulate import Simulator

pytestmark = pytest.mark.kafka

__all__ = ["stack_factory"]  # the fixture, shared with the drift end-to-end tests


async def test_sentinel_at_three_percent_pages_as_data_quality(stack_factory: Any) -> None:
    stack = await stack_factory()
    events = [e for e, _ in Simulator(seed=21).events(3000)]
    for e in events[2000::33]:  # from event 2000 on, 3% of the events carry age = -1
        e["features"]["age"] = -1
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        for e in events:
            await producer.send(stack.topics["predictions"], orjson.dumps(e), key=b"credit-risk")
        await producer.flush()
    finally:
        await producer.stop()
    await stack.wait_processed("credit-risk", 3000)
    await stack.receiver.wait_for_requests(1, within=15)
    await asyncio.sleep(1.0)  # anything else that was coming has arrived by now
    firing = [r.json for r in stack.receiver.requests if r.json["status"] == "firing"]
    assert len(firing) == 1, [r.json["summary"] for r in stack.receiver.requests]
    (signal,) = firing[0]["signals"]
    assert (signal["kind"], signal["subject"], signal["detector"]) == (
        "data_quality",
        "below_min:age",
        "below_min",
    )
    assert signal["details"]["message"].startswith("age: ")
    assert "(the reference minimum 18 less a 25% margin)" in signal["details"]["message"]
    assert signal["details"]["top_values"].startswith("-1 (")
    assert signal["statistic"] > signal["threshold"]
    metrics = await stack.metrics()
    violations = metric_value(
        metrics, "monitor_constraint_violations_total", model="credit-risk", feature="age",
        rule="below_min",
    )  # fmt: skip
    assert violations == len(events[2000::33])


async def test_a_learned_reference_lacking_a_constrained_feature_warns_once(
    stack_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A constraint on a feature the learned reference lacks is never checked: one WARNING
    per model names it (quoted: no raw newline or markup reaches the log), and the model's
    status lists it."""
    stack = await stack_factory(
        models=[
            {
                "name": "credit-risk",
                "reference": {"learn_first": 300},
                "validation": {"constraints": {"age": {"min": 18}, "agee<b>": {"min": 0}}},
            }
        ]
    )
    caplog.set_level(logging.WARNING, logger="monitor.service")
    events = [e for e, _ in Simulator(seed=22).events(600)]
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        for i, e in enumerate(events):
            await producer.send(stack.topics["predictions"], orjson.dumps(e), key=b"credit-risk")
            if i in (299, 450):  # learning done in one batch, more batches after it
                await producer.flush()
                await stack.wait_processed("credit-risk", i + 1)
        await producer.flush()
    finally:
        await producer.stop()
    await stack.wait_processed("credit-risk", 600)
    warned = [r.getMessage() for r in caplog.records if "never checked" in r.getMessage()]
    assert warned == [
        "model 'credit-risk': validation.constraints 'agee<b>': not a feature of its "
        "reference; never checked (GET /api/model: reference.unchecked_constraints)"
    ]
    reply = await stack.http.get(
        f"{stack.service.http.url}/api/model", params={"name": "credit-risk"}
    )
    assert reply.json()["status"]["reference"]["unchecked_constraints"] == ["agee<b>"]
