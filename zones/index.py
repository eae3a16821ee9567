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
snapshot are checked directly (bounding box + shapely) until ``PENDING`` of them are packed into a run;
removed zones are masked out. ``match`` (one fix) runs the same logic in plain Python over dicts.

This module holds the lookups; building and changing the tables is ``zones.packing`` (``PackedZones``,
which ``ZoneIndex`` extends), their layouts ``zones.lookup_tables``, a fix's cells ``zones.fix_cells``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import shapely

from zones import clearance, kernel
from zones.boundary import Rings
from zones.boundary import rings as ring_arrays
from zones.cells import haversine_many
from zones.entries import Entry as _Entry
from zones.errors import ZoneError
from zones.fix_cells import FINE_RES, cells_at
from zones.fix_cells import latlng_to_cell as _latlng_to_cell
from zones.geometry import signed_distance_m
from zones.lookup_tables import Part as _Part
from zones.lookup_tables import Rows as _Rows
from zones.lookup_tables import Scalar as _Scalar
from zones.lookup_tables import scalar_of
from zones.model import Circle
from zones.packing import PackedZones

SCALAR_MAX_KEYS = 4_000_000  # a larger base makes ``match`` use the kernel (~10 us) instead of dicts (~3 us)


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


_NO_INT64 = np.zeros(0, dtype=np.int64)


