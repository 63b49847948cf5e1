"""A model taken out of the config while its incident is open: the incident is resolved.

Only an evaluation resolves an incident, and the events of a model the config no longer
lists are refused: the incident it had open stayed open at PagerDuty, Slack and the
webhooks for good (an orphan the on-call closes by hand, with no word from the monitor of
why). Now, when the model's stored state is found unlisted, its open incidents get their
resolve, once, with the reason; its state is then kept or deleted as
``state.unlisted_models`` says. Real SQLite files and a real local HTTP receiver.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from alert_receivers import RecordingReceiver
from fault_helpers import eventually

from devtools.local_kafka import create_topics
from monitor import state_format
from monitor.config import parse_config
from monitor.events import RawMessage
from monitor.service import MonitorService
from monitor.simulate import DriftSpec, publish
from monitor.store import SQLiteStateStore

TP = ("predictions", 0)
DRIFT = DriftSpec(kind="mean", features=("income", "credit_score"), size=3.0, start=400)


class _NoKafka:
    """Commits go nowhere: these services are fed in process."""

    async def commit(self, offsets: dict[Any, int]) -> None:
        return None

    def lag(self, positions: dict[Any, int]) -> dict[Any, int]:
        return {}


def _raw(models: list[str], home: Path, url: str, unlisted: str = "keep") -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": "127.0.0.1:9", "labels_topic": None},
        "http": {"port": 0},
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 300}},
        "models": [{"name": m} for m in models],
        "alerting": {
            "outbox_path": str(home / "outbox.sqlite"),
            "receivers": {"hook": {"type": "webhook", "url": url}},
            "delivery": {"initial_backoff_seconds": 0.02, "max_backoff_seconds": 0.05},
        },
        "state": {"path": str(home / "state.sqlite"), "unlisted_models": unlisted},
    }


async def _service(raw: dict[str, Any], home: Path) -> MonitorService:
    service = MonitorService(parse_config(raw, base_dir=home))
    service.store = SQLiteStateStore(home / "state.sqlite")
    service.source = _NoKafka()  # type: ignore[assignment]
    await service.alerts.start()
    return service


async def _stop(service: MonitorService) -> None:
    await service.alerts.stop(grace_seconds=2.0)
    assert service.store is not None
    service.store.close()


def _batch(model: str, start: int, n: int, shift: float) -> list[RawMessage]:
    out = []
    for i in range(start, start + n):
        event = {
            "event_id": f"{model}-{i}",
            "model": model,
            "timestamp": 1_780_000_000 + i,
            "features": {"x": float(i % 7) + shift},
            "prediction": (i % 10) / 10,
        }
        out.append(RawMessage(orjson.dumps(event), 1_780_000_000.0 + i, *TP, i))
    return out


@pytest.mark.parametrize("unlisted", ["keep", "delete"])
async def test_an_open_incident_of_a_model_taken_out_of_the_config_is_resolved_once(
    tmp_path: Path, unlisted: str
) -> None:
    async with RecordingReceiver() as rx:
        first = await _service(_raw(["gone", "other"], tmp_path, rx.url), tmp_path)
        try:
            await first.process(_batch("gone", 0, 300, shift=0.0))  # the learned reference
            await first.process(_batch("gone", 300, 400, shift=50.0))  # drift: a page
            await rx.wait_for_requests(1)
            first.checkpoint()
        finally:
            await _stop(first)
        assert [r.json["status"] for r in rx.requests] == ["firing"]
        fire = rx.requests[0].json

        raw = _raw(["other"], tmp_path, rx.url, unlisted)  # "gone" taken out of the config
        second = await _service(raw, tmp_path)
        try:
            await second._load_assigned({TP})
            await rx.wait_for_requests(2)
            second.checkpoint()  # the state kept says the incident is closed
            assert second.store is not None
            stored = second.store.load_model("gone")
        finally:
            await _stop(second)
        resolve = rx.requests[1].json
        assert resolve["status"] == "resolved"
        assert resolve["fingerprint"] == fire["fingerprint"]
        assert resolve["started_at"] == fire["started_at"]
        assert "no longer in the config" in resolve["reason"]
        assert (stored is None) == (unlisted == "delete")

        third = await _service(raw, tmp_path)  # the next restart: nothing more to say
        try:
            await third._load_assigned({TP})
            assert third.alerts.outbox.counts().get("pending", 0) == 0
        finally:
            await _stop(third)
        assert len(rx.requests) == 2
        if unlisted == "delete":
            return

        # Listed again and still drifting: restored from the state kept (its reference and
        # window), a new incident opens and pages; restored as it was before the resolve,
        # the drift was taken for the incident already closed, and paged nobody.
        back = await _service(_raw(["gone", "other"], tmp_path, rx.url), tmp_path)
        try:
            await back._load_assigned({TP})
            assert back.models["gone"].events_total == 700
            await back.process(_batch("gone", 700, 200, shift=50.0))
            await rx.wait_for_requests(3)
        finally:
            await _stop(back)
        again = rx.requests[2].json
        assert again["status"] == "firing"
        assert again["started_at"] > fire["started_at"]


@pytest.mark.kafka
async def test_with_the_kafka_backend_the_resolve_goes_out_through_the_alerts_topic(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The Kafka state backend spools notifications into the checkpoint's transaction (the
    alerts topic); the resolve of an unlisted model's incident takes that road too."""
    suffix = uuid.uuid4().hex[:10]
    topic = f"unlisted-{suffix}"
    create_topics(kafka_bootstrap, [topic], 1)

    def raw(url: str, models: list[str], unknown: str) -> dict[str, Any]:
        return {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"g-{suffix}",
                "predictions_topic": topic,
                "labels_topic": None,
                "poll_timeout_ms": 100,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 1000,
            },
            "http": {"port": 0},
            "state": {"backend": "kafka", "instance_id": "one", "path": str(tmp_path / "x.db")},
            "unknown_models": unknown,
            "models": [{"name": m} for m in models],
            "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 200}},
            "alerting": {
                "receivers": {"hook": {"type": "webhook", "url": url}},
                "outbox_path": str(tmp_path / "outbox.sqlite"),
            },
        }

    async def run(config: dict[str, Any], until: Any) -> None:
        service = MonitorService(parse_config(config))
        await service.start()
        task = asyncio.create_task(service.run())
        try:
            await until(service)
        finally:
            service.request_stop()
            await task
            await service.stop(grace_seconds=5)

    async with RecordingReceiver() as rx:

        async def paged(service: MonitorService) -> None:
            await publish(kafka_bootstrap, topic=topic, model="m", events=800, drift=DRIFT)
            await rx.wait_for_requests(1, within=60)
            await eventually(lambda: service._positions.get((topic, 0)) == 800, 60)

        await run(raw(rx.url, [], "track"), paged)  # "m" tracked: its incident opens
        assert [r.json["status"] for r in rx.requests] == ["firing"]

        async def resolved(service: MonitorService) -> None:
            await rx.wait_for_requests(2, within=60)

        await run(raw(rx.url, ["other"], "reject"), resolved)  # "m" no longer monitored
        assert [r.json["status"] for r in rx.requests] == ["firing", "resolved"]
        assert rx.requests[1].json["fingerprint"] == rx.requests[0].json["fingerprint"]
        assert "no longer in the config" in rx.requests[1].json["reason"]

        async def paged_again(service: MonitorService) -> None:
            drifted = DriftSpec(kind="mean", features=("income",), size=3.0, start=0)
            await publish(kafka_bootstrap, topic=topic, model="m", events=300, drift=drifted)
            await rx.wait_for_requests(3, within=60)

        # Listed again, still drifting: the state kept in the changelog had its incident
        # closed (written with the resolve's checkpoint), so a new incident pages.
        await run(raw(rx.url, ["m"], "reject"), paged_again)
        assert rx.requests[2].json["status"] == "firing"
        assert rx.requests[2].json["started_at"] > rx.requests[0].json["started_at"]


