"""Zone builders and point generators shared by the zones tests."""

from __future__ import annotations

import math

import numpy as np
import shapely

from zones.geometry import M_PER_DEG, zone_shape
from zones.model import Area, Circle, Zone

# one size per row of the resolution table: circles at res 10, 9, 8, 7, 6 (areas one finer: 11 to 7)
SIZES_M = (20.0, 1_000.0, 3_000.0, 12_000.0, 40_000.0)


def circle(zid: str, lat: float, lng: float, radius_m: float) -> Zone:
    return Zone(id=zid, name=zid, geometry=Circle(lat, lng, radius_m))


def star_ring(
    lat: float, lng: float, radius_m: float, rng: np.random.Generator, n: int = 9
) -> list[list[float]]:
    """A star-shaped (hence simple) ring of n vertices, radii in [0.6, 1] x radius_m; [lng, lat] positions."""
    th = (np.arange(n) + rng.uniform(0, 0.8, n)) * 2 * math.pi / n  # gaps < 2 steps: star-shaped, simple
    r = rng.uniform(0.6, 1.0, len(th)) * radius_m
    kx = M_PER_DEG * math.cos(math.radians(lat))
    pts = [
        [lng + float(ri * math.sin(t)) / kx, lat + float(ri * math.cos(t)) / M_PER_DEG]
        for t, ri in zip(th, r, strict=False)
    ]
    pts = [[(x + 180.0) % 360.0 - 180.0 if abs(x) > 180.0 else x, y] for x, y in pts]  # RFC 7946 range
    return pts + [pts[0]]


def polygon(zid: str, lat: float, lng: float, size_m: float, rng: np.random.Generator, hole: bool) -> Zone:
    size_m = max(size_m, 40.0)  # a star of a few vertices must keep >= 10 m of equivalent radius
    rings = [star_ring(lat, lng, size_m * 1.3, rng, n=int(rng.integers(5, 12)))]
    if hole:
        rings.append(star_ring(lat, lng, size_m * 0.45, rng, n=6))
        rings[0] = star_ring(lat, lng, size_m * 1.3, rng, n=12)
        # keep the shell outside the hole: shell radii are >= 0.6 * 1.3 = 0.78 > 0.45
    return Zone(id=zid, name=zid, geometry=Area({"type": "Polygon", "coordinates": rings}))


def multipolygon(zid: str, lat: float, lng: float, size_m: float, rng: np.random.Generator) -> Zone:
    kx = M_PER_DEG * math.cos(math.radians(lat))
    off = 2.2 * size_m / kx
    a = star_ring(lat, lng - off, size_m, rng)
    b = star_ring(lat, lng + off, size_m, rng)
    return Zone(id=zid, name=zid, geometry=Area({"type": "MultiPolygon", "coordinates": [[a], [b]]}))


def points_near(
    zone: Zone, rng: np.random.Generator, n_random: int, n_edge: int
) -> tuple[np.ndarray, np.ndarray]:
    """(lats, lngs): uniform points in the zone's bbox (padded), and points within 1 m of its boundary."""
    shape = zone_shape(zone)
    parts = list(getattr(shape, "geoms", [shape]))
    lats, lngs = [], []
    for p in parts:
        minx, miny, maxx, maxy = p.bounds
        padx, pady = (maxx - minx) * 0.2 + 1e-5, (maxy - miny) * 0.2 + 1e-5
        m = max(1, n_random // len(parts))
        lngs.append(rng.uniform(minx - padx, maxx + padx, m))
        lats.append(rng.uniform(miny - pady, maxy + pady, m))
        edge = shapely.line_interpolate_point(
            p.boundary, rng.uniform(0, 1, max(1, n_edge // len(parts))), normalized=True
        )
        xy = shapely.get_coordinates(edge)
        d = rng.uniform(0, 1.0, len(xy))  # metres
        a = rng.uniform(0, 2 * math.pi, len(xy))
        lat = xy[:, 1]
        lats.append(lat + d * np.cos(a) / M_PER_DEG)
        lngs.append(xy[:, 0] + d * np.sin(a) / (M_PER_DEG * np.cos(np.radians(lat))))
    lat = np.clip(np.concatenate(lats), -90, 90)
    lng = np.concatenate(lngs)
    lng = (lng + 180.0) % 360.0 - 180.0
    return lat, lng


def truth_pairs(zones: list[Zone], lats: np.ndarray, lngs: np.ndarray) -> set[tuple[int, str]]:
    out: set[tuple[int, str]] = set()
    for z in zones:
        hit = np.flatnonzero(shapely.contains_xy(zone_shape(z), lngs, lats))
        out |= {(int(i), z.id) for i in hit}
    return out
