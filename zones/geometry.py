"""Geometry: validation, zone -> shapely shape in (lng, lat) degrees, metric distances.

This is the only module that handles axis order: public functions take ``lat, lng``; shapely and GeoJSON
use ``(lng, lat)``.

Decisions (see docs/zones.md):

* circles are polygons of ``CIRCLE_VERTICES`` vertices placed at the exact great-circle distance
  ``radius_m`` from the centre on the sphere of radius ``EARTH_RADIUS_M`` (not WGS 84's geodesic circle:
  docs/zones.md gives the difference); the polygon is the truth for containment (``zone_shape``);
* invalid polygons (self-intersections, bad holes) are **rejected** with the reason and location, not
  repaired: ``make_valid`` silently changes what a marketer drew (a bow-tie becomes two triangles);
* zones crossing the antimeridian are supported: a circle or a ring that jumps across ±180° is unwrapped and
  split at ±180°, so ``zone_shape`` is a MultiPolygon whose parts lie in [-180, 180];
* zones reaching beyond ±85° latitude are rejected (no stores there; H3 cells and lng/lat planar geometry
  degenerate near the poles).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from zones.boundary import Rings
from zones.boundary import distance_m as boundary_distance_m
from zones.boundary import rings as ring_arrays
from zones.errors import ZoneError
from zones.model import Area, Circle, Zone
from zones.sizing import MAX_RADIUS_M, MIN_RADIUS_M, check_radius

EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
CIRCLE_VERTICES = 128
# A 128-gon's edges sag r * (1 - cos(pi / 128)) = 3.0e-4 r inside its circle (and, drawn straight in
# degrees, stray from the geodesic chord by about a metre at most: the largest zone at 85 deg of latitude):
# beyond 1 m + this share of the radius from the circle (101 m for 50 km), the great-circle distance
# alone gives the side of the polygon (``test_a_circles_sign_agrees_with_its_polygon_around_the_band``).
CIRCLE_SIGN_MARGIN = 2e-3
MAX_ABS_LAT = 85.0
MAX_EXTENT_M = 2 * MAX_RADIUS_M  # an Area may not reach farther than this from its centre
_EPS_DEG = 1e-9


# ---------------------------------------------------------------------------------------------- validation
def validate_zone(zone: Zone) -> Zone:
    """Check every field of ``zone``; return it unchanged or raise :class:`ZoneError` with a clear reason.

    Checks: id/name non-empty; tz is an IANA zone; country is two letters; fence settings non-negative;
    circle centre finite and in range, radius in [10 m, 50 km]; area GeoJSON well formed, finite, valid
    (not self-intersecting), not degenerate, equivalent radius in [10 m, 50 km]; nothing beyond ±85° lat.
    """
    checked_shape(zone)
    return zone


def checked_shape(zone: Zone) -> BaseGeometry:
    """:func:`validate_zone`, returning the zone's shape (computed once)."""
    check_fields(zone)
    shape = zone_shape(zone)  # raises ZoneError on any geometric problem
    if isinstance(zone.geometry, Area):
        size = math.sqrt(_area_m2(shape) / math.pi)
        if size < MIN_RADIUS_M:
            raise ZoneError(f"area is too small: equivalent radius {size:.1f} m is below {MIN_RADIUS_M:g} m")
        if size > MAX_RADIUS_M:
            raise ZoneError(f"area is too large: equivalent radius {size:.0f} m is above {MAX_RADIUS_M:g} m")
        lat0, lng0 = reference_latlng(zone, shape)
        far = max(haversine_m(lat0, lng0, la, ln) for ln, la in _vertices(shape))
        if far > MAX_EXTENT_M:
            raise ZoneError(f"area is too spread out: a vertex is {far / 1000:.0f} km from its centre")
    return shape


