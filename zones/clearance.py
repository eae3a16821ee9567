"""Clearance: a lower bound of a point's great-circle distance to the boundary of every zone.

Why: a phone reporting every few seconds from a shop moves a few metres between fixes. Any point closer to
a point P than P's clearance lies in exactly the zones P lies in (no zone boundary is that close), so the
ingest matches a device's fix against the index only once it leaves the disc around the last fix it
matched (``geofence.ingest``): about one fix in ten in the benchmark's workload.

How (``cells``, ``clearance_m``): one table of H3 cells at ``CLEARANCE_RES`` lists, per cell, every zone whose
boundary may come within ``CLEARANCE_CAP_M`` of a point of the cell: the *boundary* class of
``cells.cover`` with the band widened by the cap (its distance bound holds for every point of a cell). A
point's clearance is then the least distance to the boundaries of its cell's zones, and at most the cap.
Each distance is a lower bound of the great-circle distance to the zone as ``zone_shape`` draws it:

* a circle's polygon lies between two great-circle distances from its centre (``circle_margins_m``): a
  point at distance ``d`` from the centre is at least ``inner - d`` (inside) or ``d - outer`` (outside)
  from it, and 0 in between (the triangle inequality on the sphere);
* an area's boundary is measured in the equirectangular projection centred on the point, affine in
  lng/lat, so straight edges stay straight and a segment from the point shorter than that distance
  crosses none; within the cap that projection overstates no great-circle distance by more than
  ``AREA_SLACK`` (|lat| <= 85 degrees).

Zones added since the index's last rebuild are not in the table: they are measured for every point.
Removed zones still in it only make a bound smaller. Near the poles and the antimeridian (where zones
are split at ±180°) the clearance is 0: no disc, every fix is matched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit
from shapely.geometry.base import BaseGeometry

from zones.boundary import Rings
from zones.boundary import _distance as _ring_distance
from zones.cells import circle_covers, circle_margins_m, cover, disk_k
from zones.geometry import EARTH_RADIUS_M, M_PER_DEG
from zones.model import Circle, Zone

CLEARANCE_RES = 9  # cells of ~200 m edge: a walking zone is listed in ~60 of them
CLEARANCE_CAP_M = 100.0  # a longer clearance saves little: devices move a few metres between fixes
AREA_SLACK = 1e-3  # relative: the local projection's scale error within the cap (measured < 2e-4 at 85°)
ABS_SLACK_M = 0.01  # absolute: floating-point error of the distances
MAX_LAT = 85.0
MAX_LNG = 179.0
CIRCLE, AREA = 1, 2


@dataclass
class Cells:
    """Cells at ``CLEARANCE_RES`` (sorted) -> the slots of the zones listed in them."""

    keys: np.ndarray  # int64
    start: np.ndarray  # int64 offsets into slots, len(keys) + 1
    slots: np.ndarray  # int64


@dataclass
class Shapes:
    """Each slot's geometry, in the layout ``_clearance`` reads."""

    kind: np.ndarray  # int8 per slot: CIRCLE, AREA, or 0 (no zone)
    circ: np.ndarray  # (slots, 6): a circle's centre as a unit vector, inner and outer metres, radius
    xr: np.ndarray  # (slots, 2): an area's range in xs / ys
    er: np.ndarray  # (slots, 2): its range in ends (each ring's end, relative to its xs start)
    xs: np.ndarray
    ys: np.ndarray
    ends: np.ndarray


Entry = tuple[int, Zone, BaseGeometry, tuple[float, float]]  # slot, zone, shape, reference point


def _unit(lat: float, lng: float) -> tuple[float, float, float]:
    p, g = math.radians(lat), math.radians(lng)
    return math.cos(p) * math.cos(g), math.cos(p) * math.sin(g), math.sin(p)


