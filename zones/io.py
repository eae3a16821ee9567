"""Import zones from CSV and GeoJSON, export GeoJSON. Bad rows are reported, good rows kept; a file that
cannot be read as a whole (not JSON, not a FeatureCollection, a CSV without its header) raises
:class:`UnreadableFile`, the same for both formats.

CSV columns (header row required, order free; only ``name, lat, lng`` and one of ``profile``/``radius_m``
are needed): ``id, name, lat, lng, profile, minutes, radius_m, tags, tz, country, subdivision,
store_id, dwell_after_s, accuracy_tolerance_m, exit_margin_m, enter_confirm_fixes, spike_hold_m``;
``tags`` are separated by ``;`` or ``|``; any other column goes to ``metadata``. Without an ``id`` the
zone id is the ``store_id``, else a stable UUID5 of name and position. Without a ``subdivision`` it is
derived from the position where ``zones.subdivisions`` lists one (Alsace-Moselle).

Travel-time zones: a ``method`` (``isochrone`` or ``circle``) and/or ``mode`` (``walk``, ``drive``, ``auto``)
column sizes the zone by ``minutes`` (default 5) of travel from the street extract passed as ``extract``
(``zones.osm.StreetExtract``); without one, or off its streets, the circle is drawn and the zone's
``travel.fallback`` says so.

GeoJSON: a FeatureCollection whose features are ``Point`` (with ``radius_m``, ``profile``/``minutes`` or
``mode``/``method``/``minutes`` properties) or ``Polygon``/``MultiPolygon``; other properties as in CSV
(``tags`` may be a list, ``metadata`` and ``fence`` objects). For GeoJSON, :class:`RowError.line` is
the 1-based feature number.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from zones.errors import UnreadableFile, ZoneError
from zones.geometry import validate_zone
from zones.model import Area, Circle, FenceSettings, Zone
from zones.sizing import size_zone
from zones.travel import size_by_travel
from zones.travel_record import Travel

_FENCE = ("dwell_after_s", "accuracy_tolerance_m", "exit_margin_m", "enter_confirm_fixes", "spike_hold_m")
_KNOWN = {"id", "name", "lat", "lng", "profile", "minutes", "radius_m", "tags", "tz", "country", "store_id"}
_KNOWN |= set(_FENCE) | {"mode", "method", "travel", "subdivision"}
_NS = uuid.UUID("6f1d6c43-2b1e-4d7e-9d6c-0a7c1f1e5a10")


@dataclass(frozen=True)
class RowError:
    """A rejected row: ``line`` (CSV line number, header = 1; GeoJSON feature number) and the reason."""

    line: int
    reason: str


def read_zones_csv(text: str, extract: Any = None) -> tuple[list[Zone], list[RowError]]:
    """Parse CSV text into validated zones; every bad row becomes a RowError, the good rows are kept.

    ``extract`` (a ``zones.osm.StreetExtract``) draws the isochrones of rows with ``method``/``mode``.
    Raises ``UnreadableFile`` without a header row or without the required columns.
    """
    zones: list[Zone] = []
    errors: list[RowError] = []
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise UnreadableFile(f"unreadable CSV header: {exc}") from None
    if not fieldnames:
        raise UnreadableFile("empty file: a header row is required")
    header = [(h or "").strip().lower() for h in fieldnames]
    missing = {"name", "lat", "lng"} - set(header)
    if missing:
        raise UnreadableFile(f"missing column(s) in the header: {', '.join(sorted(missing))}")
    reader.fieldnames = header
    seen: dict[str, int] = {}
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(reader.line_num, f"unreadable CSV: {exc}"))
            break
        line = reader.line_num
        if None in raw:
            errors.append(RowError(line, "more fields than columns in the header"))
            continue
        row = {k: (v or "").strip() for k, v in raw.items()}
        if not any(row.values()):
            continue
        try:
            zone = _zone_from_props(row, None, extract)
            if zone.id in seen:
                raise ZoneError(f"duplicate id {zone.id!r} (first on line {seen[zone.id]})")
            seen[zone.id] = line
            zones.append(zone)
        except ZoneError as exc:
            errors.append(RowError(line, str(exc)))
    return zones, errors


def read_zones_geojson(obj_or_text: Any, extract: Any = None) -> tuple[list[Zone], list[RowError]]:
    """Parse a GeoJSON FeatureCollection (dict or JSON text); bad features become RowError(n, why).

    A feature exported with its ``travel`` record keeps its geometry and record as they are (round trip);
    a ``Point`` with ``method``/``mode`` is sized from ``extract`` as in CSV. Raises ``UnreadableFile``
    when the text is not JSON or not a FeatureCollection with a features list.
    """
    obj = obj_or_text
    if isinstance(obj, str | bytes):
        try:
            obj = json.loads(obj)
        except RecursionError:
            raise UnreadableFile("not JSON: nested too deeply") from None
        except ValueError as exc:
            raise UnreadableFile(f"not JSON: {exc}") from None
    if not isinstance(obj, Mapping) or obj.get("type") != "FeatureCollection":
        raise UnreadableFile("expected a GeoJSON FeatureCollection")
    features = obj.get("features")
    if not isinstance(features, list):
        raise UnreadableFile("FeatureCollection needs a 'features' list")
    zones: list[Zone] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    for n, feat in enumerate(features, start=1):
        try:
            if not isinstance(feat, Mapping) or feat.get("type") != "Feature":
                raise ZoneError("not a GeoJSON Feature")
            props = feat.get("properties") or {}
            if not isinstance(props, Mapping):
                raise ZoneError("properties must be an object")
            props = dict(props)
            if feat.get("id") is not None and props.get("id") is None:
                props["id"] = str(feat["id"])
            geom = feat.get("geometry")
            if not isinstance(geom, Mapping):
                raise ZoneError("feature has no geometry")
            zone = _zone_from_props(props, geom, extract)
            if zone.id in seen:
                raise ZoneError(f"duplicate id {zone.id!r}")
            seen.add(zone.id)
            zones.append(zone)
        except ZoneError as exc:
            errors.append(RowError(n, str(exc)))
    return zones, errors


def write_zones_geojson(zones: Iterable[Zone]) -> dict[str, Any]:
    """FeatureCollection: circles as a Point with a ``radius_m`` property, areas as their polygon."""
    features = []
    for z in zones:
        d = z.to_dict()
        g = z.geometry
        props = {k: v for k, v in d.items() if k != "geometry"}
        if isinstance(g, Circle):
            geometry: Any = {"type": "Point", "coordinates": [g.lng, g.lat]}
            props["radius_m"] = g.radius_m
        else:
            geometry = d["geometry"]["geojson"]
        features.append({"type": "Feature", "id": z.id, "geometry": geometry, "properties": props})
    return {"type": "FeatureCollection", "features": features}


# ---------------------------------------------------------------------------------------------- helpers
def _zone_from_props(props: Mapping[str, Any], geom: Mapping[str, Any] | None, extract: Any) -> Zone:
    name = _s(props.get("name"))
    if not name:
        raise ZoneError("name is required")
    profile = _s(props.get("profile")) or None
    minutes = _num(props.get("minutes"), "minutes")
    radius = _num(props.get("radius_m"), "radius_m")
    geometry: Circle | Area
    travel = _travel(props)
    mode, method = _s(props.get("mode")).lower(), _s(props.get("method")).lower()
    if travel is None and (mode or method) and (geom is None or geom.get("type") == "Point"):
        lat, lng = _position(props, geom)
        if radius is not None or profile is not None:
            raise ZoneError("give either mode/method (travel time) or profile/radius_m (circle), not both")
        geometry, travel = size_by_travel(
            lat, lng, mode or "auto", 5 if minutes is None else minutes, method or "isochrone", extract
        )
        minutes = travel.minutes
    elif geom is None or geom.get("type") == "Point":
        lat, lng = _position(props, geom)
        if radius is None and profile is None:
            raise ZoneError("give a profile (walk, bike, transit, drive_urban, drive_rural) or radius_m")
        geometry = size_zone(lat, lng, profile or "walk", 5 if minutes is None else minutes, radius)
    elif geom.get("type") in ("Polygon", "MultiPolygon"):
        geometry = Area(geojson=dict(geom))
    else:
        raise ZoneError(f"unsupported geometry type {geom.get('type')!r}")
    tags_v = props.get("tags")
    if isinstance(tags_v, list):
        tags = frozenset(str(t).strip() for t in tags_v if str(t).strip())
    else:
        tags = frozenset(t.strip() for t in _s(tags_v).replace("|", ";").split(";") if t.strip())
    fence_v: dict[str, Any] = {}
    fence_props = props.get("fence")
    src = fence_props if isinstance(fence_props, Mapping) else props
    for f in _FENCE:
        v = _num(src.get(f), f)
        if v is not None:
            fence_v[f] = int(v) if f in ("dwell_after_s", "enter_confirm_fixes") else v
    metadata: dict[str, Any] = {}
    if isinstance(props.get("metadata"), Mapping):
        metadata.update(props["metadata"])
    skip = _KNOWN | {"metadata", "fence"}
    metadata.update({k: v for k, v in props.items() if k not in skip and v not in ("", None)})
    store_id = _s(props.get("store_id")) or None
    lat0, lng0 = (geometry.lat, geometry.lng) if isinstance(geometry, Circle) else (0.0, 0.0)
    zid = _s(props.get("id")) or store_id
    if not zid:
        zid = str(uuid.uuid5(_NS, json.dumps([name, lat0, lng0, geometry.__class__.__name__])))
    zone = Zone(
        id=zid,
        name=name,
        geometry=geometry,
        store_id=store_id,
        tags=tags,
        tz=_s(props.get("tz")) or "Europe/Paris",
        country=(_s(props.get("country")) or "FR").upper(),
        metadata=metadata,
        fence=FenceSettings(**fence_v) if fence_v else None,
        profile=profile,
        minutes=minutes if minutes is not None or profile is None else 5.0,
        subdivision=_s(props.get("subdivision")) or None,
        travel=travel,
    )
    return with_subdivision(validate_zone(zone))


def with_subdivision(zone: Zone) -> Zone:
    """The zone with its subdivision derived from its position when none was given."""
    if zone.subdivision is not None:
        return zone
    from zones.subdivisions import derived_subdivision

    derived = derived_subdivision(zone)
    return zone if derived is None else dataclasses.replace(zone, subdivision=derived)


def _position(props: Mapping[str, Any], geom: Mapping[str, Any] | None) -> tuple[float, float]:
    if geom is None:
        lat, lng = _num(props.get("lat"), "lat"), _num(props.get("lng"), "lng")
    else:
        c = geom.get("coordinates")
        if not isinstance(c, list | tuple) or len(c) < 2:
            raise ZoneError("Point needs [lng, lat] coordinates")
        lng, lat = _num(c[0], "lng"), _num(c[1], "lat")
    if lat is None or lng is None:
        raise ZoneError("lat and lng are required")
    return lat, lng


def _travel(props: Mapping[str, Any]) -> Travel | None:
    """The ``travel`` record of an exported zone (GeoJSON round trip), if any."""
    value = props.get("travel")
    return Travel.from_dict(value) if isinstance(value, Mapping) else None


def _s(v: Any) -> str:
    return "" if v is None else str(v).strip()


def _num(v: Any, what: str) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ZoneError(f"{what} must be a number")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ZoneError(f"{what} must be a number, got {v!r}") from None
    if not math.isfinite(x):
        raise ZoneError(f"{what} must be finite, got {v!r}")
    return x
