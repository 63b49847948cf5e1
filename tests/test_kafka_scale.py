"""Scale out and back under load, on the Kafka state backend, with real processes.

Three ``monitor run`` processes, each with its own directory (as if on three
machines; nothing shared but the broker), join one group while events flow:
1 -> 3 instances, then one is killed with ``kill -9`` and its directory deleted,
another stops, and one instance finishes the stream. At the end every model's
state in the changelog equals the state of one uninterrupted single-instance run
over the same stream: same event and evaluation counts, same window contents,
same drift runs. Nothing was lost to the moves and the kill, nothing counted twice.

Four models drift, three early and one late, so alerts are decided before, during
and after the moves; they go through the alerts topic to a real local HTTP receiver
(a signed webhook). The scale-out 1 -> 3 happens while the receiver holds the first
three pages (one per alerts-topic partition): the group moves two of those
partitions away from an instance whose deliveries are not finished, which must
finish and commit them before it gives the partitions up (else their new owners
page again). At the end every idempotency key (``webhook-id``) was
delivered exactly once, every incident paged "fire" once, and every key of the
uninterrupted run was delivered.

The kill -9 happens at a moment when the killed instance has no delivery in flight:
right after every record of the alerts topic is seen committed by the alerts
group. A kill between a delivery and its commit is the one case that delivers a key
twice (at least once; docs/GUARANTEES.md), which this test does not provoke.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from monitor import state_format
from monitor.alerting.alert_log import decode_record
from monitor.config import parse_config
from monitor.kafka_store import KafkaStateStore
from monitor.service import MonitorService
from monitor.simulate import DriftSpec, Simulator
from tests.alert_receivers import Hold, RecordingReceiver
from tests.fault_helpers import MonitorProcess, end_offsets, eventually, write_config

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 3
MODELS = [f"m{i}" for i in range(6)]  # model i on partition i % 3: two models per partition
EVENTS = 3000  # per model
# Drift (after the 500 learned reference events): m0, m1, m2 early, one on each partition of
# the alerts topic (keys "m0", "m1", "m2" hash to 1, 2, 0), so their pages are in flight on
# the first instance when the scale-out moves two of its three alerts partitions away; m3
# late, after the kill.
DRIFTS = {
    m: DriftSpec(kind="mean", features=("income", "credit_score"), size=3.0, start=start)
    for m, start in (("m0", 600), ("m1", 600), ("m2", 600), ("m3", 2300))
}
SECRET = "whsec_" + "c2NhbGUtdGVzdC1zaWduaW5nLXNlY3JldA=="


def _raw(
    bootstrap: str, topic: str, group: str, home: Path, name: str, backend: str, url: str
) -> Any:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "predictions_topic": topic,
            "labels_topic": None,
            "poll_timeout_ms": 100,
            "max_batch_records": 500,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 500,
        },
        "http": {"port": 0},
        "state": {
            "backend": backend,
            **({"instance_id": name} if backend == "kafka" else {}),
            "path": str(home / name / "state.sqlite"),
            "checkpoint_interval_seconds": 1,
        },
        "defaults": {"window": {"size": 500, "step": 250}, "reference": {"learn_first": 500}},
        "models": [{"name": m} for m in MODELS],
        "alerting": {
            "outbox_path": str(home / name / "outbox.sqlite"),
            "receivers": {
                "hook": {
                    "type": "webhook",
                    "url": url,
                    "signing_secret": SECRET,
                    "timeout_seconds": 30,
                }
            },
        },
    }


async def _publish(bootstrap: str, topic: str, chunks: int) -> None:
    """EVENTS per model, in ``chunks`` rounds with a pause between (a steady load)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        streams = {
            m: list(Simulator(model=m, seed=i, drift=DRIFTS.get(m, DriftSpec())).events(EVENTS))
            for i, m in enumerate(MODELS)
        }
        per = EVENTS // chunks
        for c in range(chunks):
            for i, m in enumerate(MODELS):
                for event, _ in streams[m][c * per : (c + 1) * per]:
                    await producer.send(topic, orjson.dumps(event), key=m.encode(), partition=i % 3)
            await producer.flush()
            await asyncio.sleep(0.5)
    finally:
        await producer.stop()


