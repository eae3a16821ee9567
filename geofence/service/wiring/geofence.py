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
- **Events are persisted in the same transaction** as the presence rows, numbered in commit order: the
  zone-event log its consumers read with their own cursors (``geofence.service.event_log``). After the
  commit they are counted and shown to in-process observers (``runtime.bus``: dry runs, tests).
- **In-process state is only a cache.** Each process keeps the zone index (built from the ``zones`` table at
  startup, or taken from the worker's snapshot file and caught up: ``wiring.zone_snapshot``; kept current by
  the admin routes in this process and by the ``geofence.zones_sync`` loop in every other process, woken by
  ``NOTIFY`` or polling ``zones.updated_at``). Every batch reads the change feed first: a device whose head
  another process wrote is stepped at its next fix, near a zone or not, so its visit ends at the same fix on
  any process. It also keeps a per-device track (last fix time/position, recent client fix ids) used for
  duplicate / late / jump checks. Losing it (restart, a fix routed to another worker) costs at most one
  duplicate fix being re-evaluated, which the device's head turns into a no-op. The track is not written to
  the database: raw positions are not stored by default.
- **Timers** (dwell for silent devices, silence exits) run in the dispatcher process (``role="worker"``)
  as ``geofence.sweep``; they use the same versioned writes, so an ingest racing a sweep is safe.

See ``docs/presence.md``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING

from sqlalchemy import String, select, type_coerce
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
from geofence.service.ingest_answers import AnsweredRequest, SqlAnswerStore, purge_answers
from geofence.service.loops import Loop
from geofence.service.metrics import FIXES, ZONE_EVENTS
from geofence.service.presence_store import PresenceCache, SqlUnitOfWork
from geofence.service.settings import Settings
from geofence.service.tables.presence import PresenceRow
from geofence.service.tables.zones import ZoneRow
from geofence.service.wakeup import CONFIG_CHANNEL, Wakeups, notify
from geofence.service.wiring import zone_snapshot
from geofence.store import AnswerStore, ConflictError
from geofence.traces import Sweep, live_schedule
from zones.geometry import validate_zone
from zones.index import ZoneIndex
from zones.model import Zone
from zones.sizing import zone_size_m

if TYPE_CHECKING:
    from geofence.service.bus.publisher import FixPublisher
    from geofence.service.runtime import Runtime

ZONES = ZoneRow.__table__  # type: ignore[attr-defined]
log = logging.getLogger(__name__)
ConsentGate = Callable[[Session, Iterable[str]], set[str]]
SWEEP_CHUNK = 500
SWEEP_LIMIT = 100_000
_RECORDED_AT = attrgetter("recorded_at")
OPEN_DEVICES_RESCAN_S = 60.0  # a safety net: the change feed keeps the set current (``ingest.accelerated``)
PURGE_EVERY_S = 3600.0
SYNC_WINDOW = timedelta(seconds=30)  # the zone sync rereads rows stamped this long before its last look
PURGE_ANSWERS_EVERY_S = 60.0  # the answers table holds about retention + a minute of requests


def zone_from_row(row: ZoneRow) -> Zone:
    return Zone.from_dict(row.data)


