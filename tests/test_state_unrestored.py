"""A stored state that cannot be restored is kept aside, not lost to the next checkpoint.

The model starts fresh (counted, logged), and its fresh state's next checkpoint overwrote
the stored one: after a release with a restore bug, or a rollback to a release that
cannot fit a newer state of the same format version, that state was gone for good. The
SQLite store now copies it, as it is, into its ``unrestored`` table in the checkpoint's
transaction; an operator puts it back (docs/RUNBOOK.md) once a release reads it.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest

from monitor import store as store_module
from monitor.config import parse_config
from monitor.model_monitor import ModelMonitor
from monitor.service import MonitorService
from monitor.store import SQLiteStateStore
from tests.test_alert_state_restore import MODEL, TP, _events, _raw


def _service(home: Path, store: SQLiteStateStore, **state: str) -> MonitorService:
    raw = _raw(home)
    raw["state"].update(state)
    service = MonitorService(parse_config(raw, base_dir=home), store=store)
    service.store = store  # what start() does with a given store
    return service


def _in_the_file(path: Path, blob: bytes) -> bool:
    """Whether any table of the state file holds ``blob`` (whatever the store's API)."""
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                if blob in row:
                    return True
        return False
    finally:
        db.close()


def _kept(service: MonitorService) -> float | None:
    return service.registry.get_sample_value("monitor_state_unrestored_kept")


def test_a_state_a_restore_bug_refuses_survives_the_fresh_models_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release whose restore fails on a good state (here: ``ModelMonitor.restore``
    raising): the model starts fresh and checkpoints over the stored row; the state is
    still in the store, and put back as the runbook says, the next release restores it."""
    path = tmp_path / "state.sqlite"
    store = SQLiteStateStore(path)
    first = _service(tmp_path, store)
    _events(first, 0, 150)
    first.checkpoint()
    good = store.load_model(MODEL)
    assert good is not None
    kept_before = (first.status().get("unrestored_kept"), _kept(first))

    def restore_bug(*args: object, **kw: object) -> ModelMonitor:
        raise ValueError("a bug of this release")

    monkeypatch.setattr(ModelMonitor, "restore", staticmethod(restore_bug))
    buggy = _service(tmp_path, store)
    _events(buggy, 150, 10)
    assert buggy.models[MODEL].events_total == 10  # started fresh
    buggy.checkpoint()
    assert store.load_model(MODEL) != good  # the main row holds the fresh state now
    assert _in_the_file(path, good), "the state the restore refused is gone"
    assert kept_before == (0, 0)
    assert store.load_unrestored(MODEL) == good  # ... and the stored one is kept, as it was
    ((model, reason, _, size),) = store.unrestored()
    assert (model, reason, size) == (MODEL, "incompatible", len(good))
    assert buggy.status()["unrestored_kept"] == 1 and _kept(buggy) == 1
    _events(buggy, 160, 10)
    buggy.checkpoint()  # a later checkpoint keeps nothing more, and nothing else
    assert store.load_unrestored(MODEL) == good and store.unrestored_kept == 1
    store.close()
    monkeypatch.undo()

    # Fixed release, the monitor stopped: the operator puts the state back (RUNBOOK).
    db = sqlite3.connect(path)
    db.execute(
        "UPDATE models SET blob = (SELECT blob FROM unrestored WHERE model = ?) WHERE model = ?",
        (MODEL, MODEL),
    )
    db.execute("DELETE FROM unrestored WHERE model = ?", (MODEL,))
    db.commit()
    db.close()
    store = SQLiteStateStore(path)
    fixed = _service(tmp_path, store)
    assert _kept(fixed) == 0
    _events(fixed, 170, 10)
    assert fixed.models[MODEL].events_total == 160  # the kept state, and the new events
    store.close()


@pytest.mark.parametrize("reason", ["corrupt", "unknown_version", "newer_version"])
def test_an_unreadable_state_is_kept_aside_as_it_is(
    tmp_path: Path, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Damaged, of a format version this release never read, or of a newer release's (with
    ``state.on_newer_state: start_fresh``, the operator's choice to start fresh)."""
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    first = _service(tmp_path, store)
    _events(first, 0, 150)
    first.checkpoint()
    good = store.load_model(MODEL)
    assert good is not None
    # A flipped byte (the checksum fails), or a format version this release never read.
    if reason == "corrupt":
        blob = good[:-1] + bytes([good[-1] ^ 1])
    else:
        version = 0 if reason == "unknown_version" else 99
        blob = good[:8] + struct.pack("<H", version) + good[10:]
    store.save({MODEL: (blob, TP)}, {})
    service = _service(tmp_path, store, on_newer_state="start_fresh")
    _events(service, 150, 10)
    failures = service.registry.get_sample_value(
        "monitor_state_restore_failures_total", {"reason": reason}
    )
    assert failures == 1
    said = [r.getMessage() for r in caplog.records if "not restored" in r.getMessage()]
    assert len(said) == 1 and "kept aside (the unrestored table)" in said[0], said
    service.checkpoint()
    assert store.load_model(MODEL) != blob
    assert store.load_unrestored(MODEL) == blob
    assert [r[:2] for r in store.unrestored()] == [(MODEL, reason)]
    store.close()
    reopened = SQLiteStateStore(tmp_path / "state.sqlite")
    assert reopened.unrestored_kept == 1 and reopened.load_unrestored(MODEL) == blob
    reopened.close()


def test_the_kept_states_are_bounded_oldest_dropped_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_UNRESTORED", 2)
    store = SQLiteStateStore(tmp_path / "state.sqlite")
    for i, model in enumerate(["a", "b", "c"]):
        store.save({model: (b"fresh", TP)}, {}, unrestored={model: ("corrupt", b"old%d" % i)})
    assert sorted((m, store.load_unrestored(m)) for m, *_ in store.unrestored()) == [
        ("b", b"old1"),
        ("c", b"old2"),
    ]
    # A second refusal of a kept model (a release that fails every restore of it, its own
    # fresh state refused at its next start) keeps the first: the state worth having.
    store.save({"c": (b"fresh", TP)}, {}, unrestored={"c": ("corrupt", b"fresh of c")})
    assert store.load_unrestored("c") == b"old2"
    assert store.unrestored_kept == 2
    store.close()
