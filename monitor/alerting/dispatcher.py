"""The delivery loop: drains the outbox into receivers, with retries that survive restarts.

* Wakes at once when something is enqueued (:meth:`Dispatcher.wake`), else
  sleeps until the next row is due (at most ``poll_interval`` seconds).
* Retryable errors back off exponentially with full jitter (seeded RNG),
  never sooner than the receiver's ``Retry-After``, until the row's deadline
  or ``max_attempts``; permanent errors are dead-lettered at once.
* At most ``concurrency_per_receiver`` requests in flight per receiver, so one
  slow receiver cannot starve the others.
* What is logged (never a receiver's URL or secret: receivers are named, and
  every error text is redacted with the configured secrets first):

  - INFO: each delivered notification (receiver, action, model, attempt);
  - WARNING: a receiver starting to fail (HTTP status or error class, attempt),
    then at most one reminder per ``log_interval`` while it keeps failing; a
    notification given up (permanent 4xx, deadline, attempts exhausted);
  - INFO: the receiver recovering (after how many failures);
  - DEBUG: every other failed attempt. Each is counted instead, in
    ``monitor_notification_failures_total{receiver, reason}`` and
    ``monitor_notifications_total{outcome="retried"}``.

  A failing outbox database is logged the same way: once when it starts
  failing (with the traceback), then counted (``monitor_outbox_errors_total``)
  and reminded of at most once per ``log_interval``, and its recovery.
* An attempt whose outcome the outbox cannot store (disk full, read-only file)
  keeps its row out of delivery until the outcome is stored (retried each turn
  of the loop): the row stayed pending and due, so one notification was sent
  again at once, hundreds of times a second, to a receiver that had it.
* Several instances may share one outbox file (``state.backend: sqlite`` on
  one host): each row is claimed in the outbox before it is sent (a lease of
  ``delivery.claim_lease_seconds``, 30 s by default, renewed every third of it while
  the request runs, released with the outcome), so exactly one instance sends it.
  Before claims, each instance picked the same due rows and both POSTed them: every
  alert twice.
  An instance that dies mid-request leaves its claim to run out; then another
  sends the row (at-least-once).
* A stale ``update`` or ``repeat`` (a later update or repeat of its incident waits behind
  it for the same receiver, as after an outage) is not sent but superseded by the outbox when
  its turn comes, and counted (``monitor_notifications_total{outcome="superseded"}``).
* The outbox is read and written on the alert service's database thread (``database``),
  never on the event loop: a write waits for another process's lock on the file (SQLite's
  busy timeout, 5 s), and on the loop that wait stalled Kafka heartbeats and fetches, the
  HTTP server and every other delivery. The loop only awaits the result.
* ``stop(grace)`` keeps delivering what is due for up to ``grace`` seconds,
  then cancels in-flight requests; their rows stay pending and are sent by
  the next run (at-least-once: the receiver may see the same id twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from monitor.alerting.alert_metrics import AlertMetrics
from monitor.alerting.backoff import Backoff
from monitor.alerting.config import DeliveryConfig
from monitor.alerting.notification import printable
from monitor.alerting.outbox import Outbox, OutboxRow, UnwritableOutboxError
from monitor.alerting.page_cap import PageCap
from monitor.alerting.receiver import Receiver, redact, secret_forms
from monitor.clock import Clock
from monitor.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    ServiceStateError,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(slots=True)
class _Health:
    """A receiver's (or the outbox's) failure episode, for logging state changes only."""

    failing: bool = False
    since: float = 0.0  # monotonic time of the first failure of the episode
    failures: int = 0  # failed attempts in the episode
    logged_at: float = 0.0  # monotonic time of the last WARNING about it


def describe(exc: DeliveryError) -> str:
    """``HTTP 503`` when the receiver answered, else the error class (``timeout``, ...)."""
    return f"HTTP {exc.status}" if exc.status is not None else exc.reason


class Dispatcher:
    """Background task delivering outbox rows to receivers."""

    def __init__(
        self,
        outbox: Outbox,
        receivers: dict[str, Receiver],
        *,
        delivery: DeliveryConfig,
        metrics: AlertMetrics,
        clock: Clock,
        rng: random.Random | None = None,
        poll_interval: float = 1.0,
        log_interval: float = 300.0,
        secrets: Iterable[str] = (),
        database: Executor | None = None,
        page_caps: Mapping[str, PageCap] | None = None,
        summary_interval: float = 0.0,
    ) -> None:
        """``secrets``: every configured secret value; redacted from whatever is logged or
        stored, as a second line of defence behind each receiver's own redaction.
        The claim lease is ``delivery.claim_lease_seconds`` (timed by ``clock.time()``).
        ``database``: the executor (one thread) the outbox is used on; None: the loop's
        own thread (a dispatcher built alone, in tests). ``page_caps``: the receivers whose
        folded incidents this dispatcher summarises (:meth:`Outbox.summarise`), at most once
        per ``summary_interval`` (``group_interval_seconds``)."""
        self._caps = dict(page_caps or {})
        self._summary_interval = summary_interval
        self._outbox = outbox
        self._database = database
        self._receivers = receivers
        self._delivery = delivery
        self._metrics = metrics
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._backoff = Backoff(
            delivery.initial_backoff_seconds, delivery.max_backoff_seconds, delivery.jitter
        )
        self._poll_interval = poll_interval
        self._lease = delivery.claim_lease_seconds
        self._renewed_at: float | None = None
        self._log_interval = log_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        # Outcomes of finished attempts the outbox could not store yet, by row id: those
        # rows are not delivered again until stored (see the module docstring).
        self._unrecorded: dict[int, Callable[[], None]] = {}
        self._finished_listeners: list[Callable[[], None]] = []
        self._inflight_by_receiver: dict[str, int] = dict.fromkeys(receivers, 0)
        self._draining_until: float | None = None
        self._health: dict[str, _Health] = {name: _Health() for name in receivers}
        self._outbox_health = _Health()
        self._outbox_faults = 0  # outbox failures so far, to tell a clean turn of the loop
        self._unclaimed: set[int] = set()  # rows sent although the outbox refused a claim
        self._secret_forms = secret_forms(secrets)
        self._state = "new"

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the loop; pending rows from a previous run are picked up immediately."""
        if self._state != "new":
            raise ServiceStateError(f"dispatcher cannot start from state {self._state!r}")
        self._state = "running"
        self._task = asyncio.create_task(self._run(), name="alert-dispatcher")

    def wake(self) -> None:
        """Something was enqueued (or a slot freed): look at the outbox now."""
        self._wake.set()

    def in_flight(self) -> set[int]:
        """The ids of the outbox rows being sent right now."""
        return set(self._inflight)

    def on_finished(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a delivery attempt ends (delivered, failed or given up),
        once its outcome is in the outbox (the alerts-topic consumer commits on it)."""
        self._finished_listeners.append(callback)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Deliver what is due for up to ``grace_seconds``, then cancel the rest; idempotent."""
        if self._state in ("stopped", "new"):
            self._state = "stopped"
            return
        self._state = "stopping"
        loop = asyncio.get_running_loop()
        self._draining_until = loop.time() + max(0.0, grace_seconds)
        self.wake()
        assert self._task is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), timeout=max(0.0, grace_seconds) + 1)
        for task in [self._task, *self._inflight.values()]:
            task.cancel()
        await asyncio.gather(self._task, *self._inflight.values(), return_exceptions=True)
        self._state = "stopped"

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = self._clock.time()
            faults = self._outbox_faults
            try:
                await self._record_outcomes()
                await self._renew_claims(now)
                summary_due = await self._summarise(now)
                launched = await self._launch_due(now)
                await self._refresh_gauges(now)
                next_due = await self._db(self._outbox.next_due_at, self._busy())
                if summary_due is not None:
                    next_due = summary_due if next_due is None else min(next_due, summary_due)
            except Exception as exc:  # a broken database must not kill delivery silently
                self._outbox_failed(exc)
                launched, next_due = 0, None
            else:
                # Recovered: no failure absorbed on the way, and none of the rows sent
                # unclaimed (the outbox refused the claim) is still waiting for its outcome.
                if self._outbox_faults == faults and not self._unclaimed & self._inflight.keys():
                    self._outbox_recovered()
            if self._draining_until is not None:
                remaining = self._draining_until - loop.time()
                nothing_due = next_due is None or next_due > now
                if remaining <= 0 or (not self._inflight and not launched and nothing_due):
                    return
            timeout = self._poll_interval
            if next_due is not None:
                timeout = min(timeout, max(0.0, next_due - now))
            if self._busy():
                timeout = min(timeout, self._lease / 3)
            if self._draining_until is not None:
                timeout = min(timeout, max(0.0, self._draining_until - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.001))

    async def _db(self, fn: Callable[..., _T], *args: Any, shielded: bool = False) -> _T:
        """``fn(*args)`` on the database thread (see the module docstring). ``shielded``:
        handed over at once and run to its end even if the caller is cancelled meanwhile
        (a cancelled job that had not started yet would never run)."""
        if self._database is None:
            return fn(*args)
        job = asyncio.get_running_loop().run_in_executor(self._database, partial(fn, *args))
        return await (asyncio.shield(job) if shielded else job)

    async def _summarise(self, now: float) -> float | None:
        """Enqueue the summaries of folded incidents that are due; when the next one is."""
        due: float | None = None
        deadline = now + self._delivery.deadline_seconds
        for name in self._caps:
            at = await self._db(
                partial(
                    self._outbox.summarise,
                    name,
                    now=now,
                    interval=self._summary_interval,
                    deadline_at=deadline,
                )
            )
            if at is not None:
                due = at if due is None else min(due, at)
        return due

    async def _launch_due(self, now: float) -> int:
        launched = 0
        for name, receiver in self._receivers.items():
            free = self._delivery.concurrency_per_receiver - self._inflight_by_receiver[name]
            if free <= 0:
                continue
            rows, superseded_by, refused = await self._db(
                self._claim_due, now, free, name, self._busy()
            )
            self._report_unreadable()
            if refused is not None:
                self._outbox_failed(refused)
                self._unclaimed = {r.id for r in rows} | (self._unclaimed & self._inflight.keys())
            for superseded in superseded_by:
                self._metrics.count(superseded, "superseded")
            for row in rows:
                self._inflight_by_receiver[name] += 1
                task = asyncio.create_task(self._deliver(receiver, row))
                self._inflight[row.id] = task
                launched += 1
        if launched and self._renewed_at is None:
            self._renewed_at = now  # the claims just taken hold until now + lease
        return launched

    def _report_unreadable(self) -> None:
        """Count and say the rows :meth:`Outbox.due` marked dead because this build cannot
        read them (after a rollback, rows of a newer release: a page cap's ``summary`` in a
        release before page caps). One WARNING per receiver and turn, not one per row."""
        by_receiver: dict[str, list[str]] = {}
        for receiver, error in self._outbox.take_unreadable():
            by_receiver.setdefault(receiver, []).append(error)
        for receiver, errors in by_receiver.items():
            self._metrics.count(receiver, "dead", len(errors))
            log.warning(
                "%d alert outbox row(s) for %s cannot be read by this release (written by "
                "a newer one?) and were marked dead, not sent: %s",
                len(errors),
                receiver,
                printable(errors[0], 300),
            )

    def _claim_due(
        self, now: float, limit: int, receiver: str, busy: set[int]
    ) -> tuple[list[OutboxRow], list[str], UnwritableOutboxError | None]:
        """Claim up to ``limit`` due rows of ``receiver`` not in ``busy`` (on the database
        thread); with the receivers of the rows superseded meanwhile, and the refusal when
        the rows come unclaimed.

        If the file refuses writes (disk full), claiming is impossible: the failure is
        counted and logged like any outbox failure, and the rows nobody holds a claim on
        are sent unclaimed, as before claims existed. A page sent (perhaps by two instances
        sharing the file) beats one held back until the disk is fixed; this instance still
        sends each row once (:meth:`_busy`). Lock contention is not such a failure: the
        other instance may be claiming these very rows, so nothing is sent this turn.
        """
        try:
            rows = self._outbox.due(
                now, limit, receiver=receiver, exclude=busy, lease_seconds=self._lease
            )
            return rows, self._outbox.take_superseded(), None
        except UnwritableOutboxError as exc:
            rows = self._outbox.due(now, limit, receiver=receiver, exclude=busy)
            return rows, self._outbox.take_superseded(), exc

    async def _renew_claims(self, now: float) -> None:
        """Every third of the lease, extend the claims on the rows still in hand here (in
        flight, or with an outcome not stored yet), so no other instance takes them."""
        busy = self._busy()
        if not busy:
            self._renewed_at = None
            return
        if self._renewed_at is None:  # claimed (by _launch_due) after the previous turn
            self._renewed_at = now
        if now - self._renewed_at >= self._lease / 3:
            await self._db(partial(self._outbox.renew, busy, now=now, lease_seconds=self._lease))
            self._renewed_at = now

    def _busy(self) -> set[int]:
        """Rows not to deliver now: in flight, or with an outcome not stored yet."""
        return {*self._inflight, *self._unrecorded}

    async def _record(self, row_id: int, store: Callable[[], None]) -> None:
        """Store an attempt's outcome; if the outbox refuses, keep it to store later.

        Handed to the database thread at once and shielded: ``stop()`` cancelling this
        delivery while the store waits its turn there (behind a write that waits out
        another process's lock) withdrew the job before it ran, and the row stayed claimed
        by this stopped instance for the whole lease. The owner of the thread waits for its
        jobs before it closes the outbox."""
        try:
            await self._db(store, shielded=True)
        except Exception as exc:
            self._unrecorded[row_id] = store
            self._outbox_failed(exc)

    async def _record_outcomes(self) -> None:
        """Store the outcomes kept by :meth:`_record` (raises at the first refusal).

        Shielded as :meth:`_record` is: ``stop()`` cancelling the loop while a retried store
        waited its turn on the database thread withdrew the job, and the delivered row
        stayed pending, claimed by this stopped instance, to be sent again after the lease."""
        for row_id, store in list(self._unrecorded.items()):
            await self._db(store, shielded=True)
            del self._unrecorded[row_id]

    async def _deliver(self, receiver: Receiver, row: OutboxRow) -> None:
        name = row.receiver
        attempt = row.attempts + 1
        n = row.notification
        try:
            await receiver.send(n)
        except RetryableDeliveryError as exc:
            await self._on_retryable(row, exc)
        except PermanentDeliveryError as exc:
            text = self._redact(str(exc))
            dead_at = self._clock.time()
            # Counted and logged before the outcome is stored (on the database thread): by
            # the time the outbox shows the outcome, the metrics do.
            self._metrics.count(name, "failed")
            self._failed(name, exc, attempt, text, announce=False)
            log.warning(
                "alert delivery to %s rejected (%s, attempt %d), not retried: %s %s of model "
                "%s is dead-lettered in the outbox: %s",
                name, describe(exc), attempt, n.action, n.idempotency_key, printable(n.model), text,
            )  # fmt: skip
            await self._record(row.id, partial(self._outbox.mark_dead, row.id, dead_at, text))
        except asyncio.CancelledError:
            # stop(): the row stays pending, free for the next run (here or another instance).
            # Not awaited (this task is being cancelled): the owner of the database thread
            # waits for it before closing the outbox.
            with contextlib.suppress(Exception):
                if self._database is None:
                    self._outbox.release(row.id)
                else:
                    self._database.submit(self._outbox.release, row.id)
            raise
        except Exception as exc:  # a receiver bug: count it, keep the row, retry with backoff
            error = RetryableDeliveryError(
                f"receiver raised {type(exc).__name__}: {exc}", reason="receiver_error"
            )
            await self._on_retryable(row, error)
        else:
            now = self._clock.time()
            self._metrics.count(name, "delivered")
            self._metrics.delivery_seconds.labels(receiver=name).observe(
                max(0.0, now - row.enqueued_at)
            )
            self._recovered(name)
            log.info(
                "alert delivered to %s: %s %s of model %s (attempt %d)",
                name, n.action, n.idempotency_key, printable(n.model), attempt,
            )  # fmt: skip
            await self._record(row.id, partial(self._outbox.mark_delivered, row.id, now))
        finally:
            self._inflight.pop(row.id, None)
            self._inflight_by_receiver[name] -= 1
            self.wake()
            for callback in self._finished_listeners:
                callback()

    async def _on_retryable(self, row: OutboxRow, exc: RetryableDeliveryError) -> None:
        name = row.receiver
        now = self._clock.time()
        attempts = row.attempts + 1
        n = row.notification
        text = self._redact(str(exc))
        max_attempts = self._delivery.max_attempts
        if now >= row.deadline_at or (max_attempts is not None and attempts >= max_attempts):
            given_up = f"gave up after {attempts} attempts: {text}"
            self._metrics.count(name, "dead")
            self._failed(name, exc, attempts, text, announce=False)
            why = "deadline passed" if now >= row.deadline_at else "attempts exhausted"
            log.warning(
                "alert delivery to %s gave up after %d attempts (%s; last: %s): %s %s of "
                "model %s is dead-lettered in the outbox",
                name, attempts, why, describe(exc), n.action, n.idempotency_key, printable(n.model),
            )  # fmt: skip
            await self._record(row.id, partial(self._outbox.mark_dead, row.id, now, given_up))
            return
        delay = self._backoff.delay(attempts, self._rng)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self._delivery.max_retry_after_seconds))
        next_at = min(now + delay, row.deadline_at)
        self._metrics.count(name, "retried")
        self._failed(name, exc, attempts, text, retry_in=next_at - now)
        await self._record(
            row.id, partial(self._outbox.mark_failed, row.id, next_attempt_at=next_at, error=text)
        )

    def _redact(self, text: str) -> str:
        return redact(text, self._secret_forms)

    # -- observability -------------------------------------------------------------------

    async def _refresh_gauges(self, now: float) -> None:
        depth = await self._db(self._outbox.depth)
        for name in self._receivers:
            self._metrics.outbox_depth.labels(receiver=name).set(depth.get(name, 0))
        age = await self._db(self._outbox.oldest_undelivered_age, now)
        self._metrics.outbox_oldest_age.set(age or 0.0)

    def _failed(
        self,
        receiver: str,
        exc: DeliveryError,
        attempt: int,
        text: str,
        retry_in: float | None = None,
        announce: bool = True,
    ) -> None:
        """Count a failed attempt; WARNING when the receiver starts failing, then rarely.

        ``announce=False``: the caller logs a WARNING of its own about this attempt (a
        notification given up), so the episode starts without a second line.
        """
        self._metrics.failure(receiver, exc.reason)
        health = self._health.setdefault(receiver, _Health())
        now = self._clock.monotonic()
        retry = f"; retrying in {retry_in:.1f}s" if retry_in is not None else ""
        if not health.failing:
            health.failing, health.since, health.failures, health.logged_at = True, now, 1, now
            if not announce:
                return
            log.warning(
                "alert delivery to %s failing (%s, attempt %d)%s: %s",
                receiver, describe(exc), attempt, retry, text,
            )  # fmt: skip
            return
        health.failures += 1
        if now - health.logged_at >= self._log_interval:
            health.logged_at = now
            log.warning(
                "alert delivery to %s still failing: %d failed attempts in %.0fs "
                "(last: %s, attempt %d)%s",
                receiver, health.failures, now - health.since, describe(exc), attempt, retry,
            )  # fmt: skip
        else:
            log.debug(
                "alert delivery to %s failed (%s, attempt %d)%s",
                receiver, describe(exc), attempt, retry,
            )  # fmt: skip

    def _recovered(self, receiver: str) -> None:
        health = self._health.setdefault(receiver, _Health())
        if health.failing:
            log.info(
                "alert delivery to %s recovered after %d failed attempts in %.0fs",
                receiver, health.failures, self._clock.monotonic() - health.since,
            )  # fmt: skip
            self._health[receiver] = _Health()

    def _outbox_failed(self, exc: Exception) -> None:
        self._outbox_faults += 1
        self._metrics.outbox_errors.inc()
        health = self._outbox_health
        now = self._clock.monotonic()
        if not health.failing:
            health.failing, health.since, health.failures, health.logged_at = True, now, 1, now
            log.error(
                "alert outbox unreadable or unwritable; delivery paused, retrying", exc_info=exc
            )
            return
        health.failures += 1
        if now - health.logged_at >= self._log_interval:
            health.logged_at = now
            log.error(
                "alert outbox still failing after %.0fs (%s: %s)",
                now - health.since, type(exc).__name__, exc,
            )  # fmt: skip

    def _outbox_recovered(self) -> None:
        if self._outbox_health.failing:
            log.info(
                "alert outbox readable again after %.0fs",
                self._clock.monotonic() - self._outbox_health.since,
            )
            self._outbox_health = _Health()


__all__ = ["Dispatcher"]
