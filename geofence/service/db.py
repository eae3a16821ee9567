"""Engine and sessions. SQLite is the embedded default; PostgreSQL when the URL says so."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

# SQLite's own checkpoints are PASSIVE: with two API workers writing and reading all the time one rarely
# finds no reader behind it, so the WAL is seldom reset and grows (measured: 2.6-3 GB in the benchmark's
# cold round over HTTP), and every page read then searches more of the WAL's index. Past this size, the
# next transaction to begin first runs a RESTART checkpoint (it waits for the readers, so the WAL resets),
# and ``journal_size_limit`` cuts the file back to half of it on reset.
WAL_RESTART_BYTES = 64 * 2**20
WAL_LOOK_EVERY_S = 1.0  # how often the WAL file's size is looked at (per engine)
WAL_RESTART_WAIT_MS = 50  # how long the RESTART checkpoint may wait for readers (and hold off writers)
# The WAL is copied back into the database by a background thread (``_Checkpointer``), not by the commit
# that happens to pass SQLite's automatic threshold: that commit used to take ~100 ms instead of ~0.3 ms,
# ~15 % of the in-process ingest's time. SQLite's own checkpoints are kept as a backstop, far above.
CHECKPOINT_BYTES = 24 * 2**20  # the background thread checkpoints a WAL once it is this long (at 8 MB it
# copied pages that later commits rewrote again: 142k against 148-149k fixes/s in-process, single runs)
CHECKPOINT_LOOK_S = 0.05  # how often it looks
BACKSTOP_PAGES = 40_000  # SQLite's automatic checkpoint (~160 MB), should the thread fall behind


def make_engine(url: str) -> Engine:
    """Create an engine; file SQLite gets WAL and a busy timeout so the API and dispatcher can share it."""
    if url.startswith("sqlite"):
        in_memory = url in ("sqlite://", "sqlite:///:memory:")
        if in_memory:
            engine = create_engine(
                url, connect_args={"check_same_thread": False}, poolclass=StaticPool
            )
        else:
            path = url.split("///", 1)[-1]
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # LIFO: a checkout takes the connection returned last, whose page cache is warm. SQLite drops
            # a connection's whole page cache when another connection wrote since its last read, so with
            # the default FIFO queue the ingest alternated between the pool's connections once a second
            # thread (the zone sync) had made one, and read every page again: ~3x the page reads per request.
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                                   pool_use_lifo=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if not in_memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")  # see CHECKPOINT_BYTES
                cur.execute(f"PRAGMA journal_size_limit={WAL_RESTART_BYTES // 2}")
            cur.close()

        if not in_memory and engine.url.database:
            _restart_long_wal(engine, engine.url.database + "-wal")
            CHECKPOINTER.watch(engine.url.database)
            weakref.finalize(engine, CHECKPOINTER.unwatch, engine.url.database)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@contextmanager
def busy_timeout(raw: sqlite3.Connection, ms: int) -> Iterator[sqlite3.Connection]:
    """A pysqlite connection with its busy timeout at ``ms`` for a block, then as it was."""
    before = raw.execute("PRAGMA busy_timeout").fetchall()[0][0]
    raw.execute(f"PRAGMA busy_timeout={int(ms)}")
    try:
        yield raw
    finally:
        raw.execute(f"PRAGMA busy_timeout={int(before)}")


def _restart_long_wal(engine: Engine, wal_path: str) -> None:
    """See ``WAL_RESTART_BYTES``."""
    last_look = [0.0]

    @event.listens_for(engine, "begin")
    def _restart(conn: Any) -> None:
        now = time.monotonic()
        if now - last_look[0] < WAL_LOOK_EVERY_S:
            return
        last_look[0] = now
        try:
            size = os.path.getsize(wal_path)
        except OSError:
            return
        if size > WAL_RESTART_BYTES:
            # it holds off new writers while it waits for readers: wait briefly (a long read elsewhere,
            # an export, must not stall the feed), and try again at the next look
            with busy_timeout(conn.connection.driver_connection, WAL_RESTART_WAIT_MS) as raw:
                raw.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()


class _Checkpointer:
    """One daemon thread per process: every ``CHECKPOINT_LOOK_S`` it looks at the WAL of each database an
    engine of this process uses, and copies one longer than ``CHECKPOINT_BYTES`` back into the database
    (a PASSIVE checkpoint, on its own connection: writers and readers go on meanwhile; the GIL is free
    while SQLite works). The next write transaction then restarts the WAL from its beginning. A WAL that
    readers keep it from finishing is still bounded by ``WAL_RESTART_BYTES``.

    A WAL file keeps its length when the next writer restarts it, so its size alone would call for a
    checkpoint at every look, for ever: a WAL unchanged (size and modification time) since a checkpoint
    that copied all of it is left alone. Needless checkpoints take the WAL's read locks for a moment, and
    a writer that meets them cannot restart the WAL: it grows instead."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[str, int] = {}  # path -> engines using it
        self._pid = 0  # the process whose thread runs (a forked child starts its own)
        self.checkpoints = 0
        self.completed: dict[str, int] = {}  # path -> checkpoints that copied its whole WAL back
        self._copied: dict[str, tuple[int, int]] = {}  # path -> the WAL's (size, mtime) then

    def watch(self, path: str) -> None:
        with self._lock:
            self._watched[path] = self._watched.get(path, 0) + 1
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True).start()

    def watches(self, path: str) -> bool:
        with self._lock:
            return path in self._watched

    def unwatch(self, path: str) -> None:
        with self._lock:
            left = self._watched.get(path, 0) - 1
            if left > 0:
                self._watched[path] = left
            else:
                self._watched.pop(path, None)

    def _run(self) -> None:
        conns: dict[str, sqlite3.Connection] = {}
        while True:
            time.sleep(CHECKPOINT_LOOK_S)
            with self._lock:
                paths = list(self._watched)
            for path in [p for p in conns if p not in paths]:
                conns.pop(path).close()
                self._copied.pop(path, None)
            for path in paths:
                try:
                    wal = os.stat(path + "-wal")
                    seen = (wal.st_size, wal.st_mtime_ns)
                    if wal.st_size < CHECKPOINT_BYTES or self._copied.get(path) == seen:
                        continue
                    conn = conns.get(path)
                    if conn is None:
                        conn = conns[path] = sqlite3.connect(path, timeout=0, check_same_thread=False)
                    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
                    self.checkpoints += 1
                    if not busy and frames == copied:
                        self._copied[path] = seen
                        self.completed[path] = self.completed.get(path, 0) + 1
                except (OSError, sqlite3.Error):  # gone, or busy: look again later
                    old = conns.pop(path, None)
                    if old is not None:
                        old.close()


