"""The alerting SQLite file: outbox, alert state and runtime silences in one database.

One file, one connection, so that "state advanced" and "notification
enqueued" commit in the same transaction (see :mod:`monitor.alerting.outbox`).
WAL journaling lets a reader (metrics) coexist with the writer, and
``synchronous=FULL`` makes a committed transaction survive power loss, which
is what "durable when ``enqueue`` returns" means.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from monitor.errors import StateError

#: Schema version stored in the ``meta`` table; a mismatch is refused, never migrated silently.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver        TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint     TEXT NOT NULL,
    format          INTEGER NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    enqueued_at     REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    deadline_at     REAL NOT NULL,
    finished_at     REAL,
    last_error      TEXT,
    UNIQUE (receiver, idempotency_key)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (receiver, fingerprint, state, id);
CREATE TABLE IF NOT EXISTS alert_state (
    model TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS silences (
    id         TEXT PRIMARY KEY,
    record     TEXT NOT NULL,
    ends_at    REAL NOT NULL
);
"""


def open_database(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) the alerting database; :class:`StateError` if unusable.

    The connection is in autocommit mode; writers open explicit transactions
    (``BEGIN IMMEDIATE``) so that each logical operation is one commit.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif row["value"] != str(SCHEMA_VERSION):
            conn.close()
            raise StateError(
                f"{path}: alerting database schema {row['value']}, this build uses {SCHEMA_VERSION}"
            )
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot open alerting database: {exc}") from exc
    return conn


__all__ = ["SCHEMA_VERSION", "open_database"]