def _summary(st: state_format.ModelState) -> dict[str, Any]:
    """What must be equal: counts, window contents, drift runs, learned reference."""
    w = st.window
    return {
        "events": st.events_total,
        "evaluations": st.evaluations,
        "since_eval": st.since_eval,
        "window": None
        if w is None
        else (w.size, w.total, w.numeric.data, w.categorical.data, w.timestamps.data),
        "drift_runs": [msgspec.to_builtins(r) for r in st.drift_runs],
        "learned": st.learned.fingerprint if st.learned else None,
    }


async def _alerts_committed(bootstrap: str, topic: str, group: str) -> bool:
    """Whether ``group`` committed past every committed record of the alerts ``topic``
    (then no delivery is in flight anywhere: one is committed as soon as it finishes)."""
    reader = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed",
        auto_offset_reset="earliest",
    )  # fmt: skip
    await reader.start()
    try:
        last: dict[int, int] = {}
        while batches := await reader.getmany(timeout_ms=500):
            for tp, records in batches.items():
                last[tp.partition] = records[-1].offset
    finally:
        await reader.stop()
    committed = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await committed.start()
    try:
        for p, offset in last.items():
            c = await committed.committed(TopicPartition(topic, p))
            if c is None or c <= offset:
                return False
        return True
    finally:
        await committed.stop()


def _check_pages(rx: RecordingReceiver) -> tuple[dict[str, bytes], list[Any]]:
    """Every key delivered once with one payload; every incident paged "fire" once."""
    ids = Counter(r.headers["webhook-id"] for r in rx.requests)
    twice = {k: n for k, n in ids.items() if n > 1}
    assert not twice, f"idempotency keys delivered more than once: {twice}"
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    for r in rx.requests:  # signed with the configured secret (Standard Webhooks)
        signed = f"{r.headers['webhook-id']}.{r.headers['webhook-timestamp']}.".encode() + r.body
        mac = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert r.headers["webhook-signature"] == f"v1,{mac}", r.headers
    payloads = [r.json for r in rx.requests]
    # The drift never ends: one incident per drifting model, so one "fire" per alert group
    # (a model restored without its alert state would open a second incident: a new key).
    fires = Counter(p["fingerprint"] for p in payloads if p["action"] == "fire")
    assert len(fires) == len(DRIFTS) and max(fires.values()) == 1, f"paged twice: {fires}"
    return {r.headers["webhook-id"]: r.body for r in rx.requests}, payloads


async def _intents(bootstrap: str, topic: str) -> list[str]:
    """The idempotency key of every committed record of the alerts topic."""
    reader = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed",
        auto_offset_reset="earliest",
    )  # fmt: skip
    await reader.start()
    try:
        keys: list[str] = []
        while batches := await reader.getmany(timeout_ms=1000):
            for records in batches.values():
                keys += [decode_record(r.value)[1].idempotency_key for r in records]
        return keys
    finally:
        await reader.stop()


