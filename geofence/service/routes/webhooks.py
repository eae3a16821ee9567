"""Routes: outbound webhook endpoints (admin) — register with event-type filters, rotate the signing
secret, re-enable after a 410, read the delivery log, replay from a point in time."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import delete, select, update
from sqlmodel import col

from geofence.service import clock
from geofence.service.deps import RuntimeDep, SessionDep, SettingsDep
from geofence.service.pagination import PageDep, Paginated
from geofence.service.security import require_scope
from geofence.service.tables._types import as_utc
from geofence.service.tables.webhooks import WebhookDeliveryRow, WebhookEndpointRow
from geofence.service.webhook_signing import new_secret
from geofence.service.webhooks import EVENT_TYPES, register_endpoint, replay

router = APIRouter(tags=["webhooks"])
Admin = Annotated[object, Depends(require_scope("admin"))]
EndpointId = Annotated[str, Path(max_length=64)]
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # no control characters (PostgreSQL refuses NUL in text)
# what a filter may name: an exact type (the catalogue in docs/webhooks.md; ``order.<name>`` for the
# orders module's), or a family ("message.*"); register_endpoint refuses unknown names with a 422
EventType = Annotated[
    str,
    Field(
        pattern=r"^(zone|message|consent|customer|store|order)\.([a-z][a-z_]{0,39}|\*)$",
        examples=["zone.entered", "message.*", "store.customer_arrived"],
    ),
]
ZoneId = Annotated[str, Field(min_length=1, max_length=200, pattern=PRINTABLE)]
NOT_FOUND = {404: {"description": "no such endpoint"}}


class WebhookIn(BaseModel):
    url: str = Field(max_length=2000, pattern=PRINTABLE, examples=["https://crm.example.com/hooks/geofence"])
    event_types: list[EventType] = Field(min_length=1, max_length=20)
    description: str = Field(default="", max_length=200, pattern=PRINTABLE)
    # a store's own feed: only events naming one of these zones (events naming no zone are not sent)
    zone_ids: list[ZoneId] = Field(default_factory=list, max_length=100)


class WebhookPublic(BaseModel):
    id: str
    url: str
    description: str
    event_types: list[str]
    zone_ids: list[str]
    created_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None


class WebhookCreated(WebhookPublic):
    secret: str  # whsec_...: shown once, give it to the receiver


class SecretRotated(BaseModel):
    secret: str
    previous_valid_until: datetime  # the old secret also signs until then


class DeliveryPublic(BaseModel):
    id: str  # the webhook-id header
    event_id: str
    event_type: str
    status: str  # pending | delivered | parked | cancelled (its store event was withdrawn)
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    occurred_at: datetime
    delivered_at: datetime | None


class ReplayIn(BaseModel):
    since: AwareDatetime


class ReplayAccepted(BaseModel):
    due: int  # deliveries now due again or newly added


def _public(row: WebhookEndpointRow) -> WebhookPublic:
    return WebhookPublic(
        id=row.id,
        url=row.url,
        description=row.description,
        event_types=row.event_types,
        zone_ids=list(row.zone_ids or []),
        created_at=as_utc(row.created_at),
        disabled_at=as_utc(row.disabled_at),  # type: ignore[arg-type]
        disabled_reason=row.disabled_reason,
    )


def _delivery(row: WebhookDeliveryRow) -> DeliveryPublic:
    return DeliveryPublic(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=as_utc(row.next_attempt_at),
        last_status=row.last_status,  # type: ignore[arg-type]
        last_error=row.last_error,
        occurred_at=as_utc(row.occurred_at),  # type: ignore[arg-type]
        delivered_at=as_utc(row.delivered_at),
    )


def _get(session: SessionDep, endpoint_id: str) -> WebhookEndpointRow:
    row = session.get(WebhookEndpointRow, endpoint_id)
    if row is None:
        raise HTTPException(404, detail=f"no webhook endpoint {endpoint_id!r}")
    return row


@router.post(
    "/v1/admin/webhooks",
    status_code=201,
    summary="Register a webhook endpoint",
    responses={422: {"description": "invalid or refused target URL"}},
)
def create_webhook(
    body: WebhookIn, session: SessionDep, settings: SettingsDep, _admin: Admin
) -> WebhookCreated:
    try:
        row, secret = register_endpoint(
            session, body.url, body.event_types, description=body.description,
            allow_private=settings.webhooks.allow_private_targets, at=clock.now(), zone_ids=body.zone_ids,
        )
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return WebhookCreated(**_public(row).model_dump(), secret=secret)


@router.get("/v1/admin/webhooks", summary="Webhook endpoints")
def list_webhooks(session: SessionDep, page: PageDep, _admin: Admin) -> Paginated[WebhookPublic]:
    rows = (
        session.execute(
            select(WebhookEndpointRow)
            .order_by(col(WebhookEndpointRow.created_at), col(WebhookEndpointRow.id))
            .offset(page.offset)
            .limit(page.limit + 1)
        )
        .scalars()
        .all()
    )
    return page.build(rows, _public)


@router.get("/v1/admin/webhooks/{endpoint_id}", summary="One webhook endpoint", responses=NOT_FOUND)
def get_webhook(endpoint_id: EndpointId, session: SessionDep, _admin: Admin) -> WebhookPublic:
    return _public(_get(session, endpoint_id))


@router.delete(
    "/v1/admin/webhooks/{endpoint_id}",
    status_code=204,
    summary="Remove an endpoint and its log",
    responses=NOT_FOUND,
)
def delete_webhook(endpoint_id: EndpointId, session: SessionDep, _admin: Admin) -> Response:
    session.delete(_get(session, endpoint_id))
    session.execute(delete(WebhookDeliveryRow).where(col(WebhookDeliveryRow.endpoint_id) == endpoint_id))
    session.commit()
    return Response(status_code=204)


@router.post(
    "/v1/admin/webhooks/{endpoint_id}/enable",
    summary="Re-enable an endpoint (after a 410)",
    responses=NOT_FOUND,
)
def enable_webhook(
    endpoint_id: EndpointId, session: SessionDep, runtime: RuntimeDep, _admin: Admin
) -> WebhookPublic:
    row = _get(session, endpoint_id)
    row.disabled_at, row.disabled_reason = None, None
    session.add(row)
    session.execute(
        update(WebhookDeliveryRow)  # what waited while it was off is due now, in order
        .where(
            col(WebhookDeliveryRow.endpoint_id) == endpoint_id, col(WebhookDeliveryRow.status) == "pending"
        )
        .values(next_attempt_at=clock.now())
    )
    session.commit()
    runtime.wakeups.webhooks.set()
    return _public(row)


@router.post(
    "/v1/admin/webhooks/{endpoint_id}/rotate-secret", summary="A new signing secret", responses=NOT_FOUND
)
def rotate_secret(
    endpoint_id: EndpointId, session: SessionDep, settings: SettingsDep, _admin: Admin
) -> SecretRotated:
    row = _get(session, endpoint_id)
    until = clock.now() + timedelta(seconds=settings.webhooks.rotation_overlap_s)
    secret = new_secret()
    current = row.secrets[0]["secret"]  # older overlapping ones are dropped: one rotation at a time
    row.secrets = [{"secret": secret, "until": ""}, {"secret": current, "until": until.isoformat()}]
    session.add(row)
    session.commit()
    return SecretRotated(secret=secret, previous_valid_until=until)


@router.get(
    "/v1/admin/webhooks/{endpoint_id}/deliveries",
    summary="The endpoint's delivery log, newest first",
    responses=NOT_FOUND,
)
def list_deliveries(
    endpoint_id: EndpointId,
    session: SessionDep,
    page: PageDep,
    _admin: Admin,
    status: Annotated[Literal["pending", "delivered", "parked", "cancelled"] | None, Query()] = None,
) -> Paginated[DeliveryPublic]:
    _get(session, endpoint_id)
    query = select(WebhookDeliveryRow).where(col(WebhookDeliveryRow.endpoint_id) == endpoint_id)
    if status is not None:
        query = query.where(col(WebhookDeliveryRow.status) == status)
    rows = (
        session.execute(
            query.order_by(col(WebhookDeliveryRow.seq).desc(), col(WebhookDeliveryRow.id))
            .offset(page.offset)
            .limit(page.limit + 1)
        )
        .scalars()
        .all()
    )
    return page.build(rows, _delivery)


@router.post(
    "/v1/admin/webhooks/{endpoint_id}/replay",
    status_code=202,
    summary="Send every event from a point in time again, in order",
    responses=NOT_FOUND,
)
def replay_webhook(
    endpoint_id: EndpointId, body: ReplayIn, session: SessionDep, runtime: RuntimeDep, _admin: Admin
) -> ReplayAccepted:
    due = replay(session, _get(session, endpoint_id), body.since, now=clock.now())
    session.commit()
    runtime.wakeups.webhooks.set()
    return ReplayAccepted(due=due)


__all__ = ["EVENT_TYPES", "router"]
