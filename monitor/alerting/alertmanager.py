"""Prometheus Alertmanager as a receiver: our incidents as alerts on its API v2.

Many teams route every page through Alertmanager (its routing tree, inhibition,
silences and receivers). This receiver posts each notification as one alert to
``POST {url}/api/v2/alerts``::

    [{"labels": {"alertname": "ModelDrift", "model": "churn", "severity": "critical",
                 "kind": "drift", "feature": "income"},
      "annotations": {"summary": "[FIRING:critical] churn: 1 signal (drift income)",
                      "description": "drift income: psi 0.31 (threshold 0.2), critical ...",
                      "dashboard": "https://grafana.example/...", "runbook_url": "..."},
      "startsAt": "2024-05-01T12:00:00.000Z", "endsAt": "2024-05-01T12:04:00.000Z",
      "generatorURL": "https://grafana.example/..."}]

Labels identify the alert in Alertmanager, so they are bounded: ``alertname`` by
kind (``ModelDrift``, ``ModelPerformance``, ``DataQuality``; ``ModelMonitor`` when
one notification mixes kinds), ``model``, ``severity``, ``kind`` (the kinds, joined
by ``,``) and, when every signal of the notification is about one subject,
``feature`` (drift, data quality) or ``metric`` (performance), and when every signal
is about one segment of the traffic, ``segment`` (``region=north``, bounded by the
segments' ``top_k``). Annotations carry the
rest: summary, description, ``dashboard`` and ``runbook_url`` when the notification
has those links.

**Re-posting.** Alertmanager expects its clients to re-send a firing alert until it
ends, and resolves an alert whose ``endsAt`` has passed. As Prometheus does, a
firing alert is posted with ``endsAt = now + 4 * repost_interval_seconds`` and
re-posted every ``repost_interval_seconds`` while it fires; the resolve posts
``endsAt = now``. If the monitor stops, its alerts resolve in Alertmanager after
four intervals (the ``MonitorDown`` rule covers that case). Re-posting an alert stops
once no notification has confirmed it for ``repost_for_seconds`` (default 5 h, above
the default 4 h ``repeat_interval_seconds`` at which the engine repeats a firing
incident): when a model moves to another instance of the group, the instance that lost
it does not keep its alert alive after the new owner resolved it.

**Delivery.** Fire, update, repeat and resolve notifications come from the outbox
like every other receiver's, with its retries and idempotency (the alert's identity
in Alertmanager is its label set, so a duplicate post is harmless). Re-posts are a
keep-alive of what was delivered, not new notifications: they do not go through the
outbox, but their source does: on start the receiver reads, for each alert group,
the newest outbox row of this receiver and keeps re-posting the groups whose last
notification was a firing one, so a restart does not resolve an incident that still
fires. When an update or the resolve changes an alert's labels (warning to critical, a
second kind), the old label set is ended in the same request, so Alertmanager does not
keep both; after a restart, the old label set is that of the restored firing row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from typing import TYPE_CHECKING, Any

import httpx

from monitor.alerting.config import AlertmanagerReceiverConfig
from monitor.alerting.http import raise_for_status, send_request
from monitor.alerting.notification import Notification, iso
from monitor.alerting.receiver import HttpReceiver, encode_json
from monitor.clock import Clock
from monitor.errors import DeliveryError, StateError

if TYPE_CHECKING:
    from monitor.alerting.outbox import Outbox

log = logging.getLogger(__name__)

#: ``alertname`` per signal kind; a notification with several kinds gets ``MIXED``.
ALERTNAMES = {
    "drift": "ModelDrift",
    "performance": "ModelPerformance",
    "data_quality": "DataQuality",
    "multivariate": "ModelMultivariateDrift",
}
MIXED = "ModelMonitor"
#: Prometheus sets ``endsAt`` four resend intervals ahead; so do we.
ENDS_AT_INTERVALS = 4
#: Longest label or annotation value sent (Alertmanager has no limit; pages should).
MAX_VALUE_CHARS = 1024
API_PATH = "/api/v2/alerts"


def _clean(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    """Valid UTF-8 (lone surrogates replaced), bounded: names can come from the wire."""
    return value.encode("utf-8", "replace").decode("utf-8")[:limit]


def alert_labels(n: Notification) -> dict[str, str]:
    """The label set that identifies this notification's alert in Alertmanager."""
    kinds = sorted({s.kind for s in n.signals}) or sorted({n.group.get("kind", "drift")})
    labels = {
        "alertname": ALERTNAMES.get(kinds[0], MIXED) if len(kinds) == 1 else MIXED,
        "model": _clean(n.model, 256),
        "severity": n.severity,
        "kind": ",".join(kinds),
    }
    subjects = {s.subject for s in n.signals}
    if len(subjects) == 1:
        (subject,) = subjects
        if kinds == ["performance"]:
            labels["metric"] = _clean(subject, 256)
        else:  # drift: the feature; data quality: "missing_rate:income" -> income
            labels["feature"] = _clean(subject.rpartition(":")[2] or subject, 256)
    segments = {s.segment for s in n.signals}
    if len(segments) == 1 and None not in segments:
        labels["segment"] = _clean(segments.pop() or "", 256)
    return labels