def shapes(entries: Sequence[tuple[int, Zone, Rings | None]], n_slots: int) -> Shapes:
    """The geometry of these zones by slot: (slot, zone, an area's rings) each."""
    kind = np.zeros(n_slots, dtype=np.int8)
    circ = np.zeros((n_slots, 6))
    xr = np.zeros((n_slots, 2), dtype=np.int64)
    er = np.zeros((n_slots, 2), dtype=np.int64)
    xs_parts: list[np.ndarray] = []
    ys_parts: list[np.ndarray] = []
    ends_parts: list[np.ndarray] = []
    x_at = e_at = 0
    for slot, zone, rings in entries:
        g = zone.geometry
        if isinstance(g, Circle):
            kind[slot] = CIRCLE
            circ[slot] = (*_unit(g.lat, g.lng), *circle_margins_m(g.radius_m), g.radius_m)
            continue
        xs, ys, ends = rings  # type: ignore[misc]
        kind[slot] = AREA
        xr[slot] = (x_at, x_at + len(xs))
        er[slot] = (e_at, e_at + len(ends))
        xs_parts.append(xs)
        ys_parts.append(ys)
        ends_parts.append(ends)
        x_at += len(xs)
        e_at += len(ends)

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0, dtype), dtype=dtype)

    return Shapes(kind, circ, xr, er, cat(xs_parts, np.float64), cat(ys_parts, np.float64),
                  cat(ends_parts, np.int64))


def cells(entries: Sequence[Entry]) -> Cells:
    """The table of these zones: each listed in the cells its boundary may come within the cap of."""
    parts: list[np.ndarray] = []
    owners: list[np.ndarray] = []

    def add(slot: int, band: np.ndarray) -> None:
        parts.append(band)
        owners.append(np.full(len(band), slot, dtype=np.int64))

    groups: dict[int, list[Entry]] = {}
    for e in entries:
        slot, zone, shape, ref = e
        g = zone.geometry
        if isinstance(g, Circle):  # vectorised by disk size, as the index's own covers
            groups.setdefault(disk_k(g.radius_m + CLEARANCE_CAP_M, CLEARANCE_RES), []).append(e)
        else:
            add(slot, cover(zone, shape, CLEARANCE_RES, ref, margin_m=CLEARANCE_CAP_M)[1])
    for members in groups.values():
        try:
            bulk = circle_covers([z.geometry for _, z, _, _ in members], CLEARANCE_RES, CLEARANCE_CAP_M)  # type: ignore[misc]
        except (ValueError, TypeError):
            bulk = [None] * len(members)
        for (slot, zone, shape, ref), covered in zip(members, bulk, strict=True):
            if covered is None:  # a pentagon in the disk, or a disk too small: one by one
                covered = cover(zone, shape, CLEARANCE_RES, ref, margin_m=CLEARANCE_CAP_M)
            add(slot, covered[1])
    all_cells = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    all_owners = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    order = np.argsort(all_cells, kind="stable")
    keys, inv = np.unique(all_cells[order], return_inverse=True)
    start = np.searchsorted(inv, np.arange(len(keys) + 1)).astype(np.int64)
    return Cells(keys, start, all_owners[order])


def clearance_m(
    table: Cells, geometry: Shapes, at: np.ndarray, lats: np.ndarray, lngs: np.ndarray, extra: np.ndarray
) -> np.ndarray:
    """Per point, its clearance in metres (see the module docstring): ``at`` are the points' cells at
    ``CLEARANCE_RES``, ``extra`` the slots measured for every point (zones added since the table)."""
    none = np.zeros(len(lats) + 1, dtype=np.int64)
    return _measure(table, geometry, at, lats, lngs, extra, (none, none[:0]), (none, none[:0]))[0]


