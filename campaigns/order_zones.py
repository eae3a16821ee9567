"""Click-and-collect: what an order needs of its store's zone — the store's position, "within N minutes
of the store" (``campaigns.pickup.Approach``), and which zones are another store's of the retailer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from campaigns.pickup import Approach
from campaigns.storage.geofence_views import ZONES
from zones.model import Zone


def load_zone(session: Session, zone_id: str) -> Zone | None:
    row = session.execute(select(ZONES.c.data, ZONES.c.deleted_at).where(ZONES.c.id == zone_id)).first()
    if row is None or row.deleted_at is not None or not row.data:
        return None
    return Zone.from_dict(row.data)


def store_point(zone: Zone) -> tuple[float, float]:
    """(lat, lng) of the store: where a travel-time zone was drawn from, a circle's centre, else the
    area's representative point."""
    if zone.travel is not None:
        return zone.travel.lat, zone.travel.lng
    geometry = zone.geometry
    if hasattr(geometry, "radius_m"):
        return float(geometry.lat), float(geometry.lng)  # type: ignore[union-attr]
    from zones.geometry import zone_shape

    point = zone_shape(zone).representative_point()
    return float(point.y), float(point.x)


def approach_for(
    zone: Zone, minutes: float, *, default_profile: str, extract: Callable[[], Any] | None
) -> Approach:
    """ "Within ``minutes`` of the store" for ``zone``: the isochrone when the zone was drawn on the
    streets (and an extract is configured), else the circle of the zone's travel profile."""
    lat, lng = store_point(zone)
    travel = zone.travel
    if travel is not None and travel.method == "isochrone" and extract is not None:
        from zones.travel import size_by_travel

        geometry, drawn = size_by_travel(lat, lng, travel.mode, minutes, "isochrone", extract())
        if drawn.method == "isochrone":
            return Approach(minutes=minutes, lat=lat, lng=lng, geojson=dict(geometry.geojson))  # type: ignore[union-attr]
    from zones.travel import CIRCLE_PROFILE

    if travel is not None:
        profile = CIRCLE_PROFILE.get(travel.mode, default_profile)
    elif zone.profile in ("walk", "bike", "transit", "drive_urban", "drive_rural"):
        profile = zone.profile
    else:
        profile = default_profile
    return Approach(minutes=minutes, lat=lat, lng=lng, profile=profile)


def is_other_store(zone: Zone, order_zone: Zone | None) -> bool:
    """Another store's zone of the same retailer: a zone with a ``store_id`` (not the order's store),
    not sized by travel time (those are catchments, not a store's premises), and the same
    ``metadata["retailer"]`` (absent on both: the deployment's one retailer)."""
    if order_zone is None or zone.id == order_zone.id or zone.store_id is None:
        return False
    if zone.travel is not None or zone.minutes is not None:
        return False
    if order_zone.store_id is not None and zone.store_id == order_zone.store_id:
        return False
    return zone.metadata.get("retailer") == order_zone.metadata.get("retailer")
