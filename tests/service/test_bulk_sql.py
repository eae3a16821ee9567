"""``BulkSql`` on PostgreSQL (one statement over a JSON record set) writes exactly what ``executemany`` of
the same statement does, and counts the same rows: the presence store's versioned writes rest on that
rowcount. Each statement runs both ways from the same table contents on the same parameter sets, with
the values JSON could bend (NULLs, times with offsets and microseconds, floats with every digit, quotes
and backslashes, non-ASCII) and one stale version among them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from geofence.service import presence_sql as sql
from geofence.service.db import create_schema, make_engine
from geofence.service.driver_sql import BulkSql, DriverSql

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 12, 7, 3, 4, 5, 678901, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))
DEVICES = ["dev-1", "d'quote\"2", "d\\back3", "dé🙂4"]
ZONES = ["zone-a", "zone'b"]


@pytest.fixture
def pg(pg_url: str) -> Iterator[Engine]:
    eng = make_engine(pg_url)
    create_schema(eng)
    yield eng
    with eng.begin() as conn:
        conn.execute(text("TRUNCATE presences, presence_heads, zone_events"))
    eng.dispose()


def _seed(conn: Connection) -> None:
    conn.execute(text("TRUNCATE presences, presence_heads, zone_events"))
    for k, d in enumerate(DEVICES):
        conn.execute(text("INSERT INTO presence_heads (device_id, version, rows_version, last_fix_at, seq)"
                          " VALUES (:d, :v, :v, :t, 1)"), {"d": d, "v": k + 1, "t": T0})
        for z in ZONES:
            conn.execute(text(
                "INSERT INTO presences (device_id, zone_id, state, since_at, last_fix_at, entered_at,"
                " visit_id, pending_fixes, dwelled, lat, lng, version) VALUES (:d, :z, 'inside', :t, :t, :t,"
                " 'v', 0, false, 1.5, 2.5, :v)"), {"d": d, "z": z, "t": T0, "v": k + 1})


def _tables(conn: Connection) -> tuple[list[Any], ...]:
    heads = conn.execute(text("SELECT * FROM presence_heads ORDER BY device_id")).all()
    rows = conn.execute(text("SELECT * FROM presences ORDER BY device_id, zone_id")).all()
    events = conn.execute(text("SELECT * FROM zone_events ORDER BY seq")).all()
    return [tuple(r) for r in heads], [tuple(r) for r in rows], [tuple(r) for r in events]


def _both_ways(engine: Engine, stmt: BulkSql, params: list[Any]) -> int:
    """Run ``stmt`` as ``executemany`` and in bulk from the same seed: the same rowcount, the same rows;
    the rowcount."""
    outcomes = []
    for run in (lambda c: DriverSql.run(stmt, c, params), lambda c: stmt.run(c, params)):
        with engine.connect() as conn:
            _seed(conn)
            count = run(conn).rowcount
            outcomes.append((count, _tables(conn)))
            conn.rollback()
    assert outcomes[0] == outcomes[1]
    return int(outcomes[0][0])


def _values(k: int) -> dict[str, Any]:
    """A presence's columns with the awkward values."""
    return {
        "state": ["dwelling", "inside", "entering", "exiting"][k % 4],
        "since_at": [T0, None, T0.astimezone(PLUS2), T0 + timedelta(microseconds=1)][k % 4],
        "last_fix_at": (T0 + timedelta(seconds=k, microseconds=7)).astimezone(PLUS2 if k % 2 else UTC),
        "entered_at": None if k == 1 else T0 - timedelta(days=400, microseconds=999_999),
        "visit_id": [None, "v'1", "v\\2", "vé"][k % 4],
        "pending_fixes": k, "dwelled": bool(k % 2),
        "lat": [0.1 + 0.2, -89.99999999999999, None, 1e-300][k % 4],
        "lng": [179.99999999999997, 5e-324, None, -0.0][k % 4],
    }


def test_presence_updates_and_deletes_count_and_write_alike(pg: Engine) -> None:
    # the last set's version is stale (another writer got there first): one row fewer is counted
    updates = [{**_values(k), "version": k + 2, "b_device_id": d, "b_zone_id": ZONES[k % 2],
                "b_version": k + 1 if k < 3 else 99} for k, d in enumerate(DEVICES)]
    assert _both_ways(pg, sql.UPDATE, updates) == 3
    deletes = [{"b_device_id": d, "b_zone_id": ZONES[1], "b_version": k + 1 if k != 2 else 0}
               for k, d in enumerate(DEVICES)]
    assert _both_ways(pg, sql.DELETE, deletes) == 3


