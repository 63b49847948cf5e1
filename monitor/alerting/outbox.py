"""The durable outbox: notifications survive receiver outages and service restarts.

Rows live in the alerting SQLite database (:mod:`monitor.alerting.database`).
An enqueue is one transaction committed with ``synchronous=FULL``: when it
returns, the notification survives a crash. ``(receiver, idempotency_key)``
is unique, so re-enqueueing after a crash (the pipeline replays the
evaluation) is a no-op, including for rows already delivered, which are kept
for ``retention_seconds`` for exactly that reason.

Per receiver and fingerprint, rows are delivered in enqueue order: a
resolve never overtakes the fire it closes while that fire is being
retried (PagerDuty would otherwise open an incident nobody resolves).

Several instances may share the file (``state.backend: sqlite`` on one host),
so a row is *claimed* before it is sent: :meth:`Outbox.due` with
``lease_seconds`` sets ``claimed_by`` (this outbox's random instance token) and
``claimed_until`` in the same ``BEGIN IMMEDIATE`` transaction that picks the
row, with a conditional ``UPDATE`` whose row count decides. Exactly one
instance sends a row while its lease holds; the sender renews the lease while
the request runs (:meth:`Outbox.renew`), and ``mark_*`` / :meth:`Outbox.release`
clear it. A crashed instance's rows are taken by another once the lease runs
out (at-least-once, as for one instance: a row sent when the crash came is sent
again). Another instance's leased row counts as due at ``claimed_until``, so
nobody polls it in a loop.

An ``update`` or ``repeat`` that reaches the head of its line while a later ``update`` or
``repeat`` of the same incident waits behind it for the same receiver is *superseded*, not
sent: the later one lists the incident's firing signals as they are now, so a receiver back
from an hour's outage gets the page and the latest state, not a burst of the stale updates
in between. A ``fire``, a ``resolve`` and a retraining trigger are never superseded (the
page that opens the incident, the one that closes it, the pipeline's call), nor is the last
update before a resolve (for a receiver an escalation reached first, it is the page the
resolve closes). A ``repeat`` is superseded too when the notification before it reached
the receiver only after the reminder was decided (both waited out an outage): the receiver
has just heard of the incident.

A receiver with a ``page_cap`` (:mod:`monitor.alerting.page_cap`) has the new incidents
past its cap *folded* at enqueue: the row is stored ``folded`` (never sent on its own), and
:meth:`Outbox.summarise` later turns the folded rows into one pending ``summary`` row and
marks them ``summarised``; a later notification of a folded incident for that receiver is
stored ``summarised`` at once. Nothing is dropped: every row stays in the outbox.

Row states::

    (enqueue, past the receiver's page cap) --> folded --summary enqueued--> summarised
    (enqueue, a later notification of a folded incident) --> summarised
    pending --send ok--------------------------> delivered
       |  \\--retryable error--> pending (attempts+1, next_attempt_at later)
       |\\--permanent error / deadline / max attempts--> dead
       \\--update/repeat, a later update/repeat of its incident waits--> superseded
          (or a repeat whose predecessor was delivered after the repeat was enqueued)
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from monitor.alerting.database import open_database
from monitor.alerting.notification import FORMAT_VERSION, Notification
from monitor.alerting.page_cap import (
    PageCap,
    admits,
    summary_due_at,
    summary_fingerprint,
    summary_notification,
)
from monitor.alerting.policy import incident_and_action
from monitor.errors import StateError

_ERROR_EXCERPT = 500

#: Actions a later notification of the same incident makes obsolete while still pending.
SUPERSEDABLE = frozenset({"update", "repeat"})

#: Row states of the page cap: waiting for the receiver's summary / in one (or a later
#: notification of a folded incident). Neither is ever sent on its own.
FOLDED = "folded"
SUMMARISED = "summarised"


#: Why a row is folded (its ``last_error``, and ``monitor_alert_notifications_suppressed_total``
#: ``reason``): a new incident past the receiver's page cap, or a later notification (update,
#: reminder, resolve) of an incident folded for that receiver.
#: (:data:`monitor.alerting.alert_metrics.SUPPRESSED_REASONS`.)


def incident_prefix(key: str) -> str:
    """``<fingerprint>-<incident start ms>-`` of a key ``<...>-<seq>-<action>``: what every
    notification of one incident shares."""
    return key.rsplit("-", 2)[0] + "-"


#: SQL: the row's claim is free for instance ``?`` at time ``?`` (none, expired, or its own).
_CLAIMABLE = "(o.claimed_until IS NULL OR o.claimed_until <= ? OR o.claimed_by = ?)"
#: SQL: clear the claim, unless another instance holds it now (our lease ran out meanwhile).
_RELEASE = (
    "claimed_by = CASE WHEN claimed_by = :me THEN NULL ELSE claimed_by END, "
    "claimed_until = CASE WHEN claimed_by = :me THEN NULL ELSE claimed_until END"
)


class UnwritableOutboxError(StateError):
    """The outbox file refuses writes (disk full, read-only, I/O error), so rows cannot be
    claimed; lock contention with another instance is a plain :class:`StateError`."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One pending delivery of one notification to one receiver."""

    id: int
    receiver: str
    notification: Notification
    attempts: int
    enqueued_at: float
    next_attempt_at: float
    deadline_at: float


