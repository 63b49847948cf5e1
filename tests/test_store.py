"""The state store: atomic saves, and files it must refuse with a clear message."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor.errors import StateError
from monitor.store import SQLiteStateStore


def test_save_is_atomic_models_and_offsets_together(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "s.sqlite")
    store.save({"a": {"n": 1}}, {("t", 0): 10})

    class Unpicklable:
        def __reduce__(self) -> object:
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        store.save({"a": {"n": 2}, "b": Unpicklable()}, {("t", 0): 20})
    assert store.load_model("a") == {"n": 1}
    assert store.load_offsets() == {("t", 0): 10}
    store.save({}, {("t", 1): 5})  # offsets alone: other rows are kept
    assert store.load_offsets() == {("t", 0): 10, ("t", 1): 5}
    assert store.models() == ["a"]
    store.close()
    reopened = SQLiteStateStore(tmp_path / "s.sqlite")
    assert reopened.load_model("a") == {"n": 1}
    reopened.close()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StateError, match="not a usable state file"):
        SQLiteStateStore(path)
    assert path.read_bytes() == b"\x00garbage" * 1000  # never discarded


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


def test_an_unreadable_model_blob_names_the_model(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SQLiteStateStore(path)
    store.save({"m": 1}, {})
    store._db.execute("UPDATE models SET blob = x'00ff'")
    with pytest.raises(StateError, match="state of model 'm' cannot be read"):
        store.load_model("m")
    store.close()
