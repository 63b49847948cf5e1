"""The state store: atomic saves, and files it must refuse with a clear message."""

from __future__ import annotations

import logging
import pickle
import sqlite3
from pathlib import Path

import pytest

from monitor.errors import StateError
from monitor.store import SQLiteStateStore


def test_save_is_atomic_models_and_offsets_together(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "s.sqlite")
    store.save({"a": (b"one", ("t", 0))}, {("t", 0): 10})

    with pytest.raises(StateError, match="not an encoded blob"):
        store.save({"a": (b"two", ("t", 0)), "b": ({"n": 2}, None)}, {("t", 0): 20})  # type: ignore[dict-item]
    assert store.load_model("a") == b"one"
    assert store.load_offsets() == {("t", 0): 10}
    store.save({}, {("t", 1): 5})  # offsets alone: other rows are kept
    assert store.load_offsets() == {("t", 0): 10, ("t", 1): 5}
    assert store.models() == ["a"]
    assert store.models([("t", 0)]) == ["a"] and store.models([("t", 1)]) == []
    store.close()
    reopened = SQLiteStateStore(tmp_path / "s.sqlite")
    assert reopened.load_model("a") == b"one"
    reopened.close()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StateError, match="not a usable state file"):
        SQLiteStateStore(path)
    assert path.read_bytes() == b"\x00garbage" * 1000  # never discarded


def test_a_file_locked_by_another_process_is_named_so_not_sent_to_be_discarded(
    tmp_path: Path,
) -> None:
    """A lock is not damage: the error must not tell the operator to move the file aside
    (every model's state with it); it names the lock. SQLite waits its 5 s busy timeout."""
    path = tmp_path / "s.sqlite"
    first = SQLiteStateStore(path)
    first.save({"a": (b"one", ("t", 0))}, {("t", 0): 10})
    first.close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")  # as some tools hold a database
    other.execute("BEGIN EXCLUSIVE")
    other.execute("UPDATE meta SET value = value")
    other.execute("COMMIT")  # the exclusive lock stays until the connection closes
    try:
        with pytest.raises(StateError) as err:
            SQLiteStateStore(path)
    finally:
        other.close()
    assert "locked by another process" in str(err.value)
    assert "move it aside" not in str(err.value).replace("do not move it aside", "")
    store = SQLiteStateStore(path)  # once the other process let go: all there
    assert store.load_model("a") == b"one" and store.load_offsets() == {("t", 0): 10}
    store.close()


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="not a monitor state file"):
        SQLiteStateStore(path)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('format', 'something-else')")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="foreign state file"):
        SQLiteStateStore(path)


def test_another_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    SQLiteStateStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="version 99 is not supported"):
        SQLiteStateStore(path)


def _version_1_file(path: Path) -> sqlite3.Connection:
    """An open state file as the release before format version 2 wrote it (pickles)."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE models (model TEXT PRIMARY KEY, blob BLOB NOT NULL, saved_at REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
        "next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition))"
    )
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("format", "kafka-model-monitor-state"), ("format_version", "1")],
    )
    return db


def test_a_previous_release_file_is_upgraded_without_unpickling_anything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Version 1 files held pickles: they are never read; states and offsets go together."""
    path = tmp_path / "s.sqlite"
    marker = tmp_path / "executed"
    db = _version_1_file(path)
    # A pickle that would create a file if anything unpickled it.
    evil = pickle.dumps(_Touch(str(marker)), protocol=4)
    db.execute("INSERT INTO models VALUES ('m', ?, 0)", (evil,))
    db.execute("INSERT INTO offsets VALUES ('t', 0, 123)")
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, logger="monitor.store"):
        store = SQLiteStateStore(path)
    assert store.discarded_legacy == 1
    assert store.models() == [] and store.load_offsets() == {}
    assert store.load_model("m") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "old state format" in warnings[0].getMessage()
    assert "offset" in warnings[0].getMessage()
    store.save({"m": (b"new", ("t", 0))}, {("t", 0): 7})
    store.close()
    reopened = SQLiteStateStore(path)  # now version 2: read as usual, no second warning
    assert reopened.discarded_legacy == 0
    assert reopened.load_model("m") == b"new" and reopened.load_offsets() == {("t", 0): 7}
    reopened.close()
    assert not marker.exists()


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def _version_2_file(path: Path) -> None:
    """A state file as the release before the ``unrestored`` table wrote it."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE models (model TEXT PRIMARY KEY, blob BLOB NOT NULL, "
        "saved_at REAL NOT NULL, topic TEXT, partition INTEGER)"
    )
    db.execute(
        "CREATE TABLE offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
        "next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition))"
    )
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("format", "kafka-model-monitor-state"), ("format_version", "2")],
    )
    db.execute("INSERT INTO models VALUES ('m', x'01', 0, 't', 0)")
    db.execute("INSERT INTO offsets VALUES ('t', 0, 42)")
    db.commit()
    db.close()


def test_a_file_of_the_release_before_the_unrestored_table_opens_and_gets_it(
    tmp_path: Path,
) -> None:
    """The table is added to a version 2 file, which stays version 2: the previous release
    (a rollback) checks only the format and version, and opens it as before; a bumped
    version would have made it refuse every stored state."""
    path = tmp_path / "s.sqlite"
    _version_2_file(path)
    store = SQLiteStateStore(path)
    assert store.load_model("m") == b"\x01" and store.load_offsets() == {("t", 0): 42}
    assert store.unrestored() == [] and store.unrestored_kept == 0
    store.save({"m": (b"\x02", ("t", 0))}, {}, unrestored={"m": ("corrupt", b"\x01")})
    assert store.load_unrestored("m") == b"\x01" and store.unrestored_kept == 1
    store.close()
    db = sqlite3.connect(path)
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    db.close()
    assert meta == {"format": "kafka-model-monitor-state", "format_version": "2"}
    fresh = tmp_path / "new.sqlite"
    SQLiteStateStore(fresh).close()  # a new file: version 2 too, with the table
    db = sqlite3.connect(fresh)
    assert db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone() == ("2",)
    assert db.execute("SELECT COUNT(*) FROM unrestored").fetchone() == (0,)
    db.close()


def test_a_previous_release_pickle_file_is_upgraded_with_the_unrestored_table(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite"
    db = _version_1_file(path)
    db.execute("INSERT INTO models VALUES ('m', x'80', 0)")
    db.commit()
    db.close()
    store = SQLiteStateStore(path)
    assert store.discarded_legacy == 1 and store.unrestored() == []
    store.save({"m": (b"\x02", ("t", 0))}, {}, unrestored={"m": ("corrupt", b"\x03")})
    store.close()
    reopened = SQLiteStateStore(path)
    assert reopened.load_unrestored("m") == b"\x03" and reopened.load_model("m") == b"\x02"
    reopened.close()
