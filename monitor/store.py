"""Where model state lives between runs, and how it follows a partition.

A :class:`StateStore` saves each model's state as one opaque blob together with
the Kafka offsets the saved state covers, atomically, so that on restart (or on
another instance after a rebalance) the consumer seeks to exactly those offsets
and replays only what the state does not contain: nothing counted twice, nothing
missed.

The interface is deliberately tiny (``load_model``, ``load_offsets``,
``save``) so that a shared backend, a compacted Kafka topic keyed by model,
fits behind it. :class:`SQLiteStateStore` is the local default.

Blobs are pickles of our own objects, written by this service into a file it
owns; the file carries a format marker and version, and a file that lacks them
or has another version is refused with a clear message, never discarded.
"""

from __future__ import annotations

import pickle
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from monitor.errors import StateError

FORMAT = "kafka-model-monitor-state"
FORMAT_VERSION = 1

TopicPartition = tuple[str, int]


class StateStore(Protocol):
    """Saves and restores model state with the offsets it covers."""

    def load_model(self, model: str) -> Any | None:
        """The saved state object of ``model``, or None."""

    def load_offsets(self) -> dict[TopicPartition, int]:
        """Next offset to consume per partition, as of the last save."""

    def models(self) -> list[str]:
        """Names of the models with a saved state."""

    def save(self, models: Mapping[str, Any], offsets: Mapping[TopicPartition, int]) -> None:
        """Atomically store these models' states and these offsets.

        Either all of it is stored or none of it (a crash mid-save leaves the
        previous save intact). Models and partitions not mentioned keep theirs.
        """

    def delete_model(self, model: str) -> None: ...

    def close(self) -> None: ...


class SQLiteStateStore:
    """A :class:`StateStore` in one SQLite file (WAL, one transaction per save)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._init_schema()
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"{self.path}: not a usable state file ({exc}); move it aside to start fresh"
            ) from exc

    def _init_schema(self) -> None:
        tables = {
            r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            with self._tx():
                self._db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self._db.execute(
                    "CREATE TABLE models (model TEXT PRIMARY KEY, blob BLOB NOT NULL, "
                    "saved_at REAL NOT NULL)"
                )
                self._db.execute(
                    "CREATE TABLE offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
                    "next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition))"
                )
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [("format", FORMAT), ("format_version", str(FORMAT_VERSION))],
                )
            return
        if "meta" not in tables:
            raise StateError(
                f"{self.path}: not a monitor state file (no meta table); refusing to use it"
            )
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            raise StateError(
                f"{self.path}: foreign state file (format {meta.get('format')!r}); "
                "refusing to use it"
            )
        if meta.get("format_version") != str(FORMAT_VERSION):
            raise StateError(
                f"{self.path}: state format version {meta.get('format_version')} is not "
                f"supported (this build reads {FORMAT_VERSION}); refusing to use it"
            )

    def _tx(self) -> Any:
        db = self._db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type: Any, *_: Any) -> None:
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    def load_model(self, model: str) -> Any | None:
        with self._lock:
            row = self._db.execute("SELECT blob FROM models WHERE model = ?", (model,)).fetchone()
        if row is None:
            return None
        try:
            return pickle.loads(row[0])
        except Exception as exc:
            raise StateError(
                f"{self.path}: state of model {model!r} cannot be read ({exc})"
            ) from exc

    def models(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT model FROM models ORDER BY model")]

    def load_offsets(self) -> dict[TopicPartition, int]:
        with self._lock:
            rows = self._db.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        return {(t, int(p)): int(o) for t, p, o in rows}

    def save(self, models: Mapping[str, Any], offsets: Mapping[TopicPartition, int]) -> None:
        blobs = [
            (name, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), time.time())
            for name, state in models.items()
        ]
        with self._lock, self._tx():
            self._db.executemany(
                "INSERT INTO models VALUES (?, ?, ?) ON CONFLICT(model) DO UPDATE "
                "SET blob = excluded.blob, saved_at = excluded.saved_at",
                blobs,
            )
            self._db.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT(topic, partition) DO UPDATE "
                "SET next_offset = excluded.next_offset",
                [(t, p, o) for (t, p), o in offsets.items()],
            )

    def delete_model(self, model: str) -> None:
        with self._lock, self._tx():
            self._db.execute("DELETE FROM models WHERE model = ?", (model,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