@pytest.mark.parametrize("alerts", ["[1, 2]", '{"version": 1, "models": []}', "not json", '"x"'])
async def test_an_unreadable_saved_alert_state_of_an_unlisted_model_is_said_not_raised(
    tmp_path: Path, alerts: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged alert document in an unlisted model's state: one WARNING, the state kept as
    it is, the other models loaded (it had been an AttributeError out of the assignment)."""
    async with RecordingReceiver() as rx:
        first = await _service(_raw(["gone", "other"], tmp_path, rx.url), tmp_path)
        try:
            await first.process(_batch("gone", 0, 150, shift=0.0))
            await first.process(_batch("other", 0, 150, shift=0.0))
            first.checkpoint()
            assert first.store is not None
            state = state_format.decode(first.store.load_model("gone") or b"")
            damaged = state_format.encode(msgspec.structs.replace(state, alerts=alerts))
            first.store.save({"gone": (damaged, TP)}, {})
        finally:
            await _stop(first)
        second = await _service(_raw(["other"], tmp_path, rx.url), tmp_path)
        try:
            with caplog.at_level(logging.WARNING, logger="monitor"):
                await second._load_assigned({TP})
            assert "other" in second.models
            assert second.store is not None and second.store.load_model("gone") == damaged
        finally:
            await _stop(second)
    said = [
        r.getMessage() for r in caplog.records if "saved alert state is unreadable" in r.message
    ]
    assert len(said) == 1 and "gone" in said[0], said
    assert rx.requests == []
