"""The alert state machine: a pure function from (previous state, one evaluation, now) to actions.

Modelled on Alertmanager's dedup stage (``notify/dedup_stage.go``), with the
``for`` / ``keep_firing_for`` hysteresis of Prometheus rules folded in, so a
flapping detector cannot cause a notification storm:

* per signal (``kind:subject``; ``kind:subject@segment`` for a segment's): it *fires*
  after ``for`` consecutive active evaluations and *resolves* after ``resolve_after``
  consecutive ok ones (and, with ``keep_firing_for_seconds``, once that long of event time
  has passed since its last active evaluation);
* per alert group (the model, optionally split by kind, see ``group_by``):
  an *incident* is open while any of its signals fires;
* one notification per group and evaluation, listing every firing signal:

  ======  ==========================================================  ===========
  action  when                                                        carries
  ======  ==========================================================  ===========
  fire    first notifiable moment of an incident (``group_wait``)     firing sigs
  update  a firing signal not notified before, a notified signal      firing sigs
          resolved while others still fire (at most once per         (+ cleared)
          ``group_interval``), or higher severity (at once)
  repeat  still firing, nothing sent for ``repeat_interval_seconds``  firing sigs
          (on the wall clock and event time: see :func:`_elapsed`)
  resolve every signal resolved, and a fire was sent                  notified sigs
  mute    firing but every firing signal is silenced (metrics only)   muted sigs
  ======  ==========================================================  ===========

When one subject of a firing group resolves while others keep firing, the
update lists the still-firing signals as ``signals`` and the resolved ones as
``cleared`` (Alertmanager likewise re-notifies a group whose alert set
changed). A flapping subject costs at most one update per clear and one per
re-fire, and each clear needs ``resolve_after`` consecutive ok evaluations,
so hysteresis bounds the rate; a resolve is only sent for an incident that
was notified. A notified signal that is still firing but now silenced is not
"cleared": it stays in the incident until it resolves.

Nothing here performs I/O or reads a clock: ``now`` is an argument, and
identifiers derive from the inputs only, so replaying an evaluation after
a crash yields the same idempotency keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import msgspec

from monitor.alerting.config import AlertRule
from monitor.alerting.rules import is_active, max_severity, rule_for, severity_rank
from monitor.alerting.silences import Silence
from monitor.errors import StateError
from monitor.signals import EvaluationContext, Signal

ActionKind = Literal["fire", "update", "repeat", "resolve", "mute"]

#: Version of :meth:`ModelAlertState.to_json`; a mismatch on import is a :class:`StateError`.
STATE_VERSION = 1


def fingerprint(labels: dict[str, str]) -> str:
    """Stable 16-hex-digit identity of an alert group, from its labels (order-independent).

    >>> fingerprint({"model": "churn"}) == fingerprint({"model": "churn"})
    True
    >>> len(fingerprint({"model": "churn", "kind": "drift"}))
    16
    """
    text = "\x1f".join(f"{k}\x1e{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def idempotency_key(fp: str, started_at: float, seq: int, action: str) -> str:
    """Key of one notification: same inputs, same key (URL-, header- and dag_run_id-safe)."""
    return f"{fp}-{round(started_at * 1000)}-{seq}-{action}"


def incident_and_action(key: str) -> tuple[str, str]:
    """The inverse of :func:`idempotency_key` as far as a reader needs it: the incident
    (``"<fingerprint>-<start ms>"``, shared by all of its notifications) and the action."""
    rest, _, action = key.rpartition("-")
    return rest.rpartition("-")[0], action


def signal_key(signal: Signal) -> str:
    """``kind:subject``, and ``@segment`` for a segment's signal (its own track)."""
    key = f"{signal.kind}:{signal.subject}"
    return key if signal.segment is None else f"{key}@{signal.segment}"


