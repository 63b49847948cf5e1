"""When to trigger retraining (pure).

Retraining is expensive and slow, so the trigger is coarser than alerting:
it needs several critical drifted features at once (or a critical
performance drop), and fires at most once per ``min_interval_seconds`` per
model. Silenced signals do not count: a silence means "we know, leave it".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from monitor.alerting.config import RetrainPolicy
from monitor.alerting.silences import Silence, is_silenced
from monitor.signals import EvaluationContext, Signal


@dataclass(frozen=True, slots=True)
class RetrainDecision:
    """``trigger``: call the pipeline now; ``suppressed``: warranted but within the min interval."""

    trigger: bool
    suppressed: bool
    reason: str
    evidence: tuple[Signal, ...]


def decide_retrain(
    policy: RetrainPolicy,
    last_retrain_at: float | None,
    signals: Sequence[Signal],
    ctx: EvaluationContext,
    now: float,
    silences: Sequence[Silence] = (),
    silenced_at: float | None = None,
) -> RetrainDecision:
    """Whether this evaluation warrants a retraining trigger.

    ``silenced_at`` (default ``now``): the wall-clock time silences are judged at, as in
    :func:`~monitor.alerting.policy.decide`.

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
    live = [s for s in signals if not is_silenced(silences, s, at)]
    # Features of the whole traffic: a feature drifting in three segments is one feature
    # (and the whole's own verdict counts it when the drift is broad enough to retrain for).
    drifted = [
        s for s in live if s.kind == "drift" and s.severity == "critical" and s.segment is None
    ]
    perf = [s for s in live if s.kind == "performance" and s.severity == "critical"]
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
    if last_retrain_at is not None and now - last_retrain_at < policy.min_interval_seconds:
        return RetrainDecision(False, True, reason, evidence_t)
    return RetrainDecision(True, False, reason, evidence_t)


__all__ = ["RetrainDecision", "decide_retrain"]
