"""A second SIGINT/SIGTERM during a stuck shutdown ends the process at once.

The operator's contract (docs/RUNBOOK.md, "Shutdown takes too long"): the first
signal starts the ordered shutdown (checkpoint, commit, flush the outbox for up
to ``shutdown_grace_seconds``); a second one ends the process now, as ``kill -9``
would, which is safe (the next start replays from the last checkpoint and the
outbox still holds what was not delivered). Before, the second signal was
ignored and the operator had to find the pid and SIGKILL it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from alert_receivers import Hang, RecordingReceiver
from fault_helpers import MonitorProcess, eventually, write_config

from devtools.local_kafka import create_topics
from monitor.simulate import DriftSpec, publish

pytestmark = pytest.mark.kafka


async def test_second_signal_ends_a_shutdown_stuck_in_its_grace_period(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic = f"sig2-{suffix}"
    create_topics(kafka_bootstrap, [topic], 1)
    async with RecordingReceiver() as rx:
        rx.script(Hang(120.0))  # the first notification is in flight for the whole test
        raw = {
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
            "shutdown_grace_seconds": 120,  # the flush would wait this long
            "state": {"path": str(tmp_path / "state.sqlite")},
            "unknown_models": "track",
            "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 200}},
            "alerting": {
                "receivers": {"hook": {"type": "webhook", "url": rx.url, "timeout_seconds": 120}},
                "outbox_path": str(tmp_path / "outbox.sqlite"),
            },
        }
        p = MonitorProcess(write_config(tmp_path / "c.yaml", raw), tmp_path / "m.log").start()
        try:
            await p.wait_serving()
            drift = DriftSpec(kind="mean", features=("income", "credit_score"), size=3.0, start=400)
            await publish(kafka_bootstrap, topic=topic, model="m", events=1200, drift=drift)
            await rx.wait_for_requests(1, within=60)
            assert p.proc is not None
            p.proc.send_signal(signal.SIGTERM)
            await eventually(lambda: "shutdown: left the consumer group" in p.output(), within=20)
            await asyncio.sleep(0.5)
            assert p.proc.poll() is None, "the first signal must shut down in order, not exit"
            t0 = time.monotonic()
            p.proc.send_signal(signal.SIGINT)
            try:
                code = await asyncio.to_thread(p.proc.wait, 10)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"no exit after a second signal:\n{p.tail()}") from None
            took = time.monotonic() - t0
        finally:
            p.ensure_dead()
    assert took < 10.0
    assert code == -signal.SIGINT, p.tail()  # ended by the signal: a shell says 130
    out = p.output()
    assert "second signal" in out, out[-2000:]
