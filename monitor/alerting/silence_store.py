"""The runtime silences, persisted in the alerting database (an I/O edge, SQLite).

Matching is pure and lives in :mod:`monitor.alerting.silences`; this store only
keeps the silences added through the API across restarts.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import replace

from monitor.alerting.silences import MAX_TIME, Silence
from monitor.errors import InvalidSilence, ReadOnlySilence, StateError, UnknownSilence


class SilenceStore:
    """Runtime silences, kept in memory and persisted in the alerting database.

    Reads are from memory (the policy consults silences at every
    evaluation); writes go to SQLite first, then memory, so a crash never
    loses an acknowledged silence.

    A change is three steps, so that the SQLite write can run on the alert service's
    database thread while the memory stays the event loop's (the policy iterates it
    there): :meth:`new` / :meth:`expired` decide the silence (no I/O), :meth:`persist`
    writes it (any thread), :meth:`remember` makes it take effect. :meth:`add` and
    :meth:`expire` do all three on the calling thread.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        static: Sequence[Silence] = (),
        lock: contextlib.AbstractContextManager[object] | None = None,
    ) -> None:
        """``lock``: held around each write (the outbox's, which shares the connection and
        writes on another thread: a write must not land inside one of its transactions)."""
        self._conn = conn
        self._lock = lock if lock is not None else contextlib.nullcontext()
        self._static = list(static)
        self._runtime: dict[str, Silence] = {}
        try:
            rows = conn.execute("SELECT record FROM silences").fetchall()
            for row in rows:
                silence = Silence(**json.loads(row["record"]))
                self._runtime[silence.id] = silence
        except (sqlite3.Error, TypeError, ValueError) as exc:
            raise StateError(f"unreadable silences table: {exc}") from exc

    def all(self) -> list[Silence]:
        """Config and runtime silences, including expired ones not yet purged."""
        return [*self._static, *self._runtime.values()]

    def active(self, now: float) -> list[Silence]:
        """Silences whose time box contains ``now`` (or starts later: they are cheap to keep)."""
        return [s for s in self.all() if s.ends_at > now]

    def add(
        self,
        *,
        starts_at: float,
        ends_at: float,
        model: str = "*",
        subject: str = "*",
        kind: str | None = None,
        segment: str = "*",
        comment: str = "",
        created_by: str = "",
    ) -> Silence:
        """Persist a new runtime silence and return it (with a fresh id); the errors of
        :meth:`new`. Blocks on the database: not from the event loop."""
        silence = self.new(
            starts_at=starts_at,
            ends_at=ends_at,
            model=model,
            subject=subject,
            kind=kind,
            segment=segment,
            comment=comment,
            created_by=created_by,
        )
        self.persist(silence)
        self.remember(silence)
        return silence

    def new(
        self,
        *,
        starts_at: float,
        ends_at: float,
        model: str = "*",
        subject: str = "*",
        kind: str | None = None,
        segment: str = "*",
        comment: str = "",
        created_by: str = "",
    ) -> Silence:
        """A new runtime silence (a fresh id), not yet persisted nor in force.

        :class:`~monitor.errors.InvalidSilence` when the time box is not finite,
        outside 1970..9999, or empty, or the kind is unknown.
        """
        for name, t in (("starts_at", starts_at), ("ends_at", ends_at)):
            if not (math.isfinite(t) and 0.0 <= t <= MAX_TIME):
                raise InvalidSilence(f"{name}: must be a time between 1970 and 9999")
        if ends_at <= starts_at:
            raise InvalidSilence("ends_at: must be after starts_at")
        if kind not in (None, "drift", "performance", "data_quality", "multivariate"):
            raise InvalidSilence(
                "matchers.kind: must be drift, performance, data_quality or multivariate"
            )
        silence = Silence(
            id=uuid.uuid4().hex,
            starts_at=starts_at,
            ends_at=ends_at,
            model=model,
            subject=subject,
            kind=kind,
            segment=segment,
            comment=comment,
            created_by=created_by,
            source="api",
        )
        return silence

    def expire(self, silence_id: str, now: float) -> Silence:
        """End a runtime silence at ``now`` (persisted); the errors of :meth:`expired`.
        Blocks on the database: not from the event loop."""
        silence = self.expired(silence_id, now)
        self.persist(silence)
        self.remember(silence)
        return silence

    def expired(self, silence_id: str, now: float) -> Silence:
        """The runtime silence ``silence_id`` ended at ``now``, not yet persisted nor in force.

        :class:`~monitor.errors.UnknownSilence` if no silence has this id,
        :class:`~monitor.errors.ReadOnlySilence` if it comes from the configuration file.
        """
        if any(s.id == silence_id for s in self._static):
            raise ReadOnlySilence(
                "silences from the configuration file cannot be expired at runtime"
            )
        current = self._runtime.get(silence_id)
        if current is None:
            raise UnknownSilence("no such silence")
        expired = replace(current, ends_at=min(current.ends_at, now))
        if expired.starts_at > expired.ends_at:
            expired = replace(expired, starts_at=expired.ends_at)
        return expired

    def purge(self, before: float) -> int:
        """Forget runtime silences that ended before ``before``."""
        gone = [s.id for s in self._runtime.values() if s.ends_at < before]
        if gone:
            try:
                with self._lock:
                    self._conn.executemany(
                        "DELETE FROM silences WHERE id = ?", [(i,) for i in gone]
                    )
            except sqlite3.Error as exc:
                raise StateError(f"cannot purge silences: {exc}") from exc
            for i in gone:
                del self._runtime[i]
        return len(gone)

    def persist(self, silence: Silence) -> None:
        """Write ``silence`` to the database (insert or replace); :class:`StateError` if it
        fails. Touches no memory: safe on the database thread."""
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT INTO silences (id, record, ends_at) VALUES (?, ?, ?) ON CONFLICT(id) "
                    "DO UPDATE SET record = excluded.record, ends_at = excluded.ends_at",
                    (silence.id, json.dumps(silence.to_json()), silence.ends_at),
                )
        except sqlite3.Error as exc:
            raise StateError(f"cannot persist silence: {exc}") from exc

    def remember(self, silence: Silence) -> None:
        """Put a persisted ``silence`` in force (the event loop's side of a change)."""
        self._runtime[silence.id] = silence


__all__ = ["SilenceStore"]
