"""Sizing a zone from how customers arrive, and the H3 resolution table.

Speeds are planning assumptions (documented in docs/zones.md), not measurements: the radius is the distance
covered in ``minutes`` at ``speed_kmh``, divided by a detour factor (street network vs. straight line).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from zones.errors import ZoneError
from zones.model import Area, Circle, Zone

MIN_RADIUS_M = 10.0
MAX_RADIUS_M = 50_000.0
MAX_MINUTES = 120.0


@dataclass(frozen=True)
class Profile:
    """A travel profile: door-to-door speed and the ratio path length / straight-line distance."""

    speed_kmh: float
    detour: float

    def radius_m(self, minutes: float) -> float:
        return self.speed_kmh * 1000.0 / 60.0 * minutes / self.detour


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "walk": Profile(speed_kmh=5.0, detour=1.05),  # 5 min ≈ 397 m: "about 400 m on foot in town"
        "bike": Profile(speed_kmh=15.0, detour=1.25),  # 5 min ≈ 1.0 km
        "transit": Profile(speed_kmh=18.0, detour=1.4),  # 5 min ≈ 1.07 km (stops and waits included)
        "drive_urban": Profile(speed_kmh=25.0, detour=1.35),  # 5 min ≈ 1.54 km (lights, congestion)
        "drive_rural": Profile(speed_kmh=70.0, detour=1.2),  # 5 min ≈ 4.86 km: "several km in the country"
    }
)

# (upper bound of the zone size in metres, H3 resolution of a circle), first match wins. Edge lengths (h3
# 4.x averages): res 11 ≈ 28.7 m, 10 ≈ 75.9 m, 9 ≈ 200.8 m, 8 ≈ 531 m, 7 ≈ 1 406 m, 6 ≈ 3 725 m. Rule for
# circles: edge ≈ size/5 to size/13. A circle's boundary hit is decided in the compiled lookup by a chord test
# (a few ns), so a wide boundary band costs little, while every finer level multiplies the cells (memory,
# build time, and the lookup's cache misses in a larger table) by ~5: walking zones at res 10 instead of 11
# made ``match_many`` at 100k zones 1.4x faster and the build 3.4x cheaper (bench/bench_scale.py). Areas get
# one level finer (``choose_resolution``). The lookup computes one res-``FINEST_RES`` cell per fix and takes
# its ancestors, whatever the zones' resolutions.
RESOLUTION_TABLE: tuple[tuple[float, int], ...] = (
    (600.0, 10),
    (2_000.0, 9),
    (8_000.0, 8),
    (25_000.0, 7),
    (math.inf, 6),
)
FINEST_RES = 11  # areas' finest level (one finer than the table's finest)


def size_zone(
    lat: float, lng: float, profile: str, minutes: float = 5, radius_m: float | None = None
) -> Circle:
    """The circle reached in ``minutes`` with travel ``profile`` around ``lat, lng`` (degrees).

    An explicit ``radius_m`` overrides the profile. Raises :class:`ZoneError` for an unknown profile,
    non-positive or absurd minutes, or a radius outside [10 m, 50 km].

    Example: ``size_zone(48.85, 2.35, "walk").radius_m`` ≈ 397.
    """
    if radius_m is None:
        prof = PROFILES.get(profile)
        if prof is None:
            raise ZoneError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
        if not isinstance(minutes, int | float) or not math.isfinite(minutes) or minutes <= 0:
            raise ZoneError("minutes must be a positive number")
        if minutes > MAX_MINUTES:
            raise ZoneError(f"minutes must be at most {MAX_MINUTES:g}")
        radius_m = prof.radius_m(float(minutes))
    check_radius(radius_m)
    return Circle(lat=float(lat), lng=float(lng), radius_m=float(radius_m))


def check_radius(radius_m: float) -> None:
    if not isinstance(radius_m, int | float) or not math.isfinite(radius_m):
        raise ZoneError("radius_m must be a finite number")
    if radius_m < MIN_RADIUS_M:
        raise ZoneError(f"radius {radius_m:g} m is below the minimum of {MIN_RADIUS_M:g} m")
    if radius_m > MAX_RADIUS_M:
        raise ZoneError(f"radius {radius_m:g} m is above the maximum of {MAX_RADIUS_M:g} m")


def choose_resolution(size_m: float, *, area: bool = False) -> int:
    """H3 resolution for a zone of size ``size_m`` (radius or equivalent radius, m): RESOLUTION_TABLE.

    An ``area`` (polygon) gets the next finer level, up to ``FINEST_RES``: its exact test (shapely) costs
    ~100x a circle's chord test, so a thinner boundary band pays for its extra cells.
    """
    res = RESOLUTION_TABLE[-1][1]
    for bound, r in RESOLUTION_TABLE:
        if size_m < bound:
            res = r
            break
    return min(res + 1, FINEST_RES) if area else res


def zone_size_m(zone: Zone) -> float:
    """The circle radius, or for an Area the radius of the disc of equal area (metres)."""
    g = zone.geometry
    if isinstance(g, Circle):
        return float(g.radius_m)
    assert isinstance(g, Area)
    from zones.geometry import area_m2

    return math.sqrt(area_m2(zone) / math.pi)
