"""Arrival alerts for the store: a customer who consented to ``store_welcome`` enters or dwells at a
store's zone, and the store is told (``store.customer_arrived``), with what it may know — nothing else.

- Only zones with a ``store_id``, only ``enter`` and ``dwell``, only a customer (a device linked to a
  customer, not erased) whose ledger grants ``store_welcome`` when the event is handled: a withdrawal
  stops the next alert at once (and one still waiting for its receiver: see ``withdraw_arrivals``).
- At most one per visit: the ``store_arrivals`` row, unique per (zone, visit), is written in the same
  transaction as the event (an enter then a dwell of one visit, or a batch handed again, add nothing).
- The payload: ``zone_id``, ``store_id``, ``first_name``, ``language`` (the customer's locale) and
  ``order_waiting`` (what ``WaitingOrder`` returns: None until the orders module provides it). No
  customer id, device id, phone, token or position: the alert's ``subject_id`` is the arrival's own id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from campaigns.consent import Purpose, is_granted
from campaigns.storage.arrivals import StoreArrival
from campaigns.storage.columns import new_id
from campaigns.storage.customers import ConsentEvent, Customer, Device
from campaigns.storage.geofence_views import ZONES
from campaigns.storage.outbound_events import OutboundEventRow, emit

ARRIVED = "store.customer_arrived"
ARRIVAL_KINDS = frozenset({"enter", "dwell"})

# (session, customer id, store zone id, at) -> the order waiting there, as ids and facts the store
# may know (e.g. {"order_id": ..., "ready_at": ...}), or None. The orders module provides it.
WaitingOrder = Callable[[Session, str, str, datetime], Mapping[str, Any] | None]


def no_waiting_order(session: Session, customer_id: str, zone_id: str, at: datetime) -> None:  # noqa: ARG001
    return None


class ZoneEventLike(Protocol):
    id: str
    zone_id: str
    device_id: str
    visit_id: str
    at: datetime

    @property
    def kind(self) -> Any: ...


def alert_arrival(
    session: Session, event: ZoneEventLike, *, at: datetime, waiting_order: WaitingOrder = no_waiting_order
) -> str:
    """Raise the alert for ``event`` if it is one, in the caller's transaction; returns ``alerted``
    or why not (``not_an_arrival``, ``not_a_store``, ``no_customer``, ``no_consent``,
    ``already_alerted``)."""
    if str(event.kind) not in ARRIVAL_KINDS:
        return "not_an_arrival"
    zone = session.execute(
        select(ZONES.c.store_id).where(ZONES.c.id == event.zone_id, ZONES.c.deleted_at.is_(None))
    ).first()
    if zone is None or not zone.store_id:
        return "not_a_store"
    device = session.get(Device, event.device_id) if event.device_id else None
    customer = session.get(Customer, device.customer_id) if device and device.customer_id else None
    if device is None or customer is None or customer.erased_at is not None:
        return "no_customer"
    entries = session.execute(
        select(ConsentEvent).where(
            col(ConsentEvent.customer_id) == customer.id,
            col(ConsentEvent.purpose) == Purpose.STORE_WELCOME.value,
        )
    ).scalars()
    if not is_granted(entries, Purpose.STORE_WELCOME, at):
        return "no_consent"
    arrival = StoreArrival(
        id=f"arr_{new_id()}", zone_id=event.zone_id, visit_id=event.visit_id, customer_id=customer.id,
        event_id=event.id, alerted_at=at,
    )
    try:
        with session.begin_nested():
            session.add(arrival)
    except IntegrityError:
        return "already_alerted"
    payload = {
        "zone_id": event.zone_id, "store_id": zone.store_id, "first_name": customer.first_name,
        "language": customer.locale, "order_waiting": waiting_order(session, customer.id, event.zone_id, at),
    }  # fmt: skip
    emit(session, ARRIVED, payload, subject_id=arrival.id, occurred_at=event.at,
         customer_id=customer.id, device_id=device.id)  # fmt: skip
    return "alerted"


def withdraw_arrivals(session: Session, customer_id: str) -> int:
    """The customer's arrival alerts still in the log are deleted (consent withdrawn): a webhook
    message whose event is gone is not sent (``geofence.service.webhooks``). Returns how many."""
    result = session.execute(
        delete(OutboundEventRow).where(
            col(OutboundEventRow.type) == ARRIVED, col(OutboundEventRow.customer_id) == customer_id
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
