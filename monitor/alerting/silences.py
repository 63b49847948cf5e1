"""Silences: time-boxed mutes, and whether one mutes a signal (pure).

A silence mutes *notifications*, not alert state: a silenced signal still
fires and resolves inside the policy, so when a silence ends while the
condition persists the alert is sent then, and a condition that cleared
during the silence never produces a stray resolve. This mirrors Alertmanager.
Their time boxes are on the wall clock (people set them), not on the event time
the alert policy otherwise runs on (``decide(silenced_at=...)``).

The runtime store that persists them is :mod:`monitor.alerting.silence_store`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from monitor.alerting.config import SilenceConfig
from monitor.alerting.rules import glob_match, segment_match
from monitor.signals import Signal

#: Latest representable time (9999-12-31T23:59:59Z): later ends cannot be shown as ISO 8601.
MAX_TIME = 253402300799.0


@dataclass(frozen=True, slots=True)
class Silence:
    """Mute signals matching the ``model``/``subject``/``segment`` globs and ``kind`` during the
    time box (``segment``: see :func:`~monitor.alerting.rules.segment_match`)."""

    id: str
    starts_at: float
    ends_at: float
    model: str = "*"
    subject: str = "*"
    kind: str | None = None
    comment: str = ""
    created_by: str = ""
    source: str = "api"  # "api" (runtime, can be expired) or "config" (read-only)
    # Last, with a default: records persisted by earlier builds (no segment) still load.
    segment: str = "*"

    def active_at(self, now: float) -> bool:
        """Whether the time box contains ``now`` (end exclusive)."""
        return self.starts_at <= now < self.ends_at

    def matches(self, signal: Signal) -> bool:
        """Whether every matcher accepts ``signal`` (time is checked separately)."""
        return (
            glob_match(self.model, signal.model)
            and glob_match(self.subject, signal.subject)
            and (self.kind is None or self.kind == signal.kind)
            and segment_match(self.segment, signal.segment)
        )

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def is_silenced(silences: Iterable[Silence], signal: Signal, now: float) -> bool:
    """Whether any silence active at ``now`` matches ``signal``.

    >>> s = Silence("x", 10.0, 20.0, model="churn", subject="missing_rate:*")
    >>> sig = Signal("churn", "data_quality", "missing_rate:age", "warning", 0.2, 0.1)
    >>> is_silenced([s], sig, 15.0), is_silenced([s], sig, 20.0)
    (True, False)
    """
    return any(s.active_at(now) and s.matches(signal) for s in silences)


def from_config(configs: Sequence[SilenceConfig]) -> list[Silence]:
    """Silences declared in the configuration, with stable ids (``cfg-<index>``)."""
    return [
        Silence(
            id=f"cfg-{i}",
            starts_at=c.starts_at.timestamp(),
            ends_at=c.ends_at.timestamp(),
            model=c.matchers.model,
            subject=c.matchers.subject,
            kind=c.matchers.kind,
            segment=c.matchers.segment,
            comment=c.comment,
            created_by="config",
            source="config",
        )
        for i, c in enumerate(configs)
    ]


__all__ = ["Silence", "from_config", "is_silenced"]
