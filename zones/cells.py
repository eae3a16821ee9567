"""H3 covering of a zone: interior cells (entirely inside) and boundary cells (need an exact test).

Why not ``polygon_to_cells`` (centre containment)? It misses parts of the zone and claims cells outside.
``h3shape_to_cells_experimental(contain='full'|'overlap')`` is exact in planar lng/lat but misses cells (its
edges are not the cells' spherical edges) and costs ~3–8 ms per zone. We classify cells by a *distance
bound* instead, which is conservative by construction and ~10× faster:

* every point of an H3 cell lies within ``CIRCUMRADIUS_FACTOR × average edge`` of its centre (measured max
  over the globe: 1.10×), and so does every point of its *hierarchical* region, the union of its
  descendants at finer resolutions, which the index uses (measured 1.14× up to 4 levels down); we use
  1.25×; ``tests/zones/test_cells.py`` re-measures both;
* a cell whose centre is deeper inside the zone than that bound is **interior**; one whose centre is
  within the bound of the zone (inside or out) is **boundary**; any other cell cannot contain a zone
  point;
* candidates are a ``grid_disk`` around the zone centre, grown until its outer ring is entirely outside.

Distances for circles are great-circle distances to the centre, compared with the inscribed radius of the
128-gon minus a margin; for areas they are planar distances in a local metric projection, inflated by the
projection's worst scale error over the zone. Lookups compute ``latlng_to_cell`` once at the finest
resolution and take ancestors: exact only because the bound covers the hierarchical region (a parent's
hexagon alone is NOT where its descendants are). Interior cells are not compacted: with the resolution table
a zone has at most ~2 000 cells, and a compacted set would cost one extra probe per level on every lookup.
"""

from __future__ import annotations

import math
from typing import Any

import h3
import numpy as np
import shapely
from h3.api import basic_int as h3i
from shapely.geometry.base import BaseGeometry

from zones.geometry import CIRCLE_VERTICES, EARTH_RADIUS_M, M_PER_DEG, polygons, to_local_m
from zones.model import Circle, Zone

CIRCUMRADIUS_FACTOR = 1.25
_EDGE_M = {r: h3.average_hexagon_edge_length(r, "m") for r in range(16)}


def cell_radius_m(res: int) -> float:
    """Upper bound of the distance from a cell centre to any point of the cell, metres."""
    return float(CIRCUMRADIUS_FACTOR * _EDGE_M[res])


def circle_margins_m(radius_m: float) -> tuple[float, float]:
    """(inner, outer) metres: closer than inner to the centre is inside the 128-gon, beyond outer is out."""
    slack = _circle_slack_m(radius_m)
    return radius_m * math.cos(math.pi / CIRCLE_VERTICES) - slack, radius_m + slack


def _circle_slack_m(radius_m: Any) -> Any:
    """How far a 128-gon edge (straight in lng/lat) may stray from the metric chord, plus rounding.

    A lng/lat segment of length L departs from the great circle by at most L² tan(lat) / 8R; with
    L = 2πr/128 and |lat| ≤ 85° that is < 6e-10 r² m (1.5 m at 50 km, 0.1 mm at 400 m). 1 cm + 1e-6 r
    covers floating-point error of the haversine.
    """
    return 0.01 + 1e-6 * radius_m + 6e-10 * radius_m * radius_m


def disk_k(extent_m: float, res: int) -> int:
    """First guess of the grid_disk radius reaching past a zone of this extent (grown if needed)."""
    return int(math.ceil((extent_m + cell_radius_m(res)) / (1.4 * _EDGE_M[res]))) + 1


def circle_covers(
    circles: list[Circle], res: int, margin_m: float = 0.0
) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """:func:`cover` of many circles of the same resolution and disk size at once (vectorised with h3ronpy).

    Same classification as :func:`cover` (``margin_m`` likewise). Returns None for a circle whose disk was
    too small or touched a pentagon (the caller falls back to :func:`cover`), or for all of them without
    h3ronpy.
    """
    try:
        import h3ronpy
        from h3ronpy.vector import coordinates_to_cells
    except ImportError:  # pragma: no cover
        return [None] * len(circles)
    n = len(circles)
    lat = np.array([c.lat for c in circles])
    lng = np.array([c.lng for c in circles])
    radius = np.array([c.radius_m for c in circles])
    k = max(disk_k(r + margin_m, res) for r in radius.tolist())
    size = 3 * k * (k + 1) + 1
    origins = np.asarray(coordinates_to_cells(lat, lng, res))
    rb = h3ronpy.grid_disk_distances(origins, k, flatten=True)
    cells = np.asarray(rb.column("cell"))
    if len(cells) != n * size:  # a pentagon in some disk: let the caller do them one by one
        return [None] * n
    ring = np.asarray(rb.column("k")) == k
    owner = np.repeat(np.arange(n), size)
    clat, clng = _centres(cells.view(np.int64))
    p1, p2 = np.radians(lat)[owner], np.radians(clat)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(clng - lng[owner]) / 2) ** 2
    d = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    inner = radius * math.cos(math.pi / CIRCLE_VERTICES) - _circle_slack_m(radius)
    outer = radius + _circle_slack_m(radius)
    bound = cell_radius_m(res) + margin_m
    interior = d + bound < inner[owner]
    boundary = ~interior & (d - bound <= outer[owner])
    bad = np.zeros(n, dtype=bool)
    bad[owner[ring & (interior | boundary)]] = True
    cells = cells.view(np.int64)
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for j in range(n):
        if bad[j]:
            out.append(None)
            continue
        sl = slice(j * size, (j + 1) * size)
        c = cells[sl]
        out.append((c[interior[sl]], c[boundary[sl]]))
    return out


