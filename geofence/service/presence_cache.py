"""This process's copies of the devices' stored presences, and how a writer outside the store drops
every process's copies (an erasure).

Apart from the store (``geofence.service.presence_store``) because it outlives it: a store lives for
one unit of work, the cache for the process, kept current by the change feed the store reads first.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlmodel import Session

from geofence.service.presence_sql import CLOCK
from geofence.service.tables._types import as_utc
from geofence.store import StoredDevice


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