class Outbox:
    """Durable queue of (receiver, notification) pairs, plus the alert state written with them."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        owns_connection: bool = False,
        instance: str | None = None,
        page_caps: Mapping[str, PageCap] | None = None,
    ) -> None:
        """``instance``: the token this outbox claims rows with; random (per process) unless
        given, so that two services sharing the file never take each other's claims.
        ``page_caps``: the receivers with a page cap (see the module docstring)."""
        self._caps = dict(page_caps or {})
        self._folded: list[tuple[str, str]] = []  # (receiver, reason) since take_folded
        # Its own lock, not the transactions' one: the event loop takes the list after each
        # evaluation, and must not wait behind a database-thread write that itself waits
        # out another process's lock on the file (up to the busy timeout).
        self._folded_lock = threading.Lock()
        self._conn = conn
        self._owns = owns_connection
        self._closed = False
        self._instance = instance if instance is not None else secrets.token_hex(8)
        self._superseded: list[str] = []
        # (receiver, error) of each row marked dead as unreadable since take_unreadable.
        self._unreadable: list[tuple[str, str]] = []
        # Writes run on the alert service's database thread, while a few still come from
        # other threads (the synchronous API of tests and tools): two transactions on one
        # connection must not interleave (the second BEGIN fails, or its statements join
        # the first's transaction). The service's reads take no lock: it makes them all from
        # the database thread, between its writes. A read from another thread while a write
        # runs has undefined results (SQLite: a change on the same connection while a
        # statement is running), so what tests poll (counts, rows, depth, the oldest row's
        # age) takes the lock: uncontended, and so nearly free, on the database thread.
        # Serialised, not concurrent: a
        # call waiting for the connection can hold the GIL meanwhile (seen: the loop stood
        # still for a write's whole busy timeout on another thread), so the service makes
        # its calls from the one database thread, and a lock on the file stalls that thread
        # only. (The monitor service adopts a restored model's alert state with
        # ``set_state`` on the loop: without ``persist_state`` that writes nothing here.)
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | Path, *, page_caps: Mapping[str, PageCap] | None = None) -> Outbox:
        """Open (or create) the outbox in the SQLite file at ``path``."""
        return cls(open_database(path), owns_connection=True, page_caps=page_caps)

    @property
    def instance(self) -> str:
        """The token this outbox claims rows with."""
        return self._instance

    @property
    def connection(self) -> sqlite3.Connection:
        """The underlying connection (shared with the silence store)."""
        return self._conn

    @property
    def write_lock(self) -> threading.RLock:
        """Held around every write of this connection (the silence store writes under it)."""
        return self._lock

    # -- writing -------------------------------------------------------------------------

    def enqueue(
        self, receiver: str, notification: Notification, *, now: float, deadline_at: float
    ) -> bool:
        """Durably add one delivery; False if this (receiver, key) was already enqueued."""
        return self.commit_evaluation([(receiver, notification)], now=now, deadline_at=deadline_at)[
            0
        ]

    def commit_evaluation(
        self,
        items: Iterable[tuple[str, Notification]],
        *,
        now: float,
        deadline_at: float,
        states: dict[str, str] | None = None,
    ) -> list[bool]:
        """Enqueue ``items`` and save ``states`` (model -> JSON) in ONE transaction.

        Alert state and the notifications it implies commit together: after a
        crash either both or neither are there, so an incident is neither
        notified twice with different keys nor silently marked as notified.
        Returns, per item, whether it was new.
        """
        inserted: list[bool] = []
        folded: list[tuple[str, str]] = []
        try:
            with self._transaction():
                for receiver, n in items:
                    state, why = self._fold(receiver, n, now)
                    finished = None if state == "pending" else now
                    cur = self._conn.execute(
                        "INSERT OR IGNORE INTO outbox (receiver, idempotency_key, fingerprint, "
                        "format, payload, enqueued_at, next_attempt_at, deadline_at, state, "
                        "finished_at, last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            receiver,
                            n.idempotency_key,
                            n.fingerprint,
                            FORMAT_VERSION,
                            n.encode().decode(),
                            now,
                            now,
                            deadline_at,
                            state,
                            finished,
                            why,
                        ),
                    )
                    inserted.append(cur.rowcount == 1)
                    if cur.rowcount == 1 and state != "pending":
                        folded.append((receiver, why or "page_cap"))
                for model, state in (states or {}).items():
                    self._conn.execute(
                        "INSERT INTO alert_state (model, state) VALUES (?, ?) "
                        "ON CONFLICT(model) DO UPDATE SET state = excluded.state",
                        (model, state),
                    )
        except sqlite3.Error as exc:
            raise StateError(f"outbox enqueue failed: {exc}") from exc
        with self._folded_lock:
            self._folded.extend(folded)
        return inserted

    def _fold(self, receiver: str, n: Notification, now: float) -> tuple[str, str | None]:
        """The state a new row of ``n`` for ``receiver`` is stored in (inside the enqueue's
        transaction), with why when it is not ``pending``: the page cap (module docstring)."""
        cap = self._caps.get(receiver)
        if cap is None or n.action in ("retrain", "summary"):
            return "pending", None
        prefix = incident_prefix(n.idempotency_key)
        first = self._conn.execute(
            "SELECT state FROM outbox WHERE receiver=? AND fingerprint=? "
            "AND substr(idempotency_key, 1, ?) = ? ORDER BY id LIMIT 1",
            (receiver, n.fingerprint, len(prefix), prefix),
        ).fetchone()
        if first is not None:  # a later notification: as the incident's first one went
            if first["state"] in (FOLDED, SUMMARISED):
                return SUMMARISED, "folded_incident"
            return "pending", None
        if admits(cap, self._paged_at(receiver, now - cap.window_seconds), now):
            return "pending", None
        return FOLDED, "page_cap"

    def _paged_at(self, receiver: str, since: float) -> list[float]:
        """When each incident paged to ``receiver`` since ``since`` was first enqueued (its
        first row for the receiver: a fire, or the update an escalation brought)."""
        rows = self._conn.execute(
            "SELECT id, fingerprint, idempotency_key, enqueued_at FROM outbox WHERE receiver=? "
            "AND enqueued_at > ? AND state NOT IN (?, ?) AND fingerprint != ? ORDER BY id",
            (receiver, since, FOLDED, SUMMARISED, summary_fingerprint(receiver)),
        ).fetchall()
        firsts: dict[tuple[str, str], tuple[int, float]] = {}
        for r in rows:
            if not r["idempotency_key"].endswith("-retrain"):
                key = (r["fingerprint"], incident_prefix(r["idempotency_key"]))
                firsts.setdefault(key, (r["id"], r["enqueued_at"]))
        paged: list[float] = []
        for (fp, prefix), (row_id, at) in firsts.items():
            earlier = self._conn.execute(
                "SELECT 1 FROM outbox WHERE receiver=? AND fingerprint=? AND id < ? "
                "AND substr(idempotency_key, 1, ?) = ? LIMIT 1",
                (receiver, fp, row_id, len(prefix), prefix),
            ).fetchone()
            if earlier is None:  # else an incident paged before the window, updated in it
                paged.append(at)
        return paged

    def take_folded(self) -> list[tuple[str, str]]:
        """(receiver, reason) of each row folded by the page cap since the last call."""
        with self._folded_lock:
            out, self._folded = self._folded, []
        return out

    def summarise(
        self, receiver: str, *, now: float, interval: float, deadline_at: float
    ) -> float | None:
        """Enqueue the summary of ``receiver``'s folded rows if it is due (and mark them
        ``summarised``, in the same transaction); else when it will be. None: nothing folded.

        ``interval``: the least time between two summaries (``group_interval_seconds``).
        """
        cap = self._caps.get(receiver)
        if cap is None:
            return None
        try:
            first = self._conn.execute(
                "SELECT MIN(enqueued_at) AS t FROM outbox WHERE receiver=? AND state=?",
                (receiver, FOLDED),
            ).fetchone()
            if first["t"] is None:
                return None
            due = summary_due_at(cap, float(first["t"]), self._last_summary(receiver), interval)
            if due > now:
                return due
            with self._transaction():
                rows = self._conn.execute(
                    "SELECT id, enqueued_at, payload FROM outbox WHERE receiver=? AND state=? "
                    "ORDER BY id",
                    (receiver, FOLDED),
                ).fetchall()
                if not rows:  # another instance sharing the file summarised them first
                    return None
                folded = []
                for r in rows:
                    try:
                        folded.append(
                            (r["id"], r["enqueued_at"], Notification.decode(r["payload"]))
                        )
                    except StateError:
                        continue  # unreadable: marked with the rest, not listed
                if folded:
                    summary = summary_notification(receiver, cap, folded, now)
                    self._conn.execute(
                        "INSERT OR IGNORE INTO outbox (receiver, idempotency_key, fingerprint, "
                        "format, payload, enqueued_at, next_attempt_at, deadline_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (receiver, summary.idempotency_key, summary.fingerprint, FORMAT_VERSION,
                         summary.encode().decode(), now, now, deadline_at),
                    )  # fmt: skip
                marks = ",".join("?" * len(rows))
                self._conn.execute(
                    f"UPDATE outbox SET state=?, last_error=? WHERE id IN ({marks})",
                    [SUMMARISED, "in a summary", *(r["id"] for r in rows)],
                )
        except sqlite3.Error as exc:
            raise StateError(f"outbox summary failed: {exc}") from exc
        return None

    def _last_summary(self, receiver: str) -> float | None:
        row = self._conn.execute(
            "SELECT MAX(enqueued_at) AS t FROM outbox WHERE receiver=? AND fingerprint=?",
            (receiver, summary_fingerprint(receiver)),
        ).fetchone()
        return None if row["t"] is None else float(row["t"])

    def mark_delivered(self, row_id: int, now: float) -> None:
        """The receiver accepted the notification."""
        self._update(
            "UPDATE outbox SET state='delivered', attempts=attempts+1, finished_at=:now, "
            f"{_RELEASE} WHERE id=:id",
            {"now": now, "id": row_id, "me": self._instance},
        )

    def mark_failed(self, row_id: int, *, next_attempt_at: float, error: str) -> None:
        """A retryable failure: try again at ``next_attempt_at``."""
        self._update(
            "UPDATE outbox SET attempts=attempts+1, next_attempt_at=:at, last_error=:error, "
            f"{_RELEASE} WHERE id=:id",
            {
                "at": next_attempt_at,
                "error": error[:_ERROR_EXCERPT],
                "id": row_id,
                "me": self._instance,
            },
        )

    def mark_dead(self, row_id: int, now: float, error: str) -> None:
        """Give up: permanent error, deadline passed, attempts exhausted, or unreadable row."""
        self._update(
            "UPDATE outbox SET state='dead', attempts=attempts+1, finished_at=:now, "
            f"last_error=:error, {_RELEASE} WHERE id=:id",
            {"now": now, "error": error[:_ERROR_EXCERPT], "id": row_id, "me": self._instance},
        )

    def release(self, row_id: int) -> None:
        """Give up this instance's claim without an outcome (the attempt was cancelled at
        stop): the row is due again at once, for whichever instance runs next."""
        self._update(
            f"UPDATE outbox SET {_RELEASE} WHERE id=:id", {"id": row_id, "me": self._instance}
        )

    def renew(self, row_ids: Collection[int], *, now: float, lease_seconds: float) -> int:
        """Extend this instance's claims on ``row_ids`` (still being sent) to ``now +
        lease_seconds``; returns how many it still held."""
        if not row_ids:
            return 0
        marks = ",".join("?" * len(row_ids))
        try:
            with self._transaction():
                cur = self._conn.execute(
                    f"UPDATE outbox SET claimed_until=? WHERE id IN ({marks}) AND claimed_by=? "
                    "AND state='pending'",
                    [now + lease_seconds, *row_ids, self._instance],
                )
        except sqlite3.Error as exc:
            raise StateError(f"outbox update failed: {exc}") from exc
        return int(cur.rowcount)

    def pending(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (receiver, idempotency key) pairs are still pending (not delivered,
        not dead). A pair absent from the outbox is not pending (purged once finished)."""
        out: set[tuple[str, str]] = set()
        try:
            for receiver, key in set(keys):
                row = self._conn.execute(
                    "SELECT 1 FROM outbox WHERE receiver=? AND idempotency_key=? "
                    "AND state='pending'",
                    (receiver, key),
                ).fetchone()
                if row is not None:
                    out.add((receiver, key))
        except sqlite3.Error as exc:
            raise StateError(f"outbox read failed: {exc}") from exc
        return out

    def withdraw(self, keys: Iterable[tuple[str, str]], exclude: Collection[int] = ()) -> int:
        """Delete the still pending rows of these (receiver, idempotency key) pairs, except the
        rows ``exclude`` (being sent right now); returns how many were deleted.

        For the alerts-topic consumer (Kafka backend): a record whose partition moved to
        another instance is that instance's to deliver, from the committed offset; a copy
        left pending here would be delivered a second time, by this outbox.
        """
        skip = set(exclude)
        n = 0
        try:
            with self._transaction():
                for receiver, key in set(keys):
                    # A row this instance holds a claim on is in its dispatcher's hands: being
                    # sent, or claimed on the database thread a moment before the loop starts
                    # sending it (not yet in ``exclude``).
                    rows = self._conn.execute(
                        "SELECT id FROM outbox WHERE receiver=? AND idempotency_key=? "
                        "AND state='pending' AND (claimed_by IS NULL OR claimed_by != ?)",
                        (receiver, key, self._instance),
                    ).fetchall()
                    for (row_id,) in rows:
                        if row_id not in skip:
                            self._conn.execute("DELETE FROM outbox WHERE id=?", (row_id,))
                            n += 1
        except sqlite3.Error as exc:
            raise StateError(f"outbox withdraw failed: {exc}") from exc
        return n

    def withdraw_all_pending(self) -> int:
        """Delete every pending row; returns how many (see :meth:`withdraw`: at the start of
        an instance whose rows all come from the alerts topic, where each pending row's
        record is still uncommitted, so the partition's owner, whoever it is now, delivers
        it; sending it from here too would deliver it twice)."""
        try:
            with self._transaction():
                cur = self._conn.execute("DELETE FROM outbox WHERE state='pending'")
        except sqlite3.Error as exc:
            raise StateError(f"outbox withdraw failed: {exc}") from exc
        return int(cur.rowcount)

    def purge(self, before: float) -> int:
        """Delete delivered and dead rows finished before ``before``; returns how many."""
        try:
            with self._transaction():
                cur = self._conn.execute(
                    "DELETE FROM outbox WHERE state != 'pending' AND finished_at < ?", (before,)
                )
        except sqlite3.Error as exc:
            raise StateError(f"outbox purge failed: {exc}") from exc
        return cur.rowcount

    def abandon_unconfigured(self, receivers: Collection[str], now: float) -> dict[str, int]:
        """Mark dead the pending rows of receivers not in ``receivers`` (taken out of the
        config); how many per receiver.

        Nothing delivers them (the dispatcher serves the configured receivers) and nothing
        purges a pending row: they waited for good, and the age of the oldest undelivered
        row grew without end (``OutboxBacklog`` paged and never resolved). Dead, they are
        purged after ``retention_seconds`` as any other. A row being sent elsewhere (another
        instance's live claim) is left to that instance.
        """
        names = sorted(set(receivers))
        marks = ",".join("?" * len(names))
        where = "state='pending' AND (claimed_until IS NULL OR claimed_until <= ?)"
        if names:
            where += f" AND receiver NOT IN ({marks})"
        try:
            with self._transaction():
                counts = self._conn.execute(
                    f"SELECT receiver, COUNT(*) AS n FROM outbox WHERE {where} GROUP BY receiver",
                    (now, *names),
                ).fetchall()
                self._conn.execute(
                    "UPDATE outbox SET state='dead', finished_at=?, "
                    f"last_error='receiver no longer in the config' WHERE {where}",
                    (now, now, *names),
                )
        except sqlite3.Error as exc:
            raise StateError(f"outbox update failed: {exc}") from exc
        return {r["receiver"]: r["n"] for r in counts}

    def left_open_at_unconfigured(self, receivers: Collection[str]) -> dict[str, int]:
        """Per receiver not in ``receivers``: how many incidents it was paged for (a fire,
        update or reminder delivered) without their resolve delivered, as far as the rows
        kept (``retention_seconds``) tell. The monitor cannot reach it any more: those stay
        open there unless someone closes them."""
        names = sorted(set(receivers))
        sql = "SELECT receiver, idempotency_key FROM outbox WHERE state='delivered'"
        if names:
            sql += f" AND receiver NOT IN ({','.join('?' * len(names))})"
        paged: dict[str, set[str]] = {}
        resolved: dict[str, set[str]] = {}
        for row in self._conn.execute(sql, names).fetchall():
            incident, action = incident_and_action(str(row["idempotency_key"]))
            if action in ("fire", "update", "repeat"):
                paged.setdefault(row["receiver"], set()).add(incident)
            elif action == "resolve":
                resolved.setdefault(row["receiver"], set()).add(incident)
        out = {r: len(ids - resolved.get(r, set())) for r, ids in paged.items()}
        return {r: n for r, n in out.items() if n}

    # -- reading -------------------------------------------------------------------------

    def due(
        self,
        now: float,
        limit: int,
        *,
        receiver: str | None = None,
        exclude: Collection[int] = (),
        lease_seconds: float | None = None,
    ) -> list[OutboxRow]:
        """Pending rows whose time has come, oldest first, head-of-line per (receiver, fingerprint).

        ``exclude`` lists rows already in flight here. Rows another instance holds a
        live claim on are not due. With ``lease_seconds``, each returned row is claimed
        for this instance until ``now + lease_seconds``, atomically with picking it: two
        instances sharing the file never both get the same row. Without it, a peek.
        A row whose stored format this build cannot read is dead-lettered here instead
        of blocking the queue. :class:`UnwritableOutboxError` when rows cannot be claimed
        because the file refuses writes (a peek still works then).
        """
        if limit <= 0:
            return []
        sql = (
            "SELECT * FROM outbox o WHERE o.state='pending' AND o.next_attempt_at <= ? "
            f"AND {_CLAIMABLE} "
            "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.receiver=o.receiver "
            "AND p.fingerprint=o.fingerprint AND p.state='pending' AND p.id < o.id)"
        )
        params: list[object] = [now, now, self._instance]
        if receiver is not None:
            sql += " AND o.receiver = ?"
            params.append(receiver)
        sql += " ORDER BY o.next_attempt_at, o.id LIMIT ?"
        params.append(limit + len(exclude))
        if lease_seconds is None:
            try:
                rows = self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StateError(f"outbox read failed: {exc}") from exc
            return self._decode(rows, now, limit, exclude, lease_seconds=None)
        try:
            with self._transaction():
                rows = self._conn.execute(sql, params).fetchall()
                return self._decode(rows, now, limit, exclude, lease_seconds=lease_seconds)
        except sqlite3.Error as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise StateError(f"outbox claim failed: {exc}") from exc
            raise UnwritableOutboxError(f"outbox claim failed: {exc}") from exc

    def _decode(
        self,
        rows: list[sqlite3.Row],
        now: float,
        limit: int,
        exclude: Collection[int],
        *,
        lease_seconds: float | None,
    ) -> list[OutboxRow]:
        out: list[OutboxRow] = []
        for r in rows:
            if r["id"] in exclude:
                continue
            row = self._take(r, now, lease_seconds)
            if row is None:
                continue
            out.append(row)
            if len(out) >= limit:
                break
        return out

    def _take(self, r: sqlite3.Row, now: float, lease_seconds: float | None) -> OutboxRow | None:
        """Decode and (with a lease) claim one selected row, inside :meth:`due`'s transaction;
        None if it is unreadable (dead-lettered) or someone else's."""
        try:
            if r["format"] != FORMAT_VERSION:
                raise StateError(f"row format {r['format']} != {FORMAT_VERSION}")
            notification = Notification.decode(r["payload"])
        except (StateError, ValueError) as exc:
            error = f"unreadable row: {exc}"
            # Said by the dispatcher (counted dead, one WARNING): a row a newer release
            # wrote (after a rollback) was marked dead here without a word, so the pages
            # it held were lost with nothing in the logs or metrics.
            self._unreadable.append((r["receiver"], error))
            if lease_seconds is None:
                self.mark_dead(r["id"], now, error)
            else:  # inside due()'s transaction already
                self._conn.execute(
                    "UPDATE outbox SET state='dead', attempts=attempts+1, finished_at=?, "
                    "last_error=? WHERE id=?",
                    (now, error[:_ERROR_EXCERPT], r["id"]),
                )
            return None
        if lease_seconds is not None and self._supersede(r, notification, now):
            return None
        if lease_seconds is not None:
            cur = self._conn.execute(
                "UPDATE outbox SET claimed_by=?, claimed_until=? WHERE id=? AND state='pending' "
                "AND (claimed_until IS NULL OR claimed_until <= ? OR claimed_by = ?)",
                (self._instance, now + lease_seconds, r["id"], now, self._instance),
            )
            if cur.rowcount != 1:
                return None
        return OutboxRow(
            id=r["id"],
            receiver=r["receiver"],
            notification=notification,
            attempts=r["attempts"],
            enqueued_at=r["enqueued_at"],
            next_attempt_at=r["next_attempt_at"],
            deadline_at=r["deadline_at"],
        )

    def _supersede(self, r: sqlite3.Row, notification: Notification, now: float) -> bool:
        """Inside :meth:`due`'s claim: mark an update or repeat ``superseded`` if a later
        update or repeat of the same incident waits for the same receiver (see the module
        docstring)."""
        if notification.action not in SUPERSEDABLE:
            return False
        # Keys are "<fingerprint>-<incident start ms>-<seq>-<action>": the incident's prefix.
        prefix = r["idempotency_key"].rsplit("-", 2)[0] + "-"
        same = "receiver=? AND fingerprint=? AND substr(idempotency_key, 1, ?) = ?"
        incident = (r["receiver"], r["fingerprint"], len(prefix), prefix)
        later = self._conn.execute(
            f"SELECT 1 FROM outbox WHERE {same} AND state='pending' AND id > ? "
            "AND (idempotency_key LIKE '%-update' OR idempotency_key LIKE '%-repeat') LIMIT 1",
            (*incident, r["id"]),
        ).fetchone()
        if later is None and notification.action == "repeat":
            # A reminder decided while the receiver had not yet heard of the incident (its
            # page waited out an outage behind it) reminds of nothing: the page just went.
            later = self._conn.execute(
                f"SELECT 1 FROM outbox WHERE {same} AND state='delivered' AND id < ? "
                "AND finished_at >= ? LIMIT 1",
                (*incident, r["id"], r["enqueued_at"]),
            ).fetchone()
        if later is None:
            return False
        cur = self._conn.execute(
            "UPDATE outbox SET state='superseded', finished_at=?, last_error=? WHERE id=? "
            "AND state='pending' AND (claimed_until IS NULL OR claimed_until <= ? "
            "OR claimed_by = ?)",
            (now, "superseded by a later notification of the incident", r["id"], now,
             self._instance),
        )  # fmt: skip
        if cur.rowcount == 1:
            self._superseded.append(r["receiver"])
        return True

    def take_unreadable(self) -> list[tuple[str, str]]:
        """(receiver, error) of each row marked dead as unreadable since the last call: its
        stored format or payload is not one this build reads (a newer release wrote it)."""
        out, self._unreadable = self._unreadable, []
        return out

    def take_superseded(self) -> list[str]:
        """The receivers of the rows superseded since the last call (one entry per row)."""
        out, self._superseded = self._superseded, []
        return out

    def next_due_at(self, exclude: Collection[int] = ()) -> float | None:
        """When the earliest deliverable pending row (not in ``exclude``) becomes due; a row
        another instance has claimed becomes due no sooner than its claim runs out."""
        marks = ",".join("?" * len(exclude))
        sql = (
            "SELECT MIN(CASE WHEN o.claimed_by IS NOT NULL AND o.claimed_by != ? "
            "AND o.claimed_until > o.next_attempt_at THEN o.claimed_until "
            "ELSE o.next_attempt_at END) AS t FROM outbox o WHERE o.state='pending' "
            "AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.receiver=o.receiver "
            "AND p.fingerprint=o.fingerprint AND p.state='pending' AND p.id < o.id)"
        )
        if exclude:
            sql += f" AND o.id NOT IN ({marks})"
        row = self._conn.execute(sql, [self._instance, *exclude]).fetchone()
        return None if row["t"] is None else float(row["t"])

    def depth(self) -> dict[str, int]:
        """Pending rows per receiver (under the write lock, as :meth:`counts`: tests poll it)."""
        sql = "SELECT receiver, COUNT(*) AS n FROM outbox WHERE state='pending' GROUP BY receiver"
        with self._lock:
            rows = self._conn.execute(sql).fetchall()
        return {r["receiver"]: r["n"] for r in rows}

    def oldest_undelivered_age(self, now: float) -> float | None:
        """Seconds since the oldest pending row was enqueued (None when nothing is pending;
        under the write lock, as :meth:`counts`)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT MIN(enqueued_at) AS t FROM outbox WHERE state='pending'"
            ).fetchone()
        return None if row["t"] is None else max(0.0, now - float(row["t"]))

    def counts(self) -> dict[str, int]:
        """Rows per state (pending, delivered, dead, superseded): for tests and diagnostics.

        Under the write lock: called from another thread than the database thread's writes
        (a test polling while the dispatcher delivers), a read during a write on the same
        connection has undefined results in SQLite; seen: ``{"delivered": 1, None: 2}`` for
        three rows, which ended a test's wait for "nothing pending" early."""
        with self._lock:
            rows = self._conn.execute("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
            return {r["state"]: r["n"] for r in rows.fetchall()}

    def rows(self, receiver: str | None = None) -> list[dict[str, object]]:
        """Every row's bookkeeping columns (no payload): for tests and diagnostics (under the
        write lock, as :meth:`counts`)."""
        sql = (
            "SELECT id, receiver, idempotency_key, fingerprint, state, attempts, enqueued_at, "
            "next_attempt_at, deadline_at, finished_at, last_error, claimed_by, claimed_until "
            "FROM outbox"
        )
        params: tuple[object, ...] = ()
        if receiver is not None:
            sql += " WHERE receiver = ?"
            params = (receiver,)
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql + " ORDER BY id", params).fetchall()]

    def load_states(self) -> dict[str, str]:
        """Saved alert state per model (JSON text)."""
        rows = self._conn.execute("SELECT model, state FROM alert_state").fetchall()
        return {r["model"]: r["state"] for r in rows}

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection if this outbox opened it; idempotent."""
        with self._lock:
            if not self._closed and self._owns:
                self._conn.close()
            self._closed = True

    def _update(self, sql: str, params: tuple[object, ...] | dict[str, object]) -> None:
        try:
            with self._transaction():
                self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StateError(f"outbox update failed: {exc}") from exc

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn, self._lock)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit
    connection, holding the outbox's write lock throughout (one transaction at a time)."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self._conn = conn
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self._lock.release()


__all__ = [
    "FOLDED",
    "SUMMARISED",
    "Outbox",
    "OutboxRow",
    "UnwritableOutboxError",
    "incident_prefix",
]
