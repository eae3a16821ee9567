"""The device tracks of one process, in columns: one row (slot) per device it has accepted a fix of.

Why columns: the ingest screens a batch, tests steady devices and checks their discs for the whole batch
at once (``geofence.ingest``); read from one object per device, each of those ~20 values cost a Python
pass over the batch (~35 ns a device each), gathered from an array by slot ~2 ns.

A track is a cache (see ``geofence.ingest``): losing it costs a re-evaluation, never a wrong event.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

_FLOATS = ("at_s", "lat", "lng", "acc", "s_h1", "s_h2", "s_until", "s_last", "d_lat", "d_lng", "d_r",
           "d_h1", "d_h2", "x_acc", "x_per_m", "p_lat", "p_lng", "p_r", "p_d")
_INTS = ("jumps", "cv", "s_version", "s_epoch", "s_count", "d_count")


class Track(NamedTuple):
    """One device's track, as plain values (the generic path's view of a row)."""

    last_fix_at: datetime
    lat: float
    lng: float
    accuracy_m: float
    fix_ids: tuple[str, ...]
    jumps: int


def at_seconds(seconds: float) -> datetime:
    """The time of these POSIX seconds: exactly the microsecond they were taken from (a time's seconds are
    within 0.25 us of it until 2106, and ``fromtimestamp`` rounds to the nearest microsecond)."""
    return datetime.fromtimestamp(seconds, UTC)


def fix_ids_of(value: object) -> tuple[str, ...]:
    """A ``Tracks.fix_ids`` entry as a tuple (one id is kept bare: a tuple per fix is an object the
    garbage collector has to visit)."""
    if value is None:
        return ()
    return value if type(value) is tuple else (value,)


class Tracks:
    """Columns by slot (``slot_of``). Not thread-safe: the ingest holds its lock.

    Per device:

    - its last accepted fix: ``at_s`` (its time as POSIX seconds: the microsecond it was is recovered
      exactly, ``last_fix_at``), ``lat``, ``lng``, ``acc``; ``fix_ids`` (the client fix ids of its last
      accepted batch, an object column: ``None``, one id, or a tuple of them; ``fix_ids_of`` reads it);
      ``jumps`` (implausible jumps in a row);
    - ``cv``: the head version of the presence store's current copy of the device (-1: none; kept by
      the ingest from the store's notices, ``PresenceStore.watch_versions``);
    - the *steady summary* of the device as stored at head version ``s_version`` (0: none) under zone
      policy epoch ``s_epoch``: ``s_count``, ``s_h1``, ``s_h2`` (its steady zones' count and hash sums),
      ``s_until`` (first dwell due), ``s_last`` (the stored head's last fix);
    - its *disc*: the point ``d_lat, d_lng`` where it was last matched against the index, that point's
      clearance ``d_r`` (0: no disc) and the count and hash sums of its zones (``d_count``, ``d_h1``,
      ``d_h2``): any fix closer to the point than ``d_r`` is in exactly those zones, until the zones
      change (``drop_discs``); ``x_acc`` + ``x_per_m`` per metre from the disc's centre: the accuracy
      above which a fix in the disc is too shallow to enter any zone of the disc beyond the device's
      steady ones (``x_acc`` inf: none known; it holds for this disc and this summary, and is dropped
      with either);
    - its *presence disc*, made where the device was last found steady (``ZoneIndex.presence_bounds``):
      centre ``p_lat, p_lng``, radius ``p_r`` (0: none) within which its steady zones still hold a fix,
      and ``p_d``: no point at δ metres of the centre is deeper than ``p_d`` + δ in any other zone. It
      holds for this summary and these zones, and is dropped with either.
    """

    at_s: np.ndarray
    lat: np.ndarray
    lng: np.ndarray
    acc: np.ndarray
    jumps: np.ndarray
    cv: np.ndarray
    s_version: np.ndarray
    s_epoch: np.ndarray
    s_count: np.ndarray
    s_h1: np.ndarray
    s_h2: np.ndarray
    s_until: np.ndarray
    s_last: np.ndarray
    d_lat: np.ndarray
    d_lng: np.ndarray
    d_r: np.ndarray
    d_count: np.ndarray
    d_h1: np.ndarray
    d_h2: np.ndarray
    x_acc: np.ndarray
    x_per_m: np.ndarray
    p_lat: np.ndarray
    p_lng: np.ndarray
    p_r: np.ndarray
    p_d: np.ndarray

    def __init__(self, capacity: int = 1024) -> None:
        self.slot_of: dict[str, int] = {}
        self.device_ids: list[str | None] = []
        self.fix_ids = np.full(0, None, dtype=object)
        self._free: list[int] = []
        self._capacity = 0
        for name in _FLOATS:
            setattr(self, name, np.zeros(0))
        for name in _INTS:
            setattr(self, name, np.zeros(0, dtype=np.int64))
        self._grow(capacity)

    def _grow(self, capacity: int) -> None:
        for name in (*_FLOATS, *_INTS, "fix_ids"):
            old = getattr(self, name)
            new = np.full(capacity, math.inf if name == "x_acc" else None if name == "fix_ids" else 0,
                          dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self.slot_of)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self.slot_of

    def __iter__(self) -> Iterator[str]:
        return iter(self.slot_of)

    def get(self, device_id: str) -> Track | None:
        slot = self.slot_of.get(device_id)
        return None if slot is None else self.row(slot)

    def row(self, slot: int) -> Track:
        return Track(
            self.last_fix_at(slot), float(self.lat[slot]), float(self.lng[slot]), float(self.acc[slot]),
            fix_ids_of(self.fix_ids[slot]), int(self.jumps[slot]),
        )

    def last_fix_at(self, slot: int) -> datetime:
        return at_seconds(float(self.at_s[slot]))

    def add(
        self, device_id: str, at: datetime, lat: float, lng: float, accuracy_m: float,
        fix_ids: tuple[str, ...] | str | None,
    ) -> int:
        """A new device's track (its summary and disc empty)."""
        if self._free:
            slot = self._free.pop()
            self.device_ids[slot] = device_id
        else:
            slot = len(self.device_ids)
            if slot >= self._capacity:
                self._grow(max(1024, 2 * self._capacity))
            self.device_ids.append(device_id)
        for name in _INTS:
            getattr(self, name)[slot] = 0
        self.cv[slot] = -1
        self.d_r[slot], self.x_acc[slot], self.p_r[slot] = 0.0, math.inf, 0.0
        self.slot_of[device_id] = slot
        self.move(slot, at, lat, lng, accuracy_m, fix_ids)
        return slot

    def move(
        self, slot: int, at: datetime, lat: float, lng: float, accuracy_m: float,
        fix_ids: tuple[str, ...] | str | None,
    ) -> None:
        """The device's last accepted fix is now this one."""
        self.at_s[slot] = at.timestamp()
        self.lat[slot], self.lng[slot], self.acc[slot] = lat, lng, accuracy_m
        self.fix_ids[slot] = fix_ids

    def remove(self, device_id: str) -> None:
        slot = self.slot_of.pop(device_id)
        self.device_ids[slot] = None
        self.fix_ids[slot] = None
        self._free.append(slot)

    def slots(self) -> np.ndarray:
        """The slots in use."""
        return np.fromiter(self.slot_of.values(), np.int64, len(self.slot_of))

    def set_summary(
        self, slot: int, version: int, epoch: int, count: int, h1: float, h2: float, until_s: float,
        last: datetime,
    ) -> None:
        self.s_version[slot], self.s_epoch[slot], self.s_count[slot] = version, epoch, count
        self.s_h1[slot], self.s_h2[slot], self.s_until[slot] = h1, h2, until_s
        self.s_last[slot] = last.timestamp()
        self.x_acc[slot], self.p_r[slot] = math.inf, 0.0  # they were for the summary before

    def drop_discs(self) -> None:
        """The zones changed: no disc holds any more."""
        self.d_r[:] = self.p_r[:] = 0.0
        self.x_acc[:] = math.inf

