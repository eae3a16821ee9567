"""On SQLite, a presence writer waits for another process's write lock in short naps (``db.first_write``)
instead of SQLite's 1-2-5-10 ms sleeps, without ever losing what its transaction already wrote."""

from __future__ import annotations

import sqlite3
import threading

from geofence.service import db, presence_store
from geofence.service.db import ConnectionUnit, create_schema, first_write, make_engine
from geofence.service.presence_store import SqlPresenceStore


def _hold_write_lock(path, taken: threading.Event, release: threading.Event) -> threading.Thread:
    """Another writer (another worker): takes the lock, ticks the clock, holds until told, commits."""

    def run() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE presence_clock SET seq = seq + 1 WHERE id = 1")
        taken.set()
        release.wait(10)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert taken.wait(10)
    return thread


def _locked_database(tmp_path):
    """A schema, the clock's tick before, and another writer holding the write lock until released."""
    path = tmp_path / "p.db"
    engine = make_engine(f"sqlite:///{path}")
    create_schema(engine)
    start = _clock(path)
    taken, release = threading.Event(), threading.Event()
    return path, engine, start, release, _hold_write_lock(path, taken, release)


def _clock(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT seq FROM presence_clock WHERE id = 1").fetchone()[0]


def test_the_clock_tick_waits_out_another_writers_lock_and_takes_the_next_tick(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "LOCK_NAPS", 20_000)  # seconds of naps: the lock is released within them
    taken_by_naps: list[object] = []

    def spy(raw, sql):
        taken_by_naps.append(first_write(raw, sql))
        return taken_by_naps[-1]

    monkeypatch.setattr(presence_store, "first_write", spy)
    path, engine, start, release, holder = _locked_database(tmp_path)
    threading.Timer(0.1, release.set).start()
    with ConnectionUnit(engine) as unit:
        tick = SqlPresenceStore(unit)._clock_tick()
        raw = unit.connection().connection.driver_connection
        assert raw.execute("PRAGMA busy_timeout").fetchall()[0][0] == 30_000  # restored
        unit.commit()
    holder.join()
    assert taken_by_naps and taken_by_naps[0] is not None  # the naps, not SQLite's handler, took it
    assert tick == start + 2  # after the other writer's tick, which committed first
    assert _clock(path) == start + 2
    engine.dispose()


def test_a_lock_held_past_the_naps_is_waited_for_by_sqlites_own_handler(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "LOCK_NAPS", 3)  # ~0.3 ms of naps: the lock outlasts them
    path, engine, start, release, holder = _locked_database(tmp_path)
    raw = sqlite3.connect(path, timeout=30)
    assert first_write(raw, "UPDATE presence_clock SET seq = seq + 1 WHERE id = 1") is None
    assert not raw.in_transaction  # the failed try's BEGIN was rolled back
    assert raw.execute("PRAGMA busy_timeout").fetchall()[0][0] == 30_000
    raw.close()
    threading.Timer(0.2, release.set).start()
    with ConnectionUnit(engine) as unit:  # the store then goes the usual way, and waits
        assert SqlPresenceStore(unit)._clock_tick() == start + 2
        unit.commit()
    holder.join()
    engine.dispose()


def test_a_transaction_that_already_wrote_is_never_rolled_back_by_the_lock_wait(tmp_path):
    path = tmp_path / "p.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE t (x INTEGER)")
    raw.execute("INSERT INTO t VALUES (1)")  # pysqlite opened a transaction for it
    assert raw.in_transaction
    assert first_write(raw, "INSERT INTO t VALUES (2)") is None  # not its first write: left alone
    raw.execute("INSERT INTO t VALUES (2)")
    raw.commit()
    assert raw.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]
    raw.close()


def test_an_error_other_than_the_lock_is_left_to_the_usual_path_and_the_timeout_restored(tmp_path):
    raw = sqlite3.connect(tmp_path / "p.db", timeout=7)
    assert first_write(raw, "UPDATE no_such_table SET x = 1") is None
    assert raw.execute("PRAGMA busy_timeout").fetchall()[0][0] == 7_000
    assert first_write(raw, "CREATE TABLE t (x INTEGER)") == []  # and a plain first write just runs
    raw.close()
