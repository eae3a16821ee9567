"""Hot-path statements as driver SQL, for both databases.

A small ingest batch (100 fixes over HTTP) runs a handful of statements, and through SQLAlchemy each costs
tens of microseconds more than the database work (cache-key lookup, parameter processing, result wrapping;
~50 us a statement even with ``exec_driver_sql``): measured, most of such a batch's database time. These few
run on the driver's own cursor, in the transaction SQLAlchemy began on that connection (``run``), written
once with ``:name`` parameters (SQLite's style) and rendered as ``%(name)s`` for psycopg. Driver errors
come out as SQLAlchemy's exceptions, as from any other statement. Times are bound as ``UtcDateTime`` stores
them: UTC ``YYYY-MM-DD HH:MM:SS.ffffff`` text on SQLite, aware values on PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import floordiv, sub
from typing import Any

import msgspec
import numpy as np
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

_PARAM = re.compile(r"(?<![:\w]):(\w+)")


class DriverSql:
    """One statement, rendered for SQLite and for PostgreSQL (psycopg)."""

    __slots__ = ("pg", "sqlite")
    prepare: bool | None = None  # psycopg's ``prepare`` for it (None: prepared from its fifth execution)

    def __init__(self, sql: str) -> None:
        self.sqlite = " ".join(sql.split())
        self.pg = _PARAM.sub(r"%(\1)s", self.sqlite).replace("?", "%s")  # named, or positional

    def run(
        self, conn: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    ) -> Any:
        """Execute (``executemany`` for a list of parameter sets); returns the driver's cursor."""
        if conn.dialect.name == "sqlite":
            return execute(conn, self.sqlite, params)
        return execute(conn, self.pg, params, prepare=self.prepare)


class UnpreparedSql(DriverSql):
    """A statement PostgreSQL plans for its values at every execution: never prepared (psycopg prepares
    a statement at its fifth execution on a connection, and PostgreSQL may then settle on a generic plan,
    one for any value). For a range whose width only the value tells, such as the change feed's
    ``seq > $1`` (the few heads written since the last look, or all of them)."""

    __slots__ = ()
    prepare = False


class BulkSql(DriverSql):
    """A statement run for many parameter sets at once: on SQLite with ``executemany`` (``DriverSql``), on
    PostgreSQL as one statement (``bulk``) whose parameters are the sets as a JSON array and their number,
    read as rows: mappings by ``json_to_recordset`` (``recordset``), tuples by position (``tuples``).

    Why: per parameter set, psycopg's ``executemany`` costs ~10 us of Python (binding, the pipeline's
    queue) and the backend ~9 (a bind and an execute of the prepared statement each); one statement over
    a JSON array costs ~1 + ~5 (msgspec encodes it in C; arrays bound as ``unnest`` parameters cost ~5 us
    of Python a set, psycopg dumping their elements one by one). Measured on the local server with
    2,000 versioned head updates a statement; an ingest worker writes thousands of heads and presences a
    batch. The meaning is the same: the rowcount of an ``UPDATE``/``DELETE`` over the rows counts those
    that matched, as the sum of ``executemany``'s does, so a versioned write that lost a race is still seen,
    and a duplicate key fails an ``INSERT`` either way. Values go through JSON exactly: strings, integers,
    booleans, NULL, floats (shortest round-trip form, read back to the same double; NaN and infinities
    would become NULL, and none is written: positions are checked) and times (RFC 3339 with microseconds
    and offset)."""

    __slots__ = ("bulk",)

    def __init__(self, sql: str, bulk: str) -> None:
        super().__init__(sql)
        self.bulk = " ".join(bulk.split())

    def run(
        self, conn: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    ) -> Any:
        if isinstance(params, list) and conn.dialect.name == "postgresql":
            return execute(conn, self.bulk, (_json.encode(params).decode(), len(params)))
        return super().run(conn, params)


def recordset(columns: Sequence[tuple[str, str]]) -> str:
    """A ``BulkSql``'s parameter sets (mappings, by name) as the rows of ``v``, with the columns ``(name,
    type)``: ``json_to_recordset`` of the first parameter, limited to the second, the number of sets.

    The limit never cuts; it tells the planner how many rows the JSON holds. Without it the planner
    assumes 100 for any set-returning function, and against a table of some 10,000s of heads it prefers
    to scan and hash the whole table for every statement to one index probe a row (seen on 20,000
    devices: PostgreSQL's CPU per fix up by a third on a batch of few writes); with it, a prepared
    statement's generic plan assumes 10 rows and probes the key's index, as ``executemany`` did."""
    names = ", ".join(f"{n} {t}" for n, t in columns)
    return f"(SELECT * FROM json_to_recordset(%s::json) AS r({names}) LIMIT %s) AS v"


