"""Routes: zones (admin). CRUD, sizing by store position + travel profile + minutes (a circle) or by
travel time on the street extract (an isochrone), CSV / GeoJSON import with per-line errors, GeoJSON
export. Every change goes through the presence service so this process's index is current at once (other
processes pick it up with their zone sync job) and a deleted zone closes its open visits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field, model_validator
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from geofence.service import clock
from geofence.service.deps import RuntimeDep, SessionDep, SettingsDep
from geofence.service.pagination import PageDep, Paginated
from geofence.service.security import Principal, require_scope
from geofence.service.settings import Settings
from geofence.service.streets import configured_extract
from geofence.service.tables._types import as_utc, new_id
from geofence.service.tables.zones import ZoneRow
from geofence.service.wiring.geofence import GeofenceService
from geofence.service.wiring.zone_catalogue import zone_from_row
from zones.errors import ZoneError
from zones.geometry import validate_zone
from zones.io import read_zones_csv, read_zones_geojson, with_subdivision, write_zones_geojson
from zones.model import Area, Circle, FenceSettings, Zone
from zones.osm import StreetExtract
from zones.sizing import PROFILES, size_zone
from zones.travel import size_by_travel

AdminDep = Annotated[Principal, Depends(require_scope("admin"))]
router = APIRouter(prefix="/v1/zones", tags=["zones"])
MAX_IMPORT_BYTES = 5_000_000


class CircleIn(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=50_000)


class SizingIn(BaseModel):
    """Size a zone around a store by how far people travel in ``minutes``: either a circle for a travel
    ``profile``, or (``mode`` and/or ``method``) the area reached on the street extract (isochrone)."""

    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    profile: str | None = Field(
        None, description="circle for a travel profile: " + ", ".join(sorted(PROFILES))
    )
    minutes: float = Field(5, gt=0, le=120)
    radius_m: float | None = Field(None, gt=0, le=50_000, description="explicit radius (overrides sizing)")
    mode: Literal["walk", "drive", "auto"] | None = Field(
        None, description="travel-time zone: walk, drive, or auto (decided from the streets around the store)"
    )
    method: Literal["isochrone", "circle"] | None = Field(
        None, description="travel-time zone drawn as an isochrone (default) or the mode's circle"
    )

    @model_validator(mode="after")
    def one_sizing(self) -> SizingIn:
        travel = self.mode is not None or self.method is not None
        if travel and (self.profile is not None or self.radius_m is not None):
            raise ValueError("give either mode/method (travel time) or profile/radius_m (circle), not both")
        if not travel and self.profile is None:
            raise ValueError("give a profile (circle), or a mode/method (travel time)")
        return self

    @property
    def by_travel_time(self) -> bool:
        return self.mode is not None or self.method is not None


class FenceIn(BaseModel):
    dwell_after_s: int | None = Field(None, ge=0, le=7 * 86400)
    accuracy_tolerance_m: float | None = Field(None, gt=0, le=5000)
    exit_margin_m: float | None = Field(None, ge=0, le=5000)
    enter_confirm_fixes: int | None = Field(None, ge=1, le=20)
    spike_hold_m: float | None = Field(
        None, ge=0, le=50_000,
        description="0 = off; else an enter this many metres or more from the device's previous fix waits "
                    "for the next fix, and a lone out-and-back spike enters nothing",
    )


class ZoneIn(BaseModel):
    """A zone: exactly one of ``circle``, ``area`` (GeoJSON Polygon/MultiPolygon) or ``sizing``."""

    id: str | None = Field(None, min_length=1, max_length=128, description="defaults to a new id")
    name: str = Field(min_length=1, max_length=200)
    store_id: str | None = Field(None, max_length=128)
    circle: CircleIn | None = None
    area: dict[str, Any] | None = None
    sizing: SizingIn | None = None
    tags: list[str] = Field(default_factory=list, max_length=50)
    tz: str = "Europe/Paris"
    country: str = Field("FR", min_length=2, max_length=2)
    subdivision: str | None = Field(
        None, min_length=1, max_length=8, pattern=r"^[A-Za-z0-9]+$",
        description="e.g. 57, 67, 68 (Alsace-Moselle: more public holidays); derived from the position"
        " when not given (zones/subdivisions.py)",
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    fence: FenceIn | None = None

    @model_validator(mode="after")
    def one_geometry(self) -> ZoneIn:
        given = [g for g in (self.circle, self.area, self.sizing) if g is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of circle, area or sizing")
        return self


class TravelOut(BaseModel):
    """How a travel-time zone was drawn (also in ``zone.travel``)."""

    label: str = Field(description='"5 min on foot" or "5 min by car"')
    mode: Literal["walk", "drive"] = Field(description="the mode drawn (auto resolved)")
    minutes: float
    method: Literal["isochrone", "circle"] = Field(description="what was drawn")
    requested_mode: Literal["walk", "drive", "auto"]
    requested_method: Literal["isochrone", "circle"]
    fallback: str | None = Field(description="why a circle was drawn instead of the isochrone asked for")
    auto_rule: str | None = Field(description="how mode auto decided, with this store's figures")
    extract: str | None = Field(description="street extract file name")
    extract_date: str | None = Field(description="date of the extract's data (ISO 8601)")
    speeds_kmh: dict[str, float] = Field(
        description="speed per road class (isochrone) or of the circle's profile"
    )
    buffer_m: float | None = Field(description="half-width drawn around reached streets")
    lat: float
    lng: float


class ZonePublic(BaseModel):
    id: str
    name: str
    store_id: str | None
    zone: dict[str, Any] = Field(description="the zone as stored (Zone.to_dict())")
    travel: TravelOut | None = Field(None, description="set for zones sized by travel time")
    created_at: datetime
    updated_at: datetime


class ImportError_(BaseModel):
    line: int
    reason: str


class ImportOut(BaseModel):
    imported: int
    errors: list[ImportError_]


def to_zone(body: ZoneIn, zone_id: str, extract: StreetExtract | None = None) -> Zone:
    """Request -> domain zone. Raises ``ZoneError`` with a clear reason."""
    geometry: Circle | Area
    profile = minutes = None
    travel = None
    if body.sizing is not None and body.sizing.by_travel_time:
        s = body.sizing
        geometry, travel = size_by_travel(s.lat, s.lng, s.mode or "auto", s.minutes, s.method or "isochrone",
                                          extract)
        minutes = s.minutes
    elif body.circle is not None:
        geometry = Circle(body.circle.lat, body.circle.lng, body.circle.radius_m)
    elif body.area is not None:
        geometry = Area(body.area)
    else:
        assert body.sizing is not None
        s = body.sizing
        assert s.profile is not None  # SizingIn.one_sizing
        if s.profile not in PROFILES:
            raise ZoneError(f"unknown travel profile {s.profile!r}; use one of {', '.join(sorted(PROFILES))}")
        geometry = size_zone(s.lat, s.lng, s.profile, s.minutes, s.radius_m)
        profile, minutes = s.profile, s.minutes
    fence = FenceSettings(**body.fence.model_dump()) if body.fence is not None else None
    zone = Zone(
        id=zone_id, name=body.name, geometry=geometry, store_id=body.store_id, tags=frozenset(body.tags),
        tz=body.tz, country=body.country.upper(), metadata=body.metadata, fence=fence, profile=profile,
        minutes=minutes, travel=travel, subdivision=body.subdivision,
    )
    return with_subdivision(validate_zone(zone))


def extract_for(body: ZoneIn, settings: Settings) -> StreetExtract | None:
    """The street extract, read only for travel-time sizing; 503 when configured but unreadable."""
    if body.sizing is None or not body.sizing.by_travel_time:
        return None
    return _configured(settings)


def _configured(settings: Settings) -> StreetExtract | None:
    try:
        return configured_extract(settings)
    except ZoneError as exc:
        raise HTTPException(503, detail=f"street extract unavailable: {exc}") from None


def to_public(row: ZoneRow) -> ZonePublic:
    travel = row.data.get("travel") if isinstance(row.data, dict) else None
    return ZonePublic(
        id=row.id, name=row.name, store_id=row.store_id, zone=row.data,
        travel=None if not travel else _travel_out(travel),
        created_at=as_utc(row.created_at) or row.created_at,
        updated_at=as_utc(row.updated_at) or row.updated_at,
    )


def _travel_out(travel: dict[str, Any]) -> TravelOut:
    from zones.model import Travel

    record = Travel.from_dict(travel)
    return TravelOut(label=record.label, **{**record.to_dict(), "speeds_kmh": dict(record.speeds_kmh)})


def _service(runtime: RuntimeDep) -> GeofenceService:
    return runtime.geofence


ServiceDep = Annotated[GeofenceService, Depends(_service)]


def _save(service: GeofenceService, zones: list[Zone], session: SessionDep) -> list[ZonePublic]:
    try:
        saved = service.save_zones(zones, at=clock.now())
    except ZoneError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    rows = [session.get(ZoneRow, z.id) for z in saved]
    return [to_public(r) for r in rows if r is not None]


@router.get("", response_model=Paginated[ZonePublic])
def list_zones(
    session: SessionDep, page: PageDep, _p: AdminDep,
    store_id: Annotated[str | None, Query(max_length=128)] = None,
) -> Paginated[ZonePublic]:
    stmt = select(ZoneRow).where(ZoneRow.deleted_at.is_(None))  # type: ignore[union-attr]
    if store_id is not None:
        stmt = stmt.where(ZoneRow.store_id == store_id)
    rows = session.exec(stmt.order_by(ZoneRow.id).offset(page.offset).limit(page.limit + 1)).all()
    return page.build(rows, to_public)


_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "the configured street extract cannot be read (travel-time sizing only)"}
}


@router.post("", response_model=ZonePublic, status_code=201, responses=_UNAVAILABLE)
def create_zone(
    body: ZoneIn, service: ServiceDep, session: SessionDep, settings: SettingsDep, _p: AdminDep
) -> ZonePublic:
    zone_id = body.id or new_id()
    existing = session.get(ZoneRow, zone_id)
    if existing is not None and existing.deleted_at is None:
        raise HTTPException(409, detail=f"zone {zone_id!r} exists; PUT /v1/zones/{zone_id} replaces it")
    extract = extract_for(body, settings)
    try:
        zone = to_zone(body, zone_id, extract)
    except (ZoneError, ValueError, TypeError) as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return _save(service, [zone], session)[0]


@router.get("/export", summary="All zones as a GeoJSON FeatureCollection")
def export_zones(session: SessionDep, _p: AdminDep) -> dict[str, Any]:
    live = ZoneRow.deleted_at.is_(None)  # type: ignore[union-attr]
    rows = session.exec(select(ZoneRow).where(live).order_by(ZoneRow.id)).all()
    return write_zones_geojson(zone_from_row(r) for r in rows)


@router.post(
    "/import",
    response_model=ImportOut,
    responses=_UNAVAILABLE,
    summary="Import zones from CSV or GeoJSON (request body: the file's text)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string"}},
        "application/geo+json": {"schema": {"type": "object"}},
    }}},
)
async def import_zones(
    request: Request, service: ServiceDep, settings: SettingsDep, _p: AdminDep,
    format: Annotated[Literal["csv", "geojson"], Query()] = "csv",
) -> ImportOut:
    """Every valid line is imported (created or replaced); each bad line is reported with its number.

    One rule for both formats: a file that cannot be read as a whole (not UTF-8, not JSON, not a
    FeatureCollection, a CSV without its header) is a 422 with the reason and nothing is imported."""
    raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise HTTPException(413, detail=f"import larger than {MAX_IMPORT_BYTES} bytes")
    try:
        body = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, detail=f"body is not UTF-8 (byte {exc.start})") from None
    return await run_in_threadpool(_import, service, body, format, settings)


def _import(service: GeofenceService, body: str, format: str, settings: Settings) -> ImportOut:
    reader = read_zones_csv if format == "csv" else read_zones_geojson
    # the extract is read (once per process) only when the file sizes some zone by travel time
    extract = _configured(settings) if ("mode" in body or "method" in body) else None
    try:
        zones, errors = reader(body, extract)
    except (ZoneError, ValueError) as exc:  # the file as a whole (UnreadableFile): 422, nothing imported
        raise HTTPException(422, detail=str(exc)) from None
    out = [ImportError_(line=e.line, reason=e.reason) for e in errors]
    saved = 0
    for zone in zones:  # one by one so that a zone failing validation does not drop the others
        try:
            service.save_zones([zone], at=clock.now())
            saved += 1
        except ZoneError as exc:
            out.append(ImportError_(line=0, reason=f"zone {zone.id!r}: {exc}"))
    return ImportOut(imported=saved, errors=out)


@router.get("/{zone_id}", response_model=ZonePublic)
def get_zone(zone_id: str, session: SessionDep, _p: AdminDep) -> ZonePublic:
    row = session.get(ZoneRow, zone_id)
    if row is None or row.deleted_at is not None:
        raise HTTPException(404, detail=f"no zone {zone_id!r}")
    return to_public(row)


@router.put("/{zone_id}", response_model=ZonePublic, responses=_UNAVAILABLE)
def replace_zone(
    zone_id: str, body: ZoneIn, service: ServiceDep, session: SessionDep, settings: SettingsDep,
    _p: AdminDep,
) -> ZonePublic:
    if body.id is not None and body.id != zone_id:
        raise HTTPException(422, detail="the body's id differs from the path's")
    extract = extract_for(body, settings)
    try:
        zone = to_zone(body, zone_id, extract)
    except (ZoneError, ValueError, TypeError) as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return _save(service, [zone], session)[0]


@router.delete("/{zone_id}", status_code=204)
def delete_zone(zone_id: str, service: ServiceDep, _p: AdminDep) -> Response:
    """Delete a zone; devices inside get an EXIT with reason ``zone_removed``."""
    if not service.delete_zone(zone_id, at=clock.now()):
        raise HTTPException(404, detail=f"no zone {zone_id!r}")
    return Response(status_code=204)
