"""The accelerated lane's discs, kept on the device tracks (``geofence.tracks``): what spares a fix the
zone index.

- A device's *disc*: the point it was last matched at and that point's clearance. A fix closer to the
  point than that is in exactly the point's zones (the track keeps their count and hash sums).
- Its *presence disc*, made where it was last found steady: its steady zones still hold a fix within it,
  and no point of it is deep enough in any other zone to start an enter at the fix's accuracy.
- On a disc, the accuracy above which a fix is too shallow to enter any zone of the disc beyond the
  device's steady ones (``shallow_bound``).

All of them hold until the zones change (``Discs.follow_zones``).
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np

from geofence.fixes import EARTH_RADIUS_M, LocationFix
from geofence.ingest.fast_screen import Lane
from geofence.ingest.steady import Hits
from geofence.ingest.zone_policies import ZoneLookup, ZonePolicies
from geofence.tracks import Tracks


def metres(lat1: np.ndarray, lng1: np.ndarray, lat2: np.ndarray, lng2: np.ndarray) -> np.ndarray:
    """Great-circle distances, as ``zones`` measures them (haversine, ``fixes.EARTH_RADIUS_M``)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lng2 - lng1) / 2) ** 2
    distance: np.ndarray = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return distance


class Discs:
    def __init__(self, tracks: Tracks, index: ZoneLookup, policies: ZonePolicies) -> None:
        self.tracks, self.index, self.policies = tracks, index, policies
        self._generation = -1  # the index generation the discs were measured against
        self._ratio_checked, self._ratio_ok = 0, False  # ``uniform_ratio``, as of this policy epoch

    def follow_zones(self) -> bool:
        """Drop every disc if the zones changed since they were measured; True if they did."""
        if self.index.generation == self._generation:
            return False
        self.tracks.drop_discs()
        self._ratio_checked = 0
        self._generation = self.index.generation
        return True

    def locate(self, lane: Lane) -> tuple[np.ndarray, np.ndarray]:
        """Per lane row, whether the fix lies in its device's disc and whether it lies in its presence
        disc. Sets ``lane.shift`` and ``lane.pshift``: each fix's distance from the centre of each (inf:
        none)."""
        tracks, s = self.tracks, lane.slots
        lane.shift, lane.pshift = np.full(len(s), np.inf), np.full(len(s), np.inf)
        found = []
        for radius, lat, lng, shift in ((tracks.d_r[s], tracks.d_lat, tracks.d_lng, lane.shift),
                                        (tracks.p_r[s], tracks.p_lat, tracks.p_lng, lane.pshift)):
            inside = radius > 0.0
            if inside.any():
                shift[inside] = metres(lat[s[inside]], lng[s[inside]], lane.lat[inside], lane.lng[inside])
                inside &= shift < radius
            found.append(inside)
        return found[0], found[1]

    def make(self, lane: Lane, rows: np.ndarray, hit_rows: np.ndarray, hits: Hits) -> None:
        """Discs for these lane rows, centred on their fixes (``hit_rows``: their rows in ``hits``)."""
        tracks, s = self.tracks, lane.slots[rows]
        lat, lng = lane.lat[rows], lane.lng[rows]
        tracks.d_r[s] = self.index.clearance_m(lat, lng)
        tracks.d_lat[s], tracks.d_lng[s] = lat, lng
        s1, s2 = hits.sums()
        tracks.d_count[s], tracks.d_h1[s], tracks.d_h2[s] = hits.counts[hit_rows], s1[hit_rows], s2[hit_rows]
        tracks.x_acc[s] = math.inf  # a new disc: no bound for its shallow zones yet
        lane.shift[rows] = 0.0  # each of these fixes is its disc's centre

    def make_presence(self, lane: Lane, settled: list[tuple[int, int, Collection[str]]], hits: Hits) -> None:
        """Presence discs for these lane rows (row, its row in ``hits``, its device's steady zones: () for
        all its fix's zones), centred on their fixes: ``ZoneIndex.presence_bounds`` of each. Their steady
        summary holds at the version they were settled at; a new summary drops the disc."""
        if not settled or not self.uniform_ratio():
            return
        rows = np.array([r for r, _, _ in settled], dtype=np.int64)
        inside = [hits.ids_of(j) for _, j, _ in settled]
        steady = [zones or None for _, _, zones in settled]
        radius, depth = self.index.presence_bounds(lane.lat[rows], lane.lng[rows], inside, steady)
        tracks, s = self.tracks, lane.slots[rows]
        tracks.p_r[s] = np.where(np.isfinite(depth), radius, 0.0)
        tracks.p_lat[s], tracks.p_lng[s], tracks.p_d[s] = lane.lat[rows], lane.lng[rows], depth

    def uniform_ratio(self) -> bool:
        """Whether every zone's policy has the global ``enter_depth_ratio`` (a presence disc bounds the
        depth a fix may have in any zone near it with that one ratio)."""
        policies = self.policies
        if self._ratio_checked != policies.epoch:
            ratio = policies.default.enter_depth_ratio
            self._ratio_ok = ratio > 0.0 and all(
                policies(z.id).enter_depth_ratio == ratio for z in self.index.zones()
            )
            self._ratio_checked = policies.epoch
        return self._ratio_ok

    def shallow_bound(self, slot: int, fix: LocationFix, extra: list[str], depths: list[float]) -> None:
        """Keep on the track what the accuracy of a fix in its disc must exceed for every one of these
        zones (which all contain the disc) to be too shallow to enter: ``x_acc`` plus ``x_per_m`` per
        metre from the disc's centre. A point of the disc is no deeper in a zone than the centre plus its
        distance from it (an area's depth, measured in each point's own projection, by 0.1 % more);
        ``depths`` are the fix's, which is the centre when the disc was made at it."""
        tracks, index = self.tracks, self.index
        lat, lng = float(tracks.d_lat[slot]), float(tracks.d_lng[slot])
        at_centre = lat == fix.lat and lng == fix.lng
        base = per_m = 0.0
        for zone_id, depth in zip(extra, depths, strict=True):
            ratio = self.policies(zone_id).enter_depth_ratio
            if ratio <= 0.0:
                return
            if not at_centre:
                depth = -index.signed_distance_m(zone_id, lat, lng, True)
            base = max(base, (depth * 1.001 + 0.01) / ratio)
            per_m = max(per_m, 1.001 / ratio)
        tracks.x_acc[slot], tracks.x_per_m[slot] = base, per_m