def haversine_many(lat0: float, lng0: float, lats: np.ndarray, lngs: np.ndarray) -> np.ndarray:
    p1 = math.radians(lat0)
    p2 = np.radians(lats)
    a = np.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * np.cos(p2) * np.sin(np.radians(lngs - lng0) / 2) ** 2
    metres: np.ndarray = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return metres


try:  # vectorised cell centres (build time); optional
    from h3ronpy.vector import cells_to_coordinates as _h3ronpy_centres
except ImportError:  # pragma: no cover
    _h3ronpy_centres = None


def _centres(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if _h3ronpy_centres is not None and len(cells) > 32:
        rb = _h3ronpy_centres(cells.view(np.uint64))
        return np.asarray(rb.column("lat")), np.asarray(rb.column("lng"))
    ll = np.array([h3i.cell_to_latlng(c) for c in cells.view(np.uint64).tolist()], dtype=float).reshape(-1, 2)
    return ll[:, 0], ll[:, 1]


def cover(
    zone: Zone, shape: BaseGeometry, res: int, ref: tuple[float, float], margin_m: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(interior, boundary) int64 cell arrays of ``zone`` at resolution ``res``.

    ``shape`` is ``zone_shape(zone)``; ``ref`` its reference ``(lat, lng)`` (circle centre or bbox centre).
    ``margin_m`` widens the boundary band: a cell is then *boundary* when the zone's boundary may come
    within ``margin_m`` of one of its points (``zones.clearance`` lists those cells).
    """
    lat0, lng0 = ref
    bound = cell_radius_m(res) + margin_m
    g = zone.geometry
    if isinstance(g, Circle):
        inner, outer = circle_margins_m(g.radius_m)
        extent = g.radius_m
        local = None
    else:
        local = to_local_m(shape, lat0, lng0)
        extent = max(math.hypot(x, y) for p in polygons(local) for x, y in p.exterior.coords)
        # worst scale error of the equirectangular projection over the zone, plus 1 %
        slack = 1.01 + extent / EARTH_RADIUS_M * math.tan(
            math.radians(min(89.0, abs(lat0) + extent / M_PER_DEG))
        )
        local_b = local.boundary
        shapely.prepare(local)
    origin = h3i.latlng_to_cell(lat0, lng0, res)
    k = disk_k(extent + margin_m, res)
    while True:
        cells = h3i.grid_disk(origin, k)
        arr = np.asarray(cells, dtype=np.uint64).view(np.int64)
        clat, clng = _centres(arr)
        if local is None:
            d = haversine_many(lat0, lng0, clat, clng)
            interior = d + bound < inner
            boundary = ~interior & (d - bound <= outer)
        else:
            kx = math.cos(math.radians(lat0)) * M_PER_DEG
            x = ((clng - lng0 + 180.0) % 360.0 - 180.0) * kx
            y = (clat - lat0) * M_PER_DEG
            dist = shapely.distance(local_b, shapely.points(x, y))
            inside = shapely.contains_xy(local, x, y)
            interior = inside & (dist > bound * slack)
            boundary = ~interior & (dist <= bound * slack)
        rim = set(h3i.grid_ring(origin, k))
        rim_mask = np.fromiter((c in rim for c in cells), dtype=bool, count=len(cells))
        if not (interior | boundary)[rim_mask].any():
            return arr[interior], arr[boundary]
        k += max(2, k // 4)  # the disk did not reach past the zone: grow it


def h3_cover_experimental(shape: BaseGeometry, res: int, contain: str) -> set[int]:
    """Our wrapper of h3's experimental ``h3shape_to_cells_experimental`` (``contain='full'|'overlap'``).

    Not used to build the index (3–8 ms per zone, and ``overlap`` alone misses cells); the tests use it as
    a cross-check: our interior ∪ boundary must contain every ``overlap`` cell.
    """
    out: set[int] = set()
    for p in polygons(shape):
        outer = [(y, x) for x, y in p.exterior.coords]
        holes = [[(y, x) for x, y in r.coords] for r in p.interiors]
        out.update(h3i.h3shape_to_cells_experimental(h3.LatLngPoly(outer, *holes), res, contain))
    return out