def check_fields(zone: Zone) -> None:
    """The checks of :func:`validate_zone` other than the geometry's."""
    if not isinstance(zone.id, str) or not zone.id.strip():
        raise ZoneError("id must be a non-empty string")
    if not isinstance(zone.name, str) or not zone.name.strip():
        raise ZoneError("name must be a non-empty string")
    try:
        ZoneInfo(zone.tz)
    except Exception:
        raise ZoneError(
            f"unknown time zone {zone.tz!r} (expected an IANA name such as Europe/Paris)"
        ) from None
    if not (isinstance(zone.country, str) and len(zone.country) == 2 and zone.country.isalpha()):
        raise ZoneError(f"country must be a two-letter ISO code, got {zone.country!r}")
    if zone.subdivision is not None and not (
        isinstance(zone.subdivision, str) and 1 <= len(zone.subdivision) <= 8 and zone.subdivision.isalnum()
    ):
        raise ZoneError(f"subdivision must be a short code such as 57 or 2A, got {zone.subdivision!r}")
    if zone.fence is not None:
        for name in ("dwell_after_s", "accuracy_tolerance_m", "exit_margin_m", "enter_confirm_fixes",
                     "spike_hold_m"):
            v = getattr(zone.fence, name)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0
            ):
                raise ZoneError(f"fence.{name} must be a non-negative number")
    if zone.minutes is not None and (not math.isfinite(zone.minutes) or zone.minutes <= 0):
        raise ZoneError("minutes must be a positive number")


def _check_latlng(lat: Any, lng: Any, what: str) -> None:
    for v, name in ((lat, "lat"), (lng, "lng")):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ZoneError(f"{what}: {name} must be a number")
        if not math.isfinite(v):
            raise ZoneError(f"{what}: {name} must be finite, got {v}")
    if not -90.0 <= lat <= 90.0:
        raise ZoneError(f"{what}: latitude {lat} is out of range [-90, 90]")
    if not -180.0 <= lng <= 180.0:
        raise ZoneError(f"{what}: longitude {lng} is out of range [-180, 180]")
    if abs(lat) > MAX_ABS_LAT:
        raise ZoneError(
            f"{what}: latitude {lat} is too close to a pole (zones are limited to ±{MAX_ABS_LAT:g}°)"
        )


# ---------------------------------------------------------------------------------------------- shapes
def zone_shape(zone: Zone) -> BaseGeometry:
    """The zone as a shapely (Multi)Polygon in (lng, lat) degrees: the ground truth for containment.

    Raises :class:`ZoneError` if the geometry is invalid. Antimeridian-crossing zones are split at ±180°.
    """
    g = zone.geometry
    if isinstance(g, Circle):
        return circle_shape(g)
    if isinstance(g, Area):
        return area_shape(g.geojson)
    raise ZoneError("geometry must be a Circle or an Area")


def circle_ring_lnglat(circle: Circle, n: int = CIRCLE_VERTICES) -> np.ndarray:
    """(n, 2) (lng, lat) vertices at great-circle distance radius_m (sphere of radius EARTH_RADIUS_M); lng is
    continuous (may leave ±180)."""
    lat1, lng1 = math.radians(circle.lat), math.radians(circle.lng)
    d = circle.radius_m / EARTH_RADIUS_M
    th = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    sin_lat2 = math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * np.cos(th)
    lat2 = np.arcsin(sin_lat2)
    lng2 = lng1 + np.arctan2(
        np.sin(th) * math.sin(d) * math.cos(lat1), math.cos(d) - math.sin(lat1) * sin_lat2
    )
    return np.column_stack([np.degrees(lng2), np.degrees(lat2)])


def check_circle(circle: Circle) -> None:
    """The checks of ``circle_shape``, without making the polygon (a bulk build validates a million)."""
    _check_latlng(circle.lat, circle.lng, "circle centre")
    check_radius(circle.radius_m)
    # the polygon's vertices farthest north and south are those due north and south (bearings 0 and pi)
    lat1, d = math.radians(circle.lat), circle.radius_m / EARTH_RADIUS_M
    bearings = np.array([0.0, math.pi])
    north_south = np.arcsin(math.sin(lat1) * math.cos(d) + math.cos(lat1) * math.sin(d) * np.cos(bearings))
    if np.abs(np.degrees(north_south)).max() > MAX_ABS_LAT:
        raise ZoneError(f"circle reaches beyond ±{MAX_ABS_LAT:g}° latitude (too close to a pole)")


def circle_shape(circle: Circle) -> BaseGeometry:
    check_circle(circle)
    return _split_antimeridian(Polygon(circle_ring_lnglat(circle)))


