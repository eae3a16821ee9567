"""The background WAL checkpointer: it copies committed pages into the database file without waiting for
the automatic checkpoint, and stops cleanly."""

from __future__ import annotations

import os
import time

from sqlalchemy import text

from geofence.service.db import background_checkpoints, make_engine


def test_committed_pages_reach_the_database_file_without_an_automatic_checkpoint(tmp_path):
    path = tmp_path / "cp.db"
    engine = make_engine(f"sqlite:///{path}")  # wal_autocheckpoint=10000 pages: far more than written here
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)"))
    before = os.path.getsize(path)
    with engine.begin() as conn:
        for i in range(200):
            conn.execute(text("INSERT INTO blobs (id, data) VALUES (:i, randomblob(8000))"), {"i": i})
    assert os.path.getsize(path) == before  # still only in the WAL
    checkpointer = background_checkpoints(engine)
    assert checkpointer is not None
    try:
        deadline = time.monotonic() + 10
        while os.path.getsize(path) < before + 200 * 8000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.getsize(path) >= before + 200 * 8000
        assert checkpointer.runs >= 1
    finally:
        checkpointer.stop()
    assert checkpointer._thread is None
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar() == 200
    engine.dispose()


def test_no_checkpointer_for_memory_databases_or_postgresql():
    assert background_checkpoints(make_engine("sqlite://")) is None
    assert background_checkpoints(make_engine("postgresql+psycopg://127.0.0.1:5432/test")) is None
