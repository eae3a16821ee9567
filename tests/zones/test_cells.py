"""The covering is proven by brute force: every point inside a zone lies in one of its cells (interior or
boundary), every point in an interior cell is inside, and the cover contains h3's own ``overlap`` cover."""

from __future__ import annotations

import h3
import numpy as np
import pytest
import shapely
from h3.api import basic_int as h3i

from tests.zones.shapes import SIZES_M, circle, multipolygon, points_near, polygon
from zones.cells import CIRCUMRADIUS_FACTOR, cover, h3_cover_experimental
from zones.geometry import reference_latlng, zone_shape
from zones.model import Circle
from zones.sizing import choose_resolution, zone_size_m


def _zones():
    rng = np.random.default_rng(11)
    out = []
    for size in SIZES_M:
        out.append(circle(f"c{size}", 48.85, 2.35, size))
        out.append(polygon(f"h{size}", 60.0, 10.0, size, rng, hole=True))
        out.append(multipolygon(f"m{size}", -33.9, 151.2, size, rng))
    out.append(circle("am", 10.0, 179.99, 3000))
    return out


@pytest.mark.parametrize("zone", _zones(), ids=lambda z: z.id)
def test_cover_is_complete_and_interior_is_sound_by_brute_force(zone):
    shape = zone_shape(zone)
    res = choose_resolution(zone_size_m(zone), area=not isinstance(zone.geometry, Circle))
    interior, boundary = cover(zone, shape, res, reference_latlng(zone))
    inter, bound = set(interior.tolist()), set(boundary.tolist())
    assert not inter & bound
    lats, lngs = points_near(zone, np.random.default_rng(5), 6000, 6000)
    inside = shapely.contains_xy(shape, lngs, lats)
    cells = np.array(
        [h3i.latlng_to_cell(a, b, res) for a, b in zip(lats, lngs, strict=False)], dtype=np.uint64
    ).view(np.int64)
    for c, ok in zip(cells.tolist(), inside.tolist(), strict=False):
        if ok:
            assert c in inter or c in bound
        elif c in inter:
            pytest.fail("a point outside the zone fell in an interior cell")
    overlap = {c - (1 << 64) if c >= 1 << 63 else c for c in h3_cover_experimental(shape, res, "overlap")}
    assert overlap <= inter | bound


def test_circumradius_bound_holds_on_cells_around_the_globe():
    rng = np.random.default_rng(2)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 3000)))
    lng = rng.uniform(-180, 180, 3000)
    for res in (7, 9, 12):
        edge = h3.average_hexagon_edge_length(res, "m")
        worst = max(
            h3.great_circle_distance(h3i.cell_to_latlng(c), v, "m") / edge
            for c in {h3i.latlng_to_cell(a, b, res) for a, b in zip(lat, lng, strict=False)}
            for v in h3i.cell_to_boundary(c)
        )
        assert worst < CIRCUMRADIUS_FACTOR


def test_parent_cell_is_not_the_containing_cell():
    """Why the index computes latlng_to_cell per resolution: cell_to_parent disagrees near cell edges."""
    rng = np.random.default_rng(1)
    lats, lngs = rng.uniform(48.8, 48.9, 5000), rng.uniform(2.3, 2.4, 5000)
    differ = sum(
        h3i.cell_to_parent(h3i.latlng_to_cell(a, b, 11), 9) != h3i.latlng_to_cell(a, b, 9)
        for a, b in zip(lats, lngs, strict=False)
    )
    assert differ > 0


def test_circumradius_bound_holds_for_the_hierarchical_region_used_by_lookups():
    """The index keys a coarse zone by the ancestor of the fix's res-11 cell: the descendants of a cell
    must stay within the same bound of its centre."""
    rng = np.random.default_rng(4)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 40)))
    lng = rng.uniform(-180, 180, 40)
    for res, fine in ((7, 10), (9, 11), (10, 11)):
        edge = h3.average_hexagon_edge_length(res, "m")
        for a, b in zip(lat, lng, strict=True):
            parent = h3i.latlng_to_cell(a, b, res)
            centre = h3i.cell_to_latlng(parent)
            worst = max(
                h3.great_circle_distance(centre, v, "m") / edge
                for child in h3i.cell_to_children(parent, fine)
                for v in h3i.cell_to_boundary(child)
            )
            assert worst < CIRCUMRADIUS_FACTOR


def test_vectorised_ancestors_equal_cell_to_parent():
    from zones.fix_cells import FINE_RES, ancestors_at

    rng = np.random.default_rng(9)
    cells = [
        h3i.latlng_to_cell(a, b, FINE_RES)
        for a, b in zip(rng.uniform(-80, 80, 500), rng.uniform(-180, 180, 500), strict=True)
    ]
    arr = np.array(cells, dtype=np.uint64).view(np.int64)
    for res in range(0, FINE_RES + 1):
        got = ancestors_at(arr, res).view(np.uint64).tolist()
        assert got == [h3i.cell_to_parent(c, res) for c in cells]


def test_bulk_circle_covers_equal_the_per_zone_cover():
    from zones.cells import circle_covers

    rng = np.random.default_rng(8)
    zones = [circle(f"c{i}", 48.6 + rng.uniform(0, 0.5), 2 + rng.uniform(0, 0.7), 397) for i in range(30)]
    zones.append(circle("am", -16.0, 179.999, 397))
    bulk = circle_covers([z.geometry for z in zones], 11)
    for z, got in zip(zones, bulk, strict=True):
        want = cover(z, zone_shape(z), 11, reference_latlng(z))
        assert got is not None
        assert set(got[0].tolist()) == set(want[0].tolist()) and set(got[1].tolist()) == set(want[1].tolist())