def test_presence_and_head_inserts_write_alike(pg: Engine) -> None:
    inserts = [{**_values(k), "device_id": d, "zone_id": "zone-new", "version": 1}
               for k, d in enumerate(DEVICES)]
    assert _both_ways(pg, sql.INSERT, inserts) == 4
    heads = [{"device_id": f"{d}-new", "version": 1, "rows_version": 1,
              "last_fix_at": None if k == 3 else _values(k)["last_fix_at"], "seq": 2**40 + k}
             for k, d in enumerate(DEVICES)]
    assert _both_ways(pg, sql.HEAD_INSERT, heads) == 4


class _SubclassedTime(datetime):
    """A ``datetime`` subclass, as a frozen test clock hands out (msgspec encodes exact ``datetime`` only)."""


def test_head_writes_count_and_write_alike(pg: Engine) -> None:
    def last(k: int) -> datetime:  # every other one a subclass
        t = _values(k)["last_fix_at"]
        return _SubclassedTime.fromtimestamp(t.timestamp(), t.tzinfo) if k % 2 else t

    cas = [{"b_device_id": d, "b_version": k + 1 if k != 1 else 7, "new_version": k + 2,
            "new_last": last(k), "b_seq": np.int64(5)} for k, d in enumerate(DEVICES)]
    assert _both_ways(pg, sql.HEAD_CAS, cas) == 3
    beats = [(k + 2, _values(k)["last_fix_at"], 6, d, k + 1 if k != 0 else 3) for k, d in enumerate(DEVICES)]
    assert _both_ways(pg, sql.BEAT, beats) == 3


def test_zone_events_are_written_alike(pg: Engine) -> None:
    from geofence.service.unit_of_work import _EVENT_INSERT

    # the bulk statement joins the device's customer (``devices``), ``executemany`` looks it up (a scalar
    # subquery, as on SQLite): the same, for a device with a customer, one without, and one unregistered
    customers = {DEVICES[0]: "c0", DEVICES[1]: None, DEVICES[2]: "c'2"}

    def event(k: int, d: str) -> dict[str, Any]:
        v = _values(k)
        return {"id": f"e{k}'\\", "seq": 1000 + k, "zone_id": ZONES[k % 2], "device_id": d,
                "kind": ["enter", "dwell", "exit"][k % 3],
                "at": v["last_fix_at"], "visit_id": f"v{d}", "reason": "r\"é", "lat": v["lat"],
                "lng": v["lng"], "recorded_at": None if k == 2 else T0}

    with pg.begin() as conn:
        for d, c in customers.items():
            if c is not None:
                conn.execute(text("INSERT INTO customers (id, locale, tz, country, attributes)"
                                  " VALUES (:c, 'fr', 'Europe/Paris', 'FR', '{}')"), {"c": c})
            conn.execute(text("INSERT INTO devices (id, customer_id, platform, push_token_active)"
                              " VALUES (:d, :c, 'ios', true)"), {"d": d, "c": c})
    try:
        assert _both_ways(pg, _EVENT_INSERT, [event(k, d) for k, d in enumerate(DEVICES)]) == 4
    finally:
        with pg.begin() as conn:
            conn.execute(text("DELETE FROM devices"))
            conn.execute(text("DELETE FROM customers"))


def test_a_duplicate_key_fails_the_bulk_insert_as_it_fails_executemany(pg: Engine) -> None:
    from sqlalchemy.exc import IntegrityError

    row = {**_values(0), "device_id": DEVICES[0], "zone_id": ZONES[0], "version": 1}
    for run in (lambda c: DriverSql.run(sql.INSERT, c, [row]), lambda c: sql.INSERT.run(c, [row])):
        with pg.connect() as conn:
            _seed(conn)
            with pytest.raises(IntegrityError):
                run(conn)
            conn.rollback()


def test_the_change_feed_is_never_prepared_so_each_read_is_planned_for_its_bound(pg: Engine) -> None:
    # psycopg prepares a statement at its fifth execution on a connection; PostgreSQL may then keep a
    # generic plan for ``seq > $1``, which cannot know the range is the few heads since the last look
    prepared = ("SELECT count(*) FROM pg_prepared_statements"
                " WHERE statement LIKE '%FROM presence_heads WHERE seq >%'")
    with pg.connect() as conn:
        _seed(conn)
        for _ in range(8):
            sql.FEED.run(conn, {"seq": 0}).fetchall()
        assert conn.execute(text(prepared)).scalar() == 0
        for _ in range(8):  # the same text as an ordinary driver statement: prepared (the check can fail)
            DriverSql(sql.FEED.sqlite).run(conn, {"seq": 0}).fetchall()
        assert conn.execute(text(prepared)).scalar() == 1
        conn.rollback()