@dataclass(frozen=True, slots=True)
class SignalTrack:
    """Hysteresis counters of one signal."""

    firing: bool = False
    active_streak: int = 0
    ok_streak: int = 0
    severity: str = "ok"  # severity at the last active evaluation
    since: float | None = None  # when it started firing
    resolve_after: int = 1
    repeat_interval: float = 4 * 3600.0
    last: Signal | None = None  # last reported value, for resolve evidence
    # The rule's ``keep_firing_for_seconds`` and the event time of the last active evaluation
    # (kept only when it is set): a firing signal resolves only once it has been ok this long.
    keep_firing_for: float = 0.0
    active_at: float | None = None


@dataclass(frozen=True, slots=True)
class GroupState:
    """One alert group: its signals and its open incident, if any."""

    labels: dict[str, str]
    fingerprint: str
    tracks: dict[str, SignalTrack] = field(default_factory=dict)
    incident_started_at: float | None = None
    notified: bool = False
    notified_keys: frozenset[str] = frozenset()
    notified_severity: str = "ok"
    last_notified_at: float | None = None  # event time of the last notification
    seq: int = 0
    muted_keys: frozenset[str] = frozenset()
    # Every incident severity a notification was routed by (a warning fire, then a critical
    # update): the resolve goes to the receivers of each, not only the last one's. Empty in
    # a state stored by an earlier build: then ``notified_severity`` alone.
    routed_severities: frozenset[str] = frozenset()
    # The monitor's wall clock (the injected clock) at the last notification: reminders are
    # for people, so ``repeat_interval`` runs on it too, as Alertmanager's repeat_interval
    # does; on event time alone, a day of backlog caught up in minutes sent six reminders in
    # those minutes. None in a state stored by an earlier build: event time alone, as it did.
    last_notified_wall: float | None = None
    # The wall clock when the incident opened, for ``group_wait`` (None: an earlier build's).
    opened_wall: float | None = None


@dataclass(frozen=True, slots=True)
class Pacing:
    """Alertmanager's ``group_wait`` / ``group_interval``, on the monitor's wall clock (the
    interval on event time too, as reminders: :func:`_elapsed`).

    ``group_wait``: the first page of an incident waits this long after it opened, so that
    signals firing within it go out together (0: at once, the default). ``group_interval``:
    changes to a notified incident (a signal joining, a signal clearing) go out at most once
    per this long, batched into one update listing everything that changed; features
    joining one at a time, each an evaluation apart, paged once each. What is never held: a
    resolve, and an escalation to a higher severity (it routes to receivers the incident
    has not reached yet, the pager: a first page for them).
    """

    group_wait: float = 0.0  # wall clock since the incident opened
    group_interval: float = 0.0  # since the last notification, on both clocks (_elapsed)


