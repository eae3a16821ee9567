"""ZoneIndex agrees EXACTLY with shapely on ``zone_shape`` (the ground truth), on random points and on points
within 1 m of the boundary: circles and polygons, holes, multipolygons, the antimeridian, every resolution."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.zones.shapes import SIZES_M, circle, multipolygon, points_near, polygon, truth_pairs
from zones.index import ZoneIndex
from zones.sizing import choose_resolution

KINDS = ("circle", "polygon", "holed", "multi")


def make_zone(kind: str, zid: str, lat: float, lng: float, size: float, rng: np.random.Generator):
    if kind == "circle":
        return circle(zid, lat, lng, size)
    if kind == "polygon":
        return polygon(zid, lat, lng, size, rng, hole=False)
    if kind == "holed":
        return polygon(zid, lat, lng, size, rng, hole=True)
    return multipolygon(zid, lat, lng, min(size, 12_000.0), rng)  # two parts must fit in 100 km


def assert_exact(index: ZoneIndex, zones, lats, lngs, n_single: int = 100) -> None:
    pos, _, _ = found = index.match_many(lats, lngs)
    got = set(zip(pos.tolist(), found.zone_ids().tolist(), strict=True))
    assert len(got) == len(pos), "a (fix, zone) pair was reported twice"
    truth = truth_pairs(zones, lats, lngs)
    assert got == truth, f"missed {sorted(truth - got)[:5]}, extra {sorted(got - truth)[:5]}"
    for i in range(min(n_single, len(lats))):
        assert sorted(index.match(float(lats[i]), float(lngs[i]))) == sorted(z for j, z in truth if j == i)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(KINDS),
    size=st.sampled_from(SIZES_M),
    lat=st.floats(-70, 70),
    lng=st.one_of(st.floats(-179.0, 179.0), st.floats(179.5, 180.0), st.floats(-180.0, -179.5)),
    seed=st.integers(0, 2**32 - 1),
)
def test_index_matches_shapely_on_random_and_boundary_points(kind, size, lat, lng, seed):
    rng = np.random.default_rng(seed)
    zones = [make_zone(kind, "z", lat, lng, size, rng), circle("c", lat, lng, size * 0.7)]
    index = ZoneIndex(zones)
    lats, lngs = points_near(zones[0], rng, 800, 800)
    assert_exact(index, zones, lats, lngs)


@pytest.mark.parametrize("size", SIZES_M)
def test_every_resolution_of_the_table_is_exercised_and_exact(size):
    rng = np.random.default_rng(int(size))
    zones = [circle("c", 48.85, 2.35, size), polygon("p", 48.85, 2.36, size, rng, hole=True)]
    index = ZoneIndex(zones)
    assert index.resolution("c") == choose_resolution(size)
    for z in zones:
        lats, lngs = points_near(z, rng, 4000, 4000)
        assert_exact(index, zones, lats, lngs)


@pytest.mark.parametrize("lng", [179.999, -179.999, 180.0, -180.0])
def test_antimeridian_circle_and_polygon_are_indexed_on_both_sides(lng):
    rng = np.random.default_rng(7)
    ring = [[179.99, -16.0], [-179.98, -16.0], [-179.98, -16.02], [179.99, -16.02], [179.99, -16.0]]
    zones = [circle("c", -16.01, lng, 3000), make_zone("circle", "small", -16.01, lng, 120, rng)]
    from zones.model import Area, Zone

    zones.append(Zone(id="p", name="p", geometry=Area({"type": "Polygon", "coordinates": [ring]})))
    index = ZoneIndex(zones)
    assert index.match(-16.01, 179.995) and index.match(-16.01, -179.995)
    assert "p" in index.match(-16.01, 179.995) and "p" in index.match(-16.01, -179.985)
    for z in zones:
        lats, lngs = points_near(z, rng, 3000, 3000)
        assert_exact(index, zones, lats, lngs)


def test_add_replace_remove_without_rebuild_stay_exact():
    rng = np.random.default_rng(3)
    base = [circle(f"w{i}", 48.85 + i * 0.003, 2.35, 400) for i in range(10)]
    index = ZoneIndex(base)
    moved = circle("w3", 48.86, 2.36, 900)
    index.replace(moved)
    index.remove("w5")
    index.add(polygon("poly", 48.855, 2.35, 600, rng, hole=True))
    current = {z.id: z for z in base}
    current["w3"] = moved
    del current["w5"]
    current["poly"] = index.get("poly")
    assert len(index) == len(current) and "w5" not in index and index.get("w3") == moved
    lats = rng.uniform(48.83, 48.9, 20000)
    lngs = rng.uniform(2.32, 2.39, 20000)
    assert_exact(index, list(current.values()), lats, lngs)
    for i in range(40):  # force the snapshot to be rebuilt; still exact
        index.add(circle(f"x{i}", 48.84 + i * 0.001, 2.34, 200))
        current[f"x{i}"] = index.get(f"x{i}")
    assert_exact(index, list(current.values()), lats, lngs)
    with pytest.raises(KeyError):
        index.remove("nope")


def test_bad_fixes_match_nothing_and_keep_positions():
    index = ZoneIndex([circle("c", 48.85, 2.35, 400)])
    lats = np.array([np.nan, 48.85, 95.0, 48.85, np.inf])
    lngs = np.array([2.35, 2.35, 2.35, np.nan, 2.35])
    found = index.match_many(lats, lngs)
    assert found.positions.tolist() == [1] and found.zone_ids().tolist() == ["c"]
    assert index.match(float("nan"), 2.35) == []
    empty = ZoneIndex()
    p, z, _ = empty.match_many(lats, lngs)
    assert len(p) == 0 and len(z) == 0


def test_near_and_signed_distance():
    index = ZoneIndex([circle("c", 48.85, 2.35, 400), circle("far", 48.95, 2.35, 400)])
    lat_out = 48.85 + 420 / 111_195
    d = index.signed_distance_m("c", lat_out, 2.35)
    assert 19 < d < 21
    assert index.signed_distance_m("c", 48.85, 2.35) == pytest.approx(-400, abs=0.5)
    assert [z for z, _ in index.near(lat_out, 2.35, 25)] == ["c"]
    assert index.near(lat_out, 2.35, 10) == []


def test_near_reports_polygons_with_holes_by_signed_distance():
    rng = np.random.default_rng(12)
    square = [[2.30, 48.80], [2.31, 48.80], [2.31, 48.81], [2.30, 48.81], [2.30, 48.80]]
    hole = [[2.302, 48.802], [2.305, 48.802], [2.305, 48.805], [2.302, 48.805], [2.302, 48.802]]
    from zones.model import Area, Zone

    index = ZoneIndex(
        [Zone(id="p", name="p", geometry=Area({"type": "Polygon", "coordinates": [square, hole]}))]
    )
    in_hole = index.near(48.8035, 2.3035, 200)
    assert in_hole[0][0] == "p" and 50 < in_hole[0][1] < 150
    assert index.match(48.8035, 2.3035) == [] and index.match(48.8065, 2.3075) == ["p"]
    assert index.near(48.8065, 2.3075, 0)[0][1] < 0
    lats, lngs = rng.uniform(48.79, 48.82, 3000), rng.uniform(2.29, 2.32, 3000)
    assert [index.match(a, b) == ["p"] for a, b in zip(lats, lngs, strict=True)] == [
        index.signed_distance_m("p", a, b) < 0 for a, b in zip(lats, lngs, strict=True)
    ]
    assert index.match(48.8065, 2.3075) == ["p"] and index.match(48.8065, 2.3075 + 360.0) == []


def test_many_overlapping_zones_fill_the_kernel_outputs_in_several_rounds_and_stay_exact():
    """~60 zones per fix: the first guess of the output size is too small, the lookup resumes in rounds."""
    rng = np.random.default_rng(21)
    lat, lng = 48.85 + rng.normal(0, 0.01, 66), 2.35 + rng.normal(0, 0.015, 66)
    zones = [circle(f"d{i}", lat[i], lng[i], 5000) for i in range(60)]
    zones += [polygon(f"p{i}", lat[i], 2.35, 900, rng, hole=i % 2 == 0) for i in range(60, 66)]
    index = ZoneIndex(zones)
    index._pairs_per_fix = 0.5  # force several rounds
    lats = rng.normal(48.85, 0.01, 3000)
    lngs = rng.normal(2.35, 0.015, 3000)
    assert_exact(index, zones, lats, lngs, n_single=50)


def test_match_many_gives_zone_indices_into_its_id_table_which_later_changes_do_not_alter():
    rng = np.random.default_rng(4)
    zones = [circle(f"w{i}", 48.85 + i * 0.002, 2.35, 400) for i in range(8)]
    index = ZoneIndex(zones)
    lats, lngs = rng.uniform(48.84, 48.87, 5000), rng.uniform(2.34, 2.36, 5000)
    found = index.match_many(lats, lngs)
    assert found.positions.dtype == found.zones.dtype == np.int64 and len(found.positions) > 1000
    before = found.zone_ids().tolist()
    assert before == [found.ids[z] for z in found.zones.tolist()]
    for i in range(40):  # replacements, removals and a rebuild renumber the zones of later results
        index.remove(f"w{i % 8}") if i < 8 else index.add(circle(f"x{i}", 48.85, 2.35 + i * 1e-4, 300))
    assert found.zone_ids().tolist() == before
