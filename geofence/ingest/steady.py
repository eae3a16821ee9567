"""The accelerated lane's steady test: a device whose fixes are all in exactly the zones it is steadily
inside of needs no step (stepping would change nothing stored but its last fix).

A device's zones are compared as a count and two sums of 44-bit hashes of the zone ids: per fix,
vectorised over the batch (``Hits``), and per stored device (``Summary``, kept on the stored copy until
it or a zone's policy changes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np

from geofence.ingest.zone_policies import ZoneLookup, ZonePolicies
from geofence.presence import PresenceState
from geofence.store import StoredDevice
from zones.index import ZoneMatches

_MASK44 = (1 << 44) - 1
MAX_SUMMED_ZONES = 500  # 500 * 2**44 < 2**53
_ZONE_HASHES: dict[str, tuple[float, float]] = {}
NEVER = datetime.max.replace(tzinfo=UTC)
_INSIDE, _DWELLING = PresenceState.INSIDE, PresenceState.DWELLING


def zone_hash(zone_id: str) -> tuple[float, float]:
    """Two independent 44-bit hashes of a zone id, as floats: sums of up to ``MAX_SUMMED_ZONES`` of them
    are exact in float64 whatever the order of addition (numpy's per-fix sums, Python's per device)."""
    h = _ZONE_HASHES.get(zone_id)
    if h is None:
        v = int.from_bytes(hashlib.blake2b(zone_id.encode(), digest_size=11).digest(), "big")
        h = _ZONE_HASHES[zone_id] = (float(v & _MASK44), float((v >> 44) & _MASK44))
    return h


class Summary(NamedTuple):
    """A stored device's presences for the steady tests (see ``ZoneFacts.summary``)."""

    n_steady: int  # steady presences, and the sums of their zone-id hashes
    h1: float
    h2: float
    until: datetime  # the first dwell due among them
    until_s: float  # the same as a POSIX timestamp
    steady: frozenset[str]  # zones (indexed) the device is inside of with no dwell due yet, or dwelling in
    other: tuple[str, ...]  # zones of its other presences
    ok: bool  # no other presence, few enough zones for exact sums, and a stored head: may be skipped


class ZoneFacts:
    """Per zone, its id hashes and dwell time (kept until the zones or their policies change), and the
    hashes of the index's id table."""

    def __init__(self, index: ZoneLookup, policies: ZonePolicies) -> None:
        self.index, self.policies = index, policies
        self._info: dict[str, tuple[float, float, timedelta]] = {}
        self._epoch = policies.epoch
        self._hashed_ids: np.ndarray | None = None
        self._id_hash_arrays: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0))

    def clear(self) -> None:
        self._info.clear()

    def summary(self, device: StoredDevice) -> Summary:
        """The device's presences sorted into steady ones (inside with no dwell due yet, or dwelling:
        ``presence.stays_inside``) and the others, memoised on the stored copy for this policy epoch."""
        epoch = self.policies.epoch
        memo = device.memo
        if memo is not None and memo[0] == epoch:
            cached: Summary = memo[1]
            return cached
        if self._epoch != epoch:
            self._info.clear()
            self._epoch = epoch
        count, h1, h2, until = 0, 0.0, 0.0, NEVER
        steady: list[str] = []
        other: list[str] = []
        info = self._info
        for zone_id, p in device.presences.items():
            zone = info.get(zone_id)
            if zone is None:
                zone = self._zone_info(zone_id)
            state = p.state
            if zone is not None and (state is _DWELLING and p.dwelled or state is _INSIDE and not p.dwelled):
                if state is _INSIDE and p.entered_at is not None:
                    until = min(until, p.entered_at + zone[2])
                steady.append(zone_id)
                count, h1, h2 = count + 1, h1 + zone[0], h2 + zone[1]
            else:
                other.append(zone_id)
        ok = not other and count <= MAX_SUMMED_ZONES and device.version > 0
        summary = Summary(count, h1, h2, until, until.timestamp(), frozenset(steady), tuple(other), ok)
        device.memo = (epoch, summary)
        return summary

    def _zone_info(self, zone_id: str) -> tuple[float, float, timedelta] | None:
        if zone_id not in self.index:
            return None
        info = self._info[zone_id] = (*zone_hash(zone_id), self.policies(zone_id).dwell_after)
        return info

    def id_hashes(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The zone-id hashes of an index id table (computed once per table: it changes with the zones)."""
        if self._hashed_ids is not ids:
            pairs = np.array(  # a removed zone's slot (None) is never matched
                [zone_hash(z) if z is not None else (0.0, 0.0) for z in ids.tolist()], dtype=np.float64
            ).reshape(-1, 2)
            self._hashed_ids, self._id_hash_arrays = ids, (pairs[:, 0].copy(), pairs[:, 1].copy())
        return self._id_hash_arrays


class Hits:
    """One batch's index matches, by row of the fixes matched: per-row counts and hash sums for the
    steady test, and the zone ids of a row only when a device has to be stepped."""

    def __init__(
        self, found: ZoneMatches, n: int, hashes: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    ) -> None:
        self.found, self.n, self._hashes = found, n, hashes
        self.counts = np.bincount(found.positions, minlength=n)
        self._sums: tuple[np.ndarray, np.ndarray] | None = None
        self._lists: tuple[list[int], list[float], list[float]] | None = None
        self._sorted: tuple[list[str], list[int]] | None = None

    def sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the two sums of the hashes of the zones that contain the fix."""
        if self._sums is None:
            h1, h2 = self._hashes(self.found.ids)
            pos, zones = self.found.positions, self.found.zones
            self._sums = (
                np.bincount(pos, weights=h1[zones], minlength=self.n),
                np.bincount(pos, weights=h2[zones], minlength=self.n),
            )
        return self._sums

    def lists(self) -> tuple[list[int], list[float], list[float]]:
        if self._lists is None:
            s1, s2 = self.sums()
            self._lists = (self.counts.tolist(), s1.tolist(), s2.tolist())
        return self._lists

    def ids_by_fix(self, rows: list[tuple[int, int]]) -> dict[int, list[str]]:
        """Fix position -> ids of the zones that contain its centre, for these (row, position) pairs."""
        out: dict[int, list[str]] = {}
        for j, i in rows:
            found = self.ids_of(j)
            if found:
                out[i] = found
        return out

    def ids_of(self, row: int) -> list[str]:
        """Ids of the zones that contain one row's fix."""
        if self._sorted is None:
            by_row = np.argsort(self.found.positions, kind="stable")
            ends = np.cumsum(self.counts).tolist()
            self._sorted = (self.found.ids[self.found.zones[by_row]].tolist(), ends)
        ids, ends = self._sorted
        return ids[ends[row - 1] if row else 0 : ends[row]]
