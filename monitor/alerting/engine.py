"""The alerting facade the pipeline calls: rules, silences, policy, routing, retrain, outbox.

Lifecycle::

    service = AlertService(config, registry=registry, clock=clock)
    await service.start()          # opens the outbox, resumes pending deliveries
    service.submit(ctx, signals)   # after each evaluation of one model; durable on return
    ...
    await service.stop(grace_seconds=5.0)   # flush what it can, then close; idempotent

``submit`` is synchronous and quick (one SQLite transaction): the decision is
the pure :func:`~monitor.alerting.policy.decide`; state and the resulting
notifications are committed together, then the dispatcher is woken. From the
event loop, ``await service.submit_async(ctx, signals)`` does the same with the
write on the service's database thread, where the dispatcher's reads and writes
run too: a write waiting for another process's lock on the file never stalls the
loop. If it
raises (:class:`~monitor.errors.StateError`), nothing was committed and the
in-memory state did not advance, so the caller may retry the evaluation.

Logged at INFO, once each: every incident fire, update, repeat and resolve
(model, severity, subjects, receivers), every mute by a silence and every
retraining trigger; delivery outcomes are the dispatcher's to log. While it
runs, the service keeps httpx's per-request log lines (which quote the URL, a
secret for Slack) out of the logs for its receivers' URLs
(:class:`~monitor.alerting.http.DropRequestLogs`).

Where the caller keeps the alert state itself (``persist_state=False``: the
monitor service checkpoints it with each model's state and rolls it back to
that checkpoint on restart), ``submit`` writes only notifications: no
transaction, and no fsync, for an evaluation that notifies nobody, however
long an incident fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from prometheus_client import CollectorRegistry

from monitor.alerting.alert_metrics import AlertMetrics
from monitor.alerting.config import AlertingConfig
from monitor.alerting.dispatcher import Dispatcher
from monitor.alerting.http import DropRequestLogs
from monitor.alerting.notification import (
    Notification,
    SignalEvidence,
    bounded_version,
    printable,
)
from monitor.alerting.outbox import Outbox
from monitor.alerting.page_cap import PageCap
from monitor.alerting.policy import (
    STATE_VERSION,
    AlertAction,
    ModelAlertState,
    Pacing,
    decide,
    fingerprint,
    idempotency_key,
    retire,
    signal_key,
)
from monitor.alerting.receiver import Receiver, secret_forms
from monitor.alerting.receivers import build_receiver
from monitor.alerting.retrain_policy import decide_retrain, record_retrain
from monitor.alerting.routing import route
from monitor.alerting.rules import glob_match, max_severity, rule_for
from monitor.alerting.silence_store import SilenceStore
from monitor.alerting.silences import Silence, from_config
from monitor.clock import Clock
from monitor.errors import ServiceStateError, StateError
from monitor.signals import EvaluationContext, Signal

log = logging.getLogger(__name__)

#: Subjects named in one incident log line; the rest are counted.
MAX_SUBJECTS_LOGGED = 10


def evidence(signal: Signal) -> SignalEvidence:
    """A signal as notification evidence (``details["p_value"]`` promoted to a field)."""
    details = dict(signal.details)
    p = details.pop("p_value", None)
    return SignalEvidence(
        kind=signal.kind,
        subject=signal.subject,
        severity=signal.severity,
        statistic=float(signal.value),
        threshold=float(signal.threshold),
        detector=signal.detector,
        p_value=float(p) if isinstance(p, int | float) else None,
        details=details,
        segment=signal.segment,
    )


#: Shortest time range of a dashboard link: a window of a few events may span under a
#: second, and Grafana shows nothing for ``from == to``. Ten minutes shows the window and
#: enough of its surroundings to tell a spike from a trend.
MIN_LINK_RANGE_SECONDS = 600.0


def link_values(ctx: EvaluationContext, fp: str) -> dict[str, object]:
    """Placeholder values of link templates; the time range is padded to the minimum range.

    A window shorter than :data:`MIN_LINK_RANGE_SECONDS` is widened equally on both sides.
    """
    start, end = ctx.window_start, ctx.window_end
    if not (math.isfinite(start) and math.isfinite(end) and start <= end):
        start = end = ctx.evaluated_at
    if end - start < MIN_LINK_RANGE_SECONDS:
        middle = (start + end) / 2
        start, end = middle - MIN_LINK_RANGE_SECONDS / 2, middle + MIN_LINK_RANGE_SECONDS / 2
    return {
        "model": quote(ctx.model, safe=""),
        "model_version": quote(ctx.model_version or "", safe=""),
        "window_start_ms": round(start * 1000),
        "window_end_ms": round(end * 1000),
        "evaluated_at_ms": round(ctx.evaluated_at * 1000),
        "fingerprint": fp,
    }


def links_for(
    config: AlertingConfig, ctx: EvaluationContext, fp: str, signals: Sequence[Signal] = ()
) -> dict[str, str]:
    """The dashboard and runbook links of a notification (each only when configured).

    The runbook is that of the first rule, in the notification's signal order
    (most severe first), that names one; else the first ``runbook_urls`` entry
    whose model glob matches; else none.
    """
    values = link_values(ctx, fp)
    links: dict[str, str] = {}
    if config.dashboard_url_template:
        links["dashboard"] = config.dashboard_url_template.format_map(values)
    runbook = runbook_for(config, ctx.model, signals)
    if runbook:
        links["runbook"] = runbook.format_map(values)
    return links


#: The section of docs/RUNBOOK.md for a signal kind (GitHub's anchors of its headings;
#: ``tests/test_alert_text.py`` checks that each exists). Critical drift has its own, and
#: so does one subject ("kind/subject"): stale labels are no model problem to look into.
RUNBOOK_ANCHORS: dict[str, str] = {
    "drift": "featuredrift",
    "drift:critical": "featuredriftcritical",
    "data_quality": "data-quality-signals-data_quality",
    "multivariate": "multivariate-drift-multivariate",
    "performance": "modelalertsfiring",
    "performance/labels_stale": "labelsstale",
}


def runbook_for(config: AlertingConfig, model: str, signals: Sequence[Signal]) -> str | None:
    """The runbook URL template for a notification about ``signals`` of ``model``: a rule's,
    else a model glob's, else the section of ``runbook_base_url`` for the first (most
    severe) signal's kind, else none."""
    for s in signals:
        rule = rule_for(config.rules, s)
        if rule is not None and rule.runbook_url:
            return rule.runbook_url
    for pattern, url in config.runbook_urls.items():
        if glob_match(pattern, model):
            return url
    if config.runbook_base_url and signals:
        s = signals[0]
        anchor = (
            RUNBOOK_ANCHORS.get(f"{s.kind}/{s.subject}")
            or RUNBOOK_ANCHORS.get(f"{s.kind}:{s.severity}")
            or RUNBOOK_ANCHORS.get(s.kind, "modelalertsfiring")
        )
        # Braces are doubled: the result is a template (``format_map`` in ``links_for``).
        base = config.runbook_base_url.replace("{", "{{").replace("}", "}}")
        return f"{base}#{anchor}"
    return None


