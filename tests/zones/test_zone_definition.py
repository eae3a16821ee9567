"""What a circle zone is (docs/zones.md, *What a circle is, exactly*): a 128-gon whose vertices lie at
great-circle distance ``radius_m`` on the sphere of radius 6,371,008.8 m; measured along the WGS 84
ellipsoid, its vertices are 0.558 % of the radius short (north-south at the equator) to 0.449 % long (near
the poles) of the geodesic circle, and its edges sag another 0.030 % inside."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zones.geometry import CIRCLE_VERTICES, EARTH_RADIUS_M, circle_ring_lnglat
from zones.model import Circle

A, E2 = 6_378_137.0, 6.694_379_990_14e-3  # WGS 84
SAG = 1.0 - math.cos(math.pi / CIRCLE_VERTICES)


def wgs84_m(lat1: float, lng1: np.ndarray, lat2: np.ndarray, lng2: np.ndarray) -> np.ndarray:
    """Short ellipsoidal distances: radii of curvature M (meridian) and N (prime vertical) at the mid
    latitude (relative error ~1e-6 at these distances, far below the 1e-4 the bounds are checked to)."""
    phi = np.radians((lat1 + lat2) / 2)
    w = 1.0 - E2 * np.sin(phi) ** 2
    m, n = A * (1 - E2) / w**1.5, A / np.sqrt(w)
    return np.hypot(m * np.radians(lat2 - lat1), n * np.cos(phi) * np.radians(lng2 - lng1))


def vertex_ratios(lat: float, radius_m: float) -> np.ndarray:
    ring = circle_ring_lnglat(Circle(lat, 2.0, radius_m))
    return wgs84_m(lat, 2.0, ring[:, 1], ring[:, 0]) / radius_m


@pytest.mark.parametrize("lat", [0.0, 23.0, 46.0, 60.0, 84.0, -84.0])
@pytest.mark.parametrize("radius_m", [20.0, 397.0, 5_000.0])
def test_a_circles_vertices_are_within_the_documented_share_of_the_geodesic_circle(lat, radius_m):
    ratios = vertex_ratios(lat, radius_m)
    assert ratios.min() >= 1 - 0.00558 - 1e-4 and ratios.max() <= 1 + 0.00449 + 1e-4


def test_the_documented_extremes_of_a_walking_zone():
    r = 397.0
    inside_at_equator = r * (1 - vertex_ratios(0.0, r).min()) + r * SAG
    outside_at_84 = r * (vertex_ratios(84.0, r).max() - 1)
    assert inside_at_equator == pytest.approx(2.33, abs=0.02)
    assert outside_at_84 == pytest.approx(1.77, abs=0.02)
    in_france = np.concatenate([vertex_ratios(lat, r) for lat in (42.3, 46.0, 51.1)])
    assert r * (1 - in_france.min()) + r * SAG < 0.6 and r * (in_france.max() - 1) < 1.3
    assert EARTH_RADIUS_M == 6_371_008.8  # the sphere the definition names
    assert 50_000 * (1 - vertex_ratios(0.0, 50_000.0).min() + SAG) == pytest.approx(294, abs=2)
