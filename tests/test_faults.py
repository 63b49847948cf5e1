"""Faults with real processes: the monitor SIGKILLed and SIGTERMed under load, the broker down.

What is asserted is the contract of docs/GUARANTEES.md:

* after ``kill -9`` (before the first checkpoint, and between a commit and the
  next checkpoint) and a restart, every model's state equals that of an
  uninterrupted run over the same events, and the receiver got the same set of
  notification keys: none lost, none new. A key may arrive twice (a kill during
  its delivery: at-least-once), always with the identical payload;
* SIGTERM under load drains, checkpoints, commits and flushes the outbox;
* a broker down for ~12 s: /healthz says 503 meanwhile and 200 after, and the
  monitor reconnects by itself without losing an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alert_receivers import Hang, RecordingReceiver
from fault_helpers import (
    MonitorProcess,
    committed_offsets,
    end_offsets,
    eventually,
    write_config,
)

from devtools.local_kafka import LocalKafka, create_topics
from monitor.config import ModelConfig, parse_config, resolve_model
from monitor.model_monitor import ModelMonitor
from monitor.service import MonitorService
from monitor.simulate import DriftSpec, publish
from monitor.state_format import decode
from monitor.store import SQLiteStateStore

pytestmark = pytest.mark.kafka

MODELS = ("credit-risk", "fraud")


def _config(
    bootstrap: str, topic: str, group: str, tmp: Path, tag: str, hook: str, **kafka: Any
) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "predictions_topic": topic,
            "labels_topic": None,
            "poll_timeout_ms": 100,
            "max_batch_records": 700,
            "metadata_max_age_ms": 1000,
            # The broker's minimum: a SIGKILLed member holds its partitions this long.
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            **kafka,
        },
        "http": {"port": 0},
        "state": {"path": str(tmp / f"state-{tag}.sqlite"), "checkpoint_interval_seconds": 2.0},
        "unknown_models": "track",
        "defaults": {
            "window": {"size": 1000, "step": 250},
            "reference": {"learn_first": 1000},
        },
        "alerting": {
            "receivers": {"hook": {"type": "webhook", "url": hook}},
            "outbox_path": str(tmp / f"outbox-{tag}.sqlite"),
        },
    }


def _stored_offsets(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
    finally:
        db.close()
    return {f"{t}/{p}": o for t, p, o in rows}


def _load_models(path: Path) -> dict[str, ModelMonitor]:
    """The stored models, restored as the service restores them (settings from the config)."""
    cfg = parse_config(_config("127.0.0.1:9", "t", "g", path.parent, "x", "http://127.0.0.1:9/"))
    store = SQLiteStateStore(path)
    try:
        out = {}
        for m in store.models():
            settings = cfg.model(m) or resolve_model(ModelConfig(name=m), cfg.defaults)
            out[m], _ = ModelMonitor.restore(settings, cfg.limits, decode(store.load_model(m)))
        return out
    finally:
        store.close()


def _assert_same_state(got: ModelMonitor, want: ModelMonitor) -> None:
    name = want.name
    assert got.events_total == want.events_total, name
    assert got.evaluations == want.evaluations, name
    assert got.invalid_values == want.invalid_values, name
    np.testing.assert_array_equal(got.window.numeric(), want.window.numeric(), err_msg=name)
    np.testing.assert_array_equal(got.window.categorical(), want.window.categorical())
    np.testing.assert_array_equal(got.window.timestamps(), want.window.timestamps())
    assert got.last is not None and want.last is not None
    assert got.last.context == want.last.context
    for feature, s in want.last.numeric.items():
        g = got.last.numeric[feature]
        assert (g.count, g.mean, g.std, g.quantiles) == (s.count, s.mean, s.std, s.quantiles)
    for feature, results in want.last.results.items():
        assert [(r.detector, r.statistic, r.drifted) for r in got.last.results[feature]] == [
            (r.detector, r.statistic, r.drifted) for r in results
        ], feature
    assert got.last.drifting == want.last.drifting


async def _publish_all(bootstrap: str, topic: str, events: int, rate: float) -> None:
    drift = DriftSpec(kind="mean", features=("income", "credit_score"), size=1.5, start=events // 2)
    await asyncio.gather(
        *[
            publish(bootstrap, topic=topic, model=m, events=events, rate=rate, drift=drift, seed=i)
            for i, m in enumerate(MODELS)
        ]
    )


async def _uninterrupted(raw: dict[str, Any], ends: dict[str, int]) -> None:
    service = MonitorService(parse_config(raw))
    await service.start()
    task = asyncio.create_task(service.run())
    try:
        await eventually(
            lambda: all(service.status()["positions"].get(k, -1) >= v for k, v in ends.items()),
            within=60,
        )
    finally:
        service.request_stop()
        await task
        await service.stop(grace_seconds=5)


@pytest.mark.slow
async def test_kill_9_under_load_then_restart_equals_an_uninterrupted_run(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic = f"faults-{suffix}"
    create_topics(kafka_bootstrap, [topic], 2)
    events = 10000
    async with RecordingReceiver() as crashed_rx, RecordingReceiver() as reference_rx:
        raw = _config(kafka_bootstrap, topic, f"g-{suffix}", tmp_path, "crash", crashed_rx.url)
        cfg = write_config(tmp_path / "crash.yaml", raw)
        procs: list[MonitorProcess] = []
        producer: asyncio.Task[None] | None = None
        try:
            # 1. killed before its first checkpoint: only the starting offsets are stored.
            p = MonitorProcess(cfg, tmp_path / "monitor.log").start()
            procs.append(p)
            await p.wait_serving()
            producer = asyncio.create_task(_publish_all(kafka_bootstrap, topic, events, rate=600))

            async def progressed() -> bool:
                return sum((await p.status())["positions"].values()) >= 500

            await eventually(progressed, within=30, every=0.05)
            p.kill()
            state = tmp_path / "state-crash.sqlite"
            stored = _stored_offsets(state)
            committed = await committed_offsets(kafka_bootstrap, f"g-{suffix}", topic)
            assert stored, "the starting offsets are stored before anything is applied"
            assert any((committed[k] or 0) > stored.get(k, 0) for k in committed), (
                stored,
                committed,
            )

            # 2. killed under load after checkpoints, between a commit and the next checkpoint.
            p = MonitorProcess(cfg, tmp_path / "monitor.log").start()
            procs.append(p)
            await p.wait_serving()
            first = stored
            await eventually(  # a checkpoint happened
                lambda: any(v > first.get(k, 0) for k, v in _stored_offsets(state).items()),
                within=30,
            )

            async def committed_past_the_checkpoint() -> bool:
                # Commits go at most once a second, checkpoints every 2 s: a fixed second's
                # sleep after a checkpoint was seen landed past the next checkpoint in about
                # one run in four (the scenario, not the service, failed). Wait for it instead.
                stored = _stored_offsets(state)
                committed = await committed_offsets(kafka_bootstrap, f"g-{suffix}", topic)
                return any((committed[k] or 0) > stored.get(k, 0) for k in committed)

            await eventually(committed_past_the_checkpoint, within=30, every=0.05)
            p.kill()  # between a commit and the next checkpoint
            stored = _stored_offsets(state)
            committed = await committed_offsets(kafka_bootstrap, f"g-{suffix}", topic)
            assert any((committed[k] or 0) > stored.get(k, 0) for k in committed), (
                stored,
                committed,
            )
            assert not producer.done(), "the second kill should happen under load"

            # 3. restarted: consumes the rest, then stops cleanly.
            p = MonitorProcess(cfg, tmp_path / "monitor.log").start()
            procs.append(p)
            await p.wait_serving()
            await producer
            ends = await end_offsets(kafka_bootstrap, topic)
            assert sum(ends.values()) == 2 * events
            await p.wait_positions(ends)
            assert await asyncio.to_thread(p.terminate) == 0, p.tail()
        finally:
            if producer is not None:
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producer
            for proc in procs:
                proc.ensure_dead()

        ref_raw = _config(kafka_bootstrap, topic, f"r-{suffix}", tmp_path, "ref", reference_rx.url)
        await _uninterrupted(ref_raw, ends)

        got = _load_models(tmp_path / "state-crash.sqlite")
        want = _load_models(tmp_path / "state-ref.sqlite")
        assert sorted(got) == sorted(want) == sorted(MODELS)
        for m in MODELS:
            _assert_same_state(got[m], want[m])
        assert _stored_offsets(tmp_path / "state-crash.sqlite") == ends

        # Alerts: the drift paged in both runs, with the same keys; none lost, none new.
        # Delivery is at-least-once: a kill during a delivery sends that key again, and
        # receivers deduplicate by webhook-id; so a duplicate must carry the identical payload.
        await reference_rx.wait_for_requests(len(MODELS), within=15)
        await crashed_rx.wait_for_requests(len(MODELS), within=15)
        await asyncio.sleep(1.0)
        want = {r.headers["webhook-id"]: r.body for r in reference_rx.requests}
        got: dict[str, set[bytes]] = {}
        for r in crashed_rx.requests:
            got.setdefault(r.headers["webhook-id"], set()).add(r.body)
        assert set(got) == set(want)
        for key, bodies in got.items():
            assert len(bodies) == 1, f"{key}: a duplicate delivery with a different payload"


@pytest.mark.slow
async def test_sigterm_under_load_drains_checkpoints_commits_and_flushes(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic = f"sigterm-{suffix}"
    create_topics(kafka_bootstrap, [topic], 2)
    async with RecordingReceiver() as rx:
        raw = _config(kafka_bootstrap, topic, f"g-{suffix}", tmp_path, "t", rx.url)
        raw["state"]["checkpoint_interval_seconds"] = 600  # only the shutdown checkpoints
        p = MonitorProcess(write_config(tmp_path / "t.yaml", raw), tmp_path / "t.log").start()
        try:
            await p.wait_serving()
            producer = asyncio.create_task(_publish_all(kafka_bootstrap, topic, 6000, rate=3000))
            # Slow receiver: the first notification is still in flight when SIGTERM arrives.
            rx.script(Hang(1.5))
            await rx.wait_for_requests(1, within=30)
            t0 = time.monotonic()
            assert await asyncio.to_thread(p.terminate, 20) == 0, p.tail()
            took = time.monotonic() - t0
            await producer
        finally:
            p.ensure_dead()
    assert took < 10.0 + 5.0  # the CLI's grace period (10 s) plus the rest of the shutdown
    stored = _stored_offsets(tmp_path / "state-t.sqlite")
    committed = await committed_offsets(kafka_bootstrap, f"g-{suffix}", topic)
    assert stored and {k: stored.get(k) for k in committed} == committed
    models = _load_models(tmp_path / "state-t.sqlite")
    assert sum(m.events_total for m in models.values()) == sum(stored.values())
    db = sqlite3.connect(tmp_path / "outbox-t.sqlite")
    try:
        states = dict(db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
    finally:
        db.close()
    assert states.get("pending", 0) == 0, states
    assert "final checkpoint/commit failed" not in p.output()


@pytest.mark.slow
async def test_broker_down_30s_healthz_503_then_recovers_without_losing_events(
    tmp_path: Path, scratch_kafka: LocalKafka
) -> None:
    kafka = scratch_kafka  # conftest.py: a broker of the session's own, which we may restart
    bootstrap = kafka.bootstrap_servers
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    kafka.create_topics([topic], 1)
    raw = _config(bootstrap, topic, f"g-{topic}", tmp_path, "o", "http://127.0.0.1:9/unused")
    raw["kafka"]["stall_seconds"] = 3.0
    raw["alerting"] = {"outbox_path": str(tmp_path / "outbox-o.sqlite")}
    p = MonitorProcess(write_config(tmp_path / "o.yaml", raw), tmp_path / "o.log").start()
    try:
        await p.wait_serving()
        await publish(bootstrap, topic=topic, model="credit-risk", events=1500, seed=1)
        await p.wait_positions({f"{topic}/0": 1500})
        assert (await p.get("/healthz")).status_code == 200

        codes: list[int] = []
        outage = asyncio.create_task(asyncio.to_thread(kafka.restart, down_for=30.0))
        t0 = time.monotonic()
        while not outage.done():
            codes.append((await p.get("/healthz")).status_code)
            await asyncio.sleep(0.5)
        await outage
        assert 503 in codes, codes
        assert time.monotonic() - t0 >= 30.0

        await publish(bootstrap, topic=topic, model="credit-risk", events=1500, seed=2)
        await p.wait_positions({f"{topic}/0": 3000}, within=60)

        async def healthy() -> bool:
            return (await p.get("/healthz")).status_code == 200

        await eventually(healthy, within=30, every=0.5)
        assert (await p.status())["models"]["credit-risk"]["events"] == 3000
        assert await asyncio.to_thread(p.terminate) == 0, p.tail()
    finally:
        p.ensure_dead()
    models = _load_models(tmp_path / "state-o.sqlite")
    assert models["credit-risk"].events_total == 3000
