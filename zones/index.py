"""ZoneIndex: exact point-in-zone lookup through H3 cells, in memory, incrementally updatable.

Layout: for each H3 resolution used by some zone, a sorted array of cells with CSR tables of the zones each
cell is interior to and the zones it is a boundary cell of, flattened for the compiled lookup
(``zones.kernel``). A fix is looked up by computing ``latlng_to_cell`` ONCE, at ``FINE_RES`` (the finest
resolution of the table), then its ancestors at each resolution in use by bit arithmetic. That is exact
because covers are built for the *hierarchical* region of a cell (the union of its descendants at FINE_RES,
which differs from the cell's own hexagon near its edges — the parent trap), see ``zones.cells``: the
distance bound used to classify cells holds for both. An interior hit is a match, a boundary hit is
confirmed exactly: circles by a chord test (only fixes in the sub-metre band between the 128-gon and the
true circle reach shapely), areas by ``shapely.contains_xy`` batched per zone. Zones added since the last
snapshot are checked directly (bounding box + shapely) until ``REBUILD_AFTER`` changes accumulate; removed
zones are masked out. ``match`` (one fix) runs the same logic in plain Python over dicts.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import h3
import numpy as np
import shapely
from h3.api import basic_int as h3i
from shapely.geometry.base import BaseGeometry

from zones import clearance, kernel
from zones.boundary import Rings
from zones.boundary import rings as ring_arrays
from zones.cells import circle_covers, circle_margins_m, cover, disk_k, haversine_many
from zones.errors import ZoneError
from zones.geometry import EARTH_RADIUS_M, checked_shape, haversine_m, reference_latlng, signed_distance_m
from zones.model import Circle, Zone
from zones.sizing import RESOLUTION_TABLE, choose_resolution, zone_size_m

# h3's own compiled function, without the API module's Python wrapper around it (a tenth of match()'s time)
_latlng_to_cell = getattr(getattr(h3, "_cy", None), "latlng_to_cell", h3i.latlng_to_cell)

try:  # vectorised latlng_to_cell (~2x the h3 Python loop); optional
    from h3ronpy.vector import coordinates_to_cells as _h3ronpy_cells
except ImportError:  # pragma: no cover
    _h3ronpy_cells = None

REBUILD_AFTER = 32
FINE_RES = max(res for _, res in RESOLUTION_TABLE)


_KEEP_ARR, _SET_ARR = kernel.res_masks(np.arange(16))
_KEEP = [int(k) & 0xFFFFFFFFFFFFFFFF for k in _KEEP_ARR]  # the same masks as Python ints, for match()
_SET = [int(v) for v in _SET_ARR]


def ancestors_at(cells: np.ndarray, res: int) -> np.ndarray:
    """Vectorised ``cell_to_parent`` of int64 cells (all at a finer or equal resolution) to ``res``."""
    parents: np.ndarray = (cells & _KEEP_ARR[res]) | _SET_ARR[res]
    return parents


_Rows = tuple[tuple[Any, ...], tuple[Any, ...]]  # a cell's zones inside and its boundary rows


class _Scalar(NamedTuple):
    """What :meth:`ZoneIndex.match` probes (see ``_build_scalar``)."""

    keep: int | None  # masks turning a FINE_RES cell into the finest resolution in use (None: same)
    setb: int
    finest: dict[int, _Rows]  # ancestors merged in
    coarser: list[tuple[int, int, dict[int, _Rows]]]  # (keep, set, dict) per resolution


class ZoneMatches(NamedTuple):
    """Result of :meth:`ZoneIndex.match_many`: pairs as (fix position, zone index into ``ids``).

    Indices rather than one id string per pair: at ~70 zones per fix, creating and freeing a Python
    reference per pair costs more than the whole lookup (bench/bench_zones.py prints both).
    """

    positions: np.ndarray  # int64, into the caller's arrays
    zones: np.ndarray  # int64, into ids
    ids: np.ndarray  # object array: zone id of each index

    def zone_ids(self) -> np.ndarray:
        """The zone id of every pair (an object array aligned with ``positions``)."""
        ids: np.ndarray = self.ids[self.zones]
        return ids


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
    rings: Rings | None = None  # an area's boundary arrays, made on first use (``signed_distance_m``)


@dataclass
class _Table:
    """One resolution: sorted unique cells, and two CSR tables (interior and boundary zone slots)."""

    keys: np.ndarray  # sorted unique int64 cells
    istart: np.ndarray  # int32 offsets into islot, len(keys) + 1
    islot: np.ndarray  # int32 zone slots for which the cell is interior
    bstart: np.ndarray  # int32 offsets into bslot
    bslot: np.ndarray  # int32 zone slots for which the cell is boundary


_NO_INT = np.zeros(0, dtype=np.int32)
_NO_INT64 = np.zeros(0, dtype=np.int64)


def _csr(inv: np.ndarray, n_keys: int, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and values of a CSR table from entries sorted by key index ``inv``."""
    return np.searchsorted(inv, np.arange(n_keys + 1)).astype(np.int32), slots.astype(np.int32)


