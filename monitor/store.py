"""Where model state lives between runs, and how it follows a partition.

A :class:`StateStore` saves each model's state as one blob (encoded by
:mod:`monitor.state_format`; the store never looks inside) together with the
partition the model's events come from and the Kafka offsets the saved states
cover, atomically, so that on restart (or on another instance after a
rebalance) the consumer seeks to exactly those offsets and replays only what the
states do not contain: nothing counted twice, nothing missed.

The interface is deliberately tiny (``load_model``, ``load_offsets``,
``models``, ``save``) so that a shared backend, a compacted Kafka topic keyed by
model, fits behind it. :class:`SQLiteStateStore` is the local default;
:class:`monitor.kafka_store.KafkaStateStore` (``state.backend: kafka``) keeps the
states in a compacted changelog topic and the offsets as the group's committed
offsets, in one Kafka transaction per save.

The file carries a format marker and version. A file that lacks them, or has a
version this build does not know, is refused with a clear message, never
discarded. One exception: version 1, written by the previous release, held
*pickled* model states, which this release never reads (unpickling is code
execution). Opening such a file discards its model states **and the offsets
stored with them** (offsets without their states would skip the events those
states had counted), upgrades the file to version 2, and logs one WARNING;
consumption then resumes from Kafka's committed offsets with fresh models.

A stored state the service cannot restore (``incompatible``, ``corrupt``,
``unknown_version``; ``newer_version`` under ``state.on_newer_state: start_fresh``)
is overwritten by its fresh model's next checkpoint. That checkpoint's transaction
first copies it, byte for byte, into the ``unrestored`` table (the first one per
model, kept until an operator deletes it: a release that fails every restore of a model
would otherwise replace the state worth having with its own fresh one at its next start;
at most :data:`MAX_UNRESTORED` models, the oldest dropped first), so that a
release with a restore bug, or a rollback that cannot fit a newer state, loses
nothing for good: docs/RUNBOOK.md says how to put one back. The table is added to
a version 2 file without a version bump: a reader of version 2 (the previous
release, after a rollback) looks only at its own tables and opens the file as
before, which a bump would have made it refuse.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from monitor.errors import StateError
from monitor.state_format import refuse_newer

log = logging.getLogger("monitor.store")

FORMAT = "kafka-model-monitor-state"
FORMAT_VERSION = 2
LEGACY_PICKLE_VERSION = 1
#: Models whose unrestorable state is kept aside (one each; the oldest dropped first).
MAX_UNRESTORED = 100
# The table of states kept aside (see the module docstring), added to version 2 files.
_UNRESTORED_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS unrestored (model TEXT PRIMARY KEY, reason TEXT NOT NULL, "
    "at REAL NOT NULL, blob BLOB NOT NULL)"
)

TopicPartition = tuple[str, int]
# One model's saved state: its encoded blob, and the partition its events come from.
SavedModel = tuple[bytes, TopicPartition | None]


class StateStore(Protocol):
    """Saves and restores model states (opaque blobs) with the offsets they cover."""

    def load_model(self, model: str) -> bytes | None:
        """The saved blob of ``model``, or None."""

    def peek_model(self, model: str) -> bytes | None:
        """The saved blob of ``model`` without taking it (a backend that hands a blob over
        once, to be restored, keeps it), or None, also when it is unusable or not held:
        for a look at a state that is not restored (an unlisted model's alert state)."""

    def load_offsets(self) -> dict[TopicPartition, int]:
        """Next offset to consume per partition, as of the last save."""

    def models(self, partitions: Iterable[TopicPartition] | None = None) -> list[str]:
        """Names of the models with a saved state (on these partitions, if given)."""

    def save(self, models: Mapping[str, SavedModel], offsets: Mapping[TopicPartition, int]) -> None:
        """Atomically store these models' states and these offsets.

        Either all of it is stored or none of it (a crash mid-save leaves the
        previous save intact). Models and partitions not mentioned keep theirs.
        """

    def delete_model(self, model: str) -> None: ...

    def park(self, model: str) -> None:
        """``model``'s stored state is kept but not restored (``state.unlisted_models:
        keep``): a backend that holds states in memory drops it. ``load_model`` and
        ``delete_model`` still act on the stored state (a remote one reads it again)."""

    def prepare(self, partitions: Iterable[TopicPartition]) -> None:
        """Called (in a worker thread) when partitions are assigned, before anything of
        them is loaded: a remote backend reads their states and offsets here."""

    def release(self, partitions: Iterable[TopicPartition]) -> None:
        """Called when partitions are revoked, after their last checkpoint."""

    def close(self) -> None: ...


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> StateError:
    """Why the state file cannot be opened, and what to do, by SQLite's error code.

    Only a file SQLite finds damaged or not a database is to be moved aside (then the
    models start fresh). Every error used to say so: a file merely locked by another
    process (one in exclusive locking mode, a backup tool, a second monitor in the
    middle of a write) or on a volume that refuses it sent the operator to discard every
    model's state, when stopping that process or fixing the volume kept it.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StateError(
            f"{path}: locked by another process ({exc}); the file is left as it is: stop the "
            f"process holding it (fuser {path}) and start again; do not move it aside, it holds "
            "the models' states"
        )
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StateError(f"{path}: not a usable state file ({exc}); move it aside to start fresh")
    return StateError(
        f"{path}: cannot be read or written ({exc}); the file is left as it is: check the "
        "volume (permissions, free space, a read-only mount) and start again"
    )


class SQLiteStateStore:
    """A :class:`StateStore` in one SQLite file (WAL, one transaction per save)."""

    #: Kafka's committed offsets are the consumer's business (they run ahead, for lag).
    commits_offsets = False
    #: ``save`` keeps states the service could not restore aside (see the module).
    keeps_unrestored = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Model states of a previous release's file discarded at open (see the module).
        self.discarded_legacy = 0
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._init_schema()
            # How many unrestorable states are kept aside (``/api/status``, a gauge).
            self.unrestored_kept = self._count_unrestored()
        except sqlite3.DatabaseError as exc:
            raise _unusable(self.path, exc) from exc

    def _init_schema(self) -> None:
        tables = {
            r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            with self._tx():
                self._db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self._db.execute(
                    "CREATE TABLE models (model TEXT PRIMARY KEY, blob BLOB NOT NULL, "
                    "saved_at REAL NOT NULL, topic TEXT, partition INTEGER)"
                )
                self._db.execute(
                    "CREATE TABLE offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
                    "next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition))"
                )
                self._db.execute(_UNRESTORED_SCHEMA)
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
        if meta.get("format_version") == str(LEGACY_PICKLE_VERSION):
            self._upgrade_legacy()
        elif meta.get("format_version") != str(FORMAT_VERSION):
            raise StateError(
                f"{self.path}: state format version {meta.get('format_version')} is not "
                f"supported (this build reads {FORMAT_VERSION}); refusing to use it"
            )
        if "unrestored" not in tables:  # a file of a release before the table
            with self._tx():
                self._db.execute(_UNRESTORED_SCHEMA)

    def _upgrade_legacy(self) -> None:
        """A previous release's file: drop its pickled states and their offsets; see module."""
        with self._tx():
            n = self._db.execute("SELECT COUNT(*) FROM models").fetchone()[0]
            offsets = self._db.execute("SELECT COUNT(*) FROM offsets").fetchone()[0]
            self._db.execute("DELETE FROM models")
            self._db.execute("DELETE FROM offsets")
            self._db.execute("ALTER TABLE models ADD COLUMN topic TEXT")
            self._db.execute("ALTER TABLE models ADD COLUMN partition INTEGER")
            self._db.execute(
                "UPDATE meta SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION),)
            )
        self.discarded_legacy = int(n)
        log.warning(
            "%s: written by a previous release in the old state format (pickled model "
            "states), which is not read: %d model state(s) and the %d partition offset(s) "
            "stored with them were discarded; models start fresh and consumption resumes "
            "from the consumer group's committed offsets",
            self.path,
            n,
            offsets,
        )

    def _tx(self) -> Any:
        db = self._db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type: Any, *_: Any) -> None:
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    def load_model(self, model: str) -> bytes | None:
        with self._lock:
            # CAST: a value stored as TEXT (by hand, or damaged) still comes back as bytes.
            row = self._db.execute(
                "SELECT CAST(blob AS BLOB) FROM models WHERE model = ?", (model,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def peek_model(self, model: str) -> bytes | None:
        return self.load_model(model)  # a read: nothing is taken

    def models(self, partitions: Iterable[TopicPartition] | None = None) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT model, topic, partition FROM models ORDER BY model"
            ).fetchall()
        if partitions is None:
            return [r[0] for r in rows]
        wanted = set(partitions)
        return [m for m, t, p in rows if (t, p) in wanted]

    def load_offsets(self) -> dict[TopicPartition, int]:
        with self._lock:
            rows = self._db.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        return {(t, int(p)): int(o) for t, p, o in rows}

    def _count_unrestored(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM unrestored").fetchone()[0])

    def unrestored(self) -> list[tuple[str, str, float, int]]:
        """The states kept aside: (model, reason, when, bytes), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT model, reason, at, length(CAST(blob AS BLOB)) FROM unrestored "
                "ORDER BY at, model"
            ).fetchall()
        return [(m, r, float(at), int(n)) for m, r, at, n in rows]

    def load_unrestored(self, model: str) -> bytes | None:
        """The blob of ``model`` kept aside when it could not be restored, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT CAST(blob AS BLOB) FROM unrestored WHERE model = ?", (model,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def save(
        self,
        models: Mapping[str, SavedModel],
        offsets: Mapping[TopicPartition, int],
        *,
        unrestored: Mapping[str, tuple[str, bytes]] | None = None,
    ) -> None:
        """See :class:`StateStore`; ``unrestored`` (model -> (reason, blob)): stored states
        the service could not restore, kept aside in the same transaction, before these
        models' rows overwrite them (the first one per model, see :data:`MAX_UNRESTORED`)."""
        now = time.time()
        rows = []
        for name, (blob, tp) in models.items():
            if not isinstance(blob, bytes | bytearray | memoryview):
                raise StateError(f"state of model {name!r} is not an encoded blob")
            topic, partition = tp if tp is not None else (None, None)
            rows.append((name, bytes(blob), now, topic, partition))
        with self._lock, self._tx():
            if unrestored:
                self._db.executemany(
                    "INSERT OR IGNORE INTO unrestored VALUES (?, ?, ?, ?)",
                    [(m, reason, now, bytes(b)) for m, (reason, b) in unrestored.items()],
                )
                self._db.execute(
                    "DELETE FROM unrestored WHERE model NOT IN (SELECT model FROM unrestored "
                    "ORDER BY at DESC, model LIMIT ?)",
                    (MAX_UNRESTORED,),
                )
            self._db.executemany(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?) ON CONFLICT(model) DO UPDATE "
                "SET blob = excluded.blob, saved_at = excluded.saved_at, "
                "topic = COALESCE(excluded.topic, models.topic), "
                "partition = COALESCE(excluded.partition, models.partition)",
                rows,
            )
            self._db.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?) ON CONFLICT(topic, partition) DO UPDATE "
                "SET next_offset = excluded.next_offset",
                [(t, p, o) for (t, p), o in offsets.items()],
            )
            kept = self._count_unrestored() if unrestored else self.unrestored_kept
        self.unrestored_kept = kept

    def delete_model(self, model: str) -> None:
        """Remove ``model``'s stored state; :class:`~monitor.state_format.NewerStateError`,
        and nothing removed, when a newer release wrote it (this release cannot read it, and
        the newer one needs it when rolled forward again)."""
        with self._lock, self._tx():
            row = self._db.execute(
                "SELECT substr(CAST(blob AS BLOB), 1, 10) FROM models WHERE model = ?", (model,)
            ).fetchone()
            if row is not None:
                refuse_newer(bytes(row[0]))
            self._db.execute("DELETE FROM models WHERE model = ?", (model,))

    def park(self, model: str) -> None:
        """Nothing held: the file is read on demand."""

    def prepare(self, partitions: Iterable[TopicPartition]) -> None:
        """Nothing to fetch: the file is read on demand."""

    def release(self, partitions: Iterable[TopicPartition]) -> None:
        """Nothing held per partition."""

    def close(self) -> None:
        with self._lock:
            self._db.close()
