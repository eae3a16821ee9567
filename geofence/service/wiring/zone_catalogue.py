"""The zone side of the presence service: this process's zone index and the ``zones`` table kept equal.

Why apart from the ingest (``wiring.geofence``): zones change rarely and from anywhere (the admin routes
of any process, the CLI, a bulk import), fixes arrive all the time; what the two share is the index and
the lock around it. ``ZoneCatalogue`` is the part of ``GeofenceService`` that writes zones (validated,
soft-deleted with EXIT ``zone_removed`` for the visits they close), brings other processes' changes into
this process's index (``sync_zones``, every ``scheduler.config_poll_s`` or at once on a NOTIFY, in every
process: ``zones_sync_loop``), and adopts devices already inside a zone created elsewhere. A zone change
takes effect everywhere within a second (docs/presence.md, *One truth across processes*).
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import String, select, type_coerce
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from geofence.events import ZoneEvent
from geofence.ingest import Ingestor
from geofence.presence import Presence, PresenceState
from geofence.service import clock
from geofence.service.db import ConnectionUnit
from geofence.service.loops import Loop
from geofence.service.settings import Settings
from geofence.service.tables.presence import PresenceRow
from geofence.service.tables.zones import ZoneRevisionRow, ZoneRow
from geofence.service.wakeup import CONFIG_CHANNEL, Wakeups, notify
from geofence.service.wiring import zone_snapshot
from geofence.store import AnswerStore, ConflictError
from zones.geometry import validate_zone
from zones.index import ZoneIndex
from zones.model import Zone

if TYPE_CHECKING:
    from geofence.service.unit_of_work import SqlUnitOfWork
    from geofence.service.wiring.geofence import GeofenceService

ZONES = ZoneRow.__table__  # type: ignore[attr-defined]
REVISION = ZoneRevisionRow.__table__  # type: ignore[attr-defined]
log = logging.getLogger(__name__)
OPEN_DEVICES_RESCAN_S = 60.0  # a safety net: the change feed keeps the set current (``ingest.accelerated``)
SYNC_WINDOW = timedelta(seconds=30)  # the zone sync rereads rows stamped this long before its last look


def zone_from_row(row: ZoneRow) -> Zone:
    return Zone.from_dict(row.data)


class ZoneCatalogue(ABC):
    """Zone writes and the zone sync of ``GeofenceService`` (which sets these attributes up)."""

    engine: Engine
    wakeups: Wakeups
    index: ZoneIndex
    ingestor: Ingestor
    _lock: threading.RLock
    zones_synced_at: datetime  # the newest zone change this index has applied
    _zones_looked_at: datetime  # the sync's last look (its window starts SYNC_WINDOW before)
    _zone_stamps: dict[str, object]  # each zone row's stamp as last applied here (raw)
    _zone_revision: int | None  # ``zone_revision.n`` as of the last stamps read (None: not read)
    index_looked_at: datetime  # the zone sync's look the index reflects (snapshots)
    changed_while_compacting: set[str] | None  # zone ids, while a compaction runs

    @abstractmethod
    def _uow(self, session: Session | ConnectionUnit, answers: AnswerStore | None = None) -> SqlUnitOfWork:
        """The presence stores' unit of work over ``session`` (the ingest's: ``GeofenceService``)."""

    @abstractmethod
    def _publish(self, events: Sequence[ZoneEvent]) -> None:
        """Show committed events to in-process observers (``GeofenceService``)."""

    def _load_index(self, settings: Settings) -> bool:
        """The index at start-up: from the worker's snapshot, caught up later (True), or built from the
        ``zones`` table; empty when the table cannot be read yet (migrations not run)."""
        if self._start_from_snapshot(settings):
            return True
        try:
            with Session(self.engine) as session:  # one bulk build at startup, then incremental syncs
                self._zone_revision = _revision(session)  # first: the rows read are at least this new
                live = select(ZoneRow).where(ZoneRow.deleted_at.is_(None))  # type: ignore[union-attr]
                rows = list(session.execute(live).scalars())
                zones = [zone_from_row(r) for r in rows]
                # covers in one process per CPU for a large start-up (zones.build); small ones stay here
                self.index = ZoneIndex(zones, workers=None if len(zones) > 50_000 else 1)
                # the sync compares stamps only within its window: those of the rows in it suffice
                self._zone_stamps = _raw_stamps(session, self._zones_looked_at - SYNC_WINDOW)
        except DBAPIError:  # no schema yet (migrations not run): start empty, the sync job catches up
            log.warning("zones table unreadable at startup; the zone index starts empty")
            self.index = ZoneIndex()
            self.zones_synced_at = self._zones_looked_at = datetime(1970, 1, 1, tzinfo=UTC)
            self.index_looked_at = self.zones_synced_at
        return False

    def _start_from_snapshot(self, settings: Settings) -> bool:
        """Take the index from the worker's snapshot file when it matches the zones table (then the
        caller catches up with ``sync_zones``); False: build from the database."""
        path = settings.zone_index.snapshot_path
        if path is None:
            return False
        try:
            got = zone_snapshot.load_snapshot(self.engine, path)
        except DBAPIError:  # no schema yet
            return False
        if got is None:
            return False
        self.index, looked_at = got
        self._zones_looked_at = self.zones_synced_at = self.index_looked_at = looked_at
        log.info("zone index started from snapshot %s: %d zones", path, len(self.index))
        return True

    def sync_zones(self) -> int:
        """Apply zone rows changed since the last sync to this process's index (all at startup).

        Runs every ``config_poll_s`` in every process: it reads the (id, stamp) of the rows stamped in
        the last 30 s before the previous look (a row committed late with an earlier stamp, clock skew),
        and the whole row only of those whose stamp it has not applied yet; nothing once a change is
        older than that."""
        looked_at = clock.now()
        since = self._zones_looked_at - SYNC_WINDOW
        # ended by COMMIT, not the pool's ROLLBACK: at a ROLLBACK psycopg forgets every statement it
        # prepared on the connection, and this pooled connection is the ingest's next (its hot statements
        # were parsed and planned anew: ~25 % of an API process's statements, twice a second's syncs)
        with Session(self.engine, expire_on_commit=False) as session:
            revision = _revision(session)  # before the stamps: a commit in between is read again next time
            if revision is not None and revision == self._zone_revision:
                session.commit()
                self._zones_looked_at = self.index_looked_at = looked_at  # no zone written since
                return 0
            known = self._zone_stamps
            fresh = {zid: raw for zid, raw in _raw_stamps(session, since).items() if known.get(zid) != raw}
            ids = list(fresh)
            rows = [
                row for chunk in range(0, len(ids), 500)
                for row in session.execute(
                    select(ZoneRow).where(ZoneRow.id.in_(ids[chunk : chunk + 500]))  # type: ignore[attr-defined]
                ).scalars()
            ]
            session.commit()
        self._zones_looked_at, self._zone_revision = looked_at, revision
        if not rows:  # the usual sync, twice a second: the index is as current as it was, not touched, so
            self.index_looked_at = looked_at  # the ingest's lock is left to the ingest
            return 0
        for row in rows:  # a row changed between the two reads is newer than its stamp: read again next time
            known[row.id] = fresh[row.id]
        applied = 0
        new_ids: list[str] = []
        changed: list[Zone] = []
        with self._lock:
            for row in rows:
                if row.deleted_at is not None:
                    if row.id in self.index:
                        self._remove_from_index(row.id)
                        self.ingestor.forget_zone(row.id)
                        applied += 1
                    continue
                zone = zone_from_row(row)
                if row.id in self.index and self.index.get(row.id) == zone:
                    continue
                if row.id not in self.index:
                    new_ids.append(row.id)
                changed.append(zone)
                self.ingestor.forget_zone(row.id)
                applied += 1
            self._index_zones(changed)
            self.index_looked_at = looked_at
            latest = max((r.updated_at for r in rows), default=None)
            if latest is not None:
                latest = latest if latest.tzinfo else latest.replace(tzinfo=UTC)
                self.zones_synced_at = max(self.zones_synced_at, latest)
            at = clock.now()  # devices this process saw inside a zone another process created
            adopted = [p for zid in new_ids for p in self.ingestor.adopt_in_zone(zid, at)]
        if adopted:
            self._insert_adopted(adopted)
        return applied

    def _index_zones(self, zones: list[Zone]) -> None:
        """Add or replace zones in the index: one by one, or as one import when there are many (covers
        in bulk, one generation; see ``ZoneIndex.add_many``)."""
        if self.changed_while_compacting is not None:
            self.changed_while_compacting.update(z.id for z in zones)
        if len(zones) > 32:
            self.index.add_many(zones)
        else:
            for zone in zones:
                self.index.add(zone)

    def _remove_from_index(self, zone_id: str) -> None:
        if self.changed_while_compacting is not None:
            self.changed_while_compacting.add(zone_id)
        self.index.remove(zone_id)

    def sync_open_devices(self) -> None:
        """Add the devices with an open presence in the database (any worker's) to those whose fixes are
        stepped even when they hit no zone, so that exits are seen by every worker. The change feed is
        read first: what is written after the scan reaches the ingest through it (``moved``). Only
        added: a device wrongly in the set costs one stepping, which takes it out; the scan runs without
        the ingest's lock (a full read of ``presences``: ~0.1-0.3 s at 200,000 rows on PostgreSQL)."""
        with self._lock, ConnectionUnit(self.engine) as unit:
            self._uow(unit).presence.follow()
        with Session(self.engine) as session:
            stmt = select(PresenceRow.device_id).where(PresenceRow.state != PresenceState.OUTSIDE.value)
            ids = set(session.execute(stmt.distinct()).scalars())
        with self._lock:
            self.ingestor.open_devices |= ids

    def save_zones(self, zones: Iterable[Zone], *, at: datetime) -> list[Zone]:
        """Create or replace zones (validated), index them, adopt devices already inside new ones."""
        saved = [validate_zone(z) for z in zones]
        new_ids: list[str] = []
        stamp = clock.now()  # row times are wall clock (the other workers' sync watermark), not ``at``
        with Session(self.engine, expire_on_commit=False) as session:
            for zone in saved:
                row = session.get(ZoneRow, zone.id)
                if row is None or row.deleted_at is not None:
                    new_ids.append(zone.id)
                if row is None:
                    row = ZoneRow(id=zone.id, name=zone.name, created_at=stamp, updated_at=stamp)
                row.name, row.store_id, row.data = zone.name, zone.store_id, zone.to_dict()
                row.updated_at, row.deleted_at = stamp, None
                session.add(row)
            session.commit()
        notify(self.engine, CONFIG_CHANNEL)  # the other processes' zone loops sync now
        with self._lock:
            self._index_zones(saved)
            for zone in saved:
                self.ingestor.forget_zone(zone.id)
            adopted = [p for zid in new_ids for p in self.ingestor.adopt_in_zone(zid, at)]
        if adopted:
            self._insert_adopted(adopted)
        return saved

    def _insert_adopted(self, adopted: list[Presence]) -> None:
        for p in adopted:  # one by one: a device another worker already placed keeps its row
            with Session(self.engine) as session:
                uow = self._uow(session)
                try:
                    uow.presence.save([p])
                    uow.commit()
                except ConflictError:
                    uow.rollback()

    def delete_zone(self, zone_id: str, *, at: datetime) -> bool:
        """Soft-delete a zone and close its open visits with EXIT ``zone_removed``."""
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.get(ZoneRow, zone_id)
            if row is None or row.deleted_at is not None:
                return False
            row.deleted_at, row.updated_at = at, clock.now()
            session.add(row)
            uow = self._uow(session)
            with self._lock:
                changed, events = self.ingestor.close_zone(uow.presence.for_zone(zone_id), at)
            uow.presence.save(changed)
            uow.events.add(events, recorded_at=at)
            uow.commit()
        notify(self.engine, CONFIG_CHANNEL)
        with self._lock:
            if zone_id in self.index:
                self._remove_from_index(zone_id)
            self.ingestor.forget_zone(zone_id)
        self._publish(events)
        return True


def zones_sync_loop(service: GeofenceService, *, poll_s: float) -> Loop:
    """Zone changes reach this process within ``scheduler.config_poll_s`` (at once where a NOTIFY wakes
    it), in every process, scheduler or not; open visits are rescanned every ``OPEN_DEVICES_RESCAN_S``."""
    refreshed = [time.monotonic()]  # the service scanned them as it started

    def sync() -> bool:
        service.sync_zones()
        if time.monotonic() - refreshed[0] >= OPEN_DEVICES_RESCAN_S:
            service.sync_open_devices()
            refreshed[0] = time.monotonic()
        return False

    return Loop("geofence.zones_sync", sync, service.wakeups.config, poll_s, role="any")


def _revision(session: Session) -> int | None:
    """``zone_revision.n`` (``tables.zones.ZoneRevisionRow``), or None where it has no row yet."""
    found = session.connection().execute(select(REVISION.c.n).where(REVISION.c.id == 1)).first()
    return None if found is None else int(found[0])


def _raw_stamps(session: Session, since: datetime) -> dict[str, object]:
    """Zone id -> ``updated_at`` as the driver returns it (a string on SQLite), of the rows stamped at or
    after ``since``. Raw, because the sync compares every stamp of its window each second: after a bulk
    import of 8,700 zones, converting them to aware datetimes through the ORM took 23 ms a sync (12 ms
    raw) in every API process for the window's 30 s."""
    stamp = type_coerce(ZONES.c.updated_at, String())
    stmt = select(ZONES.c.id, stamp).where(ZONES.c.updated_at >= since)
    return dict(session.connection().execute(stmt).all())
