"""ZoneIndex.clearance_m: every point closer to P than P's clearance lies in exactly P's zones (shapely's
``zone_shape`` is the truth), for circles, polygons, holes, multipolygons, every resolution, zones added
after the index was built, and removed ones."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.zones.shapes import SIZES_M, circle, points_near, truth_pairs
from tests.zones.test_index_exact import KINDS, make_zone
from zones.clearance import CLEARANCE_CAP_M
from zones.geometry import circle_ring_lnglat
from zones.index import ZoneIndex
from zones.model import Circle


# a zone of every kind and size, anywhere but near the poles and the antimeridian (no clearance there)
def zones_around(test):
    return settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])(
        given(
            kind=st.sampled_from(KINDS), size=st.sampled_from(SIZES_M), lat=st.floats(-70, 70),
            lng=st.floats(-178.0, 178.0), seed=st.integers(0, 2**32 - 1),
        )(test)
    )


def zone_sets(zones, lats, lngs) -> list[frozenset[str]]:
    sets: list[set[str]] = [set() for _ in range(len(lats))]
    for i, z in truth_pairs(zones, lats, lngs):
        sets[i].add(z)
    return [frozenset(s) for s in sets]


def around(lat: float, lng: float, radius_m: float, n: int) -> np.ndarray:
    """(n, 2) (lng, lat) points at great-circle distance ``radius_m`` from the point, all bearings."""
    ring = circle_ring_lnglat(Circle(lat, lng, radius_m), n)
    ring[:, 0] = (ring[:, 0] + 180.0) % 360.0 - 180.0
    return ring


def assert_discs_hold(index: ZoneIndex, zones, lats, lngs, rng) -> int:
    """Points at 99.9 % (and at random fractions) of each point's clearance, in every direction, lie in
    the point's zones; returns how many points had a disc."""
    clear = index.clearance_m(lats, lngs)
    assert ((clear >= 0) & (clear <= CLEARANCE_CAP_M)).all()
    centres = zone_sets(zones, lats, lngs)
    with_disc = 0
    for i in np.flatnonzero(clear > 0).tolist():
        with_disc += 1
        near = np.concatenate([
            around(lats[i], lngs[i], 0.999 * clear[i], 24),
            *(around(lats[i], lngs[i], f * clear[i], 8) for f in rng.uniform(0, 1, 3)),
        ])
        got = zone_sets(zones, near[:, 1], near[:, 0])
        assert all(s == centres[i] for s in got), (i, clear[i], centres[i], got)
    return with_disc


@zones_around
def test_points_within_a_clearance_lie_in_the_same_zones(kind, size, lat, lng, seed):
    rng = np.random.default_rng(seed)
    zones = [make_zone(kind, "z", lat, lng, size, rng), circle("c", lat, lng, size * 0.7)]
    index = ZoneIndex(zones)
    lats, lngs = points_near(zones[0], rng, 150, 150)
    # and points just past the boundary band, where the clearance is a few metres to the cap
    edge_lats, edge_lngs = points_near(zones[0], rng, 0, 60)
    spread = rng.uniform(0, 2 * CLEARANCE_CAP_M, len(edge_lats))
    bearing = rng.uniform(0, 2 * math.pi, len(edge_lats))
    edge_lats = edge_lats + spread * np.cos(bearing) / 111_195.0
    edge_lngs = edge_lngs + spread * np.sin(bearing) / (111_195.0 * np.cos(np.radians(edge_lats)))
    lats, lngs = np.concatenate([lats, edge_lats]), np.concatenate([lngs, edge_lngs])
    assert assert_discs_hold(index, zones, lats, lngs, rng) > 0


def test_a_clearance_is_close_to_the_distance_to_the_nearest_boundary():
    """Not only safe but useful: a point 30 m inside a 400 m circle, far from any other zone, has ~30 m."""
    index = ZoneIndex([circle("c", 48.85, 2.35, 400.0)])
    lat = 48.85 + 370.0 / 111_195.0
    [c] = index.clearance_m(np.array([lat]), np.array([2.35]))
    assert 28.0 < c < 30.0  # the polygon's sag (0.03 % of the radius) and the slack come off
    [far] = index.clearance_m(np.array([48.9]), np.array([2.35]))  # 5.5 km away
    assert far == CLEARANCE_CAP_M


