"""SQL implementations of ``geofence.store``: presences (optimistic versions), zone events, raw fixes.

Core SQL (not ORM objects) on the hot path. Each device has a *head* row (``presence_heads``: a version
every write of the device's presences bumps). ``PresenceCache`` keeps this process's copy of each device
it has read or written; a batch first reads the *change feed* — the heads written since the last tick of
``presence_clock`` it saw, one query whatever the batch — and drops (or, after a mere heartbeat, moves
on) the copies another writer changed. Cached devices then cost no read at all; the others are read and
decoded in full. Writes are versioned twice: each presence row (``UPDATE``/``DELETE … WHERE version``,
``INSERT`` on the primary key) and its device's head (``WHERE version = <read>``), so a concurrent
writer — or a copy gone stale behind the feed's back — makes the batch roll back, forget the devices it
wrote, and retry.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from msgspec.structs import replace
from sqlalchemy import and_, case, delete, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.presence import Presence, PresenceState
from geofence.service.db import ConnectionUnit, first_write
from geofence.service.driver_sql import DriverSql, execute, sqlite_times, time_binder
from geofence.service.tables._types import as_utc
from geofence.service.tables.presence import (
    LocationFixRow,
    PresenceClockRow,
    PresenceHeadRow,
    PresenceRow,
)
from geofence.service.wakeup import EVENTS_CHANNEL
from geofence.store import AnswerStore, ConflictError, StoredDevice

PRESENCES = PresenceRow.__table__  # type: ignore[attr-defined]
HEADS = PresenceHeadRow.__table__  # type: ignore[attr-defined]
CLOCK = PresenceClockRow.__table__  # type: ignore[attr-defined]
FIXES = LocationFixRow.__table__  # type: ignore[attr-defined]
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


def _values(p: Presence, time: Callable[[datetime | None], Any]) -> dict[str, Any]:
    return {
        "state": p.state.value, "since_at": time(p.since_at), "last_fix_at": time(p.last_fix_at),
        "entered_at": time(p.entered_at), "visit_id": p.visit_id, "pending_fixes": p.pending_fixes,
        "dwelled": p.dwelled, "lat": p.lat, "lng": p.lng,
    }


_C, _H = PRESENCES.c, HEADS.c
_ROW_WHERE = "WHERE device_id = :b_device_id AND zone_id = :b_zone_id AND version = :b_version"
_PRESENCE_COLUMNS = (
    "state", "since_at", "last_fix_at", "entered_at", "visit_id", "pending_fixes", "dwelled", "lat", "lng",
    "version",
)
_UPDATE = DriverSql(
    "UPDATE presences SET " + ", ".join(f"{c} = :{c}" for c in _PRESENCE_COLUMNS) + " " + _ROW_WHERE
)
_DELETE = DriverSql("DELETE FROM presences " + _ROW_WHERE)
_INSERT = DriverSql(
    "INSERT INTO presences (device_id, zone_id, " + ", ".join(_PRESENCE_COLUMNS) + ") VALUES"
    " (:device_id, :zone_id, " + ", ".join(f":{c}" for c in _PRESENCE_COLUMNS) + ")"
)
_HEAD_WHERE = "WHERE device_id = :b_device_id AND version = :b_version"
_HEAD_CAS = DriverSql(  # a write that changed presence rows
    "UPDATE presence_heads SET version = :new_version, rows_version = :new_version,"
    " last_fix_at = :new_last, seq = :b_seq " + _HEAD_WHERE
)
_BEAT = DriverSql(  # a heartbeat: only the last fix moved; cached copies of the rows stay good
    "UPDATE presence_heads SET version = ?, last_fix_at = ?, seq = ? WHERE device_id = ? AND version = ?"
)
_HEAD_BUMP = DriverSql(
    "UPDATE presence_heads SET version = version + 1, rows_version = version + 1, seq = :b_seq"
    " WHERE device_id = :b_device_id"
)
_HEAD_INSERT = DriverSql(
    "INSERT INTO presence_heads (device_id, version, rows_version, last_fix_at, seq)"
    " VALUES (:device_id, :version, :rows_version, :last_fix_at, :seq)"
)
_TICK = DriverSql("UPDATE presence_clock SET seq = seq + 1 WHERE id = 1 RETURNING seq")
_CLOCK_INSERT = DriverSql("INSERT INTO presence_clock (id, seq, resets) VALUES (1, 1, 0)")
# the clock, and the heads stamped after the last tick seen, in one statement (one snapshot, one round
# trip per batch): the clock's row is the one without a device
_FEED = DriverSql(
    "SELECT NULL, seq, resets, NULL FROM presence_clock WHERE id = 1"
    " UNION ALL SELECT device_id, version, rows_version, last_fix_at FROM presence_heads WHERE seq > :seq"
)
_NO_FEED = 2**62  # a tick no head has: the first look reads the clock alone
_SQLITE_HEADS = (
    "SELECT device_id, version, rows_version, last_fix_at FROM presence_heads"
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
_HEADS_FULL = select(_H.device_id, _H.version, _H.rows_version, _H.last_fix_at)
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
    """``StoredDevice`` copies of one process, kept current by the change feed (``SqlPresenceStore.follow``).

    Used under the ingest's lock (``GeofenceService``): a copy is read after the feed position it is
    trusted from, never before, which is what makes "nothing in the feed since" mean "still current".
    ``versions`` mirrors each copy's head version, and watchers (``watch``) hear of every change of it:
    the ingest keeps them in a column of its device tracks rather than look a batch's devices up here."""

    def __init__(self, max_devices: int = 250_000) -> None:
        self.max_devices = max_devices
        self.devices: dict[str, StoredDevice] = {}
        self.versions: dict[str, int] = {}
        self.seq: int | None = None  # the last clock tick whose heads were applied (None: never read)
        self.resets = 0
        self._watchers: list[weakref.WeakMethod] = []

    def watch(self, method: Callable[[dict[str, int], Sequence[str] | None, Sequence[int]], None]) -> None:
        """From now on, call ``method(versions, device_ids, new_versions)`` whenever copies' versions change
        (-1: no copy; ``device_ids`` None: every copy dropped). The method is held weakly."""
        if not any(w() == method for w in self._watchers):
            self._watchers = [w for w in self._watchers if w() is not None]
            self._watchers.append(weakref.WeakMethod(method))

    def _changed(self, device_ids: Sequence[str] | None, versions: Sequence[int]) -> None:
        for w in self._watchers:
            method = w()
            if method is not None:
                method(self.versions, device_ids, versions)

    def put(self, device_id: str, stored: StoredDevice) -> None:
        devices = self.devices
        if device_id not in devices and len(devices) >= self.max_devices:
            self.drop(next(iter(devices)))  # oldest device first (insertion order)
        devices[device_id] = stored
        self.versions[device_id] = stored.version
        if self._watchers:
            self._changed((device_id,), (stored.version,))

    def move_on(self, moves: Sequence[tuple[str, StoredDevice]]) -> None:
        """``put`` of copies already cached, at once (heartbeats: one notice for all)."""
        devices, versions = self.devices, self.versions
        for d, stored in moves:
            devices[d] = stored
            versions[d] = stored.version
        if self._watchers and moves:
            self._changed([d for d, _ in moves], [stored.version for _, stored in moves])

    def drop(self, device_id: str) -> None:
        if self.devices.pop(device_id, None) is not None:
            del self.versions[device_id]
            if self._watchers:
                self._changed((device_id,), (-1,))

    def apply(
        self, heads: Iterable[tuple[str, int, int, Any]], parse: Callable[[Any], datetime | None] = as_utc
    ) -> None:
        """Heads written by anyone since the last look: a copy at another version is dropped, unless only
        the head moved (a heartbeat: same ``rows_version``), when it moves on with it (``parse``: the
        stored last fix as a time; only the heads that move a copy need it)."""
        devices = self.devices
        for d, version, rows_version, last in heads:
            copy = devices.get(d)
            if copy is None or copy.version == version:
                continue
            if copy.rows_version == rows_version and version > copy.version:
                self.put(d, StoredDevice(copy.presences, version, parse(last), copy.memo, rows_version))
            else:
                self.drop(d)

    def clear(self) -> None:
        self.devices.clear()
        self.versions.clear()
        if self._watchers:
            self._changed(None, ())