def area_shape(geojson: Mapping[str, Any]) -> BaseGeometry:
    if not isinstance(geojson, Mapping):
        raise ZoneError("area must be a GeoJSON object")
    kind = geojson.get("type")
    coords = geojson.get("coordinates")
    if kind == "Polygon":
        polys = [coords]
    elif kind == "MultiPolygon":
        if not isinstance(coords, list | tuple) or not coords:
            raise ZoneError("MultiPolygon needs a non-empty list of polygons")
        polys = list(coords)
    else:
        raise ZoneError(f"area geometry type must be Polygon or MultiPolygon, got {kind!r}")
    parts: list[BaseGeometry] = []
    for i, rings in enumerate(polys):
        where = "polygon" if kind == "Polygon" else f"polygon {i + 1}"
        parts.append(_polygon_from_rings(rings, where))
    shape = parts[0] if len(parts) == 1 else shapely.union_all(parts)
    if kind == "MultiPolygon" and len(parts) > 1:
        total = sum(p.area for p in parts)
        if not math.isclose(shape.area, total, rel_tol=1e-9, abs_tol=1e-18):
            raise ZoneError("MultiPolygon parts overlap each other")
    return _as_polygonal(shape)


def _polygon_from_rings(rings: Any, where: str) -> BaseGeometry:
    if not isinstance(rings, list | tuple) or not rings:
        raise ZoneError(f"{where}: needs at least an exterior ring")
    arrays = []
    for j, ring in enumerate(rings):
        name = f"{where} exterior ring" if j == 0 else f"{where} hole {j}"
        if not isinstance(ring, list | tuple):
            raise ZoneError(f"{name}: must be a list of [lng, lat] positions")
        pts = []
        for k, pos in enumerate(ring):
            if not isinstance(pos, list | tuple) or len(pos) < 2:
                raise ZoneError(f"{name}: position {k + 1} must be [lng, lat]")
            lng, lat = pos[0], pos[1]
            _check_latlng(lat, lng, f"{name} position {k + 1}")
            pts.append((float(lng), float(lat)))
        if len(pts) >= 2 and pts[0] == pts[-1]:
            pts.pop()
        if len(set(pts)) < 3:
            raise ZoneError(f"{name}: needs at least 3 distinct positions")
        arrays.append(_unwrap(np.asarray(pts, dtype=float)))
    shell = arrays[0]
    holes = []
    for hole in arrays[1:]:  # put each hole on the same side of the antimeridian as the shell
        hole[:, 0] += 360.0 * round((shell[0, 0] - hole[0, 0]) / 360.0)  # longitudes only
        holes.append(hole)
    poly = Polygon(shell, holes)
    if not poly.is_valid:
        raise ZoneError(
            f"{where} is not a valid polygon: {explain_validity(poly)} (self-intersecting or bad hole)"
        )
    if poly.area <= 0:
        raise ZoneError(f"{where} is degenerate (zero area)")
    return _split_antimeridian(poly)


def _unwrap(ring: np.ndarray) -> np.ndarray:
    """Make longitudes continuous: a step of more than 180° is taken as a crossing of the antimeridian."""
    d = np.diff(ring[:, 0])
    steps = -360.0 * np.round(d / 360.0)
    steps[np.abs(d) <= 180.0] = 0.0
    ring = ring.copy()
    ring[1:, 0] += np.cumsum(steps)
    return ring


_WORLD = box(-180.0, -90.0, 180.0, 90.0)


def _split_antimeridian(poly: BaseGeometry) -> BaseGeometry:
    minx, _, maxx, _ = poly.bounds
    if minx >= -180.0 and maxx <= 180.0:
        return poly
    if maxx - minx >= 360.0:
        raise ZoneError("zone wraps all the way around the globe")
    parts = []
    for shift in (-360.0, 0.0, 360.0):
        piece = shapely.affinity.translate(poly, xoff=shift).intersection(_WORLD)
        if not piece.is_empty:
            parts.append(piece)
    return _as_polygonal(shapely.union_all(parts) if len(parts) > 1 else parts[0])


