"""Store protocols used by the ingest use case (implemented with SQLModel in ``geofence.service``)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.presence import Presence


class ConflictError(Exception):
    """Another writer changed a presence since it was read (optimistic version check failed)."""


class PresenceStore(Protocol):
    def load(self, device_ids: Collection[str]) -> dict[str, list[Presence]]:
        """Stored presences of these devices, by device id (open ones, and "outside" rows kept after an
        exit as a guard against late fixes)."""
        ...

    def save(self, changed: Iterable[Presence]) -> None:
        """Write changed presences: insert new ones (``version == 0``), update the others only if their
        stored version is still the one read; raise ``ConflictError`` otherwise."""
        ...

    def for_zone(self, zone_id: str) -> list[Presence]:
        """Open presences in one zone (zone removal)."""
        ...

    def purge_outside(self, *, before: datetime) -> int:
        """Delete "outside" rows whose last fix is older than ``before``; returns how many."""
        ...

    def due_for_sweep(self, at: datetime, *, silent_since: datetime, limit: int) -> list[Presence]:
        """Open presences that a sweep at ``at`` may change (inside without dwell, or silent)."""
        ...


class EventStore(Protocol):
    def add(self, events: Sequence[ZoneEvent], *, recorded_at: datetime) -> None: ...


class FixStore(Protocol):
    def add(self, fixes: Sequence[LocationFix], *, received_at: datetime) -> None: ...

    def purge(self, *, before: datetime) -> int: ...


class UnitOfWork(Protocol):
    presence: PresenceStore
    events: EventStore
    fixes: FixStore | None  # None when raw fixes are not retained (the default)

    def commit(self) -> None: ...

    def rollback(self) -> None: ...
