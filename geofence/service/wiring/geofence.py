"""Wiring for the geofence domain: the zone index, the presence service and its periodic jobs.

How presence stays consistent across several API workers (uvicorn ``--workers N``, or N replicas):

- **The database is the truth for presence.** Every open presence (entering / inside / dwelling /
  exiting) is a ``presences`` row keyed by (device, zone) with a ``version`` column, and every device
  with presences has a ``presence_heads`` row: a version that every write of any of the device's rows
  bumps, and the device's last processed fix. A batch steps the pure state machine on the stored
  presences of its busy devices and writes back only the rows that changed, each with
  ``UPDATE/DELETE ... WHERE version = <read version>`` (a new row is an INSERT on the primary key), and
  the device's head with ``WHERE version = <read version>``. If another worker got there first, a write
  affects 0 rows (or violates a key), the whole transaction rolls back (events included: nothing was
  published), the devices it wrote are dropped from the cache, and the batch is re-read and re-stepped
  (up to 3 times). Two workers can therefore never both fire the ENTER of one visit, and a late fix
  cannot rewind a presence: a fix no newer than the head's last fix is not stepped. The head's last fix
  is written with every change and otherwise once a heartbeat (``geofence.ingest.HEARTBEAT``, 60 s), so
  across workers the late-fix guard holds to within one heartbeat (docs/presence.md).
- **A change feed keeps each process's cache current** (``PresenceCache``): every transaction that
  writes heads ticks ``presence_clock.seq`` (its row lock on PostgreSQL, the single writer on SQLite,
  make the ticks commit in order) and stamps its heads with the tick. Each batch first reads the heads
  stamped after the last tick it saw — one indexed query, whatever the batch — and drops the copies
  another writer changed (a heartbeat, which moves only the head, moves the copy on instead). Cached
  devices then cost no read at all; the others are read in full. An erasure bumps
  ``presence_clock.resets``: every process drops its whole cache. A copy gone stale behind the feed's
  back (a head deleted by the idle purge) can only fail a versioned write, which drops it. A steady
  device (in exactly the zones it is steadily inside of) is not stepped at all.
- **Events are persisted in the same transaction** as the presence rows and handed to ``runtime.bus``
  subscribers only after the commit.
- **In-process state is only a cache.** Each process keeps the zone index (built from the ``zones`` table
  at startup, kept current by the admin routes in this process and by the ``geofence.zones_sync`` job
  polling ``zones.updated_at`` in the others) and a per-device track (last fix time/position, recent
  client fix ids) used for duplicate / late / jump checks. Losing it (restart, a fix routed to another
  worker) costs at most one duplicate fix being re-evaluated, which the device's head turns into a
  no-op. The track is not written to the database: raw positions are not stored by default.
- **Timers** (dwell for silent devices, silence exits) run in the dispatcher process (``role="worker"``)
  as ``geofence.sweep``; they use the same versioned writes, so an ingest racing a sweep is safe.

See ``docs/presence.md``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from geofence.events import EventBus, ZoneEvent
from geofence.fixes import LocationFix
from geofence.ingest import Ingestor, IngestOutcome
from geofence.policy import FencePolicy, limits_from_defaults, policy_for_zone, policy_from_defaults
from geofence.presence import Presence, PresenceState
from geofence.service import clock
from geofence.service.db import ConnectionUnit
from geofence.service.metrics import FIXES, ZONE_EVENTS
from geofence.service.presence_store import PresenceCache, SqlUnitOfWork
from geofence.service.settings import Settings
from geofence.service.tables.presence import PresenceRow
from geofence.service.tables.zones import ZoneRow
from geofence.store import ConflictError
from zones.geometry import validate_zone
from zones.index import ZoneIndex
from zones.model import Zone
from zones.sizing import zone_size_m

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

log = logging.getLogger(__name__)
ConsentGate = Callable[[Session, Iterable[str]], set[str]]
SWEEP_CHUNK = 500
ZONES_SYNC_EVERY_S = 5.0
PURGE_EVERY_S = 3600.0


def zone_from_row(row: ZoneRow) -> Zone:
    return Zone.from_dict(row.data)


class GeofenceService:
    """The presence service of one process (``runtime.geofence``).

    ``location_consent(session, device_ids)`` returns the devices allowed to be located (None: all);
    committed events are published on ``bus``."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        bus: EventBus,
        location_consent: ConsentGate | None = None,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.location_consent = location_consent
        self.retain_fixes = settings.ingest.fix_retention_s > 0
        self.fix_retention = timedelta(seconds=settings.ingest.fix_retention_s)
        self.policy: FencePolicy = policy_from_defaults(settings.fence)
        self._lock = threading.RLock()  # index and track cache are shared by the API's worker threads
        self.presence_cache = PresenceCache()  # decoded rows, validated against the database every batch
        self.zones_synced_at = clock.now()
        try:
            with Session(self.engine) as session:  # one bulk build at startup, then incremental syncs
                live = select(ZoneRow).where(ZoneRow.deleted_at.is_(None))  # type: ignore[union-attr]
                self.index = ZoneIndex([zone_from_row(r) for r in session.execute(live).scalars()])
        except DBAPIError:  # no schema yet (migrations not run): start empty, the sync job catches up
            log.warning("zones table unreadable at startup; the zone index starts empty")
            self.index = ZoneIndex()
            self.zones_synced_at = datetime(1970, 1, 1, tzinfo=UTC)
        self.ingestor = Ingestor(
            self.index, policy=self.policy, limits=limits_from_defaults(settings.fence),
            zone_policy=self._zone_policy,
        )
        self.ingestor.fix_store_wanted = self.retain_fixes
        try:
            self.sync_open_devices()
        except DBAPIError:
            log.warning("presences table unreadable at startup")

    def _zone_policy(self, zone_id: str) -> FencePolicy:
        zone = self.index.get(zone_id)
        return policy_for_zone(self.policy, zone.fence, size_m=zone_size_m(zone), profile=zone.profile)

    def _uow(self, session: Session | ConnectionUnit) -> SqlUnitOfWork:
        return SqlUnitOfWork(session, retain_fixes=self.retain_fixes, cache=self.presence_cache)

    # -- ingest -----------------------------------------------------------------------------------
    def ingest(
        self, fixes: Sequence[LocationFix], *, at: datetime, refused: Mapping[int, str] | None = None
    ) -> IngestOutcome:
        """The ingest path shared by ``POST /v1/locations``, ``geofence replay`` and the demo.

        ``refused`` holds positions the adapter already rejected (decoding, device not allowed). Fixes
        of devices without location consent (``location_consent``, the consent domain's gate) are
        dropped unstored with ``no_location_consent``. Events are published after the commit.
        """
        refused = dict(refused or {})
        consent_filter = self.location_consent
        if consent_filter is not None and fixes:
            candidates = {f.device_id for i, f in enumerate(fixes) if i not in refused}
            with Session(self.engine) as session:
                allowed = consent_filter(session, candidates) if candidates else set()
            for i, f in enumerate(fixes):
                if i not in refused and f.device_id not in allowed:
                    refused[i] = "no_location_consent"
        with self._lock, ConnectionUnit(self.engine) as unit:
            outcome = self.ingestor.ingest(fixes, uow_factory=lambda: self._uow(unit), at=at, refused=refused)
        for (status, reason), n in outcome.counts.items():
            FIXES.labels(status, reason.split(":", 1)[0]).inc(n)  # "invalid: <decoder message>" -> bounded
        self._publish(outcome.events)
        return outcome

    def _publish(self, events: Sequence[ZoneEvent]) -> None:
        if not events:
            return
        for event in events:
            ZONE_EVENTS.labels(event.kind.value).inc()
        try:
            self.bus.publish(events)
        except Exception:  # committed already: a subscriber's failure must not fail the ingest
            log.exception("zone event subscriber failed")

    # -- timers -----------------------------------------------------------------------------------
    def sweep(self, at: datetime) -> list[ZoneEvent]:
        """Dwell for silent devices and silence exits, due at ``at``. Safe to run in several processes."""
        silent_since = at - self.policy.silence_exit_after
        published: list[ZoneEvent] = []
        with Session(self.engine, expire_on_commit=False) as session:
            uow = self._uow(session)
            due = uow.presence.due_for_sweep(at, silent_since=silent_since, limit=100_000)
            session.rollback()
            for start in range(0, len(due), SWEEP_CHUNK):
                chunk = due[start : start + SWEEP_CHUNK]
                with self._lock:
                    changed, events = self.ingestor.sweep_presences(
                        [p for p in chunk if p.zone_id in self.index], at
                    )
                if not changed:
                    continue
                try:
                    uow.presence.save(changed)
                    uow.events.add(events, recorded_at=at)
                    uow.commit()
                except ConflictError:
                    uow.rollback()  # an ingest moved these on; the next sweep sees the new rows
                    continue
                published.extend(events)
            uow.presence.purge_idle(before=at - self.ingestor.limits.max_age)
            uow.commit()
        self._publish(published)
        return published

    def purge_fixes(self, at: datetime) -> int:
        if not self.retain_fixes:
            return 0
        with Session(self.engine) as session:
            uow = self._uow(session)
            assert uow.fixes is not None
            n = uow.fixes.purge(before=at - self.fix_retention)
            uow.commit()
        return n

    # -- zones ------------------------------------------------------------------------------------
    def sync_zones(self) -> int:
        """Apply zone rows changed since the last sync to this process's index (all at startup)."""
        with Session(self.engine) as session:
            # re-read a small overlap: rows committed late with an earlier updated_at, clock skew
            stmt = select(ZoneRow).where(ZoneRow.updated_at >= self.zones_synced_at - timedelta(seconds=30))
            rows = list(session.execute(stmt).scalars())
        applied = 0
        new_ids: list[str] = []
        with self._lock:
            for row in rows:
                if row.deleted_at is not None:
                    if row.id in self.index:
                        self.index.remove(row.id)
                        self.ingestor.forget_zone(row.id)
                        applied += 1
                    continue
                zone = zone_from_row(row)
                if row.id in self.index and self.index.get(row.id) == zone:
                    continue
                if row.id not in self.index:
                    new_ids.append(row.id)
                self.index.add(zone)
                self.ingestor.forget_zone(row.id)
                applied += 1
            latest = max((r.updated_at for r in rows), default=None)
            if latest is not None:
                latest = latest if latest.tzinfo else latest.replace(tzinfo=UTC)
                self.zones_synced_at = max(self.zones_synced_at, latest)
            at = clock.now()  # devices this process saw inside a zone another process created
            adopted = [p for zid in new_ids for p in self.ingestor.adopt_in_zone(zid, at)]
        if adopted:
            self._insert_adopted(adopted)
        return applied

    def sync_open_devices(self) -> None:
        """Refresh which devices have an open presence in the database (any worker's): their fixes are
        stepped even when they hit no zone, so that exits are seen by every worker."""
        with self._lock, Session(self.engine) as session:  # under the lock: no ingest commits meanwhile
            stmt = select(PresenceRow.device_id).where(PresenceRow.state != PresenceState.OUTSIDE.value)
            ids = set(session.execute(stmt.distinct()).scalars())
            self.ingestor.open_devices = ids

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
        with self._lock:
            for zone in saved:
                self.index.add(zone)
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
        with self._lock:
            if zone_id in self.index:
                self.index.remove(zone_id)
            self.ingestor.forget_zone(zone_id)
        self._publish(events)
        return True


def sweep_job(runtime: Runtime) -> None:
    events = runtime.geofence.sweep(clock.now())
    if events:
        log.info("presence sweep fired %d events", len(events))


def zones_sync_job(runtime: Runtime) -> None:
    runtime.geofence.sync_zones()
    runtime.geofence.sync_open_devices()


def purge_fixes_job(runtime: Runtime) -> None:
    n = runtime.geofence.purge_fixes(clock.now())
    if n:
        log.info("purged %d raw fixes past retention", n)
