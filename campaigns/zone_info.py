"""The campaigns' view of a zone (``campaigns.model.ZoneInfo``), read from the zones table.

The table's JSON is ``zones.Zone.to_dict()`` and has held positions under several keys over time
(``lat``/``lng``, ``center``, a circle, a travel-time zone's store, else an area's rough centre); this
module is the one place that reads them. Kept apart from the handler because the dry run and the
service read zones the same way.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import select
from sqlmodel import Session

from campaigns.model import ZoneInfo
from campaigns.storage.geofence_views import ZONES


def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def _area_centre(geometry: Any) -> tuple[float | None, float | None]:
    """A rough centre (mean of the outer ring's vertices) of a GeoJSON Point/Polygon/MultiPolygon."""
    if isinstance(geometry, dict) and "geojson" in geometry:
        geometry = geometry["geojson"]
    if not isinstance(geometry, dict):
        return None, None
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    try:
        if kind == "Point":
            return float(coords[1]), float(coords[0])
        ring = coords[0] if kind == "Polygon" else coords[0][0] if kind == "MultiPolygon" else None
        if not ring:
            return None, None
        if len(ring) > 1 and list(ring[0]) == list(ring[-1]):
            ring = ring[:-1]  # GeoJSON repeats the first vertex to close the ring
        return (sum(float(p[1]) for p in ring) / len(ring), sum(float(p[0]) for p in ring) / len(ring))
    except (TypeError, IndexError, ValueError):
        return None, None


class ZoneRecord(Protocol):
    """A row of the zones table, as far as campaigns read it."""

    id: str
    name: str
    data: dict[str, Any] | None


def zone_info_from_row(row: ZoneRecord) -> ZoneInfo:
    """A ``ZoneInfo`` from the zones table (its JSON is ``zones.Zone.to_dict()``)."""
    data = dict(row.data or {})
    lat = _first(data, "lat", "center_lat")
    lng = _first(data, "lng", "lon", "center_lng")
    center = _first(data, "center", "centre")
    if isinstance(center, dict):
        lat, lng = center.get("lat", lat), center.get("lng", center.get("lon", lng))
    elif isinstance(center, list | tuple) and len(center) == 2:
        lng, lat = center  # GeoJSON order (lng, lat), as the zones package stores positions
    geometry = data.get("geometry")
    circle = data.get("circle") or (
        geometry if isinstance(geometry, dict) and geometry.get("type") == "circle" else None
    )
    if lat is None and isinstance(circle, dict):
        lat, lng = circle.get("lat"), circle.get("lng")
    travel = data.get("travel") if isinstance(data.get("travel"), dict) else {}
    if travel.get("lat") is not None and travel.get("lng") is not None:
        lat, lng = travel["lat"], travel["lng"]  # the store an isochrone was drawn around
    if lat is None:
        lat, lng = _area_centre(data.get("area") or data.get("geometry"))
    return ZoneInfo(
        id=row.id,
        name=row.name or str(data.get("name", "")),
        tz=str(_first(data, "tz", "timezone", "time_zone") or "UTC"),
        tags=frozenset(str(t) for t in data.get("tags") or ()),
        country=_first(data, "country"),
        subdivision=_first(data, "subdivision"),
        lat=float(lat) if lat is not None else None,
        lng=float(lng) if lng is not None else None,
        travel_mode=_travel_mode(travel.get("mode"), data.get("profile")),
    )


def _travel_mode(mode: Any, profile: Any) -> str | None:
    """walk / drive from the zone's travel-time sizing, else from its circle's profile."""
    if mode in ("walk", "drive"):
        return str(mode)
    if profile == "walk":
        return "walk"
    return "drive" if isinstance(profile, str) and profile.startswith("drive") else None


def load_zone(session: Session, zone_id: str) -> ZoneInfo | None:
    zones = ZONES.c
    row = session.execute(
        select(zones.id, zones.name, zones.data, zones.deleted_at).where(zones.id == zone_id)
    ).first()
    if row is None or row.deleted_at is not None:
        return None
    return zone_info_from_row(row)  # type: ignore[arg-type]  # a Row has the record's attributes
