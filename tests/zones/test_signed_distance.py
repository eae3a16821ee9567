"""``signed_distance_m``: the circle's shortcut (no polygon test outside a band around the circle) never
gives a sign that disagrees with the 128-gon, the ground truth for containment; an area's compiled
distance is shapely's in the point's own projection."""

import math

import numpy as np
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from tests.zones.shapes import multipolygon, points_near, polygon
from zones.geometry import CIRCLE_SIGN_MARGIN, EARTH_RADIUS_M, signed_distance_m, to_local_m, zone_shape
from zones.model import Circle, Zone


def _destination(lat: float, lng: float, bearing: float, dist_m: float) -> tuple[float, float]:
    p1, l1, d = math.radians(lat), math.radians(lng), dist_m / EARTH_RADIUS_M
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))
    y = math.sin(bearing) * math.sin(d) * math.cos(p1)
    l2 = l1 + math.atan2(y, math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 180.0) % 360.0 - 180.0


@settings(max_examples=400, deadline=None)
@given(
    lat=st.floats(-80.0, 80.0), lng=st.floats(-180.0, 180.0), radius=st.floats(10.0, 50_000.0),
    bearing=st.floats(0.0, 2 * math.pi), band=st.floats(-4.0, 4.0),
)
def test_a_circles_sign_agrees_with_its_polygon_around_the_band(lat, lng, radius, bearing, band):
    zone = Zone(id="c", name="c", geometry=Circle(lat, lng, radius))
    margin = 1.0 + CIRCLE_SIGN_MARGIN * radius
    # points from well inside to well outside the band, most of them near its edges
    plat, plng = _destination(lat, lng, bearing, max(0.0, radius + band * margin))
    inside = bool(shapely.contains_xy(zone_shape(zone), plng, plat))
    assert (signed_distance_m(zone, plat, plng) < 0) == inside


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), lat=st.floats(-80.0, 80.0), lng=st.floats(-180.0, 180.0),
    size=st.floats(40.0, 20_000.0), kind=st.sampled_from(["polygon", "holed", "multi"]),
)
def test_an_areas_distance_is_the_boundary_distance_in_the_points_own_projection(seed, lat, lng, size, kind):
    """The compiled distance (``zones.boundary``) gives what shapely gives on the shape projected around
    the point (``to_local_m``), bit for bit; the sign is containment, whether the caller says it or not."""
    rng = np.random.default_rng(seed)
    zone = multipolygon("a", lat, lng, size, rng) if kind == "multi" else polygon(
        "a", lat, lng, size, rng, hole=kind == "holed"
    )
    shape = zone_shape(zone)
    plats, plngs = points_near(zone, rng, 20, 20)
    for plat, plng in zip(plats.tolist(), plngs.tolist(), strict=True):
        expected = shapely.distance(to_local_m(shape, plat, plng).boundary, Point(0.0, 0.0))
        inside = bool(shapely.contains_xy(shape, plng, plat))
        for told in (None, inside):
            d = signed_distance_m(zone, plat, plng, inside=told)
            assert (d < 0) == inside
            assert abs(d) == expected or abs(d) == 1e-3  # clamped only where GEOS says 0
