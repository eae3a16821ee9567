"""Routes: click-and-collect orders (the retailer's back end, scope ``admin``) — place (idempotent on the
order id), read with its events, confirm the pickup, cancel — and a store's pickup statistics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, Field, field_validator
from sqlalchemy.exc import IntegrityError

from campaigns.orders import (
    OrderConflict,
    OrderError,
    OrderInput,
    OrderNotFound,
    close_order,
    create_order,
    get_order,
    order_events,
    pickup_stats,
)
from campaigns.pickup import Cancelled, PickedUp
from campaigns.storage.columns import as_utc
from campaigns.storage.orders import OrderRow
from geofence.service import clock
from geofence.service.deps import RuntimeDep, SessionDep
from geofence.service.security import require_scope
from geofence.service.wiring.orders import extract_loader, pickup_policy

router = APIRouter(tags=["orders"])
Admin = Annotated[object, Depends(require_scope("admin"))]
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"  # no control characters (PostgreSQL refuses NUL in text)
OrderId = Annotated[str, Path(min_length=1, max_length=128, pattern=PRINTABLE)]
ZoneId = Annotated[str, Path(min_length=1, max_length=128, pattern=PRINTABLE)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such order"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "the order is closed the other way (cancelled / picked up)"}
}
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def _plausible(value: datetime | None) -> datetime | None:
    if value is not None and not EARLIEST <= value < LATEST:
        raise ValueError("a time between 2000 and 2100 is expected")
    return None if value is None else value.astimezone(UTC)


class OrderIn(BaseModel):
    id: str = Field(min_length=1, max_length=128, pattern=PRINTABLE, examples=["WEB-100234"])
    customer_id: str = Field(min_length=1, max_length=128, pattern=PRINTABLE)
    store_zone_id: str = Field(min_length=1, max_length=128, pattern=PRINTABLE)
    ready_at: AwareDatetime
    pickup_from: AwareDatetime | None = None
    pickup_until: AwareDatetime | None = None
    approach_minutes: float | None = Field(default=None, gt=0, le=60)  # default: orders.approach_minutes
    notify: bool = True  # send "ready for pickup at <store>"
    notify_any_hour: bool = False  # the customer asked to be told even at night

    _times = field_validator("ready_at", "pickup_from", "pickup_until")(_plausible)


class CloseIn(BaseModel):
    at: AwareDatetime | None = None  # when it happened (default: now)
    reason: str = Field(default="", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")

    _times = field_validator("at")(_plausible)


class OrderEventPublic(BaseModel):
    type: str  # order.ready | order.approaching | order.arrived | ...
    at: datetime
    basis: str  # location | schedule | store | clock | api
    details: dict[str, Any]


class OrderPublic(BaseModel):
    id: str
    customer_id: str
    store_zone_id: str
    status: str  # placed | ready | picked_up | cancelled
    created_at: datetime
    ready_at: datetime
    pickup_from: datetime | None
    pickup_until: datetime | None
    approach_minutes: float
    approaching_at: datetime | None
    approaching_basis: str | None
    arrived_at: datetime | None
    picked_up_at: datetime | None
    cancelled_at: datetime | None
    events: list[OrderEventPublic]


class PickupStatsPublic(BaseModel):
    store_zone_id: str
    since: datetime
    picked_up: int
    measured: int  # picked-up orders whose arrival was seen
    median_wait_s: float | None  # arrival -> pickup confirmed


def _public(session: Any, row: OrderRow) -> OrderPublic:
    return OrderPublic(
        id=row.id,
        customer_id=row.customer_id,
        store_zone_id=row.store_zone_id,
        status=row.status,
        created_at=row.created_at,
        ready_at=row.ready_at,
        pickup_from=as_utc(row.pickup_from),
        pickup_until=as_utc(row.pickup_until),
        approach_minutes=float(row.approach.get("minutes", 0)),
        approaching_at=as_utc(row.approaching_at),
        approaching_basis=row.approaching_basis,
        arrived_at=as_utc(row.arrived_at),
        picked_up_at=as_utc(row.picked_up_at),
        cancelled_at=as_utc(row.cancelled_at),
        events=[
            OrderEventPublic(type=e.type, at=e.at, basis=e.basis, details=e.details)
            for e in order_events(session, row.id)
        ],
    )


@router.post(
    "/v1/orders",
    status_code=201,
    summary="Place a click-and-collect order (idempotent on its id)",
    responses={
        200: {"model": OrderPublic, "description": "the same order was placed before"},
        409: {"description": "an order with this id exists with other details"},
        422: {"description": "unknown customer or zone, or an invalid pickup window"},
    },
)
def place_order(
    body: OrderIn, session: SessionDep, runtime: RuntimeDep, response: Response, _admin: Admin
) -> OrderPublic:
    settings = runtime.settings
    inp = OrderInput(
        id=body.id,
        customer_id=body.customer_id,
        store_zone_id=body.store_zone_id,
        ready_at=body.ready_at,
        pickup_from=body.pickup_from,
        pickup_until=body.pickup_until,
        approach_minutes=body.approach_minutes,
        notify=body.notify,
        notify_any_hour=body.notify_any_hour,
    )
    for _ in range(2):  # a concurrent create of the same id: read it back and compare
        try:
            row, created = create_order(
                session,
                inp,
                at=clock.now(),
                policy=pickup_policy(settings),
                default_minutes=settings.orders.approach_minutes,
                default_profile=settings.orders.default_profile,
                extract=extract_loader(settings),
            )
            session.commit()
            break
        except OrderConflict as exc:
            raise HTTPException(409, detail=str(exc)) from None
        except OrderError as exc:
            raise HTTPException(422, detail=str(exc)) from None
        except IntegrityError:
            session.rollback()
    else:
        raise HTTPException(409, detail=f"order {body.id!r} is being placed concurrently")
    if created:
        runtime.wakeups.outbox.set()  # placed ready: its notice is queued
    else:
        response.status_code = 200
    return _public(session, row)


@router.get("/v1/orders/{order_id}", summary="An order, with its events and their times", responses=NOT_FOUND)
def read_order(order_id: OrderId, session: SessionDep, _admin: Admin) -> OrderPublic:
    try:
        return _public(session, get_order(session, order_id))
    except OrderNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from None


def _close(session: Any, runtime: Any, order_id: str, obs: PickedUp | Cancelled) -> OrderPublic:
    try:
        row = close_order(session, order_id, obs, at=clock.now(), policy=pickup_policy(runtime.settings))
        session.commit()
    except OrderNotFound as exc:
        raise HTTPException(404, detail=str(exc)) from None
    except OrderConflict as exc:
        raise HTTPException(409, detail=str(exc)) from None
    return _public(session, row)


@router.post(
    "/v1/orders/{order_id}/picked-up",
    summary="The store confirms the customer collected the order",
    responses={**NOT_FOUND, **CONFLICT},
)
def confirm_pickup(
    order_id: OrderId, session: SessionDep, runtime: RuntimeDep, _admin: Admin, body: CloseIn | None = None
) -> OrderPublic:
    now = clock.now()
    return _close(session, runtime, order_id, PickedUp(min(body.at, now) if body and body.at else now))


@router.post("/v1/orders/{order_id}/cancel", summary="Cancel an order", responses={**NOT_FOUND, **CONFLICT})
def cancel_order(
    order_id: OrderId, session: SessionDep, runtime: RuntimeDep, _admin: Admin, body: CloseIn | None = None
) -> OrderPublic:
    now = clock.now()
    at = min(body.at, now) if body and body.at else now
    return _close(session, runtime, order_id, Cancelled(at, body.reason if body else ""))


@router.get(
    "/v1/stores/{zone_id}/pickup-stats",
    summary="Median wait from arrival to pickup at a store",
    responses={404: {"description": "no such zone"}},
)
def store_pickup_stats(
    zone_id: ZoneId,
    session: SessionDep,
    _admin: Admin,
    days: Annotated[int, Query(ge=1, le=365)] = 30,
) -> PickupStatsPublic:
    from datetime import timedelta

    from campaigns.order_zones import load_zone

    if load_zone(session, zone_id) is None:
        raise HTTPException(404, detail=f"no zone {zone_id[:64]!r}")
    stats = pickup_stats(session, zone_id, since=clock.now() - timedelta(days=days))
    return PickupStatsPublic(
        store_zone_id=stats.store_zone_id,
        since=stats.since,
        picked_up=stats.picked_up,
        measured=stats.measured,
        median_wait_s=stats.median_wait_s,
    )
