"""The model behind ``tests/fixtures/model-state-v<N>.bin``: the checkpoints written by the
releases that introduced state formats 1 and 2, which every later release must restore.

Regenerate only when adding a fixture for a *new* format version (keep the old
file): ``python -m tests.state_fixture tests/fixtures/model-state-v<N>.bin``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from monitor.config import parse_config
from monitor.events import LabelEvents, ModelEvents
from monitor.model_monitor import ModelMonitor
from monitor.reference import ReferenceProfile, build_profile
from monitor.simulate import DriftSpec, Simulator

MODEL = "credit-risk"
EVENTS = 1_700  # events ingested before the checkpoint
LABELLED = 600  # of which the first ones got their label
RAW_CONFIG = {
    "models": [
        {
            "name": MODEL,
            "window": {"size": 300, "step": 100},
            "performance": {"task": "binary", "window_size": 200},
        }
    ]
}


def reference() -> ReferenceProfile:
    sim = Simulator(model=MODEL, seed=1)
    return build_profile(MODEL, [(e["features"], e["prediction"]) for e, _ in sim.events(2_000)])


def stream(n: int) -> tuple[ModelEvents, LabelEvents]:
    """``n`` events with a drift of ``age`` from event 1,200 (deterministic)."""
    sim = Simulator(model=MODEL, seed=4, drift=DriftSpec("mean", ("age",), 1.0, 1_200))
    events, labels = ModelEvents(MODEL), LabelEvents(MODEL)
    for e, label in sim.events(n):
        events.event_ids.append(e["event_id"])
        events.timestamps.append(float(len(events.event_ids)))
        events.versions.append(e["model_version"])
        events.features.append(e["features"])
        events.predictions.append(e["prediction"])
        labels.event_ids.append(e["event_id"])
        labels.labels.append(label)
        labels.timestamps.append(float(len(labels.event_ids)))
    return events, labels


def monitor() -> ModelMonitor:
    cfg = parse_config(RAW_CONFIG)
    return ModelMonitor(cfg.model(MODEL), cfg.limits, reference())  # type: ignore[arg-type]


def labels_slice(labels: LabelEvents, lo: int, hi: int) -> LabelEvents:
    out = LabelEvents(labels.model)
    out.event_ids = labels.event_ids[lo:hi]
    out.labels = labels.labels[lo:hi]
    out.timestamps = labels.timestamps[lo:hi]
    return out


def events_slice(events: ModelEvents, lo: int, hi: int) -> ModelEvents:
    out = ModelEvents(events.model)
    for name in ("event_ids", "timestamps", "versions", "features", "predictions"):
        getattr(out, name).extend(getattr(events, name)[lo:hi])
    return out


def checkpointed() -> ModelMonitor:
    """The monitor as it was when the fixture was written."""
    mm = monitor()
    events, labels = stream(EVENTS)
    mm.ingest(events_slice(events, 0, EVENTS), now=float(EVENTS))
    mm.ingest_labels(labels_slice(labels, 0, LABELLED), now=float(EVENTS))
    return mm


if __name__ == "__main__":
    from monitor.state_format import encode

    Path(sys.argv[1]).write_bytes(encode(checkpointed().export_state('{"version": 1}')))
