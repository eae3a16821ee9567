"""Store protocols used by the ingest use case (implemented with SQLModel in ``geofence.service``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

import msgspec

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.presence import Presence


class ConflictError(Exception):
    """Another writer changed a presence since it was read (optimistic version check failed)."""


class StoredDevice(msgspec.Struct, eq=False, gc=False):
    """What is stored for one device: its presences by zone, and its *head* — a version that every write
    of any of its presences bumps (so one row per device tells whether a copy is current), and the last
    fix processed for it (re-written once a heartbeat when nothing else changes: the late-fix guard and
    the sweep's silence clock for all its zones). ``gc=False``, as ``Presence``: nothing it holds refers
    back to it."""

    presences: dict[str, Presence] = msgspec.field(default_factory=dict)
    version: int = 0  # of the head; 0: no head stored
    last_fix_at: datetime | None = None
    memo: Any = None  # the ingest's summary of ``presences`` (valid as long as this object is)
    rows_version: int = 0  # the head version that last changed ``presences`` (a heartbeat keeps it)


class PresenceStore(Protocol):
    def load(self, device_ids: Collection[str]) -> dict[str, StoredDevice]:
        """What is stored for these devices, by device id (devices with nothing stored are absent)."""
        ...

    def watch_versions(
        self, method: Callable[[dict[str, int], Sequence[str] | None, Sequence[int]], None]
    ) -> dict[str, int] | None:
        """The head version of each device's current copy that needs no read (what the ingest checks its
        steady summaries against), by device, as of the change feed (read here, if it was not yet), and
        from now on ``method(versions, device_ids, new_versions)`` on every change of some (-1: no copy;
        ``device_ids`` None: none left). None when the store keeps no copies."""
        ...

    def moved(self) -> Collection[str] | None:
        """Devices whose head someone else wrote since this process last looked (the change feed, read
        here if it was not yet): another worker may have opened or closed one of their visits. None when
        that cannot be known (the first look, after a reset): any device may have moved."""
        ...

    def moved_last_fix(self, device_id: str) -> datetime | None:
        """The last fix of a device's head as ``moved`` found it written elsewhere (None: not there)."""
        ...

    def beat(self, heads: Sequence[tuple[str, int, datetime]]) -> None:
        """Heartbeats: (device, head version, last fix) each, a device whose head is at that version (its
        caller's copy, not read here) and whose only change is this newer last fix. Written only where
        that version is still stored (``ConflictError`` otherwise)."""
        ...

    def save(self, changed: Iterable[Presence], *, seen: Mapping[str, datetime] | None = None) -> None:
        """Write changed presences (insert ``version == 0``, delete those back outside, update the others)
        and the heads of their devices and of the devices in ``seen`` (device -> last fix processed).

        Every row and head is written only if its stored version is still the one read (a head not read
        in this unit of work is bumped); raise ``ConflictError`` otherwise."""
        ...

    def for_zone(self, zone_id: str) -> list[Presence]:
        """Open presences in one zone (zone removal)."""
        ...

    def purge_idle(self, *, before: datetime) -> int:
        """Delete the heads of devices with no presence and no fix since ``before`` (and any "outside" row
        left by an older version); returns how many rows."""
        ...

    def due_for_sweep(self, at: datetime, *, silent_since: datetime, limit: int) -> list[Presence]:
        """Open presences that a sweep at ``at`` may change (inside without dwell, holding, or silent),
        each with the ``last_fix_at`` of its device's head when that is later."""
        ...


class EventStore(Protocol):
    def add(self, events: Sequence[ZoneEvent], *, recorded_at: datetime) -> None: ...


class FixStore(Protocol):
    def add(self, fixes: Sequence[LocationFix], *, received_at: datetime) -> None: ...

    def purge(self, *, before: datetime) -> int: ...


class AnswerStore(Protocol):
    def add(self, results: Sequence[Any], events: Sequence[ZoneEvent]) -> None:
        """What the batch answers (a ``FixResult`` per fix, the events), given first in the batch's
        writing scope (``UnitOfWork.writing``), before any other write: an adapter that answers retried
        requests as the first time stores it with the batch's effects, and claims the request there,
        before any lock the writes take (a retry then waits for the first answer, or finds it, holding
        nothing). It may say the request was answered first when the scope ends rather than at the call."""
        ...


def answers_of(uow: UnitOfWork) -> AnswerStore | None:
    """A unit of work's answer store: its optional ``answers`` attribute (None: answers are not kept)."""
    answers: AnswerStore | None = getattr(uow, "answers", None)
    return answers


class UnitOfWork(Protocol):
    presence: PresenceStore
    events: EventStore
    fixes: FixStore | None  # None when raw fixes are not retained (the default)

    def writing(self) -> AbstractContextManager[object]:
        """The scope of a batch's writes (events, heartbeats, presences, heads): a store may send them
        without waiting for each one's answer (PostgreSQL: one round trip for all, while the writer holds
        the presence clock), so a write that lost a race may raise ``ConflictError`` when the scope ends
        rather than at its call. Nothing is committed at its end."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...