def drop_presence_caches(session: Session) -> None:
    """For a writer that deletes presences or heads outside the store (an erasure): every worker's
    ``PresenceCache`` is dropped at its next batch (in this transaction: it takes effect on commit).
    Call it before deleting any row: it takes the clock row, which presence writers take first."""
    bumped = session.execute(update(CLOCK).where(CLOCK.c.id == 1).values(resets=CLOCK.c.resets + 1))
    if bumped.rowcount == 0:  # type: ignore[attr-defined]
        session.execute(insert(CLOCK).values(id=1, seq=0, resets=1))


def _new_head(device_id: str, last: Any, tick: int) -> dict[str, Any]:
    return {"device_id": device_id, "version": 1, "rows_version": 1, "last_fix_at": last, "seq": tick}


class SqlPresenceStore:
    def __init__(self, session: Session | ConnectionUnit, cache: PresenceCache | None = None) -> None:
        self.session = session
        self.cache = cache
        self.read: dict[str, int] = {}  # head versions read in this unit of work (0: no head)
        self.loaded: dict[str, StoredDevice] = {}
        self.complete: set[str] = set()  # devices read whole (``load``), not just some of their rows
        self.pending: dict[str, tuple[int, StoredDevice]] = {}  # written, until commit
        self.writing: set[str] = set()  # devices this unit of work writes (forgotten if it rolls back)
        self._tick: int | None = None  # this unit of work's clock tick, once it writes heads
        self._followed: int | None = None  # the feed position this unit of work read up to
        self._beats: list[tuple[str, int, datetime]] = []  # heartbeats written, until commit
        self._moved: list[str] | None = None  # devices in the feed read by ``follow`` (None: unknown)
        self._moved_last: dict[str, Any] = {}  # their heads' last fix, as the driver returned it
        self._parse: Callable[[Any], datetime | None] = as_utc

    def follow(self) -> None:
        """Apply the change feed to the cache: the heads stamped with a clock tick it has not seen."""
        cache = self.cache
        if cache is None or self._followed is not None:
            return
        conn = self.session.connection()
        rows = _FEED.run(conn, {"seq": _NO_FEED if cache.seq is None else cache.seq}).fetchall()
        clock = next((r for r in rows if r[0] is None), None)
        seq, resets = (int(clock[1]), int(clock[2])) if clock is not None else (0, 0)
        self._followed = seq
        if cache.seq is None or resets != cache.resets:
            cache.clear()  # first look, or an erasure: nothing cached can be trusted
            cache.seq, cache.resets = seq, resets
            return
        self._moved = []
        if seq == cache.seq:
            return
        # every tick up to ``seq`` has committed (ticks commit in order); in this snapshot, no later one
        heads = [r for r in rows if r[0] is not None]
        self._moved = [r[0] for r in heads]
        self._moved_last = {r[0]: r[3] for r in heads}
        self._parse = _sqlite_time if conn.dialect.name == "sqlite" else as_utc
        cache.apply(heads, self._parse)
        cache.seq = seq

    def moved(self) -> Collection[str] | None:
        self.follow()
        return self._moved

    def moved_last_fix(self, device_id: str) -> datetime | None:
        self.follow()
        raw = self._moved_last.get(device_id)
        return None if raw is None else self._parse(raw)

    def watch_versions(
        self, method: Callable[[dict[str, int], Sequence[str] | None, Sequence[int]], None]
    ) -> dict[str, int] | None:
        self.follow()
        if self.cache is None:
            return None
        self.cache.watch(method)
        return self.cache.versions

    def load(self, device_ids: Collection[str]) -> dict[str, StoredDevice]:
        found: dict[str, StoredDevice] = {}
        self.follow()
        cached = self.cache.devices if self.cache is not None else {}
        stale: list[str] = []
        for d in device_ids:
            copy = cached.get(d)
            if copy is None:
                stale.append(d)
            else:
                found[d] = copy
        for chunk in _chunks(stale):
            fresh: dict[str, StoredDevice] = {}
            heads, rows = self._read_whole(chunk)
            for d, version, rows_version, last in heads:
                fresh[d] = StoredDevice({}, version, last, None, rows_version)
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
        read = self.read
        for d in device_ids:
            stored = found.get(d)
            read[d] = stored.version if stored is not None else 0
        self.loaded.update(found)
        return found

    def _read_whole(
        self, chunk: list[str]
    ) -> tuple[list[tuple[str, int, int, datetime | None]], list[Presence]]:
        """Heads and presence rows of these devices. On SQLite, raw rows whose times are parsed here:
        SQLAlchemy's SQLite datetime parsing is most of the cost of a device read in full (measured:
        ~480 us per device of ~10 rows through it, 55 us for the SQL alone)."""
        conn = self.session.connection()
        if conn.dialect.name != "sqlite":
            stmt = _HEADS_FULL.where(_H.device_id.in_(chunk))
            heads = [(d, v, rv, as_utc(t)) for d, v, rv, t in conn.execute(stmt)]
            rows = [to_presence(r) for r in conn.execute(select(PRESENCES).where(_C.device_id.in_(chunk)))]
            return heads, rows
        ids = (json.dumps(chunk),)
        heads = [(d, v, rv, _sqlite_time(t)) for d, v, rv, t in execute(conn, _SQLITE_HEADS, ids)]
        rows = [
            Presence(d, z, _STATES[state], _sqlite_time(since), _sqlite_time(last), _sqlite_time(entered),
                     visit, pending, bool(dwelled), lat, lng, version)
            for d, z, state, since, last, entered, visit, pending, dwelled, lat, lng, version
            in execute(conn, _SQLITE_PRESENCES, ids)
        ]
        return heads, rows

    def _clock_tick(self) -> int:
        """This unit of work's tick, taken once, before its first row write: on PostgreSQL the clock row
        stays locked until commit, so writers of presences queue here, and since every one of them (the
        erasure and the idle purge too) takes the clock before any presence or head row, two of them
        never wait for each other's rows in opposite orders."""
        if self._tick is None:
            conn = self.session.connection()
            rows = None
            if conn.dialect.name == "sqlite":  # usually the first write: wait for the lock in short naps
                rows = first_write(conn.connection.driver_connection, _TICK.sqlite)  # type: ignore[arg-type]
            if rows is None:
                rows = _TICK.run(conn).fetchall()  # all: SQLite finishes the statement
            tick = rows[0][0] if rows else None
            if tick is None:  # a schema made before the clock row (``create_schema`` makes it)
                try:
                    _CLOCK_INSERT.run(conn)
                except IntegrityError as exc:
                    raise ConflictError("the presence clock was created concurrently") from exc
                tick = 1
            self._tick = int(tick)
        return self._tick

    def take_event_numbers(self, n: int) -> int:
        """The last of ``n`` event numbers taken for this unit of work's events (``SqlEventStore``): with
        the clock's tick in the same statement when it has none yet (a batch that writes events writes
        presences too: one round trip for both), or on their own after it."""
        conn = self.session.connection()
        sqlite = conn.dialect.name == "sqlite"
        if self._tick is not None:
            rows = execute(conn, _EVENT_SEQ_SQLITE if sqlite else _EVENT_SEQ_PG, (n,)).fetchall()
            if not rows:
                raise RuntimeError("presence_clock has no row: run the migrations (or create_schema)")
            return int(rows[0][0])
        taken = None
        if sqlite:  # the first write: wait for the lock in short naps, as ``_clock_tick``
            taken = first_write(conn.connection.driver_connection, _TICK_EVENTS_SQLITE, (n,))  # type: ignore[arg-type]
        if taken is None:
            taken = execute(conn, _TICK_EVENTS_SQLITE if sqlite else _TICK_EVENTS_PG, (n,)).fetchall()
        if not taken:
            raise RuntimeError("presence_clock has no row: run the migrations (or create_schema)")
        self._tick = int(taken[0][0])
        return int(taken[0][1])

    def beat(self, heads: Sequence[tuple[str, int, datetime]]) -> None:
        """Heartbeats (``geofence.store.PresenceStore.beat``): one executemany of ``_BEAT`` (the statement of
        ``_write_heads``'s own heartbeats), in key order (neighbouring rows of the B-tree: measured ~30 %
        cheaper than in a batch's order)."""
        if not heads:
            return
        tick = self._clock_tick()  # first, before any row (see ``_clock_tick``)
        conn = self.session.connection()
        ordered = sorted(heads)
        if conn.dialect.name == "sqlite":
            lasts: Sequence[Any] = sqlite_times([last for _, _, last in ordered])
        else:
            lasts = [last for _, _, last in ordered]
        params = [(v + 1, last, tick, d, v) for (d, v, _), last in zip(ordered, lasts, strict=True)]
        self._beats.extend(heads)  # before the write: a rollback drops their copies
        if _BEAT.run(conn, params).rowcount != len(params):
            raise ConflictError("a device's presences changed concurrently")

    def save(self, changed: Iterable[Presence], *, seen: Mapping[str, datetime] | None = None) -> None:
        seen = seen or {}
        conn = self.session.connection()
        time = time_binder(conn)
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        by_device: dict[str, list[Presence]] = {d: [] for d in seen}
        self.writing.update(seen)
        for p in changed:
            self.writing.add(p.device_id)
            by_device.setdefault(p.device_id, []).append(p)
            key = {"b_device_id": p.device_id, "b_zone_id": p.zone_id, "b_version": p.version}
            if p.version == 0:
                if p.is_open:
                    row = {"device_id": p.device_id, "zone_id": p.zone_id, "version": 1}
                    inserts.append({**_values(p, time), **row})
            elif p.is_open:
                updates.append({**key, **_values(p, time), "version": p.version + 1})
            else:  # back outside: the head's last_fix_at is the late-fix guard from now on
                deletes.append(key)
        if by_device:
            self._clock_tick()  # first, before any row: every writer takes the clock, then rows
        # executemany, one statement each: the rowcount of a versioned UPDATE/DELETE is the number of rows
        # that still had the version we read; anything less means another writer got there first
        for stmt, params in ((_UPDATE, updates), (_DELETE, deletes)):
            if params and stmt.run(conn, params).rowcount != len(params):
                raise ConflictError("a presence changed concurrently")
        if inserts:
            try:  # the transaction is rolled back and the batch retried on conflict
                _INSERT.run(conn, inserts)
            except IntegrityError as exc:
                raise ConflictError("a presence was created concurrently") from exc
        self._write_heads(by_device, seen)

    def _write_heads(self, by_device: dict[str, list[Presence]], seen: Mapping[str, datetime]) -> None:
        if not by_device:
            return
        tick = self._clock_tick()
        conn = self.session.connection()
        time = time_binder(conn)
        cas: list[dict[str, Any]] = []
        beats: list[tuple[int, Any, int, str, int]] = []  # ``_BEAT``'s parameters
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
                new.append(_new_head(d, time(last), tick))
            elif written:
                cas.append({"b_device_id": d, "b_version": version, "new_version": version + 1,
                            "new_last": time(last), "b_seq": tick})
            else:
                beats.append((version + 1, time(last), tick, d, version))
            self.pending[d] = (version + 1, self._after(stored, written, version + 1, last))
        for stmt, params in ((_HEAD_CAS, cas), (_BEAT, beats)):
            if params and stmt.run(conn, params).rowcount != len(params):
                raise ConflictError("a device's presences changed concurrently")
        for d in bump:
            if _HEAD_BUMP.run(conn, {"b_device_id": d, "b_seq": tick}).rowcount == 0:
                last = max((p.last_fix_at for p in by_device[d] if p.last_fix_at is not None), default=None)
                new.append(_new_head(d, time(last), tick))
        if new:
            try:
                _HEAD_INSERT.run(conn, new)
            except IntegrityError as exc:
                raise ConflictError("a device's presences were created concurrently") from exc

    @staticmethod
    def _after(
        stored: StoredDevice, written: list[Presence], version: int, last: datetime | None
    ) -> StoredDevice:
        """The device as stored once this write commits (what the cache keeps)."""
        if not written:  # only the head moved (a heartbeat): the presences, and the ingest's memo, stand
            return StoredDevice(stored.presences, version, last, stored.memo, stored.rows_version)
        presences = dict(stored.presences)
        for p in written:
            if p.is_open:
                presences[p.zone_id] = replace(p, version=p.version + 1)
            else:
                presences.pop(p.zone_id, None)
        return StoredDevice(presences, version, last, None, version)

    def committed(self) -> None:
        cache = self.cache
        current: set[str] = set()  # devices whose cached copy is now what is stored
        for d, (version, stored) in self.pending.items():
            self.read[d] = version
            if d in self.complete:  # read whole by ``load``: the cache may keep it
                self.loaded[d] = stored
                current.add(d)
                if cache is not None:
                    cache.put(d, stored)
        if cache is not None:
            moves = []
            devices = cache.devices
            for d, version, last in self._beats:  # the copy the beat was tested against moves on
                copy = devices.get(d)
                if copy is not None and copy.version == version:
                    moves.append((d, StoredDevice(copy.presences, version + 1, last, copy.memo,
                                                  copy.rows_version)))
                elif copy is not None:
                    cache.drop(d)
            cache.move_on(moves)
            for d in self.writing - current:  # written from a partial read, or bumped: not current
                cache.drop(d)
            if self._tick is not None and self._followed is not None and cache.seq == self._followed:
                if self._tick == self._followed + 1:  # no other writer ticked since the feed was read:
                    cache.seq = self._tick  # the heads of this tick are this unit's, and cached as written
        self._beats.clear()
        self.pending.clear()
        self.writing.clear()
        self._tick = None

    def rolled_back(self) -> None:
        """Forget what this unit of work meant to write, and the cached copies of those devices (a
        conflict may mean a stale copy). What it read stays: the sweep goes on with its next chunk
        against the versions it read, so a heartbeat since still makes that chunk's write conflict."""
        if self.cache is not None:
            for d in self.writing:
                self.cache.drop(d)
            for d, _, _ in self._beats:
                self.cache.drop(d)
        self._beats.clear()
        self.pending.clear()
        self.writing.clear()
        self._tick = None

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
        self._clock_tick()  # the clock before rows, as every presence writer (see ``_clock_tick``)
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
                       c.state == PresenceState.HOLDING.value,  # an enter held for a spike
                       _LAST_FIX <= silent_since))
            .order_by(_LAST_FIX, c.device_id)
            .limit(limit)
        )
        return self._with_heads(self.session.execute(stmt))


