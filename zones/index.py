"""ZoneIndex: exact point-in-zone lookup through H3 cells, in memory, incrementally updatable.

Layout: for each H3 resolution used by some zone, a sorted array of cell ids with a CSR table of (zone slot,
interior?) entries. A fix is looked up by computing ``latlng_to_cell`` ONCE, at ``FINE_RES`` (the finest
resolution of the table), then its ancestors at each resolution in use by bit arithmetic. That is exact
because covers are built for the *hierarchical* region of a cell (the union of its descendants at FINE_RES,
which differs from the cell's own hexagon near its edges — the parent trap), see ``zones.cells``: the
distance bound used to classify cells holds for both. An interior hit is a match, a boundary hit is
confirmed exactly: circles by a vectorised great-circle distance (only fixes in the sub-metre band between
the 128-gon and the true circle reach shapely), areas by ``shapely.contains_xy`` batched per zone. Zones
added since the last snapshot are checked directly (bounding box + shapely) until ``REBUILD_AFTER`` changes
accumulate; removed zones are masked out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import shapely
from h3.api import basic_int as h3i
from shapely.geometry.base import BaseGeometry

from zones.cells import circle_covers, circle_margins_m, cover, disk_k, haversine_many
from zones.errors import ZoneError
from zones.geometry import checked_shape, haversine_m, reference_latlng, signed_distance_m
from zones.model import Circle, Zone
from zones.sizing import RESOLUTION_TABLE, choose_resolution, zone_size_m

try:  # vectorised latlng_to_cell (~2x the h3 Python loop); optional
    from h3ronpy.vector import coordinates_to_cells as _h3ronpy_cells
except ImportError:  # pragma: no cover
    _h3ronpy_cells = None

REBUILD_AFTER = 32
FINE_RES = max(res for _, res in RESOLUTION_TABLE)
_RES_SHIFT = 52


def ancestors_at(cells: np.ndarray, res: int) -> np.ndarray:
    """Vectorised ``cell_to_parent`` of int64 cells (all at a finer or equal resolution) to ``res``."""
    low = (1 << ((15 - res) * 3)) - 1  # digits res+1..15 set to 7 (unused)
    keep = ~np.int64((0xF << _RES_SHIFT) | low)
    return (cells & keep) | np.int64((res << _RES_SHIFT) | low)


@dataclass
class _Entry:
    zone: Zone
    shape: BaseGeometry
    res: int
    interior: np.ndarray
    boundary: np.ndarray
    ref: tuple[float, float]
    reach_m: float  # distance from ref to the farthest point of the zone
    bounds: tuple[float, float, float, float]


@dataclass
class _Table:
    keys: np.ndarray  # sorted unique int64 cells
    starts: np.ndarray  # CSR offsets, len(keys) + 1
    slot: np.ndarray  # int32 zone slot per entry
    interior: np.ndarray  # bool per entry


def cells_at(lats: np.ndarray, lngs: np.ndarray, res: int) -> np.ndarray:
    """int64 H3 cells of finite, in-range fixes (callers filter); vectorised with h3ronpy when available."""
    if _h3ronpy_cells is not None and len(lats) > 64:
        return np.asarray(_h3ronpy_cells(lats, lngs, res)).view(np.int64)
    return np.fromiter(
        (h3i.latlng_to_cell(a, b, res) for a, b in zip(lats.tolist(), lngs.tolist(), strict=True)),
        dtype=np.uint64,
        count=len(lats),
    ).view(np.int64)


class ZoneIndex:
    """In-memory exact index of zones. Not thread-safe: callers serialise writes (reads may share)."""

    def __init__(self, zones: Iterable[Zone] = ()) -> None:
        self._entries: list[_Entry | None] = []
        self._slot_of: dict[str, int] = {}
        self._tables: dict[int, _Table] = {}
        self._pending: list[int] = []
        self._dead_since_build = 0
        self._grow(0)
        self._add_bulk(list(zones))
        self._rebuild()

    # ------------------------------------------------------------------ maintenance
    def _grow(self, n: int) -> None:
        cap = max(16, n)
        self._alive = np.zeros(cap, dtype=bool)
        self._ids = np.empty(cap, dtype=object)
        self._is_circle = np.zeros(cap, dtype=bool)
        self._clat = np.zeros(cap)
        self._clng = np.zeros(cap)
        self._inner = np.zeros(cap)
        self._outer = np.zeros(cap)

    def _ensure(self, slot: int) -> None:
        if slot < len(self._alive):
            return
        old = (self._alive, self._ids, self._is_circle, self._clat, self._clng, self._inner, self._outer)
        self._grow(2 * slot + 16)
        for new, o in zip(
            (self._alive, self._ids, self._is_circle, self._clat, self._clng, self._inner, self._outer),
            old,
            strict=True,
        ):
            new[: len(o)] = o

    def _add_bulk(self, zones: list[Zone]) -> None:
        """Initial build: circle covers are computed in vectorised groups (same resolution and disk)."""
        groups: dict[tuple[int, int], list[Zone]] = {}
        for z in zones:
            g = z.geometry
            if isinstance(g, Circle) and isinstance(g.radius_m, int | float) and math.isfinite(g.radius_m):
                res = choose_resolution(g.radius_m)
                groups.setdefault((res, disk_k(g.radius_m, res)), []).append(z)
        covers: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
        for (res, _), members in groups.items():
            try:
                for z, c in zip(members, circle_covers([z.geometry for z in members], res), strict=True):
                    covers[id(z)] = c
            except (ValueError, TypeError):  # an invalid centre: _add reports it zone by zone
                pass
        for z in zones:
            self._add(z, covers.get(id(z)))

    def _add(self, zone: Zone, precomputed: tuple[np.ndarray, np.ndarray] | None = None) -> int:
        shape = checked_shape(zone)
        shapely.prepare(shape)
        res = choose_resolution(zone_size_m(zone))
        ref = reference_latlng(zone, shape)
        if precomputed is not None:
            interior, boundary = precomputed
        else:
            interior, boundary = cover(zone, shape, res, ref)
        if isinstance(zone.geometry, Circle):
            reach = zone.geometry.radius_m
        else:
            reach = max(
                haversine_m(ref[0], ref[1], y, x)
                for p in getattr(shape, "geoms", [shape])
                for x, y in p.exterior.coords
            )
        if zone.id in self._slot_of:
            self._kill(self._slot_of[zone.id])
        slot = len(self._entries)
        self._entries.append(_Entry(zone, shape, res, interior, boundary, ref, reach, shape.bounds))
        self._slot_of[zone.id] = slot
        self._ensure(slot)
        self._alive[slot] = True
        self._ids[slot] = zone.id
        g = zone.geometry
        if isinstance(g, Circle):
            self._is_circle[slot] = True
            self._clat[slot], self._clng[slot] = g.lat, g.lng
            self._inner[slot], self._outer[slot] = circle_margins_m(g.radius_m)
        return slot

    def _kill(self, slot: int) -> None:
        self._alive[slot] = False
        self._entries[slot] = None
        self._dead_since_build += 1
        if slot in self._pending:
            self._pending.remove(slot)

    def _rebuild(self) -> None:
        """Re-pack every live zone into the per-resolution tables (no cover is recomputed)."""
        live = [(s, e) for s, e in enumerate(self._entries) if e is not None]
        # compact slots so that dead zones do not accumulate
        self._entries = [e for _, e in live]
        self._slot_of = {e.zone.id: i for i, e in enumerate(self._entries)}
        self._grow(len(self._entries))
        for i, e in enumerate(self._entries):
            self._alive[i] = True
            self._ids[i] = e.zone.id
            g = e.zone.geometry
            if isinstance(g, Circle):
                self._is_circle[i] = True
                self._clat[i], self._clng[i] = g.lat, g.lng
                self._inner[i], self._outer[i] = circle_margins_m(g.radius_m)
        by_res: dict[int, list[int]] = {}
        for i, e in enumerate(self._entries):
            by_res.setdefault(e.res, []).append(i)
        tables = {}
        for res, slots in by_res.items():
            cells = np.concatenate(
                [np.concatenate([self._entries[s].interior, self._entries[s].boundary]) for s in slots]
            )
            slot_arr = np.concatenate(
                [
                    np.full(
                        len(self._entries[s].interior) + len(self._entries[s].boundary), s, dtype=np.int32
                    )
                    for s in slots
                ]
            )
            inter = np.concatenate(
                [
                    np.r_[
                        np.ones(len(self._entries[s].interior), bool),
                        np.zeros(len(self._entries[s].boundary), bool),
                    ]
                    for s in slots
                ]
            )
            order = np.argsort(cells, kind="stable")
            cells, slot_arr, inter = cells[order], slot_arr[order], inter[order]
            keys, first = np.unique(cells, return_index=True)
            starts = np.append(first, len(cells)).astype(np.int64)
            tables[res] = _Table(keys, starts, slot_arr, inter)
        self._tables = tables
        self._pending = []
        self._dead_since_build = 0

    def _maybe_rebuild(self) -> None:
        if len(self._pending) + self._dead_since_build >= REBUILD_AFTER:
            self._rebuild()

    # ------------------------------------------------------------------ public: maintenance
    def add(self, zone: Zone) -> None:
        """Add ``zone`` (validated; raises ZoneError) or replace the one with its id; no full rebuild."""
        slot = self._add(zone)
        self._pending.append(slot)
        self._maybe_rebuild()

    def replace(self, zone: Zone) -> None:
        """Same as :meth:`add` for an existing id."""
        self.add(zone)

    def remove(self, zone_id: str) -> None:
        """Remove a zone; raises KeyError if unknown."""
        slot = self._slot_of.pop(zone_id)
        self._kill(slot)
        self._maybe_rebuild()

    def get(self, zone_id: str) -> Zone:
        return self._entry(zone_id).zone

    def _entry(self, zone_id: str) -> _Entry:
        e = self._entries[self._slot_of[zone_id]]
        assert e is not None
        return e

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._slot_of

    def zones(self) -> Iterator[Zone]:
        return (e.zone for e in self._entries if e is not None)

    def resolution(self, zone_id: str) -> int:
        return self._entry(zone_id).res

    def cells(self, zone_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(interior, boundary) int64 H3 cells of a zone."""
        e = self._entry(zone_id)
        return e.interior, e.boundary

    # ------------------------------------------------------------------ lookups
    def match(self, lat: float, lng: float) -> list[str]:
        """Ids of the zones containing ``lat, lng`` (degrees), exactly as ``zone_shape(zone)`` says."""
        if not (math.isfinite(lat) and math.isfinite(lng) and -90.0 <= lat <= 90.0):
            return []
        if abs(lng) > 180.0:  # same normalisation as match_many
            lng = (lng + 180.0) % 360.0 - 180.0
        out: list[str] = []
        fine = h3i.latlng_to_cell(lat, lng, FINE_RES)
        for res, t in self._tables.items():
            cell = h3i.cell_to_parent(fine, res) if res != FINE_RES else fine
            keys = t.keys
            i = int(keys.searchsorted(cell))
            if i == len(keys) or keys[i] != cell:
                continue
            lo, hi = t.starts[i : i + 2].tolist()
            alive, ids = self._alive, self._ids
            for slot, inside in zip(t.slot[lo:hi].tolist(), t.interior[lo:hi].tolist(), strict=True):
                if alive[slot] and (inside or self._check_one(slot, lat, lng)):
                    out.append(ids[slot])
        for slot in self._pending:
            e = self._entries[slot]
            if e is not None and shapely.contains_xy(e.shape, lng, lat):
                out.append(e.zone.id)
        return out

    def _check_one(self, slot: int, lat: float, lng: float) -> bool:
        if self._is_circle[slot]:
            d = haversine_m(float(self._clat[slot]), float(self._clng[slot]), lat, lng)
            if d < self._inner[slot]:
                return True
            if d > self._outer[slot]:
                return False
        e = self._entries[slot]
        assert e is not None
        return bool(shapely.contains_xy(e.shape, lng, lat))

    def match_many(self, lats: np.ndarray, lngs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All (fix, zone) containment pairs of a batch, exact and vectorised.

        Parameters
        ----------
        lats, lngs : array_like of float, degrees, same length. Non-finite/out-of-range fixes match nothing.

        Returns
        -------
        (positions, zone_ids): ``positions`` int64 indices into the inputs, ``zone_ids`` an object array of
        zone id strings, one row per pair, in no particular order.
        """
        lats = np.ascontiguousarray(lats, dtype=np.float64).ravel()
        lngs = np.ascontiguousarray(lngs, dtype=np.float64).ravel()
        if lats.shape != lngs.shape:
            raise ValueError("lats and lngs must have the same length")
        ok = np.isfinite(lats) & np.isfinite(lngs) & (np.abs(lats) <= 90.0)
        base = None
        if not ok.all():
            base = np.flatnonzero(ok)
            lats, lngs = lats[base], lngs[base]
        lngs = np.where(np.abs(lngs) > 180.0, (lngs + 180.0) % 360.0 - 180.0, lngs)
        pos_parts: list[np.ndarray] = []
        slot_parts: list[np.ndarray] = []
        check_pos: list[np.ndarray] = []
        check_slot: list[np.ndarray] = []
        n = len(lats)
        by_cell = None
        if n and self._tables:
            fine = cells_at(lats, lngs, FINE_RES)
            # sorted queries make every searchsorted below cache-friendly (ancestors keep the order)
            by_cell = np.argsort(fine, kind="stable")
            fine, lats, lngs = fine[by_cell], lats[by_cell], lngs[by_cell]
        if n:
            for res, t in self._tables.items():
                if not len(t.keys):
                    continue
                q = ancestors_at(fine, res) if res != FINE_RES else fine
                i = np.searchsorted(t.keys, q)
                np.minimum(i, len(t.keys) - 1, out=i)
                fix = np.flatnonzero(t.keys[i] == q)
                if not len(fix):
                    continue
                k = i[fix]
                lo = t.starts[k]
                cnt = t.starts[k + 1] - lo
                total = int(cnt.sum())
                pos = np.repeat(fix, cnt)
                ent = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(total)
                slot = t.slot[ent]
                inter = t.interior[ent]
                if self._dead_since_build:
                    live = self._alive[slot]
                    pos, slot, inter = pos[live], slot[live], inter[live]
                pos_parts.append(pos[inter])
                slot_parts.append(slot[inter])
                b = ~inter
                bpos, bslot = pos[b], slot[b]
                circ = self._is_circle[bslot]
                cpos, cslot = bpos[circ], bslot[circ]
                d = _haversine_pairs(self._clat[cslot], self._clng[cslot], lats[cpos], lngs[cpos])
                yes = d < self._inner[cslot]
                pos_parts.append(cpos[yes])
                slot_parts.append(cslot[yes])
                band = ~yes & (d <= self._outer[cslot])
                check_pos += [cpos[band], bpos[~circ]]
                check_slot += [cslot[band], bslot[~circ]]
            if check_pos:
                cp = np.concatenate(check_pos)
                cs = np.concatenate(check_slot)
                if len(cp):
                    order = np.argsort(cs, kind="stable")
                    cp, cs = cp[order], cs[order]
                    bounds = np.flatnonzero(np.diff(cs)) + 1
                    for a, z in zip(np.r_[0, bounds], np.r_[bounds, len(cs)], strict=True):
                        p = cp[a:z]
                        e = self._entries[int(cs[a])]
                        hit = shapely.contains_xy(e.shape, lngs[p], lats[p])
                        pos_parts.append(p[hit])
                        slot_parts.append(cs[a:z][hit])
            for slot in self._pending:
                e = self._entries[slot]
                if e is None:
                    continue
                minx, miny, maxx, maxy = e.bounds
                p = np.flatnonzero((lngs >= minx) & (lngs <= maxx) & (lats >= miny) & (lats <= maxy))
                hit = shapely.contains_xy(e.shape, lngs[p], lats[p])
                pos_parts.append(p[hit])
                slot_parts.append(np.full(int(hit.sum()), slot, dtype=np.int32))
        if not pos_parts:
            return np.zeros(0, dtype=np.int64), np.empty(0, dtype=object)
        pos = np.concatenate(pos_parts).astype(np.int64, copy=False)
        slots = np.concatenate(slot_parts)
        if by_cell is not None:
            pos = by_cell[pos]
        if base is not None:
            pos = base[pos]
        return pos, self._ids[slots]

    def near(self, lat: float, lng: float, distance_m: float) -> list[tuple[str, float]]:
        """Zones containing ``lat, lng`` or within ``distance_m`` of it: (id, signed m), nearest first."""
        if not (math.isfinite(lat) and math.isfinite(lng) and -90.0 <= lat <= 90.0):
            return []
        live = [e for e in self._entries if e is not None]
        if not live:
            return []
        rl = np.array([e.ref[0] for e in live])
        rg = np.array([e.ref[1] for e in live])
        reach = np.array([e.reach_m for e in live])
        d = haversine_many(lat, lng, rl, rg)
        out = []
        for j in np.flatnonzero(d - reach <= distance_m + 1.0):
            e = live[int(j)]
            sd = signed_distance_m(e.zone, lat, lng, shape=e.shape)
            if sd <= distance_m:
                out.append((e.zone.id, sd))
        out.sort(key=lambda t: t[1])
        return out

    def signed_distance_m(self, zone_id: str, lat: float, lng: float) -> float:
        """Metres from ``lat, lng`` to the zone boundary: < 0 inside, > 0 outside."""
        e = self._entry(zone_id)
        return signed_distance_m(e.zone, lat, lng, shape=e.shape)


def _haversine_pairs(lat1: np.ndarray, lng1: np.ndarray, lat2: np.ndarray, lng2: np.ndarray) -> np.ndarray:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lng2 - lng1) / 2) ** 2
    return 12_742_017.6 * np.arcsin(np.minimum(1.0, np.sqrt(a)))


__all__ = ["ZoneError", "ZoneIndex"]
