"""The WAL is copied back into the database by the background checkpointer, not by a committing request."""

from __future__ import annotations

import os
import time

from sqlalchemy import text

from geofence.service import db


def _blobs(engine, first: int, n: int) -> None:
    with engine.begin() as conn:
        for i in range(first, first + n):
            conn.execute(text("INSERT INTO blobs (id, data) VALUES (:i, randomblob(8000))"), {"i": i})


def test_a_long_wal_is_checkpointed_by_the_background_thread_and_then_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "CHECKPOINT_BYTES", 2**40)  # the thread looks, but finds no WAL that long
    path = tmp_path / "c.db"
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)"))
    _blobs(engine, 0, 300)  # ~2.5 MB of pages, all in the WAL: the commit copied nothing back
    assert os.path.getsize(path) < 1 * 2**20 < os.path.getsize(f"{path}-wal")
    monkeypatch.setattr(db, "CHECKPOINT_BYTES", 1 * 2**20)
    deadline = time.monotonic() + 10
    # wait on this file, not on the thread's count: it also checkpoints other tests' databases it watches
    while os.path.getsize(path) <= 2 * 2**20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.getsize(path) > 2 * 2**20  # copied back by the thread
    wal = os.path.getsize(f"{path}-wal")
    _blobs(engine, 300, 100)  # the next transactions write the WAL from its start again
    assert os.path.getsize(f"{path}-wal") <= wal
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar() == 400
    engine.dispose()