CHECKPOINTER = _Checkpointer()
SQLITE_BUSY = 5
LOCK_NAP_S = 0.0001  # between two tries for SQLite's write lock (``first_write``)
LOCK_NAPS = 200  # then SQLite's own handler, up to the connection's timeout


def first_write(raw: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any] | None:
    """Run a transaction's first write on a pysqlite connection, waiting for the write lock in short naps;
    None when it did not run (the caller then runs it the usual way, with SQLite's own busy handler).

    Why: SQLite's busy handler sleeps 1, 2, 5, 10, 15 ms... between tries. Two API workers committing
    ~100 short transactions a second each (the lock held ~1 ms) slept ~12 % of their time in it, idle
    CPU while requests queued (measured with strace: ~550 sleeps in 8 s per worker, 1-15 ms each). Here
    the statement fails at once while the lock is held (``busy_timeout`` 0), the failed statement's
    ``BEGIN`` is rolled back — the transaction had written nothing, which is why only a first write may
    come here — and it is tried again ~0.1 ms later (``time.sleep``: the GIL is free meanwhile), up to
    ``LOCK_NAPS`` times."""
    if raw.in_transaction:  # something was written already: a rollback would lose it
        return None
    with busy_timeout(raw, 0):
        for _ in range(LOCK_NAPS):
            try:
                return raw.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", SQLITE_BUSY) & 0xFF != SQLITE_BUSY:
                    return None  # not the lock: the usual way raises it, wrapped as everywhere else
                raw.rollback()
            time.sleep(LOCK_NAP_S)
    return None


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


