"""Engine and sessions. SQLite is the embedded default; PostgreSQL when the URL says so."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine


def make_engine(url: str) -> Engine:
    """Create an engine; file SQLite gets WAL and a busy timeout so the API and dispatcher can share it."""
    if url.startswith("sqlite"):
        if url in ("sqlite://", "sqlite:///:memory:"):
            engine = create_engine(
                url, connect_args={"check_same_thread": False}, poolclass=StaticPool
            )
        else:
            path = url.split("///", 1)[-1]
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if url not in ("sqlite://", "sqlite:///:memory:"):
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                # checkpoint every ~40 MB of WAL, not every 4 MB: a page rewritten by many small ingest
                # commits (an index's right edge, a hot head) goes back to the database file once
                cur.execute("PRAGMA wal_autocheckpoint=10000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class WalCheckpointer:
    """Checkpoints a SQLite file's WAL from a thread of its own, every ``every_s``.

    Why: with only SQLite's automatic checkpoint, the commit that fills ``wal_autocheckpoint`` pages copies
    the WAL back into the database file and syncs it, inside the request that committed: measured with
    100-fix ingest batches, one commit in a few hundred took 100-260 ms, which is the feed's p99 over
    HTTP. Here the copy runs beside the requests (the sqlite3 module releases the GIL while SQLite works)
    and PASSIVE: it never waits for, nor blocks, a reader or a writer. The automatic checkpoint stays as
    the safety net, and the WAL rarely reaches it."""

    def __init__(self, path: str, *, every_s: float = 0.25) -> None:
        self.path = path
        self.every_s = every_s
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=1.0)
        try:
            while not self._stop.wait(self.every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error as exc:  # busy with another checkpoint: next time
                    logging.getLogger(__name__).debug("WAL checkpoint skipped: %s", exc)
        finally:
            conn.close()


def background_checkpoints(engine: Engine) -> WalCheckpointer | None:
    """A started ``WalCheckpointer`` for a file SQLite engine (None for PostgreSQL or memory)."""
    url = engine.url
    if engine.dialect.name != "sqlite" or not url.database or url.database == ":memory:":
        return None
    checkpointer = WalCheckpointer(url.database)
    checkpointer.start()
    return checkpointer


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def create_schema(engine: Engine) -> None:
    """Create every table. SQLite creates directly; PostgreSQL deployments run Alembic (see deploy/)."""
    import geofence.service.tables  # noqa: F401  (registers every table on the metadata)

    SQLModel.metadata.create_all(engine)
    from geofence.service.tables.presence import PresenceClockRow

    with Session(engine) as session:  # the presence clock's one row (the migrations make it too)
        if session.get(PresenceClockRow, 1) is None:
            session.add(PresenceClockRow(id=1))
            session.commit()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
