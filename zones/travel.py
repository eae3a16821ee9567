"""Zones sized by travel time: isochrone from a street extract, mode chosen for the marketer, provenance.

``size_by_travel`` returns the geometry (an isochrone :class:`Area`, or the profile's :class:`Circle` when
there is no extract or the store is off its streets) and a :class:`Travel` record saying what was asked,
what was drawn, from which extract, and why (docs/zones.md, *Travel-time zones*).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

import numpy as np

from zones.errors import ZoneError
from zones.model import Area, Circle, Zone
from zones.sizing import MAX_MINUTES, PROFILES, size_zone
from zones.travel_record import Travel

MODES = ("walk", "drive", "auto")
METHODS = ("isochrone", "circle")
CIRCLE_PROFILE: Mapping[str, str] = MappingProxyType({"walk": "walk", "drive": "drive_rural"})

# mode "auto": walking where the streets are a town's (docs/zones.md measures both bundled extracts)
AUTO_RADIUS_M = 500.0
AUTO_TOWN_STREETS_KM = 15.0  # walkable streets and paths within 500 m: a town's grid
AUTO_SMALL_TOWN_STREETS_KM = 10.0  # ...or this much with at least
AUTO_SMALL_TOWN_BUILDINGS = 400  # this many buildings within 500 m: a dense small town


def check_request(mode: str, minutes: float, method: str) -> None:
    """Raise :class:`ZoneError` unless mode, minutes and method make a travel-time zone."""
    if mode not in MODES:
        raise ZoneError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if method not in METHODS:
        raise ZoneError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not math.isfinite(minutes):
        raise ZoneError("minutes must be a number")
    if not 0 < minutes <= MAX_MINUTES:
        raise ZoneError(f"minutes must be in (0, {MAX_MINUTES:g}]")


def choose_mode(extract: Any, lat: float, lng: float) -> tuple[str, str]:
    """Mode "auto": ("walk" | "drive", the rule with this store's figures), from the extract around it."""
    from zones.streets import haversine_m

    walk = extract.walk
    mid_lat = (walk.lat[walk.src] + walk.lat[walk.dst]) / 2
    mid_lng = (walk.lng[walk.src] + walk.lng[walk.dst]) / 2
    near = _within(mid_lat, mid_lng, lat, lng, AUTO_RADIUS_M)
    near[near] = haversine_m(lat, lng, mid_lat[near], mid_lng[near]) < AUTO_RADIUS_M
    streets_km = float(walk.length_m[near].sum()) / 2 / 1000  # both directions of each walkable edge
    b_near = _within(extract.building_lat, extract.building_lng, lat, lng, AUTO_RADIUS_M)
    buildings = int(np.count_nonzero(
        haversine_m(lat, lng, extract.building_lat[b_near], extract.building_lng[b_near]) < AUTO_RADIUS_M
    ))
    town = streets_km >= AUTO_TOWN_STREETS_KM or (
        streets_km >= AUTO_SMALL_TOWN_STREETS_KM and buildings >= AUTO_SMALL_TOWN_BUILDINGS
    )
    mode = "walk" if town else "drive"
    rule = (
        f"auto: {streets_km:.1f} km of walkable streets and {buildings} buildings within "
        f"{AUTO_RADIUS_M:g} m -> {mode} (walk from {AUTO_TOWN_STREETS_KM:g} km, or "
        f"{AUTO_SMALL_TOWN_STREETS_KM:g} km with {AUTO_SMALL_TOWN_BUILDINGS} buildings)"
    )
    return mode, rule


def size_by_travel(
    lat: float, lng: float, mode: str, minutes: float, method: str = "isochrone", extract: Any = None
) -> tuple[Circle | Area, Travel]:
    """Geometry and provenance of a zone reached in ``minutes`` by ``mode`` around the store.

    Parameters
    ----------
    lat, lng : the store (degrees).
    mode : "walk", "drive" or "auto" (decided from the extract around the store, see ``choose_mode``).
    method : "isochrone" (from ``extract``) or "circle" (the profile's circle, ``zones.sizing``).
    extract : a ``zones.osm.StreetExtract`` or None.

    Notes
    -----
    An isochrone asked without an extract, or for a store outside the extract or off its streets,
    falls back to the circle; ``Travel.fallback`` says why. Raises :class:`ZoneError` for a bad request.
    """
    check_request(mode, minutes, method)
    auto_rule = None
    if mode == "auto":
        if extract is None:
            used, auto_rule = "walk", "auto: no street extract to judge the area, walking assumed"
        else:
            used, auto_rule = choose_mode(extract, lat, lng)
    else:
        used = mode
    info = None if extract is None else extract.info
    base = Travel(
        lat=float(lat), lng=float(lng), mode=used, minutes=float(minutes), method="circle",
        requested_mode=mode, requested_method=method, auto_rule=auto_rule,
        extract=None if info is None else info.name,
        extract_date=None if info is None or info.date is None else _iso(info.date),
    )
    fallback = None
    if method == "isochrone":
        if extract is None:
            fallback = "no street extract configured (GEOFENCE_STREETS__EXTRACT_FILE): circle drawn"
        else:
            from zones.isochrone import isochrone

            graph = extract.graph(used)
            if not _inside_extract(graph, lat, lng):
                fallback = f"the store lies outside the street extract {extract.info.name}: circle drawn"
            else:
                try:
                    iso = isochrone(graph, lat, lng, minutes)
                except ZoneError as exc:
                    fallback = f"{exc}: circle drawn"
                else:
                    travel = _replace(base, method="isochrone", speeds_kmh=dict(graph.speeds_kmh),
                                      buffer_m=iso.buffer_m)
                    return Area(geojson=iso.geojson), travel
    profile = CIRCLE_PROFILE[used]
    circle = size_zone(lat, lng, profile, minutes)
    speeds = {profile: PROFILES[profile].speed_kmh}
    return circle, _replace(base, speeds_kmh=speeds, fallback=fallback)


def _replace(t: Travel, **changes: Any) -> Travel:
    return replace(t, **changes)


def _inside_extract(graph: Any, lat: float, lng: float) -> bool:
    if graph.node_count == 0:
        return False
    return bool(graph.lat.min() <= lat <= graph.lat.max() and graph.lng.min() <= lng <= graph.lng.max())


def _within(lats: Any, lngs: Any, lat: float, lng: float, radius_m: float) -> Any:
    """Bounding-box prefilter (degrees) for a radius in metres."""
    dlat = radius_m / 111_000.0
    dlng = dlat / max(math.cos(math.radians(lat)), 0.01)
    return (np.abs(lats - lat) <= dlat) & (np.abs(lngs - lng) <= dlng)


def _iso(when: datetime) -> str:
    return when.isoformat()


@dataclass(frozen=True)
class ZoneChange:
    """How much a zone changed when recomputed from another extract (areas in m², shares in [0, 1])."""

    zone_id: str
    before: Travel
    after: Travel
    area_before_m2: float
    area_after_m2: float
    kept: float  # share of the old zone still in the new one
    added: float  # share of the new zone that was not in the old one

    @property
    def area_change(self) -> float:
        """Relative change of area: +0.10 = 10 % larger."""
        return self.area_after_m2 / self.area_before_m2 - 1.0 if self.area_before_m2 > 0 else math.inf


def resize(zone: Zone, extract: Any) -> tuple[Zone, ZoneChange]:
    """``zone`` (sized by travel time) recomputed from ``extract`` as it was asked (mode, minutes, method).

    Raises :class:`ZoneError` for a zone without a ``travel`` record.
    """
    from zones.geometry import area_m2, zone_shape

    before = zone.travel
    if before is None:
        raise ZoneError(f"zone {zone.id!r} is not sized by travel time")
    geometry, after = size_by_travel(
        before.lat, before.lng, before.requested_mode, before.minutes, before.requested_method, extract
    )
    new = replace(zone, geometry=geometry, travel=after)
    old_shape, new_shape = zone_shape(zone), zone_shape(new)
    common = old_shape.intersection(new_shape).area
    change = ZoneChange(
        zone_id=zone.id, before=before, after=after, area_before_m2=area_m2(zone), area_after_m2=area_m2(new),
        kept=common / old_shape.area if old_shape.area else 0.0,
        added=1.0 - common / new_shape.area if new_shape.area else 0.0,
    )
    return new, change