@dataclass(frozen=True, slots=True)
class ModelAlertState:
    """Everything the alert engine remembers about one model; exportable as JSON."""

    model: str
    groups: dict[str, GroupState] = field(default_factory=dict)
    last_retrain_at: float | None = None  # event time of the last retraining trigger
    # Wall clock of the last trigger: ``min_interval_seconds`` protects the training pipeline,
    # which lives on the wall clock (a backlog caught up in minutes must not retrain twice).
    last_retrain_wall: float | None = None
    # Which incidents the last trigger covered: alert group fingerprint -> incident start.
    # Event time may move backwards (a producer's clock, a replayed topic), so "started at
    # or before the last trigger" took an incident opened after it for a covered one, and
    # that incident never triggered. None: a state of an earlier build (then that rule).
    retrain_covers: dict[str, float] | None = None

    def firing_by_severity(self) -> dict[str, int]:
        """Number of firing signals per severity (for ``monitor_alerts_firing``)."""
        counts = {"warning": 0, "critical": 0}
        for g in self.groups.values():
            for t in g.tracks.values():
                if t.firing and t.severity in counts:
                    counts[t.severity] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form (for the state store and ``AlertService.get_state``).

        :class:`StateDocument` through msgspec: sets and dict keys sorted, so the
        same state always gives the same document (the engine compares texts to
        skip writing an unchanged state).
        """
        doc = StateDocument(
            version=STATE_VERSION,
            model=self.model,
            last_retrain_at=self.last_retrain_at,
            groups=list(self.groups.values()),
            last_retrain_wall=self.last_retrain_wall,
            retrain_covers=self.retrain_covers,
        )
        out = msgspec.to_builtins(doc, order="deterministic", enc_hook=_enc_hook)
        # Fields an earlier build did not write are left out while unset: the same state
        # gives the document it gave before (and that build still reads it).
        for name in ("last_retrain_wall", "retrain_covers"):
            if out.get(name) is None:
                out.pop(name, None)
        # A signal of the whole traffic is stored as earlier builds stored it (no segment),
        # and so is a group without routed severities (no incident notified).
        for group in out["groups"]:
            if not group.get("routed_severities"):
                group.pop("routed_severities", None)
            for name in ("last_notified_wall", "opened_wall"):
                if group.get(name) is None:
                    group.pop(name, None)
            for track in group["tracks"].values():
                if not track.get("keep_firing_for"):
                    track.pop("keep_firing_for", None)
                    track.pop("active_at", None)
                last = track.get("last")
                if isinstance(last, dict) and last.get("segment", "") is None:
                    del last["segment"]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelAlertState:
        """Inverse of :meth:`to_json`; another version or a malformed document is a StateError.

        Validated by msgspec against :class:`StateDocument` (types, required
        fields, signal kinds and severities), so a bad document names its field.
        """
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            raise StateError(f"alert state version {version!r} != {STATE_VERSION}")
        try:
            doc = msgspec.convert(data, StateDocument)
        except msgspec.ValidationError as exc:
            raise StateError(f"malformed alert state: {exc}") from exc
        return cls(
            model=doc.model,
            groups={g.fingerprint: g for g in doc.groups},
            last_retrain_at=doc.last_retrain_at,
            last_retrain_wall=doc.last_retrain_wall,
            retrain_covers=doc.retrain_covers,
        )


class StateDocument(msgspec.Struct):
    """The stored alert state of one model (version :data:`STATE_VERSION`).

    The same JSON object earlier builds wrote by hand: ``groups`` is a list of
    :class:`GroupState` (its ``notified_keys``/``muted_keys`` as sorted lists,
    ``tracks`` by signal key, each :class:`SignalTrack` with its ``last``
    :class:`~monitor.signals.Signal`).
    """

    version: int
    model: str
    groups: list[GroupState]
    last_retrain_at: float | None = None
    last_retrain_wall: float | None = None
    retrain_covers: dict[str, float] | None = None


def forget_future(state: ModelAlertState, latest: float, now: float) -> tuple[ModelAlertState, int]:
    """``state`` with every time beyond ``latest`` set to ``now``; and how many there were.

    Policy time is the evaluation's event time. A state saved by an earlier release after
    one event stamped far ahead (before event times were bounded), or a window timed by
    Kafka record times of a producer whose clock ran ahead, holds times there: a firing
    signal's ``since``, an incident's start and last notification, the last retraining.
    Restored as they were, later evaluations at the right time stood "before" them: the
    repeat interval never elapsed (no reminder for the incident) and
    ``min_interval_seconds`` never passed since the last retraining (never retrained
    again). Pure, for :meth:`monitor.service.MonitorService._restore`.

    >>> s = ModelAlertState("m", last_retrain_at=32_503_680_000.0)
    >>> forget_future(s, latest=1_000.0, now=900.0)[0].last_retrain_at
    900.0
    """
    n = 0

    def fix(t: float | None) -> float | None:
        nonlocal n
        if t is not None and t > latest:
            n += 1
            return now
        return t

    groups = {}
    for fp, g in state.groups.items():
        tracks = {k: replace(t, since=fix(t.since)) for k, t in g.tracks.items()}
        groups[fp] = replace(
            g,
            tracks=tracks,
            incident_started_at=fix(g.incident_started_at),
            last_notified_at=fix(g.last_notified_at),
            # Wall-clock times saved by a host whose clock ran ahead hold reminders and the
            # retraining rate limit just as long.
            last_notified_wall=fix(g.last_notified_wall),
            opened_wall=fix(g.opened_wall),
        )
    covers = state.retrain_covers
    if covers is not None:  # moved with the incident starts they name, so they still match
        n += sum(t > latest for t in covers.values())
        covers = {fp: now if t > latest else t for fp, t in covers.items()}
    out = replace(
        state,
        groups=groups,
        last_retrain_at=fix(state.last_retrain_at),
        last_retrain_wall=fix(state.last_retrain_wall),
        retrain_covers=covers,
    )
    return (out if n else state), n


def _enc_hook(obj: Any) -> Any:
    """numpy scalars in a signal's ``details`` as the Python numbers they hold."""
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    raise NotImplementedError(f"not JSON serialisable: {type(obj).__name__}")


