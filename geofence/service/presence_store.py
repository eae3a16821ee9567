"""The SQL presence store (``geofence.store.PresenceStore``): presences with optimistic versions.

Core SQL (not ORM objects) on the hot path. Each device has a *head* row (``presence_heads``: a version
every write of the device's presences bumps). ``PresenceCache`` keeps this process's copy of each device
it has read or written; a batch first reads the *change feed* — the heads written since the last tick of
``presence_clock`` it saw, one query whatever the batch — and drops (or, after a mere heartbeat, moves
on) the copies another writer changed. Cached devices then cost no read at all; the others are read and
decoded in full. Writes are versioned twice: each presence row (``UPDATE``/``DELETE … WHERE version``,
``INSERT`` on the primary key) and its device's head (``WHERE version = <read>``), so a concurrent
writer — or a copy gone stale behind the feed's back — makes the batch roll back, forget the devices it
wrote, and retry; on PostgreSQL a batch's writes go out together (``versioned_writes``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from msgspec.structs import replace
from sqlalchemy import and_, delete, exists, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from geofence.presence import Presence, PresenceState
from geofence.service import presence_sql as sql
from geofence.service.db import ConnectionUnit, first_write
from geofence.service.driver_sql import execute, pipeline, sqlite_times, time_binder
from geofence.service.presence_cache import PresenceCache
from geofence.service.tables._types import as_utc
from geofence.service.versioned_writes import VersionedWrites
from geofence.store import ConflictError, StoredDevice

_MOVED = "a device's presences changed concurrently"


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
        self.writes = VersionedWrites()  # pipelined on PostgreSQL inside ``write_scope``

    def write_scope(self) -> AbstractContextManager[None]:
        """The scope of a batch's writes (``geofence.store.UnitOfWork.writing``): ``VersionedWrites``."""
        return self.writes.scope(self.session.connection())

    def follow(self) -> None:
        """Apply the change feed to the cache: the heads stamped with a clock tick it has not seen."""
        cache = self.cache
        if cache is None or self._followed is not None:
            return
        conn = self.session.connection()
        with pipeline(conn):  # PostgreSQL: sent with the transaction's BEGIN, one round trip for both
            cursor = sql.FEED.run(conn, {"seq": sql.NO_FEED if cache.seq is None else cache.seq})
        rows = cursor.fetchall()
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
        self._parse = sql.sqlite_time if conn.dialect.name == "sqlite" else as_utc
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
        for chunk in sql.chunks(stale):
            fresh: dict[str, StoredDevice] = {}
            heads, rows = sql.read_devices(self.session.connection(), chunk)
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

    def _clock_tick(self) -> int:
        """This unit of work's tick, taken once, before its first row write: on PostgreSQL the clock row
        stays locked until commit, so writers of presences queue here, and since every one of them (the
        erasure and the idle purge too) takes the clock before any presence or head row, two of them
        never wait for each other's rows in opposite orders."""
        if self._tick is None:
            conn = self.session.connection()
            rows = None
            if conn.dialect.name == "sqlite":  # usually the first write: wait for the lock in short naps
                rows = first_write(conn.connection.driver_connection, sql.TICK.sqlite)  # type: ignore[arg-type]
            if rows is None:
                rows = sql.TICK.run(conn).fetchall()  # all: SQLite finishes the statement
            tick = rows[0][0] if rows else None
            if tick is None:  # a schema made before the clock row (``create_schema`` makes it)
                try:
                    sql.CLOCK_INSERT.run(conn)
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
            rows = execute(conn, sql.EVENT_SEQ_SQLITE if sqlite else sql.EVENT_SEQ_PG, (n,)).fetchall()
            if not rows:
                raise RuntimeError("presence_clock has no row: run the migrations (or create_schema)")
            return int(rows[0][0])
        taken = None
        if sqlite:  # the first write: wait for the lock in short naps, as ``_clock_tick``
            taken = first_write(conn.connection.driver_connection, sql.TICK_EVENTS_SQLITE, (n,))  # type: ignore[arg-type]
        if taken is None:
            taken = execute(conn, sql.TICK_EVENTS_SQLITE if sqlite else sql.TICK_EVENTS_PG, (n,)).fetchall()
        if not taken:
            raise RuntimeError("presence_clock has no row: run the migrations (or create_schema)")
        self._tick = int(taken[0][0])
        return int(taken[0][1])

    def beat(self, heads: Sequence[tuple[str, int, datetime]]) -> None:
        """Heartbeats (``geofence.store.PresenceStore.beat``): one executemany of ``sql.BEAT`` (the statement
        of ``_write_heads``'s own heartbeats), in key order (neighbouring rows of the B-tree: measured ~30 %
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
        self.writes.expect(sql.BEAT.run(conn, params), len(params), _MOVED)

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
                    inserts.append({**sql.row_values(p, time), **row})
            elif p.is_open:
                updates.append({**key, **sql.row_values(p, time), "version": p.version + 1})
            else:  # back outside: the head's last_fix_at is the late-fix guard from now on
                deletes.append(key)
        if by_device:
            self._clock_tick()  # first, before any row: every writer takes the clock, then rows
        # executemany, one statement each: the rowcount of a versioned UPDATE/DELETE is the number of rows
        # that still had the version we read; anything less means another writer got there first
        for stmt, params in ((sql.UPDATE, updates), (sql.DELETE, deletes)):
            if params:
                self.writes.expect(stmt.run(conn, params), len(params), "a presence changed concurrently")
        if inserts:
            try:  # the transaction is rolled back and the batch retried on conflict
                sql.INSERT.run(conn, inserts)
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
        beats: list[tuple[int, Any, int, str, int]] = []  # ``sql.BEAT``'s parameters
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
        for stmt, params in ((sql.HEAD_CAS, cas), (sql.BEAT, beats)):
            if params:
                self.writes.expect(stmt.run(conn, params), len(params), _MOVED)
        for d in bump:
            bumped = sql.HEAD_BUMP.run(conn, {"b_device_id": d, "b_seq": tick})
            self.writes.answer_now()  # its row count now (a rare write: a head not read here)
            if bumped.rowcount == 0:
                last = max((p.last_fix_at for p in by_device[d] if p.last_fix_at is not None), default=None)
                new.append(_new_head(d, time(last), tick))
        if new:
            try:
                sql.HEAD_INSERT.run(conn, new)
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
            sql.WITH_HEAD.where(sql.P.zone_id == zone_id).where(sql.P.state != sql.OUTSIDE)
        )
        return self._with_heads(rows)

    def _with_heads(self, rows: Iterable[Any]) -> list[Presence]:
        out: list[Presence] = []
        for r in rows:
            p = sql.to_presence(r)
            if r.head_version is not None:
                self.read[p.device_id] = r.head_version
            last = as_utc(r.device_last_fix_at)
            out.append(p if last == p.last_fix_at else replace(p, last_fix_at=last))
        return out

    def purge_idle(self, *, before: datetime) -> int:
        self._clock_tick()  # the clock before rows, as every presence writer (see ``_clock_tick``)
        outside = self.session.execute(
            delete(sql.PRESENCES).where(sql.P.state == sql.OUTSIDE).where(sql.P.last_fix_at < before)
        )
        heads = self.session.execute(
            delete(sql.HEADS)
            .where(sql.H.last_fix_at < before)
            .where(~exists().where(sql.P.device_id == sql.H.device_id))
        )
        return int(outside.rowcount) + int(heads.rowcount)  # type: ignore[attr-defined]

    def due_for_sweep(self, at: datetime, *, silent_since: datetime, limit: int) -> list[Presence]:
        c = sql.P
        stmt = (
            sql.WITH_HEAD
            .where(c.state != sql.OUTSIDE)
            .where(or_(and_(c.state == PresenceState.INSIDE.value, c.dwelled.is_(False),
                            c.entered_at.is_not(None), c.entered_at <= at),
                       c.state == PresenceState.HOLDING.value,  # an enter held for a spike
                       sql.LAST_FIX <= silent_since))
            .order_by(sql.LAST_FIX, c.device_id)
            .limit(limit)
        )
        return self._with_heads(self.session.execute(stmt))
