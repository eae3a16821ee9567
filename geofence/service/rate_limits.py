"""Request-rate limits whose state is shared by every API process: one row per bucket in the database.

Why the database and not Redis: the limits must hold across processes (several uvicorn workers, or
several hosts) and the database is the one store every deployment already shares — PostgreSQL, or the
one SQLite file that the processes of a single-host deployment open together. Redis would be faster
but is one more server to run and secure for a check that costs one primary-key upsert. The spend runs
in the caller's transaction (the authentication's), so it adds one statement, not a transaction.

The algorithm is GCRA (the generic cell rate algorithm), which is a token bucket written as one number
per bucket — its *theoretical arrival time* ``tat`` — so that one ``INSERT .. ON CONFLICT DO UPDATE ..
RETURNING`` both decides and records, atomically under the row lock, with no read-modify-write race
between processes. ``gcra`` is the same decision in Python: the in-memory store uses it, and a test
checks that the SQL and it agree.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import case, delete, literal
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from geofence.service.tables.limits import RateLimitRow

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

_T = RateLimitRow.__table__  # type: ignore[attr-defined]


def gcra(tat_s: float | None, *, now_s: float, rate_per_s: float, burst: int) -> tuple[float, float]:
    """Spend one request from a bucket of ``burst`` refilled at ``rate_per_s``.

    Returns the new theoretical arrival time and the seconds to wait (0 = allowed). Same decisions as
    ``limits_http.take_token``: ``burst`` requests at once, then one every ``1 / rate_per_s`` seconds.
    """
    interval_s = 1.0 / rate_per_s
    base = now_s if tat_s is None or tat_s < now_s else tat_s
    over_s = base - now_s - (burst - 1) * interval_s
    if over_s <= 1e-9:
        return base + interval_s, 0.0
    return base, over_s


class RateStore(Protocol):
    def spend(
        self, connection: Connection | None, name: str, *, now_s: float, rate_per_s: float, burst: int
    ) -> float:
        """Spend one request from bucket ``name``; 0 when allowed, else the seconds to wait."""


class DatabaseRates:
    """Buckets in the ``rate_limits`` table: one upsert per spend, in the caller's transaction."""

    def spend(
        self, connection: Connection | None, name: str, *, now_s: float, rate_per_s: float, burst: int
    ) -> float:
        if rate_per_s <= 0 or burst <= 0:
            return 0.0
        assert connection is not None, "the database store spends in the caller's transaction"
        interval_s = 1.0 / rate_per_s
        tolerance_s = (burst - 1) * interval_s + 1e-9
        now = literal(now_s)
        base = case((_T.c.tat_s > now, _T.c.tat_s), else_=now)
        allowed = base - now <= tolerance_s
        insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
        stmt = (
            insert(_T)
            .values(name=name, tat_s=now_s + interval_s, allowed=True)
            .on_conflict_do_update(
                index_elements=[_T.c.name],
                set_={"tat_s": case((allowed, base + interval_s), else_=_T.c.tat_s), "allowed": allowed},
            )
            .returning(_T.c.tat_s, _T.c.allowed)
        )
        tat_s, ok = connection.execute(stmt).one()
        return 0.0 if ok else max(1e-3, tat_s - now_s - (burst - 1) * interval_s)


class MemoryRates:
    """Buckets in this process's memory (thread-safe; least recently used dropped past ``max_buckets``).

    For tests and single-process tools: N processes together allow N times the rate."""

    def __init__(self, *, max_buckets: int = 100_000) -> None:
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._max_buckets = max_buckets

    def spend(
        self, connection: Connection | None, name: str, *, now_s: float, rate_per_s: float, burst: int  # noqa: ARG002
    ) -> float:
        if rate_per_s <= 0 or burst <= 0:
            return 0.0
        with self._lock:
            tat_s, wait_s = gcra(self._tats.get(name), now_s=now_s, rate_per_s=rate_per_s, burst=burst)
            self._tats[name] = tat_s
            self._tats.move_to_end(name)
            while len(self._tats) > self._max_buckets:
                self._tats.popitem(last=False)
        return wait_s


def purge_full_buckets(connection: Connection, *, now_s: float) -> int:
    """Delete the rows of buckets that have refilled (their ``tat`` has passed): they hold nothing."""
    return connection.execute(delete(_T).where(_T.c.tat_s < now_s)).rowcount or 0


def purge_rate_limits_job(runtime: Runtime) -> int:
    """The periodic job: drop refilled buckets, keeping the table to the active ones."""
    from geofence.service import clock
    from geofence.service.db import session_scope

    with session_scope(runtime.engine) as session:
        return purge_full_buckets(session.connection(), now_s=clock.now().timestamp())