def _number(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.4g}"


def alert_annotations(n: Notification) -> dict[str, str]:
    """Summary, description and the links the notification carries."""
    lines = []
    for s in n.signals[:20]:
        test = f" p={_number(s.p_value)}" if s.p_value is not None else ""
        lines.append(
            f"{s.name()}: {s.detector or 'value'} {_number(s.statistic)}{test} "
            f"(threshold {_number(s.threshold)}), {s.severity}"
        )
    if len(n.signals) > 20:
        lines.append(f"... and {len(n.signals) - 20} more")
    lines.append(
        f"window: {n.window_events} events, {iso(n.window_start)} to {iso(n.window_end)}"
        + (f"; model version {n.model_version}" if n.model_version else "")
    )
    out = {"summary": _clean(n.summary()), "description": _clean("\n".join(lines), 4096)}
    runbook = n.links.get("runbook_url") or n.links.get("runbook")
    if runbook:
        out["runbook_url"] = _clean(runbook)
    if n.links.get("dashboard"):
        out["dashboard"] = _clean(n.links["dashboard"])
    return out


def build_alert(n: Notification, now: float, repost_interval: float) -> dict[str, Any]:
    """One alert of the API v2 body; ``endsAt`` ahead while firing, ``now`` when resolved."""
    alert: dict[str, Any] = {
        "labels": alert_labels(n),
        "annotations": alert_annotations(n),
        # event time may be ahead of the wall clock (producer skew): Alertmanager refuses
        # an alert that ends before it starts
        "startsAt": iso(min(n.started_at, now)),
        "endsAt": iso(now if n.status == "resolved" else now + ENDS_AT_INTERVALS * repost_interval),
    }
    dashboard = n.links.get("dashboard", "")
    if dashboard.startswith(("http://", "https://")):
        alert["generatorURL"] = _clean(dashboard)
    return alert


