"""Zone index for tests: the real ``zones.ZoneIndex`` over circle zones.

Until the zones package lands, a small stand-in with the same contract (circles only) is used.
"""

from __future__ import annotations

import numpy as np

from geofence.fixes import distance_m

try:
    from zones.index import ZoneIndex
    from zones.model import Circle, FenceSettings, Zone

    ZONES_READY = True
except ImportError:  # pragma: no cover - removed once zones/ is in the tree
    from dataclasses import dataclass, field

    ZONES_READY = False

    @dataclass(frozen=True)
    class FenceSettings:  # type: ignore[no-redef]
        dwell_after_s: int | None = None
        accuracy_tolerance_m: float | None = None
        exit_margin_m: float | None = None
        enter_confirm_fixes: int | None = None

    @dataclass(frozen=True)
    class Circle:  # type: ignore[no-redef]
        lat: float
        lng: float
        radius_m: float

    @dataclass(frozen=True)
    class Zone:  # type: ignore[no-redef]
        id: str
        name: str
        geometry: Circle
        fence: object = None
        profile: str | None = None
        tags: frozenset = field(default_factory=frozenset)

    class ZoneIndex:  # type: ignore[no-redef]
        def __init__(self, zones=()):
            self._zones = {z.id: z for z in zones}

        def add(self, zone):
            self._zones[zone.id] = zone

        def remove(self, zone_id):
            del self._zones[zone_id]

        def get(self, zone_id):
            return self._zones[zone_id]

        def __contains__(self, zone_id):
            return zone_id in self._zones

        def __len__(self):
            return len(self._zones)

        def signed_distance_m(self, zone_id, lat, lng):
            g = self._zones[zone_id].geometry
            return distance_m(g.lat, g.lng, lat, lng) - g.radius_m

        def match_many(self, lats, lngs):
            pos, ids = [], []
            for i, (lat, lng) in enumerate(zip(lats, lngs, strict=True)):
                for zid in self._zones:
                    if self.signed_distance_m(zid, lat, lng) <= 0:
                        pos.append(i)
                        ids.append(zid)
            return np.asarray(pos, dtype=np.int64), np.asarray(ids, dtype=object)


def circle_zone(zone_id: str, center: tuple[float, float], radius_m: float, **kw) -> Zone:
    return Zone(id=zone_id, name=zone_id, geometry=Circle(center[0], center[1], radius_m), **kw)


def circle_index(zones: dict[str, tuple[tuple[float, float], float]]) -> ZoneIndex:
    return ZoneIndex([circle_zone(zid, c, r) for zid, (c, r) in zones.items()])
