"""Scale out and back under load, on the Kafka state backend, with real processes.

Three ``monitor run`` processes, each with its own directory (as if on three
machines; nothing shared but the broker), join one group while events flow:
1 -> 3 instances, then one is killed with ``kill -9`` and its directory deleted,
another stops, and one instance finishes the stream. At the end every model's
state in the changelog equals the state of one uninterrupted single-instance run
over the same stream: same event and evaluation counts, same window contents,
same drift runs. Nothing was lost to the moves and the kill, nothing counted twice.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor import state_format
from monitor.config import parse_config
from monitor.kafka_store import KafkaStateStore
from monitor.service import MonitorService
from monitor.simulate import Simulator
from tests.fault_helpers import MonitorProcess, end_offsets, eventually, write_config

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 3
MODELS = [f"m{i}" for i in range(6)]  # model i on partition i % 3: two models per partition
EVENTS = 3000  # per model


def _raw(bootstrap: str, topic: str, group: str, home: Path, name: str, backend: str) -> Any:
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
            "instance_id": name,
            "path": str(home / name / "state.sqlite"),
            "checkpoint_interval_seconds": 1,
        },
        "defaults": {"window": {"size": 500, "step": 250}, "reference": {"learn_first": 500}},
        "models": [{"name": m} for m in MODELS],
        "alerting": {"outbox_path": str(home / name / "outbox.sqlite")},
    }


async def _publish(bootstrap: str, topic: str, chunks: int) -> None:
    """EVENTS per model, in ``chunks`` rounds with a pause between (a steady load)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        streams = {m: list(Simulator(model=m, seed=i).events(EVENTS)) for i, m in enumerate(MODELS)}
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


async def test_scale_one_three_one_with_a_kill_equals_one_uninterrupted_run(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("scale", partitions=PARTITIONS)
    group = f"g-{uuid.uuid4().hex[:8]}"
    procs: dict[str, MonitorProcess] = {}
    for name in ("one", "two", "three"):
        (tmp_path / name).mkdir()
        cfg = write_config(
            tmp_path / name / "monitor.yaml",
            _raw(kafka_bootstrap, topic, group, tmp_path, name, "kafka"),
        )
        procs[name] = MonitorProcess(cfg, tmp_path / f"{name}.log")
    try:
        procs["one"].start()
        await procs["one"].wait_serving(60)
        load = asyncio.create_task(_publish(kafka_bootstrap, topic, chunks=30))
        await asyncio.sleep(1)
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
        procs["two"].kill()  # kill -9, and the machine is gone for good
        shutil.rmtree(tmp_path / "two")
        assert procs["three"].terminate(60) == 0
        await load
        ends = await end_offsets(kafka_bootstrap, topic)
        await procs["one"].wait_positions(ends, within=90)

        async def all_shown() -> bool:  # restored models are shown once restored
            status = await procs["one"].status()
            return all(status["models"][m]["events"] == EVENTS for m in MODELS)

        await eventually(all_shown, 30)
        assert procs["one"].terminate(60) == 0
    finally:
        for p in procs.values():
            p.ensure_dead()

    # What the changelog holds now, read as a fresh instance on a fourth machine would.
    config = parse_config(_raw(kafka_bootstrap, topic, group, tmp_path, "reader", "kafka"))
    store = await asyncio.to_thread(KafkaStateStore, config.kafka, config.state)
    try:
        await asyncio.to_thread(store.prepare, {(topic, p) for p in range(PARTITIONS)})
        stored = {m: _summary(state_format.decode(store.load_model(m) or b"")) for m in MODELS}
        assert store.load_offsets() == {(topic, p): EVENTS * 2 for p in range(PARTITIONS)}
    finally:
        await asyncio.to_thread(store.close)

    # One uninterrupted single-instance run over the same stream.
    ref_raw = _raw(kafka_bootstrap, topic, f"{group}-ref", tmp_path, "ref", "sqlite")
    ref = MonitorService(parse_config(ref_raw))
    await ref.start()
    task = asyncio.create_task(ref.run())
    try:
        await eventually(
            lambda: all(m in ref.models and ref.models[m].events_total == EVENTS for m in MODELS),
            90,
        )
        expected = {m: _summary(ref.models[m].export_state()) for m in MODELS}
    finally:
        ref.request_stop()
        await task
        await ref.stop(grace_seconds=1)
    for m in MODELS:
        assert stored[m] == expected[m], m
