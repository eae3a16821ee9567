"""Routes: campaigns (admin). CRUD with every validation problem listed (422), status transitions,
SMS cost of each template on save, and a dry run over recorded zone events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from campaigns.dry_run import campaign_zone_ids, dry_run_in_db, recorded_events
from campaigns.model import (
    STATUS_TRANSITIONS,
    Campaign,
    CampaignInvalid,
    CampaignStatus,
    parse_campaign,
)
from geofence.events import TransitionKind, ZoneEvent
from geofence.service import clock
from geofence.service.deps import RuntimeDep, SessionDep
from geofence.service.pagination import PageDep, Paginated
from geofence.service.security import Principal, require_scope
from geofence.service.tables._types import as_utc, new_id
from geofence.service.tables.campaigns import CampaignRow

AdminDep = Annotated[Principal, Depends(require_scope("admin"))]
router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
MAX_DRY_RUN_EVENTS = 50_000


class SmsCost(BaseModel):
    locale: str
    encoding: str
    segments: int
    characters: int
    warning: str | None = None


class CampaignPublic(BaseModel):
    id: str
    name: str
    status: str
    priority: int
    version: int
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    sms: list[SmsCost] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class StatusIn(BaseModel):
    status: CampaignStatus


class EventIn(BaseModel):
    id: str = Field(min_length=1, max_length=128)
    zone_id: str = Field(min_length=1, max_length=128)
    device_id: str = Field(min_length=1, max_length=128)
    kind: TransitionKind
    at: datetime
    visit_id: str = Field("", max_length=128)
    lat: float | None = Field(None, ge=-90, le=90)
    lng: float | None = Field(None, ge=-180, le=180)


class DryRunIn(BaseModel):
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(10_000, ge=1, le=MAX_DRY_RUN_EVENTS)
    events: list[EventIn] | None = Field(
        None,
        max_length=MAX_DRY_RUN_EVENTS,
        description="replay these events (e.g. from a trace) instead of the recorded ones",
    )
    with_history: bool = True
    rows: int = Field(500, ge=0, le=MAX_DRY_RUN_EVENTS, description="rows to return (counts cover all)")


def _invalid(reasons: list[str]) -> HTTPException:
    return HTTPException(422, detail={"message": "invalid campaign", "reasons": reasons})


def sms_costs(campaign: Campaign, max_segments: int) -> list[SmsCost]:
    """Encoding and segments of each template as sent by SMS (legal mentions included).

    Placeholders are counted as written; a long first name or store name can add characters.
    """
    if "sms" not in campaign.channels():
        return []
    from campaigns.sms_content import analyse, append_legal_mentions  # channels module

    costs = []
    problems = []
    for locale, template in sorted(campaign.templates.items()):
        try:
            body = append_legal_mentions(
                template.body,
                advertiser=campaign.advertiser or campaign.name,
                locale=locale,
                sender=campaign.sender,
            )
        except ValueError as exc:
            problems.append(f"templates.{locale}: {exc}")
            continue
        found = analyse(body)
        costs.append(
            SmsCost(
                locale=locale,
                encoding=found.encoding,
                segments=found.segments,
                characters=found.characters,
                warning=found.warning(max_segments),
            )
        )
    if problems:
        raise _invalid(problems)
    return costs


def _public(row: CampaignRow, costs: list[SmsCost] | None = None) -> CampaignPublic:
    costs = costs or []
    return CampaignPublic(
        id=row.id,
        name=row.name,
        status=row.status,
        priority=row.priority,
        version=row.version,
        definition=row.definition,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
        sms=costs,
        warnings=[c.warning for c in costs if c.warning],
    )


def _parse(data: dict[str, Any]) -> Campaign:
    try:
        return parse_campaign(data)
    except CampaignInvalid as exc:
        raise _invalid(exc.reasons) from None


def _store(row: CampaignRow, campaign: Campaign) -> None:
    row.name = campaign.name
    row.status = campaign.status.value
    row.priority = campaign.priority
    row.definition = campaign.definition()
    row.starts_at = campaign.starts_at
    row.ends_at = campaign.ends_at


def _get(session: SessionDep, campaign_id: str) -> CampaignRow:
    row = session.get(CampaignRow, campaign_id)
    if row is None:
        raise HTTPException(404, detail=f"campaign {campaign_id!r} not found")
    return row


def _max_segments(runtime: RuntimeDep) -> int:
    return int(getattr(runtime.settings.twilio, "warn_above_segments", 2))


@router.post("", status_code=201)
def create_campaign(
    _: AdminDep,
    session: SessionDep,
    runtime: RuntimeDep,
    response: Response,
    body: Annotated[dict[str, Any], Body(description="a campaign definition (see campaigns.model)")],
) -> CampaignPublic:
    data = {**body, "id": body.get("id") or new_id()}
    campaign = _parse(data)
    if campaign.status == CampaignStatus.ENDED:
        raise _invalid(["status: a campaign cannot be created ended"])
    costs = sms_costs(campaign, _max_segments(runtime))
    if session.get(CampaignRow, campaign.id) is not None:
        raise HTTPException(409, detail=f"campaign {campaign.id!r} already exists")
    at = clock.now()
    row = CampaignRow(id=campaign.id, created_at=at, updated_at=at, name=campaign.name)
    _store(row, campaign)
    session.add(row)
    session.commit()
    response.headers["Location"] = f"/v1/campaigns/{row.id}"
    return _public(row, costs)


@router.get("")
def list_campaigns(
    _: AdminDep,
    session: SessionDep,
    page: PageDep,
    status: Annotated[CampaignStatus | None, Query(description="only this status")] = None,
) -> Paginated[CampaignPublic]:
    stmt = select(CampaignRow).order_by(CampaignRow.created_at, CampaignRow.id)  # type: ignore[arg-type]
    if status is not None:
        stmt = stmt.where(CampaignRow.status == status.value)
    rows = list(session.execute(stmt.offset(page.offset).limit(page.limit + 1)).scalars())
    return page.build(rows, _public)


@router.get("/{campaign_id}")
def get_campaign(_: AdminDep, session: SessionDep, runtime: RuntimeDep, campaign_id: str) -> CampaignPublic:
    row = _get(session, campaign_id)
    campaign = parse_campaign({**row.definition, "id": row.id, "status": row.status})
    return _public(row, sms_costs(campaign, _max_segments(runtime)))


@router.put("/{campaign_id}")
def replace_campaign(
    _: AdminDep,
    session: SessionDep,
    runtime: RuntimeDep,
    campaign_id: str,
    body: Annotated[dict[str, Any], Body()],
) -> CampaignPublic:
    """Replace the definition. The status changes only through ``POST .../status``."""
    row = _get(session, campaign_id)
    if row.status == CampaignStatus.ENDED:
        raise HTTPException(409, detail="an ended campaign cannot be edited")
    campaign = _parse({**body, "id": campaign_id, "status": row.status})
    costs = sms_costs(campaign, _max_segments(runtime))
    _store(row, campaign)
    row.version += 1
    row.updated_at = clock.now()
    session.add(row)
    session.commit()
    return _public(row, costs)


@router.post("/{campaign_id}/status")
def change_status(_: AdminDep, session: SessionDep, campaign_id: str, body: StatusIn) -> CampaignPublic:
    row = _get(session, campaign_id)
    current = CampaignStatus(row.status)
    if body.status == current:
        return _public(row)
    if body.status not in STATUS_TRANSITIONS[current]:
        allowed = sorted(s.value for s in STATUS_TRANSITIONS[current]) or ["none: ended is final"]
        raise HTTPException(
            409,
            detail=f"cannot go from {current.value} to {body.status.value}; allowed: {', '.join(allowed)}",
        )
    row.status = body.status.value
    row.definition = {**row.definition, "status": body.status.value}
    row.version += 1
    row.updated_at = clock.now()
    session.add(row)
    session.commit()
    return _public(row)


@router.post("/{campaign_id}/dry-run")
def dry_run_campaign(
    _: AdminDep, session: SessionDep, runtime: RuntimeDep, campaign_id: str, body: DryRunIn | None = None
) -> dict[str, Any]:
    """Who would have received what and when over recorded zone events (or the given ones), and why
    the others would not. Writes nothing."""
    body = body or DryRunIn()
    for name, value in (("since", body.since), ("until", body.until)):
        if value is not None and value.tzinfo is None:
            raise HTTPException(422, detail=f"{name} needs a time zone offset")
    row = _get(session, campaign_id)
    campaign = parse_campaign({**row.definition, "id": row.id, "status": row.status})
    if body.events is not None:
        if any(e.at.tzinfo is None for e in body.events):
            raise HTTPException(422, detail="every event's 'at' needs a time zone offset")
        events = [
            ZoneEvent(
                id=e.id,
                zone_id=e.zone_id,
                device_id=e.device_id,
                kind=e.kind,
                at=e.at,
                visit_id=e.visit_id or e.id,
                reason="dry_run",
                lat=e.lat,
                lng=e.lng,
            )
            for e in body.events
        ]
    else:
        events = recorded_events(
            session,
            since=body.since,
            until=body.until,
            limit=body.limit,
            zone_ids=campaign_zone_ids(session, campaign),
            kinds=campaign.trigger.kinds,
        )
    policy = runtime.decision_policy
    report = dry_run_in_db(session, campaign, events, policy=policy, with_history=body.with_history)
    session.rollback()
    return report.as_json(limit=body.rows)
