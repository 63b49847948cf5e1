"""Kept, not restored: the stored states of unlisted models are not held in memory.

With ``state.unlisted_models: keep`` (the default) the state of a model the config does not
list stays in the changelog and is not restored. The Kafka store read it at assignment like
any other and held its blob until the partition was revoked: memory that grew with states
nobody used. Now the service parks it (:meth:`~monitor.store.StateStore.park`): the store
drops the blob, keeps what it needs to list, delete or refuse it, and reads it again if the
model is restored after all (``unknown_models: track`` admitting it later).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitor.config import parse_config
from monitor.kafka_store import KafkaStateStore
from monitor.service import MonitorService
from monitor.state_format import NewerStateError
from tests.test_state_rollback import _future_blob

STATE_BYTES = 256 * 1024
UNLISTED = [f"unlisted-{i}" for i in range(8)]


def _held(store: KafkaStateStore) -> int:
    """Bytes of state blobs the store holds in memory."""
    return sum(len(e.blob or b"") for e in store._entries.values())


def _raw(home: Path, bootstrap: str, topic: str) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": f"g-{uuid.uuid4().hex[:8]}",
            "predictions_topic": topic,
            "labels_topic": None,
        },
        "http": {"port": 0},
        "models": [{"name": "listed"}],
        "alerting": {"outbox_path": str(home / "outbox.sqlite")},
        "state": {"backend": "kafka", "instance_id": "solo"},
    }


@pytest.mark.kafka
async def test_kept_unlisted_states_are_not_held_and_are_read_again_on_demand(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("kpark", partitions=1)
    tp = (topic, 0)
    config = parse_config(_raw(tmp_path, kafka_bootstrap, topic), base_dir=tmp_path)
    blobs = {m: os.urandom(STATE_BYTES) for m in UNLISTED}  # incompressible, as a state is
    newer = _future_blob()
    store = await asyncio.to_thread(KafkaStateStore, config.kafka, config.state)
    try:
        saved = {m: (b, tp) for m, b in blobs.items()} | {"newer": (newer, tp)}
        await asyncio.to_thread(store.save, saved, {})
    finally:
        await asyncio.to_thread(store.close)

    store = await asyncio.to_thread(KafkaStateStore, config.kafka, config.state)
    service = MonitorService(config, store=store)
    service.store = store  # what start() does with a given store
    try:
        await asyncio.to_thread(store.prepare, {tp})
        assert _held(store) >= len(UNLISTED) * STATE_BYTES  # read at assignment
        await service._load_assigned({tp})
        assert service.status()["stored_unlisted"] == sorted([*UNLISTED, "newer"])
        assert _held(store) < 1024, _held(store)  # none of them held any more
        assert store.models([tp]) == sorted([*UNLISTED, "newer"])
        # Still what it was: read again when asked for, refused when a newer release's.
        got = await asyncio.to_thread(store.load_model, UNLISTED[3])
        assert got == blobs[UNLISTED[3]]
        with pytest.raises(NewerStateError):
            await asyncio.to_thread(store.delete_model, "newer")
        # Written over (start_fresh): the parked header no longer speaks for it.
        await asyncio.to_thread(store.save, {"newer": (b"fresh", tp)}, {})
        await asyncio.to_thread(store.delete_model, "newer")
        assert "newer" not in store.models()
    finally:
        await asyncio.to_thread(store.close)
