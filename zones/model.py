"""The zone model: frozen dataclasses, JSON round-trip (``to_dict`` / ``from_dict``).

Coordinates: a :class:`Circle` takes ``lat, lng`` (degrees, WGS 84); an :class:`Area` holds RFC 7946 GeoJSON,
whose positions are ``[lng, lat]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from zones.errors import ZoneError
from zones.travel_record import Travel


@dataclass(frozen=True)
class Circle:
    """A circle of ``radius_m`` metres (geodesic) around ``lat, lng``."""

    lat: float
    lng: float
    radius_m: float


@dataclass(frozen=True)
class Area:
    """An RFC 7946 ``Polygon`` or ``MultiPolygon`` geometry (positions ``[lng, lat]``; holes allowed)."""

    geojson: Mapping[str, Any]


@dataclass(frozen=True)
class FenceSettings:
    """Per-zone overrides of the global presence policy (``None`` = use the global value)."""

    dwell_after_s: int | None = None
    accuracy_tolerance_m: float | None = None  # worst accuracy accepted for a transition in this zone
    exit_margin_m: float | None = None
    enter_confirm_fixes: int | None = None
    spike_hold_m: float | None = None  # hold an enter this far from the previous fix for one fix (0: off)


@dataclass(frozen=True)
class Zone:
    """A zone: where a store's customers are (geometry) plus the facts campaigns need (tz, tags, ...)."""

    id: str
    name: str
    geometry: Circle | Area
    store_id: str | None = None
    tags: frozenset[str] = frozenset()
    tz: str = "Europe/Paris"
    country: str = "FR"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    fence: FenceSettings | None = None
    profile: str | None = None
    minutes: float | None = None
    travel: Travel | None = None  # sized by travel time (zones.travel): mode, minutes, extract, fallback

    def __hash__(self) -> int:  # metadata/geojson are dicts: hash by id (equal zones have equal ids)
        return hash(self.id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict; ``Zone.from_dict(z.to_dict()) == z``."""
        g = self.geometry
        geometry: dict[str, Any]
        if isinstance(g, Circle):
            geometry = {"type": "circle", "lat": g.lat, "lng": g.lng, "radius_m": g.radius_m}
        else:
            geometry = {"type": "area", "geojson": _plain(g.geojson)}
        return {
            "id": self.id,
            "name": self.name,
            "geometry": geometry,
            "store_id": self.store_id,
            "tags": sorted(self.tags),
            "tz": self.tz,
            "country": self.country,
            "metadata": _plain(self.metadata),
            "fence": None
            if self.fence is None
            else {f.name: getattr(self.fence, f.name) for f in fields(self.fence)},
            "profile": self.profile,
            "minutes": self.minutes,
            "travel": None if self.travel is None else self.travel.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Zone:
        """Inverse of :meth:`to_dict`; raises :class:`ZoneError` (never KeyError/TypeError) if malformed."""
        if not isinstance(d, Mapping):
            raise ZoneError("zone must be an object")
        try:
            zid = _text(d, "id")
            name = _text(d, "name")
            geometry = geometry_from_dict(d.get("geometry"))
            tags = d.get("tags") or []
            if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
                raise ZoneError("tags must be a list of strings")
            metadata = d.get("metadata") or {}
            if not isinstance(metadata, Mapping):
                raise ZoneError("metadata must be an object")
            fence_d = d.get("fence")
            fence = None
            if fence_d is not None:
                if not isinstance(fence_d, Mapping):
                    raise ZoneError("fence must be an object")
                known = {f.name for f in fields(FenceSettings)}
                unknown = set(fence_d) - known
                if unknown:
                    raise ZoneError(f"unknown fence setting(s): {', '.join(sorted(map(str, unknown)))}")
                fence = FenceSettings(
                    **{k: _opt_number(fence_d, k) for k in known if fence_d.get(k) is not None}
                )
            minutes = _opt_number(d, "minutes")
            profile = d.get("profile")
            if profile is not None and not isinstance(profile, str):
                raise ZoneError("profile must be a string")
            store_id = d.get("store_id")
            if store_id is not None and not isinstance(store_id, str):
                store_id = str(store_id)
            return cls(
                id=zid,
                name=name,
                geometry=geometry,
                store_id=store_id,
                tags=frozenset(tags),
                tz=_text(d, "tz", "Europe/Paris"),
                country=_text(d, "country", "FR"),
                metadata=dict(metadata),
                fence=fence,
                profile=profile,
                minutes=minutes,
                travel=None if d.get("travel") is None else Travel.from_dict(d["travel"]),
            )
        except ZoneError:
            raise
        except (
            TypeError,
            ValueError,
            AttributeError,
        ) as exc:  # defensive: any malformed shape is a ZoneError
            raise ZoneError(f"malformed zone: {exc}") from None


def geometry_from_dict(g: Any) -> Circle | Area:
    """Parse the ``geometry`` member of :meth:`Zone.to_dict` (values are not range-checked here)."""
    if not isinstance(g, Mapping):
        raise ZoneError("geometry must be an object")
    kind = g.get("type")
    if kind == "circle":
        return Circle(lat=_number(g, "lat"), lng=_number(g, "lng"), radius_m=_number(g, "radius_m"))
    if kind == "area":
        gj = g.get("geojson")
        if not isinstance(gj, Mapping):
            raise ZoneError("area geometry needs a GeoJSON object in 'geojson'")
        return Area(geojson=gj)
    if kind in ("Polygon", "MultiPolygon"):  # a bare GeoJSON geometry is accepted too
        return Area(geojson=g)
    raise ZoneError("geometry type must be 'circle' or 'area' (or a GeoJSON Polygon/MultiPolygon)")


def _text(d: Mapping[str, Any], key: str, default: str | None = None) -> str:
    v = d.get(key, default)
    if not isinstance(v, str) or not v.strip():
        raise ZoneError(f"{key} must be a non-empty string")
    return v


def _number(d: Mapping[str, Any], key: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ZoneError(f"{key} must be a number")
    return float(v)


def _opt_number(d: Mapping[str, Any], key: str) -> Any:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ZoneError(f"{key} must be a finite number")
    return v


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
