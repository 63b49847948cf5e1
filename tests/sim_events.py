"""The simulator's events as one model's batch (:class:`ModelEvents`), for tests that feed
the pipeline core directly; event ``i`` is stamped ``i`` seconds (1-based)."""

from __future__ import annotations

from monitor.events import ModelEvents
from monitor.simulate import Simulator


def model_events(sim: Simulator, n: int) -> ModelEvents:
    out = ModelEvents(sim.model)
    for e, _ in sim.events(n):
        out.event_ids.append(e["event_id"])
        out.timestamps.append(float(len(out.event_ids)))
        out.versions.append(e["model_version"])
        out.features.append(e["features"])
        out.predictions.append(e["prediction"])
    return out
