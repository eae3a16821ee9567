"""A WAL that SQLite's passive checkpoints let grow (readers always behind them) is reset by the next
transaction once it passes ``WAL_RESTART_BYTES``, and its file cut back."""

from __future__ import annotations

import os
import sqlite3
import time

from sqlalchemy import text

from geofence.service import db


def test_a_long_wal_is_checkpointed_reset_and_truncated_by_the_next_transaction(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "WAL_RESTART_BYTES", 4 * 2**20)
    monkeypatch.setattr(db, "WAL_LOOK_EVERY_S", 0.0)
    path = tmp_path / "w.db"
    engine = db.make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)"))
    reader = sqlite3.connect(path)  # an open read snapshot: passive checkpoints cannot finish behind it
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM blobs").fetchall()
    with engine.begin() as conn:
        for i in range(800):  # ~6.5 MB of pages
            conn.execute(text("INSERT INTO blobs (id, data) VALUES (:i, randomblob(8000))"), {"i": i})
    grown = os.path.getsize(f"{path}-wal")
    assert grown > 4 * 2**20
    reader.rollback()  # the reader moves on, as the other worker's transactions do
    reader.close()
    with engine.begin() as conn:  # the next transaction resets the WAL first
        conn.execute(text("INSERT INTO blobs (id, data) VALUES (-1, x'00')"))
    assert os.path.getsize(f"{path}-wal") <= 2 * 2**20 + 100_000
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar() == 801
    engine.dispose()


def test_a_reader_that_stays_only_defers_the_reset_and_never_stalls_the_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "WAL_RESTART_BYTES", 1 * 2**20)
    monkeypatch.setattr(db, "WAL_LOOK_EVERY_S", 0.0)
    path = tmp_path / "r.db"
    engine = db.make_engine(f"sqlite:///{path}")  # busy timeout 30 s
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)"))
    reader = sqlite3.connect(path)  # a long read (an export, say) that outlives the next transactions
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM blobs").fetchall()
    with engine.begin() as conn:
        for i in range(300):
            conn.execute(text("INSERT INTO blobs (id, data) VALUES (:i, randomblob(8000))"), {"i": i})
    started = time.monotonic()
    with engine.begin() as conn:  # the RESTART waits 50 ms for the reader, gives up, the write goes on
        conn.execute(text("INSERT INTO blobs (id, data) VALUES (-1, x'00')"))
        assert conn.connection.driver_connection.execute("PRAGMA busy_timeout").fetchall()[0][0] == 30_000
    assert time.monotonic() - started < 10  # far below the 30 s busy timeout it would otherwise wait
    assert os.path.getsize(f"{path}-wal") > 1 * 2**20  # not reset while the reader stays
    reader.rollback()
    reader.close()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO blobs (id, data) VALUES (-2, x'00')"))
    assert os.path.getsize(f"{path}-wal") <= 2**19 + 100_000
    engine.dispose()