KEPT_IDLE_S = 2.0  # a kept connection unused this long goes back to the pool (its pre-ping checks the next)


class KeptConnection:
    """One Connection kept from batch to batch by a caller that runs them one at a time (the ingest,
    under its lock): no pool checkout, reset and, on PostgreSQL, pre-ping round trip each batch.

    Why it stays correct: it is handed back to the pool (closed) after any batch that raised, so a
    connection the server ended is used for at most the batch that found out (answered 503, as with a
    pooled one that failed mid-batch); and after ``KEPT_IDLE_S`` unused, when the pool's pre-ping is
    worth its round trip again. Not for an in-memory SQLite (a ``StaticPool``: one connection shared
    by every checkout, which a kept Connection would hold in whatever state it left it)."""

    def __init__(self, engine: Engine, idle_s: float = KEPT_IDLE_S) -> None:
        self.engine, self.idle_s = engine, idle_s
        self.enabled = not isinstance(engine.pool, StaticPool)
        self._conn: Connection | None = None
        self._used_at = 0.0
        # disposed: its pool is gone (a connection given back to it would be left open), so closed at once
        event.listen(engine, "engine_disposed", lambda _engine: self.release(invalidate=True))

    def take(self) -> Connection:
        conn, self._conn = self._conn, None
        if conn is not None and (conn.invalidated or time.monotonic() - self._used_at > self.idle_s):
            conn.close()
            conn = None
        return conn if conn is not None else self.engine.connect()

    def give_back(self, conn: Connection, *, failed: bool) -> None:
        if failed or not self.enabled or conn.invalidated or conn.in_transaction():
            conn.close()  # rolls back what is open, returns the connection to the pool (or drops it)
            return
        self.release()
        self._conn, self._used_at = conn, time.monotonic()

    def release(self, *, invalidate: bool = False) -> None:
        """Hand the kept connection back to the pool (shutdown), or close it (``invalidate``)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            if invalidate:
                conn.invalidate()
            conn.close()


class ConnectionUnit:
    """What the presence stores use of a ``Session`` (``connection``, ``execute``, ``commit``,
    ``rollback``) on a bare Connection, checked out on first use (or a ``KeptConnection``'s). The ingest
    opens one per batch: a Session's own bookkeeping cost about as much as the transaction it ran
    (measured: ~210 us for a one-statement write, ~110 us through a Connection), and a batch away from
    every zone checks out nothing at all."""

    def __init__(self, engine: Engine, kept: KeptConnection | None = None) -> None:
        self._engine = engine
        self._kept = kept
        self._conn: Connection | None = None

    def connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect() if self._kept is None else self._kept.take()
        if not self._conn.in_transaction():
            self._conn.begin()  # explicitly: statements on the driver's cursor do not autobegin
        return self._conn

    def execute(self, statement: Any, params: Any = None) -> Any:
        return self.connection().execute(statement, params)

    def commit(self) -> None:
        if self._conn is not None and self._conn.in_transaction():
            self._conn.commit()

    def rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction():
            self._conn.rollback()

    def close(self, *, failed: bool = False) -> None:
        if self._conn is not None:
            if self._kept is not None:
                self._kept.give_back(self._conn, failed=failed)
            else:
                self._conn.close()  # rolls back anything left open, returns the connection to the pool
            self._conn = None

    def __enter__(self) -> ConnectionUnit:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_exc: object) -> None:
        self.close(failed=exc_type is not None)