@dataclass(frozen=True, slots=True)
class AlertAction:
    """One policy decision: a notification to build, route and enqueue (or count: mute)."""

    kind: ActionKind
    model: str
    labels: dict[str, str]
    fingerprint: str
    idempotency_key: str
    incident_started_at: float
    severity: str  # the incident severity (a resolve also routes by route_severities)
    signals: tuple[Signal, ...]
    ended_at: float | None = None
    cleared: tuple[Signal, ...] = ()  # notified signals that resolved while others fire
    # The severities to route by (the union of their receivers): ``(severity,)``, except for
    # a resolve, which goes to every receiver a notification of the incident went to.
    route_severities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    state: ModelAlertState
    actions: list[AlertAction]


def group_labels(signal: Signal, group_by: Sequence[str]) -> dict[str, str]:
    """Labels of the alert group ``signal`` belongs to."""
    labels = {"model": signal.model}
    if "kind" in group_by:
        labels["kind"] = signal.kind
    return labels


def _order(signals: Iterable[Signal]) -> tuple[Signal, ...]:
    return tuple(
        sorted(
            signals,
            key=lambda s: (-severity_rank(s.severity), s.kind, s.subject, s.segment or ""),
        )
    )


def _step_track(
    track: SignalTrack, signal: Signal | None, rule: AlertRule | None, now: float
) -> SignalTrack:
    """Advance one signal's hysteresis by one evaluation (absent or unruled counts as ok)."""
    last = signal if signal is not None else track.last
    if signal is not None and rule is not None and is_active(rule, signal):
        streak = track.active_streak + 1
        firing, since = track.firing, track.since
        if not firing and streak >= rule.for_:
            firing, since = True, now
        keep = rule.keep_firing_for_seconds
        return SignalTrack(
            firing=firing,
            active_streak=streak,
            ok_streak=0,
            severity=signal.severity,
            since=since,
            resolve_after=rule.resolve_after,
            repeat_interval=rule.repeat_interval_seconds,
            last=last,
            keep_firing_for=keep,
            active_at=now if keep else None,
        )
    ok = track.ok_streak + 1
    held = track.active_at is not None and now - track.active_at < track.keep_firing_for
    if track.firing and (ok < track.resolve_after or held):
        return replace(track, active_streak=0, ok_streak=ok, last=last)
    return replace(track, firing=False, active_streak=0, ok_streak=0, since=None, last=last)


