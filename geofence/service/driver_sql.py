"""Hot-path statements as driver SQL, for both databases.

A small ingest batch (100 fixes over HTTP) runs a handful of statements, and through SQLAlchemy each costs
tens of microseconds more than the database work (cache-key lookup, parameter processing, the ORM session):
measured, most of such a batch's database time. These few run with ``exec_driver_sql`` instead: written once
with ``:name`` parameters (SQLite's style) and rendered as ``%(name)s`` for psycopg. Times are bound as
``UtcDateTime`` stores them: UTC ``YYYY-MM-DD HH:MM:SS.ffffff`` text on SQLite, aware values on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection, CursorResult

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


class DriverSql:
    """One statement, rendered for SQLite and for PostgreSQL (psycopg)."""

    __slots__ = ("pg", "sqlite")

    def __init__(self, sql: str) -> None:
        self.sqlite = " ".join(sql.split())
        self.pg = _PARAM.sub(r"%(\1)s", self.sqlite)

    def run(
        self, conn: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    ) -> CursorResult[Any]:
        """Execute (``executemany`` for a list of parameter sets); DBAPI errors come out as SQLAlchemy's."""
        sql = self.sqlite if conn.dialect.name == "sqlite" else self.pg
        if params is None:
            return conn.exec_driver_sql(sql)
        return conn.exec_driver_sql(sql, params)  # type: ignore[arg-type]


def sqlite_time(value: datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite ``DateTime`` stores it, in UTC (``UtcDateTime``)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def _as_is(value: datetime | None) -> datetime | None:
    return value


def time_binder(conn: Connection) -> Callable[[datetime | None], Any]:
    """How this connection's database takes a time parameter."""
    return sqlite_time if conn.dialect.name == "sqlite" else _as_is