def _as_polygonal(geom: BaseGeometry) -> BaseGeometry:
    polys = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, Polygon) and not g.is_empty]
    if not polys:
        raise ZoneError("zone geometry is empty")
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def polygons(shape: BaseGeometry) -> Sequence[Polygon]:
    return list(getattr(shape, "geoms", [shape]))


def _vertices(shape: BaseGeometry) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for p in polygons(shape):
        out.extend(p.exterior.coords)
    return out


# ---------------------------------------------------------------------------------------------- metric
def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres (spherical Earth, R = 6 371 008.8 m)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def reference_latlng(zone: Zone, shape: BaseGeometry | None = None) -> tuple[float, float]:
    """A representative (lat, lng): a circle's centre, an area's bbox centre (antimeridian-aware)."""
    g = zone.geometry
    if isinstance(g, Circle):
        return g.lat, g.lng
    shape = zone_shape(zone) if shape is None else shape
    xs = np.concatenate([np.asarray(p.exterior.coords)[:, 0] for p in polygons(shape)])
    ys = np.concatenate([np.asarray(p.exterior.coords)[:, 1] for p in polygons(shape)])
    ref = xs[0]
    xs = ref + (xs - ref + 180.0) % 360.0 - 180.0
    lng = (xs.min() + xs.max()) / 2
    lng = (lng + 180.0) % 360.0 - 180.0
    return float((ys.min() + ys.max()) / 2), float(lng)


def to_local_m(shape: BaseGeometry, lat0: float, lng0: float) -> BaseGeometry:
    """Project (lng, lat) degrees to a local equirectangular plane in metres centred on ``lat0, lng0``."""
    k = math.cos(math.radians(lat0)) * M_PER_DEG

    def f(xy: np.ndarray) -> np.ndarray:
        dx = (xy[:, 0] - lng0 + 180.0) % 360.0 - 180.0
        return np.column_stack([dx * k, (xy[:, 1] - lat0) * M_PER_DEG])

    return shapely.transform(shape, f)


def _area_m2(shape: BaseGeometry) -> float:
    total = 0.0
    for p in polygons(shape):
        c = p.centroid
        total += to_local_m(p, c.y, c.x).area
    return total


def area_m2(zone: Zone) -> float:
    """Area of the zone in square metres (local equirectangular approximation per part)."""
    return _area_m2(zone_shape(zone))


def signed_distance_m(
    zone: Zone, lat: float, lng: float, shape: BaseGeometry | None = None, rings: Rings | None = None,
    inside: bool | None = None,
) -> float:
    """Distance from ``lat, lng`` to the zone boundary in metres: ``< 0`` inside, ``> 0`` outside.

    Circles: great-circle distance to the centre minus the radius. Areas: planar distance to the boundary in a
    local metric projection centred on the point (``to_local_m``; computed by ``zones.boundary`` over the
    shape's ``rings``, which a caller asking often passes in). The sign always agrees with containment in
    ``zone_shape`` (in the sub-metre band where the 128-gon and the true circle differ, the value is clamped
    to ±1 mm; only a circle's band asks the polygon, ``CIRCLE_SIGN_MARGIN``). A caller that already knows
    whether the shape contains the point (``ZoneIndex.match_many`` is exact) passes ``inside``.
    """
    g = zone.geometry
    if isinstance(g, Circle):
        d = haversine_m(g.lat, g.lng, lat, lng) - g.radius_m
        if abs(d) > 1.0 + CIRCLE_SIGN_MARGIN * g.radius_m and abs(g.lng) < 170.0:
            # outside the band where the 128-gon and the circle may disagree, and far from the
            # antimeridian (where the polygon is split and a point on the cut is on its boundary)
            return d
    if inside is None or not isinstance(g, Circle):  # a circle's polygon only to test containment
        shape = zone_shape(zone) if shape is None else shape
    if inside is None:
        inside = bool(shapely.contains_xy(shape, lng, lat))
    if not isinstance(g, Circle):
        d = boundary_distance_m(ring_arrays(shape) if rings is None else rings, lat, lng, M_PER_DEG)
        d = -d if inside else d
    if inside and d >= 0:
        return -1e-3
    if not inside and d < 0:
        return 1e-3
    return float(d)
