"""The subdivision a zone lies in, where it changes the rules: a small bundled table (pure, shapely).

Only subdivisions whose public holidays differ from their country's are listed: in France, Moselle
(57), Bas-Rhin (67) and Haut-Rhin (68) add Good Friday and St Stephen's Day. The outlines are
**simplified by hand** (20 or so vertices each, traced from the départements' limits through towns
known to lie on either side: Sarralbe/Sarre-Union, Phalsbourg/Saverne, Sélestat/Ribeauvillé…): good to a
few kilometres, so a store within ~5 km of a border should carry its subdivision explicitly (the zone
API's ``subdivision`` field, which always wins). Overseas départements need no outline: their country
code in ``phonenumbers`` and ``holidays`` (GP, MQ, RE…) already tells them apart.

Positions are ``(lng, lat)`` (GeoJSON order), as shapely takes them.
"""

from __future__ import annotations

from functools import lru_cache

from shapely.geometry import Point, Polygon
from shapely.prepared import PreparedGeometry, prep

from zones.model import Circle, Zone

# Shared borders are written once and reused, so neighbours neither overlap nor leave a gap.
_MOSELLE_ALSACE = [  # north (German border) to south (Donon)
    (7.64, 49.06), (7.45, 48.99), (7.30, 48.97), (7.10, 48.97), (7.05, 48.90), (7.15, 48.84),
    (7.31, 48.76), (7.28, 48.66), (7.17, 48.51),
]  # fmt: skip
_BAS_HAUT_RHIN = [  # east (Rhine) to west (Vosges)
    (7.59, 48.12), (7.45, 48.22), (7.30, 48.24), (7.18, 48.30), (7.10, 48.33),
]  # fmt: skip

OUTLINES: dict[tuple[str, str], list[tuple[float, float]]] = {
    ("FR", "57"): [
        *_MOSELLE_ALSACE,
        (6.98, 48.58), (6.80, 48.64), (6.55, 48.74), (6.45, 48.82), (6.30, 48.87), (6.05, 48.96),
        (5.98, 49.07), (6.03, 49.20), (6.00, 49.30), (5.95, 49.45), (5.96, 49.50), (6.23, 49.51),
        (6.38, 49.47), (6.55, 49.42), (6.60, 49.33), (6.72, 49.25), (6.85, 49.22), (7.03, 49.15),
        (7.20, 49.12), (7.35, 49.17), (7.50, 49.10),
    ],
    ("FR", "67"): [
        (7.95, 49.05), (8.23, 48.97), (8.05, 48.78), (7.80, 48.57), (7.70, 48.35),
        *_BAS_HAUT_RHIN,
        (7.08, 48.42),
        *reversed(_MOSELLE_ALSACE),
    ],
    ("FR", "68"): [
        *_BAS_HAUT_RHIN,
        (7.10, 48.20), (7.02, 48.06), (6.95, 47.95), (6.85, 47.82), (7.03, 47.62), (7.05, 47.50),
        (7.20, 47.43), (7.50, 47.45), (7.59, 47.58), (7.54, 47.80), (7.58, 48.00),
    ],
}  # fmt: skip


@lru_cache(maxsize=1)
def _prepared() -> tuple[tuple[str, str, PreparedGeometry], ...]:
    return tuple((country, code, prep(Polygon(ring))) for (country, code), ring in OUTLINES.items())


def subdivision_at(lat: float, lng: float, country: str) -> str | None:
    """The listed subdivision of ``country`` containing ``lat, lng``, or None.

    Example
    -------
    >>> subdivision_at(49.1193, 6.1757, "FR")  # Metz
    '57'
    >>> subdivision_at(48.8566, 2.3522, "FR") is None  # Paris: national holidays only
    True
    """
    point = Point(lng, lat)
    for outline_country, code, shape in _prepared():
        if outline_country == country.upper() and shape.contains(point):
            return code
    return None


def derived_subdivision(zone: Zone) -> str | None:
    """The subdivision of a zone's centre (a circle's centre, an area's representative point)."""
    if isinstance(zone.geometry, Circle):
        lat, lng = zone.geometry.lat, zone.geometry.lng
    else:
        from zones.geometry import zone_shape

        point = zone_shape(zone).representative_point()
        lng, lat = point.x, point.y
    return subdivision_at(lat, lng, zone.country)
