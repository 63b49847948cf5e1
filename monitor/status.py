"""The status documents of ``/api/status`` and ``/readyz``, shaped from what the service holds.

Pure functions of the models in memory, the configuration, the disabled models
(name -> (reason, error)) and the loaded references: the service passes them in
and serves the result, so the JSON's shape lives next to nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from monitor.config import MonitorConfig, resolve_model
from monitor.events import utc_text
from monitor.model_monitor import ModelMonitor
from monitor.reference import ReferenceProfile

#: Model name -> (reason, error) of a model the service disabled.
Disabled = Mapping[str, tuple[str, str]]


def readiness(
    state: str,
    assigned: list[str],
    config: MonitorConfig,
    disabled: Disabled,
    references: Mapping[str, ReferenceProfile],
) -> tuple[bool, dict[str, Any]]:
    """Ready: running, partitions assigned, and no configured model disabled.

    A disabled model is a configuration problem an operator must fix (the rest
    of the service runs on meanwhile); failing readiness is what stops a rollout.
    """
    configured = {m.name for m in config.models}
    shown = {
        name: {"reason": reason, "error": error}
        for name, (reason, error) in sorted(disabled.items())
    }
    missing_refs = [
        m.name
        for m in config.models
        if resolve_model(m, config.defaults).reference.path and m.name not in references
    ]
    ok = (
        state == "running"
        and bool(assigned)
        and not missing_refs
        and not configured & disabled.keys()
        # A newer release's stored state held back (a rollback): any model, listed or not.
        and not any(reason == "state_newer" for reason, _ in disabled.values())
    )
    return ok, {
        "state": state,
        "assigned": assigned,
        "references_missing": missing_refs,
        "models_disabled": shown,
    }


def models_status(
    config: MonitorConfig,
    models: Mapping[str, ModelMonitor],
    disabled: Disabled,
    references: Mapping[str, ReferenceProfile],
    partition_conflicts: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every configured model (from the start) and every model in memory, with its state.

    ``state`` is ``waiting`` (no event yet, or not owned by this instance),
    ``learning`` (``progress``: ``600 of 1000`` reference events), ``ready`` or
    ``disabled``; ``not_ready_reason`` says why a model is not ready.
    """
    names = sorted({m.name for m in config.models} | models.keys() | disabled.keys())
    out = {name: model_status(name, models.get(name), disabled, references) for name in names}
    # ``partition_conflict``: the model's events came from more than its one partition
    # (producers not keying by model), or None; see docs/RUNBOOK.md.
    conflicts = partition_conflicts or {}
    for name, entry in out.items():
        seen = conflicts.get(name)
        entry["partition_conflict"] = dict(seen) if seen is not None else None
    return out


def model_status(
    name: str,
    mm: ModelMonitor | None,
    disabled: Disabled,
    references: Mapping[str, ReferenceProfile],
) -> dict[str, Any]:
    """One model's entry of :func:`models_status` (``mm``: its monitor, if in memory)."""
    out: dict[str, Any] = {
        "state": "waiting",
        "ready": False,
        "not_ready_reason": None,
        "events": 0,
        "evaluations": 0,
        "model_version": None,
        "reference": None,
        "drifting": [],
        # Columns whose drift a data-quality breach explains (monitor/explain.py): column ->
        # rule; not drifting, so not in ``drifting``.
        "explained": {},
        # Declared segments (monitor/segments.py) with a drifting feature: label -> features.
        "segments_drifting": {},
        "window": None,
        "performance": {},
        # Values the performance task could not grade, by reason (bounded tokens):
        # {"labels": {...}, "predictions": {...}}; their events are in no metric.
        "performance_rejected": {},
        # A time window's last window.size events or more all at one time (RFC 3339), so it
        # cannot evaluate (Cadence.frozen_time); null otherwise.
        "event_time_frozen": None,
        # A time window's newest events more than a window before the step boundary it
        # waits for (Cadence.behind): {"newest_event", "next_evaluation_at"} (RFC 3339).
        "event_time_behind": None,
        # A time window's events held off its event clock (Cadence.event_times): by direction,
        # {"ahead": n, "behind": n} since the state began (null with a count window); and the
        # run held now, a jump not yet confirmed: {"direction", "events", "first", "last"}.
        "event_time_outliers": None,
        "event_time_held": None,
    }
    if name in disabled:
        reason, error = disabled[name]
        out.update(
            state="disabled",
            disabled_reason=reason,
            not_ready_reason=f"disabled ({reason}): {error}",
        )
        return out
    if mm is None:
        profile = references.get(name)
        if profile is not None:
            out["reference"] = _reference_status(profile)
        out["not_ready_reason"] = "no event of this model yet"
        return out
    ev = mm.last
    out.update(
        events=mm.events_total,
        evaluations=mm.evaluations,
        model_version=mm.model_version,
        drifting=ev.drifting if ev else [],
        explained=ev.explained if ev else {},
        segments_drifting={s.segment: s.drifting for s in ev.segments if s.drifting} if ev else {},
    )
    if (frozen := mm.cadence.frozen_time()) is not None:
        out["event_time_frozen"] = utc_text(frozen)
    if (boundary := mm.cadence.behind()) is not None and mm.cadence.newest_seen is not None:
        out["event_time_behind"] = {
            "newest_event": utc_text(mm.cadence.newest_seen),
            "next_evaluation_at": utc_text(boundary),
        }
    if mm.settings.window.type == "time":
        out["event_time_outliers"] = dict(mm.cadence.outliers)
    if (held := mm.cadence.held) is not None:
        out["event_time_held"] = {
            "direction": "ahead" if held.ahead else "behind",
            "events": held.events,
            "first": utc_text(held.lo),
            "last": utc_text(held.hi),
        }
    if mm.reference is not None:
        out["reference"] = _reference_status(mm.reference)
        # Declared constraints on features the reference lacks (never checked).
        out["reference"]["unchecked_constraints"] = mm.unchecked_constraints
    if ev is not None:
        out["window"] = {
            "events": ev.context.window_events,
            "start": ev.context.window_start,
            "end": ev.context.window_end,
        }
    if mm.performance is not None:
        out["performance"] = {
            k: (v if math.isfinite(v) else None) for k, v in mm.performance.snapshot().items()
        }
        out["performance_rejected"] = {
            "labels": dict(mm.performance.rejected_labels),
            "predictions": dict(mm.performance.rejected_predictions),
        }
    if not mm.ready:
        have, need = mm.learn_progress()
        out.update(
            state="learning",
            progress=f"{have} of {need}",
            not_ready_reason=f"learning the reference from the first {need} events ({have} so far)",
        )
        return out
    out.update(state="ready", ready=True)
    if ev is None:
        size = mm.settings.window.size
        out["not_ready_reason"] = None
        out["first_evaluation"] = (
            f"after a full window ({size} events); {mm.window.size} so far"
            if mm.settings.window.type == "count"
            else "at the end of the first time step"
        )
    return out


def _reference_status(profile: ReferenceProfile) -> dict[str, Any]:
    return {"rows": profile.rows, "fingerprint": profile.fingerprint, "source": profile.source}