def _step_group(
    group: GroupState,
    current: dict[str, Signal],
    rules: Sequence[AlertRule],
    silences: Sequence[Silence],
    model: str,
    now: float,
    wall: float,
    pacing: Pacing,
) -> tuple[GroupState, list[AlertAction]]:
    tracks: dict[str, SignalTrack] = {}
    evidence: dict[str, Signal] = {}
    for key in sorted(set(group.tracks) | set(current)):
        sig = current.get(key)
        prev = group.tracks.get(key)
        if prev is None and sig is not None and severity_rank(sig.severity) == 0:
            # Most of an evaluation's signals: ok, with nothing open. No rule makes an ok
            # signal active, so its step is a fresh track holding it as evidence, which is
            # not kept: skip building it (the same result, a tenth of the cost).
            evidence[key] = sig
            continue
        rule = rule_for(rules, sig) if sig is not None else None
        tracks[key] = track = _step_track(prev or SignalTrack(), sig, rule, now)
        if track.last is not None:
            evidence[key] = track.last

    firing = {k: t for k, t in tracks.items() if t.firing}
    # Keep only what carries information: bounded state however many features come and go.
    kept = {k: t for k, t in tracks.items() if t.firing or t.active_streak > 0}
    group = replace(group, tracks=kept)
    actions: list[AlertAction] = []

    def act(
        kind: ActionKind,
        keys: Iterable[str],
        severity: str,
        seq: int,
        cleared: Iterable[str] = (),
        route_severities: Iterable[str] = (),
    ) -> AlertAction:
        assert group.incident_started_at is not None
        routes = tuple(sorted(set(route_severities) | {severity}, key=severity_rank))
        return AlertAction(
            kind=kind,
            model=model,
            labels=dict(group.labels),
            fingerprint=group.fingerprint,
            idempotency_key=idempotency_key(
                group.fingerprint, group.incident_started_at, seq, kind
            ),
            incident_started_at=group.incident_started_at,
            severity=severity,
            signals=_order(evidence[k] for k in keys if k in evidence),
            ended_at=None,  # a resolve is built by _resolve
            cleared=_order(evidence[k] for k in cleared if k in evidence),
            route_severities=routes,
        )

    if not firing:
        if group.incident_started_at is not None and group.notified:
            actions.append(_resolve(group, model, evidence, now))
        return replace(
            group,
            incident_started_at=None,
            notified=False,
            notified_keys=frozenset(),
            notified_severity="ok",
            last_notified_at=None,
            seq=0,
            muted_keys=frozenset(),
            routed_severities=frozenset(),
            last_notified_wall=None,
            opened_wall=None,
        ), actions

    if group.incident_started_at is None:
        group = replace(group, incident_started_at=now, opened_wall=wall)
    # ``silences``: those active when the decision is made (see decide's ``silenced_at``).
    visible = {k for k in firing if not any(s.matches(evidence[k]) for s in silences)}
    visible_sev = max_severity([firing[k].severity for k in visible])

    if visible:
        new_keys = visible - group.notified_keys
        cleared = group.notified_keys - set(firing)
        repeat_every = min(firing[k].repeat_interval for k in firing)
        kind: ActionKind | None = None
        repeat_due = _elapsed(group, now, wall, repeat_every)
        if not group.notified:
            opened = group.opened_wall
            if opened is None or wall - opened >= pacing.group_wait:
                kind = "fire"
        elif severity_rank(visible_sev) > severity_rank(group.notified_severity):
            kind = "update"  # an escalation is never held: it reaches new receivers
        elif new_keys or cleared:
            if repeat_due or _elapsed(group, now, wall, pacing.group_interval):
                kind = "update"  # else held: the next one lists these changes too
        elif repeat_due:
            kind = "repeat"
        if kind is not None:
            severity = max_severity([visible_sev, group.notified_severity])
            actions.append(act(kind, sorted(visible), severity, group.seq, sorted(cleared)))
            group = replace(
                group,
                notified=True,
                notified_keys=(group.notified_keys - cleared) | visible,
                notified_severity=severity,
                last_notified_at=now,
                last_notified_wall=wall,
                seq=group.seq + 1,
                routed_severities=group.routed_severities | {severity},
            )
    else:
        newly_muted = set(firing) - group.muted_keys - group.notified_keys
        if newly_muted:
            sev = max_severity([firing[k].severity for k in newly_muted])
            actions.append(act("mute", sorted(newly_muted), sev, group.seq))
            group = replace(group, muted_keys=group.muted_keys | newly_muted)
    return group, actions


