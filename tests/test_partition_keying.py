"""A model whose events arrive on two partitions (producers not keying by model) is detected:
counted, warned of once, shown in its status. Correctly keyed events raise nothing.

Through the real broker: a two-partition predictions topic, events produced to explicit
partitions (what a key that disagrees with the payload's ``model`` does).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from fault_helpers import eventually

from monitor.config import parse_config
from monitor.service import MonitorService

WARNING = "events arrived from partition"


def _config(
    bootstrap: str, tmp: Path, topic: str, labels_topic: str | None = None
) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"g-{topic}",
            "predictions_topic": topic,
            "labels_topic": labels_topic,
            "poll_timeout_ms": 100,
            "metadata_max_age_ms": 1000,
        },
        "http": {"port": 0},
        "state": {"path": str(tmp / "state.sqlite")},
        "unknown_models": "reject",
        "models": [{"name": "m"}, {"name": "n"}],
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 100}},
        "alerting": {"outbox_path": str(tmp / "outbox.sqlite")},
    }


def _event(model: str, i: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{model}{i}",
            "model": model,
            "timestamp": 1_700_000_000 + i,
            "features": {"x": float(i % 13)},
            "prediction": 0.5,
        }
    )


async def _produce(bootstrap: str, topic: str, sends: list[tuple[str, int, int]]) -> None:
    """``sends``: (model, event number, partition)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for model, i, partition in sends:
            await producer.send(topic, _event(model, i), key=model.encode(), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def _samples(metrics: str, name: str) -> dict[str, float]:
    """``model`` label -> value of every sample of ``name``."""
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(name + "{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            out[labels["model"]] = float(line.rsplit(" ", 1)[1])
    return out


async def _consume(
    bootstrap: str,
    tmp: Path,
    topic: str,
    expect: dict[str, int],
    labels_topic: str | None = None,
    expect_labels: dict[str, int] | None = None,
    then: Callable[[], Awaitable[None]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Run a service until each model holds its expected events, then run ``then`` and wait
    until each model has its expected labels counted; its /metrics and /api/status from
    before the stop."""
    service = MonitorService(parse_config(_config(bootstrap, tmp, topic, labels_topic)))
    await service.start()
    task = asyncio.create_task(service.run())

    def labelled(model: str) -> float:
        """Labels of ``model`` counted, whatever their join outcome."""
        return sum(
            s.value
            for metric in service.registry.collect()
            if metric.name == "monitor_labels"
            for s in metric.samples
            if s.name == "monitor_labels_total" and s.labels.get("model") == model
        )

    try:
        await eventually(
            lambda: all(
                m in service.models and service.models[m].events_total >= n
                for m, n in expect.items()
            ),
            30,
        )
        if then is not None:
            await then()
        await eventually(
            lambda: all(labelled(m) >= n for m, n in (expect_labels or {}).items()), 30
        )
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{service.http.url}/metrics")).text
            status = (await client.get(f"{service.http.url}/api/status")).json()
            for m in expect:  # /api/model carries the same status entry
                page = await client.get(f"{service.http.url}/api/model", params={"name": m})
                want = status["models"][m]["partition_conflict"]
                assert page.json()["status"]["partition_conflict"] == want
    finally:
        service.request_stop()
        await task
        await service.stop(grace_seconds=1)
    return metrics, status


@pytest.mark.kafka
async def test_one_models_events_on_two_partitions_are_counted_warned_once_and_shown(
    kafka_bootstrap: str, tmp_path: Path, topic_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_factory("keying", partitions=2)
    # Model m on both partitions, in several batches; model n keyed right (partition 1 only).
    sends = [("m", i, i % 2) for i in range(60)] + [("n", i, 1) for i in range(30)]
    await _produce(kafka_bootstrap, topic, sends)
    caplog.set_level(logging.WARNING, logger="monitor.service")
    metrics, status = await _consume(kafka_bootstrap, tmp_path, topic, {"m": 60, "n": 30})

    conflicts = _samples(metrics, "monitor_model_partition_conflicts_total")
    assert conflicts.get("m", 0) >= 1
    assert "n" not in conflicts
    warned = [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]
    assert len(warned) == 1, warned
    assert "'m'" in warned[0] and "key every event by its model" in warned[0]
    seen = status["models"]["m"]["partition_conflict"]
    assert seen is not None and seen["batches"] >= 1
    bound = seen["bound_partition"]
    assert {bound, *seen["other_partitions"]} == {f"{topic}/0", f"{topic}/1"}
    assert status["models"]["n"]["partition_conflict"] is None


@pytest.mark.kafka
async def test_events_keyed_by_model_raise_no_partition_conflict(
    kafka_bootstrap: str, tmp_path: Path, topic_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    topic = topic_factory("keying", partitions=2)
    sends = [("m", i, 0) for i in range(40)] + [("n", i, 1) for i in range(40)]
    await _produce(kafka_bootstrap, topic, sends)
    caplog.set_level(logging.WARNING, logger="monitor.service")
    metrics, status = await _consume(kafka_bootstrap, tmp_path, topic, {"m": 40, "n": 40})

    assert "monitor_model_partition_conflicts_total{" not in metrics
    assert not [r for r in caplog.records if WARNING in r.getMessage()]
    assert status["models"]["m"]["partition_conflict"] is None
    assert status["models"]["n"]["partition_conflict"] is None


async def _produce_labels(bootstrap: str, topic: str, sends: list[tuple[str, int, int]]) -> None:
    """``sends``: (model, event number, partition): the label of that prediction event."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for model, i, partition in sends:
            label = orjson.dumps({"event_id": f"{model}{i}", "model": model, "label": 1})
            await producer.send(topic, label, key=model.encode(), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.kafka
async def test_labels_on_another_partition_number_than_the_predictions_are_a_conflict(
    kafka_bootstrap: str, tmp_path: Path, topic_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With several instances, a label on another partition number reaches an instance that
    does not hold its model: one instance must already say so, as for predictions."""
    topic = topic_factory("keying", partitions=2)
    labels = topic_factory("keying-labels", partitions=2)
    # m: predictions on 0, labels on 1 (mis-keyed labels); n: both on 1 (keyed right).
    await _produce(kafka_bootstrap, topic, [("m", i, 0) for i in range(40)])
    await _produce(kafka_bootstrap, topic, [("n", i, 1) for i in range(40)])
    caplog.set_level(logging.WARNING, logger="monitor.service")
    sends = [("m", i, 1) for i in range(20)] + [("n", i, 1) for i in range(20)]
    metrics, status = await _consume(
        kafka_bootstrap,
        tmp_path,
        topic,
        {"m": 40, "n": 40},
        labels,
        {"m": 20, "n": 20},
        # Labels only once the predictions are in: the model is bound by then.
        then=lambda: _produce_labels(kafka_bootstrap, labels, sends),
    )

    conflicts = _samples(metrics, "monitor_model_partition_conflicts_total")
    assert conflicts.get("m", 0) >= 1, metrics
    assert "n" not in conflicts
    warned = [r.getMessage() for r in caplog.records if WARNING in r.getMessage()]
    assert len(warned) == 1 and "'m'" in warned[0], warned
    seen = status["models"]["m"]["partition_conflict"]
    assert seen["bound_partition"] == f"{topic}/0"
    assert seen["other_partitions"] == [f"{labels}/1"]
    assert status["models"]["n"]["partition_conflict"] is None
