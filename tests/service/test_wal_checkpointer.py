"""The WAL is copied back into the database by the background checkpointer, not by a committing request."""

from __future__ import annotations

import gc
import os
import time

from fastapi.testclient import TestClient
from sqlalchemy import text

from geofence.service import db
from geofence.service.app import create_app


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
    # wait for this file's checkpoint to finish: the database file passes 2 MB while pages are still
    # being copied, and a write begun before the end cannot restart the WAL
    while not db.CHECKPOINTER.completed.get(str(path)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.getsize(path) > 2 * 2**20  # copied back by the thread
    time.sleep(10 * db.CHECKPOINT_LOOK_S)
    assert db.CHECKPOINTER.completed[str(path)] == 1  # a WAL unchanged since is not checkpointed again
    wal = os.path.getsize(f"{path}-wal")
    _blobs(engine, 300, 100)  # the next transactions write the WAL from its start again
    assert os.path.getsize(f"{path}-wal") <= wal
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar() == 400
    engine.dispose()


def test_an_app_that_has_shut_down_lets_its_database_go(settings):
    """The app freezes the collector's view of its start-up objects; its shutdown thaws them, so an app
    that ran its lifespan inside a longer process (every test here) is freed, and its file unwatched."""
    app = create_app(settings)
    path = app.state.runtime.engine.url.database
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
    assert db.CHECKPOINTER.watches(path)
    del app, client
    gc.collect()
    assert not db.CHECKPOINTER.watches(path)
