"""State across a restart, with the real broker: config changes applied, restored models
visible at once, a damaged state refused with a reason while the service runs on."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor.config import parse_config
from monitor.detectors.ks import KSDetector
from monitor.service import MonitorService
from monitor.simulate import Simulator

pytestmark = [pytest.mark.kafka]

MODEL = "credit-risk"


async def _publish(bootstrap: str, topic: str, n: int, seed: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event, _ in Simulator(model=MODEL, seed=seed).events(n):
            await producer.send(topic, orjson.dumps(event), key=MODEL.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _eventually(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within}s: {what}")


def _reference(path: Path, seed: int) -> Path:
    sim = Simulator(model=MODEL, seed=seed)
    path.write_bytes(b"\n".join(orjson.dumps(e) for e, _ in sim.events(2_000)))
    return path


class _Running:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.service = MonitorService(parse_config(raw))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MonitorService:
        await self.service.start()
        self.task = asyncio.create_task(self.service.run())
        return self.service

    async def __aexit__(self, *_: object) -> None:
        self.service.request_stop()
        assert self.task is not None
        await self.task
        await self.service.stop(grace_seconds=1)


async def test_config_changes_apply_at_restart_and_restored_models_show_at_once(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = topic_factory("restore", partitions=1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state.sqlite"

    def config(window: int, alpha: float, reference: Path) -> dict[str, Any]:
        return {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": group,
                "predictions_topic": topic,
                "labels_topic": None,
                "poll_timeout_ms": 100,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500,
            },
            "http": {"port": 0},
            "state": {"path": str(state)},
            "models": [
                {
                    "name": MODEL,
                    "reference": {"path": str(reference)},
                    "window": {"size": window, "step": 50},
                    "drift": {"numeric": ["psi", "ks", "adwin"], "ks": {"alpha": alpha}},
                }
            ],
            "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
        }

    first_ref = _reference(tmp_path / "ref-1.jsonl", seed=1)
    second_ref = _reference(tmp_path / "ref-2.jsonl", seed=2)
    async with _Running(config(100, 0.01, first_ref)) as svc:
        await _publish(kafka_bootstrap, topic, 300, seed=5)
        await _eventually(
            lambda: MODEL in svc.models and svc.models[MODEL].events_total == 300, "300 events"
        )
        old_fingerprint = svc.models[MODEL].reference.fingerprint  # type: ignore[union-attr]
        history = svc.history.points(MODEL, "income")
        assert len(history) == svc.models[MODEL].evaluations > 0

    # Restart with a bigger window, another KS alpha, another reference; nothing is sent.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="monitor.service"):
        async with _Running(config(400, 0.2, second_ref)) as svc:
            await _eventually(lambda: MODEL in svc.models, "the model restored at assignment")
            mm = svc.models[MODEL]
            status = svc.status()["models"][MODEL]
            assert status["events"] == 300
            assert status["reference"]["fingerprint"] != old_fingerprint
            assert status["window"] is not None  # the last evaluation was restored too
            assert svc.history.points(MODEL, "income") == history  # and the UI's history
            async with httpx.AsyncClient() as client:
                metrics = (await client.get(f"{svc.http.url}/metrics")).text
            assert f'monitor_model_events_total{{model="{MODEL}"}} 300.0' in metrics
            psi = f'monitor_drift_statistic{{detector="psi",feature="income",model="{MODEL}"}}'
            assert psi in metrics
            # The config is the source of truth: window, detector threshold, reference.
            assert (mm.window.capacity, mm.window.size) == (400, 100)
            ks = next(d for d in mm.detectors["income"] if isinstance(d, KSDetector))
            assert ks.alpha == 0.2
            assert mm.reference is not None and mm.reference.source.endswith("ref-2.jsonl")
            await _publish(kafka_bootstrap, topic, 100, seed=6)
            await _eventually(lambda: mm.events_total == 400, "it continues")
            assert mm.window.size == 200
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    changes = [m for m in lines if "config change applied" in m]
    assert [m.split("restored state: ")[1].split(":")[0] for m in changes] == [
        "window",
        "drift",
        "reference",
    ]
    assert any(m.startswith(f"restored state of model {MODEL} (300 events") for m in lines)

    # A damaged state: that model starts fresh with a reason; the service runs on.
    db = sqlite3.connect(state)
    (blob,) = db.execute("SELECT blob FROM models WHERE model = ?", (MODEL,)).fetchone()
    damaged = bytearray(blob)
    damaged[200] ^= 0xFF
    db.execute("UPDATE models SET blob = ? WHERE model = ?", (bytes(damaged), MODEL))
    db.commit()
    db.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="monitor.service"):
        async with _Running(config(400, 0.2, second_ref)) as svc:
            await _eventually(lambda: MODEL in svc.models, "the model (fresh) at assignment")
            assert svc.models[MODEL].events_total == 0
            assert svc.history.points(MODEL, "income") == []
            failures = svc.registry.get_sample_value(
                "monitor_state_restore_failures_total", {"reason": "corrupt"}
            )
            assert failures == 1
            await _publish(kafka_bootstrap, topic, 60, seed=7)
            await _eventually(lambda: svc.models[MODEL].events_total == 60, "it runs on")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"stored state of model {MODEL} not restored (corrupt" in m for m in warnings)


async def test_a_checkpoint_writes_only_the_models_that_changed(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("restore-skip", partitions=1)
    state = tmp_path / "state.sqlite"
    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "group_id": f"g-{uuid.uuid4().hex[:8]}",
            "predictions_topic": topic,
            "labels_topic": None,
            "poll_timeout_ms": 100,
        },
        "http": {"port": 0},
        "state": {"path": str(state), "checkpoint_interval_seconds": 0.2},
        "defaults": {"window": {"size": 100, "step": 50}, "reference": {"learn_first": 100}},
        "models": [{"name": MODEL}, {"name": "quiet"}],
        "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
    }

    def saved() -> dict[str, tuple[float, int]]:
        db = sqlite3.connect(state)
        try:
            rows = db.execute("SELECT model, saved_at, length(blob) FROM models").fetchall()
        finally:
            db.close()
        return {m: (t, n) for m, t, n in rows}

    async def send(producer: AIOKafkaProducer, model: str, n: int, seed: int) -> None:
        for event, _ in Simulator(model=model, seed=seed).events(n):
            await producer.send(topic, orjson.dumps(event), partition=0)
        await producer.flush()

    async with _Running(raw) as svc:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await send(producer, MODEL, 150, 1)
            await send(producer, "quiet", 150, 2)
            await _eventually(
                lambda: all(
                    m in svc.models and svc.models[m].events_total == 150 for m in (MODEL, "quiet")
                ),
                "150 events of each",
            )
            await _eventually(lambda: set(saved()) == {MODEL, "quiet"}, "both saved")
            await asyncio.sleep(0.5)  # checkpoints with nothing new
            first = saved()
            await send(producer, MODEL, 60, 3)
            await _eventually(lambda: saved()[MODEL][0] > first[MODEL][0], "the busy model saved")
        finally:
            await producer.stop()
        assert svc.models[MODEL].events_total == 210
        assert saved()["quiet"] == first["quiet"]  # unchanged: not written again
    # Both restore, and the quiet one's stored state still matches the offsets.
    async with _Running(raw) as svc:
        await _eventually(lambda: {MODEL, "quiet"} <= set(svc.models), "both restored")
        assert svc.models["quiet"].events_total == 150
        assert svc.models[MODEL].events_total == 210
    # A model removed from the config (unknown models rejected): its state is kept, not
    # restored (state.unlisted_models: keep, the default); deleted with delete.
    raw["models"] = [{"name": MODEL}]
    kept = saved()["quiet"]
    async with _Running(raw) as svc:
        await _eventually(lambda: MODEL in svc.models, "the listed model restored")
        assert "quiet" not in svc.models
    assert saved()["quiet"] == kept
    raw["state"]["unlisted_models"] = "delete"
    async with _Running(raw) as svc:
        await _eventually(lambda: MODEL in svc.models, "the listed model restored")
        assert "quiet" not in svc.models
    assert set(saved()) == {MODEL}


async def test_constraint_violation_counters_survive_a_restart(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    """``monitor_constraint_violations_total`` (SQLite backend) continues from its stored
    value after a restart: shown at once, before any event, and counted on from there."""
    topic = topic_factory("restore-violations", partitions=1)
    raw = {
        "kafka": {
            "bootstrap_servers": kafka_bootstrap,
            "group_id": f"g-{uuid.uuid4().hex[:8]}",
            "predictions_topic": topic,
            "labels_topic": None,
            "poll_timeout_ms": 100,
        },
        "http": {"port": 0},
        "state": {"path": str(tmp_path / "state.sqlite")},
        "models": [
            {
                "name": MODEL,
                "reference": {"path": str(_reference(tmp_path / "ref.jsonl", seed=1))},
                "window": {"size": 200, "step": 100},
            }
        ],
        "alerting": {"outbox_path": str(tmp_path / "outbox.sqlite")},
    }
    labels = {"model": MODEL, "feature": "age", "rule": "below_min"}

    async def publish(n: int, seed: int, sentinels: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i, (event, _) in enumerate(Simulator(model=MODEL, seed=seed).events(n)):
                if i < sentinels:
                    event["features"]["age"] = -1  # below the reference minimum
                await producer.send(topic, orjson.dumps(event), key=MODEL.encode())
            await producer.flush()
        finally:
            await producer.stop()

    def violations(svc: MonitorService) -> float | None:
        return svc.registry.get_sample_value("monitor_constraint_violations_total", labels)

    async with _Running(raw) as svc:
        await publish(300, seed=5, sentinels=7)
        await _eventually(
            lambda: MODEL in svc.models and svc.models[MODEL].events_total == 300, "300 events"
        )
        assert violations(svc) == 7
    async with _Running(raw) as svc:
        await _eventually(lambda: MODEL in svc.models, "the model restored at assignment")
        assert svc.models[MODEL].events_total == 300
        assert violations(svc) == 7  # at once, not from zero
        await publish(100, seed=6, sentinels=2)
        await _eventually(lambda: svc.models[MODEL].events_total == 400, "it continues")
        assert violations(svc) == 9
