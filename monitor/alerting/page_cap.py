"""Storm control: a cap on the new incidents one receiver is paged for, and the summary.

Grouping (``group_by``, ``group_wait_seconds``, ``group_interval_seconds``: see
:mod:`monitor.alerting.policy`) bounds the pages of *one* model: its signals go out
together, its changes at most once per ``group_interval``. It does nothing across models:
fifty models drifting at once (an upstream schema change, a feature pipeline down) opened
fifty incidents and paged the on-call fifty times. A receiver's ``page_cap`` bounds that:

* a *new incident* for a receiver (the first notification of an incident that receiver
  gets: a ``fire``, or the ``update`` an escalation brings to a pager the warning never
  reached) is paged on its own while fewer than ``max_incidents`` were paged to it in
  the last ``window_seconds`` (on the wall clock: the cap protects people);
* past the cap it is *folded*: recorded in the outbox as every notification is, never
  sent on its own; and so is every later notification of that incident for that
  receiver (its updates, reminders and resolve: the receiver never opened it, so there
  is nothing to update or close there; a receiver that got the page gets them all);
* folded incidents go out as one ``summary`` notification ("N more incidents: churn
  (drift), fraud (drift, performance), ..."; at most :data:`MAX_LISTED` named, the rest
  counted), ``summary_wait_seconds`` after the first of them was folded (the rest of the
  storm lands meanwhile), then at most once per ``group_interval_seconds``, as an
  incident's updates are paced.

What a receiver was paged for is read from the outbox (its rows and their enqueue times),
so the cap holds across restarts and across instances sharing the outbox file. A
``retrain`` trigger is never capped (one per incident already, and it calls a pipeline,
not a person).

This module is the pure part: the decisions take ``now`` and what the outbox holds, and
build the summary; :class:`~monitor.alerting.outbox.Outbox` applies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from monitor.alerting.notification import Notification, SignalEvidence, printable
from monitor.alerting.policy import fingerprint
from monitor.alerting.rules import max_severity

#: Incidents a summary names; the rest are counted ("and 40 more"). A summary is one page.
MAX_LISTED = 20

#: Characters of a model name in a summary (names come from the wire).
MODEL_CHARS = 80


@dataclass(frozen=True, slots=True)
class PageCap:
    """One receiver's cap (from its ``page_cap`` settings)."""

    max_incidents: int
    window_seconds: float = 3600.0
    summary_wait_seconds: float = 30.0


def admits(cap: PageCap, paged_at: Iterable[float], now: float) -> bool:
    """Whether a new incident at ``now`` is paged on its own, given when the receiver's
    incidents paged so far were enqueued (wall clock).

    >>> cap = PageCap(max_incidents=2, window_seconds=3600)
    >>> admits(cap, [100.0], now=200.0), admits(cap, [100.0, 150.0], now=200.0)
    (True, False)
    >>> admits(cap, [100.0, 150.0], now=3700.0)  # the first one left the window
    True
    """
    recent = sum(1 for t in paged_at if now - cap.window_seconds < t)
    return recent < cap.max_incidents


def summary_due_at(
    cap: PageCap, first_folded_at: float, last_summary_at: float | None, interval: float
) -> float:
    """When the summary of the incidents folded since ``first_folded_at`` goes out:
    ``summary_wait_seconds`` after the first, and ``interval`` (``group_interval_seconds``)
    after the receiver's previous summary.

    >>> summary_due_at(PageCap(5, summary_wait_seconds=30), 1000.0, None, 300.0)
    1030.0
    >>> summary_due_at(PageCap(5, summary_wait_seconds=30), 1000.0, 900.0, 300.0)
    1200.0
    """
    due = first_folded_at + cap.summary_wait_seconds
    if last_summary_at is not None:
        due = max(due, last_summary_at + interval)
    return due


def summary_fingerprint(receiver: str) -> str:
    """The alert group of a receiver's summaries (PagerDuty's ``dedup_key``: one incident)."""
    return fingerprint({"receiver": receiver, "summary": "page_cap"})


def _kinds(n: Notification) -> str:
    kinds = sorted({s.kind for s in n.signals}) or [n.group.get("kind", "alert")]
    return ", ".join(kinds)


def summary_notification(
    receiver: str, cap: PageCap, folded: Sequence[tuple[int, float, Notification]], now: float
) -> Notification:
    """The summary of ``folded`` (row id, enqueue time, notification: the incidents' first
    notifications for ``receiver``, oldest first, at least one).

    Its key names the first folded row, so the same incidents always give the same key.
    Each listed incident is a :class:`SignalEvidence` (``kind``: its signal kinds,
    ``subject``: its model, ``statistic``: how many signals fire); ``reason`` says the
    whole in one line. Names are made printable and bounded here; receivers escape them
    for their markup (Slack's mrkdwn) as they do every name.
    """
    if not folded:
        raise ValueError("a summary needs at least one folded incident")
    fp = summary_fingerprint(receiver)
    first_id, first_at, _ = folded[0]
    notes = [n for _, _, n in folded]
    listed = [
        SignalEvidence(
            kind=_kinds(n),
            subject=printable(n.model, MODEL_CHARS),
            severity=n.severity,
            statistic=float(len(n.signals)),
            threshold=0.0,
            details={"started_at": n.started_at, "fingerprint": n.fingerprint},
        )
        for n in notes[:MAX_LISTED]
    ]
    names = ", ".join(f"{s.subject} ({s.kind})" for s in listed)
    more = f" and {len(notes) - len(listed)} more" if len(notes) > len(listed) else ""
    count = len(notes)
    reason = (
        f"{count} more incident{'s' * (count != 1)} past the page cap of {receiver} "
        f"({cap.max_incidents} per {cap.window_seconds:g} s): {names}{more}"
    )
    return Notification(
        idempotency_key=f"{fp}-{first_id}-0-summary",
        fingerprint=fp,
        action="summary",
        status="firing",
        model="*",
        model_version=None,
        group={"receiver": receiver, "summary": "page_cap"},
        severity=max_severity([n.severity for n in notes]),
        started_at=first_at,
        evaluated_at=now,
        window_start=min(n.window_start for n in notes),
        window_end=max(n.window_end for n in notes),
        window_events=count,
        signals=tuple(listed),
        reason=reason,
    )


__all__ = [
    "MAX_LISTED",
    "PageCap",
    "admits",
    "summary_due_at",
    "summary_fingerprint",
    "summary_notification",
]