@dataclass
class _Flat:
    """All resolutions' tables in one layout for ``zones.kernel.lookup`` (see its docstring)."""

    room: int  # the most (fix, zone) entries one fix can produce
    res: np.ndarray  # the resolutions in use, ascending (row block r of head is res[r])
    keep: np.ndarray
    setb: np.ndarray
    kstart: np.ndarray
    head: np.ndarray
    islots: np.ndarray
    bslots: np.ndarray
    bdata: np.ndarray


def _flatten(tables: dict[int, _Table], circ: np.ndarray) -> _Flat:
    res = np.array(sorted(tables), dtype=np.int64)
    ts = [tables[int(r)] for r in res]
    keep, setb = kernel.res_masks(res)
    kstart = np.cumsum([0] + [len(t.keys) for t in ts]).astype(np.int64)
    n_keys = int(kstart[-1])

    def offsets(starts: list[np.ndarray]) -> np.ndarray:
        shift = np.cumsum([0] + [int(s[-1]) for s in starts])
        return np.concatenate([s[:-1] + d for s, d in zip(starts, shift, strict=False)] + [shift[-1:]])

    head = np.empty((n_keys + 1, 3), dtype=np.int64)
    head[:n_keys, 0] = np.concatenate([t.keys for t in ts]) if ts else np.zeros(0, np.int64)
    head[n_keys, 0] = np.iinfo(np.int64).max
    head[:, 1] = offsets([t.istart.astype(np.int64) for t in ts])
    head[:, 2] = offsets([t.bstart.astype(np.int64) for t in ts])
    islots = np.concatenate([_NO_INT] + [t.islot for t in ts])
    bslots = np.concatenate([_NO_INT] + [t.bslot for t in ts])
    room = sum(int(np.diff(t.istart).max(initial=0)) + int(np.diff(t.bstart).max(initial=0)) for t in ts)
    return _Flat(room, res, keep, setb, kstart, head, islots, bslots, circ[bslots])


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
        self._pending: list[int] = []
        self._dead_since_build = 0
        self._n_built = 0
        self._dead_ids: set[str] = set()  # zones whose table entries went stale since the last rebuild
        self._scalar: _Scalar | None = None
        self._pairs_per_fix = 16.0
        self.generation = 0  # bumped by every change of the zones (what a clearance was measured against)
        self._clear_cells: clearance.Cells | None = None  # made on first use after a rebuild
        self._clear_shapes: tuple[int, clearance.Shapes] | None = None  # (generation, shapes)
        self._grow(0)
        self._add_bulk(list(zones))
        self._rebuild()

    # ------------------------------------------------------------------ maintenance
    def _grow(self, n: int) -> None:
        cap = max(16, n)
        self._alive = np.zeros(cap, dtype=bool)
        self._ids = np.empty(cap, dtype=object)
        # per slot: unit vector of a circle's centre and its squared chord margins (see _set_circle);
        # an area has chord margins (-1, inf): every boundary hit goes to shapely
        self._circ = np.zeros((cap, 5))
        self._circ[:, 3], self._circ[:, 4] = -1.0, np.inf

    def _ensure(self, slot: int) -> None:
        if slot < len(self._alive):
            return
        old = (self._alive, self._ids, self._circ)
        self._grow(2 * slot + 16)
        for new, o in zip((self._alive, self._ids, self._circ), old, strict=True):
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
                circles = [cast(Circle, z.geometry) for z in members]  # grouped as circles above
                for z, c in zip(members, circle_covers(circles, res), strict=True):
                    covers[id(z)] = c
            except (ValueError, TypeError):  # an invalid centre: _add reports it zone by zone
                pass
        for z in zones:
            self._add(z, covers.get(id(z)))

    def _add(self, zone: Zone, precomputed: tuple[np.ndarray, np.ndarray] | None = None) -> int:
        shape = checked_shape(zone)
        shapely.prepare(shape)
        res = choose_resolution(zone_size_m(zone), area=not isinstance(zone.geometry, Circle))
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
        self._set_circle(slot, zone)
        return slot

    def _set_circle(self, slot: int, zone: Zone) -> None:
        """Great-circle distance is monotonic in the chord between unit vectors: comparing squared chords
        with the margins' squared chords decides inside/outside with no trigonometry per (fix, zone)."""
        g = zone.geometry
        if isinstance(g, Circle):
            inner, outer = circle_margins_m(g.radius_m)
            chord_in = 2.0 * math.sin(max(inner, 0.0) / (2.0 * EARTH_RADIUS_M))
            chord_out = 2.0 * math.sin(min(outer / (2.0 * EARTH_RADIUS_M), math.pi / 2))
            self._circ[slot] = (*_unit(g.lat, g.lng), chord_in * chord_in, chord_out * chord_out)

    def _kill(self, slot: int) -> None:
        self._alive[slot] = False
        if slot < self._n_built:  # its table entries are stale until the next rebuild
            self._dead_ids.add(self._ids[slot])
        self._entries[slot] = None
        self._dead_since_build += 1
        if slot in self._pending:
            self._pending.remove(slot)

    def _rebuild(self) -> None:
        """Re-pack every live zone into the per-resolution tables (no cover is recomputed)."""
        entries = [e for e in self._entries if e is not None]
        # compact slots so that dead zones do not accumulate
        self._entries = list(entries)
        self._slot_of = {e.zone.id: i for i, e in enumerate(entries)}
        self._grow(len(entries))
        for i, e in enumerate(entries):
            self._alive[i] = True
            self._ids[i] = e.zone.id
            self._set_circle(i, e.zone)
        by_res: dict[int, list[int]] = {}
        for i, e in enumerate(entries):
            by_res.setdefault(e.res, []).append(i)
        tables = {}
        for res, slots in by_res.items():
            ents = [self._entries[s] for s in slots]
            cells = np.concatenate([c for e in ents for c in (e.interior, e.boundary)])  # type: ignore[union-attr]
            slot_arr = np.repeat(
                np.array(slots, dtype=np.int32), [len(e.interior) + len(e.boundary) for e in ents]  # type: ignore[union-attr]
            )
            inter = np.concatenate(
                [np.arange(len(e.interior) + len(e.boundary)) < len(e.interior) for e in ents]  # type: ignore[union-attr]
            )
            order = np.lexsort((slot_arr, cells))
            cells, slot_arr, inter = cells[order], slot_arr[order], inter[order]
            keys, inv = np.unique(cells, return_inverse=True)
            istart, islot = _csr(inv[inter], len(keys), slot_arr[inter])
            bstart, bslot = _csr(inv[~inter], len(keys), slot_arr[~inter])
            tables[res] = _Table(keys, istart, islot, bstart, bslot)
        self._flat = _flatten(tables, self._circ)  # the per-resolution tables are not kept: one copy
        self._pending = []
        self._dead_since_build = 0
        self._n_built = len(self._entries)
        self._dead_ids = set()
        self._scalar = None
        self._clear_cells = None
        self.generation += 1

    def _maybe_rebuild(self) -> None:
        if len(self._pending) + self._dead_since_build >= REBUILD_AFTER:
            self._rebuild()

    # ------------------------------------------------------------------ public: maintenance
    def add(self, zone: Zone) -> None:
        """Add ``zone`` (validated; raises ZoneError) or replace the one with its id; no full rebuild."""
        slot = self._add(zone)
        self._pending.append(slot)
        self.generation += 1
        self._maybe_rebuild()

    def replace(self, zone: Zone) -> None:
        """Same as :meth:`add` for an existing id."""
        self.add(zone)

    def remove(self, zone_id: str) -> None:
        """Remove a zone; raises KeyError if unknown."""
        slot = self._slot_of.pop(zone_id)
        self._kill(slot)
        self.generation += 1
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
        """Ids of the zones containing ``lat, lng`` (degrees), exactly as ``zone_shape(zone)`` says.

        The scalar twin of :meth:`match_many`, in plain Python (numpy's per-call overhead would dominate):
        one ``latlng_to_cell`` and, usually, one dict probe (see ``_build_scalar``); only boundary hits are
        tested. The dicts are built on the first call after a rebuild.
        """
        if not (-90.0 <= lat <= 90.0 and lng - lng == 0.0):  # NaN fails both tests, inf the second
            return []
        if not -180.0 <= lng <= 180.0:  # same normalisation as match_many
            lng = (lng + 180.0) % 360.0 - 180.0
        out: list[str] = []
        if self._n_built:
            fine = _latlng_to_cell(lat, lng, FINE_RES)
            dead = self._dead_ids
            fx = fy = fz = 2.0  # the fix's unit vector, computed at the first circle boundary hit
            keep, setb, finest, coarser = self._scalar or self._build_scalar()
            found = finest.get(fine if keep is None else (fine & keep) | setb)
            if found is not None:  # the common case: one probe (ancestors merged in)
                founds: Iterable[tuple[Sequence[Any], Sequence[Any]]] = (found,)
            else:
                founds = [v for k, s, t in coarser if (v := t.get((fine & k) | s)) is not None]
            for inside, boundary in founds:
                if dead:
                    out += [z for z in inside if z not in dead]
                    boundary = [row for row in boundary if row[5] not in dead]
                else:
                    out += inside
                for ux, uy, uz, dot_in, dot_out, zid, slot in boundary:
                    if fx == 2.0:
                        p, g = lat * _RAD, lng * _RAD
                        cp = math.cos(p)
                        fx, fy, fz = cp * math.cos(g), cp * math.sin(g), math.sin(p)
                    dot = fx * ux + fy * uy + fz * uz  # a circle: the chord test (|a-b|^2 = 2 - 2 a.b)
                    if dot > dot_in:
                        out.append(zid)
                        continue
                    if dot < dot_out:
                        continue
                    e = self._entries[slot]
                    if e is not None and shapely.contains_xy(e.shape, lng, lat):
                        out.append(zid)
        if self._pending:
            for slot in self._pending:
                e = self._entries[slot]
                if e is not None and shapely.contains_xy(e.shape, lng, lat):
                    out.append(e.zone.id)
        return out

    def _build_scalar(self) -> _Scalar:
        """The dicts of :meth:`match`: cell -> (ids it is interior to, boundary rows), per resolution.

        The finest resolution's dict is *merged*: each of its cells also holds what its ancestors hold,
        so most fixes need one probe; a fix whose finest cell is not a key probes the coarser dicts.
        A boundary row is (circle unit vector, dot-product margins, zone id, slot), one shared tuple per
        zone (float64 rounding of the dot product: at most ~2 mm of distance, measured at 10 m to 50 km
        radii, inside the margins' 1 cm slack). Equal tuples are shared too (a zone's interior cells all
        hold the same few ids).
        """
        n = self._n_built
        circ, ids_ = self._circ[:n].tolist(), self._ids[:n].tolist()
        # dot-product margins: chord^2 < c2  <=>  a.b > 1 - c2 / 2 (areas: never decided here)
        rows = [
            (ux, uy, uz, 1.0 - cin2 / 2.0, 1.0 - cout2 / 2.0, ids_[s], s) if cin2 >= 0.0
            else (0.0, 0.0, 0.0, 2.0, -2.0, ids_[s], s)
            for s, (ux, uy, uz, cin2, cout2) in enumerate(circ)
        ]
        shared: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        per_res: list[tuple[int, dict[int, _Rows]]] = []
        f = self._flat
        ids = self._ids[f.islots].tolist()
        brow = [rows[s] for s in f.bslots.tolist()]
        ist, bst = f.head[:, 1].tolist(), f.head[:, 2].tolist()  # global offsets, one row past each block
        for r, res in enumerate(f.res.tolist()):
            first, last = int(f.kstart[r]), int(f.kstart[r + 1])
            table = {}
            for j, key in enumerate(f.head[first:last, 0].tolist(), start=first):
                inside = tuple(ids[ist[j] : ist[j + 1]])
                edge = tuple(brow[bst[j] : bst[j + 1]])
                value = (shared.setdefault(inside, inside), shared.setdefault(edge, edge))
                table[key] = shared.setdefault(value, value)
            per_res.append((res, table))
        finest_res, finest = per_res[-1]
        coarser = [(_KEEP[r], _SET[r], table) for r, table in per_res[:-1]]
        merged = {}
        for key, (inside, edge) in finest.items():
            for keep, setb, table in coarser:
                up = table.get((key & keep) | setb)
                if up is not None:
                    inside, edge = inside + up[0], edge + up[1]
            value = (shared.setdefault(inside, inside), shared.setdefault(edge, edge))
            merged[key] = shared.setdefault(value, value)
        fine_keep = None if finest_res == FINE_RES else _KEEP[finest_res]  # None: the fix's own cell
        self._scalar = scalar = _Scalar(fine_keep, _SET[finest_res], merged, coarser)
        return scalar

    def match_many(self, lats: np.ndarray, lngs: np.ndarray) -> ZoneMatches:
        """All (fix, zone) containment pairs of a batch, exact and vectorised.

        Parameters
        ----------
        lats, lngs : array_like of float, degrees, same length. Non-finite/out-of-range fixes match nothing.

        Returns
        -------
        ``ZoneMatches(positions, zones, ids)``, one row per pair in no particular order: ``positions`` int64
        indices into the inputs, ``zones`` int64 indices into ``ids``, the zone-id table of this result
        (like ``STRtree.query``'s indices into its geometries). ``.zone_ids()`` gives the id of every pair.
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
        far = np.abs(lngs) > 180.0
        if far.any():
            lngs = np.where(far, (lngs + 180.0) % 360.0 - 180.0, lngs)
        n = len(lats)
        if n and self._n_built:
            pos, slots = self._lookup(lats, lngs)
        else:
            pos, slots = _NO_INT64, _NO_INT64
        if n and self._pending:
            pos_parts, slot_parts = [pos], [slots]
            for slot in self._pending:
                e = self._entries[slot]
                if e is None:
                    continue
                minx, miny, maxx, maxy = e.bounds
                p = np.flatnonzero((lngs >= minx) & (lngs <= maxx) & (lats >= miny) & (lats <= maxy))
                hit = shapely.contains_xy(e.shape, lngs[p], lats[p])
                pos_parts.append(p[hit])
                slot_parts.append(np.full(int(hit.sum()), slot, dtype=np.int64))
            pos, slots = np.concatenate(pos_parts), np.concatenate(slot_parts)
        if base is not None:
            pos = base[pos]
        # the table is not copied: a slot's id never changes in place (a rebuild makes a new table)
        return ZoneMatches(pos, slots, self._ids)

    def _lookup(self, lats: np.ndarray, lngs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The table part of :meth:`match_many`: one H3 cell per fix, then the compiled kernel.

        The outputs are allocated once, with room for the pairs shapely confirms afterwards: at tens of
        millions of pairs per call, every extra copy of them shows in the throughput."""
        fine = cells_at(lats, lngs, FINE_RES)
        f = self._flat
        order = np.argsort(fine)
        fine = fine[order]  # the kernel reads fixes in cell order: sequential, cache-friendly
        p, g = np.radians(lats[order]), np.radians(lngs[order])
        cos_p = np.cos(p)
        ux, uy, uz = cos_p * np.cos(g), cos_p * np.sin(g), np.sin(p)
        cursor = f.kstart[:-1].copy()
        n = len(order)
        begin, chunks = 0, []
        per_fix = self._pairs_per_fix  # sizes the outputs; a low guess only costs another round
        while begin < n:
            size = int((n - begin) * per_fix * 1.25) + 4 * f.room
            small = size // 8 + 2 * f.room
            pos, slot = np.empty(size + small, np.int64), np.empty(size + small, np.int64)
            cp, cs = np.empty(small, np.int64), np.empty(small, np.int64)
            start = begin
            m, c, begin = kernel.lookup(
                fine, order, begin, cursor, ux, uy, uz, f.keep, f.setb, f.kstart, f.head, f.islots,
                f.bslots, f.bdata, self._alive, self._dead_since_build > 0, f.room,
                pos, slot, cp, cs,
            )
            per_fix = max(per_fix, m / max(1, begin - start))
            chunks.append((pos, slot, m, cp[:c], cs[:c]))
        if n >= 1000:
            self._pairs_per_fix = per_fix
        cp = np.concatenate([ch[3] for ch in chunks])
        cs = np.concatenate([ch[4] for ch in chunks])
        hit_p, hit_s = [], []
        if len(cs):  # exact tests: one vectorised call over every pair (a call per zone cost ~5 us each)
            entries = self._entries
            shapes = np.empty(len(cs), dtype=object)
            shapes[:] = [entries[s].shape for s in cs.tolist()]  # type: ignore[union-attr]
            hit = shapely.contains_xy(shapes, lngs[cp], lats[cp])
            hit_p.append(cp[hit])
            hit_s.append(cs[hit])
        k = sum(len(h) for h in hit_p)
        pos, slot, m = chunks[0][:3]
        if len(chunks) == 1 and m + k <= len(pos):  # the common case: no copy of the pairs
            if k:
                pos[m : m + k] = np.concatenate(hit_p)
                slot[m : m + k] = np.concatenate(hit_s)
            return pos[: m + k], slot[: m + k]
        return (
            np.concatenate([ch[0][: ch[2]] for ch in chunks] + hit_p),
            np.concatenate([ch[1][: ch[2]] for ch in chunks] + hit_s),
        )

    def presence_bounds(
        self, lats: np.ndarray, lngs: np.ndarray, inside: Sequence[Sequence[str]],
        steady: Sequence[Collection[str] | None],
    ) -> tuple[np.ndarray, np.ndarray]:
        """``zones.clearance.presence_bounds`` of each point, given the ids of the zones that contain it
        (``inside``, as ``match_many`` says) and those of them a device is steadily in (``steady``; None:
        all of them)."""
        ok, lat, lng = _measurable(lats, lngs)
        r, d = np.zeros(len(ok)), np.full(len(ok), np.inf)
        if not ok.any():
            return r, d
        cells, shapes, extra = self._clearance_tables()
        get = self._slot_of.__getitem__
        keep = np.flatnonzero(ok).tolist()
        inner = [list(map(get, inside[i])) for i in keep]
        steady_slots = [
            x if (st := steady[i]) is None else list(map(get, st)) for i, x in zip(keep, inner, strict=True)
        ]

        def csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
            ptr = np.cumsum([0] + list(map(len, rows))).astype(np.int64)
            return ptr, np.fromiter((s for x in rows for s in x), np.int64, int(ptr[-1]))

        at = cells_at(lat, lng, clearance.CLEARANCE_RES)
        r[ok], d[ok] = clearance.presence_bounds(
            cells, shapes, at, lat, lng, extra, csr(steady_slots), csr(inner)
        )
        return r, d

    def _clearance_tables(self) -> tuple[clearance.Cells, clearance.Shapes, np.ndarray]:
        """The clearance table (made on first use after a rebuild), every live zone's geometry (remade
        with each generation), and the zones added since the table (measured for every point)."""
        if self._clear_cells is None:
            self._clear_cells = clearance.cells(
                [(s, e.zone, e.shape, e.ref) for s, e in enumerate(self._entries[: self._n_built]) if e]
            )
        if self._clear_shapes is None or self._clear_shapes[0] != self.generation:
            self._clear_shapes = (self.generation, clearance.shapes(
                [(s, e.zone, self._rings(e)) for s, e in enumerate(self._entries) if e is not None],
                len(self._entries),
            ))
        extra = np.array([s for s in self._pending if self._entries[s] is not None], dtype=np.int64)
        return self._clear_cells, self._clear_shapes[1], extra

    def clearance_m(self, lats: np.ndarray, lngs: np.ndarray) -> np.ndarray:
        """Per point, metres within which every point lies in exactly the zones it lies in: a lower bound
        of its great-circle distance to every zone's boundary, at most ``clearance.CLEARANCE_CAP_M`` (0:
        none known). Valid for this ``generation`` of the index (see ``zones.clearance``)."""
        ok, lat, lng = _measurable(lats, lngs)
        out = np.zeros(len(ok))
        if not ok.any():
            return out
        cells, shapes, extra = self._clearance_tables()
        at = cells_at(lat, lng, clearance.CLEARANCE_RES)
        out[ok] = clearance.clearance_m(cells, shapes, at, lat, lng, extra)
        return out

    def _rings(self, e: _Entry) -> Rings | None:
        """An area's boundary arrays, made once (circles have none)."""
        if e.rings is None and not isinstance(e.zone.geometry, Circle):
            e.rings = ring_arrays(e.shape)
        return e.rings

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
            sd = self.signed_distance_m(e.zone.id, lat, lng)  # the entry's cached rings
            if sd <= distance_m:
                out.append((e.zone.id, sd))
        out.sort(key=lambda t: t[1])
        return out

    def signed_distance_m(self, zone_id: str, lat: float, lng: float, inside: bool | None = None) -> float:
        """Metres from ``lat, lng`` to the zone boundary: < 0 inside, > 0 outside. ``inside``: whether the
        zone contains the point, when the caller knows it from ``match_many`` (saves the polygon test)."""
        e = self._entry(zone_id)
        return signed_distance_m(e.zone, lat, lng, shape=e.shape, rings=self._rings(e), inside=inside)


def _measurable(lats: np.ndarray, lngs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which points the clearance table measures (finite, within its latitude and longitude range), and
    those points' latitudes and longitudes (the others get no clearance and no presence bound)."""
    lats = np.ascontiguousarray(lats, dtype=np.float64).ravel()
    lngs = np.ascontiguousarray(lngs, dtype=np.float64).ravel()
    ok = np.isfinite(lats) & np.isfinite(lngs)
    ok &= (np.abs(lats) <= clearance.MAX_LAT) & (np.abs(lngs) <= clearance.MAX_LNG)
    return ok, lats[ok], lngs[ok]


_RAD = math.pi / 180.0


def _unit(lat: float, lng: float) -> tuple[float, float, float]:
    p, g = lat * _RAD, lng * _RAD
    return math.cos(p) * math.cos(g), math.cos(p) * math.sin(g), math.sin(p)


__all__ = ["ZoneError", "ZoneIndex", "ZoneMatches"]
