"""Click-and-collect use cases: place, read, confirm the pickup, cancel; the store's waiting order and
its pickup statistics; and ``advance``, which feeds observations to the pure state machine
(``campaigns.pickup``) and writes what it decides — the order, its events, the "ready" notice — in the
caller's transaction.

Each function takes the caller's ``Session`` and ``at`` (tz-aware UTC) and flushes, never commits.
Concurrency: an order row is written ``WHERE version = <read>``; a writer that lost (``StaleOrder``)
rolls back and reads again, so two workers never publish one event twice (the events' unique key
holds too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from campaigns.order_notice import grant_order_updates, ready_notice, withdraw_notice
from campaigns.order_zones import approach_for, load_zone
from campaigns.pickup import (
    OPEN,
    Approach,
    Cancelled,
    Observation,
    Order,
    OrderEvent,
    OrderEventType,
    OrderStatus,
    PickedUp,
    PickupPolicy,
    Tick,
    run,
    wait_median_s,
)
from campaigns.storage.columns import as_utc, new_id
from campaigns.storage.customers import Customer
from campaigns.storage.orders import OrderEventRow, OrderRow
from campaigns.storage.outbound_events import emit


class OrderError(ValueError):
    """Bad input; the message says what to fix."""


class OrderNotFound(OrderError, LookupError):
    pass


class OrderConflict(OrderError):
    """The request contradicts the stored order (another order under this id, a closed order)."""


class StaleOrder(Exception):
    """Another writer moved the order on first: read it again."""


@dataclass(frozen=True)
class OrderInput:
    id: str
    customer_id: str
    store_zone_id: str
    ready_at: datetime
    pickup_from: datetime | None = None
    pickup_until: datetime | None = None
    approach_minutes: float | None = None
    notify: bool = True
    notify_any_hour: bool = False


@dataclass(frozen=True)
class WaitingOrder:
    """What a store may know of an order waiting for a customer who arrives (the arrival alert)."""

    order_id: str
    status: str
    ready_at: datetime
    pickup_from: datetime | None
    pickup_until: datetime | None


# -- state <-> rows ---------------------------------------------------------------------------------
def to_domain(row: OrderRow) -> Order:
    return Order(
        id=row.id,
        customer_id=row.customer_id,
        store_zone_id=row.store_zone_id,
        created_at=_utc(row.created_at),
        ready_at=_utc(row.ready_at),
        approach=Approach.from_dict(row.approach),
        pickup_from=as_utc(row.pickup_from),
        pickup_until=as_utc(row.pickup_until),
        status=OrderStatus(row.status),
        approaching_at=as_utc(row.approaching_at),
        approaching_basis=row.approaching_basis,
        arrived_at=as_utc(row.arrived_at),
        wrong_store_zone_id=row.wrong_store_zone_id,
        picked_up_at=as_utc(row.picked_up_at),
        cancelled_at=as_utc(row.cancelled_at),
        last_seen_at=as_utc(row.last_seen_at),
    )


STATE_FIELDS = (
    "status",
    "approaching_at",
    "approaching_basis",
    "arrived_at",
    "wrong_store_zone_id",
    "picked_up_at",
    "cancelled_at",
    "last_seen_at",
)


def _utc(value: datetime) -> datetime:
    out = as_utc(value)
    assert out is not None
    return out


# -- advancing an order -----------------------------------------------------------------------------
def advance(
    session: Session,
    row: OrderRow,
    observations: Sequence[Observation],
    *,
    at: datetime,
    policy: PickupPolicy,
    fixes_read_at: datetime | None = None,
) -> list[OrderEvent]:
    """Step the order through ``observations`` and write the result (raises ``StaleOrder``)."""
    before = to_domain(row)
    after, events = run(before, list(observations), policy)
    values: dict[str, Any] = {
        f: getattr(after, f) for f in STATE_FIELDS if getattr(after, f) != getattr(before, f)
    }
    if fixes_read_at is not None and fixes_read_at != as_utc(row.fixes_read_at):
        values["fixes_read_at"] = fixes_read_at
    if not values and not events:
        return []
    values = {k: (v.value if isinstance(v, OrderStatus) else v) for k, v in values.items()}
    written = session.execute(
        update(OrderRow)
        .where(col(OrderRow.id) == row.id, col(OrderRow.version) == row.version)
        .values(**values, version=row.version + 1, updated_at=at)
    ).rowcount  # type: ignore[attr-defined]
    if not written:
        raise StaleOrder(row.id)
    for event in events:
        _record(session, after, event, at=at)
        if event.type is OrderEventType.READY:
            ready_notice(session, row, ready_at=event.at, at=at)
        elif event.type in (OrderEventType.PICKED_UP, OrderEventType.CANCELLED):
            withdraw_notice(session, row.id, reason=event.type.value.replace(".", "_"), at=at)
    session.flush()
    return events


def event_payload(order: Order, event: OrderEvent) -> dict[str, Any]:
    """The webhook body's ``data``: ids, times and facts; never a position, phone number or token."""
    return {
        "order_id": order.id,
        "customer_id": order.customer_id,
        "store_zone_id": order.store_zone_id,
        "at": event.at.isoformat(),
        "basis": event.basis,
        **event.details,
    }