def _resolve(group: GroupState, model: str, evidence: dict[str, Signal], now: float) -> AlertAction:
    """The resolve of ``group``'s notified incident: its notified signals as ``evidence``
    holds them, to every receiver a notification of the incident was routed to."""
    assert group.incident_started_at is not None
    severity = group.notified_severity
    return AlertAction(
        kind="resolve",
        model=model,
        labels=dict(group.labels),
        fingerprint=group.fingerprint,
        idempotency_key=idempotency_key(
            group.fingerprint, group.incident_started_at, group.seq, "resolve"
        ),
        incident_started_at=group.incident_started_at,
        severity=severity,
        signals=_order(evidence[k] for k in group.notified_keys if k in evidence),
        ended_at=now,
        route_severities=tuple(
            sorted(set(group.routed_severities) | {severity}, key=severity_rank)
        ),
    )


def retire(state: ModelAlertState, now: float) -> Decision:
    """Close every open incident of a model that is no longer monitored; ``now``: when.

    A model taken out of the config while an incident of it was open left that incident
    open at its receivers for good (a PagerDuty incident nobody's data would ever resolve):
    no evaluation of it comes any more, and only an evaluation resolves. Each notified
    incident gets the resolve it would have got (the same idempotency key, so deciding it
    again after a restart is the outbox's duplicate); one never notified closes without a
    word. The state returned holds no incident (the retraining fields are kept).

    >>> from monitor.signals import Signal
    >>> sig = Signal("m", "drift", "x", "critical", 0.4, 0.2, "psi")
    >>> track = SignalTrack(firing=True, active_streak=3, severity="critical", last=sig)
    >>> g = GroupState({"model": "m"}, "fp", {"drift:x": track}, incident_started_at=10.0,
    ...                notified=True, notified_keys=frozenset({"drift:x"}),
    ...                notified_severity="critical", seq=1)
    >>> d = retire(ModelAlertState("m", {"fp": g}), now=99.0)
    >>> [(a.kind, a.idempotency_key, [s.subject for s in a.signals]) for a in d.actions]
    [('resolve', 'fp-10000-1-resolve', ['x'])]
    >>> d.state.groups
    {}
    """
    actions = []
    for fp in sorted(state.groups):
        group = state.groups[fp]
        if group.incident_started_at is None or not group.notified:
            continue
        evidence = {k: t.last for k, t in group.tracks.items() if t.last is not None}
        actions.append(_resolve(group, state.model, evidence, now))
    return Decision(state=replace(state, groups={}), actions=actions)


def _elapsed(group: GroupState, now: float, wall: float, interval: float) -> bool:
    """Whether ``interval`` has passed since the group's last notification on both clocks.

    The wall clock, because reminders and batched updates are for people: a day of backlog
    caught up in minutes reminds nobody in those minutes. The event time too, so that a
    replay after a restart decides what the live run decided: five hours after a crash, the
    replayed evaluations of an incident whose resolve they are about to replay would
    otherwise remind of it (wall clock alone: a "repeat" after the "resolve", then a second
    resolve under a new key). Live, the two clocks advance together. Event time that moved
    back behind the last notification (a producer's clock) says nothing about how long ago
    that was: then the wall clock alone (event time alone held updates and reminders until
    the data's time caught up again). A state of an earlier build has no wall time: event
    time alone, as it did.
    """
    last = group.last_notified_at
    if last is None or 0 <= now - last < interval:
        return False
    if group.last_notified_wall is None:
        return now - last >= interval
    return wall - group.last_notified_wall >= interval


