"""Zone index for tests: the real ``zones.ZoneIndex`` over circle zones."""

from __future__ import annotations

from zones.index import ZoneIndex
from zones.model import Circle, FenceSettings, Zone

__all__ = ["Circle", "FenceSettings", "Zone", "ZoneIndex", "circle_index", "circle_zone"]


def circle_zone(zone_id: str, center: tuple[float, float], radius_m: float, **kw) -> Zone:
    return Zone(id=zone_id, name=zone_id, geometry=Circle(center[0], center[1], radius_m), **kw)


def circle_index(zones: dict[str, tuple[tuple[float, float], float]]) -> ZoneIndex:
    return ZoneIndex([circle_zone(zid, c, r) for zid, (c, r) in zones.items()])