def _record(session: Session, order: Order, event: OrderEvent, *, at: datetime) -> None:
    """The order's history row and the store-side event (webhooks ``order.*``), in the caller's
    transaction; a duplicate row (a second writer) publishes nothing."""
    zone_key = (
        str(event.details.get("zone_id", "")) if event.type is OrderEventType.ARRIVED_AT_WRONG_STORE else ""
    )
    try:
        with session.begin_nested():  # a duplicate (a second writer got past the version) adds nothing
            session.add(
                OrderEventRow(
                    id=f"oev_{new_id()}",
                    order_id=order.id,
                    type=event.type.value,
                    zone_key=zone_key,
                    at=event.at,
                    basis=event.basis,
                    store_zone_id=order.store_zone_id,
                    details=dict(event.details),
                    recorded_at=at,
                )
            )
    except IntegrityError:
        return
    emit(session, event.type.value, event_payload(order, event), subject_id=order.id, occurred_at=event.at)


# -- use cases --------------------------------------------------------------------------------------
def _same(row: OrderRow, inp: OrderInput) -> bool:
    return (
        row.customer_id,
        row.store_zone_id,
        _utc(row.ready_at),
        as_utc(row.pickup_from),
        as_utc(row.pickup_until),
    ) == (inp.customer_id, inp.store_zone_id, inp.ready_at, inp.pickup_from, inp.pickup_until)


def create_order(
    session: Session,
    inp: OrderInput,
    *,
    at: datetime,
    policy: PickupPolicy,
    default_minutes: float,
    default_profile: str,
    extract: Callable[[], Any] | None = None,
) -> tuple[OrderRow, bool]:
    """Place an order (or find the same one placed before: idempotent on its id). (row, created)."""
    existing = session.get(OrderRow, inp.id)
    if existing is not None:
        if not _same(existing, inp):
            raise OrderConflict(f"order {inp.id!r} exists with other details")
        return existing, False
    if inp.pickup_from and inp.pickup_until and inp.pickup_until <= inp.pickup_from:
        raise OrderError("pickup_until must be after pickup_from")
    customer = session.get(Customer, inp.customer_id)
    if customer is None or customer.erased_at is not None:
        raise OrderError(f"unknown customer {inp.customer_id[:64]!r}")
    zone = load_zone(session, inp.store_zone_id)
    if zone is None:
        raise OrderError(f"unknown zone {inp.store_zone_id[:64]!r}")
    approach = approach_for(
        zone, inp.approach_minutes or default_minutes, default_profile=default_profile, extract=extract
    )
    row = OrderRow(
        id=inp.id,
        customer_id=inp.customer_id,
        store_zone_id=inp.store_zone_id,
        created_at=at,
        ready_at=inp.ready_at,
        pickup_from=inp.pickup_from,
        pickup_until=inp.pickup_until,
        notify=inp.notify,
        notify_any_hour=inp.notify_any_hour,
        approach=approach.to_dict(),
        updated_at=at,
        fixes_read_at=at,
    )
    session.add(row)
    grant_order_updates(session, inp.customer_id, inp.id, at)
    session.flush()
    advance(session, row, [Tick(at)], at=at, policy=policy)
    session.refresh(row)
    return row, True


