"""SQL implementations of ``geofence.store``: presences (optimistic versions), zone events, raw fixes.

Core SQL (not ORM objects) on the hot path: a batch reads its devices' open presences in one query and
writes only the rows that changed.

``PresenceCache`` (one per process) keeps the decoded rows this process last read or committed, each with a
*fingerprint* of its stored values (version, state, pending count, visit id and the two fix times as the
driver returns them, undecoded). A batch still reads every row of its devices from the database, but only
those cheap columns; a row whose fingerprint matches is taken from the cache, the others are read and
decoded in full. The database stays the truth: a row another worker (or the sweep, or an erasure)
changed, deleted or re-created has another fingerprint.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import String, and_, bindparam, delete, insert, or_, select, type_coerce, update
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


_C = PRESENCES.c
# undecoded by SQLAlchemy (SQLite: the stored text; PostgreSQL: the driver's datetime): compared, never parsed
_RAW_TIMES = (
    type_coerce(_C.last_fix_at, String).label("raw_last"), type_coerce(_C.since_at, String).label("raw_since")
)
_FINGERPRINTS = select(
    _C.device_id, _C.zone_id, _C.version, _C.state, _C.pending_fixes, _C.visit_id, *_RAW_TIMES
)
_FULL = select(PRESENCES, *_RAW_TIMES)
Fingerprint = tuple[Any, ...]


class PresenceCache:
    """Decoded presence rows of one process, by device then zone, each with its row fingerprint."""

    def __init__(self, max_devices: int = 250_000) -> None:
        self.max_devices = max_devices
        self.rows: dict[str, dict[str, tuple[Fingerprint, Presence]]] = {}

    def put(self, device_id: str, zone_id: str, fingerprint: Fingerprint, p: Presence) -> None:
        zones = self.rows.get(device_id)
        if zones is None:
            if len(self.rows) >= self.max_devices:  # oldest device first (insertion order)
                del self.rows[next(iter(self.rows))]
            zones = self.rows[device_id] = {}
        zones[zone_id] = (fingerprint, p)

    def clear(self) -> None:
        self.rows.clear()


class SqlPresenceStore:
    def __init__(self, session: Session, cache: PresenceCache | None = None) -> None:
        self.session = session
        self.cache = cache
        self.written: list[tuple[Presence, int]] = []  # (presence, stored version) for the cache

    def load(self, device_ids: Collection[str]) -> dict[str, list[Presence]]:
        found: dict[str, list[Presence]] = {}
        cache = self.cache
        if cache is None:
            for chunk in _chunks(device_ids):
                for row in self.session.execute(select(PRESENCES).where(_C.device_id.in_(chunk))):
                    found.setdefault(row.device_id, []).append(to_presence(row))
            return found
        cached = cache.rows
        stale: list[str] = []
        for chunk in _chunks(device_ids):
            for d, z, *fingerprint in self.session.execute(_FINGERPRINTS.where(_C.device_id.in_(chunk))):
                entry = cached.get(d, {}).get(z)
                if entry is not None and entry[0] == tuple(fingerprint):
                    found.setdefault(d, []).append(entry[1])
                elif not stale or stale[-1] != d:
                    stale.append(d)
        for chunk in _chunks(dict.fromkeys(stale)):
            fresh: dict[str, list[Presence]] = {}
            for row in self.session.execute(_FULL.where(_C.device_id.in_(chunk))):
                p = to_presence(row)
                fresh.setdefault(p.device_id, []).append(p)
                cache.put(p.device_id, p.zone_id, self._fingerprint(row), p)
            for d in chunk:
                found.pop(d, None)
                if d in fresh:
                    found[d] = fresh[d]
        return found

    @staticmethod
    def _fingerprint(row: Any) -> Fingerprint:
        return (row.version, row.state, row.pending_fixes, row.visit_id, row.raw_last, row.raw_since)

    def save(self, changed: Iterable[Presence]) -> None:
        changed = list(changed)
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
        if self.cache is not None:
            self.written.extend((p, p.version + 1) for p in changed if p.version > 0 or p.is_open)
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

    def __init__(
        self, session: Session, *, retain_fixes: bool = False, cache: PresenceCache | None = None
    ) -> None:
        self.session = session
        self.presence = SqlPresenceStore(session, cache)
        self.events = SqlEventStore(session)
        self.fixes = SqlFixStore(session) if retain_fixes else None

    def commit(self) -> None:
        self.session.commit()
        store = self.presence
        if store.cache is not None and store.written:
            self._remember(store.cache, store.written)
        store.written = []

    def rollback(self) -> None:
        self.session.rollback()
        self.presence.written = []

    def _remember(self, cache: PresenceCache, written: list[tuple[Presence, int]]) -> None:
        """Committed rows go into the cache with the fingerprint a read would give (the stored text of
        the times is what the dialect's bind processor made of them)."""
        dialect = self.session.get_bind().dialect
        bind = _C.last_fix_at.type._cached_bind_processor(dialect) or (lambda v: v)
        for p, version in written:
            stored = replace(p, version=version)
            raw_last = None if p.last_fix_at is None else bind(p.last_fix_at)
            raw_since = None if p.since_at is None else bind(p.since_at)
            fingerprint = (version, p.state.value, p.pending_fixes, p.visit_id, raw_last, raw_since)
            cache.put(p.device_id, p.zone_id, fingerprint, stored)
