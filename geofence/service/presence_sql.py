"""The SQL of the presence store (``geofence.service.presence_store``): its statements, run through the
driver (``DriverSql``: no SQLAlchemy compilation per batch on the hot path), the row codecs, and the
change feed's query. Apart so that the store reads as what it does with them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import and_, case, or_, select
from sqlalchemy.engine import Connection

from geofence.presence import Presence, PresenceState
from geofence.service.driver_sql import BulkSql, DriverSql, UnpreparedSql, execute, recordset, tuples
from geofence.service.tables._types import as_utc
from geofence.service.tables.presence import (
    LocationFixRow,
    PresenceClockRow,
    PresenceHeadRow,
    PresenceRow,
)
from geofence.service.wakeup import EVENTS_CHANNEL

PRESENCES = PresenceRow.__table__  # type: ignore[attr-defined]
HEADS = PresenceHeadRow.__table__  # type: ignore[attr-defined]
CLOCK = PresenceClockRow.__table__  # type: ignore[attr-defined]
FIXES = LocationFixRow.__table__  # type: ignore[attr-defined]
CHUNK = 900  # bound parameters per IN (...) list
OUTSIDE = PresenceState.OUTSIDE.value


def chunks(items: Iterable[str], size: int = CHUNK) -> Iterable[list[str]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def to_presence(row: Any) -> Presence:
    return Presence(
        device_id=row.device_id, zone_id=row.zone_id, state=PresenceState(row.state),
        since_at=as_utc(row.since_at), last_fix_at=as_utc(row.last_fix_at), entered_at=as_utc(row.entered_at),
        visit_id=row.visit_id, pending_fixes=row.pending_fixes, dwelled=bool(row.dwelled),
        lat=row.lat, lng=row.lng, version=row.version,
    )


def row_values(p: Presence, time: Callable[[datetime | None], Any]) -> dict[str, Any]:
    return {
        "state": p.state.value, "since_at": time(p.since_at), "last_fix_at": time(p.last_fix_at),
        "entered_at": time(p.entered_at), "visit_id": p.visit_id, "pending_fixes": p.pending_fixes,
        "dwelled": p.dwelled, "lat": p.lat, "lng": p.lng,
    }


P, H = PRESENCES.c, HEADS.c
ROW_WHERE = "WHERE device_id = :b_device_id AND zone_id = :b_zone_id AND version = :b_version"
PRESENCE_COLUMNS = (
    "state", "since_at", "last_fix_at", "entered_at", "visit_id", "pending_fixes", "dwelled", "lat", "lng",
    "version",
)
# PostgreSQL's types of the columns written in bulk (``BulkSql``: the rows' JSON read as a record set)
PG_TYPES = {
    "device_id": "text", "zone_id": "text", "state": "text", "since_at": "timestamptz",
    "last_fix_at": "timestamptz", "entered_at": "timestamptz", "visit_id": "text", "pending_fixes": "integer",
    "dwelled": "boolean", "lat": "float8", "lng": "float8", "version": "integer", "rows_version": "integer",
    "seq": "bigint",
}
_ROW_KEY = (("b_device_id", "text"), ("b_zone_id", "text"), ("b_version", "integer"))
_ROW_MATCH = "p.device_id = v.b_device_id AND p.zone_id = v.b_zone_id AND p.version = v.b_version"
UPDATE = BulkSql(
    "UPDATE presences SET " + ", ".join(f"{c} = :{c}" for c in PRESENCE_COLUMNS) + " " + ROW_WHERE,
    "UPDATE presences AS p SET " + ", ".join(f"{c} = v.{c}" for c in PRESENCE_COLUMNS) + " FROM "
    + recordset([(c, PG_TYPES[c]) for c in PRESENCE_COLUMNS] + list(_ROW_KEY)) + " WHERE " + _ROW_MATCH,
)
DELETE = BulkSql(
    "DELETE FROM presences " + ROW_WHERE,
    "DELETE FROM presences AS p USING " + recordset(_ROW_KEY) + " WHERE " + _ROW_MATCH,
)
_INSERTED = ("device_id", "zone_id", *PRESENCE_COLUMNS)
INSERT = BulkSql(
    "INSERT INTO presences (device_id, zone_id, " + ", ".join(PRESENCE_COLUMNS) + ") VALUES"
    " (:device_id, :zone_id, " + ", ".join(f":{c}" for c in PRESENCE_COLUMNS) + ")",
    f"INSERT INTO presences ({', '.join(_INSERTED)}) SELECT {', '.join(_INSERTED)} FROM "
    + recordset([(c, PG_TYPES[c]) for c in _INSERTED]),
)
HEAD_WHERE = "WHERE device_id = :b_device_id AND version = :b_version"
_HEAD_SET = (("new_version", "integer"), ("new_last", "timestamptz"), ("b_seq", "bigint"),
             ("b_device_id", "text"), ("b_version", "integer"))
_HEAD_MATCH = "h.device_id = v.b_device_id AND h.version = v.b_version"
# a key violation on these, seen when a pipelined batch's answers come in, is a concurrent writer's row
VERSIONED_TABLES = frozenset({"presences", "presence_heads", "presence_clock"})
HEAD_CAS = BulkSql(  # a write that changed presence rows
    "UPDATE presence_heads SET version = :new_version, rows_version = :new_version,"
    " last_fix_at = :new_last, seq = :b_seq " + HEAD_WHERE,
    "UPDATE presence_heads AS h SET version = v.new_version, rows_version = v.new_version,"
    " last_fix_at = v.new_last, seq = v.b_seq FROM " + recordset(_HEAD_SET) + " WHERE " + _HEAD_MATCH,
)
BEAT = BulkSql(  # a heartbeat: only the last fix moved; cached copies of the rows stay good
    "UPDATE presence_heads SET version = ?, last_fix_at = ?, seq = ? WHERE device_id = ? AND version = ?",
    "UPDATE presence_heads AS h SET version = v.new_version, last_fix_at = v.new_last, seq = v.b_seq FROM "
    + tuples(_HEAD_SET) + " WHERE " + _HEAD_MATCH,  # its parameter sets are tuples in that order
)
HEAD_BUMP = DriverSql(
    "UPDATE presence_heads SET version = version + 1, rows_version = version + 1, seq = :b_seq"
    " WHERE device_id = :b_device_id"
)
_HEAD_COLUMNS = ("device_id", "version", "rows_version", "last_fix_at", "seq")
HEAD_INSERT = BulkSql(
    "INSERT INTO presence_heads (device_id, version, rows_version, last_fix_at, seq)"
    " VALUES (:device_id, :version, :rows_version, :last_fix_at, :seq)",
    f"INSERT INTO presence_heads ({', '.join(_HEAD_COLUMNS)}) SELECT {', '.join(_HEAD_COLUMNS)} FROM "
    + recordset([(c, PG_TYPES[c]) for c in _HEAD_COLUMNS]),
)
TICK = DriverSql("UPDATE presence_clock SET seq = seq + 1 WHERE id = 1 RETURNING seq")
CLOCK_INSERT = DriverSql("INSERT INTO presence_clock (id, seq, resets) VALUES (1, 1, 0)")
# the clock, and the heads stamped after the last tick seen, in one statement (one snapshot, one round
# trip per batch): the clock's row is the one without a device
# planned for its lower bound every time: a generic plan guesses the range at a third of the heads, and on
# a table whose statistics still describe it small (a new deployment, the benchmark) it chose to scan them
# all (seen: a sequential scan of the 20,000 heads in half the batches, ~1.2 ms each, once the ingest kept
# its connection and the statement ran prepared there)
FEED = UnpreparedSql(
    "SELECT NULL, seq, resets, NULL FROM presence_clock WHERE id = 1"
    " UNION ALL SELECT device_id, version, rows_version, last_fix_at FROM presence_heads WHERE seq > :seq"
)
# The hot path's statements run prepared (psycopg prepares a statement's fifth execution on a connection),
# and PostgreSQL then plans each execution anew while it estimates a custom plan cheaper than the generic
# one — which it always does for a JSON record set under ``LIMIT $n`` (``driver_sql.recordset``): the
# generic plan assumes 10 rows, the custom one the batch's 1 or 2. The plans are the same (an index probe
# a row); the planning cost ~0.15 ms a statement (measured with ``log_min_duration_statement``: the
# ``bind`` of the heads' write). Set for the rest of the transaction at the start of its writes
# (``versioned_writes.VersionedWrites.scope``, pipelined with them), not before its reads: the change feed's
# ``seq > $1`` is a range the generic plan would guess at a third of the heads, and scan them all
# (seen: a sequential scan of the 20,000 heads in every other batch).
GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"
NO_FEED = 2**62  # a tick no head has: the first look reads the clock alone
SQLITE_HEADS = (
    "SELECT device_id, version, rows_version, last_fix_at FROM presence_heads"
    " WHERE device_id IN (SELECT value FROM json_each(?))"
)
SQLITE_PRESENCES = (
    "SELECT device_id, zone_id, state, since_at, last_fix_at, entered_at, visit_id, pending_fixes, dwelled,"
    " lat, lng, version FROM presences WHERE device_id IN (SELECT value FROM json_each(?))"
)
STATES = {s.value: s for s in PresenceState}


def sqlite_time(text: str | None) -> datetime | None:
    """A time as SQLAlchemy stores it in SQLite (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC: see ``UtcDateTime``)."""
    return None if text is None else datetime.fromisoformat(text + "+00:00")  # aware: UTC itself
HEADS_FULL = select(H.device_id, H.version, H.rows_version, H.last_fix_at)
# the device's last fix when it is later than the row's (the row keeps the fix of its last change)
LAST_FIX = case(
    (and_(H.last_fix_at.is_not(None), or_(P.last_fix_at.is_(None), H.last_fix_at > P.last_fix_at)),
     H.last_fix_at),
    else_=P.last_fix_at,
)
WITH_HEAD = select(
    PRESENCES, H.version.label("head_version"), LAST_FIX.label("device_last_fix_at")
).select_from(PRESENCES.outerjoin(HEADS, H.device_id == P.device_id))
# The log's numbers are taken under the presence clock's row lock (held to commit on PostgreSQL; SQLite
# has one writer), so they commit in order: a consumer reading "seq > my cursor" never passes a number
# that a slower transaction has yet to commit. The NOTIFY is delivered at commit (to the consumers'
# listeners), and not at all on rollback.
EVENT_SEQ_SQLITE = "UPDATE presence_clock SET events = events + ? WHERE id = 1 RETURNING events"
EVENT_SEQ_PG = (
    "UPDATE presence_clock SET events = events + %s WHERE id = 1"
    " RETURNING events, pg_notify('" + EVENTS_CHANNEL + "', '')"
)
# the same with the unit of work's tick (``SqlPresenceStore.take_event_numbers``)
TICK_EVENTS_SQLITE = (
    "UPDATE presence_clock SET seq = seq + 1, events = events + ? WHERE id = 1 RETURNING seq, events"
)
TICK_EVENTS_PG = (
    "UPDATE presence_clock SET seq = seq + 1, events = events + %s WHERE id = 1"
    " RETURNING seq, events, pg_notify('" + EVENTS_CHANNEL + "', '')"
)


def read_devices(
    conn: Connection, chunk: list[str]
) -> tuple[list[tuple[str, int, int, datetime | None]], list[Presence]]:
    """Heads (device, version, rows_version, last fix) and presence rows of these devices. On SQLite, raw
    rows whose times are parsed here: SQLAlchemy's SQLite datetime parsing is most of the cost of a device
    read in full (measured: ~480 us per device of ~10 rows through it, 55 us for the SQL alone)."""
    if conn.dialect.name != "sqlite":
        stmt = HEADS_FULL.where(H.device_id.in_(chunk))
        heads = [(d, v, rv, as_utc(t)) for d, v, rv, t in conn.execute(stmt)]
        rows = [to_presence(r) for r in conn.execute(select(PRESENCES).where(P.device_id.in_(chunk)))]
        return heads, rows
    ids = (json.dumps(chunk),)
    time, states = sqlite_time, STATES
    heads = [(d, v, rv, time(t)) for d, v, rv, t in execute(conn, SQLITE_HEADS, ids)]
    rows = [
        Presence(d, z, states[state], time(since), time(last), time(entered),
                 visit, pending, bool(dwelled), lat, lng, version)
        for d, z, state, since, last, entered, visit, pending, dwelled, lat, lng, version
        in execute(conn, SQLITE_PRESENCES, ids)
    ]
    return heads, rows