def get_order(session: Session, order_id: str) -> OrderRow:
    row = session.get(OrderRow, order_id)
    if row is None:
        raise OrderNotFound(f"no order {order_id[:64]!r}")
    return row


def order_events(session: Session, order_id: str) -> list[OrderEventRow]:
    return list(
        session.execute(
            select(OrderEventRow)
            .where(col(OrderEventRow.order_id) == order_id)
            .order_by(col(OrderEventRow.at), col(OrderEventRow.recorded_at))
        ).scalars()
    )


def close_order(
    session: Session,
    order_id: str,
    obs: PickedUp | Cancelled,
    *,
    at: datetime,
    policy: PickupPolicy,
) -> OrderRow:
    """The store confirms the pickup, or the order is cancelled. Repeating the same close is a no-op;
    closing the other way is a conflict."""
    row = get_order(session, order_id)
    wanted = OrderStatus.PICKED_UP if isinstance(obs, PickedUp) else OrderStatus.CANCELLED
    if row.status == wanted.value:
        return row
    if row.status not in OPEN:
        raise OrderConflict(f"order {order_id!r} is {row.status}")
    advance(session, row, [Tick(at), obs], at=at, policy=policy)
    session.refresh(row)
    return row


def waiting_order_for(session: Session, customer_id: str, store_zone_id: str) -> WaitingOrder | None:
    """The customer's open order at this store zone (the soonest ready), for the store's arrival
    alert; None when nothing waits there."""
    row = (
        session.execute(
            select(OrderRow)
            .where(
                col(OrderRow.customer_id) == customer_id,
                col(OrderRow.store_zone_id) == store_zone_id,
                col(OrderRow.status).in_(OPEN),
            )
            .order_by(col(OrderRow.ready_at), col(OrderRow.id))
            .limit(1)
        )
        .scalars()
        .first()
    )
    if row is None:
        return None
    return WaitingOrder(
        order_id=row.id,
        status=row.status,
        ready_at=_utc(row.ready_at),
        pickup_from=as_utc(row.pickup_from),
        pickup_until=as_utc(row.pickup_until),
    )


def order_waiting(session: Session, customer_id: str, zone_id: str, at: datetime) -> dict[str, Any] | None:  # noqa: ARG001
    """The arrival alert's hook (``campaigns.arrivals.WaitingOrder``): what the store may know of the
    order waiting for this customer at this zone — its id, status and times — or None."""
    waiting = waiting_order_for(session, customer_id, zone_id)
    if waiting is None:
        return None
    return {
        "order_id": waiting.order_id,
        "status": waiting.status,
        "ready_at": waiting.ready_at.isoformat(),
        "pickup_from": None if waiting.pickup_from is None else waiting.pickup_from.isoformat(),
        "pickup_until": None if waiting.pickup_until is None else waiting.pickup_until.isoformat(),
    }


@dataclass(frozen=True)
class PickupStats:
    store_zone_id: str
    since: datetime
    picked_up: int  # orders picked up since ``since``
    measured: int  # of which the customer's arrival was seen (the waits)
    median_wait_s: float | None  # arrival (location) -> pickup confirmed


def pickup_stats(session: Session, store_zone_id: str, *, since: datetime) -> PickupStats:
    """The store's median wait from arrival to pickup over the orders picked up since ``since``."""
    rows = session.execute(
        select(col(OrderRow.arrived_at), col(OrderRow.picked_up_at)).where(
            col(OrderRow.store_zone_id) == store_zone_id,
            col(OrderRow.status) == OrderStatus.PICKED_UP.value,
            col(OrderRow.picked_up_at) >= since,
        )
    ).all()
    waits = [max(0.0, (_utc(p) - _utc(a)).total_seconds()) for a, p in rows if a is not None]
    return PickupStats(store_zone_id, since, len(rows), len(waits), wait_median_s(waits))


def open_order_ids(session: Session, *, after: str, limit: int) -> list[str]:
    """Ids of open orders after ``after``, in id order (a pass pages through all of them)."""
    return list(
        session.execute(
            select(col(OrderRow.id))
            .where(col(OrderRow.status).in_(OPEN), col(OrderRow.id) > after)
            .order_by(col(OrderRow.id))
            .limit(limit)
        ).scalars()
    )