def presence_bounds(
    table: Cells, geometry: Shapes, at: np.ndarray, lats: np.ndarray, lngs: np.ndarray, extra: np.ndarray,
    steady: tuple[np.ndarray, np.ndarray], inside: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Per point P, for a device whose *steady* zones (each point's slots: ``steady``, a CSR pair of
    offsets and slots) are some of the zones that contain P (``inside``, likewise):

    - ``r``: any point closer to P than this is still in every steady zone (0: none known, at most the
      cap): the least clearance of P to their boundaries;
    - ``d``: any point Q at δ metres of P (δ < ``r``) is at most ``d + δ (1 + AREA_SLACK)`` metres deep
      in any other zone, measured as ``geometry.signed_distance_m`` does (``d`` < 0: P is that far
      outside all of them; an area's depth is measured in each point's own projection: ``d`` allows for
      it). inf when a zone that contains P besides the steady ones is deeper than the cap (not listed).

    With a steady device's fix Q there, stepping would change nothing if Q is too shallow for every
    other zone: ``enter_depth_ratio`` × its accuracy above that depth."""
    _, r, d = _measure(table, geometry, at, lats, lngs, extra, steady, inside)
    return r, d


def _measure(
    table: Cells, geometry: Shapes, at: np.ndarray, lats: np.ndarray, lngs: np.ndarray, extra: np.ndarray,
    steady: tuple[np.ndarray, np.ndarray], inside: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(lats)
    clear, r, d = np.zeros(n), np.zeros(n), np.full(n, np.inf)
    if n == 0:
        return clear, r, d
    ok = (np.abs(lats) <= MAX_LAT) & (np.abs(lngs) <= MAX_LNG)
    idx = np.minimum(np.searchsorted(table.keys, at), max(0, len(table.keys) - 1))
    found = (table.keys[idx] == at) if len(table.keys) else np.zeros(n, dtype=bool)
    p, g = np.radians(lats), np.radians(lngs)
    cos_p = np.cos(p)
    _measure_kernel(
        idx, found & ok, ok, cos_p * np.cos(g), cos_p * np.sin(g), np.sin(p), lats, lngs, table.start,
        table.slots, extra, geometry.kind, geometry.circ, geometry.xr, geometry.er, geometry.xs,
        geometry.ys, geometry.ends, steady[0], steady[1], inside[0], inside[1], clear, r, d,
    )
    clear = np.minimum(np.maximum(clear - ABS_SLACK_M, 0.0), CLEARANCE_CAP_M)
    r = np.minimum(np.maximum(r - ABS_SLACK_M, 0.0), CLEARANCE_CAP_M)
    # a zone not listed is farther than the cap: a point at δ < cap is at least cap - δ outside it
    return clear, np.where(ok, r, 0.0), np.maximum(d, -CLEARANCE_CAP_M) + ABS_SLACK_M


@njit(cache=True, nogil=True)
def _has(slots: np.ndarray, start: int, end: int, s: int) -> bool:  # pragma: no cover - compiled
    for e in range(start, end):
        if slots[e] == s:
            return True
    return False


@njit(cache=True, nogil=True)
def _measure_kernel(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled by numba per call
    idx, found, ok, ux, uy, uz, lats, lngs, start, slots, extra, kind, circ, xr, er, xs, ys, ends,
    s_ptr, s_slots, i_ptr, i_slots, clear, r, d,
):
    for i in range(lats.shape[0]):
        if not ok[i]:
            continue
        best = np.inf  # zones not listed are farther than the cap
        steady_best = np.inf
        deepest = -np.inf
        extras = (i_ptr[i + 1] - i_ptr[i]) - (s_ptr[i + 1] - s_ptr[i])  # zones in P's, not steady
        n_table = start[idx[i] + 1] - start[idx[i]] if found[i] else 0
        for e in range(n_table + extra.shape[0]):
            s = slots[start[idx[i]] + e] if e < n_table else extra[e - n_table]
            k = kind[s]
            if k == 1:
                dx, dy, dz = ux[i] - circ[s, 0], uy[i] - circ[s, 1], uz[i] - circ[s, 2]
                chord = math.sqrt(dx * dx + dy * dy + dz * dz)
                dist = 2.0 * EARTH_RADIUS_M * math.asin(min(1.0, chord / 2.0))
                if dist < circ[s, 3]:
                    c = circ[s, 3] - dist
                elif dist > circ[s, 4]:
                    c = dist - circ[s, 4]
                else:
                    c = 0.0
                depth = circ[s, 5] - dist  # what ``signed_distance_m`` says, negated
            elif k == 2:
                ky = M_PER_DEG
                kx = math.cos(math.radians(lats[i])) * ky
                ring = _ring_distance(
                    xs[xr[s, 0] : xr[s, 1]], ys[xr[s, 0] : xr[s, 1]], ends[er[s, 0] : er[s, 1]],
                    lats[i], lngs[i], kx, ky,
                )
                c = ring * (1.0 - AREA_SLACK)
                depth = ring * (1.0 + AREA_SLACK)  # inside, or the negative below
                if not _has(i_slots, i_ptr[i], i_ptr[i + 1], s):
                    depth = -c
            else:
                continue
            if c < best:
                best = c
            if _has(s_slots, s_ptr[i], s_ptr[i + 1], s):
                if c < steady_best:
                    steady_best = c
            else:
                if depth > deepest:
                    deepest = depth
                if _has(i_slots, i_ptr[i], i_ptr[i + 1], s):
                    extras -= 1
        clear[i] = best
        r[i] = steady_best
        d[i] = deepest if extras == 0 else np.inf