_EVENT_INSERT = DriverSql(
    "INSERT INTO zone_events (id, seq, zone_id, device_id, customer_id, kind, at, visit_id, reason, lat, lng,"
    " recorded_at) VALUES (:id, :seq, :zone_id, :device_id, :customer_id, :kind, :at, :visit_id, :reason,"
    " :lat, :lng, :recorded_at)"
)
# The log's numbers are taken under the presence clock's row lock (held to commit on PostgreSQL; SQLite
# has one writer), so they commit in order: a consumer reading "seq > my cursor" never passes a number
# that a slower transaction has yet to commit. The NOTIFY is delivered at commit (to the consumers'
# listeners), and not at all on rollback.
_EVENT_SEQ_SQLITE = "UPDATE presence_clock SET events = events + ? WHERE id = 1 RETURNING events"
_EVENT_SEQ_PG = (
    "UPDATE presence_clock SET events = events + %s WHERE id = 1"
    " RETURNING events, pg_notify('" + EVENTS_CHANNEL + "', '')"
)
# the same with the unit of work's tick (``SqlPresenceStore.take_event_numbers``)
_TICK_EVENTS_SQLITE = (
    "UPDATE presence_clock SET seq = seq + 1, events = events + ? WHERE id = 1 RETURNING seq, events"
)
_TICK_EVENTS_PG = (
    "UPDATE presence_clock SET seq = seq + 1, events = events + %s WHERE id = 1"
    " RETURNING seq, events, pg_notify('" + EVENTS_CHANNEL + "', '')"
)
_SQLITE_CUSTOMERS = "SELECT id, customer_id FROM devices WHERE id IN (SELECT value FROM json_each(?))"
_PG_CUSTOMERS = "SELECT id, customer_id FROM devices WHERE id = ANY(%s)"


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
            taken = execute(conn, _EVENT_SEQ_SQLITE if sqlite else _EVENT_SEQ_PG, (len(events),)).fetchall()
            if not taken:
                raise RuntimeError("presence_clock has no row: run the migrations (or create_schema)")
            last = int(taken[0][0])
        first = last - len(events) + 1
        self.added += len(events)
        device_ids = sorted({e.device_id for e in events})
        if sqlite:
            found = execute(conn, _SQLITE_CUSTOMERS, (json.dumps(device_ids),))
        else:
            found = execute(conn, _PG_CUSTOMERS, (device_ids,))
        customers = dict(found.fetchall())
        time = time_binder(conn)
        received = time(recorded_at)
        _EVENT_INSERT.run(
            conn,
            [
                {
                    "id": e.id, "seq": first + k, "zone_id": e.zone_id, "device_id": e.device_id,
                    "customer_id": customers.get(e.device_id), "kind": e.kind.value, "at": time(e.at),
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
        self.on_events = on_events  # after a commit that wrote events: wake this process's consumers

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
