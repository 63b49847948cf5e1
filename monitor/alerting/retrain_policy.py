"""When to trigger retraining (pure).

Retraining is expensive and slow, so the trigger is coarser than alerting:
it needs several critical drifted features at once (or a critical
performance drop), and follows the alert policy's incidents:

* only signals that *fire* under the alert rules count (after ``for``, while not
  silenced: a silence means "we know, leave it"), so the trigger keeps the alerts'
  hysteresis instead of reacting to every evaluation;
* **at most one trigger per incident**: a trigger covers every incident of the model open
  when it is sent (retraining retrains the whole model), so a later trigger needs an
  incident that opened after the last trigger. An incident is one alert group's, as
  :mod:`monitor.alerting.policy` opens and resolves it (``group_by``);
* ``min_interval_seconds`` is a rate limit across incidents: a new incident within the
  interval after the last trigger is held back (``suppressed``, counted on every such
  evaluation) and triggers once the interval has passed if it is still open and
  still warrants retraining; an incident that resolves before then never triggers.

"Already triggered for this incident": the trigger records the incidents it covered
(``retrain_covers``: alert group fingerprint -> incident start, stored with the alert
state). "Started at or before the last trigger" is not enough: event time can move
backwards, and an incident opened after the trigger with older events was taken for a
covered one and never triggered. A state written by an earlier build has no record; for it
that rule stands (``last_retrain_at``, event time) until its next trigger.

Incidents are the data's: they open and close on the evaluation's event time, like the
alert policy's, so a replay after a restart decides the same incidents with the same
idempotency keys (the outbox drops a repeat).

``min_interval_seconds`` protects the training pipeline, which runs on the wall clock: it
is measured on the monitor's (injected) clock since the last trigger
(``last_retrain_wall``, stored with the alert state, so a restart keeps it). On event time,
a backlog of two days caught up in minutes retrained twice in those minutes. A state
written by an earlier build has no ``last_retrain_wall``: its interval runs on event time,
as it did, until the next trigger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from monitor.alerting.config import RetrainPolicy
from monitor.alerting.policy import ModelAlertState, signal_key
from monitor.alerting.silences import Silence, is_silenced
from monitor.signals import EvaluationContext, Signal


@dataclass(frozen=True, slots=True)
class RetrainDecision:
    """``trigger``: call the pipeline now; ``suppressed``: a new incident within the min interval.

    ``incident_started_at``: when the incident this trigger (or suppression) is for started,
    the identity of the trigger's idempotency key; None when neither.
    """

    trigger: bool
    suppressed: bool
    reason: str
    evidence: tuple[Signal, ...]
    incident_started_at: float | None = None


def decide_retrain(
    policy: RetrainPolicy,
    last_retrain_at: float | None,
    signals: Sequence[Signal],
    ctx: EvaluationContext,
    now: float,
    silences: Sequence[Silence] = (),
    silenced_at: float | None = None,
    alert_state: ModelAlertState | None = None,
    wall: float | None = None,
) -> RetrainDecision:
    """Whether this evaluation warrants a retraining trigger (see the module docstring).

    ``silenced_at`` (default ``now``): the wall-clock time silences are judged at, as in
    :func:`~monitor.alerting.policy.decide`. ``alert_state``: the model's alert state after
    :func:`~monitor.alerting.policy.decide` stepped it with this same evaluation; only the
    signals firing in it count, and its incidents say whether this one was triggered for.
    Without it (a bare call), every critical signal counts as firing, in an incident that
    opens now. ``wall`` (default ``silenced_at``, else ``now``): the monitor's wall clock,
    that ``min_interval_seconds`` runs on (since ``alert_state.last_retrain_wall``).

    >>> from monitor.alerting.config import RetrainPolicy
    >>> ctx = EvaluationContext("m", "1", 100.0, 0.0, 90.0, 10, 10)
    >>> sigs = [Signal("m", "drift", f"f{i}", "critical", 0.5, 0.2) for i in range(2)]
    >>> p = RetrainPolicy(receiver="r", min_critical_drifted_features=2)
    >>> decide_retrain(p, None, sigs, ctx, 100.0).trigger
    True
    >>> decide_retrain(p, 50.0, sigs, ctx, 100.0).suppressed
    True
    """
    at = now if silenced_at is None else silenced_at
    clock = at if wall is None else wall
    live = [s for s in signals if not is_silenced(silences, s, at)]
    # Features of the whole traffic: a feature drifting in three segments is one feature
    # (and the whole's own verdict counts it when the drift is broad enough to retrain for).
    drifted = [
        s for s in live if s.kind == "drift" and s.severity == "critical" and s.segment is None
    ]
    perf = [s for s in live if s.kind == "performance" and s.severity == "critical"]
    starts = _incident_starts(alert_state, live, now)
    drifted = [s for s in drifted if signal_key(s) in starts]
    perf = [s for s in perf if signal_key(s) in starts]
    reasons: list[str] = []
    evidence: list[Signal] = []
    if len(drifted) >= policy.min_critical_drifted_features:
        reasons.append(f"{len(drifted)} features drifted critically")
        evidence.extend(drifted)
    if policy.on_performance_drop and perf:
        reasons.append("performance dropped: " + ", ".join(s.subject for s in perf))
        evidence.extend(perf)
    if not reasons:
        return RetrainDecision(False, False, "", ())
    evidence_t = tuple(sorted(evidence, key=lambda s: (s.kind, s.subject)))
    reason = "; ".join(reasons)
    # Incidents the last trigger did not cover.
    covers = alert_state.retrain_covers if alert_state is not None else None
    new = [
        started
        for fp, started in (starts[signal_key(s)] for s in evidence_t)
        if not _covered(covers, fp, started, last_retrain_at)
    ]
    if not new:
        return RetrainDecision(False, False, reason, evidence_t)
    incident = min(new)
    last_wall = alert_state.last_retrain_wall if alert_state is not None else None
    interval = policy.min_interval_seconds
    if last_wall is not None:
        cooling = clock - last_wall < interval
    else:  # a state of an earlier build (or a bare call): event time, as it was
        cooling = last_retrain_at is not None and now - last_retrain_at < interval
    if cooling:
        return RetrainDecision(False, True, reason, evidence_t, incident)
    return RetrainDecision(True, False, reason, evidence_t, incident)


def record_retrain(state: ModelAlertState, now: float, wall: float) -> ModelAlertState:
    """``state`` after a trigger was sent at event time ``now``, wall clock ``wall``: it
    covers every incident of the model open now (retraining retrains the whole model)."""
    covers = {
        fp: g.incident_started_at
        for fp, g in state.groups.items()
        if g.incident_started_at is not None
    }
    return replace(state, last_retrain_at=now, last_retrain_wall=wall, retrain_covers=covers)


def _covered(
    covers: dict[str, float] | None, fp: str, started: float, last_retrain_at: float | None
) -> bool:
    """Whether the last trigger covered the incident of group ``fp`` started at ``started``."""
    if covers is not None:
        return covers.get(fp) == started
    # A state of an earlier build (or a bare call): the rule it was written under.
    return last_retrain_at is not None and started <= last_retrain_at


def _incident_starts(
    state: ModelAlertState | None, live: Sequence[Signal], now: float
) -> dict[str, tuple[str, float]]:
    """Signal key -> (group fingerprint, start) of the open incident it fires in, for every
    firing signal.

    Without a state, every live signal fires, in an incident that opens ``now``.
    """
    if state is None:
        return {signal_key(s): ("", now) for s in live}
    starts: dict[str, tuple[str, float]] = {}
    for fp, group in state.groups.items():
        if group.incident_started_at is None:
            continue
        for key, track in group.tracks.items():
            if track.firing:
                starts[key] = (fp, group.incident_started_at)
    return starts


__all__ = ["RetrainDecision", "decide_retrain", "record_retrain"]