def tuples(columns: Sequence[tuple[str, str]]) -> str:
    """The same for parameter sets that are tuples, their values in the order of ``columns`` (a JSON array
    each: no mapping made per set)."""
    values = ", ".join(f"(e->>{k})::{t} AS {n}" for k, (n, t) in enumerate(columns))
    return f"(SELECT {values} FROM json_array_elements(%s::json) AS e LIMIT %s) AS v"


def _plain(value: object) -> object:
    """What msgspec does not encode itself, as psycopg would have bound it: a ``datetime`` subclass (a
    test's frozen clock) as its ISO text, which PostgreSQL reads back to the same instant, and a numpy
    scalar as its Python number; anything else fails (``TypeError``), as it would have in psycopg."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    raise NotImplementedError


_json = msgspec.json.Encoder(enc_hook=_plain)


def execute(conn: Connection, sql: str, params: Any = None, *, prepare: bool | None = None) -> Any:
    """Run driver SQL on the driver's cursor of ``conn`` (a list of parameter sets: ``executemany``);
    ``prepare``: psycopg's (PostgreSQL only; None: prepared from its fifth execution)."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if params is None:
            cursor.execute(sql)
        elif isinstance(params, list):
            cursor.executemany(sql, params)
        elif prepare is not None:
            cursor.execute(sql, params, prepare=prepare)
        else:
            cursor.execute(sql, params)
    except conn.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
        raise DBAPIError.instance(
            sql, params, exc, conn.dialect.dbapi.Error, hide_parameters=True, dialect=conn.dialect  # type: ignore[union-attr]
        ) from exc
    return cursor


def pipeline(conn: Connection) -> AbstractContextManager[Any]:
    """PostgreSQL: the statements run on the driver's cursor inside are sent without waiting for each
    one's answer (psycopg's pipeline mode); the answers come back together when the block ends, so the
    block costs one round trip however many statements it holds (and a ``fetch`` inside, one more for
    what was sent so far). A cursor's rowcount is known only then. Errors come out as SQLAlchemy's
    exceptions, at the end or at a fetch. Yields psycopg's ``Pipeline`` (``sync()`` for an answer needed
    at once); on SQLite, where a statement is a function call, nothing is changed and it yields None.

    Why: on PostgreSQL an ingest batch's writes run while it holds the presence clock's row lock (to its
    commit), so every round trip among them is time every other writer of every process waits."""
    return _pipelined(conn) if conn.dialect.name == "postgresql" else _NOTHING


_NOTHING = nullcontext()  # reusable: holds no state


@contextmanager
def _pipelined(conn: Connection) -> Iterator[Any]:
    error = conn.dialect.dbapi.Error  # type: ignore[union-attr]
    try:
        with conn.connection.driver_connection.pipeline() as pipe:  # type: ignore[union-attr]
            yield pipe
    except error as exc:
        raise DBAPIError.instance(
            "(pipelined statements)", None, exc, error, hide_parameters=True, dialect=conn.dialect
        ) from exc


def sqlite_time(value: datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite ``DateTime`` stores it, in UTC (``UtcDateTime``)."""
    if value is None:
        return None
    tz = value.tzinfo
    if tz is UTC:  # the common case (fix times, decoded): no conversion to make
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")
    if tz is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def sqlite_times(values: Sequence[datetime]) -> list[str]:
    """``sqlite_time`` of many aware times at once (~0.5 us each, against ~1.5 for ``isoformat``)."""
    micros = np.fromiter(map(floordiv, map(sub, values, repeat(_EPOCH)), repeat(_MICROSECOND)), np.int64,
                         len(values))
    return [t.replace("T", " ") for t in np.datetime_as_string(micros.astype("datetime64[us]")).tolist()]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _as_is(value: datetime | None) -> datetime | None:
    return value


def time_binder(conn: Connection) -> Callable[[datetime | None], Any]:
    """How this connection's database takes a time parameter."""
    return sqlite_time if conn.dialect.name == "sqlite" else _as_is
