"""Silences: time-boxed mutes (pure matching) and the runtime store (persisted).

A silence mutes *notifications*, not alert state: a silenced signal still
fires and resolves inside the policy, so when a silence ends while the
condition persists the alert is sent then, and a condition that cleared
during the silence never produces a stray resolve. This mirrors Alertmanager.
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace

from monitor.alerting.config import SilenceConfig
from monitor.alerting.rules import glob_match
from monitor.alerting.signals import Signal
from monitor.errors import InvalidSilence, ReadOnlySilence, StateError, UnknownSilence

#: Latest representable time (9999-12-31T23:59:59Z): later ends cannot be shown as ISO 8601.
MAX_TIME = 253402300799.0


@dataclass(frozen=True, slots=True)
class Silence:
    """Mute signals matching the ``model``/``subject`` globs and ``kind`` during the time box."""

    id: str
    starts_at: float
    ends_at: float
    model: str = "*"
    subject: str = "*"
    kind: str | None = None
    comment: str = ""
    created_by: str = ""
    source: str = "api"  # "api" (runtime, can be expired) or "config" (read-only)

    def active_at(self, now: float) -> bool:
        """Whether the time box contains ``now`` (end exclusive)."""
        return self.starts_at <= now < self.ends_at

    def matches(self, signal: Signal) -> bool:
        """Whether every matcher accepts ``signal`` (time is checked separately)."""
        return (
            glob_match(self.model, signal.model)
            and glob_match(self.subject, signal.subject)
            and (self.kind is None or self.kind == signal.kind)
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
            comment=c.comment,
            created_by="config",
            source="config",
        )
        for i, c in enumerate(configs)
    ]


class SilenceStore:
    """Runtime silences, kept in memory and persisted in the alerting database.

    Reads are from memory (the policy consults silences at every
    evaluation); writes go to SQLite first, then memory, so a crash never
    loses an acknowledged silence.
    """

    def __init__(self, conn: sqlite3.Connection, static: Sequence[Silence] = ()) -> None:
        self._conn = conn
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
        comment: str = "",
        created_by: str = "",
    ) -> Silence:
        """Persist a new runtime silence and return it (with a fresh id).

        :class:`~monitor.errors.InvalidSilence` when the time box is not finite,
        outside 1970..9999, or empty, or the kind is unknown.
        """
        for name, t in (("starts_at", starts_at), ("ends_at", ends_at)):
            if not (math.isfinite(t) and 0.0 <= t <= MAX_TIME):
                raise InvalidSilence(f"{name}: must be a time between 1970 and 9999")
        if ends_at <= starts_at:
            raise InvalidSilence("ends_at: must be after starts_at")
        if kind not in (None, "drift", "performance", "data_quality"):
            raise InvalidSilence("matchers.kind: must be drift, performance or data_quality")
        silence = Silence(
            id=uuid.uuid4().hex,
            starts_at=starts_at,
            ends_at=ends_at,
            model=model,
            subject=subject,
            kind=kind,
            comment=comment,
            created_by=created_by,
            source="api",
        )
        self._write(silence)
        return silence

    def expire(self, silence_id: str, now: float) -> Silence:
        """End a runtime silence at ``now``.

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
        self._write(expired)
        return expired

    def purge(self, before: float) -> int:
        """Forget runtime silences that ended before ``before``."""
        gone = [s.id for s in self._runtime.values() if s.ends_at < before]
        if gone:
            try:
                self._conn.executemany("DELETE FROM silences WHERE id = ?", [(i,) for i in gone])
            except sqlite3.Error as exc:
                raise StateError(f"cannot purge silences: {exc}") from exc
            for i in gone:
                del self._runtime[i]
        return len(gone)

    def _write(self, silence: Silence) -> None:
        try:
            self._conn.execute(
                "INSERT INTO silences (id, record, ends_at) VALUES (?, ?, ?) ON CONFLICT(id) "
                "DO UPDATE SET record = excluded.record, ends_at = excluded.ends_at",
                (silence.id, json.dumps(silence.to_json()), silence.ends_at),
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot persist silence: {exc}") from exc
        self._runtime[silence.id] = silence


__all__ = ["Silence", "SilenceStore", "from_config", "is_silenced"]