def build_notification(
    action: AlertAction, ctx: EvaluationContext, links: dict[str, str]
) -> Notification:
    """The notification for one policy action."""
    return Notification(
        idempotency_key=action.idempotency_key,
        fingerprint=action.fingerprint,
        action=action.kind,  # type: ignore[arg-type]  # "mute" never reaches here
        status="resolved" if action.kind == "resolve" else "firing",
        model=ctx.model,
        model_version=bounded_version(ctx.model_version),
        group=dict(action.labels),
        severity=action.severity,
        started_at=action.incident_started_at,
        evaluated_at=ctx.evaluated_at,
        window_start=ctx.window_start,
        window_end=ctx.window_end,
        window_events=ctx.window_events,
        signals=tuple(evidence(s) for s in action.signals),
        links=links,
        ended_at=action.ended_at,
        cleared=tuple(evidence(s) for s in action.cleared),
    )


def _log_action(action: AlertAction, receivers: Sequence[str]) -> None:
    """One INFO line per incident action: what happened, to which subjects, who is told."""
    keys = [signal_key(s) for s in action.signals]
    subjects = ", ".join(printable(k) for k in keys[:MAX_SUBJECTS_LOGGED])
    if len(keys) > MAX_SUBJECTS_LOGGED:
        subjects += f" and {len(keys) - MAX_SUBJECTS_LOGGED} more"
    cleared = ""
    if action.cleared:
        names = [printable(signal_key(s)) for s in action.cleared[:MAX_SUBJECTS_LOGGED]]
        cleared = f"; cleared: {', '.join(names)}"
    if action.kind == "mute":
        log.info(
            "alert muted by a silence: model %s, severity %s, subjects %s",
            printable(action.model), action.severity, subjects,
        )  # fmt: skip
        return
    log.info(
        "alert %s: model %s, severity %s, subjects %s%s; to %s",
        action.kind, printable(action.model), action.severity, subjects, cleared,
        ", ".join(receivers) or "no receiver",
    )  # fmt: skip


def route_all(config: AlertingConfig, model: str, severities: Iterable[str]) -> list[str]:
    """The receivers of every one of ``severities`` (:func:`route`), in order, once each.

    A resolve routes by every severity its incident was notified at: a warning fire to
    chat, then a critical update to the pager, closes in chat as well as in the pager.
    """
    targets: list[str] = []
    for severity in severities:
        targets.extend(r for r in route(config, model, severity) if r not in targets)
    return targets


#: A spooled notification: (model, receiver, notification).
SpooledAlert = tuple[str, str, Notification]

_T = TypeVar("_T")
_K = TypeVar("_K")


