"""The alerting SQLite file: outbox, alert state and runtime silences in one database.

One file, one connection, so that "state advanced" and "notification
enqueued" commit in the same transaction (see :mod:`monitor.alerting.outbox`).
WAL journaling lets a reader (metrics) coexist with the writer, and
``synchronous=FULL`` makes a committed transaction survive power loss, which
is what "durable when ``enqueue`` returns" means.

Several instances may open the same file (``state.backend: sqlite`` on one
host): an outbox row is delivered by whichever instance claims it first
(``claimed_by``, ``claimed_until``: see :mod:`monitor.alerting.outbox`).

Schema versions: 1 had no claim columns; a version-1 file is migrated in place
(``ALTER TABLE ... ADD COLUMN``, one transaction) when opened. A version this
build does not know (a newer build's file) is refused, never guessed at.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from monitor.errors import StateError

#: Schema version stored in the ``meta`` table; older known versions are migrated in place
#: (:data:`_MIGRATIONS`), any other is refused.
SCHEMA_VERSION = 2

#: The statements that bring a file from version ``n`` to ``n + 1``, by ``n``.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE outbox ADD COLUMN claimed_by TEXT",
        "ALTER TABLE outbox ADD COLUMN claimed_until REAL",
    ),
}

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
    claimed_by      TEXT,   -- the instance sending it now (random per process), or NULL
    claimed_until   REAL,   -- its lease: another instance may take the row after this time
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


#: How long a write waits for another process's lock on the file before it fails (SQLite's
#: busy timeout). A module setting so that the tests of a held lock need not wait 5 s a turn.
BUSY_TIMEOUT_MS = 5000


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
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_MS)}")
        conn.executescript(_SCHEMA)
        _settle_version(conn, path)
    except sqlite3.Error as exc:
        raise StateError(f"{path}: cannot open alerting database: {exc}") from exc
    return conn


def _settle_version(conn: sqlite3.Connection, path: Path) -> None:
    """Stamp a new file, migrate an older one in place, refuse an unknown one.

    Under ``BEGIN IMMEDIATE``, so two instances opening the same old file at once
    migrate it once: the second sees the first's version when it gets the lock.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        else:
            version = int(row["value"]) if str(row["value"]).isdigit() else -1
            if version != SCHEMA_VERSION and version not in _MIGRATIONS:
                raise StateError(
                    f"{path}: alerting database schema {row['value']}, "
                    f"this build uses {SCHEMA_VERSION}"
                )
            while version != SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
            conn.execute(
                "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
            )
    except BaseException:
        conn.execute("ROLLBACK")
        conn.close()
        raise
    conn.execute("COMMIT")


__all__ = ["SCHEMA_VERSION", "open_database"]
