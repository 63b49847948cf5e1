"""The delivery loop: drains the outbox into receivers, with retries that survive restarts.

* Wakes at once when something is enqueued (:meth:`Dispatcher.wake`), else
  sleeps until the next row is due (at most ``poll_interval`` seconds).
* Retryable errors back off exponentially with full jitter (seeded RNG),
  never sooner than the receiver's ``Retry-After``, until the row's deadline
  or ``max_attempts``; permanent errors are dead-lettered at once.
* At most ``concurrency_per_receiver`` requests in flight per receiver, so one
  slow receiver cannot starve the others.
* Retries are counted (``monitor_notifications_total{outcome="retried"}``),
  not logged; a receiver's health *changes* are logged, at most once per
  ``log_interval`` seconds per receiver.
* ``stop(grace)`` keeps delivering what is due for up to ``grace`` seconds,
  then cancels in-flight requests; their rows stay pending and are sent by
  the next run (at-least-once: the receiver may see the same id twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

from monitor.alerting.alert_metrics import AlertMetrics
from monitor.alerting.backoff import Backoff
from monitor.alerting.config import DeliveryConfig
from monitor.alerting.outbox import Outbox, OutboxRow
from monitor.alerting.receiver import Receiver
from monitor.clock import Clock
from monitor.errors import PermanentDeliveryError, RetryableDeliveryError, ServiceStateError

log = logging.getLogger(__name__)


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
        log_interval: float = 60.0,
    ) -> None:
        self._outbox = outbox
        self._receivers = receivers
        self._delivery = delivery
        self._metrics = metrics
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._backoff = Backoff(
            delivery.initial_backoff_seconds, delivery.max_backoff_seconds, delivery.jitter
        )
        self._poll_interval = poll_interval
        self._log_interval = log_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._inflight_by_receiver: dict[str, int] = dict.fromkeys(receivers, 0)
        self._draining_until: float | None = None
        self._healthy: dict[str, bool] = dict.fromkeys(receivers, True)
        self._last_log: dict[str, float] = {}
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

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # -- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = self._clock.time()
            try:
                launched = self._launch_due(now)
                self._refresh_gauges(now)
                next_due = self._outbox.next_due_at(exclude=self._inflight.keys())
            except Exception:  # a broken database must not kill delivery silently
                log.exception("alert dispatcher: outbox access failed; retrying")
                launched, next_due = 0, None
            if self._draining_until is not None:
                remaining = self._draining_until - loop.time()
                nothing_due = next_due is None or next_due > now
                if remaining <= 0 or (not self._inflight and not launched and nothing_due):
                    return
            timeout = self._poll_interval
            if next_due is not None:
                timeout = min(timeout, max(0.0, next_due - now))
            if self._draining_until is not None:
                timeout = min(timeout, max(0.0, self._draining_until - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.001))

    def _launch_due(self, now: float) -> int:
        launched = 0
        for name, receiver in self._receivers.items():
            free = self._delivery.concurrency_per_receiver - self._inflight_by_receiver[name]
            if free <= 0:
                continue
            for row in self._outbox.due(now, free, receiver=name, exclude=self._inflight.keys()):
                self._inflight_by_receiver[name] += 1
                task = asyncio.create_task(self._deliver(receiver, row))
                self._inflight[row.id] = task
                launched += 1
        return launched

    async def _deliver(self, receiver: Receiver, row: OutboxRow) -> None:
        name = row.receiver
        try:
            await receiver.send(row.notification)
        except RetryableDeliveryError as exc:
            self._on_retryable(row, exc)
        except PermanentDeliveryError as exc:
            self._outbox.mark_dead(row.id, self._clock.time(), str(exc))
            self._metrics.count(name, "failed")
            self._set_health(name, False, f"permanent failure, dead-lettered: {exc}")
        except asyncio.CancelledError:
            raise  # stop(): the row stays pending for the next run
        except Exception as exc:  # a receiver bug: count it, keep the row, retry with backoff
            log.exception("alert receiver %s raised unexpectedly", name)
            self._on_retryable(row, RetryableDeliveryError(f"{type(exc).__name__}: {exc}"))
        else:
            now = self._clock.time()
            self._outbox.mark_delivered(row.id, now)
            self._metrics.count(name, "delivered")
            self._metrics.delivery_seconds.labels(receiver=name).observe(
                max(0.0, now - row.enqueued_at)
            )
            self._set_health(name, True, "delivering again")
        finally:
            self._inflight.pop(row.id, None)
            self._inflight_by_receiver[name] -= 1
            self.wake()

    def _on_retryable(self, row: OutboxRow, exc: RetryableDeliveryError) -> None:
        name = row.receiver
        now = self._clock.time()
        attempts = row.attempts + 1
        max_attempts = self._delivery.max_attempts
        if now >= row.deadline_at or (max_attempts is not None and attempts >= max_attempts):
            self._outbox.mark_dead(row.id, now, f"gave up after {attempts} attempts: {exc}")
            self._metrics.count(name, "dead")
            self._set_health(name, False, f"gave up after {attempts} attempts: {exc}")
            return
        delay = self._backoff.delay(attempts, self._rng)
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self._delivery.max_retry_after_seconds))
        next_at = min(now + delay, row.deadline_at)
        self._outbox.mark_failed(row.id, next_attempt_at=next_at, error=str(exc))
        self._metrics.count(name, "retried")
        self._set_health(name, False, f"retrying: {exc}")

    # -- observability -------------------------------------------------------------------

    def _refresh_gauges(self, now: float) -> None:
        depth = self._outbox.depth()
        for name in self._receivers:
            self._metrics.outbox_depth.labels(receiver=name).set(depth.get(name, 0))
        age = self._outbox.oldest_undelivered_age(now)
        self._metrics.outbox_oldest_age.set(age or 0.0)

    def _set_health(self, receiver: str, healthy: bool, detail: str) -> None:
        """Log a receiver's health transitions, at most once per ``log_interval``."""
        if self._healthy.get(receiver, True) == healthy:
            return
        self._healthy[receiver] = healthy
        now = self._clock.monotonic()
        last = self._last_log.get(receiver)
        if last is not None and now - last < self._log_interval:
            return
        self._last_log[receiver] = now
        if healthy:
            log.info("alert receiver %s: %s", receiver, detail)
        else:
            log.warning("alert receiver %s: %s", receiver, detail)


__all__ = ["Dispatcher"]