@dataclass(slots=True)
class _Pending:
    """One evaluation decided by :meth:`AlertService._decide`, not yet written."""

    ctx: EvaluationContext
    wall: float
    state: ModelAlertState | None = None
    items: list[tuple[str, Notification]] = field(default_factory=list)
    for_outbox: list[tuple[str, Notification]] = field(default_factory=list)
    produced: list[Notification] = field(default_factory=list)
    counts: list[tuple[str, str]] = field(default_factory=list)
    # Per action: its receivers and where its rows start in ``items`` (for the log).
    spans: list[tuple[AlertAction, list[str], int]] = field(default_factory=list)
    changed: dict[str, str] = field(default_factory=dict)
    retrain_triggered: bool = False


class AlertService:
    """Turns evaluations into deduplicated, routed, durably delivered notifications."""

    def __init__(
        self,
        config: AlertingConfig,
        *,
        registry: CollectorRegistry,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
        outbox_path: str | None = None,
        rng: random.Random | None = None,
        poll_interval_seconds: float = 1.0,
        persist_state: bool = True,
        spool: bool = False,
    ) -> None:
        """No I/O here: the database and HTTP client are opened by :meth:`start`.

        ``transport`` is the httpx seam (tests); ``outbox_path`` overrides
        ``config.outbox_path``; ``rng`` seeds retry jitter. ``persist_state``:
        keep each model's alert state in the outbox database (committed with the
        notifications it implies, restored by :meth:`start`); ``False`` when the
        caller saves it through :meth:`get_state` and restores it through
        :meth:`set_state`, as :class:`~monitor.service.MonitorService` does.
        ``spool``: :meth:`submit` does not write new notifications to the outbox but
        queues them in memory (:meth:`spooled`); the caller writes them elsewhere
        durably (the Kafka state backend: the alerts topic, in the checkpoint's
        transaction) and drops them (:meth:`drop_spooled`) once that write committed.
        They come back through :meth:`hand_off` (:mod:`monitor.alerting.alert_log`).
        """
        self._persist_state = persist_state
        self._spool: list[SpooledAlert] | None = [] if spool else None
        self._config = config
        self._clock = clock
        self._transport = transport
        self._outbox_path = outbox_path or config.outbox_path
        self._rng = rng
        self._poll_interval = poll_interval_seconds
        self._metrics = AlertMetrics(registry, config.receivers)
        self._states: dict[str, ModelAlertState] = {}
        self._saved: dict[str, str] = {}
        self._pending_import: dict[str, ModelAlertState] = {}
        self._static_silences = from_config(config.silences)
        self._pacing = Pacing(config.group_wait_seconds, config.group_interval_seconds)
        self._page_caps = {
            name: PageCap(c.max_incidents, c.window_seconds, c.summary_wait_seconds)
            for name, c in config.page_caps().items()
        }
        self._outbox: Outbox | None = None
        self._silences: SilenceStore | None = None
        self._client: httpx.AsyncClient | None = None
        self._dispatcher: Dispatcher | None = None
        self._secrets = config.receiver_secrets()
        self._log_filter = DropRequestLogs(secret_forms(self._secrets))
        # The one thread the outbox is written on from the event loop (submit_async, the
        # dispatcher): a write waiting for another process's lock must not stall the loop.
        self._database = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert-outbox")
        self._lifecycle = "new"

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the outbox, restore alert state and runtime silences, start delivering."""
        if self._lifecycle != "new":
            raise ServiceStateError(f"AlertService cannot start from state {self._lifecycle!r}")
        outbox = await asyncio.to_thread(
            partial(Outbox.open, self._outbox_path, page_caps=self._page_caps)
        )
        try:
            # On the database thread: the spool's withdrawal is a write, which waited on the
            # loop for another process's lock on the file (the busy timeout: no heartbeat of
            # the alerts-topic consumer started before, no HTTP probe meanwhile), and gave up.
            self._silences, saved, withdrawn = await self._in_database(self._open_state, outbox)
        except Exception:
            outbox.close()
            raise
        for model, text in saved.items():
            try:
                self._states[model] = ModelAlertState.from_json(json.loads(text))
            except (StateError, ValueError):
                continue  # a foreign/old state row: start that model afresh, do not crash
            self._saved[model] = text
        if withdrawn:
            log.info(
                "%d undelivered alert(s) of a previous run left to the alerts topic", withdrawn
            )
        self._outbox = outbox
        self._states.update(self._pending_import)
        self._pending_import.clear()
        self._log_filter.attach()
        self._client = httpx.AsyncClient(transport=self._transport, follow_redirects=False)
        receivers: dict[str, Receiver] = {
            name: build_receiver(name, rc, self._client, self._clock, outbox)
            for name, rc in self._config.receivers.items()
        }
        self._dispatcher = Dispatcher(
            outbox,
            receivers,
            delivery=self._config.delivery,
            metrics=self._metrics,
            clock=self._clock,
            rng=self._rng,
            poll_interval=self._poll_interval,
            secrets=self._secrets,
            database=self._database,
            page_caps=self._page_caps,
            summary_interval=self._config.group_interval_seconds,
        )
        self._lifecycle = "running"
        for state in self._states.values():
            self._export_firing(state)
        await self._in_database(
            outbox.purge, self._clock.time() - self._config.delivery.retention_seconds
        )
        abandoned = await self._in_database(
            outbox.abandon_unconfigured, self._config.receivers.keys(), self._clock.time()
        )
        for receiver, n in sorted(abandoned.items()):
            self._metrics.count(receiver, "dead", n)
            log.warning(
                "%d alert notification(s) pending for receiver %s, which is no longer in the "
                "config, were marked dead, not sent",
                n,
                printable(receiver, 200),
            )
        left_open = await self._in_database(
            outbox.left_open_at_unconfigured, self._config.receivers.keys()
        )
        for receiver, n in sorted(left_open.items()):
            log.warning(
                "receiver %s, which is no longer in the config, was paged for %d incident(s) "
                "it never got the resolve of: the monitor cannot reach it any more, so close "
                "them there",
                printable(receiver, 200),
                n,
            )
        await self._dispatcher.start()

    def _open_state(self, outbox: Outbox) -> tuple[SilenceStore, dict[str, str], int]:
        """What :meth:`start` reads (and, spooling, withdraws) of the outbox, on the database
        thread: the runtime silences, the saved alert states, how many rows were withdrawn."""
        silences = SilenceStore(outbox.connection, self._static_silences, lock=outbox.write_lock)
        saved = outbox.load_states() if self._persist_state else {}
        # Every row came from the alerts topic; a pending one's record is uncommitted, and
        # its partition may belong to another instance by now: let its owner deliver it
        # (from Kafka), not this outbox as well.
        withdrawn = outbox.withdraw_all_pending() if self._spool is not None else 0
        return silences, saved, withdrawn

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Flush due deliveries for up to ``grace_seconds``, then close client and database.

        Idempotent. Order: stop accepting ``submit`` -> dispatcher -> HTTP client -> database.
        ``grace_seconds=0`` stops at once; undelivered rows wait in the outbox for the next run.
        """
        if self._lifecycle in ("stopped", "stopping"):
            return
        if self._lifecycle == "new":
            self._database.shutdown(wait=False)
            self._lifecycle = "stopped"
            return
        self._lifecycle = "stopping"
        try:
            if self._dispatcher is not None:
                await self._dispatcher.stop(grace_seconds)
        finally:
            if self._client is not None:
                await self._client.aclose()
            # After what the database thread still has to do (a release at stop).
            await asyncio.to_thread(self._database.shutdown, wait=True)
            if self._outbox is not None:
                self._outbox.close()
            self._log_filter.detach()
            self._lifecycle = "stopped"

    async def __aenter__(self) -> AlertService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the pipeline's entry point ------------------------------------------------------

    def submit(self, ctx: EvaluationContext, signals: Sequence[Signal]) -> list[Notification]:
        """Process one evaluation of one model; returns the notifications durably enqueued.

        Policy time is ``ctx.evaluated_at`` (the evaluation's event time): incidents open
        and close on it, so that a replayed evaluation yields the same idempotency keys
        and is deduplicated by the outbox. What paces people and the training pipeline
        runs on the injected clock's wall time: silences (the clock they are set on: a
        silence created now mutes the next evaluation, however old its events), the
        retraining rate limit (``min_interval_seconds``), ``group_wait_seconds``, and
        reminders and batched updates (``repeat_interval_seconds``,
        ``group_interval_seconds``; on event time too: see :func:`decide`), so a backlog
        caught up in minutes does not remind or retrain as often as its hours of event
        time would.

        The outbox write runs on the calling thread: from the event loop, use
        :meth:`submit_async`, which writes on the database thread.
        """
        pending = self._decide(ctx, signals)
        return self._finish(pending, self._write(pending))

    async def submit_async(
        self, ctx: EvaluationContext, signals: Sequence[Signal]
    ) -> list[Notification]:
        """:meth:`submit`, with the outbox write on the service's database thread.

        The write waits for another process's lock on the file (SQLite's busy timeout, 5 s)
        and fsyncs; on the event loop that wait stalled everything else the loop runs:
        Kafka heartbeats and fetches, the HTTP server, deliveries. Here the decision is
        taken on the loop (pure, quick), the write runs on the one database thread (writes
        keep their order), and the state advances on the loop once it committed: durable
        on return, as with :meth:`submit`. Callers submit one evaluation after another
        (the next decision needs this one's state). Cancelled while the write runs, the
        write still finishes but memory does not advance: a retry decides the same
        notifications with the same keys, which the outbox drops as repeats.
        """
        pending = self._decide(ctx, signals)
        if not (pending.for_outbox or pending.changed):
            # Nothing to write (most evaluations): no trip to the database thread, whose
            # hand-over cost about as much as the decision, once per evaluation.
            return self._finish(pending, [True] * len(pending.items))
        inserted = await self._in_database(self._write, pending)
        return self._finish(pending, inserted)

    def _decide(self, ctx: EvaluationContext, signals: Sequence[Signal]) -> _Pending:
        """The pure part of :meth:`submit`: the decision, its notifications and receivers."""
        self._running()
        silences = self._silences
        assert silences is not None
        now = ctx.evaluated_at
        # Silences are set on the wall clock; evaluations run on event time (see decide).
        wall = self._clock.time()
        active_silences = silences.active(wall)
        decision = decide(
            self._states.get(ctx.model),
            signals,
            ctx,
            now,
            rules=self._config.rules,
            silences=active_silences,
            group_by=self._config.group_by,
            silenced_at=wall,
            wall=wall,
            pacing=self._pacing,
        )
        state = decision.state
        pending = _Pending(ctx=ctx, wall=wall)
        self._route(pending, decision.actions)

        policy = self._config.retrain_policy
        if policy is not None:
            # Stepped with this evaluation: its firing signals and open incidents decide.
            verdict = decide_retrain(
                policy, state.last_retrain_at, signals, ctx, now, active_silences, wall, state
            )
            if verdict.trigger:
                assert verdict.incident_started_at is not None
                notification = self._retrain_notification(
                    ctx, verdict.reason, verdict.evidence, verdict.incident_started_at
                )
                pending.items.append((policy.receiver, notification))
                pending.produced.append(notification)
                state = record_retrain(state, now, wall)
                pending.retrain_triggered = True
            elif verdict.suppressed:
                pending.counts.append((policy.receiver, "suppressed"))
        pending.state = state

        if self._persist_state:
            text = json.dumps(state.to_json(), default=_json_default)
            if self._saved.get(ctx.model) != text:
                pending.changed[ctx.model] = text
        if self._spool is None:
            pending.for_outbox = pending.items
        return pending

    def _route(
        self, pending: _Pending, actions: Sequence[AlertAction], reason: str | None = None
    ) -> None:
        """Each action's receivers and notification (with ``reason``, if any), in ``pending``."""
        ctx = pending.ctx
        for action in actions:
            targets = route_all(self._config, ctx.model, action.route_severities)
            pending.spans.append((action, targets, len(pending.items)))
            if action.kind == "mute":
                pending.counts.extend((r, "silenced") for r in targets)
                continue
            notification = build_notification(
                action, ctx, links_for(self._config, ctx, action.fingerprint, action.signals)
            )
            if reason is not None:
                notification = replace(notification, reason=reason)
            if targets:
                pending.items.extend((r, notification) for r in targets)
                pending.produced.append(notification)

    async def retire_async(
        self, model: str, document: Mapping[str, Any], reason: str
    ) -> tuple[list[Notification], dict[str, Any]]:
        """Resolve, at their receivers, the open incidents in ``model``'s saved alert state
        (``document``: a :meth:`get_state` document, as a model's checkpoint holds it), for
        a model no longer monitored; returns the notifications enqueued and the document
        after (no incident open), for the caller to store in their place.

        Only an evaluation resolves an incident, and a model taken out of the config is
        never evaluated again: its open incidents stayed open at PagerDuty and the rest for
        good. Each gets the resolve it would have got (:func:`~monitor.alerting.policy.retire`),
        carrying ``reason``; decided again after a restart, it has the same key, and the
        outbox drops it as a repeat (for ``delivery.retention_seconds``). The model's state
        is then forgotten here (not its spooled notifications, unlike :meth:`release`).
        A document that is not a readable alert state raises :class:`StateError`.
        """
        if not isinstance(document, Mapping):
            raise StateError(f"alert state document is a {type(document).__name__}")
        models = document.get("models") if document.get("version") == STATE_VERSION else None
        if not isinstance(models, Mapping):
            raise StateError(f"alert state document version {document.get('version')!r}")
        saved = models.get(model)
        if saved is None:
            return [], dict(document)
        state = ModelAlertState.from_json(saved)
        wall = self._clock.time()
        decision = retire(state, wall)
        after = {"version": STATE_VERSION, "models": {model: decision.state.to_json()}}
        if not decision.actions:
            return [], after
        self._running()  # only now: a state with nothing open needs no running service
        # The event time of the incidents' last notification: the evaluation the resolve
        # follows (a notification's ``evaluated_at``); nothing was evaluated since.
        last = max(
            t
            for g in state.groups.values()
            for t in (g.last_notified_at, g.incident_started_at)
            if t is not None
        )
        ctx = EvaluationContext(model, None, last, last, last, 0, 0)
        pending = _Pending(ctx=ctx, wall=wall, state=decision.state)
        self._route(pending, decision.actions, reason)
        if self._spool is None:
            pending.for_outbox = pending.items
        if self._persist_state:
            text = json.dumps(decision.state.to_json(), default=_json_default)
            pending.changed[model] = text
        inserted = await self._in_database(self._write, pending)
        produced = self._finish(pending, inserted)
        self._forget(model)  # its spooled resolves stay: they go out with the next checkpoint
        return produced, after

    def _write(self, pending: _Pending) -> list[bool]:
        """The I/O of :meth:`submit`: one outbox transaction (notifications and state);
        per notification whether it was new. Nothing to write: no transaction."""
        outbox = self._outbox
        assert outbox is not None  # _decide checked that the service runs
        if not (pending.for_outbox or pending.changed):
            return [True] * len(pending.items)
        inserted = outbox.commit_evaluation(
            pending.for_outbox,
            now=pending.wall,
            deadline_at=pending.wall + self._config.delivery.deadline_seconds,
            states=pending.changed,
        )
        return inserted if pending.for_outbox else [True] * len(pending.items)

    def _finish(self, pending: _Pending, inserted: list[bool]) -> list[Notification]:
        """After the write committed: advance memory, count, log, wake the dispatcher."""
        ctx, state = pending.ctx, pending.state
        assert state is not None
        if self._spool is not None:
            self._spool.extend((ctx.model, r, n) for r, n in pending.items)
        self._states[ctx.model] = state
        self._saved.update(pending.changed)
        for receiver, outcome in pending.counts:
            self._metrics.count(receiver, outcome)
        self._count_folded()
        for action, targets, start in pending.spans:
            # A replayed evaluation (after a restart) re-decides what the outbox already
            # holds: log only what is new, so each incident action is told once.
            if action.kind == "mute" or not targets or any(inserted[start : start + len(targets)]):
                _log_action(action, targets)
        policy = self._config.retrain_policy
        if pending.retrain_triggered and policy is not None and inserted[-1]:
            log.info(
                "retraining triggered for model %s via %s", printable(ctx.model), policy.receiver
            )
        self._export_firing(state)
        if pending.for_outbox and self._dispatcher is not None:
            self._dispatcher.wake()
        return pending.produced

    async def _in_database(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on the database thread (one thread: writes keep their order)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._database, partial(fn, *args))

    # -- the spool (Kafka state backend) -------------------------------------------------

    def spooled(self) -> list[SpooledAlert]:
        """The notifications :meth:`submit` queued since the last :meth:`drop_spooled`."""
        return list(self._spool or ())

    def has_spooled(self) -> bool:
        return bool(self._spool)

    def drop_spooled(self, n: int) -> None:
        """Forget the first ``n`` spooled notifications: they are durably written."""
        if self._spool is not None:
            del self._spool[:n]

    def hand_off(self, items: Sequence[tuple[str, Notification]]) -> list[bool]:
        """Durably enqueue notifications read back from the alerts topic for delivery.

        The outbox's unique (receiver, idempotency key) drops a record handed off
        before (a redelivered batch, a replay). A receiver this instance does not
        configure is skipped (False). Returns, per item, whether it was new.
        """
        outbox, _ = self._running()
        known = [(r, n) for r, n in items if r in self._config.receivers]
        wall = self._clock.time()
        inserted = outbox.commit_evaluation(
            known, now=wall, deadline_at=wall + self._config.delivery.deadline_seconds
        )
        return self._handed_off(items, inserted)

    async def hand_off_async(self, items: Sequence[tuple[str, Notification]]) -> list[bool]:
        """:meth:`hand_off`, with the outbox write on the database thread (as
        :meth:`submit_async`): a write waiting for another process's lock on the file does
        not stall the event loop, where the alerts-topic consumer and the main one run."""
        outbox, _ = self._running()
        known = [(r, n) for r, n in items if r in self._config.receivers]
        wall = self._clock.time()
        inserted = await self._in_database(
            partial(
                outbox.commit_evaluation,
                known,
                now=wall,
                deadline_at=wall + self._config.delivery.deadline_seconds,
            )
        )
        return self._handed_off(items, inserted)

    def _handed_off(
        self, items: Sequence[tuple[str, Notification]], inserted: list[bool]
    ) -> list[bool]:
        self._count_folded()
        if any(inserted) and self._dispatcher is not None:
            self._dispatcher.wake()
        new = iter(inserted)
        return [next(new) if r in self._config.receivers else False for r, _ in items]

    def _count_folded(self) -> None:
        """Count (and log, once per enqueue) what the receivers' page caps folded."""
        if self._outbox is None:
            return
        new_incidents: dict[str, int] = {}
        for receiver, reason in self._outbox.take_folded():
            self._metrics.suppress(receiver, reason)
            if reason == "page_cap":
                new_incidents[receiver] = new_incidents.get(receiver, 0) + 1
        for receiver, n in new_incidents.items():
            log.info(
                "page cap of %s reached: %d new incident(s) folded into its next summary "
                "(recorded in the outbox, not paged on their own)",
                receiver,
                n,
            )

    def withdraw(self, keys: Iterable[tuple[str, str]]) -> int:
        """Take back the pending deliveries of these (receiver, idempotency key) pairs that
        are not being sent right now (:meth:`Outbox.withdraw`); returns how many."""
        outbox, _ = self._running()
        busy = self._dispatcher.in_flight() if self._dispatcher is not None else set()
        return outbox.withdraw(keys, exclude=busy)

    async def withdraw_async(self, keys: Iterable[tuple[str, str]]) -> int:
        """:meth:`withdraw`, with the write on the database thread (as
        :meth:`hand_off_async`). The rows being sent are taken on the loop; a row claimed
        on the database thread meanwhile is this outbox's claim, which withdraw leaves."""
        outbox, _ = self._running()
        busy = self._dispatcher.in_flight() if self._dispatcher is not None else set()
        return await self._in_database(partial(outbox.withdraw, set(keys), exclude=busy))

    async def pending_async(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (receiver, idempotency key) pairs are still pending
        (:meth:`Outbox.pending`), read on the database thread: on the loop, the read
        waited behind that thread's write to the same connection, itself waiting out
        another process's lock on the file."""
        outbox, _ = self._running()
        return await self._in_database(outbox.pending, set(keys))

    async def finished_heads_async(
        self, queues: Mapping[_K, Sequence[Collection[tuple[str, str]]]]
    ) -> dict[_K, int]:
        """Per queue of deliveries (each entry: the (receiver, idempotency key) pairs of one
        record), how many leading entries have none pending: one trip to the database
        thread, looking one entry at a time and no further than the first pending one."""
        outbox, _ = self._running()

        def heads() -> dict[_K, int]:
            out: dict[_K, int] = {}
            for name, entries in queues.items():
                n = 0
                for keys in entries:
                    if keys and outbox.pending(keys):
                        break
                    n += 1
                out[name] = n
            return out

        return await self._in_database(heads)

    async def outbox_rows_async(self) -> list[dict[str, object]]:
        """:meth:`Outbox.rows` on the database thread (the web UI's deliveries): a large
        outbox, or a read waiting behind a write held up by another process's lock, stalled
        the event loop for as long."""
        outbox, _ = self._running()
        return await self._in_database(outbox.rows)

    def on_delivery_finished(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a delivery attempt ends (:meth:`Dispatcher.on_finished`)."""
        if self._dispatcher is not None:
            self._dispatcher.on_finished(callback)

    def _retrain_notification(
        self,
        ctx: EvaluationContext,
        reason: str,
        signals: Iterable[Signal],
        incident_started_at: float,
    ) -> Notification:
        """The trigger of one incident: its key names the incident, not the evaluation, so a
        replay or a restart that decides it again enqueues the same key (dropped as a repeat)."""
        labels = {"model": ctx.model, "action": "retrain"}
        fp = fingerprint(labels)
        sigs = tuple(signals)
        return Notification(
            idempotency_key=idempotency_key(fp, incident_started_at, 0, "retrain"),
            fingerprint=fp,
            action="retrain",
            status="firing",
            model=ctx.model,
            model_version=bounded_version(ctx.model_version),
            group=labels,
            severity=max_severity([s.severity for s in sigs]),
            started_at=incident_started_at,
            evaluated_at=ctx.evaluated_at,
            window_start=ctx.window_start,
            window_end=ctx.window_end,
            window_events=ctx.window_events,
            signals=tuple(evidence(s) for s in sigs),
            links=links_for(self._config, ctx, fp, sigs),
            reason=reason,
        )

    # -- silences ------------------------------------------------------------------------

    def add_silence(
        self,
        *,
        ends_at: float,
        starts_at: float | None = None,
        model: str = "*",
        subject: str = "*",
        kind: str | None = None,
        segment: str = "*",
        comment: str = "",
        created_by: str = "",
    ) -> Silence:
        """Add a runtime silence (persisted); ``starts_at`` defaults to now.

        The write runs on the calling thread: from the event loop, use
        :meth:`add_silence_async`."""
        _, silences = self._running()
        start = self._clock.time() if starts_at is None else starts_at
        return silences.add(
            starts_at=start,
            ends_at=ends_at,
            model=model,
            subject=subject,
            kind=kind,
            segment=segment,
            comment=comment,
            created_by=created_by,
        )

    async def add_silence_async(
        self,
        *,
        ends_at: float,
        starts_at: float | None = None,
        model: str = "*",
        subject: str = "*",
        kind: str | None = None,
        segment: str = "*",
        comment: str = "",
        created_by: str = "",
    ) -> Silence:
        """:meth:`add_silence`, with the write on the database thread: on the loop it waited
        for another process's lock on the file (the busy timeout), and the loop stood still
        (Kafka heartbeats and fetches, HTTP, deliveries). In force once written."""
        _, silences = self._running()
        start = self._clock.time() if starts_at is None else starts_at
        silence = silences.new(
            starts_at=start,
            ends_at=ends_at,
            model=model,
            subject=subject,
            kind=kind,
            segment=segment,
            comment=comment,
            created_by=created_by,
        )
        await self._in_database(silences.persist, silence)
        silences.remember(silence)
        return silence

    def list_silences(self, *, include_expired: bool = False) -> list[Silence]:
        """Config and runtime silences; expired ones only on request (from memory)."""
        _, silences = self._running()
        now = self._clock.time()
        return [s for s in silences.all() if include_expired or s.ends_at > now]

    def expire_silence(self, silence_id: str) -> Silence:
        """End a runtime silence now (``UnknownSilence``, ``ReadOnlySilence`` from config).

        The write runs on the calling thread: from the event loop, use
        :meth:`expire_silence_async`."""
        _, silences = self._running()
        return silences.expire(silence_id, self._clock.time())

    async def expire_silence_async(self, silence_id: str) -> Silence:
        """:meth:`expire_silence`, with the write on the database thread (as
        :meth:`add_silence_async`)."""
        _, silences = self._running()
        silence = silences.expired(silence_id, self._clock.time())
        await self._in_database(silences.persist, silence)
        silences.remember(silence)
        return silence

    # -- state hand-over -----------------------------------------------------------------

    def get_state(self, models: Iterable[str] | None = None) -> dict[str, Any]:
        """Alert state as a JSON-serialisable document, for all models or the given ones."""
        wanted = set(models) if models is not None else None
        return {
            "version": STATE_VERSION,
            "models": {
                m: s.to_json() for m, s in self._states.items() if wanted is None or m in wanted
            },
        }

    def set_state(self, document: dict[str, Any]) -> None:
        """Adopt the models in ``document`` (from :meth:`get_state` of this or another instance).

        Models absent from the document keep their state. Before :meth:`start`
        the state is applied at start (and wins over the local database).

        With ``persist_state`` the state is also written to the outbox, on the calling
        thread (tests, tools); without it (the monitor service, which calls this on the
        event loop when it restores a model) nothing is written, so nothing waits for a
        lock on the file.
        """
        if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
            raise StateError(f"alert state document version {document.get('version')!r}")
        imported = {m: ModelAlertState.from_json(d) for m, d in document["models"].items()}
        if self._lifecycle == "new":
            self._pending_import.update(imported)
            return
        outbox, _ = self._running()
        if self._persist_state:
            texts = {m: json.dumps(s.to_json(), default=_json_default) for m, s in imported.items()}
            outbox.commit_evaluation([], now=self._clock.time(), deadline_at=0.0, states=texts)
            self._saved.update(texts)
        self._states.update(imported)
        for state in imported.values():
            self._export_firing(state)

    def release(self, models: Iterable[str]) -> None:
        """Forget the alert state of models this instance no longer owns (after a
        rebalance their new owner restores it with their checkpoint), and stop
        exporting their firing gauges, so that one instance shows each model."""
        models = set(models)
        if self._spool:  # not written: their new owner replays the evaluations that made them
            self._spool[:] = [a for a in self._spool if a[0] not in models]
        for model in models:
            self._forget(model)

    def _forget(self, model: str) -> None:
        """Drop ``model``'s state from memory and its firing gauges from the metrics."""
        self._saved.pop(model, None)
        if self._states.pop(model, None) is None:
            return
        for severity in ("warning", "critical"):
            with contextlib.suppress(KeyError):
                self._metrics.alerts_firing.remove(model, severity)

    # -- diagnostics ---------------------------------------------------------------------

    @property
    def outbox(self) -> Outbox:
        """The outbox (read-only use: depth, rows), e.g. for a health endpoint or tests."""
        outbox, _ = self._running()
        return outbox

    @property
    def receivers(self) -> Collection[str]:
        """The names of the configured receivers."""
        return self._config.receivers.keys()

    @property
    def metrics(self) -> AlertMetrics:
        return self._metrics

    def now(self) -> float:
        """The injected clock's wall time (the HTTP API uses it for default silence starts)."""
        return self._clock.time()

    def _export_firing(self, state: ModelAlertState) -> None:
        for severity, n in state.firing_by_severity().items():
            self._metrics.alerts_firing.labels(model=state.model, severity=severity).set(n)

    def _running(self) -> tuple[Outbox, SilenceStore]:
        if self._lifecycle != "running" or self._outbox is None or self._silences is None:
            raise ServiceStateError(f"AlertService is {self._lifecycle}, not running")
        return self._outbox, self._silences


def _json_default(obj: object) -> object:
    if isinstance(obj, frozenset | set | tuple):
        return sorted(obj) if isinstance(obj, frozenset | set) else list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


__all__ = ["AlertService", "build_notification", "evidence", "links_for"]