class GeofenceService:
    """The presence service of one process (``runtime.geofence``).

    ``location_consent(session, device_ids)`` returns the devices allowed to be located (None: all);
    committed events are shown to the observers on ``bus``, and ``wakeups`` wakes this process's
    consumers of the zone-event log (events) and every process's zone sync (config)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        bus: EventBus,
        wakeups: Wakeups,
        location_consent: ConsentGate | None = None,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.wakeups = wakeups
        self.location_consent = location_consent
        self.publisher: FixPublisher | None = None  # set when fixes go to the bus (``geofence.service.bus``)
        self.retain_fixes = settings.ingest.fix_retention_s > 0
        self.fix_retention = timedelta(seconds=settings.ingest.fix_retention_s)
        self.answer_retention = timedelta(seconds=settings.ingest.answer_retention_s)
        self.policy: FencePolicy = policy_from_defaults(settings.fence)
        self._lock = threading.RLock()  # index and track cache are shared by the API's worker threads
        self.presence_cache = PresenceCache()  # decoded rows, validated against the database every batch
        self.zones_synced_at = clock.now()
        self._zones_looked_at = self.zones_synced_at
        self._zone_stamps: dict[str, object] = {}  # each zone row's stamp as last applied here (raw)
        self.index_looked_at = self.zones_synced_at  # the zone sync's look the index reflects (snapshots)
        self.snapshot_generation: tuple[int, int] | None = None  # the index last written to a snapshot
        self.changed_while_compacting: set[str] | None = None  # zone ids, while a compaction runs
        from_snapshot = self._start_from_snapshot(settings)
        try:
            if not from_snapshot:
                with Session(self.engine) as session:  # one bulk build at startup, then incremental syncs
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
        self.ingestor = Ingestor(
            self.index, policy=self.policy, limits=limits_from_defaults(settings.fence),
            zone_policy=self._zone_policy,
        )
        if from_snapshot:  # the rows changed since the snapshot, now, before any request
            self.sync_zones()
        try:
            self.sync_open_devices()
        except DBAPIError:
            log.warning("presences table unreadable at startup")

    def _start_from_snapshot(self, settings: Settings) -> bool:
        """Take the index from the worker's snapshot file when it matches the zones table (then the
        caller catches up with ``sync_zones``); False: build from the database."""
        path = settings.zone_index.snapshot_path
        if path is None:
            return False
        try:
            got = zone_snapshot.load_snapshot(self, path)
        except DBAPIError:  # no schema yet
            return False
        if got is None:
            return False
        self.index, looked_at = got
        self._zones_looked_at = self.zones_synced_at = self.index_looked_at = looked_at
        log.info("zone index started from snapshot %s: %d zones", path, len(self.index))
        return True

    def _zone_policy(self, zone_id: str) -> FencePolicy:
        zone = self.index.get(zone_id)
        return policy_for_zone(self.policy, zone.fence, size_m=zone_size_m(zone), profile=zone.profile)

    def _uow(self, session: Session | ConnectionUnit, answers: AnswerStore | None = None) -> SqlUnitOfWork:
        return SqlUnitOfWork(session, retain_fixes=self.retain_fixes, cache=self.presence_cache,
                             on_events=self.wakeups.events.set, answers=answers)

    # -- ingest -----------------------------------------------------------------------------------
    def ingest(
        self, fixes: Sequence[LocationFix], *, at: datetime, refused: Mapping[int, str] | None = None,
        answered: Sequence[AnsweredRequest] = (),
    ) -> IngestOutcome:
        """The ingest path shared by ``POST /v1/locations``, ``geofence replay`` and the demo.

        ``refused`` holds positions the adapter already rejected (decoding, device not allowed). Fixes
        of devices without location consent (``location_consent``, the consent domain's gate) are
        dropped unstored with ``no_location_consent``. Events are published after the commit. The answers
        of the ``answered`` requests are stored with the batch (``ingest_answers``: raises
        ``AlreadyAnswered``, nothing committed, when one was answered first).
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
        if self.publisher is not None:  # GEOFENCE_BUS: a partition's ingest worker takes it from here
            outcome = self.publisher.publish(fixes, at=at, refused=refused)  # retries: Nats-Msg-Id
        else:
            with self._lock, ConnectionUnit(self.engine) as unit:
                keep = answered and self.answer_retention > timedelta(0)
                answers = (lambda: SqlAnswerStore(unit, answered, at)) if keep else (lambda: None)
                outcome = self.ingestor.ingest(
                    fixes, uow_factory=lambda: self._uow(unit, answers()), at=at, refused=refused
                )
        for (status, reason), n in outcome.counts.items():
            FIXES.labels(status, reason.split(":", 1)[0]).inc(n)  # "invalid: <decoder message>" -> bounded
        self._publish(outcome.events)
        return outcome

    def _publish(self, events: Sequence[ZoneEvent]) -> None:
        """Count committed events and show them to in-process observers (dry runs, tests). Consumers
        that must not miss one read the log instead (``geofence.service.event_log``)."""
        if not events:
            return
        for event in events:
            ZONE_EVENTS.labels(event.kind.value).inc()
        try:
            self.bus.publish(events)
        except Exception:  # committed already: an observer's failure must not fail the ingest
            log.exception("zone event observer failed")

    # -- timers -----------------------------------------------------------------------------------
    def sweep(self, at: datetime) -> list[ZoneEvent]:
        """Dwell for silent devices and silence exits, due at ``at``. Safe to run in several processes."""
        silent_since = at - self.policy.silence_exit_after
        published: list[ZoneEvent] = []
        with Session(self.engine, expire_on_commit=False) as session:
            uow = self._uow(session)
            due = uow.presence.due_for_sweep(at, silent_since=silent_since, limit=SWEEP_LIMIT)
            session.rollback()
            for chunk in _whole_devices(due, SWEEP_CHUNK, complete=len(due) < SWEEP_LIMIT):
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

    def replay(
        self, fixes: Sequence[LocationFix], *, sweep_every: timedelta, batch: int = 1
    ) -> Iterator[tuple[IngestOutcome | None, list[ZoneEvent]]]:
        """A recorded trace through the live path (``traces.live_schedule``): each step's ingest outcome
        (None for a sweep) and the events it fired, as they happen."""
        for step in live_schedule(sorted(fixes, key=_RECORDED_AT), sweep_every=sweep_every, batch=batch):
            if isinstance(step, Sweep):
                yield None, self.sweep(step.at)
            else:
                outcome = self.ingest(step.fixes, at=step.at)
                yield outcome, outcome.events

    def purge_answers(self, at: datetime) -> int:
        """Drop the answers kept for retried requests once older than ``ingest.answer_retention_s``."""
        with ConnectionUnit(self.engine) as unit:
            n = purge_answers(unit.connection(), before=at - self.answer_retention)
            unit.commit()
        return n

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
        """Apply zone rows changed since the last sync to this process's index (all at startup).

        Runs every ``config_poll_s`` in every process: it reads the (id, stamp) of the rows stamped in
        the last 30 s before the previous look (a row committed late with an earlier stamp, clock skew),
        and the whole row only of those whose stamp it has not applied yet; nothing once a change is
        older than that."""
        looked_at = clock.now()
        since = self._zones_looked_at - SYNC_WINDOW
        with Session(self.engine) as session:
            known = self._zone_stamps
            fresh = {zid: raw for zid, raw in _raw_stamps(session, since).items() if known.get(zid) != raw}
            ids = list(fresh)
            rows = [
                row for chunk in range(0, len(ids), 500)
                for row in session.execute(
                    select(ZoneRow).where(ZoneRow.id.in_(ids[chunk : chunk + 500]))  # type: ignore[attr-defined]
                ).scalars()
            ]
        self._zones_looked_at = looked_at
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


def _whole_devices(due: list[Presence], size: int, *, complete: bool) -> Iterable[list[Presence]]:
    """Chunks of about ``size`` presences that never split a device's (``due`` is ordered by device
    within each last fix). A silence exit moves the device's last fix to the exit's time: a presence of
    the device left to a later chunk or sweep would count its silence from there. When the read was cut
    at its limit (not ``complete``), the last device may be cut too: it is left whole to the next sweep."""
    chunk: list[Presence] = []
    for i, p in enumerate(due):
        if len(chunk) >= size and p.device_id != due[i - 1].device_id:
            yield chunk
            chunk = []
        chunk.append(p)
    if not complete and chunk:
        last = chunk[-1].device_id
        chunk = [p for p in chunk if p.device_id != last]
    if chunk:
        yield chunk


def sweep_job(runtime: Runtime) -> None:
    events = runtime.geofence.sweep(clock.now())
    if events:
        log.info("presence sweep fired %d events", len(events))


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


def purge_answers_job(runtime: Runtime) -> None:
    runtime.geofence.purge_answers(clock.now())


def purge_fixes_job(runtime: Runtime) -> None:
    n = runtime.geofence.purge_fixes(clock.now())
    if n:
        log.info("purged %d raw fixes past retention", n)


def _raw_stamps(session: Session, since: datetime) -> dict[str, object]:
    """Zone id -> ``updated_at`` as the driver returns it (a string on SQLite), of the rows stamped at or
    after ``since``. Raw, because the sync compares every stamp of its window each second: after a bulk
    import of 8,700 zones, converting them to aware datetimes through the ORM took 23 ms a sync (12 ms
    raw) in every API process for the window's 30 s."""
    stamp = type_coerce(ZONES.c.updated_at, String())
    stmt = select(ZONES.c.id, stamp).where(ZONES.c.updated_at >= since)
    return dict(session.connection().execute(stmt).all())