class ZoneIndex(PackedZones):
    """In-memory exact index of zones. Not thread-safe: callers serialise writes (reads may share).

    Layout: a *base* table packed when the index is built (or ``compact``-ed), *runs*: small tables of the
    zones added or replaced since, each at most ``RUN_ZONES`` zones, and up to ``PENDING`` zones checked
    directly. A change costs its zone's cover plus, every ``PENDING`` changes, re-packing one run; removed
    or replaced zones stay in their table, masked (``alive``), until ``compact``. Nothing a change does
    grows with the size of the base.
    """

    # ------------------------------------------------------------------ lookups
    def match(self, lat: float, lng: float) -> list[str]:
        """Ids of the zones containing ``lat, lng`` (degrees), exactly as ``zone_shape(zone)`` says.

        The scalar twin of :meth:`match_many`, in plain Python (numpy's per-call overhead would dominate):
        one ``latlng_to_cell`` and, usually, one dict probe per table (see ``_scalar``); only boundary hits
        are tested. The dicts are built on the first call after a table is packed. Fixes outside
        [-90, 90] x [-180, 180] match nothing (see docs/zones.md, *Edges*).
        """
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0):  # NaN fails both tests
            return []
        if len(self._base.flat.keys) > SCALAR_MAX_KEYS:  # dicts of a million zones would not fit
            return self.match_many(np.array([lat]), np.array([lng])).zone_ids().tolist()  # type: ignore[no-any-return]
        out: list[str] = []
        fine = _latlng_to_cell(lat, lng, FINE_RES)
        fx = fy = fz = 2.0  # the fix's unit vector, computed at the first circle boundary hit
        for part in self._parts():
            if not part.slots:
                continue
            keep, setb, finest, coarser = part.scalar or self._scalar(part)
            found = finest.get(fine if keep is None else (fine & keep) | setb)
            if found is not None:  # the common case: one probe (ancestors merged in)
                founds: Iterable[_Rows] = (found,)
            else:
                founds = [v for k, s, t in coarser if (v := t.get((fine & k) | s)) is not None]
            dead = part.dead_ids
            for inside, rows in founds:
                boundary: Iterable[tuple[Any, ...]] = rows
                if dead:
                    out += [z for z in inside if z not in dead]
                    boundary = [row for row in rows if row[5] not in dead]
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
                    if e is not None and shapely.contains_xy(self._shape(e), lng, lat):
                        out.append(zid)
        if _on_cut(lng):  # the cut of split zones: interior cells do not hold there (docs/zones.md)
            out = [z for z in out if shapely.contains_xy(self._shape(self._entry(z)), lng, lat)]
        for slot in self._pending:
            e = self._entries[slot]
            if e is not None and shapely.contains_xy(self._shape(e), lng, lat):
                out.append(e.zone.id)
        return out

    def _scalar(self, part: _Part) -> _Scalar:
        """The dicts of :meth:`match` for one table (``zones.lookup_tables.scalar_of``), kept on it."""
        part.scalar = scalar = scalar_of(part.flat, self._ids, self._circ)
        return scalar

    def match_many(self, lats: np.ndarray, lngs: np.ndarray) -> ZoneMatches:
        """All (fix, zone) containment pairs of a batch, exact and vectorised.

        Parameters
        ----------
        lats, lngs : array_like of float, degrees, same length. Fixes outside [-90, 90] x [-180, 180] or
            not finite match nothing (docs/zones.md, *Edges*).

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
        ok = (np.abs(lats) <= 90.0) & (np.abs(lngs) <= 180.0)  # NaN fails both
        base = None
        if not ok.all():
            base = np.flatnonzero(ok)
            lats, lngs = lats[base], lngs[base]
        n = len(lats)
        pos, slots = self._lookup(lats, lngs) if n else (_NO_INT64, _NO_INT64)
        if n and self._pending:
            pos_parts, slot_parts = [pos], [slots]
            for slot in self._pending:
                e = self._entries[slot]
                if e is None:
                    continue
                shape = self._shape(e)
                minx, miny, maxx, maxy = shape.bounds
                p = np.flatnonzero((lngs >= minx) & (lngs <= maxx) & (lats >= miny) & (lats <= maxy))
                hit = shapely.contains_xy(shape, lngs[p], lats[p])
                pos_parts.append(p[hit])
                slot_parts.append(np.full(int(hit.sum()), slot, dtype=np.int64))
            pos, slots = np.concatenate(pos_parts), np.concatenate(slot_parts)
        if base is not None:
            pos = base[pos]
        # the table is not copied: a slot's id never changes in place (a rebuild makes a new table)
        return ZoneMatches(pos, slots, self._ids)

    def _lookup(self, lats: np.ndarray, lngs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The table part of :meth:`match_many`: one H3 cell per fix, then the compiled kernel per table.

        The outputs are allocated once per table, with room for the pairs shapely confirms afterwards: at
        tens of millions of pairs per call, every extra copy of them shows in the throughput."""
        fine = cells_at(lats, lngs, FINE_RES)
        # the kernel reads fixes in cell order: its searches move forward, its reads follow the tables
        if FINE_RES == 11 and len(fine) < kernel.SORT_MAX:
            order, fine = kernel.sorted_cells(fine)
        else:  # pragma: no cover - batches of 16 M fixes
            order = np.argsort(fine, kind="stable")
            fine = fine[order]
        cut = _on_cut(lngs)  # the kernel sends circles' boundary hits there to shapely
        n = len(order)
        chunks: list[tuple[np.ndarray, np.ndarray, int]] = []
        checks: list[tuple[np.ndarray, np.ndarray]] = []
        for part in self._parts():
            f = part.flat
            if not len(f.res):
                continue
            cursor = f.kstart[:-1].copy()
            begin = 0
            per_fix = self._pairs_per_fix  # sizes the outputs; a low guess only costs another round
            dead = bool(part.dead_ids)
            while begin < n:
                size = int((n - begin) * per_fix * 1.25) + 4 * f.room
                small = size // 8 + 2 * f.room
                pos, slot = np.empty(size + small, np.int64), np.empty(size + small, np.int64)
                cp, cs = np.empty(small, np.int64), np.empty(small, np.int64)
                start = begin
                m, c, begin = kernel.lookup(
                    fine, order, begin, cursor, lats, lngs, f.keep, f.setb, f.kstart, f.keys, f.fence,
                    f.istart, f.bstart, f.islots, f.bslots, self._circ, self._alive, dead, f.room,
                    pos, slot, cp, cs,
                )
                per_fix = max(per_fix, m / max(1, begin - start))
                chunks.append((pos, slot, m))
                checks.append((cp[:c], cs[:c]))
            if n >= 1000 and part is self._base:
                self._pairs_per_fix = per_fix
        hit_p, hit_s = [], []
        cp = np.concatenate([ch[0] for ch in checks]) if checks else _NO_INT64
        cs = np.concatenate([ch[1] for ch in checks]) if checks else _NO_INT64
        if cut.any():  # interior cells do not hold on the cut either: every pair there is tested
            for i, (pos, slot, m) in enumerate(chunks):
                on = cut[pos[:m]]
                cp, cs = np.concatenate([cp, pos[:m][on]]), np.concatenate([cs, slot[:m][on]])
                keep = np.flatnonzero(~on)
                pos[: len(keep)], slot[: len(keep)] = pos[keep], slot[keep]
                chunks[i] = (pos, slot, len(keep))
        if len(cs):  # exact tests: one vectorised call over every pair (a call per zone cost ~5 us each)
            entries = self._entries
            shapes = np.empty(len(cs), dtype=object)
            shapes[:] = [self._shape(entries[s]) for s in cs.tolist()]  # type: ignore[arg-type]
            hit = shapely.contains_xy(shapes, lngs[cp], lats[cp])
            hit_p.append(cp[hit])
            hit_s.append(cs[hit])
        if not chunks:
            return _NO_INT64, _NO_INT64
        k = sum(len(h) for h in hit_p)
        pos, slot, m = chunks[0]
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

    def _clearance_tables(self) -> tuple[clearance.Tables, clearance.Shapes, np.ndarray]:
        """The base's clearance table (made on first use after a build), the runs' (made on first use
        after a run is packed), every live zone's geometry (updated for the zones changed since), and the
        pending zones (measured for every point)."""
        if self._clear_cells is None:
            self._clear_cells = clearance.cells(
                [(s, e.zone, e.shape, e.ref) for s in self._base.slots if (e := self._entries[s])]
            )
        in_runs = [s for run in self._runs for s in run.slots if self._alive[s]]
        if self._clear_runs is None:
            self._clear_runs = clearance.cells(
                [(s, e.zone, e.shape, e.ref) for s in in_runs if (e := self._entries[s])]
            )
        if self._clear_shapes is None:
            self._clear_shapes = clearance.shapes(
                [(s, e.zone, self._rings(e)) for s, e in enumerate(self._entries) if e is not None],
                len(self._entries),
            )
        elif self._shapes_stale:
            self._clear_shapes = clearance.update_shapes(
                self._clear_shapes,
                [(s, e.zone if (e := self._entries[s]) else None, self._rings(e) if e else None)
                 for s in sorted(self._shapes_stale)],
                len(self._entries),
            )
        self._shapes_stale = set()
        extra = np.array([s for s in self._pending if self._entries[s] is not None], dtype=np.int64)
        return (self._clear_cells, self._clear_runs), self._clear_shapes, extra

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
            e.rings = ring_arrays(self._shape(e))
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


def _on_cut(lng: float | np.ndarray) -> np.ndarray:
    """On the antimeridian, where ``zone_shape`` splits the zones crossing it: a point there is on their
    boundary, so outside them (docs/zones.md, *Edges*), whatever the cells or a circle's centre say."""
    on: np.ndarray = np.abs(lng) == 180.0
    return on


__all__ = ["ZoneError", "ZoneIndex", "ZoneMatches"]