class AlertmanagerReceiver(HttpReceiver):
    """Posts incidents to Alertmanager and keeps the firing ones alive until they resolve."""

    _config: AlertmanagerReceiverConfig

    def __init__(
        self,
        name: str,
        config: AlertmanagerReceiverConfig,
        client: httpx.AsyncClient,
        clock: Clock,
        outbox: Outbox | None = None,
    ) -> None:
        """Built by the alert service once its loop runs; ``outbox`` restores what fires."""
        super().__init__(name, config, client, clock)
        self._url = config.url.get_secret_value().rstrip("/") + API_PATH
        self._headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        # fingerprint -> (last firing notification, wall time it was sent or enqueued)
        self._firing: dict[str, tuple[Notification, float]] = {}
        self._posted: dict[str, dict[str, str]] = {}  # fingerprint -> label set last posted
        self._lock = asyncio.Lock()  # one request at a time: a re-post never overtakes a resolve
        self._healthy = True
        if outbox is not None:
            self._firing.update(firing_in_outbox(outbox, name))
            # What the previous run posted last for each: a resolve under other labels (a
            # resolve lists every notified signal at the incident's top severity) must end
            # that alert too, or it stays firing in Alertmanager after the incident resolved.
            self._posted.update({fp: alert_labels(n) for fp, (n, _) in self._firing.items()})
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
            self._repost_loop(), name=f"alertmanager-repost-{name}"
        )

    @property
    def firing(self) -> list[str]:
        """Fingerprints of the alerts being kept alive (for tests and diagnostics)."""
        return sorted(self._firing)

    async def send(self, notification: Notification) -> None:
        async with self._lock:
            now = self._clock.time()
            fp = notification.fingerprint
            alert = build_alert(notification, now, self._config.repost_interval_seconds)
            body = [alert]
            previous = self._posted.get(fp)
            if previous is not None and previous != alert["labels"]:
                # the alert's identity changed: end the old one, or Alertmanager keeps both
                body.append({"labels": previous, "startsAt": alert["startsAt"], "endsAt": iso(now)})
            await self._post(body)
            if notification.status == "resolved":
                self._firing.pop(fp, None)
                self._posted.pop(fp, None)
            else:
                self._firing[fp] = (notification, now)
                self._posted[fp] = alert["labels"]

    async def aclose(self) -> None:
        """Stop re-posting (the loop also ends by itself once the shared client is closed)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _post(self, body: list[dict[str, Any]]) -> None:
        # Both send() and the re-post loop come here, not through HttpReceiver.send: the
        # error is redacted here (an Alertmanager behind a proxy may echo its credentials;
        # the re-post loop logs the error itself) and not chained to httpx's (the URL).
        try:
            response = await send_request(
                self._client,
                "POST",
                self._url,
                content=encode_json(body),
                headers={**self._headers, "Content-Type": "application/json"},
                timeout=self._config.timeout_seconds,
                what=f"alertmanager {self.name}",
            )
            raise_for_status(response, self._clock.time(), what=f"alertmanager {self.name}")
        except DeliveryError as exc:
            raise self._redacted(exc) from None

    async def repost(self) -> int:
        """Re-send every firing alert with a fresh ``endsAt``; returns how many were sent."""
        async with self._lock:
            now = self._clock.time()
            stale = now - self._config.repost_for_seconds
            for fp in [fp for fp, (_, at) in self._firing.items() if at < stale]:
                del self._firing[fp]  # unconfirmed for too long: let it end in Alertmanager
                self._posted.pop(fp, None)
            if not self._firing:
                return 0
            interval = self._config.repost_interval_seconds
            body = [build_alert(n, now, interval) for n, _ in self._firing.values()]
            await self._post(body)
            for fp, alert in zip(self._firing, body, strict=True):
                self._posted[fp] = alert["labels"]
            return len(body)

    async def _repost_loop(self) -> None:
        interval = self._config.repost_interval_seconds
        while not self._client.is_closed:
            # short sleeps so that the loop notices the client closing at shutdown
            deadline = asyncio.get_running_loop().time() + interval
            while not self._client.is_closed:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                await asyncio.sleep(min(left, 1.0))
            if self._client.is_closed:
                return
            try:
                await self.repost()
            except DeliveryError as exc:
                # the next interval retries; logged once per failure streak, not per attempt
                if self._healthy:
                    log.warning("alertmanager %s: re-post failed: %s", self.name, exc)
                self._healthy = False
            else:
                if not self._healthy:
                    log.info("alertmanager %s: re-posting again", self.name)
                self._healthy = True


def firing_in_outbox(outbox: Outbox, receiver: str) -> dict[str, tuple[Notification, float]]:
    """Alert groups whose newest notification to ``receiver`` is a firing one, with its
    enqueue time (wall clock).

    Reads the outbox table (same package; the receiver is the outbox's reader here),
    whatever the row's delivery state: a pending firing row will be delivered, and a
    dead one still describes an incident the engine considers firing.
    """
    try:
        rows = outbox.connection.execute(
            "SELECT payload, enqueued_at FROM outbox WHERE id IN "
            "(SELECT MAX(id) FROM outbox WHERE receiver = ? GROUP BY fingerprint)",
            (receiver,),
        ).fetchall()
    except sqlite3.Error as exc:
        raise StateError(f"outbox read failed: {exc}") from exc
    out: dict[str, tuple[Notification, float]] = {}
    for row in rows:
        try:
            n = Notification.from_record(json.loads(row["payload"]))
        except (StateError, ValueError):
            continue  # a record of another format: its incident resolves in Alertmanager
        if n.status == "firing" and n.action != "retrain":
            out[n.fingerprint] = (n, float(row["enqueued_at"]))
    return out


__all__ = [
    "ALERTNAMES",
    "AlertmanagerReceiver",
    "alert_annotations",
    "alert_labels",
    "build_alert",
    "firing_in_outbox",
]
