"""SQL implementations of ``geofence.store``: presences (optimistic versions), zone events, raw fixes.

Core SQL (not ORM objects) on the hot path: a batch reads its devices' open presences in one query and
writes only the rows that changed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.presence import Presence, PresenceState
from geofence.service.tables._types import as_utc
from geofence.service.tables.customers import Device
from geofence.service.tables.presence import LocationFixRow, PresenceRow, ZoneEventRow
from geofence.store import ConflictError

PRESENCES = PresenceRow.__table__  # type: ignore[attr-defined]
EVENTS = ZoneEventRow.__table__  # type: ignore[attr-defined]
FIXES = LocationFixRow.__table__  # type: ignore[attr-defined]
DEVICES = Device.__table__  # type: ignore[attr-defined]
CHUNK = 900  # bound parameters per IN (...) list


def _chunks(items: Iterable[str], size: int = CHUNK) -> Iterable[list[str]]:
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


def _values(p: Presence) -> dict[str, Any]:
    return {
        "state": p.state.value, "since_at": p.since_at, "last_fix_at": p.last_fix_at,
        "entered_at": p.entered_at, "visit_id": p.visit_id, "pending_fixes": p.pending_fixes,
        "dwelled": p.dwelled, "lat": p.lat, "lng": p.lng,
    }


_VERSIONED = and_(
    PRESENCES.c.device_id == bindparam("b_device_id"),
    PRESENCES.c.zone_id == bindparam("b_zone_id"),
    PRESENCES.c.version == bindparam("b_version"),
)
_UPDATE = update(PRESENCES).where(_VERSIONED)


class SqlPresenceStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def load(self, device_ids: Collection[str]) -> dict[str, list[Presence]]:
        found: dict[str, list[Presence]] = {}
        for chunk in _chunks(device_ids):
            for row in self.session.execute(select(PRESENCES).where(PRESENCES.c.device_id.in_(chunk))):
                found.setdefault(row.device_id, []).append(to_presence(row))
        return found

    def save(self, changed: Iterable[Presence]) -> None:
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for p in changed:
            key = {"b_device_id": p.device_id, "b_zone_id": p.zone_id, "b_version": p.version}
            if p.version == 0:
                if p.is_open:
                    row = {"device_id": p.device_id, "zone_id": p.zone_id, "version": 1}
                    inserts.append({**row, **_values(p)})
            else:  # an exited presence stays as an "outside" row: its last_fix_at stops late fixes
                updates.append({**key, "version": p.version + 1, **_values(p)})
        # executemany, one statement each: the rowcount of a versioned UPDATE/DELETE is the number of rows
        # that still had the version we read; anything less means another writer got there first
        if updates and self.session.execute(_UPDATE, updates).rowcount != len(updates):  # type: ignore[attr-defined]
            raise ConflictError("a presence changed concurrently")
        if inserts:
            try:  # the transaction is rolled back and the batch retried on conflict
                self.session.execute(insert(PRESENCES), inserts)
            except IntegrityError as exc:
                raise ConflictError("a presence was created concurrently") from exc

    def for_zone(self, zone_id: str) -> list[Presence]:
        rows = self.session.execute(
            select(PRESENCES)
            .where(PRESENCES.c.zone_id == zone_id)
            .where(PRESENCES.c.state != PresenceState.OUTSIDE.value)
        )
        return [to_presence(r) for r in rows]

    def purge_outside(self, *, before: datetime) -> int:
        """Drop "outside" rows whose last fix is older than any fix still accepted (they guard nothing)."""
        result = self.session.execute(
            delete(PRESENCES)
            .where(PRESENCES.c.state == PresenceState.OUTSIDE.value)
            .where(PRESENCES.c.last_fix_at < before)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def due_for_sweep(self, at: datetime, *, silent_since: datetime, limit: int) -> list[Presence]:
        c = PRESENCES.c
        stmt = (
            select(PRESENCES)
            .where(c.state != PresenceState.OUTSIDE.value)
            .where(or_(and_(c.state == PresenceState.INSIDE.value, c.dwelled.is_(False),
                            c.entered_at.is_not(None), c.entered_at <= at),
                       c.last_fix_at <= silent_since))
            .order_by(c.last_fix_at)
            .limit(limit)
        )
        return [to_presence(r) for r in self.session.execute(stmt)]


class SqlEventStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, events: Sequence[ZoneEvent], *, recorded_at: datetime) -> None:
        if not events:
            return
        device_ids = {e.device_id for e in events}
        customers = dict(
            self.session.execute(
                select(DEVICES.c.id, DEVICES.c.customer_id).where(DEVICES.c.id.in_(device_ids))
            ).all()
        )
        self.session.execute(
            insert(EVENTS),
            [
                {
                    "id": e.id, "zone_id": e.zone_id, "device_id": e.device_id,
                    "customer_id": customers.get(e.device_id), "kind": e.kind.value, "at": e.at,
                    "visit_id": e.visit_id, "reason": e.reason, "lat": e.lat, "lng": e.lng,
                    "recorded_at": recorded_at,
                }
                for e in events
            ],
        )


class SqlFixStore:
    def __init__(self, session: Session) -> None:
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

    def __init__(self, session: Session, *, retain_fixes: bool = False) -> None:
        self.session = session
        self.presence = SqlPresenceStore(session)
        self.events = SqlEventStore(session)
        self.fixes = SqlFixStore(session) if retain_fixes else None

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()
