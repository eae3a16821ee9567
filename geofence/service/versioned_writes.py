"""The presence store's versioned writes, sent together on PostgreSQL (``VersionedWrites``).

Every writer holds the presence clock's row lock from its tick to its commit (PostgreSQL), so each
round trip among a batch's writes is time every other writer of every process waits. Inside ``scope``
the statements go out without waiting for each one's answer (psycopg's pipeline mode: one round trip for
the events, heartbeats, presence rows and heads), and what a versioned write must have matched is
checked when the answers are in, at the end of the scope, before the commit: a lost race is still a
``ConflictError`` (and a retry), raised a few statements later. The batch's answer, kept for retried
requests, is its first statement (``claim``): one round trip with the clock's tick. On SQLite, where a
statement is a function call, every check is made at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from geofence.service import presence_sql as sql
from geofence.service.driver_sql import execute, pipeline
from geofence.store import ConflictError


class VersionedWrites:
    def __init__(self) -> None:
        self.pipe: Any = None  # psycopg's pipeline, inside ``scope`` on PostgreSQL
        self._checks: list[tuple[Any, int, str]] = []  # (cursor, rows it must have matched, why not)
        self._claims: dict[str, Callable[[], Exception]] = {}  # table: what its key violation means

    @contextmanager
    def scope(self, conn: Connection) -> Iterator[None]:
        """The scope of a batch's writes (``geofence.store.UnitOfWork.writing``)."""
        try:
            with pipeline(conn) as self.pipe:
                if self.pipe is not None:
                    execute(conn, sql.GENERIC_PLANS)  # for the writes that follow: see there
                yield
            for cursor, expected, why in self._checks:
                if cursor.rowcount != expected:
                    raise ConflictError(why)
        except IntegrityError as exc:  # a key taken: a claim's, or a row or head created since the read
            table = getattr(getattr(exc.orig, "diag", None), "table_name", None)
            if table in self._claims:
                raise self._claims[table]() from exc
            if table in sql.VERSIONED_TABLES:
                raise ConflictError("a presence or head was created concurrently") from exc
            raise
        finally:
            self.pipe = None
            self._checks.clear()
            self._claims.clear()

    def claim(self, table: str, taken: Callable[[], Exception]) -> None:
        """Inside ``scope``: a key inserted into ``table`` that another transaction may have taken first;
        its violation, when the answers are in, is raised as ``taken()`` (an answer kept for retried
        requests: ``ingest_answers``)."""
        self._claims[table] = taken

    def expect(self, cursor: Any, expected: int, why: str) -> None:
        """A versioned write matched every row it names, or ``ConflictError`` (inside ``scope`` on
        PostgreSQL: when its answer is in)."""
        if self.pipe is not None:
            self._checks.append((cursor, expected, why))
        elif cursor.rowcount != expected:
            raise ConflictError(why)

    def answer_now(self) -> None:
        """Inside ``scope`` on PostgreSQL: the answers of what was sent so far (a row count needed at
        once: a rare write); nothing elsewhere."""
        if self.pipe is not None:
            self.pipe.sync()
