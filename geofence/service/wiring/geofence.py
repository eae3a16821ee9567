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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from geofence.events import EventBus, ZoneEvent
from geofence.fixes import LocationFix
from geofence.ingest import Ingestor, IngestOutcome
from geofence.policy import FencePolicy, limits_from_defaults, policy_for_zone, policy_from_defaults
from geofence.presence import Presence
from geofence.service import clock
from geofence.service.db import ConnectionUnit, KeptConnection
from geofence.service.ingest_answers import AnsweredRequest, SqlAnswerStore, purge_answers
from geofence.service.metrics import FIXES, ZONE_EVENTS
from geofence.service.presence_cache import PresenceCache
from geofence.service.settings import Settings
from geofence.service.unit_of_work import SqlUnitOfWork
from geofence.service.wakeup import Wakeups
from geofence.service.wiring.zone_catalogue import ZoneCatalogue
from geofence.store import AnswerStore, ConflictError
from geofence.traces import Sweep, live_schedule
from zones.sizing import zone_size_m

if TYPE_CHECKING:
    from geofence.service.bus.publisher import FixPublisher
    from geofence.service.runtime import Runtime

log = logging.getLogger(__name__)
ConsentGate = Callable[[Session, Iterable[str]], set[str]]
SWEEP_CHUNK = 500
SWEEP_LIMIT = 100_000
_RECORDED_AT = attrgetter("recorded_at")
PURGE_EVERY_S = 3600.0
PURGE_ANSWERS_EVERY_S = 60.0  # the answers table holds about retention + a minute of requests


class GeofenceService(ZoneCatalogue):
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
        self.kept = KeptConnection(engine)  # the ingest's connection from batch to batch (under the lock)
        self.presence_cache = PresenceCache()  # decoded rows, validated against the database every batch
        self.zones_synced_at = clock.now()
        self._zones_looked_at = self.zones_synced_at
        self._zone_stamps = {}
        self._zone_revision = None
        self.index_looked_at = self.zones_synced_at
        self.snapshot_generation: tuple[int, int] | None = None  # the index last written to a snapshot
        self.changed_while_compacting = None
        from_snapshot = self._load_index(settings)
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

    def _zone_policy(self, zone_id: str) -> FencePolicy:
        zone = self.index.get(zone_id)
        return policy_for_zone(self.policy, zone.fence, size_m=zone_size_m(zone), profile=zone.profile)

    def _uow(self, session: Session | ConnectionUnit, answers: AnswerStore | None = None) -> SqlUnitOfWork:
        return SqlUnitOfWork(session, retain_fixes=self.retain_fixes, cache=self.presence_cache,
                             on_events=self.wakeups.events.set, answers=answers)

    # -- ingest -----------------------------------------------------------------------------------
    @property
    def keeps_answers(self) -> bool:
        """Whether ``ingest`` stores the answers of the ``answered`` requests: not with answers kept for
        no time, nor on the bus (a retry is de-duplicated by its message id there), where the adapter
        need not even compute their keys (a SHA-256 of each body)."""
        return self.publisher is None and self.answer_retention > timedelta(0)

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
            with self._lock, ConnectionUnit(self.engine, self.kept) as unit:
                keep = answered and self.keeps_answers
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


def purge_answers_job(runtime: Runtime) -> None:
    runtime.geofence.purge_answers(clock.now())


def purge_fixes_job(runtime: Runtime) -> None:
    n = runtime.geofence.purge_fixes(clock.now())
    if n:
        log.info("purged %d raw fixes past retention", n)
