"""A model's alert state that cannot be restored is counted, not only logged.

The model itself is restored from its checkpoint; its alert state (firing signals, open
incidents) starts empty, so an incident already notified may be notified again. That was
one WARNING line: now it is also ``monitor_state_restore_failures_total{reason=
"alert_state"}``, which an operator can alert on like the model-state reasons.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from monitor import state_format
from monitor.config import parse_config
from monitor.events import Decoder, RawMessage
from monitor.service import MonitorService
from monitor.store import SQLiteStateStore

MODEL = "credit-risk"
TP = ("predictions", 0)


def _raw(home: Path) -> dict[str, Any]:
    return {
        "kafka": {"bootstrap_servers": "127.0.0.1:1", "labels_topic": None},
        "http": {"port": 0},
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 100}},
        "models": [{"name": MODEL}],
        "alerting": {"outbox_path": str(home / "outbox.sqlite")},
        "state": {"path": str(home / "state.sqlite")},
    }


def _events(service: MonitorService, start: int, n: int) -> None:
    values = [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "model": MODEL,
                "timestamp": 1_780_000_000 + i,
                "features": {"x": float(i % 7)},
                "prediction": (i % 10) / 10,
            }
        )
        for i in range(start, start + n)
    ]
    raw = [RawMessage(v, 1_780_000_000.0, TP[0], TP[1], start + i) for i, v in enumerate(values)]
    service._apply(Decoder(max_message_bytes=10_000).decode(raw))


@pytest.mark.parametrize(
    "document",
    [
        {"version": 999, "models": {MODEL: {}}},  # a document version this release lacks
        {"version": 1, "models": {MODEL: {"firing": "not a list"}}},  # damaged
    ],
)
def test_a_corrupt_alert_document_in_a_stored_state_is_counted(
    tmp_path: Path, document: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    first = MonitorService(parse_config(_raw(tmp_path), base_dir=tmp_path), store=store)
    first.store = store  # what start() does with a given store
    _events(first, 0, 150)
    first.checkpoint()
    saved = state_format.decode(store.load_model(MODEL) or b"")
    damaged = msgspec.structs.replace(saved, alerts=json.dumps(document))
    store.save({MODEL: (state_format.encode(damaged), TP)}, {})

    service = MonitorService(parse_config(_raw(tmp_path), base_dir=tmp_path), store=store)
    service.store = store
    try:
        _events(service, 150, 10)
        assert service.models[MODEL].events_total == 160  # the model itself restored
        failures = service.registry.get_sample_value(
            "monitor_state_restore_failures_total", {"reason": "alert_state"}
        )
        assert failures == 1
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert [m for m in said if "alert state of model credit-risk not restored" in m], said
    finally:
        store.close()
