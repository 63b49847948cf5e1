"""What holds after ``kill -9`` during a delivery: at-least-once, with an identical duplicate.

The monitor runs as a real process against the real broker. The receiver
hangs on the first request; the monitor is SIGKILLed while that request is in
flight, so its outbox row is still pending. The restarted monitor sends it
again: the receiver sees the same ``webhook-id`` twice, with a byte-identical
body (only ``webhook-timestamp`` and the signature, computed per attempt,
differ). That is the documented contract (docs/GUARANTEES.md): every key is
delivered at least once, and receivers deduplicate by ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from alert_receivers import Hang, RecordingReceiver
from fault_helpers import MonitorProcess, eventually, write_config

from devtools.local_kafka import create_topics
from monitor.simulate import DriftSpec, publish

pytestmark = pytest.mark.kafka

SECRET = "whsec_" + base64.b64encode(b"kill-nine-signing-key-0123456789").decode()


def _verify(headers: dict[str, str], body: bytes) -> bool:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return headers["webhook-signature"] == f"v1,{expected}"


async def test_kill_9_during_a_delivery_resends_the_same_key_with_the_same_payload(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topic = f"k9-{suffix}"
    create_topics(kafka_bootstrap, [topic], 1)
    async with RecordingReceiver() as rx:
        rx.script(Hang(60.0))  # the first request never gets an answer
        raw = {
            "kafka": {
                "bootstrap_servers": kafka_bootstrap,
                "group_id": f"g-{suffix}",
                "predictions_topic": topic,
                "labels_topic": None,
                "poll_timeout_ms": 100,
                "metadata_max_age_ms": 1000,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 1000,
            },
            "http": {"port": 0},
            "state": {"path": str(tmp_path / "state.sqlite"), "checkpoint_interval_seconds": 1},
            "unknown_models": "track",
            "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 200}},
            "alerting": {
                "receivers": {
                    "hook": {
                        "type": "webhook",
                        "url": rx.url,
                        "signing_secret": SECRET,
                        "timeout_seconds": 120,
                    }
                },
                "outbox_path": str(tmp_path / "outbox.sqlite"),
                # The killed process's claim on the row runs out after 3 s, not the default
                # 30 s (test_outbox_claims.py checks the configured lease is the one used).
                "delivery": {"claim_lease_seconds": 3},
            },
        }
        config = write_config(tmp_path / "c.yaml", raw)
        first = MonitorProcess(config, tmp_path / "m1.log").start()
        second: MonitorProcess | None = None
        try:
            await first.wait_serving()
            drift = DriftSpec(kind="mean", features=("income", "credit_score"), size=3.0, start=400)
            await publish(kafka_bootstrap, topic=topic, model="m", events=1200, drift=drift)
            await rx.wait_for_requests(1, within=60)  # in flight, hanging
            first.kill()
            second = MonitorProcess(config, tmp_path / "m2.log").start()
            await second.wait_serving()
            await second.wait_positions({f"{topic}/0": 1200})
            await eventually(
                lambda: (
                    rx.requests[0].headers["webhook-id"]
                    in {r.headers["webhook-id"] for r in rx.requests[1:]}
                ),
                within=60,
            )
            await asyncio.sleep(1.0)  # let the rest of the backlog arrive
            assert await asyncio.to_thread(second.terminate) == 0, second.tail()
        finally:
            first.ensure_dead()
            if second is not None:
                second.ensure_dead()

    bodies: dict[str, set[bytes]] = defaultdict(set)
    for r in rx.requests:
        assert _verify(r.headers, r.body)  # each attempt is signed anew, and verifies
        bodies[r.headers["webhook-id"]].add(r.body)
    ids = [r.headers["webhook-id"] for r in rx.requests]
    assert ids.count(ids[0]) == 2, ids  # delivered twice: at-least-once, as documented
    for key, distinct in bodies.items():
        assert len(distinct) == 1, f"{key} was delivered with different payloads"