def test_zones_added_and_removed_since_the_last_rebuild_are_accounted_for():
    rng = np.random.default_rng(3)
    index = ZoneIndex([circle("a", 48.85, 2.35, 400.0)])
    probe_lat, probe_lng = np.array([48.85]), np.array([2.35])
    assert index.clearance_m(probe_lat, probe_lng)[0] == CLEARANCE_CAP_M  # "a"'s edge is 400 m away
    before = index.generation
    index.add(circle("b", 48.85 + 20 / 111_195.0, 2.35, 10.0))  # pending: 10 m circle 20 m north
    assert index.generation > before
    [c] = index.clearance_m(probe_lat, probe_lng)
    assert 9.0 < c < 10.0
    zones = [circle("a", 48.85, 2.35, 400.0), circle("b", 48.85 + 20 / 111_195.0, 2.35, 10.0)]
    lats, lngs = points_near(zones[1], rng, 200, 200)
    assert assert_discs_hold(index, zones, lats, lngs, rng) > 0
    index.remove("b")
    assert index.clearance_m(probe_lat, probe_lng)[0] == CLEARANCE_CAP_M  # "a"'s edge is 400 m away


def test_no_disc_near_the_poles_the_antimeridian_or_for_non_finite_points():
    index = ZoneIndex([circle("c", 0.0, 0.0, 400.0)])
    lats = np.array([86.0, -86.0, 10.0, 10.0, np.nan, 10.0])
    lngs = np.array([0.0, 0.0, 179.5, -179.5, 0.0, np.inf])
    assert (index.clearance_m(lats, lngs) == 0).all()
    assert (ZoneIndex().clearance_m(np.array([10.0]), np.array([10.0])) == CLEARANCE_CAP_M).all()


@zones_around
def test_presence_bounds_hold_for_every_point_within_them(kind, size, lat, lng, seed):
    """For a device steady in some of the zones containing P: every point Q at δ < r of P is still in each
    of them, and no deeper than d + δ (δ by the area slack more) in any other zone, as signed_distance_m
    says."""
    from zones.clearance import AREA_SLACK

    rng = np.random.default_rng(seed)
    zones = [make_zone(kind, "z", lat, lng, size, rng), circle("c", lat, lng, size * 0.7),
             circle("small", lat, lng, max(10.0, size * 0.05))]
    index = ZoneIndex(zones)
    lats, lngs = points_near(zones[0], rng, 100, 100)
    inside = [sorted(s) for s in zone_sets(zones, lats, lngs)]
    steady = [[z for z in ids if rng.random() < 0.5] for ids in inside]
    r, d = index.presence_bounds(lats, lngs, inside, steady)
    assert ((r >= 0) & (r <= CLEARANCE_CAP_M)).all()
    checked = 0
    for i in np.flatnonzero((r > 0) & np.isfinite(d)).tolist():
        for frac in (0.999, *rng.uniform(0, 1, 2)):
            delta = frac * r[i]
            ring = around(lats[i], lngs[i], delta, 12)
            for (q_lng, q_lat), ids in zip(ring, zone_sets(zones, ring[:, 1], ring[:, 0]), strict=True):
                assert set(steady[i]) <= ids
                for z in zones:
                    if z.id not in steady[i]:
                        depth = -index.signed_distance_m(z.id, q_lat, q_lng)
                        assert depth <= d[i] + delta * (1 + AREA_SLACK), (z.id, depth, d[i], delta)
                checked += 1
    assert checked > 0


def test_presence_bounds_count_a_zone_beyond_the_cap_as_the_cap_away():
    """A zone whose edge is farther than the cap is not listed near P: a point at δ from P may be as
    little as cap - δ outside it, so ``d`` is never below -cap (found by the property test above)."""
    index = ZoneIndex([circle("big", 48.85, 2.35, 28_000.0), circle("home", 49.2, 2.35, 400.0)])
    lat = 49.2 + 200.0 / 111_195.0  # inside "home", 200 m from its edge, ~10 km outside "big"
    r, d = index.presence_bounds(np.array([lat]), np.array([2.35]), [["home"]], [["home"]])
    assert r[0] == CLEARANCE_CAP_M
    assert -CLEARANCE_CAP_M <= d[0] < -CLEARANCE_CAP_M + 0.1
