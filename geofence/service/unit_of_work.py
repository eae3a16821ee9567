"""One transaction over the presence stores (``geofence.store.UnitOfWork``), with the two append-only
ones it writes besides presences: the zone-event log (numbered in commit order) and the raw fixes (kept
only when ``ingest.fix_retention_s`` asks for it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import delete, insert
from sqlmodel import Session

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.service import presence_sql as sql
from geofence.service.db import ConnectionUnit
from geofence.service.driver_sql import BulkSql, execute, recordset, time_binder
from geofence.service.ingest_answers import SqlAnswerStore
from geofence.service.presence_cache import PresenceCache
from geofence.service.presence_sql import FIXES
from geofence.service.presence_store import SqlPresenceStore
from geofence.store import AnswerStore

_EVENT_INSERT = BulkSql(  # on PostgreSQL one statement for the batch's events (see ``BulkSql``)
    # the device's customer looked up in the statement (SQLite) or joined (PostgreSQL): no statement, nor
    # on PostgreSQL a round trip while the batch holds the clock, of its own
    "INSERT INTO zone_events (id, seq, zone_id, device_id, customer_id, kind, at, visit_id, reason, lat, lng,"
    " recorded_at) VALUES (:id, :seq, :zone_id, :device_id,"
    " (SELECT customer_id FROM devices WHERE id = CAST(:device_id AS VARCHAR)),"
    " :kind, :at, :visit_id, :reason, :lat, :lng, :recorded_at)",
    "INSERT INTO zone_events (id, seq, zone_id, device_id, customer_id, kind, at, visit_id, reason, lat, lng,"
    " recorded_at) SELECT v.id, v.seq, v.zone_id, v.device_id, d.customer_id, v.kind, v.at, v.visit_id,"
    " v.reason, v.lat, v.lng, v.recorded_at FROM " + recordset([
        ("id", "text"), ("seq", "bigint"), ("zone_id", "text"), ("device_id", "text"),
        ("kind", "text"), ("at", "timestamptz"), ("visit_id", "text"),
        ("reason", "text"), ("lat", "float8"), ("lng", "float8"), ("recorded_at", "timestamptz"),
    ]) + " LEFT JOIN devices AS d ON d.id = v.device_id ORDER BY v.seq",
)


class SqlEventStore:
    """The zone-event log: each event gets the next ``seq`` in the transaction that writes it."""

    def __init__(self, session: Session | ConnectionUnit, presence: SqlPresenceStore | None = None) -> None:
        self.session = session
        self.presence = presence  # its unit of work's presence store: the tick and the numbers in one go
        self.added = 0  # events written in this unit of work (the unit wakes the consumers on commit)

    def add(self, events: Sequence[ZoneEvent], *, recorded_at: datetime) -> None:
        if not events:
            return
        conn = self.session.connection()
        sqlite = conn.dialect.name == "sqlite"
        if self.presence is not None:
            last = self.presence.take_event_numbers(len(events))
        else:
            numbers = sql.EVENT_SEQ_SQLITE if sqlite else sql.EVENT_SEQ_PG
            taken = execute(conn, numbers, (len(events),)).fetchall()
            if not taken:
                raise RuntimeError("presence_clock has no row: run the migrations (or create_schema)")
            last = int(taken[0][0])
        first = last - len(events) + 1
        self.added += len(events)
        time = time_binder(conn)
        received = time(recorded_at)
        _EVENT_INSERT.run(
            conn,
            [
                {
                    "id": e.id, "seq": first + k, "zone_id": e.zone_id, "device_id": e.device_id,
                    "kind": e.kind.value, "at": time(e.at),
                    "visit_id": e.visit_id, "reason": e.reason, "lat": e.lat, "lng": e.lng,
                    "recorded_at": received,
                }
                for k, e in enumerate(events)
            ],
        )


class SqlFixStore:
    def __init__(self, session: Session | ConnectionUnit) -> None:
        self.session = session

    def add(self, fixes: Sequence[LocationFix], *, received_at: datetime) -> None:
        if fixes:
            self.session.execute(
                insert(FIXES),
                [
                    {"device_id": f.device_id, "lat": f.lat, "lng": f.lng, "accuracy_m": f.accuracy_m,
                     "recorded_at": f.recorded_at, "received_at": received_at,
                     "client_fix_id": f.client_fix_id}
                    for f in fixes
                ],
            )

    def purge(self, *, before: datetime) -> int:
        result = self.session.execute(delete(FIXES).where(FIXES.c.received_at < before))
        return int(result.rowcount)  # type: ignore[attr-defined]


class SqlUnitOfWork:
    """One transaction over the presence stores (``geofence.store.UnitOfWork``)."""

    def __init__(
        self, session: Session | ConnectionUnit, *, retain_fixes: bool = False,
        cache: PresenceCache | None = None, on_events: Callable[[], None] | None = None,
        answers: AnswerStore | None = None,
    ) -> None:
        self.session = session
        self.presence = SqlPresenceStore(session, cache)
        self.events = SqlEventStore(session, self.presence)
        self.fixes = SqlFixStore(session) if retain_fixes else None
        self.answers = answers  # the batch's answers, kept for retried requests (``ingest_answers``)
        if isinstance(answers, SqlAnswerStore):  # sent in the writes' pipeline (PostgreSQL)
            answers.writes = self.presence.writes
        self.on_events = on_events  # after a commit that wrote events: wake this process's consumers

    def writing(self) -> AbstractContextManager[object]:
        return self.presence.write_scope()

    def commit(self) -> None:
        self.session.commit()
        self.presence.committed()
        if self.events.added:
            self.events.added = 0
            if self.on_events is not None:
                self.on_events()

    def rollback(self) -> None:
        self.session.rollback()
        self.presence.rolled_back()
        self.events.added = 0