def decide(
    previous: ModelAlertState | None,
    signals: Sequence[Signal],
    ctx: EvaluationContext,
    now: float,
    *,
    rules: Sequence[AlertRule],
    silences: Sequence[Silence] = (),
    group_by: Sequence[str] = ("model",),
    silenced_at: float | None = None,
    wall: float | None = None,
    pacing: Pacing = Pacing(),
) -> Decision:
    """Advance one model's alert state by one evaluation and say what to notify.

    ``signals`` are all the signals of one evaluation of ``ctx.model``
    (inactive ones with severity ``"ok"``). A signal tracked before but
    absent now counts as ok, so a removed feature cannot hold an incident
    open forever. If several signals share ``kind:subject``, the most
    severe wins.

    ``now`` is the evaluation's event time; ``silenced_at`` (default ``now``) the time the
    silences are judged at: the wall clock of the decision, since people set silences on
    the wall clock ("mute for two hours from now"). Judged at event time, a silence created
    a minute ago did not mute an evaluation of events a few minutes old, which paged.

    ``wall`` (default ``now``): the monitor's wall clock at the decision, which paces what is
    for people: a reminder (``repeat_interval_seconds``) needs its interval passed on the
    wall clock as well as on event time (:func:`_elapsed`). Whether an incident opens or
    closes, and when it started, is the data's to say: event time (``now``), so a replay
    decides the same incidents with the same keys. A backlog of a day caught up in minutes
    opens and closes its incidents as they happened, and reminds nobody in those minutes.
    ``pacing`` (wall clock too): when a first page and an incident's updates may go out
    (:class:`Pacing`; the default holds nothing back).
    """
    state = previous if previous is not None else ModelAlertState(model=ctx.model)
    if state.model != ctx.model:
        raise ValueError(f"state of model {state.model!r} given for {ctx.model!r}")
    if not state.groups and all(
        sig.model == ctx.model and severity_rank(sig.severity) == 0 for sig in signals
    ):
        # The common evaluation: every signal ok and nothing open. Each group's step would
        # hold its signals as evidence only (an ok signal without a track: see _step_group),
        # keep no track and no incident, and act on nothing: the same outcome, without
        # grouping a hundred signals to find it out.
        return Decision(state=replace(state, groups={}), actions=[])
    at = now if silenced_at is None else silenced_at
    live = [s for s in silences if s.active_at(at)]
    clock = now if wall is None else wall
    return _decide_groups(state, signals, ctx, now, rules, live, group_by, clock, pacing)


def _decide_groups(
    state: ModelAlertState,
    signals: Sequence[Signal],
    ctx: EvaluationContext,
    now: float,
    rules: Sequence[AlertRule],
    silences: Sequence[Silence],
    group_by: Sequence[str],
    wall: float,
    pacing: Pacing,
) -> Decision:
    """:func:`decide` in full: the signals grouped, every group stepped."""
    by_group: dict[str, tuple[dict[str, str], dict[str, Signal]]] = {}
    fingerprints: dict[tuple[tuple[str, str], ...], str] = {}  # a few groups, many signals
    for sig in signals:
        if sig.model != ctx.model:
            raise ValueError(f"signal of model {sig.model!r} in an evaluation of {ctx.model!r}")
        labels = group_labels(sig, group_by)
        items = tuple(labels.items())
        fp = fingerprints.get(items)
        if fp is None:
            fp = fingerprints[items] = fingerprint(labels)
        entry = by_group.setdefault(fp, (labels, {}))
        key = signal_key(sig)
        seen = entry[1].get(key)
        if seen is None or severity_rank(sig.severity) > severity_rank(seen.severity):
            entry[1][key] = sig

    groups: dict[str, GroupState] = {}
    actions: list[AlertAction] = []
    for fp in sorted(set(state.groups) | set(by_group)):
        labels, current = by_group.get(fp, (None, {}))
        prev = state.groups.get(fp) or GroupState(labels=labels or {}, fingerprint=fp)
        new, acts = _step_group(prev, current, rules, silences, ctx.model, now, wall, pacing)
        actions.extend(acts)
        if new.tracks or new.incident_started_at is not None:
            groups[fp] = new
    return Decision(state=replace(state, groups=groups), actions=actions)


__all__ = [
    "STATE_VERSION",
    "ActionKind",
    "AlertAction",
    "Decision",
    "GroupState",
    "ModelAlertState",
    "Pacing",
    "SignalTrack",
    "StateDocument",
    "decide",
    "fingerprint",
    "group_labels",
    "idempotency_key",
    "incident_and_action",
    "retire",
]