async def test_scale_one_three_one_with_a_kill_equals_one_uninterrupted_run(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("scale", partitions=PARTITIONS)
    group = f"g-{uuid.uuid4().hex[:8]}"
    alerts_topic = f"{topic}-monitor-state-alerts"
    rx = await RecordingReceiver().start()
    ref_rx = await RecordingReceiver().start()
    try:
        await _scale(kafka_bootstrap, topic, group, tmp_path, rx, alerts_topic)
        await _compare(kafka_bootstrap, topic, group, tmp_path, rx, ref_rx)
        # The state side decided each notification once, moves and kill included (the alert
        # state is restored with the model): each intent is in the alerts topic once.
        intents = await _intents(kafka_bootstrap, alerts_topic)
        assert Counter(intents).most_common(1)[0][1] == 1, Counter(intents)
        assert set(intents) == {r.headers["webhook-id"] for r in rx.requests}
    finally:
        await rx.stop()
        await ref_rx.stop()


async def _scale(
    kafka_bootstrap: str,
    topic: str,
    group: str,
    tmp_path: Path,
    rx: RecordingReceiver,
    alerts_topic: str,
) -> None:
    procs: dict[str, MonitorProcess] = {}
    for name in ("one", "two", "three"):
        (tmp_path / name).mkdir()
        cfg = write_config(
            tmp_path / name / "monitor.yaml",
            _raw(kafka_bootstrap, topic, group, tmp_path, name, "kafka", rx.url),
        )
        procs[name] = MonitorProcess(cfg, tmp_path / f"{name}.log")
    try:
        procs["one"].start()
        await procs["one"].wait_serving(60)
        released = asyncio.Event()
        rx.script(*[Hold(released)] * 3)
        load = asyncio.create_task(_publish(kafka_bootstrap, topic, chunks=30))
        await rx.wait_for_requests(3, within=60)  # three pages in flight on "one"
        procs["two"].start()
        procs["three"].start()
        await procs["two"].wait_serving(60)
        await procs["three"].wait_serving(60)

        async def consuming(p: MonitorProcess) -> bool:
            return bool((await p.status())["positions"])

        for name, p in procs.items():
            try:
                await eventually(lambda p=p: consuming(p), 60)  # type: ignore[misc]
            except AssertionError:
                raise AssertionError(f"{name} not consuming:\n{p.tail()}") from None
        # Two and three joined the alerts group too: the rebalance that moves two of the
        # alerts partitions away from "one" is under way while its three pages are in flight.
        released.set()
        # No delivery in flight on "two" (nor anywhere): every alert record is committed.
        await eventually(
            lambda: _alerts_committed(kafka_bootstrap, alerts_topic, f"{group}-alerts"), 30
        )
        procs["two"].kill()  # kill -9, and the machine is gone for good
        shutil.rmtree(tmp_path / "two")
        assert procs["three"].terminate(60) == 0
        await load
        ends = await end_offsets(kafka_bootstrap, topic)
        await procs["one"].wait_positions(ends, within=90)

        shown: dict[str, Any] = {}

        async def all_shown() -> bool:  # restored models are shown once restored
            status = await procs["one"].status()
            shown.update({m: status["models"][m]["events"] for m in MODELS})
            return all(shown[m] == EVENTS for m in MODELS)

        try:
            await eventually(all_shown, 30)
        except AssertionError:
            raise AssertionError(
                f"events shown {shown}, not {EVENTS} each:\n{procs['one'].tail(80)}"
            ) from None
        await eventually(
            lambda: _alerts_committed(kafka_bootstrap, alerts_topic, f"{group}-alerts"), 30
        )
        assert procs["one"].terminate(60) == 0
    finally:
        for p in procs.values():
            p.ensure_dead()


async def _compare(
    kafka_bootstrap: str,
    topic: str,
    group: str,
    tmp_path: Path,
    rx: RecordingReceiver,
    ref_rx: RecordingReceiver,
) -> None:
    # What the changelog holds now, read as a fresh instance on a fourth machine would.
    config = parse_config(_raw(kafka_bootstrap, topic, group, tmp_path, "reader", "kafka", rx.url))
    store = await asyncio.to_thread(KafkaStateStore, config.kafka, config.state)
    try:
        await asyncio.to_thread(store.prepare, {(topic, p) for p in range(PARTITIONS)})
        stored = {m: _summary(state_format.decode(store.load_model(m) or b"")) for m in MODELS}
        assert store.load_offsets() == {(topic, p): EVENTS * 2 for p in range(PARTITIONS)}
    finally:
        await asyncio.to_thread(store.close)

    # One uninterrupted single-instance run over the same stream.
    ref_raw = _raw(kafka_bootstrap, topic, f"{group}-ref", tmp_path, "ref", "sqlite", ref_rx.url)
    ref = MonitorService(parse_config(ref_raw))
    await ref.start()
    task = asyncio.create_task(ref.run())
    try:
        await eventually(
            lambda: all(m in ref.models and ref.models[m].events_total == EVENTS for m in MODELS),
            90,
        )
        await eventually(lambda: ref.alerts.outbox.counts().get("pending", 0) == 0, 30)
        expected = {m: _summary(ref.models[m].export_state()) for m in MODELS}
    finally:
        ref.request_stop()
        await task
        await ref.stop(grace_seconds=1)
    for m in MODELS:
        assert stored[m] == expected[m], m

    delivered, payloads = _check_pages(rx)
    ref_delivered, _ = _check_pages(ref_rx)
    assert {p["model"] for p in payloads} == set(DRIFTS), payloads
    # Nothing lost, nothing invented, against the uninterrupted run.
    assert delivered.keys() == ref_delivered.keys(), (
        sorted(delivered.keys() - ref_delivered.keys()),
        sorted(ref_delivered.keys() - delivered.keys()),
    )
