"""SQL implementations of ``geofence.store``: presences (optimistic versions), zone events, raw fixes.

Core SQL (not ORM objects) on the hot path. A batch reads one *head* row per busy device
(``presence_heads``: a version every write of the device's presences bumps) and takes the device's
presences from ``PresenceCache`` when the version matches what this process last read or committed; the
presences of any other device (changed by another worker, the sweep, an erasure, or not cached) are read
and decoded in full. Writes are versioned twice: each presence row (``UPDATE``/``DELETE … WHERE version``,
``INSERT`` on the primary key) and its device's head (``WHERE version = <read>``), so a cached copy is
exactly the stored one and a concurrent writer makes the batch roll back and retry.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.presence import Presence, PresenceState
from geofence.service.tables._types import as_utc
from geofence.service.tables.customers import Device
from geofence.service.tables.presence import LocationFixRow, PresenceHeadRow, PresenceRow, ZoneEventRow
from geofence.store import ConflictError, StoredDevice

PRESENCES = PresenceRow.__table__  # type: ignore[attr-defined]
HEADS = PresenceHeadRow.__table__  # type: ignore[attr-defined]
EVENTS = ZoneEventRow.__table__  # type: ignore[attr-defined]
FIXES = LocationFixRow.__table__  # type: ignore[attr-defined]
DEVICES = Device.__table__  # type: ignore[attr-defined]
CHUNK = 900  # bound parameters per IN (...) list
OUTSIDE = PresenceState.OUTSIDE.value


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


_C, _H = PRESENCES.c, HEADS.c
_ROW = and_(_C.device_id == bindparam("b_device_id"), _C.zone_id == bindparam("b_zone_id"),
            _C.version == bindparam("b_version"))
_UPDATE = update(PRESENCES).where(_ROW)
_DELETE = delete(PRESENCES).where(_ROW)
_HEAD_CAS = (
    update(HEADS)
    .where(and_(_H.device_id == bindparam("b_device_id"), _H.version == bindparam("b_version")))
    .values(version=bindparam("new_version"), last_fix_at=bindparam("new_last"))
)
_HEAD_BUMP = update(HEADS).where(_H.device_id == bindparam("b_device_id")).values(version=_H.version + 1)
_VERSIONS = select(_H.device_id, _H.version)
_SQLITE_VERSIONS = (
    "SELECT device_id, version FROM presence_heads WHERE device_id IN (SELECT value FROM json_each(?))"
)
_PG_VERSIONS = "SELECT device_id, version FROM presence_heads WHERE device_id = ANY(%s)"
_SQLITE_HEADS = (
    "SELECT device_id, version, last_fix_at FROM presence_heads"
    " WHERE device_id IN (SELECT value FROM json_each(?))"
)
_SQLITE_PRESENCES = (
    "SELECT device_id, zone_id, state, since_at, last_fix_at, entered_at, visit_id, pending_fixes, dwelled,"
    " lat, lng, version FROM presences WHERE device_id IN (SELECT value FROM json_each(?))"
)
_STATES = {s.value: s for s in PresenceState}


def _sqlite_time(text: str | None) -> datetime | None:
    """A time as SQLAlchemy stores it in SQLite (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC: see ``UtcDateTime``)."""
    return None if text is None else datetime.fromisoformat(text + "+00:00")  # aware: UTC itself
_HEADS_FULL = select(_H.device_id, _H.version, _H.last_fix_at)
# the device's last fix when it is later than the row's (the row keeps the fix of its last change)
_LAST_FIX = case(
    (and_(_H.last_fix_at.is_not(None), or_(_C.last_fix_at.is_(None), _H.last_fix_at > _C.last_fix_at)),
     _H.last_fix_at),
    else_=_C.last_fix_at,
)
_WITH_HEAD = select(
    PRESENCES, _H.version.label("head_version"), _LAST_FIX.label("device_last_fix_at")
).select_from(PRESENCES.outerjoin(HEADS, _H.device_id == _C.device_id))


class PresenceCache:
    """``StoredDevice`` copies of one process, valid while their head version is the stored one."""

    def __init__(self, max_devices: int = 250_000) -> None:
        self.max_devices = max_devices
        self.devices: dict[str, StoredDevice] = {}

    def put(self, device_id: str, stored: StoredDevice) -> None:
        devices = self.devices
        if device_id not in devices and len(devices) >= self.max_devices:
            del devices[next(iter(devices))]  # oldest device first (insertion order)
        devices[device_id] = stored

    def clear(self) -> None:
        self.devices.clear()


class SqlPresenceStore:
    def __init__(self, session: Session, cache: PresenceCache | None = None) -> None:
        self.session = session
        self.cache = cache
        self.read: dict[str, int] = {}  # head versions read in this unit of work (0: no head)
        self.loaded: dict[str, StoredDevice] = {}
        self.complete: set[str] = set()  # devices read whole (``load``), not just some of their rows
        self.pending: dict[str, tuple[int, StoredDevice]] = {}  # written, until commit

    def load(self, device_ids: Collection[str]) -> dict[str, StoredDevice]:
        found: dict[str, StoredDevice] = {}
        cached = self.cache.devices if self.cache is not None else {}
        stale: list[str] = []
        if cached:
            for d, version in self._versions(device_ids):
                copy = cached.get(d)
                if copy is not None and copy.version == version:
                    found[d] = copy
            stale = [d for d in device_ids if d not in found]
        else:
            stale = list(device_ids)
        for chunk in _chunks(stale):
            fresh: dict[str, StoredDevice] = {}
            heads, rows = self._read_whole(chunk)
            for d, version, last in heads:
                fresh[d] = StoredDevice({}, version, last)
            for p in rows:
                stored = fresh.get(p.device_id)
                if stored is None:  # a row without a head (written before heads existed)
                    stored = fresh[p.device_id] = StoredDevice()
                stored.presences[p.zone_id] = p
            for d, stored in fresh.items():
                found[d] = stored
                if self.cache is not None and stored.version > 0:
                    self.cache.put(d, stored)
        self.complete.update(device_ids)
        for d in device_ids:
            stored = found.get(d)
            self.read[d] = stored.version if stored is not None else 0
            if stored is not None:
                self.loaded[d] = stored
        return found

    def _read_whole(
        self, chunk: list[str]
    ) -> tuple[list[tuple[str, int, datetime | None]], list[Presence]]:
        """Heads and presence rows of these devices. On SQLite, raw rows whose times are parsed here:
        SQLAlchemy's SQLite datetime parsing is most of the cost of a device read in full (measured:
        ~480 us per device of ~10 rows through it, 55 us for the SQL alone)."""
        conn = self.session.connection()
        if conn.dialect.name != "sqlite":
            stmt = _HEADS_FULL.where(_H.device_id.in_(chunk))
            heads = [(d, v, as_utc(t)) for d, v, t in conn.execute(stmt)]
            rows = [to_presence(r) for r in conn.execute(select(PRESENCES).where(_C.device_id.in_(chunk)))]
            return heads, rows
        ids = (json.dumps(chunk),)
        heads = [(d, v, _sqlite_time(t)) for d, v, t in conn.exec_driver_sql(_SQLITE_HEADS, ids)]
        rows = [
            Presence(d, z, _STATES[state], _sqlite_time(since), _sqlite_time(last), _sqlite_time(entered),
                     visit, pending, bool(dwelled), lat, lng, version)
            for d, z, state, since, last, entered, visit, pending, dwelled, lat, lng, version
            in conn.exec_driver_sql(_SQLITE_PRESENCES, ids)
        ]
        return heads, rows

    def _versions(self, device_ids: Collection[str]) -> Iterable[tuple[str, int]]:
        """(device, head version) of these devices: one statement with one parameter on the hot path
        (an expanding ``IN`` costs SQLAlchemy about a microsecond per id to render and bind)."""
        conn = self.session.connection()
        ids = list(device_ids)
        if conn.dialect.name == "sqlite":
            return conn.exec_driver_sql(_SQLITE_VERSIONS, (json.dumps(ids),))  # type: ignore[return-value]
        if conn.dialect.name == "postgresql":
            return conn.exec_driver_sql(_PG_VERSIONS, (ids,))  # type: ignore[return-value]
        stmts = (_VERSIONS.where(_H.device_id.in_(chunk)) for chunk in _chunks(ids))
        return [(r[0], r[1]) for stmt in stmts for r in conn.execute(stmt)]

    def save(self, changed: Iterable[Presence], *, seen: Mapping[str, datetime] | None = None) -> None:
        seen = seen or {}
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        by_device: dict[str, list[Presence]] = {d: [] for d in seen}
        for p in changed:
            by_device.setdefault(p.device_id, []).append(p)
            key = {"b_device_id": p.device_id, "b_zone_id": p.zone_id, "b_version": p.version}
            if p.version == 0:
                if p.is_open:
                    row = {"device_id": p.device_id, "zone_id": p.zone_id, "version": 1}
                    inserts.append({**row, **_values(p)})
            elif p.is_open:
                updates.append({**key, "version": p.version + 1, **_values(p)})
            else:  # back outside: the head's last_fix_at is the late-fix guard from now on
                deletes.append(key)
        execute = self.session.execute
        # executemany, one statement each: the rowcount of a versioned UPDATE/DELETE is the number of rows
        # that still had the version we read; anything less means another writer got there first
        for stmt, params in ((_UPDATE, updates), (_DELETE, deletes)):
            if params and execute(stmt, params).rowcount != len(params):  # type: ignore[attr-defined]
                raise ConflictError("a presence changed concurrently")
        if inserts:
            try:  # the transaction is rolled back and the batch retried on conflict
                execute(insert(PRESENCES), inserts)
            except IntegrityError as exc:
                raise ConflictError("a presence was created concurrently") from exc
        self._write_heads(by_device, seen)

    def _write_heads(self, by_device: dict[str, list[Presence]], seen: Mapping[str, datetime]) -> None:
        cas: list[dict[str, Any]] = []
        new: list[dict[str, Any]] = []
        bump: list[str] = []
        for d, written in by_device.items():
            read = self.read.get(d)
            if read is None:  # not read here (zone removal, adoption): invalidate every cached copy
                bump.append(d)
                continue
            version, stored = self.pending.get(d) or (read, self.loaded.get(d) or StoredDevice())
            last = seen.get(d) or stored.last_fix_at
            if last is None:
                last = max((p.last_fix_at for p in written if p.last_fix_at is not None), default=None)
            if version == 0:
                new.append({"device_id": d, "version": 1, "last_fix_at": last})
            else:
                cas.append(
                    {"b_device_id": d, "b_version": version, "new_version": version + 1, "new_last": last}
                )
            self.pending[d] = (version + 1, self._after(stored, written, version + 1, last))
        execute = self.session.execute
        if cas and execute(_HEAD_CAS, cas).rowcount != len(cas):  # type: ignore[attr-defined]
            raise ConflictError("a device's presences changed concurrently")
        for d in bump:
            if execute(_HEAD_BUMP, {"b_device_id": d}).rowcount == 0:  # type: ignore[attr-defined]
                last = max((p.last_fix_at for p in by_device[d] if p.last_fix_at is not None), default=None)
                new.append({"device_id": d, "version": 1, "last_fix_at": last})
        if new:
            try:
                execute(insert(HEADS), new)
            except IntegrityError as exc:
                raise ConflictError("a device's presences were created concurrently") from exc

    @staticmethod
    def _after(
        stored: StoredDevice, written: list[Presence], version: int, last: datetime | None
    ) -> StoredDevice:
        """The device as stored once this write commits (what the cache keeps)."""
        if not written:  # only the head moved (a heartbeat): the presences, and the ingest's memo, stand
            return StoredDevice(stored.presences, version, last, stored.memo)
        presences = dict(stored.presences)
        for p in written:
            if p.is_open:
                presences[p.zone_id] = replace(p, version=p.version + 1)
            else:
                presences.pop(p.zone_id, None)
        return StoredDevice(presences, version, last)

    def committed(self) -> None:
        for d, (version, stored) in self.pending.items():
            self.read[d] = version
            if d in self.complete:  # read whole by ``load``: the cache may keep it
                self.loaded[d] = stored
                if self.cache is not None:
                    self.cache.put(d, stored)
        self.pending.clear()

    def for_zone(self, zone_id: str) -> list[Presence]:
        rows = self.session.execute(
            _WITH_HEAD.where(_C.zone_id == zone_id).where(_C.state != OUTSIDE)
        )
        return self._with_heads(rows)

    def _with_heads(self, rows: Iterable[Any]) -> list[Presence]:
        out: list[Presence] = []
        for r in rows:
            p = to_presence(r)
            if r.head_version is not None:
                self.read[p.device_id] = r.head_version
            last = as_utc(r.device_last_fix_at)
            out.append(p if last == p.last_fix_at else replace(p, last_fix_at=last))
        return out

    def purge_idle(self, *, before: datetime) -> int:
        outside = self.session.execute(
            delete(PRESENCES).where(_C.state == OUTSIDE).where(_C.last_fix_at < before)
        )
        heads = self.session.execute(
            delete(HEADS)
            .where(_H.last_fix_at < before)
            .where(~exists().where(_C.device_id == _H.device_id))
        )
        return int(outside.rowcount) + int(heads.rowcount)  # type: ignore[attr-defined]

    def due_for_sweep(self, at: datetime, *, silent_since: datetime, limit: int) -> list[Presence]:
        c = _C
        stmt = (
            _WITH_HEAD
            .where(c.state != OUTSIDE)
            .where(or_(and_(c.state == PresenceState.INSIDE.value, c.dwelled.is_(False),
                            c.entered_at.is_not(None), c.entered_at <= at),
                       _LAST_FIX <= silent_since))
            .order_by(_LAST_FIX, c.device_id)
            .limit(limit)
        )
        return self._with_heads(self.session.execute(stmt))


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
        self.presence.committed()

    def rollback(self) -> None:
        self.session.rollback()
        self.presence.pending.clear()
